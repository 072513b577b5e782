// The disk a test deploys onto: a loop device over a file full of random "old data", so that
// anything the writer skips shows. Detach with detachAllLoops (test/helpers/loop.ts).
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { attachLoop } from './loop.ts';

/** Fills `file` with `size` random bytes (24 MiB unless told) and attaches it; returns the device. */
export function garbageLoop(file: string, size = 24 * 1024 * 1024): string {
  writeFileSync(file, randomBytes(size));
  return attachLoop(file);
}
