import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { memAvailable, memTotal, ramBudget, RESERVED_RAM, roomForDecoded } from '../../lib/system/memory.ts';
import { Redactor, redactUrl } from '../../lib/report/redact.ts';
import { StatusFile } from '../../lib/report/status.ts';

describe('redaction', () => {
  it('hides URL credentials and query values', () => {
    expect(redactUrl('https://bob:pa55word@h.example:8443/a/b.qcow2?X-Sig=abc&exp=9#frag')).toBe(
      'https://***@h.example:8443/a/b.qcow2?X-Sig=***&exp=***',
    );
    expect(redactUrl('http://h/i.raw')).toBe('http://h/i.raw');
  });

  it('scrubs every secret of a job from any text, also JSON- and URL-encoded', () => {
    const redactor = Redactor.forJob({
      url: 'https://bob:p%40ss-word@h/i?token=tok-123456',
      httpHeaders: { Authorization: 'Bearer "quoted" value' },
    });
    const text = `bob p@ss-word p%40ss-word tok-123456 ${JSON.stringify({ h: 'Bearer "quoted" value' })}`;
    const scrubbed = redactor.scrub(text);
    for (const secret of ['p@ss-word', 'p%40ss-word', 'tok-123456', 'quoted']) expect(scrubbed).not.toContain(secret);
  });
});

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

describe('status file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-status-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('is replaced whole, with no temp file left, and scrubbed', () => {
    const path = join(dir, 'status.json');
    const status = new StatusFile(path, (s) => s.replaceAll('hunter22', '***'));
    status.write({
      status: 'doing',
      message: 'Downloading image',
      checksum: null,
      phase: 'download',
      progress: { done: 1, total: 2, bytesPerSecond: 3 },
    });
    status.write({
      status: 'error',
      message: 'boom hunter22',
      detail: 'cause',
      checksum: null,
      phase: 'download',
      progress: null,
    });
    const parsed = JSON.parse(readFileSync(path, 'utf8'));
    expect(parsed).toMatchObject({
      status: 'error',
      message: 'boom ***',
      detail: 'cause',
      phase: 'download',
      checksum: null,
    });
    expect(typeof parsed.servername).toBe('string');
    expect(Date.parse(parsed.updatedAt)).not.toBeNaN();
    expect(readdirSync(dir)).toEqual(['status.json']);
  });
});
