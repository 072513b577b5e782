// APIv6 over real HTTP on 127.0.0.1: an application asks for a consumer key, the customer validates it
// on the validation page (plain HTTP requests), and calls signed by hand as OVH's clients sign them are
// accepted exactly when they should be. Every refusal is OVH's error body and changes nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiConfig } from '../../lib/api/config.ts';
import { hashPassword } from '../../lib/api/passwords.ts';
import { MAX_PENDING_PER_APPLICATION } from '../../lib/api/store/credentials-store.ts';
import { badServiceName, noSuchServer, tooManyFailures, tooManyPending } from '../../lib/errors.ts';
import { RecordingBoot } from '../helpers/api.ts';
import { answerValidationPage, signedCall, startApiv6Lab, type Apiv6Lab, type Keys } from '../helpers/ovh-apiv6.ts';

const config: ApiConfig = {
  servers: [
    { serviceName: 'ns1.lab', apiKeys: ['key-lab'] },
    { serviceName: 'ns2.lab', apiKeys: [] },
  ],
};
const everything = [
  { method: 'GET', path: '/*' },
  { method: 'POST', path: '/*' },
  { method: 'PUT', path: '/*' },
  { method: 'DELETE', path: '/*' },
];
const job = { URL: 'http://127.0.0.1:9/debian.qcow2', type: 'qcow2' };

const dir = mkdtempSync(join(tmpdir(), 'byoi-apiv6-'));
let lab: Apiv6Lab;
let boot: RecordingBoot;
let app: { appKey: string; appSecret: string };
let otherApp: { appKey: string; appSecret: string };

