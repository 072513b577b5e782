// The agent's life: take the job from the API, run the deploy pipeline on it, report every status
// change through the outbox, and reboot only once the outcome is delivered (or a bounded wait ran out).
import { jobInputFor } from '../../lib/api/job-body.ts';
import { ByoiError, apiMessages, failed } from '../../lib/errors.ts';
import { mergeJobInputs, validateJob, type Job, type JobInput } from '../../lib/job.ts';
import { createLogger, type Logger } from '../../lib/log.ts';
import { reboot as systemReboot } from '../../lib/reboot.ts';
import { Redactor } from '../../lib/redact.ts';
import { Reporter } from '../reporter.ts';
import { AgentClient, type AssignedJob } from './client.ts';
import { backoffDelay, type Backoff } from '../../lib/backoff.ts';
import { EventQueue, defaultBackoff } from './queue.ts';
import { RemoteStatus } from './remote-status.ts';
import type { AgentSettings } from './settings.ts';

/** The deploy pipeline (agent/deploy.ts's `deploy`); it is given jobs with noReboot set. */
export type Pipeline = (job: Job, report: Reporter) => Promise<void>;

export interface AgentOptions {
  readonly settings: AgentSettings;
  /** Local settings that override the job's fields: disk, ramSize, noReboot, statusFile. */
  readonly overrides: JobInput;
  readonly pipeline: Pipeline;
  /** How long to keep trying to take the job while the API is unreachable. */
  readonly jobTimeoutMs: number;
  /** How long the outcome may wait for delivery before the agent exits or reboots anyway. */
  readonly deliverTimeoutMs: number;
  readonly backoff?: Backoff;
  readonly reboot?: () => Promise<void>;
}

async function takeJob(client: AgentClient, options: AgentOptions, log: Logger): Promise<AssignedJob> {
  const backoff = options.backoff ?? defaultBackoff;
  const deadline = Date.now() + options.jobTimeoutMs;
  for (let failures = 1; ; failures++) {
    const job = await client.fetchJob();
    if (job !== 'retry') return job;
    const delay = backoffDelay(failures, backoff);
    if (Date.now() + delay > deadline) throw failed(apiMessages.jobUnavailable(options.settings.server), 'the API could not be reached');
    log.warn({ retryInMs: delay }, 'the API cannot be reached; trying again');
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

/** Deploys the server's job; resolves when done (and rebooting unless told not to), throws the deployment's error. */
export async function runAgent(options: AgentOptions): Promise<void> {
  // The token is a secret from the start; the job's secrets once the job is known.
  let redactor = new Redactor([options.settings.token]);
  const scrub = (text: string) => redactor.scrub(text);
  const log = createLogger(scrub);
  const client = new AgentClient(options.settings);
  const queue = new EventQueue((events) => client.postEvents(events), options.backoff, () =>
    log.error('the API refused the status events for good (deployment erased?); no more will be sent'),
  );
  const statusFile = typeof options.overrides.statusFile === 'string' ? options.overrides.statusFile : undefined;
  const outbox = new RemoteStatus(statusFile, scrub, queue);
  const report = new Reporter(outbox, log);

  const delivered = async () => {
    if (await queue.drain(options.deliverTimeoutMs)) return;
    log.error({ pending: queue.size }, 'the outcome could not be delivered to the API in time');
    queue.stop();
  };

  const assigned = await takeJob(client, options, log);
  log.info({ deploymentId: assigned.deploymentId, serviceName: assigned.serviceName }, 'took the job');
  let job: Job;
  try {
    job = validateJob(mergeJobInputs(jobInputFor(assigned.kind, assigned.body), { network: assigned.network, verifyWrite: assigned.verifyWrite }, options.overrides));
    redactor = redactor.with(Redactor.forJob(job));
    await options.pipeline({ ...job, noReboot: true }, report);
  } catch (error) {
    const shown = redactor.visible(error);
    outbox.errorKind = shown.kind;
    report.error(shown.message, shown.detail);
    await delivered();
    throw shown;
  }
  await delivered();
  if (!job.noReboot) await (options.reboot ?? systemReboot)();
}

