import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { download, type DownloadEvent } from '../../lib/download/download.ts';
import { SEGMENTED_MIN_BYTES } from '../../lib/download/settings.ts';
import { planSegments } from '../../lib/download/segments.ts';
import { ByoiError } from '../../lib/errors.ts';
import { closedPort, startServer, type Fault, type TestServer } from '../helpers/http.ts';

const body = randomBytes(3 * 1024 * 1024 + 17);
/** Short backoffs so that retries cost milliseconds. */
const fast = { retry: { attempts: 4, initialDelay: 5, maxDelay: 20, retryAfterCap: 2000 } } as const;
const sha256 = createHash('sha256').update(body).digest('hex');
let server: TestServer;

beforeAll(async () => {
  server = await startServer();
  server.serve('/plain.img', { body });
  server.serve('/chunked.img', { body, mode: 'chunked' });
  server.serve('/cut.img', { body, mode: 'cut', bytes: 1024 * 1024 });
  server.serve('/error.img', { body: Buffer.from('oops'), mode: 'status', status: 500 });
  server.serve('/auth.img', { body, mode: 'auth', headers: { 'X-Token': 'secret-token-value' } });
});
afterAll(() => server.close());

async function failure(promise: Promise<unknown>): Promise<ByoiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ByoiError);
  return error as ByoiError;
}