beforeAll(async () => {
  boot = new RecordingBoot();
  // The hostile cases below fail on purpose, more often than the default limit per client allows.
  lab = await startApiv6Lab(
    config,
    join(dir, 'lab.sqlite'),
    boot,
    { alice: ['alice password', ['ns1.lab']], bob: ['bob password', ['ns2.lab']] },
    { maxAuthFailures: 1000 },
  );
  app = (await lab.credentials.createApplication('lab tool', 'scripts')).application;
  otherApp = (await lab.credentials.createApplication('other tool', '')).application;
});
afterAll(async () => {
  await lab?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function requestCredential(appKey: string, body: unknown): Promise<{ status: number; body: any }> {
  const response = await fetch(`${lab.url}/1.0/auth/credential`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-ovh-application': appKey },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

/** A consumer key validated by `customer` through the page; answers the keys to sign with. */
async function grantedKeys(
  customer: 'alice' | 'bob',
  rules: unknown = everything,
  extra: object = {},
  application = app,
): Promise<Keys> {
  const { body } = await requestCredential(application.appKey, { accessRules: rules, ...extra });
  const answer = await answerValidationPage(body.validationUrl, {
    name: customer,
    password: `${customer} password`,
    decision: 'grant',
  });
  expect(answer.status).toBe(200);
  return { ...application, consumerKey: body.consumerKey };
}

const ovhError = (status: number, errorCode: string, message: string) => ({
  status,
  body: { errorCode, httpCode: expect.stringMatching(new RegExp(`^${status} `)), message },
});

describe('the APIv6 handshake', () => {
  it('tells its time unauthenticated, as a bare number of seconds, under /1.0, /v1 and bare', async () => {
    for (const base of ['/1.0', '/v1', '']) {
      const response = await fetch(`${lab.url}${base}/auth/time`);
      const time = JSON.parse(await response.text());
      expect(typeof time).toBe('number');
      expect(Math.abs(time - Date.now() / 1000)).toBeLessThan(5);
    }
  });

  it('answers a credential request with a validation URL and a pending consumer key, which signs nothing yet', async () => {
    const { status, body } = await requestCredential(app.appKey, {
      accessRules: everything,
      redirection: 'https://tool.example/done',
      allowedIPs: ['127.0.0.1'],
    });
    expect(status).toBe(200);
    expect(body).toEqual({
      validationUrl: expect.stringMatching(/\/auth\/\?credentialToken=[A-Za-z0-9]{32}$/),
      consumerKey: expect.stringMatching(/^[A-Za-z0-9]{32}$/),
      state: 'pendingValidation',
    });
    expect(body.validationUrl.startsWith(`${lab.url}/auth/`)).toBe(true);
    const pending = { ...app, consumerKey: body.consumerKey };
    expect(await signedCall(lab.url, pending, 'GET', '/1.0/dedicated/server')).toEqual(
      ovhError(403, 'INVALID_CREDENTIAL', 'This credential is not valid'),
    );
  });

  it('refuses credential requests from unknown applications and malformed ones', async () => {
    expect(await requestCredential('nope', { accessRules: everything })).toEqual(
      ovhError(403, 'INVALID_KEY', 'Invalid application key'),
    );
    for (const body of [
      {},
      { accessRules: [] },
      { accessRules: [{ method: 'PATCH', path: '/*' }] },
      { accessRules: [{ method: 'GET', path: 'x' }] },
      { accessRules: everything, redirection: 'javascript:alert(1)' },
      { accessRules: everything, allowedIPs: ['300.1.1.1'] },
    ]) {
      const answer = await requestCredential(app.appKey, body);
      expect(answer.status).toBe(400);
      expect(answer.body).toEqual({
        class: 'Client::BadRequest',
        message: expect.stringMatching(/^Invalid credential request: /),
      });
    }
  });
});

describe('the validation page', () => {
  it("is a strict page: CSP without script, no framing, no referrer to other sites, no cache; the redirection's origin may receive the form", async () => {
    const { body } = await requestCredential(app.appKey, {
      accessRules: [{ method: 'GET', path: '/dedicated/server/*' }],
      redirection: 'https://tool.example/done?x=1',
    });
    const page = await fetch(body.validationUrl);
    expect(page.status).toBe(200);
    const csp = page.headers.get('content-security-policy')!;
    expect(csp).toContain("default-src 'none'");
    expect(csp).not.toContain('script-src');
    expect(csp).toContain("form-action 'self' https://tool.example");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(page.headers.get('referrer-policy')).toBe('same-origin');
    expect(page.headers.get('cache-control')).toBe('no-store');
    expect(page.headers.get('set-cookie')).toMatch(/HttpOnly; SameSite=Strict/);
    const html = await page.text();
    expect(html).toContain('lab tool');
    expect(html).toContain('/dedicated/server/*');
    expect(html).not.toContain('<script');
  });

  it('grants the rules to the signed-in customer for the validity picked, then redirects', async () => {
    const { body } = await requestCredential(app.appKey, {
      accessRules: everything,
      redirection: 'https://tool.example/done',
    });
    const answer = await answerValidationPage(body.validationUrl, {
      name: 'alice',
      password: 'alice password',
      decision: 'grant',
      validity: '86400',
    });
    expect(answer).toMatchObject({ status: 303, location: 'https://tool.example/done' });
    const keys = { ...app, consumerKey: body.consumerKey };
    const current = await signedCall(lab.url, keys, 'GET', '/1.0/auth/currentCredential');
    expect(current.status).toBe(200);
    expect(current.body).toMatchObject({
      status: 'validated',
      applicationId: expect.any(Number),
      rules: everything,
      allowedIPs: null,
      credentialId: expect.any(Number),
    });
    const hours = (Date.parse(current.body.expiration) - Date.now()) / 3_600_000;
    expect(hours).toBeGreaterThan(23.9);
    expect(hours).toBeLessThanOrEqual(24);
    // The page is spent.
    expect((await fetch(body.validationUrl)).status).toBe(404);
  });

  it('refuses a form without its CSRF cookie, a wrong password, and keeps the request pending', async () => {
    const { body } = await requestCredential(app.appKey, { accessRules: everything });
    const page = await (await fetch(body.validationUrl)).text();
    const csrf = /name="csrf" value="([^"]*)"/.exec(page)![1]!;
    const token = /name="credentialToken" value="([^"]*)"/.exec(page)![1]!;
    const form = (cookie?: string) =>
      fetch(`${lab.url}/auth/`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(cookie && { cookie }) },
        body: new URLSearchParams({
          credentialToken: token,
          csrf,
          name: 'alice',
          password: 'alice password',
          validity: 'unlimited',
          decision: 'grant',
        }).toString(),
      });
    expect((await form()).status).toBe(403);
    expect((await form('byoi_validation_csrf=forged')).status).toBe(403);
    const wrong = await answerValidationPage(body.validationUrl, {
      name: 'alice',
      password: 'bob password',
      decision: 'grant',
    });
    expect(wrong.status).toBe(401);
    expect(wrong.html).toContain('Wrong account name or password.');
    const keys = { ...app, consumerKey: body.consumerKey };
    expect((await signedCall(lab.url, keys, 'GET', '/1.0/dedicated/server')).body.errorCode).toBe('INVALID_CREDENTIAL');
    // Refused: the key never works.
    expect(
      (
        await answerValidationPage(body.validationUrl, {
          name: 'alice',
          password: 'alice password',
          decision: 'refuse',
        })
      ).status,
    ).toBe(200);
    expect((await signedCall(lab.url, keys, 'GET', '/1.0/dedicated/server')).body.errorCode).toBe('INVALID_CREDENTIAL');
  });
});

