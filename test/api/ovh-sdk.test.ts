// OVH's own npm client (`ovh`, unchanged: only host, port and base path set, the lab's CA trusted by
// NODE_EXTRA_CA_CERTS) against `byoi serve` over HTTPS, through the whole flow: the server's time, a
// credential request, its validation (on the page, and by the operator's subcommand), a
// bringYourOwnImage with every field followed while an agent deploys onto a loop device this test
// attached, a reinstall with byoi_64 and its task, DELETE; and every refusal surfacing as the client's
// error with OVH's message. Then curl with a signature computed by hand.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { readAt, sh, sha256OfFile } from '../helpers/deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { agentCommand, makeGptImages } from '../helpers/agent-lab.ts';
import { detachAllLoops } from '../helpers/loop.ts';
import { answerValidationPage, sign } from '../helpers/ovh-apiv6.ts';
import { fetchTrusting, sdk, serve, serveAdmin, type SdkAnswer, type SdkParams } from '../helpers/ovh-sdk.ts';
import { garbageLoop } from '../helpers/target-disk.ts';
import { makeLabCertificate } from '../helpers/tls.ts';

const MiB = 2 ** 20;
const needs = ['root', 'loop', 'qemu-img', 'sgdisk', 'mtools', 'ssh-keygen'] as const;

