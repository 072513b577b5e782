// Loop devices for tests: attached over files the test made, and detached by the test that
// attached them (never any other). Partition nodes are not assumed to exist.
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';

const attached = new Set<string>();

export interface LoopOptions {
  sectorSize?: 512 | 4096;
  readOnly?: boolean;
}

export function attachLoop(file: string, options: LoopOptions = {}): string {
  const args = ['--find', '--show'];
  if (options.sectorSize) args.push('--sector-size', String(options.sectorSize));
  if (options.readOnly) args.push('--read-only');
  const device = execFileSync('losetup', [...args, file], { encoding: 'utf8' }).trim();
  if (!/^\/dev\/loop\d+$/.test(device)) throw new Error(`losetup gave ${JSON.stringify(device)}`);
  attached.add(device);
  return device;
}

export function detachLoop(device: string): void {
  if (!attached.has(device)) throw new Error(`${device} was not attached by this test`);
  // Partitions that partx added outlive the detach on this kernel and would confuse the next
  // user of the same loop number: drop them first (none there is fine).
  try {
    execFileSync('partx', ['--delete', device], { stdio: 'ignore' });
  } catch {
    // no partitions were known
  }
  execFileSync('losetup', ['--detach', device]);
  attached.delete(device);
}

/** For afterAll: detaches whatever this test file attached and has not detached yet. */
export function detachAllLoops(): void {
  for (const device of [...attached]) {
    try {
      detachLoop(device);
    } catch {
      attached.delete(device);
    }
  }
}

/**
 * Tells the kernel about the partitions on `device` and waits until their nodes exist (devtmpfs
 * creates them asynchronously): returns their paths, /dev/loopNp1 first.
 */
export async function addPartitions(device: string): Promise<string[]> {
  execFileSync('partx', ['--update', device]);
  const numbers = execFileSync('partx', ['--show', '--noheadings', '--output', 'NR', device], { encoding: 'utf8' })
    .split('\n')
    .map((line) => line.trim())
    .filter(Boolean);
  const nodes = numbers.map((n) => `${device}p${n}`);
  for (const node of nodes) {
    for (let tries = 0; !statSync(node, { throwIfNoEntry: false })?.isBlockDevice(); tries++) {
      if (tries > 100) throw new Error(`${node} did not appear`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  return nodes;
}