describe('signed calls', () => {
  let alice: Keys;
  beforeAll(async () => {
    alice = await grantedKeys('alice');
  });

  it("list and show the customer's own servers under /1.0 and /v1", async () => {
    expect(await signedCall(lab.url, alice, 'GET', '/1.0/dedicated/server')).toEqual({
      status: 200,
      body: ['ns1.lab'],
    });
    expect(await signedCall(lab.url, alice, 'GET', '/v1/dedicated/server')).toEqual({ status: 200, body: ['ns1.lab'] });
    expect((await signedCall(lab.url, alice, 'GET', '/1.0/dedicated/server/ns1.lab')).body).toMatchObject({
      name: 'ns1.lab',
      state: 'ok',
      os: 'none_64',
    });
  });

  it("accept the URL signed without its port, as node's ovh client signs it", async () => {
    const port = new URL(lab.url).port;
    const signedUrl = `${lab.url.replace(`:${port}`, '')}/1.0/dedicated/server`;
    expect((await signedCall(lab.url, alice, 'GET', '/1.0/dedicated/server', { signedUrl })).status).toBe(200);
    expect(
      (
        await signedCall(lab.url, alice, 'GET', '/1.0/dedicated/server', {
          signedUrl: 'http://elsewhere.example/1.0/dedicated/server',
        })
      ).body.errorCode,
    ).toBe('INVALID_SIGNATURE');
  });

  it("start, follow and erase a deployment on the customer's server", async () => {
    expect(
      await signedCall(lab.url, alice, 'POST', '/1.0/dedicated/server/ns1.lab/bringYourOwnImage', { body: job }),
    ).toEqual({ status: 200, body: null });
    expect(
      (await signedCall(lab.url, alice, 'GET', '/1.0/dedicated/server/ns1.lab/bringYourOwnImage')).body,
    ).toMatchObject({ status: 'doing', servername: 'ns1.lab' });
    expect(await signedCall(lab.url, alice, 'DELETE', '/1.0/dedicated/server/ns1.lab/bringYourOwnImage')).toEqual({
      status: 200,
      body: null,
    });
    expect(
      (await signedCall(lab.url, alice, 'GET', '/1.0/dedicated/server/ns1.lab/bringYourOwnImage')).body.status,
    ).toBeNull();
  });

  it('show the account and the applications it granted, never an application secret', async () => {
    expect((await signedCall(lab.url, alice, 'GET', '/1.0/me')).body).toMatchObject({ nichandle: 'alice' });
    const applications = (await signedCall(lab.url, alice, 'GET', '/1.0/me/api/application')).body;
    expect(applications).toContain((await lab.credentials.applicationByKey(app.appKey))!.id);
    const shown = await signedCall(lab.url, alice, 'GET', `/1.0/me/api/application/${applications[0]}`);
    expect(shown.body).toEqual({
      applicationId: applications[0],
      applicationKey: app.appKey,
      name: 'lab tool',
      description: 'scripts',
      status: 'active',
    });
    expect(JSON.stringify(shown.body)).not.toContain(app.appSecret);
    const otherId = (await lab.credentials.applicationByKey(otherApp.appKey))!.id;
    expect((await signedCall(lab.url, alice, 'GET', `/1.0/me/api/application/${otherId}`)).status).toBe(404);
  });

  it("keep the lab's Bearer shortcut under /1.0", async () => {
    const response = await fetch(`${lab.url}/1.0/dedicated/server`, { headers: { authorization: 'Bearer key-lab' } });
    expect(await response.json()).toEqual(['ns1.lab']);
  });

  describe("hostile calls get OVH's error and change nothing", () => {
    const post = (keys: Keys, service = 'ns1.lab', options = {}) =>
      signedCall(lab.url, keys, 'POST', `/1.0/dedicated/server/${service}/bringYourOwnImage`, {
        body: job,
        ...options,
      });
    async function unchanged(action: () => Promise<unknown>): Promise<void> {
      const boots = boot.boots.length;
      const before = [await lab.store.current('ns1.lab'), await lab.store.current('ns2.lab')];
      await action();
      expect(boot.boots.length).toBe(boots);
      expect([await lab.store.current('ns1.lab'), await lab.store.current('ns2.lab')]).toEqual(before);
    }

    it('a replayed old timestamp, and one from the future', () =>
      unchanged(async () => {
        const now = Math.floor(Date.now() / 1000);
        expect(await post(alice, 'ns1.lab', { timestamp: now - 600 })).toEqual(
          ovhError(400, 'QUERY_TIME_OUT', 'Query out of time'),
        );
        expect(await post(alice, 'ns1.lab', { timestamp: now + 600 })).toEqual(
          ovhError(400, 'QUERY_TIME_OUT', 'Query out of time'),
        );
      }));

    it('a signature over another body, with another secret, or none', () =>
      unchanged(async () => {
        expect(
          await post(alice, 'ns1.lab', {
            signedBody: JSON.stringify({ ...job, URL: 'http://127.0.0.1:9/other.qcow2' }),
          }),
        ).toEqual(ovhError(400, 'INVALID_SIGNATURE', 'Invalid signature'));
        expect(await post({ ...alice, appSecret: otherApp.appSecret })).toEqual(
          ovhError(400, 'INVALID_SIGNATURE', 'Invalid signature'),
        );
        const response = await fetch(`${lab.url}/1.0/dedicated/server/ns1.lab/bringYourOwnImage`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-ovh-application': alice.appKey,
            'x-ovh-consumer': alice.consumerKey!,
            'x-ovh-timestamp': String(Math.floor(Date.now() / 1000)),
          },
          body: JSON.stringify(job),
        });
        expect(response.status).toBe(400);
        expect(((await response.json()) as { errorCode: string }).errorCode).toBe('INVALID_SIGNATURE');
      }));

    it("another customer's server, whatever the rules say", () =>
      unchanged(async () => {
        const bob = await grantedKeys('bob');
        expect(await post(bob, 'ns1.lab')).toEqual({
          status: 404,
          body: { class: 'Client::NotFound', message: 'The requested object (serviceName = ns1.lab) does not exist' },
        });
        expect((await signedCall(lab.url, bob, 'GET', '/1.0/dedicated/server/ns1.lab/bringYourOwnImage')).status).toBe(
          404,
        );
        expect((await signedCall(lab.url, bob, 'GET', '/1.0/dedicated/server')).body).toEqual(['ns2.lab']);
      }));

    it("an unknown application, an unknown consumer key, another application's consumer key", () =>
      unchanged(async () => {
        expect(await post({ ...alice, appKey: 'unknownAppKey123' })).toEqual(
          ovhError(403, 'INVALID_KEY', 'Invalid application key'),
        );
        expect(await post({ ...alice, consumerKey: 'x'.repeat(32) })).toEqual(
          ovhError(403, 'NOT_CREDENTIAL', 'This credential does not exist'),
        );
        expect(await post({ ...otherApp, consumerKey: alice.consumerKey! })).toEqual(
          ovhError(403, 'NOT_CREDENTIAL', 'This credential does not exist'),
        );
      }));

    it('a rule for another path or method', () =>
      unchanged(async () => {
        const reader = await grantedKeys('alice', [{ method: 'GET', path: '/dedicated/server/*/bringYourOwnImage' }]);
        expect(
          (await signedCall(lab.url, reader, 'GET', '/1.0/dedicated/server/ns1.lab/bringYourOwnImage')).status,
        ).toBe(200);
        expect(await post(reader)).toEqual(ovhError(403, 'NOT_GRANTED_CALL', 'This call has not been granted'));
        expect((await signedCall(lab.url, reader, 'GET', '/1.0/dedicated/server')).body.errorCode).toBe(
          'NOT_GRANTED_CALL',
        );
        expect((await signedCall(lab.url, reader, 'GET', '/1.0/me/api/credential')).body.errorCode).toBe(
          'NOT_GRANTED_CALL',
        );
      }));

    it('an address outside allowedIPs', () =>
      unchanged(async () => {
        const elsewhere = await grantedKeys('alice', everything, { allowedIPs: ['192.0.2.0/24'] });
        expect(await post(elsewhere)).toEqual(
          ovhError(403, 'FORBIDDEN', 'This credential cannot be used from your IP address'),
        );
        const here = await grantedKeys('alice', everything, { allowedIPs: ['127.0.0.0/8'] });
        expect((await signedCall(lab.url, here, 'GET', '/1.0/dedicated/server')).status).toBe(200);
      }));

    it('a revoked key', () =>
      unchanged(async () => {
        const doomed = await grantedKeys('alice');
        const { credentialId } = (await signedCall(lab.url, doomed, 'GET', '/1.0/auth/currentCredential')).body;
        expect((await signedCall(lab.url, alice, 'GET', '/1.0/me/api/credential')).body).toContain(credentialId);
        expect((await signedCall(lab.url, alice, 'GET', `/1.0/me/api/credential/${credentialId}`)).body).toMatchObject({
          credentialId,
          status: 'validated',
        });
        // Bob cannot see or revoke Alice's credentials.
        const bob = await grantedKeys('bob');
        expect((await signedCall(lab.url, bob, 'DELETE', `/1.0/me/api/credential/${credentialId}`)).status).toBe(404);
        expect(await signedCall(lab.url, alice, 'DELETE', `/1.0/me/api/credential/${credentialId}`)).toEqual({
          status: 200,
          body: null,
        });
        expect(await post(doomed)).toEqual(ovhError(403, 'NOT_CREDENTIAL', 'This credential does not exist'));
      }));

    it('an expired key', () =>
      unchanged(async () => {
        const { body } = await requestCredential(app.appKey, { accessRules: everything });
        const pending = (await lab.credentials.byConsumerKey(body.consumerKey))!;
        expect(await lab.credentials.validate(pending.id, 'alice', 0)).toBe(true); // valid for no time at all
        expect(await post({ ...app, consumerKey: body.consumerKey })).toEqual(
          ovhError(403, 'INVALID_CREDENTIAL', 'This credential is not valid'),
        );
        expect((await signedCall(lab.url, alice, 'GET', `/1.0/me/api/credential/${pending.id}`)).body.status).toBe(
          'expired',
        );
      }));

    it('refused from its headers alone, before a (never sent) body is read', async () => {
      /** Sends headers announcing a 1 GB body, and nothing more: the answer must come anyway. */
      const headersOnly = (headers: Record<string, string>) =>
        new Promise<string>((resolve, reject) => {
          const { port } = new URL(lab.url);
          const socket = connect(Number(port), '127.0.0.1');
          let answer = '';
          socket.on('data', (chunk) => {
            answer += chunk.toString();
            if (!answer.includes('\r\n\r\n') || !answer.includes('}')) return;
            socket.destroy();
            resolve(answer.split('\r\n')[0]! + ' ' + answer.slice(answer.indexOf('{')));
          });
          socket.on('error', reject);
          setTimeout(() => reject(new Error(`no answer before the body: ${answer}`)), 5000).unref();
          const lines = Object.entries({
            host: `127.0.0.1:${port}`,
            'content-type': 'application/json',
            'content-length': '1000000000',
            ...headers,
          }).map(([k, v]) => `${k}: ${v}`);
          socket.write(
            `POST /1.0/dedicated/server/ns1.lab/bringYourOwnImage HTTP/1.1\r\n${lines.join('\r\n')}\r\n\r\n`,
          );
        });
      expect(await headersOnly({ 'x-ovh-application': 'nope' })).toMatch(/^HTTP\/1\.1 403 .*"errorCode":"INVALID_KEY"/);
      const stale = {
        'x-ovh-application': alice.appKey,
        'x-ovh-consumer': alice.consumerKey!,
        'x-ovh-timestamp': '1000',
        'x-ovh-signature': `$1$${'0'.repeat(40)}`,
      };
      expect(await headersOnly(stale)).toMatch(/^HTTP\/1\.1 400 .*"errorCode":"QUERY_TIME_OUT"/);
      expect(await headersOnly({ authorization: 'Bearer wrong' })).toMatch(/^HTTP\/1\.1 403 /);
      expect(await headersOnly({})).toMatch(/^HTTP\/1\.1 401 /);
    });

    it('a body over the size limit', () =>
      unchanged(async () => {
        const huge = JSON.stringify({ ...job, description: 'x'.repeat(17 * 2 ** 20) });
        const answer = await post(alice, 'ns1.lab', { body: huge });
        expect(answer.status).toBe(413);
        expect(answer.body).toEqual({ class: 'Client::BadRequest', message: expect.any(String) });
      }));

    it('a serviceName with traversal characters', () =>
      unchanged(async () => {
        // "%2E%2E" and ".." are dot segments the client's URL parser removes: no route is left.
        expect((await post(alice, '%2E%2E')).body).toEqual({ class: 'Client::NotFound', message: 'Not found.' });
        for (const service of ['..%2F..%2Fetc', 'ns1.lab%2F..%2Fns2.lab', 'ns1.lab%00']) {
          expect(await post(alice, service)).toEqual({
            status: 404,
            body: { class: 'Client::NotFound', message: badServiceName().message },
          });
        }
        expect(await post(alice, '.hidden')).toEqual({
          status: 404,
          body: { class: 'Client::NotFound', message: noSuchServer('.hidden').message },
        });
      }));
  });
});

