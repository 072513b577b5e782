// The agent's outbox: status events are queued and delivered in order, in batches, retried with
// exponential backoff while the API is unreachable. Deploying never waits for it. Successive
// progress events of one phase collapse into the latest, so a long outage keeps the queue small;
// phase changes and the outcome are always kept.
import type { AgentEvent } from '../../lib/api/store/types.ts';
import { backoffDelay, type Backoff } from '../../lib/download/backoff.ts';
import type { Delivery } from './client.ts';

export const defaultBackoff: Backoff = { initialDelay: 500, maxDelay: 15_000 };

const MAX_BATCH = 100;

export type Send = (events: readonly AgentEvent[]) => Promise<Delivery>;

export class EventQueue {
  private readonly send: Send;
  private readonly backoff: Backoff;
  private readonly onRefused: (delivery: 'refused' | 'revoked') => void;
  private pending: AgentEvent[] = [];
  /** How many events at the head of `pending` are being sent; they must not change. */
  private inFlight = 0;
  private running = false;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    send: Send,
    backoff: Backoff = defaultBackoff,
    onRefused: (delivery: 'refused' | 'revoked') => void = () => {},
  ) {
    this.send = send;
    this.backoff = backoff;
    this.onRefused = onRefused;
  }

  get size(): number {
    return this.pending.length;
  }

  push(event: AgentEvent): void {
    if (this.stopped) return;
    const last = this.pending.at(-1);
    const replaceable =
      this.pending.length > this.inFlight &&
      last?.status === 'doing' &&
      event.status === 'doing' &&
      last.phase === event.phase;
    if (replaceable) this.pending[this.pending.length - 1] = event;
    else this.pending.push(event);
    if (!this.running) void this.deliverLoop();
  }

  /** Gives up: drops what is left and sends nothing more (the agent is about to exit or reboot). */
  stop(): void {
    this.stopped = true;
    this.pending = [];
  }

  /** Resolves true once every queued event is delivered (or the API refused them for good), false after `timeoutMs`. */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.pending.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.idleWaiters.push(done);
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  private async deliverLoop(): Promise<void> {
    this.running = true;
    let failures = 0;
    while (this.pending.length > 0 && !this.stopped) {
      this.inFlight = Math.min(this.pending.length, MAX_BATCH);
      const batch = this.pending.slice(0, this.inFlight);
      const result = await this.send(batch).catch((): Delivery => 'retry');
      if (result === 'delivered') {
        this.pending.splice(0, this.inFlight);
        failures = 0;
      } else if (result === 'refused' || result === 'revoked') {
        // Bad events, or the deployment was cancelled or the token is void: nobody will ever take these.
        this.stopped = true;
        this.pending = [];
        this.onRefused(result);
      }
      this.inFlight = 0;
      if (result === 'retry') {
        await this.sleep(backoffDelay(++failures, this.backoff));
      }
    }
    this.running = false;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const waiter of waiters) waiter();
  }
}
