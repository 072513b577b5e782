// The agent's side of the agent-only routes: take the job, deliver status events.
import { apiMessages, failed } from '../../lib/errors.ts';
import type { AgentEvent, DeploymentKind } from '../../lib/api/store.ts';
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

/** How a delivery went: delivered, worth retrying (network, 5xx), or refused for good (token void, bad events). */
export type Delivery = 'delivered' | 'retry' | 'refused';

const REQUEST_TIMEOUT_MS = 15_000;

export class AgentClient {
  private readonly settings: AgentSettings;

  constructor(settings: AgentSettings) {
    this.settings = settings;
  }

  private url(route: 'job' | 'events'): string {
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

  async postEvents(events: readonly AgentEvent[]): Promise<Delivery> {
    let response: Response;
    try {
      response = await fetch(this.url('events'), {
        method: 'POST',
        headers: { ...this.headers(), 'content-type': 'application/json' },
        body: JSON.stringify({ events }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      await response.arrayBuffer();
    } catch {
      return 'retry';
    }
    if (response.status === 200) return 'delivered';
    return response.status >= 500 || response.status === 429 ? 'retry' : 'refused';
  }
}
