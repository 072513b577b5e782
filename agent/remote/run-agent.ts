// The agent's life: report the server's disks, take the job from the API, run the deploy pipeline
// on it, report every status change through the outbox, and reboot only once the outcome is
// delivered (or a bounded wait ran out). A token refused or a deployment cancelled (an answer to an
// event or to the heartbeat) stops it at once: before the write the disk is left as it was, during
// it without a partition table.
import { jobInputFor } from '../../lib/api/job-body.ts';
import { ByoiError, DeploymentCancelled, faultOf, jobUnavailable } from '../../lib/errors.ts';
import { mergeJobInputs, validateJob, type Job, type JobInput } from '../../lib/job.ts';
import { createLogger, type Logger } from '../../lib/report/log.ts';
import { reboot as systemReboot } from '../../lib/system/reboot.ts';
import { Redactor } from '../../lib/report/redact.ts';
import { Reporter } from '../reporter.ts';
import { abandonUnfinishedWork } from '../run.ts';
import { AgentClient, type AssignedJob } from './client.ts';
import { backoffDelay, type Backoff } from '../../lib/download/backoff.ts';
import { discoverDisksReport } from '../../lib/disk/report.ts';
import { EventQueue, defaultBackoff } from './queue.ts';
import { RemoteStatus } from './remote-status.ts';
import type { AgentSettings } from './settings.ts';

/** The deploy pipeline (agent/deploy.ts's `deploy`); it is given jobs with noReboot set. */
export type Pipeline = (job: Job, report: Reporter) => Promise<void>;

/** How long a heartbeat waits after the last word to the API, by default. */
export const DEFAULT_HEARTBEAT_MS = 5000;
/** How long a cancelled pipeline may take to unwind (it stops at its next checkpoint) before the agent ends anyway. */
const STOP_GRACE_MS = 3000;

export interface AgentOptions {
  readonly settings: AgentSettings;
  /** Local settings that override the job's fields: disk, ramSize, noReboot, statusFile. */
  readonly overrides: JobInput;
  readonly pipeline: Pipeline;
  /** How long to keep trying to take the job while the API is unreachable. */
  readonly jobTimeoutMs: number;
  /** How long the outcome may wait for delivery before the agent exits or reboots anyway. */
  readonly deliverTimeoutMs: number;
  /** How often the agent asks whether its deployment still stands when it has nothing else to say. */
  readonly heartbeatMs?: number;
  readonly backoff?: Backoff;
  readonly reboot?: () => Promise<void>;
  /** The server's disks and groups, reported when the agent starts (by default, as `byoi disks` finds them). */
  readonly disksReport?: () => Promise<unknown>;
}

async function takeJob(client: AgentClient, options: AgentOptions, log: Logger): Promise<AssignedJob> {
  const backoff = options.backoff ?? defaultBackoff;
  const deadline = Date.now() + options.jobTimeoutMs;
  for (let failures = 1; ; failures++) {
    const job = await client.fetchJob();
    if (job !== 'retry') return job;
    const delay = backoffDelay(failures, backoff);
    if (Date.now() + delay > deadline)
      throw jobUnavailable(options.settings.server, {
        detail: client.retryReason,
      });
    log.warn({ retryInMs: delay, reason: client.retryReason }, 'no job from the API yet; trying again');
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** Informative only: a server whose disks cannot be listed or reported still deploys. */
async function reportDisks(client: AgentClient, options: AgentOptions, log: Logger): Promise<void> {
  try {
    const delivery = await client.postDisks(await (options.disksReport ?? discoverDisksReport)());
    if (delivery !== 'delivered') log.warn({ delivery }, 'the API did not take the disks report');
  } catch (error) {
    log.warn({ error: String(error) }, "could not list this server's disks for the API");
  }
}

const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** Deploys the server's job; resolves when done (and rebooting unless told not to), throws the deployment's error. */
export async function runAgent(options: AgentOptions): Promise<void> {
  // The token is a secret from the start; the job's secrets once the job is known.
  let redactor = new Redactor([options.settings.token]);
  const scrub = (text: string) => redactor.scrub(text);
  const log = createLogger(scrub);
  const client = new AgentClient(options.settings);
  const stop = new AbortController();
  const cancel = (why: string) => {
    if (stop.signal.aborted) return;
    const cancelled = new DeploymentCancelled(why);
    log.error({ why }, cancelled.message);
    stop.abort(cancelled);
  };
  const queue = new EventQueue(
    (events) => client.postEvents(events),
    options.backoff,
    (delivery) => {
      if (delivery === 'revoked') cancel("the API refused the agent's token or said the deployment was cancelled");
      else log.error('the API refused the status events for good; no more will be sent');
    },
  );
  const statusFile = typeof options.overrides.statusFile === 'string' ? options.overrides.statusFile : undefined;
  const outbox = new RemoteStatus(statusFile, scrub, queue);
  const report = new Reporter(outbox, log, undefined, stop.signal);

  const delivered = async () => {
    if (await queue.drain(options.deliverTimeoutMs)) return;
    log.error({ pending: queue.size }, 'the outcome could not be delivered to the API in time');
    queue.stop();
  };

  await reportDisks(client, options, log);
  const assigned = await takeJob(client, options, log);
  log.info({ deploymentId: assigned.deploymentId, serviceName: assigned.serviceName }, 'took the job');

  // While the pipeline runs, silence is a question: does the deployment still stand?
  const heartbeat = setInterval(() => {
    if (queue.size > 0 || stop.signal.aborted) return; // events are on their way; their answers tell
    void client.postEvents([]).then((delivery) => {
      if (delivery === 'revoked') cancel('the API answered the heartbeat: token refused or deployment cancelled');
    });
  }, options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS);
  const stopped = new Promise<never>((_, reject) =>
    stop.signal.addEventListener('abort', () => reject(stop.signal.reason), { once: true }),
  );
  stopped.catch(() => undefined);

  let job: Job | undefined;
  const deploying = (async () => {
    job = validateJob(
      mergeJobInputs(
        jobInputFor(assigned.kind, assigned.body),
        { network: assigned.network, verifyWrite: assigned.verifyWrite },
        options.overrides,
      ),
    );
    redactor = redactor.with(Redactor.forJob(job));
    await options.pipeline({ ...job, noReboot: true }, report);
  })();
  try {
    await Promise.race([deploying, stopped]);
  } catch (error) {
    if (stop.signal.aborted) {
      // Nothing more is reported: the API will not take it. The pipeline unwinds at its next checkpoint
      // (a download at once).
      queue.stop();
      const unwound = await Promise.race([
        deploying.then(
          () => true,
          () => true,
        ),
        delay(STOP_GRACE_MS).then(() => false),
      ]);
      if (!unwound) {
        log.error({ graceMs: STOP_GRACE_MS }, 'the cancelled pipeline did not stop in time: the agent ends without it');
        abandonUnfinishedWork();
      }
      throw stop.signal.reason as ByoiError;
    }
    const shown = redactor.visible(error);
    outbox.errorKind = shown.kind;
    outbox.fault = faultOf(error);
    report.error(shown.message, shown.detail);
    await delivered();
    throw shown;
  } finally {
    clearInterval(heartbeat);
  }
  await delivered();
  if (!job!.noReboot) await (options.reboot ?? systemReboot)();
}
