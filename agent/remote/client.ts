// The agent's side of the agent-only routes: take the job, deliver status events. The API's
// certificate is verified (against the CA the settings name, else the system's); an answer that is
// not a job (HTML from a proxy, `null`, a wrong shape) is treated like an unreachable API: retried,
// then a clear error, never a crash and never a write.
import { CancelError, got, type CancelableRequest, type OptionsInit, type Response } from 'got';
import { apiCertificateRefusedReason, apiUnreachableReason, jobUnavailable, notAJobReason } from '../../lib/errors.ts';
import type { AgentEvent, DeploymentKind } from '../../lib/api/store/types.ts';
import type { AgentSettings } from './settings.ts';

export interface AssignedJob {
  readonly deploymentId: number;
  readonly serviceName: string;
  readonly kind: DeploymentKind;
  readonly body: unknown;
  /** The lab's network configuration for this server, validated by the job's validation. */
  readonly network?: unknown;
  readonly verifyWrite?: unknown;
}

/**
 * How a delivery went: delivered, worth retrying (network, 5xx), refused for good (bad events), or
 * revoked: the token is refused or the deployment cancelled, and the agent must stop at once.
 */
export type Delivery = 'delivered' | 'retry' | 'refused' | 'revoked';

/** The answers that void the agent's right to go on: no token, a token refused, a deployment cancelled. */
const revoked = (status: number) => status === 401 || status === 403 || status === 410;

const REQUEST_TIMEOUT_MS = 15_000;
/** A job is at most the API's 16 MiB body limit, as JSON: anything much larger is not one. */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

const kinds: readonly string[] = ['bringYourOwnImage', 'reinstall'] satisfies DeploymentKind[];

/** The job answer's shape, checked before anything of it is used. */
function asJob(value: unknown, serviceName: string): AssignedJob | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const job = value as Record<string, unknown>;
  const ok =
    Number.isSafeInteger(job.deploymentId) &&
    job.serviceName === serviceName &&
    typeof job.kind === 'string' &&
    kinds.includes(job.kind) &&
    typeof job.body === 'object' &&
    job.body !== null &&
    !Array.isArray(job.body);
  return ok ? (job as unknown as AssignedJob) : undefined;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

export class AgentClient {
  private readonly settings: AgentSettings;
  /** Why the last attempt is worth retrying, for the error once retries are over. */
  retryReason = apiUnreachableReason('no answer yet');

  constructor(settings: AgentSettings) {
    this.settings = settings;
  }

  private url(route: 'job' | 'events' | 'disks'): string {
    return `${this.settings.server}/agent/v1/servers/${encodeURIComponent(this.settings.serviceName)}/${route}`;
  }

  private request(route: 'job' | 'events' | 'disks', options: OptionsInit): Promise<Response<string>> {
    const answer = got(this.url(route), {
      ...options,
      headers: { ...options.headers, authorization: `Bearer ${this.settings.token}`, accept: 'application/json' },
      https: { ...(this.settings.ca && { certificateAuthority: this.settings.ca }), rejectUnauthorized: true },
      timeout: { request: REQUEST_TIMEOUT_MS },
      retry: { limit: 0 },
      throwHttpErrors: false,
      followRedirect: false,
      responseType: 'text',
    }) as CancelableRequest<Response<string>>;
    answer.on('downloadProgress', ({ transferred }: { transferred: number }) => {
      if (transferred > MAX_ANSWER_BYTES) answer.cancel();
    });
    return answer;
  }

  /** One attempt: the job, 'retry' when the API cannot be reached or answers no job, or a ByoiError when it refuses. */
  async fetchJob(): Promise<AssignedJob | 'retry'> {
    let response: Response<string>;
    try {
      response = await this.request('job', {});
    } catch (error) {
      const code = (error as { code?: string }).code ?? 'error';
      if (error instanceof CancelError) this.retryReason = notAJobReason;
      else
        this.retryReason = /CERT|SIGNATURE|ALTNAME/.test(code)
          ? apiCertificateRefusedReason(code)
          : apiUnreachableReason(code);
      return 'retry';
    }
    if (response.statusCode >= 500) {
      this.retryReason = `the API answered HTTP ${response.statusCode}`;
      return 'retry';
    }
    const body = parseJson(response.body);
    if (response.statusCode !== 200) {
      const said =
        typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string'
          ? (body as { message: string }).message
          : `HTTP ${response.statusCode}`;
      throw jobUnavailable(this.url('job'), { detail: said });
    }
    const job = asJob(body, this.settings.serviceName);
    if (!job) {
      this.retryReason = notAJobReason;
      return 'retry';
    }
    return job;
  }

  /** Events, or none: a heartbeat, whose answer tells whether the deployment still stands. */
  async postEvents(events: readonly AgentEvent[]): Promise<Delivery> {
    return this.post('events', { events });
  }

  private async post(route: 'events' | 'disks', body: unknown): Promise<Delivery> {
    let response: Response<string>;
    try {
      response = await this.request(route, { method: 'POST', json: body });
    } catch {
      return 'retry';
    }
    if (response.statusCode === 200) return 'delivered';
    if (revoked(response.statusCode)) return 'revoked';
    return response.statusCode >= 500 || response.statusCode === 429 ? 'retry' : 'refused';
  }

  /** The server's disks and groups, for the API and the control panel (one attempt: it is informative). */
  async postDisks(report: unknown): Promise<Delivery> {
    return this.post('disks', report);
  }
}
