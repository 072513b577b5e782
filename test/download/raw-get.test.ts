// The raw GET (lib/download/raw-get.ts) against a TCP server that answers by hand: heads and bodies
// cut anywhere, interim answers, framings it must leave to got, hostile heads, stalls and cuts.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawGet, rawUnsupported, type RawGet } from '../../lib/download/raw-get.ts';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { makeLabCertificate } from '../helpers/tls.ts';

type Answer = (socket: Socket, request: string) => void | Promise<void>;

const body = randomBytes(300_000);
const answers = new Map<string, Answer>();
let server: Server;
let port: number;

beforeAll(async () => {
  server = createServer((socket) => {
    let request = '';
    socket.on('data', (data) => {
      request += data.toString('latin1');
      if (!request.includes('\r\n\r\n')) return;
      const path = /^GET (\S+) HTTP\/1\.1\r\n/.exec(request)?.[1] ?? '';
      void answers.get(path)?.(socket, request);
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});
afterAll(() => server.close());

const timeouts = { connect: 2000, response: 2000, idle: 300 };

function get(
  path: string,
  headers: Record<string, string> = {},
  signal = new AbortController().signal,
): Promise<RawGet> {
  return rawGet(new URL(`http://127.0.0.1:${port}${path}`), headers, { timeouts, signal, ca: () => [] });
}

/** Reads the answer's body into chunks of 64 KiB + 1 (so that reads straddle chunk boundaries). */
async function bodyOf(answer: RawGet): Promise<Buffer> {
  if ('unsupported' in answer) throw new Error(`unsupported: ${answer.unsupported}`);
  const image = new ChunkedBuffer(64 * 1024 + 1);
  await answer.body({ room: (most) => image.room(most), grow: (n) => image.grow(n) });
  return image.read(0, image.size);
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const head = (length: number, extra = '') => `HTTP/1.1 200 OK\r\nContent-Length: ${length}\r\n${extra}\r\n`;

describe('raw GET', () => {
  it('reads a body sent with its head in one write, and one cut at odd places', async () => {
    answers.set('/whole', (socket) => void socket.end(Buffer.concat([Buffer.from(head(body.length)), body])));
    expect((await bodyOf(await get('/whole'))).equals(body)).toBe(true);

    // An interim answer, then the head and body cut at odd places, a pause between the pieces.
    answers.set('/pieces', async (socket) => {
      const all = Buffer.concat([
        Buffer.from('HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n'),
        Buffer.from(head(body.length)),
        body,
      ]);
      let at = 0;
      for (const cut of [7, 30, 50, 61, 1000, 70_000, 200_001, all.length]) {
        socket.write(all.subarray(at, cut));
        at = cut;
        await pause(5);
      }
      socket.end();
    });
    const answer = await get('/pieces');
    expect('head' in answer && answer.head.statusCode).toBe(200);
    expect((await bodyOf(answer)).equals(body)).toBe(true);
  });

  it('takes exactly Content-Length bytes, whatever follows them', async () => {
    answers.set('/more', (socket) => void socket.end(Buffer.concat([Buffer.from(head(1000)), body])));
    expect((await bodyOf(await get('/more'))).equals(body.subarray(0, 1000))).toBe(true);
  });

  it('sends the headers asked for, its own name, identity coding and Connection: close', async () => {
    let seen = '';
    answers.set('/headers', (socket, request) => {
      seen = request;
      socket.end(head(0));
    });
    await bodyOf(await get('/headers', { 'X-Token': 'secret', Range: 'bytes=1-', range: 'bytes=5-', 'X-A': 'é' }));
    expect(seen.match(/range:/gi)).toHaveLength(1); // one header whatever the case, the last given
    expect(Buffer.from(seen, 'latin1').includes(Buffer.from('X-A: \xe9\r\n', 'latin1'))).toBe(true); // latin1, as Node writes it
    expect(seen).toMatch(/^GET \/headers HTTP\/1\.1\r\nHost: 127\.0\.0\.1:\d+\r\n/);
    expect(seen).toContain('\r\nX-Token: secret\r\n');
    expect(seen).toMatch(/\r\nrange: bytes=5-\r\n/i);
    expect(seen).toContain('\r\nUser-Agent: byoi\r\n');
    expect(seen).toContain('\r\nAccept-Encoding: identity\r\n');
    expect(seen).toContain('\r\nConnection: close\r\n');
  });

  it('refuses a header that would split the request, before connecting', async () => {
    await expect(get('/headers', { 'X-Token': 'a\r\nX-Evil: 1' })).rejects.toThrow(/Invalid character/);
    await expect(get('/headers', { 'X Bad': 'a' })).rejects.toThrow(/Header name/);
  });

  it('leaves to got what it does not frame: redirects, chunked, close-delimited, conflicting lengths', async () => {
    const cases: [string, string, RegExp][] = [
      ['/redirect', 'HTTP/1.1 302 Found\r\nLocation: /whole\r\nContent-Length: 0\r\n\r\n', /redirect/],
      ['/chunked', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n', /Transfer-Encoding/],
      ['/close', 'HTTP/1.1 200 OK\r\n\r\nuntil the end', /no Content-Length/],
      ['/two', 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', /Content-Length/],
      ['/sign', 'HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello', /Content-Length/],
      ['/list', 'HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello', /Content-Length/],
    ];
    for (const [path, answer, reason] of cases) {
      answers.set(path, (socket) => void socket.end(answer));
      const got = await get(path);
      expect('unsupported' in got && got.unsupported, path).toMatch(reason);
    }
  });

  it('gives an error answer its head without reading its body', async () => {
    answers.set(
      '/503',
      (socket) => void socket.end('HTTP/1.1 503 Busy\r\nRetry-After: 7\r\n\r\nno body framing at all'),
    );
    const answer = await get('/503');
    if ('unsupported' in answer) throw new Error('unsupported');
    expect(answer.head).toEqual({ statusCode: 503, statusMessage: 'Busy', headers: { 'retry-after': '7' } });
    expect(answer.length).toBe(0);
    answer.close();
  });

  it('refuses a malformed or oversized head', async () => {
    answers.set('/status', (socket) => void socket.end('HTTP/2 200 OK\r\n\r\n'));
    await expect(get('/status')).rejects.toThrow(/malformed status line/);
    answers.set(
      '/fold',
      (socket) => void socket.end('HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n'),
    );
    // Named by its number, never quoted: a hostile server could echo a job header into the log.
    await expect(get('/fold')).rejects.toThrow(/^malformed header line 3$/);
    answers.set('/huge', (socket) => void socket.end(`HTTP/1.1 200 OK\r\nX-A: ${'a'.repeat(70_000)}\r\n\r\n`));
    await expect(get('/huge')).rejects.toThrow(/larger than/);
  });

  it('fails a body cut short, a stalled body and a silent server, and stops when told', async () => {
    answers.set(
      '/cut',
      (socket) => void socket.end(Buffer.concat([Buffer.from(head(body.length)), body.subarray(0, 1000)])),
    );
    await expect(bodyOf(await get('/cut'))).rejects.toThrow(/aborted/);

    answers.set(
      '/stall',
      (socket) => void socket.write(Buffer.concat([Buffer.from(head(body.length)), body.subarray(0, 1000)])),
    );
    await expect(bodyOf(await get('/stall'))).rejects.toThrow(/Timeout awaiting 'socket' for 300ms/);

    answers.set('/silent', () => undefined);
    const silent = rawGet(
      new URL(`http://127.0.0.1:${port}/silent`),
      {},
      {
        timeouts: { ...timeouts, response: 200 },
        signal: new AbortController().signal,
        ca: () => [],
      },
    );
    await expect(silent).rejects.toThrow(/Timeout awaiting 'response' for 200ms/);

    const stop = new AbortController();
    const stalled = await get('/stall', {}, stop.signal);
    const reading = bodyOf(stalled);
    stop.abort(new Error('cancelled'));
    await expect(reading).rejects.toThrow('cancelled');
  });

  it('is for plain http(s) URLs without credentials, a proxy or a header that frames the exchange', () => {
    const url = new URL('http://example.com/x');
    expect(rawUnsupported(url, {}, {})).toBeUndefined();
    expect(rawUnsupported(new URL('https://example.com/x'), {}, { HTTP_PROXY: 'http://p:3128' })).toBeUndefined();
    expect(rawUnsupported(url, {}, { http_proxy: 'http://p:3128' })).toMatch(/proxy/);
    expect(rawUnsupported(new URL('https://example.com/x'), {}, { HTTPS_PROXY: 'http://p:3128' })).toMatch(/proxy/);
    expect(rawUnsupported(new URL('http://u:p@example.com/x'), {}, {})).toMatch(/credentials/);
    expect(rawUnsupported(new URL('ftp://example.com/x'), {}, {})).toMatch(/ftp/);
    for (const name of ['Host', 'connection', 'Transfer-Encoding', 'Content-Length', 'Upgrade'])
      expect(rawUnsupported(url, { [name]: 'x' }, {})).toMatch(name);
    expect(rawUnsupported(url, { Authorization: 'Bearer x', 'X-Token': 'y' }, {})).toBeUndefined();
  });

  it('keeps the first of a repeated single-valued header, as Node does, and joins the others', async () => {
    answers.set(
      '/repeated',
      (socket) =>
        void socket.end(
          'HTTP/1.1 200 OK\r\nETag: "a"\r\nETag: "b"\r\nVary: x\r\nVary: y\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok',
        ),
    );
    const answer = await get('/repeated');
    if ('unsupported' in answer) throw new Error('unsupported');
    expect(answer.head.headers).toMatchObject({ etag: '"a"', vary: 'x, y', 'content-length': '2' });
    expect((await bodyOf(answer)).toString()).toBe('ok');
  });

  it('skips empty lines before the status line, and refuses control characters in a value', async () => {
    answers.set('/crlf', (socket) => void socket.end(`\r\n\r\n${head(2)}ok`));
    expect((await bodyOf(await get('/crlf'))).toString()).toBe('ok');
    answers.set(
      '/control',
      (socket) => void socket.end('HTTP/1.1 200 OK\r\nETag: "a\x01"\r\nContent-Length: 0\r\n\r\n'),
    );
    await expect(get('/control')).rejects.toThrow(/malformed header line/);
  });

  it('fails the exchange, not the process, when the sink throws', async () => {
    answers.set('/sink', (socket) => void socket.end(Buffer.concat([Buffer.from(head(body.length)), body])));
    const answer = await get('/sink');
    if ('unsupported' in answer) throw new Error('unsupported');
    const image = new ChunkedBuffer(64 * 1024);
    let grown = 0;
    const reading = answer.body({
      room: (most) => image.room(most),
      grow: (n) => {
        image.grow(n);
        if ((grown += n) > 100_000) throw new Error('the sink is full');
      },
    });
    await expect(reading).rejects.toThrow('the sink is full');
  });

  it('settles a body being read when the exchange is closed', async () => {
    answers.set(
      '/slow',
      (socket) => void socket.write(Buffer.concat([Buffer.from(head(body.length)), body.subarray(0, 10)])),
    );
    const answer = await get('/slow');
    if ('unsupported' in answer) throw new Error('unsupported');
    const reading = bodyOf(answer);
    answer.close();
    await expect(reading).rejects.toThrow(/closed/);
  });
});

describe('raw GET over TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-raw-tls-'));
  let tlsServer: TlsServer;
  let tlsPort: number;
  const big = randomBytes(4 * 1024 * 1024 + 3);

  beforeAll(async () => {
    makeLabCertificate(join(dir, 'cert.pem'), join(dir, 'key.pem'));
    tlsServer = createTlsServer(
      { cert: readFileSync(join(dir, 'cert.pem')), key: readFileSync(join(dir, 'key.pem')) },
      (socket) => {
        socket.once('data', () => void socket.end(Buffer.concat([Buffer.from(head(big.length)), big])));
        socket.on('error', () => undefined);
      },
    );
    await new Promise<void>((resolve) => tlsServer.listen(0, '127.0.0.1', resolve));
    tlsPort = (tlsServer.address() as AddressInfo).port;
  });
  afterAll(() => {
    tlsServer.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const tlsGet = (ca: string[]) =>
    rawGet(
      new URL(`https://127.0.0.1:${tlsPort}/big`),
      {},
      { timeouts, signal: new AbortController().signal, ca: () => ca },
    );

  it('reads every byte into the sink, even when the body is asked for late (TLS hands over decrypted records while paused)', async () => {
    const ca = [readFileSync(join(dir, 'cert.pem'), 'utf8')];
    expect((await bodyOf(await tlsGet(ca))).equals(big)).toBe(true);
    const late = await tlsGet(ca);
    await pause(50);
    expect((await bodyOf(late)).equals(big)).toBe(true);
  });

  it('puts nothing more in a sink once it threw, not even the bytes kept while waiting', async () => {
    const late = await tlsGet([readFileSync(join(dir, 'cert.pem'), 'utf8')]);
    await pause(50); // TLS records arrive meanwhile and are kept
    let calls = 0;
    const reading =
      'body' in late
        ? late.body({
            room: () => {
              calls += 1;
              throw new RangeError('Array buffer allocation failed');
            },
            grow: () => undefined,
          })
        : Promise.reject(new Error('unsupported'));
    await expect(reading).rejects.toThrow('Array buffer allocation failed');
    expect(calls).toBe(1);
  });

  it('refuses a certificate it does not trust', async () => {
    await expect(tlsGet([])).rejects.toMatchObject({ code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
  });
});
