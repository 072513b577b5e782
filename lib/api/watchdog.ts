// The watchdog: a deployment whose agent has not been heard from for `silenceMs` ends in error (an
// ovhError), and its server's next netboot is the rescue system. It keeps nothing in memory: each
// round asks the store, whose update is guarded, so several replicas (or a restarted one) share it.
import type { FastifyBaseLogger } from 'fastify';
import { agentSilent } from '../errors.ts';
import type { Store } from './store/types.ts';

export interface WatchdogOptions {
  readonly store: Store;
  readonly silenceMs: number;
  /** How often to look; by default a tenth of the silence, between 1 s and 60 s. */
  readonly intervalMs?: number;
  readonly log?: FastifyBaseLogger;
}

/** One round: ends the silent deployments; answers how many. */
export async function watchdogRound(options: WatchdogOptions, now = Date.now()): Promise<number> {
  const cutoff = new Date(now - options.silenceMs).toISOString();
  const ended = await options.store.expireSilent(cutoff, agentSilent(Math.round(options.silenceMs / 1000)).message);
  for (const deployment of ended)
    options.log?.warn(
      { serviceName: deployment.serviceName, deploymentId: deployment.id, heardAt: deployment.heardAt },
      deployment.message,
    );
  return ended.length;
}

export function startWatchdog(options: WatchdogOptions): { stop(): void } {
  const interval = options.intervalMs ?? Math.min(60_000, Math.max(1000, options.silenceMs / 10));
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    watchdogRound(options)
      .catch((error: unknown) => options.log?.error({ error: String(error) }, 'watchdog round failed'))
      .finally(() => (running = false));
  }, interval);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
