// Finished and erased deployments' job bodies (the customer's secrets) are forgotten once the lab's
// retention period is over: pruned at start and every hour after.
import type { FastifyBaseLogger } from 'fastify';
import type { Store } from './store/types.ts';

const DAY_MS = 24 * 3600 * 1000;
const PRUNE_EVERY_MS = 3600 * 1000;
export const DEFAULT_RETENTION_DAYS = 7;

export function pruneJobBodies(store: Store, retentionDays: number, now = Date.now()): Promise<number> {
  return store.pruneJobBodies(new Date(now - retentionDays * DAY_MS).toISOString());
}

/** Prunes now and every hour until the returned function is called. */
export function keepPruning(store: Store, retentionDays: number, log: FastifyBaseLogger): () => void {
  const prune = () =>
    pruneJobBodies(store, retentionDays).then(
      (count) => count > 0 && log.info({ count }, 'pruned job bodies past their retention'),
      (error: unknown) => log.error({ error: String(error) }, 'could not prune job bodies'),
    );
  void prune();
  const timer = setInterval(prune, PRUNE_EVERY_MS);
  timer.unref();
  return () => clearInterval(timer);
}
