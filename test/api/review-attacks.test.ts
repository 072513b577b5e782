// A security review of every route `byoi serve` answers (issues 13, 16, 17 merged), on 127.0.0.1:
// each case is a finding, failing before its fix.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { ApiConfig } from '../../lib/api/config.ts';
import type { ApiOptions } from '../../lib/api/context.ts';
import { apiMessages } from '../../lib/errors.ts';
import { RecordingBoot, startApi, type TestApi } from '../helpers/api.ts';
import { rawExchange, requestText } from '../helpers/raw-http.ts';

const aliceKey = 'alice-7f3e9a2c4b1d8e6f0a5c3b7d9e2f4a6c';
const config: ApiConfig = { servers: [{ serviceName: 'ns1.lab', apiKeys: [aliceKey], macs: ['52:54:00:12:34:56'] }] };

const dir = mkdtempSync(join(tmpdir(), 'byoi-review-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let api: TestApi | undefined;
let n = 0;
async function start(cfg: ApiConfig = config, extra: Partial<ApiOptions> = {}): Promise<TestApi> {
  api = await startApi(cfg, join(dir, `r-${n++}.sqlite`), new RecordingBoot(), 0, extra);
  return api;
}
afterEach(async () => {
  await api?.close();
  api = undefined;
});

/** A request announcing a large body and sending none of it: answered at once only if the body is never awaited. */
const announce = (port: number, method: string, path: string, contentType = 'application/json') =>
  rawExchange(port, (socket) => void socket.write(requestText(method, path, { 'content-type': contentType, 'content-length': 8 * 1024 * 1024 })), { timeoutMs: 3000 });

describe('no body is read for a stranger', () => {
  for (const path of ['/no/such/route', '/dedicated/server/ns1.lab/nothing', '/boot/v1/ipxe', '/agent/v1/servers/ns1.lab/nothing']) {
    it(`POST ${path} (no route) is answered 404 without waiting for its body`, async () => {
      const { port } = await start();
      const answer = await announce(port, 'POST', path);
      expect(answer.status).toBe(404);
      expect(JSON.parse(answer.body)).toEqual({ class: 'Client::NotFound', message: apiMessages.notFound });
    });
  }

  it('POST /panel/sign-in with a JSON body is refused without reading it', async () => {
    const { port } = await start();
    const answer = await announce(port, 'POST', '/panel/sign-in');
    expect(answer.status).toBe(415);
    expect(answer.headers).toMatch(/content-type: text\/html/i);
  });

  it('a page of the panel that does not exist is HTML, and the body is not waited for', async () => {
    const { port } = await start();
    const answer = await announce(port, 'POST', '/panel/nothing', 'application/x-www-form-urlencoded');
    expect(answer.status).toBe(404);
    expect(answer.headers).toMatch(/content-type: text\/html/i);
  });
});
