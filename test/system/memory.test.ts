// lib/system/memory.ts: the RAM budget an image must fit in, and the room beside it for decoded clusters.
import { describe, expect, it } from 'vitest';
import {
  addressSpaceLimited,
  addressSpaceUnlimited,
  memAvailable,
  memTotal,
  ramBudget,
  RESERVED_RAM,
  roomForDecoded,
} from '../../lib/system/memory.ts';

describe('RAM budget', () => {
  it('is MemTotal minus 3 GiB, never negative', () => {
    expect(memTotal('MemFree: 1 kB\nMemTotal:       16384 kB\n')).toBe(16384 * 1024);
    expect(ramBudget(8 * 2 ** 30)).toBe(8 * 2 ** 30 - RESERVED_RAM - 1); // "smaller than RAM minus 3 GiB"
    expect(ramBudget(RESERVED_RAM + 1)).toBe(0);
    expect(ramBudget(2 ** 30)).toBe(0);
    expect(ramBudget()).toBe(Math.max(0, memTotal() - RESERVED_RAM - 1));
  });

  it('leaves room for decoded clusters beside the image and 512 MiB of working memory, in available RAM', () => {
    const GiB = 2 ** 30;
    const idle = { budget: 16 * GiB, available: 18 * GiB };
    expect(roomForDecoded(8 * GiB, 2 * GiB, 2 * GiB, idle)).toBe(5.5 * GiB);
    expect(roomForDecoded(8 * GiB, 7.75 * GiB, 0, idle)).toBe(0);
    // A job's ramSize beyond this machine's RAM does not make room that is not there.
    expect(roomForDecoded(64 * GiB, 2 * GiB, 0, { budget: 8 * GiB, available: 18 * GiB })).toBe(5.5 * GiB);
    // Available RAM bounds it, less the image's bytes still to come (tmpfs, say, is not available).
    expect(roomForDecoded(8 * GiB, 2 * GiB, 1.5 * GiB, { budget: 16 * GiB, available: 4 * GiB })).toBe(2 * GiB);
    expect(roomForDecoded(8 * GiB, 2 * GiB, 0, { budget: 16 * GiB, available: 0.25 * GiB })).toBe(0);
    const meminfo = 'MemTotal: 16384 kB\nMemFree:         1024 kB\nMemAvailable:    2048 kB\n';
    expect(memAvailable(meminfo)).toBe(2048 * 1024);
    expect(memAvailable('MemTotal: 16384 kB\nMemFree: 1024 kB\n')).toBe(0); // before Linux 3.14: none known
    expect(() => memTotal('MemFree: 1024 kB\n')).toThrow('/proc/meminfo has no MemTotal line');
  });
});

describe('address space', () => {
  const limits = (value: string) =>
    `Limit                     Soft Limit           Hard Limit           Units     \n` +
    `Max processes             95474                95474                processes \n` +
    `Max address space         ${value.padEnd(20)} ${value.padEnd(20)} bytes     \n`;

  it('is free to reserve on x86-64 without a limit, not under `ulimit -v` nor elsewhere', () => {
    expect(addressSpaceUnlimited(limits('unlimited'), 'x64')).toBe(true);
    expect(addressSpaceUnlimited(limits('68719476736'), 'x64')).toBe(false);
    expect(addressSpaceUnlimited(limits('unlimited'), 'arm64')).toBe(false);
    expect(addressSpaceUnlimited('', 'x64')).toBe(false);
  });

  it('is limited under `ulimit -v` on any architecture, and where the limit cannot be read', () => {
    expect(addressSpaceLimited(limits('unlimited'))).toBe(false);
    expect(addressSpaceLimited(limits('68719476736'))).toBe(true);
    expect(addressSpaceLimited('')).toBe(true);
  });
});
