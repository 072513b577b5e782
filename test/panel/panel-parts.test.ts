// The panel's parts alone: escaping by construction, the language choice, and the mapping of every
// job-validation message to the form field it is about.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SessionStore } from '../../lib/api/store/sessions-store.ts';
import { openStore } from '../../lib/api/store/open.ts';
import { checkDeploymentBody } from '../../lib/api/deployments.ts';
import { ApiError } from '../../lib/api/ovh-error.ts';
import { ByoiError, badField, badJobBody } from '../../lib/errors.ts';
import { imageTypes } from '../../lib/job.ts';
import { html } from '../../lib/panel/html.ts';
import { chooseLanguage, dictionaries } from '../../lib/panel/i18n.ts';
import { installPage } from '../../lib/panel/pages.ts';
import {
  bodyOf,
  emptyForm,
  fieldOf,
  formOfBody,
  type FieldName,
  type InstallForm,
} from '../../lib/panel/install-form.ts';

/** The API's refusal of the form's body (400), whose cause is the job validation's failure. */
const refusalOf = (form: Partial<InstallForm>): ApiError => {
  try {
    checkDeploymentBody('bringYourOwnImage', bodyOf({ ...emptyForm, URL: 'http://images.example/a.qcow2', ...form }));
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error('the form was accepted');
};

describe('the panel parts', () => {
  it('escapes every interpolated value, except Html made by the template itself', () => {
    const evil = `<img src=x onerror="alert('x')">&`;
    expect(html`<p title="${evil}">${evil}</p>`.text).toBe(
      '<p title="&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;">&lt;img src=x onerror=&quot;alert(&#39;x&#39;)&quot;&gt;&amp;</p>',
    );
    expect(html`<ul>${['<a>', html`<li>ok</li>`]}</ul>`.text).toBe('<ul>&lt;a&gt;<li>ok</li></ul>');
    expect(html`${null}${undefined}${false}${0}`.text).toBe('0');
  });

  it('chooses the language from the cookie, else Accept-Language by weight, else English', () => {
    expect(chooseLanguage(undefined, 'fr-CA,fr;q=0.9,en;q=0.8')).toBe('fr');
    expect(chooseLanguage(undefined, 'de;q=1, en;q=0.5, fr;q=0.7')).toBe('fr');
    expect(chooseLanguage(undefined, 'fr;q=0, en')).toBe('en');
    expect(chooseLanguage(undefined, undefined)).toBe('en');
    expect(chooseLanguage('en', 'fr')).toBe('en');
    expect(chooseLanguage('xx', 'fr')).toBe('fr');
  });

  it.each<[FieldName, Partial<InstallForm>]>([
    ['URL', { URL: '' }],
    ['URL', { URL: 'file:///etc/passwd' }],
    ['type', { type: 'not-an-image-type' }],
    ['checkSumType', { checkSumType: 'crc32', checkSum: 'ab' }],
    ['checkSum', { checkSum: 'ab' }],
    ['checkSum', { checkSumType: 'md5', checkSum: 'xyz' }],
    ['diskGroupId', { diskGroupId: 'first' }],
    ['httpHeader', { httpHeader: [{ key: 'Bad Name', value: 'v' }] }],
    ['hostname', { configdrive: true, hostname: 'bad_host name' }],
    ['sshKey', { configdrive: true, sshKey: 'not a key' }],
    ['userMetadatas', { configdrive: true, userMetadatas: [{ key: 'dsmode', value: 'local' }] }],
    ['userMetadatas', { configdrive: true, userMetadatas: [{ key: 'constructor', value: 'x' }] }],
    ['httpHeader', { httpHeader: [{ key: '__proto__', value: 'v' }] }],
  ])("puts the API's refusal about %s beside that field, by its code", (field, form) => {
    const refusal = refusalOf(form);
    expect(refusal.statusCode).toBe(400);
    expect(refusal.code).toBe((refusal.cause as ByoiError).code);
    expect(fieldOf(refusal.cause)).toBe(field);
  });

  it('puts a refusal about the whole request, or about no field of the form, beside the form', () => {
    expect(fieldOf(badJobBody())).toBeUndefined();
    expect(fieldOf(badField('storage', 'a list of {diskGroupId}'))).toBeUndefined();
    expect(fieldOf(badField('description', 'a string'))).toBe('description');
    expect(fieldOf(new Error('Bad URL, expected: an http or https address.'))).toBeUndefined();
  });

  it('offers exactly the image types the API accepts (lib/job.ts), each accepted by its validation', () => {
    const page = installPage(
      { t: dictionaries.en, path: '/panel/servers/s/install', csrfToken: 't' },
      's',
      { source: 'unknown' },
      emptyForm,
      {},
    ).text;
    const select = /<select id="type" name="type">(.*?)<\/select>/s.exec(page)![1]!;
    expect([...select.matchAll(/<option value="([^"]*)"/g)].map((m) => m[1])).toEqual([...imageTypes]);
    for (const type of imageTypes)
      expect(() =>
        checkDeploymentBody('bringYourOwnImage', bodyOf({ ...emptyForm, URL: 'http://images.example/a', type })),
      ).not.toThrow();
  });

  it("gives back a stored body's form without header values or user data", () => {
    const form: InstallForm = {
      ...emptyForm,
      URL: 'http://x/a',
      httpHeader: [{ key: 'Authorization', value: 'Bearer s3cret' }],
      configdrive: true,
      userData: '#!/bin/sh\necho s3cret',
      hostname: 'h1',
    };
    const back = formOfBody(bodyOf(form));
    expect(JSON.stringify(back)).not.toContain('s3cret');
    expect(back).toMatchObject({
      URL: 'http://x/a',
      httpHeader: [{ key: 'Authorization', value: '' }],
      configdrive: true,
      hostname: 'h1',
      userData: '',
    });
  });

  it('sends a binary user data file as base64, and a text one as it is', () => {
    const gzip = new Uint8Array([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe]);
    const drive = (userData: Uint8Array) =>
      bodyOf({ ...emptyForm, URL: 'http://x/a', configdrive: true, userData }).configdrive as { userData: string };
    expect(drive(gzip).userData).toBe(Buffer.from(gzip).toString('base64'));
    expect(drive(new TextEncoder().encode('#cloud-config\n')).userData).toBe('#cloud-config\n');
  });

  it('drops, when the store opens, pending installs an older version kept in clear (migration 21)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'byoi-sessions-'));
    const path = join(dir, 'db.sqlite');
    try {
      let store = await openStore(path);
      const sessions = new SessionStore(store.sql, store.secrets);
      const clear = await sessions.create('carol');
      const sealed = await sessions.create('carol');
      await sessions.setPendingInstall(sealed.session.idHash, { serviceName: 'ns1.lab', body: { URL: 'http://x/b' } });
      // As a database before migration 21 had it.
      await store.sql.run('UPDATE panel_sessions SET pending_install = ? WHERE id_hash = ?', [
        JSON.stringify({
          serviceName: 'ns1.lab',
          body: { URL: 'http://x/a', httpHeader: [{ key: 'A', value: 'clear-secret' }] },
        }),
        clear.session.idHash,
      ]);
      await store.sql.run('DELETE FROM schema_migrations WHERE id = 21', []);
      await store.close();
      store = await openStore(path);
      const reopened = new SessionStore(store.sql, store.secrets);
      expect(
        await store.sql.all('SELECT pending_install FROM panel_sessions WHERE id_hash = ?', [clear.session.idHash]),
      ).toEqual([{ pending_install: null }]);
      expect((await reopened.find(sealed.id))?.pendingInstall).toEqual({
        serviceName: 'ns1.lab',
        body: { URL: 'http://x/b' },
      });
      await store.close();
      expect(readFileSync(path).includes(Buffer.from('clear-secret'))).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('finds a session by its id until it expires or ends, and keeps no id, only its hash', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'byoi-sessions-'));
    const store = await openStore(join(dir, 'db.sqlite'));
    try {
      const sessions = new SessionStore(store.sql, store.secrets);
      const { id, session } = await sessions.create('carol');
      expect(await sessions.find(id)).toMatchObject({
        customer: 'carol',
        csrfToken: session.csrfToken,
        pendingInstall: null,
      });
      expect(await sessions.find(`${id}x`)).toBeUndefined();
      expect(await store.sql.all('SELECT * FROM panel_sessions WHERE id_hash = ? OR csrf_token = ?', [id, id])).toEqual(
        [],
      );
      await sessions.setPendingInstall(session.idHash, { serviceName: 'ns1.lab', body: { URL: 'http://x/a' } });
      expect((await sessions.find(id))?.pendingInstall).toEqual({
        serviceName: 'ns1.lab',
        body: { URL: 'http://x/a' },
      });
      // Sealed, and bound to its session: copied onto another session's row, it does not open there.
      const [row] = await store.sql.all<{ pending_install: string }>(
        'SELECT pending_install FROM panel_sessions WHERE id_hash = ?',
        [session.idHash],
      );
      expect(row!.pending_install).toMatch(/^v1:/);
      expect(row!.pending_install).not.toContain('http://x/a');
      const other = await sessions.create('carol');
      await store.sql.run('UPDATE panel_sessions SET pending_install = ? WHERE id_hash = ?', [
        row!.pending_install,
        other.session.idHash,
      ]);
      expect((await sessions.find(other.id))?.pendingInstall).toBeNull();
      await sessions.end(session.idHash);
      expect(await sessions.find(id)).toBeUndefined();
      const expired = await new SessionStore(store.sql, store.secrets, -1000).create('carol');
      expect(await sessions.find(expired.id)).toBeUndefined();
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
