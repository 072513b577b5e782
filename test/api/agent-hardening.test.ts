// byoi agent against a hostile or misconfigured network, on 127.0.0.1: it verifies the API's
// certificate (item 3), refuses plain HTTP unless the lab allows it, and survives a job answer that
// is not a job (item 12): retried like an unreachable API, then a clear error, the pipeline never run.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runAgent, type Pipeline } from '../../agent/remote/run-agent.ts';
import { agentSettings, type AgentSettings } from '../../agent/remote/settings.ts';
import { ByoiError, badCaFile, insecureApi, jobUnavailable, notAJobReason } from '../../lib/errors.ts';
import { RecordingBoot, startApi } from '../helpers/api.ts';
import { makeLabCertificate } from '../helpers/tls.ts';

const dir = mkdtempSync(join(tmpdir(), 'byoi-agent-hardening-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const backoff = { initialDelay: 20, maxDelay: 50 };
const body = { URL: 'https://images.example/disk.raw', type: 'raw' };

/** Runs the agent with a pipeline that only records that it ran. */
async function agentOutcome(settings: AgentSettings): Promise<{ error: unknown; ran: boolean }> {
  let ran = false;
  const pipeline: Pipeline = async (_job, report) => {
    ran = true;
    report.done('Installed');
  };
  try {
    await runAgent({
      settings,
      overrides: { disk: '/dev/loop-test', noReboot: true },
      pipeline,
      jobTimeoutMs: 600,
      deliverTimeoutMs: 2000,
      backoff,
    });
    return { error: undefined, ran };
  } catch (error) {
    return { error, ran };
  }
}

describe('a job answer that is not a job (item 12)', () => {
  it.each([
    ['HTML', 'text/html', '<html><body>Welcome to the captive portal</body></html>'],
    ['null', 'application/json', 'null'],
    ['a wrong shape', 'application/json', '{"deploymentId":"1","body":"x"}'],
    [
      "another server's job",
      'application/json',
      JSON.stringify({ deploymentId: 1, serviceName: 'ns9.lab', kind: 'bringYourOwnImage', body }),
    ],
    [
      'an unknown kind',
      'application/json',
      JSON.stringify({ deploymentId: 1, serviceName: 'ns1.lab', kind: 'format-disk', body }),
    ],
  ])('is retried, then ends with a clear error, never running the pipeline: %s', async (_what, type, text) => {
    let requests = 0;
    const server: Server = createServer((_request, response) => {
      requests++;
      response.writeHead(200, { 'content-type': type }).end(text);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const { error, ran } = await agentOutcome({
        server: `http://127.0.0.1:${port}`,
        serviceName: 'ns1.lab',
        token: 't'.repeat(64),
      });
      expect(error).toBeInstanceOf(ByoiError);
      expect((error as ByoiError).message).toBe(jobUnavailable(`http://127.0.0.1:${port}`).message);
      expect((error as ByoiError).detail).toBe(notAJobReason);
      expect(ran).toBe(false);
      expect(requests).toBeGreaterThan(1);
    } finally {
      server.close();
    }
  });

  it('stops reading an answer far larger than any job, and ends the same way', async () => {
    let requests = 0;
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    const server: Server = createServer((_request, response) => {
      requests++;
      response.writeHead(200, { 'content-type': 'application/json' });
      const more = () => {
        while (!response.destroyed && response.write(chunk));
        if (!response.destroyed) response.once('drain', more);
      };
      response.on('close', () => response.destroy());
      more();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const { error, ran } = await agentOutcome({
        server: `http://127.0.0.1:${port}`,
        serviceName: 'ns1.lab',
        token: 't'.repeat(64),
      });
      expect(error).toBeInstanceOf(ByoiError);
      expect((error as ByoiError).detail).toBe(notAJobReason);
      expect(ran).toBe(false);
      expect(requests).toBeGreaterThan(0);
    } finally {
      server.closeAllConnections();
      server.close();
    }
  });
});

describe("the API's certificate is verified (item 3)", () => {
  const [cert, key, otherCert, otherKey] = ['lab.crt', 'lab.key', 'other.crt', 'other.key'].map((f) =>
    join(dir, f),
  ) as [string, string, string, string];
  const makeCert = (certPath: string, keyPath: string) => makeLabCertificate(certPath, keyPath);
  makeCert(cert, key);
  makeCert(otherCert, otherKey);

  async function tlsDeployment(): Promise<{ url: string; token: string; close: () => Promise<void> }> {
    const boot = new RecordingBoot();
    const config = { servers: [{ serviceName: 'ns1.lab', apiKeys: ['alice-7f3e9a2c4b1d8e6f0a5c3b7d9e2f4a6c'] }] };
    const api = await startApi(config, join(dir, `tls-${Date.now()}-${Math.random()}.sqlite`), boot, 0, {
      tls: { cert: readFileSync(cert), key: readFileSync(key) },
    });
    const response = await new Promise<number>((resolve, reject) => {
      // The customer's side, trusting the lab's certificate.
      import('node:https').then(({ request }) =>
        request(
          `${api.url}/dedicated/server/ns1.lab/bringYourOwnImage`,
          {
            method: 'POST',
            ca: readFileSync(cert),
            headers: { authorization: `Bearer ${config.servers[0]!.apiKeys[0]}`, 'content-type': 'application/json' },
          },
          (r) => (r.resume(), resolve(r.statusCode!)),
        )
          .on('error', reject)
          .end(JSON.stringify(body)),
      );
    });
    expect(response).toBe(200);
    return { url: api.url, token: boot.boots[0]!.token, close: () => api.close() };
  }

  it('takes its job over HTTPS from an API whose certificate chains to the CA it was given', async () => {
    const api = await tlsDeployment();
    try {
      const { error, ran } = await agentOutcome({
        server: api.url,
        serviceName: 'ns1.lab',
        token: api.token,
        ca: readFileSync(cert),
      });
      expect(error).toBeUndefined();
      expect(ran).toBe(true);
    } finally {
      await api.close();
    }
  });

  it.each([
    ["no CA (the system's do not know the lab's)", undefined],
    ['another CA (a man in the middle)', otherCert],
  ])(
    'refuses an API whose certificate does not verify, with %s, and never runs the pipeline',
    async (_what, caFile) => {
      const api = await tlsDeployment();
      try {
        const { error, ran } = await agentOutcome({
          server: api.url,
          serviceName: 'ns1.lab',
          token: api.token,
          ...(caFile && { ca: readFileSync(caFile) }),
        });
        expect(error).toBeInstanceOf(ByoiError);
        expect((error as ByoiError).message).toBe(jobUnavailable(api.url).message);
        expect((error as ByoiError).detail).toMatch(
          /^the API's certificate could not be verified \((DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\)/,
        );
        expect(ran).toBe(false);
      } finally {
        await api.close();
      }
    },
  );

  it('reads the CA from --ca-file, byoi.ca= or the baked path, and refuses plain HTTP unless allowed', () => {
    const cmdline = join(dir, 'cmdline');
    const absent = join(dir, 'absent.pem');
    writeFileSync(cmdline, `byoi.server=https://127.0.0.1:8443 byoi.service=ns1.lab byoi.token=abc byoi.ca=${cert}\n`);
    expect(agentSettings({}, cmdline, absent).ca).toEqual(readFileSync(cert));
    expect(agentSettings({ caFile: otherCert }, cmdline, absent).ca).toEqual(readFileSync(otherCert));
    writeFileSync(cmdline, 'byoi.server=https://127.0.0.1:8443 byoi.service=ns1.lab byoi.token=abc\n');
    expect(agentSettings({}, cmdline, otherCert).ca).toEqual(readFileSync(otherCert));
    expect(agentSettings({}, cmdline, absent).ca).toBeUndefined();
    expect(() => agentSettings({ caFile: absent }, cmdline, absent)).toThrow(badCaFile(absent).message);

    writeFileSync(cmdline, 'byoi.server=http://10.0.0.1:8080 byoi.service=ns1.lab byoi.token=abc\n');
    expect(() => agentSettings({}, cmdline, absent)).toThrow(insecureApi('http://10.0.0.1:8080').message);
    expect(agentSettings({ insecure: true }, cmdline, absent).server).toBe('http://10.0.0.1:8080');
    writeFileSync(cmdline, 'byoi.server=http://10.0.0.1:8080 byoi.service=ns1.lab byoi.token=abc byoi.insecure=1\n');
    expect(agentSettings({}, cmdline, absent).server).toBe('http://10.0.0.1:8080');
    expect(() => agentSettings({ server: 'ftp://10.0.0.1' }, cmdline, absent)).toThrow(
      insecureApi('ftp://10.0.0.1').message,
    );
  });
});
