// The control panel's HTTP contract, without a browser: security headers, cookie flags (Secure under
// TLS), sessions kept as hashes, CSRF and Origin checks, sign-in rate limiting, bounded bodies, the
// user data file reaching the deployment without being shown back, the language choice.
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo } from 'node:net';
import { DatabaseSync } from 'node:sqlite';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiConfig } from '../../lib/api/config.ts';
import { hashPassword } from '../../lib/api/passwords.ts';
import { buildApi } from '../../lib/api/server.ts';
import { openStore } from '../../lib/api/store/open.ts';
import { downloadFailed } from '../../lib/errors.ts';
import { html } from '../../lib/panel/html.ts';
import { dictionaries } from '../../lib/panel/i18n.ts';
import { RecordingBoot, call, startApi, type TestApi } from '../helpers/api.ts';
import { makeLabCertificate } from '../helpers/tls.ts';

const en = dictionaries.en;
const fr = dictionaries.fr;
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** A browser's bare minimum: cookies kept between requests, same-origin Origin on posts. */
class Client {
  private readonly cookies = new Map<string, string>();
  readonly base: string;
  constructor(base: string) {
    this.base = base;
  }

  async go(
    path: string,
    init: { method?: string; form?: Record<string, string> | FormData; headers?: Record<string, string> } = {},
  ) {
    const headers: Record<string, string> = { ...init.headers };
    if (this.cookies.size > 0) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    let body: string | FormData | undefined;
    if (init.form instanceof FormData) body = init.form;
    else if (init.form) {
      body = new URLSearchParams(init.form).toString();
      headers['content-type'] = 'application/x-www-form-urlencoded';
    }
    if (body !== undefined && headers.origin === undefined) headers.origin = this.base;
    const response = await fetch(`${this.base}${path}`, {
      method: init.method ?? (body === undefined ? 'GET' : 'POST'),
      headers,
      body,
      redirect: 'manual',
    });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [name, value] = pair!.split('=') as [string, string];
      if (value === '' || /max-age=0|expires=thu, 01 jan 1970/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return {
      status: response.status,
      headers: response.headers,
      text: await response.text(),
      setCookies: response.headers.getSetCookie(),
    };
  }

  cookie(name: string): string | undefined {
    return this.cookies.get(name);
  }

  /** The CSRF token of the page at `path`. */
  async token(path: string): Promise<string> {
    const page = await this.go(path);
    const token = /name="csrf" value="([^"]+)"/.exec(page.text)?.[1];
    if (!token) throw new Error(`no token on ${path}: ${page.status}`);
    return token;
  }

  async signIn(name: string, password: string) {
    const csrf = await this.token('/panel/sign-in');
    return this.go('/panel/sign-in', { form: { csrf, name, password } });
  }
}

