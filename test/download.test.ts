import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { download } from '../lib/download.ts';
import { ByoiError } from '../lib/errors.ts';
import { closedPort, startServer, type TestServer } from './helpers/http.ts';

const body = randomBytes(3 * 1024 * 1024 + 17);
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
    const { image } = await download({ url: `${server.url}/auth.img`, headers: { 'X-Token': 'secret-token-value' }, type: 'raw', budget: 1e9 });
    expect(image.size).toBe(body.length);
  });

  it('refuses a Content-Length above the budget', async () => {
    const error = await failure(download({ url: `${server.url}/plain.img`, headers: {}, type: 'qcow2', budget: body.length - 1 }));
    expect(error.message).toBe('Could not download, qcow2 image is too big to download in memory.');
  });

  it('enforces the budget without Content-Length', async () => {
    const error = await failure(download({ url: `${server.url}/chunked.img`, headers: {}, type: 'raw', budget: 1024 * 1024 }));
    expect(error.message).toBe('Could not download, raw image is too big to download in memory.');
  });

  it('takes a body without Content-Length', async () => {
    const { digest } = await download({ url: `${server.url}/chunked.img`, headers: {}, type: 'raw', budget: 1e9, checksumType: 'sha256' });
    expect(digest).toBe(sha256);
  });

  it.each([
    ['a 404', '/missing.img', /404/],
    ['a 500', '/error.img', /500/],
    ['a truncated body', '/cut.img', /.+/],
    ['a missing header', '/auth.img', /401/],
  ])('fails on %s with the URL and the cause', async (_name, path, cause) => {
    const error = await failure(download({ url: `${server.url}${path}`, headers: {}, type: 'raw', budget: 1e9 }));
    expect(error.message).toBe(`Could not download image located: ${server.url}${path}.`);
    expect(error.kind).toBe('failed');
    expect(error.detail).toMatch(cause);
  });

  it('fails on a refused connection', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/x.img`;
    const error = await failure(download({ url, headers: {}, type: 'raw', budget: 1e9 }));
    expect(error.message).toBe(`Could not download image located: ${url}.`);
    expect(error.detail).toMatch(/ECONNREFUSED/);
  });

  it('redacts credentials and query tokens from the URL it shows', async () => {
    const url = `http://user:hunter22@127.0.0.1:${await closedPort()}/x.img?token=abcdef123&v=2`;
    const error = await failure(download({ url, headers: {}, type: 'raw', budget: 1e9 }));
    expect(error.message).not.toMatch(/hunter22|abcdef123|user/);
    expect(error.message).toMatch(/^Could not download image located: http:\/\/\*\*\*@127\.0\.0\.1:\d+\/x\.img\?token=\*\*\*&v=\*\*\*\.$/);
  });
});
