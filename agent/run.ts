// How every command ends: exit 0 on success; on failure the message is the last line of stderr
// and the exit code says what kind of failure it was (lib/errors.ts).
//
// A command ends by its event loop emptying, not by process.exit(): process.exit() shuts Node's
// platform down without tearing the heap down first, so a concurrent compile job still waiting for
// a garbage collection is joined forever (nodejs/node#54918; `byoi inspect` hung at exit in about
// one run in fifteen). Every command closes what it opened; should a handle still be open a while
// after the command ended, that is a bug, named on stderr, and the process exits all the same.
import { ByoiError, exitCodeOf } from '../lib/errors.ts';

/** How long a finished command may take to close its last handles (a server's connections). */
const LINGER_MS = 10_000;

let abandoned = false;

/**
 * For a command that gave up waiting for work it could not stop (a cancelled deployment's pipeline
 * stuck in a tool): it ends as soon as its message is out, whatever is still open.
 */
export function abandonUnfinishedWork(): void {
  abandoned = true;
}

export async function run(action: () => Promise<void>): Promise<void> {
  try {
    await action();
    process.exitCode = 0;
  } catch (error) {
    const message =
      error instanceof ByoiError ? error.message : `Unexpected error: ${(error as Error)?.stack ?? String(error)}`;
    if (error instanceof ByoiError && error.detail) process.stderr.write(`${error.detail}\n`);
    process.stderr.write(`${message}\n`);
    process.exitCode = exitCodeOf(error);
  }
  if (abandoned) process.exit();
  setTimeout(() => {
    process.stderr.write(`byoi: still open after the command ended: ${process.getActiveResourcesInfo().join(', ')}\n`);
    process.exit();
  }, LINGER_MS).unref();
}
