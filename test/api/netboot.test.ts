// The servers' network boot, from `byoi serve` as a process: iPXE scripts by serviceName and by MAC
// from the store's state (disk, deploy with a one-time token, rescue), the rescue kernel and initrd
// with Range, and a log in which no token ever appears.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { noSuchMac } from '../../lib/errors.ts';
import { call } from '../helpers/api.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'byoi-netboot-'));
const key = 'key-alice-6c1f0a9e4b7d2385f0e1a2b3c4d5e6f7';
const publicUrl = 'http://10.0.2.2:8080';
const mac = '52:54:00:b0:01:17';
const kernel = randomBytes(300_000);
const initrd = randomBytes(100_000);

describe('netboot', () => {
  let url = '';
  let output = '';
  let stop: () => Promise<number | null> = async () => null;
  const tokens: string[] = [];

  beforeAll(async () => {
    writeFileSync(join(dir, 'vmlinuz'), kernel);
    writeFileSync(join(dir, 'initrd.img'), initrd);
    const config = join(dir, 'lab.json');
    writeFileSync(
      config,
      JSON.stringify({
        publicUrl,
        netboot: {
          kernel: join(dir, 'vmlinuz'),
          initrd: join(dir, 'initrd.img'),
          cmdline: 'console=ttyS0,115200',
          rescueCmdline: 'rescue.ssh=on',
        },
        servers: [{ serviceName: 'ns1.lab', apiKeys: [key], macs: [mac.toUpperCase()] }],
      }),
    );
    const child = spawn(
      process.execPath,
      [
        join(repo, 'agent/byoi.ts'),
        'serve',
        '--config',
        config,
        '--listen',
        '127.0.0.1:0',
        '--db',
        join(dir, 'api.sqlite'),
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    url = await new Promise((resolve, reject) => {
      child.stderr.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        const match = /listening on (http:\/\/\S+)/.exec(output);
        if (match) resolve(match[1]!);
      });
      void exited.then((code) => reject(new Error(`byoi serve exited ${code}: ${output}`)));
    });
    stop = () => (child.kill('SIGTERM'), exited);
  });
  afterAll(async () => {
    await stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const script = async (path: string) => {
    const response = await fetch(`${url}${path}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const text = await response.text();
    expect(text.startsWith('#!ipxe\n')).toBe(true);
    return text;
  };
  const byName = () => script('/boot/v1/servers/ns1.lab/ipxe');
  const byMac = () => script(`/boot/v1/mac/${mac}/ipxe`);
  const tokenOf = (text: string) => {
    const token = /byoi\.token=([0-9a-f]{64})(\s|$)/.exec(text)?.[1];
    if (token) tokens.push(token);
    return token;
  };

  it("chains from the DHCP entry point to the script of the NIC's MAC; unknown MACs and servers are refused OVH's way", async () => {
    expect(await script('/boot/v1/ipxe')).toContain(
      `chain --autofree ${publicUrl}/boot/v1/mac/\${net0/mac}/ipxe || exit 1`,
    );
    expect(await call(url, 'GET', '/boot/v1/mac/52:54:00:00:00:99/ipxe')).toEqual({
      status: 404,
      body: { class: 'Client::NotFound', message: noSuchMac('52:54:00:00:00:99').message },
    });
    expect((await call(url, 'GET', '/boot/v1/servers/ns9.lab/ipxe')).status).toBe(404);
  });

  it('sends a server with nothing to do to its disk (BIOS: sanboot, UEFI: back to the firmware)', async () => {
    for (const text of [await byName(), await byMac(), await script(`/boot/v1/mac/${mac.replaceAll(':', '-')}/ipxe`)]) {
      expect(text).toContain('iseq ${platform} efi && exit 1 ||');
      expect(text).toContain('sanboot --no-describe --drive 0x80 || exit 1');
      expect(text).not.toContain('kernel ');
    }
  });

  it('boots a waiting deployment into the rescue with a token good for that boot only; after DELETE, rescue without a job', async () => {
    expect(
      (
        await call(url, 'POST', '/dedicated/server/ns1.lab/bringYourOwnImage', {
          key,
          body: { URL: 'http://images.lab/x.raw', type: 'raw' },
        })
      ).status,
    ).toBe(200);
    const first = await byMac();
    expect(first).toContain(
      `kernel ${publicUrl}/boot/v1/rescue/kernel initrd=initrd.img console=ttyS0,115200 byoi.server=${publicUrl} byoi.service=ns1.lab byoi.token=`,
    );
    expect(first).toContain(`initrd --name initrd.img ${publicUrl}/boot/v1/rescue/initrd`);
    const token = tokenOf(first)!;
    expect(token).toBeDefined();
    const job = await call(url, 'GET', '/agent/v1/servers/ns1.lab/job', { key: token });
    expect(job.status).toBe(200);
    const events = {
      events: [{ status: 'doing', message: 'Downloading image', phase: 'download', at: new Date().toISOString() }],
    };
    expect((await call(url, 'POST', '/agent/v1/servers/ns1.lab/events', { key: token, body: events })).status).toBe(
      200,
    );

    // The server boots again (a power cut): a new token; the last one is void.
    const second = tokenOf(await byName())!;
    expect(second).not.toBe(token);
    expect((await call(url, 'POST', '/agent/v1/servers/ns1.lab/events', { key: token, body: events })).status).toBe(
      403,
    );
    expect((await call(url, 'GET', '/agent/v1/servers/ns1.lab/job', { key: second })).status).toBe(200);

    expect((await call(url, 'DELETE', '/dedicated/server/ns1.lab/bringYourOwnImage', { key })).status).toBe(200);
    const rescue = await byMac();
    expect(rescue).toContain(
      `kernel ${publicUrl}/boot/v1/rescue/kernel initrd=initrd.img console=ttyS0,115200 rescue.ssh=on byoi.rescue=1`,
    );
    expect(rescue).not.toContain('byoi.server=');
    expect(rescue).not.toContain('byoi.token=');
  });

  it('serves the kernel and the initrd, whole or by byte range', async () => {
    const get = (path: string, range?: string) => fetch(`${url}${path}`, { headers: range ? { range } : {} });
    const whole = await get('/boot/v1/rescue/kernel');
    expect(whole.headers.get('accept-ranges')).toBe('bytes');
    expect(Buffer.from(await whole.arrayBuffer()).equals(kernel)).toBe(true);
    expect(Buffer.from(await (await get('/boot/v1/rescue/initrd')).arrayBuffer()).equals(initrd)).toBe(true);
    const part = await get('/boot/v1/rescue/kernel', 'bytes=1000-1999');
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe(`bytes 1000-1999/${kernel.length}`);
    expect(Buffer.from(await part.arrayBuffer()).equals(kernel.subarray(1000, 2000))).toBe(true);
    const tail = await get('/boot/v1/rescue/initrd', 'bytes=-10');
    expect(Buffer.from(await tail.arrayBuffer()).equals(initrd.subarray(-10))).toBe(true);
    const open = await get('/boot/v1/rescue/initrd', 'bytes=99990-');
    expect(Buffer.from(await open.arrayBuffer()).equals(initrd.subarray(99_990))).toBe(true);
    const beyond = await get('/boot/v1/rescue/kernel', `bytes=${kernel.length}-`);
    expect(beyond.status).toBe(416);
    expect(beyond.headers.get('content-range')).toBe(`bytes */${kernel.length}`);
    const head = await fetch(`${url}/boot/v1/rescue/kernel`, { method: 'HEAD' });
    expect(head.headers.get('content-length')).toBe(String(kernel.length));
    expect((await get('/boot/v1/rescue/other')).status).toBe(404);
  });

  it('never logs a token, though it logs every request', async () => {
    expect(tokens.length).toBeGreaterThanOrEqual(2);
    expect(await stop()).toBe(0);
    expect(output).toContain('/boot/v1/servers/ns1.lab/ipxe');
    expect(output).toContain('/agent/v1/servers/ns1.lab/job');
    for (const token of tokens) expect(output).not.toContain(token);
    for (const token of tokens) expect(output).not.toContain(token.slice(0, 16));
  });
});
