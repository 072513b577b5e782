// The write's durable ordering on a block device, seen in the system calls themselves (strace):
// every body write, then an fdatasync (the barrier), then the first MiB, then a final fdatasync.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from './helpers/capabilities.ts';
import { attachLoop, detachAllLoops } from './helpers/loop.ts';

const MiB = 1024 * 1024;

interface Call {
  name: 'write' | 'fdatasync';
  offset?: number;
  length?: number;
}

/**
 * A trace's calls as whole lines, in the order they started: with several threads, strace splits a
 * call that another interrupts into "... <unfinished ...>" and "<... name resumed>...".
 */
function joined(trace: string): string[] {
  const lines: string[] = [];
  const pending = new Map<string, number>();
  for (const line of trace.split('\n')) {
    const pid = line.split(/\s+/, 1)[0]!;
    const unfinished = / <unfinished \.\.\.>$/.exec(line);
    const resumed = /^\S+\s+<\.\.\. \w+ resumed>(.*)$/.exec(line);
    if (resumed && pending.has(pid)) {
      const at = pending.get(pid)!;
      lines[at] = `${lines[at]!}${resumed[1]!}`;
      pending.delete(pid);
    } else if (unfinished) {
      pending.set(pid, lines.length);
      lines.push(line.slice(0, unfinished.index));
    } else {
      lines.push(line);
    }
  }
  return lines;
}

/** The positional writes and fdatasyncs of a trace, in order. */
function calls(trace: string): Call[] {
  const out: Call[] = [];
  for (const raw of joined(trace)) {
    const line = raw.replace(/"(?:[^"\\]|\\.)*"(\.\.\.)?/g, '""'); // the data, which may hold anything
    if (/\bfdatasync\(\d+\)\s+=\s+0$/.test(line)) out.push({ name: 'fdatasync' });
    // pwrite64(fd, buf, count, offset), pwritev(fd, iov, n, offset), pwritev2(fd, iov, n, offset, flags)
    const write = /\b(pwrite64|pwritev|pwritev2)\(\d+, .*, (\d+)(, \S+)?\)\s+=\s+(\d+)$/.exec(line);
    if (write && (write[1] === 'pwritev2') === (write[3] !== undefined)) out.push({ name: 'write', offset: Number(write[2]), length: Number(write[4]) });
  }
  return out;
}

it('reads strace lines split between threads', () => {
  const trace = [
    '101 pwrite64(22, "\\0\\0"..., 1048576, 2097152 <unfinished ...>',
    '102 fdatasync(21)                     = 0',
    '101 <... pwrite64 resumed>) = 1048576',
    '103 pwritev(22, [{iov_base="x, 0) = 9", iov_len=4096}], 1, 0) = 4096',
  ].join('\n');
  expect(calls(trace)).toEqual([
    { name: 'write', offset: 2097152, length: 1048576 },
    { name: 'fdatasync' },
    { name: 'write', offset: 0, length: 4096 },
  ]);
});

describe.skipIf(skipWithout('root', 'loop', 'strace'))('write barrier', () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-barrier-'));
  afterEach(() => detachAllLoops());
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('flushes the body before the head and flushes again after it', () => {
    assertCapable('root', 'loop', 'strace');
    const image = join(dir, 'image.raw');
    const bytes = randomBytes(12 * MiB);
    writeFileSync(image, bytes);
    execFileSync('sh', ['-c', `printf 'label: gpt\\n,,L\\n' | sfdisk -q ${image}`]);
    const disk = join(dir, 'disk');
    writeFileSync(disk, Buffer.alloc(16 * MiB));
    const device = attachLoop(disk);
    const trace = join(dir, 'trace');
    execFileSync('strace', ['-f', '-qq', '-e', 'trace=pwrite64,pwritev,pwritev2,fdatasync', '-e', 'signal=none', '-o', trace,
      process.execPath, 'agent/byoi.ts', 'convert', '--type', 'raw', image, device], { stdio: 'ignore' });
    const seen = calls(readFileSync(trace, "utf8"));
    const head = seen.findLastIndex((c) => c.name === 'write' && c.offset === 0);
    expect(head).toBeGreaterThan(0);
    expect(seen[head]!.length).toBe(MiB);
    const barrier = seen.findLastIndex((c, i) => i < head && c.name === 'fdatasync');
    const lastBody = seen.findLastIndex((c, i) => i < head && c.name === 'write' && c.offset! >= MiB);
    expect(lastBody).toBeGreaterThan(0);
    expect(barrier).toBeGreaterThan(lastBody);
    expect(seen.slice(head + 1).some((c) => c.name === 'fdatasync')).toBe(true);
    expect(seen.slice(head + 1).some((c) => c.name === 'write')).toBe(false);
    expect(readFileSync(device).subarray(0, 12 * MiB).equals(readFileSync(image))).toBe(true);
  });
});
