// The write's durable ordering on a block device, seen in the system calls themselves (strace):
// every body write, then an fdatasync (the barrier), then the first MiB, then a final fdatasync.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { attachLoop, detachAllLoops } from '../helpers/loop.ts';

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

/**
 * The positional writes and fdatasyncs on `device` in a trace, in order: only descriptors opened on
 * it count (Node writes other files too, a compile cache for one), from their open to their close.
 */
function calls(trace: string, device: string): Call[] {
  const out: Call[] = [];
  const fds = new Set<string>();
  for (const raw of joined(trace)) {
    const opened = /\bopenat\(AT_FDCWD, "([^"]*)", [^)]*\)\s+=\s+(\d+)$/.exec(raw);
    if (opened) {
      if (opened[1] === device) fds.add(opened[2]!);
      else fds.delete(opened[2]!);
      continue;
    }
    const closed = /\bclose\((\d+)\)\s+=\s+0$/.exec(raw);
    if (closed) {
      fds.delete(closed[1]!);
      continue;
    }
    const line = raw.replace(/"(?:[^"\\]|\\.)*"(\.\.\.)?/g, '""'); // the data, which may hold anything
    const sync = /\bfdatasync\((\d+)\)\s+=\s+0$/.exec(line);
    if (sync && fds.has(sync[1]!)) out.push({ name: 'fdatasync' });
    // pwrite64(fd, buf, count, offset), pwritev(fd, iov, n, offset), pwritev2(fd, iov, n, offset, flags)
    const write = /\b(pwrite64|pwritev|pwritev2)\((\d+), .*, (\d+)(, \S+)?\)\s+=\s+(\d+)$/.exec(line);
    if (write && fds.has(write[2]!) && (write[1] === 'pwritev2') === (write[4] !== undefined)) {
      out.push({ name: 'write', offset: Number(write[3]), length: Number(write[5]) });
    }
  }
  return out;
}

it('reads strace lines split between threads, on the device only', () => {
  const trace = [
    '100 openat(AT_FDCWD, "/dev/loop9", O_WRONLY|O_EXCL|O_CLOEXEC) = 22',
    '100 openat(AT_FDCWD, "/root/.cache/node/x", O_WRONLY|O_CREAT|O_CLOEXEC, 0644) = 23',
    '104 pwrite64(23, "abc"..., 22940, 0) = 22940',
    '101 pwrite64(22, "\\0\\0"..., 1048576, 2097152 <unfinished ...>',
    '102 fdatasync(22)                     = 0',
    '101 <... pwrite64 resumed>) = 1048576',
    '103 pwritev(22, [{iov_base="x, 0) = 9", iov_len=4096}], 1, 0) = 4096',
    '100 close(22) = 0',
    '100 openat(AT_FDCWD, "/tmp/other", O_WRONLY) = 22',
    '104 pwrite64(22, "abc"..., 3, 0) = 3',
  ].join('\n');
  expect(calls(trace, '/dev/loop9')).toEqual([
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
    execFileSync(
      'strace',
      [
        '-f',
        '-qq',
        '-e',
        'trace=openat,close,pwrite64,pwritev,pwritev2,fdatasync',
        '-e',
        'signal=none',
        '-o',
        trace,
        process.execPath,
        'agent/byoi.ts',
        'convert',
        '--type',
        'raw',
        image,
        device,
      ],
      { stdio: 'ignore' },
    );
    const seen = calls(readFileSync(trace, 'utf8'), device);
    const head = seen.findLastIndex((c) => c.name === 'write' && c.offset === 0);
    expect(head).toBeGreaterThan(0);
    expect(seen[head]!.length).toBe(MiB);
    const barrier = seen.findLastIndex((c, i) => i < head && c.name === 'fdatasync');
    const lastBody = seen.findLastIndex((c, i) => i < head && c.name === 'write' && c.offset! >= MiB);
    expect(lastBody).toBeGreaterThan(0);
    expect(barrier).toBeGreaterThan(lastBody);
    expect(seen.slice(head + 1).some((c) => c.name === 'fdatasync')).toBe(true);
    expect(seen.slice(head + 1).some((c) => c.name === 'write')).toBe(false);
    expect(
      readFileSync(device)
        .subarray(0, 12 * MiB)
        .equals(readFileSync(image)),
    ).toBe(true);
  });
});