describe('guessing', () => {
  it('counts bad keys and bad signatures against the client, then answers 429 before looking at its keys', async () => {
    const guarded = await startApiv6Lab(
      config,
      join(dir, 'guarded.sqlite'),
      new RecordingBoot(),
      {},
      {
        maxAuthFailures: 3,
      },
    );
    try {
      const application = (await guarded.credentials.createApplication('t', '')).application;
      expect(
        (await signedCall(guarded.url, { ...application, consumerKey: 'z'.repeat(32) }, 'GET', '/1.0/dedicated/server'))
          .body.errorCode,
      ).toBe('NOT_CREDENTIAL');
      expect(
        (
          await signedCall(
            guarded.url,
            { ...application, appKey: 'unknownAppKey123', consumerKey: 'z'.repeat(32) },
            'GET',
            '/1.0/dedicated/server',
          )
        ).body.errorCode,
      ).toBe('INVALID_KEY');
      expect(
        (await signedCall(guarded.url, { ...application, consumerKey: 'z'.repeat(32) }, 'GET', '/1.0/dedicated/server'))
          .body.errorCode,
      ).toBe('NOT_CREDENTIAL');
      expect(
        await signedCall(guarded.url, { ...application, consumerKey: 'z'.repeat(32) }, 'GET', '/1.0/dedicated/server'),
      ).toEqual({
        status: 429,
        body: { class: 'Client::TooManyRequests', message: tooManyFailures().message },
      });
    } finally {
      await guarded.close();
    }
  });

  it('bounds the requests of one application waiting for validation', async () => {
    const crowded = await startApiv6Lab(config, join(dir, 'crowded.sqlite'), new RecordingBoot(), {});
    try {
      const application = (await crowded.credentials.createApplication('t', '')).application;
      for (let i = 0; i < MAX_PENDING_PER_APPLICATION; i++)
        await crowded.credentials.request({
          applicationId: application.id,
          rules: [{ method: 'GET', path: '/*' }],
          allowedIPs: null,
          redirection: null,
        });
      const response = await fetch(`${crowded.url}/1.0/auth/credential`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-ovh-application': application.appKey },
        body: JSON.stringify({ accessRules: everything }),
      });
      expect(response.status).toBe(429);
      expect(await response.json()).toEqual({
        class: 'Client::TooManyRequests',
        message: tooManyPending().message,
      });
    } finally {
      await crowded.close();
    }
  });

  it('counts wrong passwords on the validation page the same way', async () => {
    const guarded = await startApiv6Lab(
      config,
      join(dir, 'guarded-page.sqlite'),
      new RecordingBoot(),
      {},
      {
        maxAuthFailures: 2,
      },
    );
    try {
      const application = (await guarded.credentials.createApplication('t', '')).application;
      const { validationToken } = (await guarded.credentials.request({
        applicationId: application.id,
        rules: everything as never,
        allowedIPs: null,
        redirection: null,
      })) as { validationToken: string };
      const url = `${guarded.url}/auth/?credentialToken=${validationToken}`;
      const guess = () => answerValidationPage(url, { name: 'mallory', password: 'guess', decision: 'grant' });
      expect((await guess()).status).toBe(401);
      expect((await guess()).status).toBe(401);
      const third = await guess();
      expect(third.status).toBe(429);
      expect(third.html).toContain(tooManyFailures().message);
    } finally {
      await guarded.close();
    }
  });
});

