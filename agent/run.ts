// How every command ends: exit 0 on success; on failure the message is the last line of stderr
// and the exit code says what kind of failure it was (lib/errors.ts).
import { ByoiError, exitCodeOf } from '../lib/errors.ts';

export async function run(action: () => Promise<void>): Promise<never> {
  try {
    await action();
    process.exit(0);
  } catch (error) {
    const message =
      error instanceof ByoiError ? error.message : `Unexpected error: ${(error as Error)?.stack ?? String(error)}`;
    if (error instanceof ByoiError && error.detail) process.stderr.write(`${error.detail}\n`);
    process.stderr.write(`${message}\n`);
    process.exit(exitCodeOf(error));
  }
}
