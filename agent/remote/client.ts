// The agent's side of the agent-only routes: take the job, deliver status events.
import { apiMessages, failed } from '../../lib/errors.ts';
import type { AgentEvent, DeploymentKind } from '../../lib/api/store/types.ts';
import type { AgentSettings } from './settings.ts';

export interface AssignedJob {
  readonly deploymentId: number;
  readonly serviceName: string;
  readonly kind: DeploymentKind;
  readonly body: unknown;
}

/**
 * How a delivery went: delivered, worth retrying (network, 5xx), refused for good (bad events), or
 * revoked: the token is refused or the deployment cancelled, and the agent must stop at once.
 */
export type Delivery = 'delivered' | 'retry' | 'refused' | 'revoked';

/** The answers that void the agent's right to go on: no token, a token refused, a deployment cancelled. */
const revoked = (status: number) => status === 401 || status === 403 || status === 410;

const REQUEST_TIMEOUT_MS = 15_000;

export class AgentClient {
  private readonly settings: AgentSettings;

  constructor(settings: AgentSettings) {
    this.settings = settings;
  }

  private url(route: 'job' | 'events' | 'disks'): string {
    return `${this.settings.server}/agent/v1/servers/${encodeURIComponent(this.settings.serviceName)}/${route}`;
  }

  private headers(): Record<string, string> {
    return { authorization: `Bearer ${this.settings.token}`, accept: 'application/json' };
  }

  /** One attempt: the job, 'retry' when the API cannot be reached, or a ByoiError when it refuses. */
  async fetchJob(): Promise<AssignedJob | 'retry'> {
    let response: Response;
    try {
      response = await fetch(this.url('job'), { headers: this.headers(), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch {
      return 'retry';
    }
    if (response.status >= 500) return 'retry';
    const body = (await response.json().catch(() => undefined)) as { message?: string } | AssignedJob | undefined;
    if (response.status !== 200) {
      const said = body && 'message' in body && typeof body.message === 'string' ? body.message : `HTTP ${response.status}`;
      throw failed(apiMessages.jobUnavailable(this.url('job')), said);
    }
    return body as AssignedJob;
  }

  /** Events, or none: a heartbeat, whose answer tells whether the deployment still stands. */
  async postEvents(events: readonly AgentEvent[]): Promise<Delivery> {
    return this.post('events', { events });
  }

  private async post(route: 'events' | 'disks', body: unknown): Promise<Delivery> {
    let response: Response;
    try {
      response = await fetch(this.url(route), {
        method: 'POST',
        headers: { ...this.headers(), 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      await response.arrayBuffer();
    } catch {
      return 'retry';
    }
    if (response.status === 200) return 'delivered';
    if (revoked(response.status)) return 'revoked';
    return response.status >= 500 || response.status === 429 ? 'retry' : 'refused';
  }

  /** The server's disks and groups, for the API and the control panel (one attempt: it is informative). */
  async postDisks(report: unknown): Promise<Delivery> {
    return this.post('disks', report);
  }
}
