// OVH's own Go client (go-ovh as Debian packages it, unchanged: only its endpoint set, the lab's CA
// trusted through SSL_CERT_FILE) against the API over HTTPS: the credential request through its
// CkRequest, the validation page, signed calls, and each refusal as go-ovh's APIError with OVH's message.
// go-ovh signs endpoint + path (port included), unlike node's client: both forms must verify.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiConfig } from '../../lib/api/config.ts';
import { RecordingBoot } from '../helpers/api.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { answerValidationPage, startApiv6Lab, type Apiv6Lab } from '../helpers/ovh-apiv6.ts';
import { fetchTrusting } from '../helpers/ovh-sdk.ts';
import { makeLabCertificate } from '../helpers/tls.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
const config: ApiConfig = {
  servers: [
    { serviceName: 'ns1.lab', apiKeys: [] },
    { serviceName: 'ns2.lab', apiKeys: [] },
  ],
};

describe.skipIf(skipWithout('go-ovh'))("OVH's Go client against the API over HTTPS", () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-go-ovh-'));
  const cert = join(dir, 'lab.crt');
  const client = join(dir, 'go-ovh-client');
  let lab: Apiv6Lab;
  let keys: { appKey: string; appSecret: string; consumerKey?: string };

  beforeAll(async () => {
    assertCapable('go-ovh');
    const key = join(dir, 'lab.key');
    makeLabCertificate(cert, key);
    // Built against Debian's go-ovh, offline (GOPATH mode); Go's build cache makes later builds quick.
    await execa('go', ['build', '-o', client, '.'], {
      cwd: join(repo, 'test/helpers/go-ovh-client'),
      env: { GOPATH: '/usr/share/gocode', GO111MODULE: 'off', GOFLAGS: '' },
    });
    lab = await startApiv6Lab(
      config,
      join(dir, 'lab.sqlite'),
      new RecordingBoot(),
      { carol: ['carol password', ['ns1.lab']] },
      { tls: { cert: readFileSync(cert), key: readFileSync(key) } },
    );
    keys = (await lab.credentials.createApplication('go tool', '')).application;
  });
  afterAll(async () => {
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function go(input: Record<string, unknown>): Promise<any> {
    const { stdout } = await execa(client, [], {
      input: JSON.stringify({ endpoint: `${lab.url}/1.0`, ...keys, ...input }),
      env: { SSL_CERT_FILE: cert },
    });
    return JSON.parse(stdout);
  }
  const call = (method: string, path: string, body: unknown = null, extra: object = {}) =>
    go({ op: 'call', method, path, body, ...extra });

  it('requests a consumer key with its CkRequest, validated on the page, then signs calls', async () => {
    const { result } = await go({
      op: 'credential',
      redirection: 'https://tool.example/done',
      rules: [
        { method: 'GET', path: '/*' },
        { method: 'POST', path: '/dedicated/server/*' },
        { method: 'DELETE', path: '/dedicated/server/*' },
      ],
    });
    expect(result).toMatchObject({
      state: 'pendingValidation',
      consumerKey: expect.any(String),
      validationUrl: expect.stringContaining('/auth/?credentialToken='),
    });
    const page = await answerValidationPage(
      result.validationUrl,
      { name: 'carol', password: 'carol password', decision: 'grant' },
      fetchTrusting(readFileSync(cert)),
    );
    expect(page).toMatchObject({ status: 303, location: 'https://tool.example/done' });
    keys = { ...keys, consumerKey: result.consumerKey };

    expect(await call('GET', '/dedicated/server')).toEqual({ result: ['ns1.lab'] });
    expect((await call('GET', '/auth/currentCredential')).result).toMatchObject({ status: 'validated' });
    expect(
      await call('POST', '/dedicated/server/ns1.lab/bringYourOwnImage', {
        URL: 'https://127.0.0.1:9/disk.qcow2',
        type: 'qcow2',
        description: 'from go-ovh',
      }),
    ).toEqual({ result: null });
    expect((await call('GET', '/dedicated/server/ns1.lab/bringYourOwnImage')).result).toMatchObject({
      status: 'doing',
      servername: 'ns1.lab',
    });
    expect(await call('DELETE', '/dedicated/server/ns1.lab/bringYourOwnImage')).toEqual({ result: null });
  });

  it("surfaces each refusal as go-ovh's APIError with OVH's message", async () => {
    expect(await call('GET', '/dedicated/server/ns2.lab/bringYourOwnImage')).toEqual({
      error: 404,
      message: 'The requested object (serviceName = ns2.lab) does not exist',
    });
    expect(await call('DELETE', '/me/api/credential/1')).toEqual({
      error: 403,
      message: 'This call has not been granted',
    });
    expect(await call('GET', '/dedicated/server', null, { appSecret: 'x'.repeat(32) })).toEqual({
      error: 400,
      message: 'Invalid signature',
    });
    expect(await call('GET', '/dedicated/server', null, { consumerKey: 'y'.repeat(32) })).toEqual({
      error: 403,
      message: 'This credential does not exist',
    });
    expect(
      await call('POST', '/dedicated/server/ns1.lab/bringYourOwnImage', { URL: 'ftp://x', type: 'raw' }),
    ).toMatchObject({ error: 400, message: expect.any(String) });
  });
});
