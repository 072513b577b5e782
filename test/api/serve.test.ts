// `byoi serve` as a process, its config file, and the boot adapter that runs each server's command.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandBootAdapter } from '../../lib/api/boot.ts';
import { parseConfig } from '../../lib/api/config.ts';
import { ByoiError, badConfig, bootFailed } from '../../lib/errors.ts';
import { call } from '../helpers/api.ts';
import { makeLabCertificate } from '../helpers/tls.ts';

/** A key the config parser takes (32 characters or more, not a pattern). */
const keyA = 'key-a-0f3a9c2e7b14d5688e1f2a3b4c5d6e7f';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'byoi-serve-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Starts `byoi serve`, resolving with its URL once it listens. */
function serve(args: string[]): Promise<{ url: string; stop: () => Promise<number | null> }> {
  const child = spawn(process.execPath, [join(repo, 'agent/byoi.ts'), 'serve', ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
      const match = /listening on (https?:\/\/\S+)/.exec(stderr);
      if (match) resolve({ url: match[1]!, stop: () => (child.kill('SIGTERM'), exited) });
    });
    void exited.then((code) => reject(new Error(`byoi serve exited ${code}: ${stderr}`)));
  });
}

describe('byoi serve', () => {
  it("serves the config's servers from its database, and keeps their state across a restart", async () => {
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({ servers: [{ serviceName: 'ns1.lab', apiKeys: [keyA], boot: { command: ['true'] } }] }),
    );
    const db = join(dir, 'serve.sqlite');
    const first = await serve(['--config', config, '--listen', '127.0.0.1:0', '--db', db]);
    const body = { URL: 'http://127.0.0.1:9/x.raw', type: 'raw' };
    expect(
      (await call(first.url, 'POST', '/dedicated/server/ns1.lab/bringYourOwnImage', { key: keyA, body })).status,
    ).toBe(200);
    expect(await first.stop()).toBe(0);
    const second = await serve(['--config', config, '--listen', '127.0.0.1:0', '--db', db]);
    try {
      expect(
        (await call(second.url, 'GET', '/dedicated/server/ns1.lab/bringYourOwnImage', { key: keyA })).body,
      ).toMatchObject({ status: 'doing', phase: 'boot' });
      expect(
        (await call(second.url, 'POST', '/dedicated/server/ns1.lab/bringYourOwnImage', { key: keyA, body })).status,
      ).toBe(409);
    } finally {
      await second.stop();
    }
  });

  it("serves HTTPS with the lab's certificate, which a client trusting that certificate verifies", async () => {
    const [cert, key] = [join(dir, 'lab.crt'), join(dir, 'lab.key')];
    makeLabCertificate(cert, key);
    const config = join(dir, 'tls.json');
    writeFileSync(config, JSON.stringify({ servers: [{ serviceName: 'ns1.lab', apiKeys: [keyA] }] }));
    const served = await serve([
      '--config',
      config,
      '--listen',
      '127.0.0.1:0',
      '--db',
      join(dir, 'tls.sqlite'),
      '--tls-cert',
      cert,
      '--tls-key',
      key,
    ]);
    try {
      expect(served.url).toMatch(/^https:/);
      const get = (ca?: Buffer) =>
        new Promise<number>((resolve, reject) => {
          const request = httpsRequest(
            `${served.url}/dedicated/server/ns1.lab/bringYourOwnImage`,
            { headers: { authorization: `Bearer ${keyA}` }, ...(ca && { ca }) },
            (response) => {
              response.resume();
              resolve(response.statusCode!);
            },
          );
          request.on('error', reject).end();
        });
      expect(await get(readFileSync(cert))).toBe(200);
      await expect(get()).rejects.toThrow(/self-signed|unable to verify/i);
    } finally {
      await served.stop();
    }
  });

  it('refuses a bad config file with a clear message', () => {
    const bad = (value: unknown) => () => parseConfig(value, 'lab.json');
    expect(bad({})).toThrow(badConfig('lab.json', 'expected {"servers": [...]}').message);
    expect(bad({ servers: [{ serviceName: 'a b', apiKeys: [keyA] }] })).toThrow(ByoiError);
    expect(bad({ servers: [{ serviceName: 'a', apiKeys: 'k' }] })).toThrow('servers[0].apiKeys must be a list of keys');
    expect(
      bad({
        servers: [
          { serviceName: 'a', apiKeys: [keyA] },
          { serviceName: 'a', apiKeys: [keyA] },
        ],
      }),
    ).toThrow('a is declared twice');
    expect(bad({ servers: [{ serviceName: 'a', apiKeys: [keyA], boot: { command: [] } }] })).toThrow(
      'servers[0].boot.command must be a non-empty list of strings',
    );
    // Issue 13: a token on argv is readable by every local user (ps): {token} anywhere in boot is refused.
    for (const boot of [
      { command: ['agent', '--token', '{token}'] },
      { command: ['x'], logFile: '/var/log/{token}' },
      { command: ['x'], rescueCommand: ['y', 'byoi.token={token}'] },
    ]) {
      expect(bad({ servers: [{ serviceName: 'a', apiKeys: [keyA], boot }] })).toThrow('{token}');
    }
    expect(
      bad({
        servers: [
          { serviceName: 'a', apiKeys: [keyA], macs: ['52:54:00:00:00:01'] },
          { serviceName: 'b', apiKeys: [keyA], macs: ['52-54-00-00-00-01'] },
        ],
      }),
    ).toThrow('declared twice');
    expect(bad({ servers: [{ serviceName: 'a', apiKeys: [keyA], macs: ['nope'] }] })).toThrow('is not a MAC address');
    expect(bad({ servers: [], netboot: { kernel: 'k' } })).toThrow('netboot must give');
    expect(bad({ servers: [], netboot: { kernel: 'k', initrd: 'i', cmdline: 'a\nshell' } })).toThrow('one-line');
  });
});