describe.skipIf(skipWithout(...needs))("OVH's npm client against byoi serve over HTTPS", () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-ovh-sdk-'));
  const cert = join(dir, 'lab.crt');
  const key = join(dir, 'lab.key');
  const db = join(dir, 'serve.sqlite');
  const raw = join(dir, 'image.raw');
  const qcow2 = join(dir, 'image.qcow2');
  let images: TestServer;
  let api: { url: string; stop: () => Promise<number | null> };
  let disk: string;
  let app: { appKey: string; appSecret: string };
  let port: number;
  let alice: SdkParams;
  const agentLog = join(dir, 'agent.log');

  const client = (extra: Partial<SdkParams> = {}): SdkParams => ({ ...app, host: '127.0.0.1', port, ...extra });
  const call = (params: SdkParams, method: string, path: string, body?: object) =>
    sdk(cert, params, method, path, body);
  const ok = (answer: SdkAnswer) => {
    if (!('result' in answer)) throw new Error(`the client failed: ${JSON.stringify(answer)}`);
    return answer.result;
  };

  async function consumerKey(
    rules: object[],
    validate: (validationUrl: string, consumerKey: string) => Promise<void>,
  ): Promise<string> {
    const answer = ok(
      await call(client(), 'POST', '/auth/credential', {
        accessRules: rules,
        redirection: 'https://tool.example/done',
      }),
    );
    expect(answer).toMatchObject({
      state: 'pendingValidation',
      validationUrl: expect.stringMatching(new RegExp(`^https://127\\.0\\.0\\.1:${port}/auth/\\?credentialToken=`)),
    });
    await validate(answer.validationUrl, answer.consumerKey);
    return answer.consumerKey;
  }

  const onPage = (customer: string, password: string) => async (validationUrl: string) => {
    const page = await answerValidationPage(
      validationUrl,
      { name: customer, password, decision: 'grant' },
      fetchTrusting(readFileSync(cert)),
    );
    expect(page).toMatchObject({ status: 303, location: 'https://tool.example/done' });
  };
  const byOperator = (customer: string) => async (_url: string, ck: string) => {
    const result = await serveAdmin(['credential', 'validate', '--customer', customer, '--db', db], `${ck}\n`);
    expect(result).toMatchObject({ exitCode: 0, stdout: expect.stringContaining(`validated for ${customer}`) });
  };

  beforeAll(async () => {
    assertCapable(...needs);
    makeLabCertificate(cert, key);
    makeGptImages(raw, qcow2, 48, 32);
    images = await startServer();
    images.serve('/image.qcow2', { body: readFileSync(qcow2) });
    images.serve('/image.raw', { body: readFileSync(raw) });
    disk = garbageLoop(join(dir, 'disk.img'), 96 * MiB);

    const agent = agentCommand(disk, { insecure: false });
    const config = join(dir, 'lab.json');
    writeFileSync(
      config,
      JSON.stringify({
        servers: [
          // The agent reaches the API over HTTPS too, trusting the lab's CA the same way.
          {
            serviceName: 'ns1.lab',
            apiKeys: [],
            boot: { command: agent, env: { NODE_EXTRA_CA_CERTS: cert }, logFile: agentLog },
          },
          { serviceName: 'ns2.lab', apiKeys: [], boot: { command: ['true'] } },
        ],
      }),
    );
    expect(
      (await serveAdmin(['customer', 'add', 'alice', '--server', 'ns1.lab', '--db', db], 'alice password\n')).exitCode,
    ).toBe(0);
    expect(
      (await serveAdmin(['customer', 'add', 'bob', '--server', 'ns2.lab', '--db', db], 'bob password\n')).exitCode,
    ).toBe(0);
    const created = await serveAdmin(['application', 'create', '--name', 'lab tool', '--db', db]);
    expect(created.exitCode).toBe(0);
    app = {
      appKey: /applicationKey=(\S+)/.exec(created.stdout)![1]!,
      appSecret: /applicationSecret=(\S+)/.exec(created.stdout)![1]!,
    };
    // Secrets at rest: the application secret is sealed, the key file beside the database is 0600.
    expect(readFileSync(db).includes(Buffer.from(app.appSecret))).toBe(false);
    expect(sh('stat', ['-c', '%a', `${db}.key`]).trim()).toBe('600');

    api = await serve([
      '--config',
      config,
      '--listen',
      '127.0.0.1:0',
      '--db',
      db,
      '--tls-cert',
      cert,
      '--tls-key',
      key,
    ]);
    port = Number(new URL(api.url).port);
  });

  afterAll(async () => {
    await api?.stop();
    await images?.close();
    detachAllLoops();
    rmSync(dir, { recursive: true, force: true });
  });

  it('tells its time, then grants a consumer key validated by the customer on the validation page', async () => {
    const time = ok(await call(client(), 'GET', '/auth/time'));
    expect(Math.abs(time - Date.now() / 1000)).toBeLessThan(5);
    alice = client({
      consumerKey: await consumerKey(
        [
          { method: 'GET', path: '/*' },
          { method: 'POST', path: '/*' },
          { method: 'DELETE', path: '/*' },
        ],
        onPage('alice', 'alice password'),
      ),
    });
    expect(ok(await call(alice, 'GET', '/dedicated/server'))).toEqual(['ns1.lab']);
    expect(ok(await call(alice, 'GET', '/dedicated/server/ns1.lab'))).toMatchObject({ name: 'ns1.lab', state: 'ok' });
    // The same calls under the /v1 alias.
    expect(ok(await call({ ...alice, basePath: '/v1' }, 'GET', '/dedicated/server'))).toEqual(['ns1.lab']);
  });

  /** GETs `path` until its status is no longer one of `running`. */
  async function follow(path: string, params: SdkParams, running = ['doing']): Promise<{ seen: string[]; last: any }> {
    const seen: string[] = [];
    const deadline = Date.now() + 120_000;
    for (;;) {
      const now = ok(await call(params, 'GET', path));
      if (!running.includes(now.status)) return { seen, last: now };
      seen.push(now.phase);
      if (Date.now() > deadline)
        throw new Error(`still doing: ${JSON.stringify(now)}\n${readFileSync(agentLog, 'utf8')}`);
    }
  }

  it('deploys with bringYourOwnImage carrying every field, followed with GET while the agent writes the loop device', async () => {
    const sshKey = (() => {
      sh('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'alice@lab', '-f', join(dir, 'id')]);
      return readFileSync(join(dir, 'id.pub'), 'utf8').trim();
    })();
    const checksum = sha256OfFile(qcow2);
    const body = {
      URL: `${images.url}/image.qcow2`,
      type: 'qcow2',
      checkSum: checksum,
      checkSumType: 'sha256',
      description: "deployed by OVH's npm client",
      diskGroupId: 1,
      httpHeader: [{ key: 'X-Lab-Token', value: 'sesame' }],
      configdrive: {
        enable: true,
        hostname: 'web1.lab',
        sshKey,
        userData: '#cloud-config\nruncmd: [true]\n',
        userMetadatas: [{ key: 'role', value: 'web' }],
      },
    };
    expect(ok(await call(alice, 'POST', '/dedicated/server/ns1.lab/bringYourOwnImage', body))).toBeNull();
    const { seen, last } = await follow('/dedicated/server/ns1.lab/bringYourOwnImage', alice);
    expect(seen[0]).toBe('boot');
    expect(last).toMatchObject({ status: 'done', checksum, servername: 'ns1.lab' });
    expect(readAt(disk, MiB, 32 * MiB).equals(readAt(raw, MiB, 32 * MiB))).toBe(true);
    // The config drive asked for is there: a second partition after the image's.
    expect(
      sh('sgdisk', ['-p', disk])
        .split('\n')
        .filter((line) => /^\s+\d+\s/.test(line)),
    ).toHaveLength(2);
    expect(ok(await call(alice, 'GET', '/dedicated/server/ns1.lab'))).toMatchObject({ os: 'byoi_64' });
  });

  it('reinstalls with byoi_64 as a task, then DELETE erases the status', async () => {
    const task = ok(
      await call(alice, 'POST', '/dedicated/server/ns1.lab/reinstall', {
        operatingSystem: 'byoi_64',
        customizations: { imageURL: `${images.url}/image.raw`, imageType: 'raw', hostname: 'web1.lab' },
      }),
    );
    expect(task).toMatchObject({ function: 'reinstallServer', taskId: expect.any(Number) });
    const { last } = await follow(`/dedicated/server/ns1.lab/task/${task.taskId}`, alice, ['init', 'todo', 'doing']);
    expect(last).toMatchObject({ taskId: task.taskId, status: 'done', doneDate: expect.any(String) });
    expect(readAt(disk, MiB, 32 * MiB).equals(readAt(raw, MiB, 32 * MiB))).toBe(true);
    expect(ok(await call(alice, 'DELETE', '/dedicated/server/ns1.lab/bringYourOwnImage'))).toBeNull();
    expect(ok(await call(alice, 'GET', '/dedicated/server/ns1.lab/bringYourOwnImage'))).toMatchObject({ status: null });
  });

  it("surfaces every refusal as the client's error with OVH's message", async () => {
    // A key the operator validated for bob, limited to reading.
    const bob = client({
      consumerKey: await consumerKey([{ method: 'GET', path: '/dedicated/server*' }], byOperator('bob')),
    });
    expect(ok(await call(bob, 'GET', '/dedicated/server'))).toEqual(['ns2.lab']);
    expect(await call(bob, 'GET', '/dedicated/server/ns1.lab/bringYourOwnImage')).toEqual({
      error: 404,
      message: 'The requested object (serviceName = ns1.lab) does not exist',
    });
    expect(
      await call(bob, 'POST', '/dedicated/server/ns2.lab/bringYourOwnImage', {
        URL: `${images.url}/image.raw`,
        type: 'raw',
      }),
    ).toEqual({ error: 403, message: 'This call has not been granted' });
    expect(await call({ ...alice, appSecret: 'x'.repeat(32) }, 'GET', '/dedicated/server')).toEqual({
      error: 400,
      message: 'Invalid signature',
    });
    expect(await call({ ...alice, appKey: 'unknownAppKey123' }, 'GET', '/dedicated/server')).toEqual({
      error: 403,
      message: 'Invalid application key',
    });
    expect(await call({ ...alice, consumerKey: 'y'.repeat(32) }, 'GET', '/dedicated/server')).toEqual({
      error: 403,
      message: 'This credential does not exist',
    });
    const pending = ok(
      await call(client(), 'POST', '/auth/credential', { accessRules: [{ method: 'GET', path: '/*' }] }),
    );
    expect(await call(client({ consumerKey: pending.consumerKey }), 'GET', '/dedicated/server')).toEqual({
      error: 403,
      message: 'This credential is not valid',
    });
    expect(
      await call(alice, 'POST', '/dedicated/server/ns1.lab/bringYourOwnImage', { URL: 'ftp://x', type: 'raw' }),
    ).toMatchObject({ error: 400, message: expect.any(String) });
    // Revoked through the API: the key no longer exists.
    const doomed = client({
      consumerKey: await consumerKey(
        [
          { method: 'GET', path: '/*' },
          { method: 'DELETE', path: '/me/api/credential/*' },
        ],
        byOperator('bob'),
      ),
    });
    const mine = ok(await call(doomed, 'GET', '/me/api/credential')) as number[];
    expect(mine).toHaveLength(2); // bob's: the reader and this one, the newest
    expect(ok(await call(doomed, 'GET', `/me/api/credential/${Math.max(...mine)}`))).toMatchObject({
      status: 'validated',
      rules: [
        { method: 'GET', path: '/*' },
        { method: 'DELETE', path: '/me/api/credential/*' },
      ],
    });
    expect(ok(await call(doomed, 'DELETE', `/me/api/credential/${Math.max(...mine)}`))).toBeNull();
    expect(await call(doomed, 'GET', '/dedicated/server')).toEqual({
      error: 403,
      message: 'This credential does not exist',
    });
  });

  it('answers curl signing by hand, with the URL as sent (port included)', async () => {
    const timestamp = Math.floor(Date.now() / 1000);
    const url = `${api.url}/1.0/dedicated/server/ns1.lab/bringYourOwnImage`;
    const headers = (signature: string) => [
      '-H',
      `X-Ovh-Application: ${app.appKey}`,
      '-H',
      `X-Ovh-Consumer: ${alice.consumerKey}`,
      '-H',
      `X-Ovh-Timestamp: ${timestamp}`,
      '-H',
      `X-Ovh-Signature: ${signature}`,
    ];
    const curl = (signature: string) => JSON.parse(sh('curl', ['-sS', '--cacert', cert, ...headers(signature), url]));
    expect(curl(sign(app.appSecret, alice.consumerKey!, 'GET', url, '', timestamp))).toMatchObject({
      servername: 'ns1.lab',
    });
    expect(curl(sign(app.appSecret, alice.consumerKey!, 'GET', `${url}?x=1`, '', timestamp))).toEqual({
      errorCode: 'INVALID_SIGNATURE',
      httpCode: '400 Bad Request',
      message: 'Invalid signature',
    });
  });
});
