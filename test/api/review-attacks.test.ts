// A security review of every route `byoi serve` answers (issues 13, 16, 17 merged), on 127.0.0.1:
// each case is a finding, failing before its fix.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { parseConfig, type ApiConfig } from '../../lib/api/config.ts';
import type { ApiOptions } from '../../lib/api/context.ts';
import { notFound, notProvisioningNetwork, rangeNotSatisfiable } from '../../lib/errors.ts';
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
  rawExchange(
    port,
    (socket) =>
      void socket.write(requestText(method, path, { 'content-type': contentType, 'content-length': 8 * 1024 * 1024 })),
    { timeoutMs: 3000 },
  );

describe('no body is read for a stranger', () => {
  for (const path of [
    '/no/such/route',
    '/dedicated/server/ns1.lab/nothing',
    '/boot/v1/ipxe',
    '/agent/v1/servers/ns1.lab/nothing',
  ]) {
    it(`POST ${path} (no route) is answered 404 without waiting for its body`, async () => {
      const { port } = await start();
      const answer = await announce(port, 'POST', path);
      expect(answer.status).toBe(404);
      expect(JSON.parse(answer.body)).toEqual({ class: 'Client::NotFound', message: notFound().message });
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

describe('netboot scripts are answered on the provisioning network only (netboot.clients)', () => {
  const netboot = { kernel: '/nonexistent/vmlinuz', initrd: '/nonexistent/initrd.img' };
  const body = { URL: 'https://user:url-secret@images.example/disk.raw', type: 'raw' };

  async function waiting(clients?: string[]) {
    const cfg: ApiConfig = { ...config, netboot: { ...netboot, ...(clients && { clients }) } };
    const test = await start(cfg);
    const posted = await fetch(`${test.url}/dedicated/server/ns1.lab/bringYourOwnImage`, {
      method: 'POST',
      headers: { authorization: `Bearer ${aliceKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(posted.status).toBe(200);
    return test;
  }

  it('a client outside them gets no script, no token, and burns no boot', async () => {
    const test = await waiting(['10.0.0.0/8', 'fd00::/8']);
    for (const path of [
      '/boot/v1/servers/ns1.lab/ipxe',
      '/boot/v1/mac/52:54:00:12:34:56/ipxe',
      '/boot/v1/ipxe',
      '/boot/v1/rescue/kernel',
    ]) {
      const answer = await fetch(`${test.url}${path}`);
      expect(answer.status).toBe(403);
      const text = await answer.text();
      expect(JSON.parse(text)).toEqual({ class: 'Client::Forbidden', message: notProvisioningNetwork().message });
      expect(text).not.toMatch(/byoi\.token/);
    }
    expect((await fetch(`${test.url}/boot/v1/servers/ns1.lab/ipxe`, { method: 'HEAD' })).status).toBe(403);
    const deployment = await test.store.current('ns1.lab');
    expect(deployment?.status).toBe('doing');
    expect(deployment?.boots).toBe(0);
  });

  it('a client inside them gets its script with a one-boot token', async () => {
    const test = await waiting(['127.0.0.0/8']);
    const answer = await fetch(`${test.url}/boot/v1/mac/52-54-00-12-34-56/ipxe`);
    expect(answer.status).toBe(200);
    expect(await answer.text()).toMatch(/byoi\.token=[0-9a-f]{64}/);
    expect((await test.store.current('ns1.lab'))?.boots).toBe(1);
  });

  it('the config refuses what is not an address or a network', async () => {
    for (const clients of [['10.0.0.0/33'], ['not-an-address'], [''], 'everyone', [7]]) {
      expect(() => parseConfig({ ...config, netboot: { ...netboot, clients } }, 'lab.json')).toThrow(
        /netboot\.clients/,
      );
    }
    expect(
      parseConfig(
        { ...config, netboot: { ...netboot, clients: ['192.0.2.7', '10.1.0.0/16', '2001:db8::/32'] } },
        'lab.json',
      ).netboot?.clients,
    ).toHaveLength(3);
  });
});

describe('connections are bounded in number', () => {
  it('a client holding open connections cannot make the server take more than maxConnections', async () => {
    const { connect } = await import('node:net');
    const { port, url } = await start(config, { limits: { maxConnections: 4 } });
    const held = await Promise.all(
      Array.from(
        { length: 4 },
        () =>
          new Promise<import('node:net').Socket>((resolve) => {
            const socket = connect(port, '127.0.0.1', () => resolve(socket));
          }),
      ),
    );
    // The server refuses the next connection at once, rather than taking file descriptors without end.
    const refused = await rawExchange(port, (socket) => void socket.write(requestText('GET', '/boot/v1/ipxe', {})), {
      timeoutMs: 2000,
    });
    expect(refused.status).toBeUndefined();
    expect(refused.closed).toBe(true);
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await fetch(`${url}/boot/v1/ipxe`)).status).toBe(200);
  });
});

describe('the rescue files answer an impossible range OVH-shaped', () => {
  it('416 with {class, message}', async () => {
    const { writeFileSync } = await import('node:fs');
    const kernel = join(dir, 'vmlinuz');
    writeFileSync(kernel, Buffer.alloc(1000));
    const test = await start({ ...config, netboot: { kernel, initrd: kernel } });
    const answer = await fetch(`${test.url}/boot/v1/rescue/kernel`, { headers: { range: 'bytes=5000-' } });
    expect(answer.status).toBe(416);
    expect(answer.headers.get('content-range')).toBe('bytes */1000');
    expect(await answer.json()).toEqual({ class: 'Client::BadRequest', message: rangeNotSatisfiable().message });
  });
});
