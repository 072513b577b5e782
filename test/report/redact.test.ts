import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
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