describe('download', () => {
  it('holds the body in RAM and hashes it as it arrives', async () => {
    const progress: number[] = [];
    const { image, digest } = await download({
      url: `${server.url}/plain.img`,
      headers: {},
      type: 'raw',
      budget: body.length,
      checksumType: 'sha256',
      onProgress: (done) => progress.push(done),
    });
    expect(image.size).toBe(body.length);
    expect(image.read(0, body.length).equals(body)).toBe(true);
    expect(digest).toBe(sha256);
    expect(progress.at(-1)).toBe(body.length);
  });

  it('sends the job headers', async () => {
    const { image } = await download({
      url: `${server.url}/auth.img`,
      headers: { 'X-Token': 'secret-token-value' },
      type: 'raw',
      budget: 1e9,
      ...fast,
    });
    expect(image.size).toBe(body.length);
  });

  it('refuses a Content-Length above the budget', async () => {
    const error = await failure(
      download({ url: `${server.url}/plain.img`, headers: {}, type: 'qcow2', budget: body.length - 1, ...fast }),
    );
    expect(error.message).toBe('Could not download, qcow2 image is too big to download in memory.');
  });

  it('enforces the budget without Content-Length', async () => {
    const error = await failure(
      download({ url: `${server.url}/chunked.img`, headers: {}, type: 'raw', budget: 1024 * 1024, ...fast }),
    );
    expect(error.message).toBe('Could not download, raw image is too big to download in memory.');
  });

  it('takes a body without Content-Length', async () => {
    const { digest } = await download({
      url: `${server.url}/chunked.img`,
      headers: {},
      type: 'raw',
      budget: 1e9,
      checksumType: 'sha256',
      ...fast,
    });
    expect(digest).toBe(sha256);
  });

  it.each([
    ['a 404', '/missing.img', /404/],
    ['a 500', '/error.img', /500/],
    ['a truncated body', '/cut.img', /.+/],
    ['a missing header', '/auth.img', /401/],
  ])('fails on %s with the URL and the cause', async (_name, path, cause) => {
    const error = await failure(
      download({ url: `${server.url}${path}`, headers: {}, type: 'raw', budget: 1e9, ...fast }),
    );
    expect(error.message).toBe(`Could not download image located: ${server.url}${path}.`);
    expect(error.kind).toBe('failed');
    expect(error.detail).toMatch(cause);
  });

  it('fails on a refused connection', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/x.img`;
    const error = await failure(download({ url, headers: {}, type: 'raw', budget: 1e9, ...fast }));
    expect(error.message).toBe(`Could not download image located: ${url}.`);
    expect(error.detail).toMatch(/ECONNREFUSED/);
    expect(error.code).toBe('download-failed');
    // The underlying errors are kept, down to the socket's.
    const causes: unknown[] = [];
    for (let cause: unknown = error.cause; cause instanceof Error; cause = cause.cause) causes.push(cause);
    expect(causes.some((cause) => (cause as NodeJS.ErrnoException).code === 'ECONNREFUSED')).toBe(true);
  });

  it('redacts credentials and query tokens from the URL it shows', async () => {
    const url = `http://user:hunter22@127.0.0.1:${await closedPort()}/x.img?token=abcdef123&v=2`;
    const error = await failure(download({ url, headers: {}, type: 'raw', budget: 1e9, ...fast }));
    expect(error.message).not.toMatch(/hunter22|abcdef123|user/);
    expect(error.message).toMatch(
      /^Could not download image located: http:\/\/\*\*\*@127\.0\.0\.1:\d+\/x\.img\?token=\*\*\*&v=\*\*\*\.$/,
    );
  });

  it('gives up on a dead server with the cause and the attempts made', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/x.img`;
    const error = await failure(download({ url, headers: {}, type: 'raw', budget: 1e9, ...fast }));
    expect(error.detail).toMatch(/ECONNREFUSED.*gave up after 4 attempts/);
  });
});

describe('download over a faulty network', () => {
  const other = randomBytes(body.length);
  const MiB = 1024 * 1024;

  async function fetchFaulty(
    name: string,
    faults: Fault[],
    options: Partial<Parameters<typeof download>[0]> = {},
    serving: { ranges?: boolean } = {},
  ) {
    server.serve(`/${name}`, { body, mode: 'faulty', faults, ...serving });
    const events: DownloadEvent[] = [];
    const result = await download({
      url: `${server.url}/${name}`,
      headers: { 'X-Token': 'tok-secret' },
      type: 'raw',
      budget: 1e9,
      checksumType: 'sha256',
      ...fast,
      onEvent: (e) => events.push(e),
      ...options,
    });
    const requests = server.requests.filter((r) => r.path === `/${name}`);
    return { ...result, events, requests };
  }

  it('resumes after the connection drops several times, hashing every byte once and in order', async () => {
    const { image, digest, requests, events } = await fetchFaulty('drops.img', [
      { drop: 100_000 },
      { drop: MiB },
      { drop: 2 * MiB + 3 },
    ]);
    expect(digest).toBe(sha256);
    expect(image.read(0, image.size).equals(body)).toBe(true);
    expect(requests.map((r) => r.headers.range)).toEqual([
      undefined,
      'bytes=100000-',
      `bytes=${MiB}-`,
      `bytes=${2 * MiB + 3}-`,
    ]);
    expect(
      requests.slice(1).every((r) => r.headers['if-range'] === '"v1"' && r.headers['x-token'] === 'tok-secret'),
    ).toBe(true);
    expect(events.filter((e) => e.kind === 'restart')).toEqual([]);
  });

  it('starts over, hash reset, when the image changed between attempts (ETag)', async () => {
    const { image, digest, events } = await fetchFaulty('changed.img', [
      { drop: MiB },
      { replace: other, etag: '"v2"' },
    ]);
    expect(image.read(0, image.size).equals(other)).toBe(true);
    expect(digest).toBe(createHash('sha256').update(other).digest('hex'));
    expect(events.some((e) => e.kind === 'restart')).toBe(true);
  });

  it('starts over when the server has no ranges', async () => {
    const { digest, requests } = await fetchFaulty(
      'noranges.img',
      [{ drop: MiB }, { drop: MiB / 2 }],
      {},
      { ranges: false },
    );
    expect(digest).toBe(sha256);
    // With Accept-Ranges: none it never even asks for a range.
    expect(requests.map((r) => r.headers.range)).toEqual([undefined, undefined, undefined]);
  });

  it('never accepts a 206 with the wrong Content-Range: starts over instead', async () => {
    const { image, digest, requests } = await fetchFaulty('wrongrange.img', [{ drop: MiB }, { wrongRange: 1 }]);
    expect(digest).toBe(sha256);
    expect(image.size).toBe(body.length);
    expect(requests.map((r) => r.headers.range)).toEqual([undefined, `bytes=${MiB}-`, undefined]);
  });

  it('resumes after a stall, once no byte came for the stall timeout', async () => {
    const { digest, requests } = await fetchFaulty('stall.img', [{ stall: MiB }], {
      timeouts: { connect: 5000, response: 5000, idle: 300 },
    });
    expect(digest).toBe(sha256);
    expect(requests[1]?.headers.range).toBe(`bytes=${MiB}-`);
  });

  it('retries 503 and 429, waiting as long as Retry-After says', async () => {
    const started = Date.now();
    const { digest, requests } = await fetchFaulty('busy.img', [
      { status: 503 },
      { status: 429, retryAfter: '1' },
      { status: 408 },
    ]);
    expect(digest).toBe(sha256);
    expect(requests).toHaveLength(4);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it('spreads its backoffs with jitter, yet waits exactly what Retry-After says', async () => {
    const retry = { attempts: 8, initialDelay: 40, maxDelay: 80, retryAfterCap: 2000 };
    const { digest, events } = await fetchFaulty(
      'jitter.img',
      [...Array.from({ length: 6 }, () => ({ status: 503 })), { status: 503, retryAfter: '1' }],
      { retry },
    );
    expect(digest).toBe(sha256);
    const delays = events.flatMap((e) => (e.kind === 'retry' ? [e.delayMs] : []));
    const ceilings = [40, 80, 80, 80, 80, 80];
    expect(delays).toHaveLength(7);
    delays.slice(0, 6).forEach((delay, i) => {
      expect(delay).toBeGreaterThanOrEqual(ceilings[i]! / 2);
      expect(delay).toBeLessThanOrEqual(ceilings[i]!);
    });
    // Five draws over [40, 80] all equal would mean no jitter.
    expect(new Set(delays.slice(1, 6)).size).toBeGreaterThan(1);
    expect(delays[6]).toBe(1000);
  });

  it('caps Retry-After', async () => {
    const started = Date.now();
    const { digest } = await fetchFaulty('later.img', [{ status: 429, retryAfter: '3600' }], {
      retry: { ...fast.retry, retryAfterCap: 50 },
    });
    expect(digest).toBe(sha256);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it.each([
    ['a 403', [{ status: 403 }], /HTTP 403/],
    ['a 404', [{ status: 404 }], /HTTP 404/],
  ])('fails at once on %s', async (name, faults, cause) => {
    const error = await failure(fetchFaulty(`fatal${name.slice(2)}.img`, faults as Fault[]));
    expect(error.message).toBe(`Could not download image located: ${server.url}/fatal${name.slice(2)}.img.`);
    expect(error.detail).toMatch(cause);
    expect(server.requests.filter((r) => r.path === `/fatal${name.slice(2)}.img`)).toHaveLength(1);
  });

  it('gives up on a server that keeps failing, after the attempts allowed', async () => {
    const error = await failure(
      fetchFaulty(
        'down.img',
        Array.from({ length: 10 }, () => ({ status: 503 })),
      ),
    );
    expect(error.detail).toMatch(/HTTP 503.*gave up after 4 attempts/);
  });

  it('never passes a body shorter than its Content-Length, even when it keeps lying', async () => {
    const error = await failure(
      fetchFaulty(
        'liar.img',
        Array.from({ length: 10 }, () => ({ lie: 1000 })),
      ),
    );
    expect(error.message).toBe(`Could not download image located: ${server.url}/liar.img.`);
    expect(error.detail).toMatch(/gave up/);
  });

  it('survives one lie about Content-Length by resuming', async () => {
    const { digest } = await fetchFaulty('onelie.img', [{ lie: 1000 }]);
    expect(digest).toBe(sha256);
  });

  it('fails on a redirect loop without retrying it', async () => {
    server.serve('/loop.img', { mode: 'redirect', location: '/loop.img' });
    const error = await failure(
      download({ url: `${server.url}/loop.img`, headers: {}, type: 'raw', budget: 1e9, ...fast, maxRedirects: 3 }),
    );
    expect(error.message).toBe(`Could not download image located: ${server.url}/loop.img.`);
    expect(error.detail).toMatch(/redirect/i);
    // The first answer, a redirect, sends the download from the raw path to got: one request more,
    // then got's own 1 + 3 redirects, and no retry.
    expect(server.requests.filter((r) => r.path === '/loop.img')).toHaveLength(5);
  });

  it('follows a bounded chain of redirects', async () => {
    server.serve('/hop.img', { mode: 'redirect', location: '/plain.img' });
    const { digest } = await download({
      url: `${server.url}/hop.img`,
      headers: {},
      type: 'raw',
      budget: 1e9,
      checksumType: 'sha256',
      ...fast,
    });
    expect(digest).toBe(sha256);
  });

  it('fails once the overall deadline passes', async () => {
    const error = await failure(fetchFaulty('slow.img', [{ stall: MiB }], { deadline: 400 }));
    expect(error.detail).toMatch(/did not finish within 0 s \(\d+ of \d+ bytes received\)|did not finish within/);
  });
});

describe('download over several connections (segments)', () => {
  const MiB = 1024 * 1024;
  // Just above SEGMENTED_MIN_BYTES: segments of whole MiB, the last one shorter.
  const big = randomBytes(SEGMENTED_MIN_BYTES + 17);
  const bigSha = createHash('sha256').update(big).digest('hex');
  const other = randomBytes(big.length);
  const plan = planSegments(big.length, 4, 16 * MiB);
  const segment = plan[1]!.start;

  async function fetchSegmented(
    name: string,
    serving: { faults?: Fault[]; byStart?: Record<number, Fault[]>; ranges?: boolean; body?: Buffer },
    options: Partial<Parameters<typeof download>[0]> = {},
  ) {
    server.serve(`/${name}`, {
      body: serving.body ?? big,
      mode: 'faulty',
      faults: serving.faults ?? [],
      ...(serving.byStart && { byStart: serving.byStart }),
      ...(serving.ranges === false && { ranges: false }),
    });
    const events: DownloadEvent[] = [];
    const progress: number[] = [];
    const result = await download({
      url: `${server.url}/${name}`,
      headers: { 'X-Token': 'tok-secret' },
      type: 'raw',
      budget: 1e9,
      checksumType: 'sha256',
      connections: 4,
      ...fast,
      onEvent: (e) => events.push(e),
      onProgress: (done) => progress.push(done),
      ...options,
    });
    const requests = server.requests.filter((r) => r.path === `/${name}`);
    return { ...result, events, requests, progress };
  }
  const ranges = (requests: { headers: { range?: string } }[]) =>
    requests
      .map((r) => r.headers.range)
      .filter((r) => r !== undefined)
      .sort();

  it('fetches a large image as ranges over several connections, hashed once and in order', async () => {
    const { image, digest, requests, events, progress } = await fetchSegmented('seg.img', {});
    expect(digest).toBe(bigSha);
    expect(image.size).toBe(big.length);
    expect(image.read(0, image.size).equals(big)).toBe(true);
    expect(requests[0]!.headers.range).toBeUndefined();
    expect(plan.length).toBeGreaterThan(4);
    expect(plan.every((s, i) => s.start === (i === 0 ? 0 : plan[i - 1]!.end) && s.end > s.start)).toBe(true);
    expect(plan.at(-1)!.end).toBe(big.length);
    expect(ranges(requests.slice(1))).toEqual(plan.map((s) => `bytes=${s.start}-${s.end - 1}`).sort());
    expect(
      requests.slice(1).every((r) => r.headers['if-range'] === '"v1"' && r.headers['x-token'] === 'tok-secret'),
    ).toBe(true);
    expect(events).toEqual([]);
    expect(progress.at(-1)).toBe(big.length);
  });

  it('resumes a range cut off mid-way (several times) where it stopped', async () => {
    const [cut1, cut2] = [segment + MiB + 5, segment + 2 * MiB + 1];
    const { image, digest, requests, events } = await fetchSegmented('segdrop.img', {
      byStart: { [segment]: [{ drop: cut1 }], [cut1]: [{ drop: cut2 }] },
    });
    expect(digest).toBe(bigSha);
    expect(image.read(0, image.size).equals(big)).toBe(true);
    expect(ranges(requests)).toContain(`bytes=${cut1}-${plan[2]!.start - 1}`);
    expect(ranges(requests)).toContain(`bytes=${cut2}-${plan[2]!.start - 1}`);
    expect(
      events
        .filter((e) => e.kind === 'retry')
        .map((e) => e.kind === 'retry' && e.resumeFrom)
        .sort(),
    ).toEqual([cut1, cut2]);
    expect(events.some((e) => e.kind === 'restart')).toBe(false);
  });

  it('never takes a 206 with the wrong Content-Range: starts over on one connection', async () => {
    const { image, digest, requests, events } = await fetchSegmented('segwrong.img', {
      byStart: { [plan[2]!.start]: [{ wrongRange: 1 }] },
    });
    expect(digest).toBe(bigSha);
    expect(image.read(0, image.size).equals(big)).toBe(true);
    expect(events.some((e) => e.kind === 'restart' && /Content-Range.*one connection/.test(e.reason))).toBe(true);
    // The last request is the single connection's whole GET.
    expect(requests.at(-1)!.headers.range).toBeUndefined();
  });

  it('starts over on one connection, digest reset, when the image changes between ranges (ETag)', async () => {
    const { image, digest, events } = await fetchSegmented('segchanged.img', {
      byStart: { [plan[5]!.start]: [{ replace: other, etag: '"v2"' }] },
    });
    expect(image.read(0, image.size).equals(other)).toBe(true);
    expect(digest).toBe(createHash('sha256').update(other).digest('hex'));
    expect(events.some((e) => e.kind === 'restart' && /changed/.test(e.reason))).toBe(true);
  });

  it('retries a range answered 503, and resumes a stalled one', async () => {
    const { digest, events } = await fetchSegmented(
      'segbusy.img',
      { byStart: { 0: [{ status: 503 }], [plan[2]!.start]: [{ stall: plan[2]!.start + 1000 }] } },
      { timeouts: { connect: 5000, response: 5000, idle: 300 } },
    );
    expect(digest).toBe(bigSha);
    expect(events.filter((e) => e.kind === 'retry')).toHaveLength(2);
  });

  it('gives up, in the documented words, on a range that keeps failing', async () => {
    const error = await failure(
      fetchSegmented('segdown.img', { byStart: { [segment]: Array.from({ length: 10 }, () => ({ status: 503 })) } }),
    );
    expect(error.message).toBe(`Could not download image located: ${server.url}/segdown.img.`);
    expect(error.detail).toMatch(/HTTP 503.*gave up after 4 attempts/);
  });

  it('fails at the overall deadline with a stalled range, counting the bytes the segments hold', async () => {
    const error = await failure(
      fetchSegmented(
        'segslow.img',
        { byStart: { [plan[1]!.start]: [{ stall: plan[1]!.start + 10 }] } },
        { deadline: 1500 },
      ),
    );
    expect(error.message).toBe(`Could not download image located: ${server.url}/segslow.img.`);
    const held = Number(/\((\d+) of (\d+) bytes received\)/.exec(error.detail ?? '')?.[1]);
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThan(big.length);
  });

  it('splits a large image at chunk boundaries, so that joining the segments copies nothing', () => {
    const segments = planSegments(2 * 1024 * MiB + 5, 4, 16 * MiB);
    expect(segments.length).toBeGreaterThanOrEqual(12);
    expect(segments.length).toBeLessThanOrEqual(17);
    expect(
      segments.every((s, i) => s.start % (16 * MiB) === 0 && s.start === (i === 0 ? 0 : segments[i - 1]!.end)),
    ).toBe(true);
    expect(segments.at(-1)!.end).toBe(2 * 1024 * MiB + 5);
  });

  it('stays on one connection for a server without ranges or an image below the threshold', async () => {
    const noRanges = await fetchSegmented('segnoranges.img', { ranges: false });
    expect(noRanges.digest).toBe(bigSha);
    expect(noRanges.requests).toHaveLength(1);
    const small = await fetchSegmented('segsmall.img', { body: big.subarray(0, SEGMENTED_MIN_BYTES - 1) });
    expect(small.image.size).toBe(SEGMENTED_MIN_BYTES - 1);
    expect(small.requests).toHaveLength(1);
  });
});

describe('download through https and proxies', () => {
  it('trusts an extra CA given as a file, and fails at once without it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'byoi-tls-'));
    try {
      await execa('openssl', [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ]);
      const cert = readFileSync(join(dir, 'cert.pem'), 'utf8');
      let hits = 0;
      const tls = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert }, (_req, res) => {
        hits += 1;
        res.writeHead(200, { 'content-length': body.length }).end(body);
      });
      await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
      const url = `https://127.0.0.1:${(tls.address() as AddressInfo).port}/x.img`;
      try {
        const error = await failure(download({ url, headers: {}, type: 'raw', budget: 1e9, ...fast }));
        expect(error.detail).toMatch(/self[- ]signed|certificate/i);
        expect(hits).toBe(0);
        const { digest } = await download({
          url,
          headers: {},
          type: 'raw',
          budget: 1e9,
          checksumType: 'sha256',
          ...fast,
          ca: cert,
        });
        expect(digest).toBe(sha256);
      } finally {
        tls.closeAllConnections();
        await new Promise((resolve) => tls.close(resolve));
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('goes through HTTP_PROXY, except for hosts in NO_PROXY', async () => {
    const proxied: string[] = [];
    const proxy = createHttpServer((req, res) => {
      proxied.push(req.url ?? '');
      const upstream = httpRequest(req.url!, { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode!, answer.headers);
        answer.pipe(res);
      });
      req.pipe(upstream);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY };
    try {
      process.env.HTTP_PROXY = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      delete process.env.NO_PROXY;
      const { digest } = await download({
        url: `${server.url}/plain.img`,
        headers: {},
        type: 'raw',
        budget: 1e9,
        checksumType: 'sha256',
        ...fast,
      });
      expect(digest).toBe(sha256);
      expect(proxied).toEqual([`${server.url}/plain.img`]);
      process.env.NO_PROXY = '127.0.0.1';
      await download({ url: `${server.url}/plain.img`, headers: {}, type: 'raw', budget: 1e9, ...fast });
      expect(proxied).toHaveLength(1);
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
      proxy.closeAllConnections();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });
});