describe('the control panel over HTTP', () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-panel-http-'));
  let api: TestApi;
  let config: ApiConfig;
  const boot = new RecordingBoot();

  beforeAll(async () => {
    config = {
      customers: [
        { name: 'carol', passwordHash: await hashPassword('carol-password') },
        { name: 'dave', passwordHash: await hashPassword('dave-password') },
        { name: 'erin', passwordHash: await hashPassword('erin-password') },
      ],
      servers: [
        { serviceName: 'ns1.lab', customer: 'carol', apiKeys: ['k1'] },
        { serviceName: 'ns2.lab', customer: 'dave', apiKeys: ['k2'] },
        {
          serviceName: 'ns3.lab',
          customer: 'carol',
          apiKeys: ['k3'],
          diskGroups: [{ diskGroupId: 7, description: 'declared group seven' }],
        },
      ],
    };
    api = await startApi(config, join(dir, 'api.sqlite'), boot);
  });

  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('answers pages with a strict CSP and security headers, and sends strangers to the sign-in page', async () => {
    const client = new Client(api.url);
    const page = await client.go('/panel/servers');
    expect(page.status).toBe(303);
    expect(page.headers.get('location')).toBe('/panel/sign-in');
    const signIn = await client.go('/panel/sign-in');
    expect(signIn.headers.get('content-security-policy')).toBe(CSP);
    expect(signIn.headers.get('x-content-type-options')).toBe('nosniff');
    expect(signIn.headers.get('x-frame-options')).toBe('DENY');
    expect(signIn.headers.get('cache-control')).toBe('no-store');
    expect(signIn.text).not.toMatch(/<script>|<style>| style=| on[a-z]+=/);
    expect((await client.go('/panel/static/panel.js')).headers.get('content-type')).toMatch(/^text\/javascript/);
    expect((await client.go('/panel/nowhere')).status).toBe(404);
    // Posts without a session are refused before their body is read.
    expect((await client.go('/panel/servers/ns1.lab/delete', { form: { csrf: 'x' } })).status).toBe(403);
  });

  it('keeps the session in an HttpOnly SameSite=Strict cookie, and only its hash in the store', async () => {
    const client = new Client(api.url);
    const answer = await client.signIn('carol', 'carol-password');
    expect(answer.status).toBe(303);
    const line = answer.setCookies.find((c) => c.startsWith('byoi_session='))!;
    expect(line).toMatch(/; HttpOnly/);
    expect(line).toMatch(/; SameSite=Strict/);
    expect(line).not.toMatch(/; Secure/);
    const id = client.cookie('byoi_session')!;
    const db = new DatabaseSync(join(dir, 'api.sqlite'), { readOnly: true });
    const hashes = db
      .prepare('SELECT id_hash FROM panel_sessions')
      .all()
      .map((r) => r.id_hash);
    db.close();
    expect(hashes).toContain(createHash('sha256').update(id).digest('hex'));
    expect(readFileSync(join(dir, 'api.sqlite')).includes(Buffer.from(id))).toBe(false);
    expect((await client.go('/panel/servers')).text).toContain('ns1.lab');
    // Sign-out ends the session: the same cookie no longer opens anything.
    const csrf = await client.token('/panel/servers');
    expect((await client.go('/panel/sign-out', { form: { csrf } })).status).toBe(303);
    const replay = await fetch(`${api.url}/panel/servers`, {
      headers: { cookie: `byoi_session=${id}` },
      redirect: 'manual',
    });
    expect(replay.status).toBe(303);
  });

  it('refuses sign-ins and posts without their token or from another origin', async () => {
    const client = new Client(api.url);
    await client.go('/panel/sign-in');
    expect((await client.go('/panel/sign-in', { form: { name: 'carol', password: 'carol-password' } })).status).toBe(
      403,
    );
    const csrf = await client.token('/panel/sign-in');
    expect(
      (
        await client.go('/panel/sign-in', {
          form: { csrf, name: 'carol', password: 'carol-password' },
          headers: { origin: 'http://evil.example' },
        })
      ).status,
    ).toBe(403);
    expect((await client.signIn('carol', 'carol-password')).status).toBe(303);
    const token = await client.token('/panel/servers/ns1.lab/delete');
    expect(
      (
        await client.go('/panel/servers/ns1.lab/delete', {
          form: { csrf: token },
          headers: { origin: 'http://evil.example' },
        })
      ).status,
    ).toBe(403);
    expect((await client.go('/panel/servers/ns1.lab/delete', { form: { csrf: `${token}x` } })).status).toBe(403);
    expect(boot.rescues).toEqual([]);
    expect((await client.go('/panel/servers/ns1.lab/delete', { form: { csrf: token } })).status).toBe(303);
    expect(boot.rescues).toEqual(['ns1.lab']);
  });

  it('slows password guessing down: after 10 failures even the right password is refused for a while', async () => {
    const client = new Client(api.url);
    for (let i = 0; i < 10; i++) expect((await client.signIn('erin', `guess-${i}`)).status).toBe(401);
    const refused = await client.signIn('erin', 'erin-password');
    expect(refused.status).toBe(429);
    expect(refused.text).toContain(en.tooManyAttempts);
  });

  it('counts failed sign-ins in the database, so that replicas over one database share the counts', async () => {
    const shared = join(dir, 'replicas.sqlite');
    const replicas = [await startApi(config, shared, boot), await startApi(config, shared, boot)];
    try {
      const [a, b] = replicas.map((r) => new Client(r.url)) as [Client, Client];
      for (let i = 0; i < 10; i++) expect((await (i % 2 ? a : b).signIn('dave', `guess-${i}`)).status).toBe(401);
      expect((await b.signIn('dave', 'dave-password')).status).toBe(429);
      expect((await a.signIn('dave', 'dave-password')).status).toBe(429);
      expect((await b.signIn('carol', 'carol-password')).status).toBe(303);
    } finally {
      for (const replica of replicas) await replica.close();
    }
  });

  it('checks at most a few passwords at once (each holds 32 MiB for scrypt): a burst is answered 429', async () => {
    const client = new Client(api.url);
    const csrf = await client.token('/panel/sign-in');
    const answers = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        client.go('/panel/sign-in', { form: { csrf, name: `nobody-${i}`, password: 'x' } }),
      ),
    );
    const statuses = answers.map((a) => a.status);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 401 || s === 429)).toBe(true);
  });

  it('bounds form bodies', async () => {
    const client = new Client(api.url);
    await client.signIn('carol', 'carol-password');
    const csrf = await client.token('/panel/servers/ns1.lab/install');
    expect(
      (await client.go('/panel/servers/ns1.lab/delete', { form: { csrf, pad: 'x'.repeat(32 * 1024) } })).status,
    ).toBe(413);
    const big = new FormData();
    big.set('csrf', csrf);
    big.set('userData', 'x'.repeat(1024 * 1024 + 1));
    expect((await client.go('/panel/servers/ns1.lab/install', { form: big })).status).toBe(413);
    const file = new FormData();
    file.set('csrf', csrf);
    file.set('userDataFile', new Blob([new Uint8Array(16 * 1024 * 1024 + 1)]), 'big.bin');
    expect((await client.go('/panel/servers/ns1.lab/install', { form: file })).status).toBe(413);
  });

  it('bounds the install form as a whole, not only field by field', async () => {
    const client = new Client(api.url);
    await client.signIn('carol', 'carol-password');
    const csrf = await client.token('/panel/servers/ns1.lab/install');
    // Fields just under the field limit each: 120 of them would hold 120 MiB for one request.
    const many = new FormData();
    many.set('csrf', csrf);
    for (let i = 0; i < 4; i++) many.set(`pad${i}`, 'x'.repeat(1024 * 1024 - 1));
    expect((await client.go('/panel/servers/ns1.lab/install', { form: many })).status).toBe(413);
  });

  it('keeps a form waiting for its confirmation sealed in the store, never in clear', async () => {
    const client = new Client(api.url);
    await client.signIn('carol', 'carol-password');
    const csrf = await client.token('/panel/servers/ns1.lab/install');
    const form = new FormData();
    for (const [k, v] of Object.entries({
      csrf,
      URL: 'http://user:pending-url-secret@127.0.0.1:9/image.qcow2',
      type: 'qcow2',
      configdrive: 'on',
      hostname: 'web1',
      userData: '#cloud-config\n# pending-user-data-secret\n',
    }))
      form.set(k, v);
    expect((await client.go('/panel/servers/ns1.lab/install', { form })).status).toBe(200);
    const db = new DatabaseSync(join(dir, 'api.sqlite'), { readOnly: true });
    try {
      const rows = db.prepare('SELECT pending_install FROM panel_sessions WHERE pending_install IS NOT NULL').all() as {
        pending_install: string;
      }[];
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows)
        expect(row.pending_install).not.toMatch(/pending-url-secret|pending-user-data-secret|image\.qcow2/);
    } finally {
      db.close();
    }
    // Still there for the confirmation page, once opened.
    const back = await client.go('/panel/servers/ns1.lab/install');
    expect(back.text).toContain('web1');
  });

  it('takes user data from a file into the deployment, and never shows it back', async () => {
    const client = new Client(api.url);
    await client.signIn('carol', 'carol-password');
    const csrf = await client.token('/panel/servers/ns1.lab/install');
    const userData = '#cloud-config\nruncmd: [echo user-data-secret-77]\n';
    const form = new FormData();
    for (const [k, v] of Object.entries({
      csrf,
      URL: 'http://127.0.0.1:9/image.qcow2',
      type: 'qcow2',
      diskGroupId: '1',
      configdrive: 'on',
      hostname: 'web1',
    }))
      form.set(k, v);
    form.set('userDataFile', new Blob([userData]), 'user-data.yaml');
    const review = await client.go('/panel/servers/ns1.lab/install', { form });
    expect(review.status).toBe(200);
    expect(review.text).toContain(en.bytesHidden(Buffer.byteLength(userData)));
    expect(review.text).not.toContain('user-data-secret-77');
    const edit = await client.go('/panel/servers/ns1.lab/install');
    expect(edit.text).toContain('web1');
    expect(edit.text).not.toContain('user-data-secret-77');
    const confirmed = await client.go('/panel/servers/ns1.lab/install/confirm', { form: { csrf } });
    expect(confirmed.status).toBe(303);
    expect(confirmed.headers.get('location')).toBe('/panel/servers/ns1.lab/deployment');
    const deployment = await api.store.current('ns1.lab');
    expect(await api.store.jobBody(deployment!.id)).toMatchObject({
      configdrive: { enable: true, hostname: 'web1', userData },
    });
    const follow = await client.go('/panel/servers/ns1.lab/deployment.json');
    expect(JSON.parse(follow.text)).toMatchObject({ state: { kind: 'deploying', phase: 'boot' }, live: true });
    expect(follow.text).not.toContain('user-data-secret-77');
    // A second install while this one runs: the API's own refusal, on the confirmation page.
    await client.go('/panel/servers/ns1.lab/install', { form });
    const again = await client.go('/panel/servers/ns1.lab/install/confirm', { form: { csrf } });
    expect(again.status).toBe(409);
    expect(again.text).toContain('An installation is already in progress on ns1.lab.');
    const list = await client.go('/panel/servers');
    expect(list.text).toContain(en.deployingPhase('boot', null));
    expect(list.text).not.toContain('ns2.lab');
    // No disk group declared by the lab and none reported: the page says so.
    expect((await client.go('/panel/servers/ns1.lab')).text).toContain(en.diskGroupsUnknown);
  });

  it('seals the install waiting for its confirmation: no file of the database holds a secret of the form', async () => {
    const client = new Client(api.url);
    await client.signIn('carol', 'carol-password');
    const csrf = await client.token('/panel/servers/ns3.lab/install');
    const secrets = ['header-secret-value-4417', 'userdata-secret-9921'];
    const form = new FormData();
    for (const [k, v] of Object.entries({
      csrf,
      URL: 'http://127.0.0.1:9/image.qcow2',
      type: 'qcow2',
      diskGroupId: '1',
      'httpHeader.0.key': 'Authorization',
      'httpHeader.0.value': `Bearer ${secrets[0]}`,
      configdrive: 'on',
      userData: `#cloud-config\nruncmd: [echo ${secrets[1]}]\n`,
    }))
      form.set(k, v);
    expect((await client.go('/panel/servers/ns3.lab/install', { form })).status).toBe(200);
    const databaseBytes = () =>
      Buffer.concat(
        readdirSync(dir)
          .filter((f) => f.startsWith('api.sqlite') && !f.endsWith('.key'))
          .map((f) => readFileSync(join(dir, f))),
      );
    const sealed = (
      await api.store.sql.all<{ pending_install: string }>(
        'SELECT pending_install FROM panel_sessions WHERE pending_install IS NOT NULL',
      )
    ).map((r) => r.pending_install);
    expect(sealed.length).toBeGreaterThan(0);
    expect(sealed.every((text) => text.startsWith('v1:'))).toBe(true);
    for (const secret of secrets) expect(databaseBytes().includes(Buffer.from(secret))).toBe(false);
    // Confirmed: the deployment has them all (sealed too), the session no longer holds them.
    expect((await client.go('/panel/servers/ns3.lab/install/confirm', { form: { csrf } })).status).toBe(303);
    const deployment = (await api.store.current('ns3.lab'))!;
    const body = JSON.stringify(await api.store.jobBody(deployment.id));
    for (const secret of secrets) expect(body).toContain(secret);
    for (const secret of secrets) expect(databaseBytes().includes(Buffer.from(secret))).toBe(false);
  });

  it("shows the disk groups the agent reported (else the lab's) and offers them; a failure's detail as the API gives it", async () => {
    const client = new Client(api.url);
    await client.signIn('carol', 'carol-password');
    // The lab's declared group until the agent reports.
    expect((await client.go('/panel/servers/ns3.lab')).text).toContain(html`${en.diskGroupsDeclared}`.text);
    expect((await client.go('/panel/servers/ns3.lab/install')).text).toContain(
      '<option value="7">7: declared group seven</option>',
    );
    const token = boot.boots.filter((b) => b.serviceName === 'ns3.lab').at(-1)!.token;
    const agent = (path: string, body: unknown) =>
      fetch(`${api.url}/agent/v1/servers/ns3.lab/${path}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const report = {
      disks: [
        { name: 'sda', size: 480e9 },
        { name: 'nvme0n1', size: 960e9 },
        { name: 'nvme1n1', size: 960e9 },
      ],
      groups: [
        { id: 1, media: 'SSD', sizeGB: 480, description: '1 X Disk SSD 480 GB', disks: ['sda'] },
        {
          id: 2,
          media: 'NVME',
          sizeGB: 960,
          description: '2 X Disk NVME 960 GB <b>x</b>',
          disks: ['nvme0n1', 'nvme1n1'],
        },
      ],
    };
    expect((await agent('disks', report)).status).toBe(200);
    const server = await client.go('/panel/servers/ns3.lab');
    const { reportedAt } = (await api.store.disks('ns3.lab'))!;
    expect(server.text).toContain(html`${en.diskGroupsReported(reportedAt)}`.text);
    expect(server.text).toContain('1: 1 X Disk SSD 480 GB (disks: sda)');
    expect(server.text).toContain('2: 2 X Disk NVME 960 GB &lt;b&gt;x&lt;/b&gt; (disks: nvme0n1, nvme1n1)');
    expect(server.text).not.toContain('declared group seven');
    const install = await client.go('/panel/servers/ns3.lab/install');
    const offered = [...install.text.matchAll(/<option value="([^"]*)"/g)].map((m) => m[1]);
    expect(offered).toEqual(expect.arrayContaining(['1', '2', '0']));
    expect(offered).not.toContain('7');

    // The agent fails: OVH's sentence and its redacted detail, on the page as in the API's answer.
    const sentence = downloadFailed('http://images.example/disk.raw').message;
    const detail = 'HTTP 404 from http://images.example/disk.raw?sig=*** <i>';
    expect(
      (
        await agent('events', {
          events: [{ status: 'error', message: sentence, errorKind: 'invalid-job', detail, fault: 'customer' }],
        })
      ).status,
    ).toBe(200);
    const status = await call(api.url, 'GET', '/dedicated/server/ns3.lab/bringYourOwnImage', { key: 'k3' });
    expect(status.body).toMatchObject({ status: 'error', message: sentence, detail });
    const follow = await client.go('/panel/servers/ns3.lab/deployment');
    expect(follow.text).toContain(`<dd id="message" aria-live="polite">${sentence}</dd>`);
    expect(follow.text).toContain(
      `<dd id="detail">HTTP 404 from http://images.example/disk.raw?sig=*** &lt;i&gt;</dd>`,
    );
    expect(JSON.parse((await client.go('/panel/servers/ns3.lab/deployment.json')).text)).toMatchObject({
      state: { kind: 'error' },
      message: sentence,
      detail: status.body.detail,
    });
  });

  it("shows a deployment DELETE stopped as cancelled, as the API's task says", async () => {
    const client = new Client(api.url);
    await client.signIn('carol', 'carol-password');
    const csrf = await client.token('/panel/servers/ns3.lab/install');
    const form = new FormData();
    for (const [k, v] of Object.entries({ csrf, URL: 'http://127.0.0.1:9/image.raw', type: 'raw', diskGroupId: '2' }))
      form.set(k, v);
    expect((await client.go('/panel/servers/ns3.lab/install', { form })).status).toBe(200);
    expect((await client.go('/panel/servers/ns3.lab/install/confirm', { form: { csrf } })).status).toBe(303);
    const { id } = (await api.store.current('ns3.lab'))!;
    expect((await client.go('/panel/servers/ns3.lab/deployment')).text).toContain('data-live="true"');
    expect((await client.go('/panel/servers/ns3.lab/delete', { form: { csrf } })).status).toBe(303);
    expect((await call(api.url, 'GET', `/dedicated/server/ns3.lab/task/${id}`, { key: 'k3' })).body).toMatchObject({
      status: 'cancelled',
    });
    const follow = await client.go('/panel/servers/ns3.lab/deployment');
    expect(follow.text).toContain(`<dd id="state" aria-live="polite" class="state-cancelled">${en.cancelled}</dd>`);
    expect(follow.text).toContain('data-live="false"');
    expect(follow.text).toMatch(/<dd id="detail" hidden><\/dd>/);
    expect(JSON.parse((await client.go('/panel/servers/ns3.lab/deployment.json')).text)).toMatchObject({
      state: { kind: 'cancelled' },
      stateText: en.cancelled,
      live: false,
    });
    expect((await client.go('/panel/servers')).text).toContain(`<td class="state-cancelled">${en.cancelled}</td>`);
    const server = await client.go('/panel/servers/ns3.lab');
    expect(server.text).toContain(en.cancelled);
    expect(server.text).not.toContain(`${'/panel/servers/ns3.lab'}/delete`);
  });

  it("shows a deployment that failed to boot as an error, with the API's message", async () => {
    const client = new Client(api.url);
    await client.signIn('dave', 'dave-password');
    const csrf = await client.token('/panel/servers/ns2.lab/install');
    boot.onBoot = async () => {
      throw new Error('power controller unreachable');
    };
    try {
      const form = new FormData();
      for (const [k, v] of Object.entries({ csrf, URL: 'http://127.0.0.1:9/image.raw', type: 'raw', diskGroupId: '0' }))
        form.set(k, v);
      expect((await client.go('/panel/servers/ns2.lab/install', { form })).status).toBe(200);
      expect((await client.go('/panel/servers/ns2.lab/install/confirm', { form: { csrf } })).status).toBe(303);
    } finally {
      boot.onBoot = async () => {};
    }
    expect((await client.go('/panel/servers')).text).toContain(`<td class="state-error">${en.error}</td>`);
    const follow = await client.go('/panel/servers/ns2.lab/deployment');
    expect(follow.text).toContain('Could not boot ns2.lab on the deployment agent.');
    expect(follow.text).toContain('data-live="false"');
  });

  it("speaks the browser's language unless the switch chose another", async () => {
    const client = new Client(api.url);
    expect(
      (await client.go('/panel/sign-in', { headers: { 'accept-language': 'de-DE, fr;q=0.8, en;q=0.5' } })).text,
    ).toContain(`<h1>${fr.signIn}</h1>`);
    expect((await client.go('/panel/sign-in', { headers: { 'accept-language': 'de-DE' } })).text).toContain(
      `<h1>${en.signIn}</h1>`,
    );
    const switched = await client.go('/panel/language/en?back=/panel/sign-in');
    expect(switched.headers.get('location')).toBe('/panel/sign-in');
    expect((await client.go('/panel/sign-in', { headers: { 'accept-language': 'fr' } })).text).toContain(
      `<h1>${en.signIn}</h1>`,
    );
    expect((await client.go('/panel/language/fr?back=//evil.example/')).headers.get('location')).toBe('/panel/servers');
  });

  it('marks cookies Secure and sends HSTS under TLS', async () => {
    const key = join(dir, 'key.pem');
    const cert = join(dir, 'cert.pem');
    makeLabCertificate(cert, key);
    const store = await openStore(join(dir, 'tls.sqlite'));
    const app = buildApi({
      config,
      store,
      boot,
      agentUrl: () => '',
      tls: { cert: readFileSync(cert), key: readFileSync(key) },
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const port = (app.server.address() as AddressInfo).port;
      const headers = await new Promise<Record<string, string | string[] | undefined>>((resolve, reject) => {
        httpsRequest({ host: '127.0.0.1', port, path: '/panel/sign-in', ca: readFileSync(cert) }, (response) => {
          response.resume();
          resolve(response.headers);
        })
          .on('error', reject)
          .end();
      });
      expect(headers['strict-transport-security']).toBe('max-age=31536000');
      const cookies = headers['set-cookie'] as string[];
      expect(
        cookies.some(
          (c) =>
            /^__Host-byoi_sign_in=.*; Path=\/(;|$)/.test(c) &&
            /; Secure/.test(c) &&
            !/Domain=/i.test(c) &&
            /HttpOnly/.test(c) &&
            /SameSite=Strict/.test(c),
        ),
      ).toBe(true);
    } finally {
      await app.close();
      await store.close();
    }
  });
});
