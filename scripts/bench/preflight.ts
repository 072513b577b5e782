// What the bench checks before it measures anything: RAM that files in /dev/shm hold is RAM the
// bench's devices, downloads and images do not get (an 8 GiB pass was once spoiled by 6 GB of
// leftover files there), and its figures would not say so.
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** Files left in /dev/shm above this many bytes in all stop the bench. */
const SHM_FOREIGN_MAX = 256 * 1024 * 1024;

/**
 * Throws, naming them, if files in `dir` hold more than SHM_FOREIGN_MAX (the bench has made none
 * yet: an earlier run's left behind count too).
 */
export function checkSharedMemoryFree(dir = '/dev/shm'): void {
  const foreign = readdirSync(dir)
    .map((name) => ({ name, bytes: diskUsage(join(dir, name)) }))
    .filter((file) => file.bytes > 0);
  const total = foreign.reduce((sum, file) => sum + file.bytes, 0);
  if (total <= SHM_FOREIGN_MAX) return;
  const list = foreign.map((file) => `${file.name} (${Math.round(file.bytes / 2 ** 20)} MiB)`).join(', ');
  throw new Error(`${dir} holds ${Math.round(total / 2 ** 20)} MiB of other files, RAM the bench needs: ${list}`);
}

/**
 * Bytes a file or directory tree holds (allocated blocks: sparse files count what they use; links
 * are not followed; what cannot be read counts nothing).
 */
function diskUsage(path: string): number {
  try {
    const stat = lstatSync(path);
    if (!stat.isDirectory()) return stat.blocks * 512;
    let bytes = 0;
    for (const name of readdirSync(path)) bytes += diskUsage(join(path, name));
    return bytes;
  } catch {
    return 0;
  }
}