describe('accounts declared in the config file', () => {
  it("sign in on the validation page like the store's, and own the servers the config gives them", async () => {
    const declared: ApiConfig = {
      customers: [{ name: 'erin', passwordHash: await hashPassword('erin password') }],
      servers: [
        { serviceName: 'ns7.lab', apiKeys: [], customer: 'erin' },
        { serviceName: 'ns8.lab', apiKeys: [] },
      ],
    };
    // The store gives ns7.lab to frank too: the config's word wins.
    const small = await startApiv6Lab(declared, join(dir, 'declared.sqlite'), new RecordingBoot(), {
      frank: ['frank password', ['ns7.lab', 'ns8.lab']],
    });
    try {
      const application = (await small.credentials.createApplication('t', '')).application;
      const grant = async (name: string) => {
        const response = await fetch(`${small.url}/1.0/auth/credential`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-ovh-application': application.appKey },
          body: JSON.stringify({ accessRules: everything }),
        });
        const { validationUrl, consumerKey } = (await response.json()) as {
          validationUrl: string;
          consumerKey: string;
        };
        expect(
          (await answerValidationPage(validationUrl, { name, password: `${name} password`, decision: 'grant' })).status,
        ).toBe(200);
        return { ...application, consumerKey };
      };
      expect((await signedCall(small.url, await grant('erin'), 'GET', '/1.0/dedicated/server')).body).toEqual([
        'ns7.lab',
      ]);
      expect((await signedCall(small.url, await grant('frank'), 'GET', '/1.0/dedicated/server')).body).toEqual([
        'ns8.lab',
      ]);
    } finally {
      await small.close();
    }
  });
});