describe('the command boot adapter', () => {
  it("runs the server's command with {server} and {service} filled in, the token in $BYOI_AGENT_TOKEN (not argv), and stops it for rescue", async () => {
    const out = join(dir, 'booted.txt');
    const stopped = join(dir, 'stopped.txt');
    const adapter = new CommandBootAdapter([
      {
        serviceName: 'ns1.lab',
        apiKeys: [],
        boot: {
          command: [
            'sh',
            '-c',
            `trap 'echo TERM > ${stopped}; exit 0' TERM; echo "$0 $1 $BYOI_AGENT_TOKEN $GREETING" > ${out}; sleep 60 & wait`,
            '{server}',
            '{service}',
          ],
          env: { GREETING: 'hi' },
        },
      },
    ]);
    await adapter.boot({ serverUrl: 'http://10.0.0.1:8080', serviceName: 'ns1.lab', token: 'tok' });
    // The shell creates the file before echo writes into it: wait for the whole line.
    for (let i = 0; i < 200 && !(existsSync(out) && readFileSync(out, 'utf8').endsWith('\n')); i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(readFileSync(out, 'utf8')).toBe('http://10.0.0.1:8080 ns1.lab tok hi\n');
    await adapter.rescue('ns1.lab');
    expect(readFileSync(stopped, 'utf8')).toBe('TERM\n'); // asked to stop, not killed
  });

  it('fails to boot a server that has no command, or whose command does not exist', async () => {
    const adapter = new CommandBootAdapter([
      { serviceName: 'ns2.lab', apiKeys: [], boot: { command: [join(dir, 'no-such-program')] } },
    ]);
    const context = { serverUrl: 'http://x', token: 't' };
    await expect(adapter.boot({ ...context, serviceName: 'ns1.lab' })).rejects.toThrow(bootFailed('ns1.lab').message);
    await expect(adapter.boot({ ...context, serviceName: 'ns2.lab' })).rejects.toThrow(bootFailed('ns2.lab').message);
    // In a lab that netboots, a server without a command waits for its next netboot.
    await new CommandBootAdapter([], { netboot: true }).boot({ ...context, serviceName: 'ns1.lab' });
  });

  it("runs the rescue command after DELETE (a power cycle into the netboot's rescue), and waits for it", async () => {
    const out = join(dir, 'rescued.txt');
    const adapter = new CommandBootAdapter([
      {
        serviceName: 'ns1.lab',
        apiKeys: [],
        boot: {
          command: ['true'],
          rescueCommand: ['sh', '-c', `sleep 0.2; echo "power cycle $0" > ${out}`, '{service}'],
        },
      },
    ]);
    await adapter.rescue('ns1.lab');
    expect(readFileSync(out, 'utf8')).toBe('power cycle ns1.lab\n');
  });
});
