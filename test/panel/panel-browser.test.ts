// The control panel in a real browser (Debian's chromium driven by playwright-core): a customer signs
// in, installs a qcow2 image (made by qemu-img) on her server, whose agent (spawned by the lab's boot
// command) writes it onto a loop device this test attached, follows the page to done with the
// progress moving, and deletes it. Another customer can neither see nor act on that server; markup in
// a field is text; a form without its CSRF token is refused; a wrong field shows the API's message.
// Screenshots of failed tests go to test-artifacts/panel/ (or $BYOI_TEST_ARTIFACTS).
// BYOI_PANEL_SCREENSHOT=1 also writes docs/panel.png, the README's picture of the panel.
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CommandBootAdapter } from '../../lib/api/boot.ts';
import type { ApiConfig } from '../../lib/api/config.ts';
import { hashPassword } from '../../lib/api/passwords.ts';
import { badChecksum, badUrl } from '../../lib/errors.ts';
import { dictionaries } from '../../lib/panel/i18n.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { startApi, type TestApi } from '../helpers/api.ts';
import { readAt, sha256OfFile } from '../helpers/deploy.ts';
import { agentCommand, makeGptImages } from '../helpers/agent-lab.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { detachAllLoops } from '../helpers/loop.ts';
import { garbageLoop } from '../helpers/target-disk.ts';

const MiB = 2 ** 20;
const repo = fileURLToPath(new URL('../..', import.meta.url));
const artifacts = process.env.BYOI_TEST_ARTIFACTS ?? join(repo, 'test-artifacts/panel');
const en = dictionaries.en;
const fr = dictionaries.fr;

/** Serves the image slowly (so the page shows the download moving), only with the right header. */
function slowImageServer(body: Buffer, header: [string, string]): Promise<{ url: string; server: Server }> {
  const server = createServer((request, response) => {
    if (request.url !== '/image.qcow2') return void response.writeHead(404).end();
    if (request.headers[header[0].toLowerCase()] !== header[1]) return void response.writeHead(401).end();
    response.writeHead(200, { 'content-length': body.length, 'content-type': 'application/octet-stream' });
    let at = 0;
    const step = 512 * 1024;
    const send = () => {
      if (at >= body.length) return void response.end();
      response.write(body.subarray(at, at + step));
      at += step;
      setTimeout(send, 40);
    };
    send();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }),
    ),
  );
}

describe.skipIf(skipWithout('chromium', 'root', 'loop', 'qemu-img', 'sgdisk'))('the control panel in a browser', () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-panel-'));
  const raw = join(dir, 'image.raw');
  const qcow2 = join(dir, 'image.qcow2');
  const secretHeader: [string, string] = ['X-Image-Token', 'header-secret-4f1c9a'];
  let images: { url: string; server: Server };
  let api: TestApi;
  let boot: CommandBootAdapter;
  let disk: string;
  let browser: Browser;
  let alice: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    assertCapable('chromium', 'root', 'loop', 'qemu-img', 'sgdisk');
    // A 64 MiB GPT disk image with random data in its partition, as qcow2 (qemu-img's encoder).
    makeGptImages(raw, qcow2, 64, 40);
    images = await slowImageServer(readFileSync(qcow2), secretHeader);

    disk = garbageLoop(join(dir, 'disk.img'), 96 * MiB);

    const config: ApiConfig = {
      customers: [
        { name: 'alice', passwordHash: await hashPassword('alice-password') },
        { name: 'bob', passwordHash: await hashPassword('bob-password') },
      ],
      servers: [
        {
          serviceName: 'ns1.lab',
          customer: 'alice',
          apiKeys: ['key-alice'],
          diskGroups: [{ diskGroupId: 1, description: '1 x loop device 96 MiB' }],
          boot: {
            command: agentCommand(disk, { insecure: true }),
            logFile: join(dir, 'agent-{service}.log'),
          },
        },
        { serviceName: 'ns2.lab', customer: 'bob', apiKeys: ['key-bob'] },
      ],
    };
    boot = new CommandBootAdapter(config.servers);
    api = await startApi(config, join(dir, 'api.sqlite'), boot);
    browser = await launchChromium();
    alice = await browser.newContext({ locale: 'fr-FR', viewport: { width: 390, height: 844 } });
    page = await alice.newPage();
  });

  afterEach(async (context) => {
    if (context.task.result?.state !== 'fail' || !page) return;
    mkdirSync(artifacts, { recursive: true });
    await page
      .screenshot({ path: join(artifacts, `${context.task.name.replace(/[^A-Za-z0-9]+/g, '-')}.png`), fullPage: true })
      .catch(() => {});
  });

  afterAll(async () => {
    await browser?.close();
    await boot?.rescue('ns1.lab');
    await api?.close();
    await new Promise((resolve) => images?.server.close(resolve));
    detachAllLoops();
    rmSync(dir, { recursive: true, force: true });
  });

  async function signIn(on: Page, name: string, password: string) {
    await on.goto(`${api.url}/panel/`);
    await on.getByLabel(/Identifiant|Account name/).fill(name);
    await on.getByLabel(/Mot de passe|Password/).fill(password);
    await on.getByLabel(/Mot de passe|Password/).press('Enter');
  }

  /** Presses Tab until the focused element's text is `text`: keyboard-only use. */
  async function tabTo(on: Page, text: string) {
    for (let i = 0; i < 40; i++) {
      await on.keyboard.press('Tab');
      if ((await on.evaluate('document.activeElement?.textContent?.trim()')) === text) return;
    }
    throw new Error(`Tab never reached ${JSON.stringify(text)}`);
  }

  it("signs in in French (the browser's language), switches to English, and lists only her servers", async () => {
    await page.goto(`${api.url}/panel/servers`);
    expect(new URL(page.url()).pathname).toBe('/panel/sign-in');
    await signIn(page, 'alice', 'wrong');
    await expect.poll(() => page.locator('[role=alert]').textContent()).toBe(fr.wrongPassword);
    await signIn(page, 'alice', 'alice-password');
    await expect.poll(() => page.locator('h1').textContent()).toBe(fr.servers);
    await page.getByRole('link', { name: 'English' }).click();
    await expect.poll(() => page.locator('h1').textContent()).toBe(en.servers);
    expect(await page.locator('tbody th').allTextContents()).toEqual(['ns1.lab']);
    expect(await page.locator('tbody td').textContent()).toBe(en.idle);
    // Keyboard only, on a phone-sized window: to the server, then to its install form, which fits the width.
    await tabTo(page, 'ns1.lab');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('h1').textContent()).toBe('ns1.lab');
    await tabTo(page, en.install);
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('h1').textContent()).toBe(en.install);
    expect(await page.evaluate('document.documentElement.scrollWidth <= window.innerWidth')).toBe(true);
    const unlabelled =
      "[...document.querySelectorAll('input:not([type=hidden]), select, textarea')].filter((c) => c.labels.length !== 1).map((c) => c.id)";
    expect(await page.evaluate(unlabelled)).toEqual([]);
  });

  it("shows the API's message next to a wrong field, and never shows a header value back", async () => {
    await page.goto(`${api.url}/panel/servers/ns1.lab/install`);
    await page.getByLabel(en.url).fill('ftp://images.example/disk.qcow2');
    await page.getByLabel(en.headerName(1)).fill(secretHeader[0]);
    await page.getByLabel(en.headerValue(1)).fill(secretHeader[1]);
    await page.getByRole('button', { name: en.review }).click();
    await expect.poll(() => page.locator('#URL-error').textContent()).toBe(badUrl().message);
    expect(await page.getByLabel(en.url).getAttribute('aria-describedby')).toBe('URL-error');
    expect(await page.content()).not.toContain(secretHeader[1]);
    expect(await page.getByLabel(en.headerName(1)).inputValue()).toBe(secretHeader[0]);

    await page.getByLabel(en.url).fill(`${images.url}/image.qcow2`);
    await page.getByLabel(en.checkSumType).selectOption('sha256');
    await page.getByLabel(en.checkSum, { exact: true }).fill('abc');
    await page.getByRole('button', { name: en.review }).click();
    await expect.poll(() => page.locator('#checkSum-error').textContent()).toBe(badChecksum('sha256', 64).message);
    expect(await api.store.current('ns1.lab')).toBeUndefined();
  });

  it('shows markup typed into a field as text', async () => {
    await page.goto(`${api.url}/panel/servers/ns1.lab/install`);
    const markup = '<script>window.injected = 1</script><b>bold</b>';
    await page.getByLabel(en.url).fill(`${images.url}/image.qcow2`);
    await page.getByLabel(en.description).fill(markup);
    await page.getByRole('button', { name: en.review }).click();
    await expect.poll(() => page.locator('h1').textContent()).toBe(en.confirmTitle);
    expect(await page.locator('dd', { hasText: 'window.injected' }).textContent()).toBe(markup);
    expect(await page.locator('b', { hasText: 'bold' }).count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as { injected?: number }).injected)).toBeUndefined();
    // In an error message too: the hostname comes back inside the API's sentence.
    await page.goto(`${api.url}/panel/servers/ns1.lab/install`);
    await page.getByLabel(en.url).fill(`${images.url}/image.qcow2`);
    await page.getByLabel(en.enableConfigDrive).check();
    await page.getByLabel(en.hostname).fill('<script>window.injected = 2</script>');
    await page.getByRole('button', { name: en.review }).click();
    await expect
      .poll(() => page.locator('#hostname-error').textContent())
      .toMatch(/^Invalid configdrive hostname "<script>window.injected = 2<\/script>"/);
    expect(await page.evaluate(() => (globalThis as { injected?: number }).injected)).toBeUndefined();
  });

  it('refuses a form posted without its CSRF token', async () => {
    await page.goto(`${api.url}/panel/servers/ns1.lab/install`);
    await page.getByLabel(en.url).fill(`${images.url}/image.qcow2`);
    await page.getByRole('button', { name: en.review }).click();
    await expect.poll(() => page.locator('h1').textContent()).toBe(en.confirmTitle);
    await page.locator('form[action$="/install/confirm"] input[name=csrf]').evaluate((input) => input.remove());
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith('/install/confirm')),
      page.getByRole('button', { name: en.confirmInstall }).click(),
    ]);
    expect(response.status()).toBe(403);
    await expect.poll(() => page.locator('[role=alert]').textContent()).toBe(en.badForm);
    expect(await api.store.current('ns1.lab')).toBeUndefined();
  });

  it('installs after a confirmation, and the follow page reaches done with the progress moving', async () => {
    await page.goto(`${api.url}/panel/servers/ns1.lab`);
    expect(await page.locator('#disk-groups').textContent()).toContain('1 x loop device 96 MiB');
    await page.getByRole('link', { name: en.install }).click();
    expect(await page.locator('.warning').textContent()).toBe(en.eraseWarning);
    await page.getByLabel(en.url).fill(`${images.url}/image.qcow2`);
    await page.getByLabel(en.type).selectOption('qcow2');
    await page.getByLabel(en.checkSumType).selectOption('sha256');
    await page.getByLabel(en.checkSum, { exact: true }).fill(sha256OfFile(qcow2));
    await page.getByLabel(en.description).fill('Debian from the panel');
    await page.getByLabel(en.diskGroupId).selectOption('1');
    await page.getByLabel(en.headerName(1)).fill(secretHeader[0]);
    await page.getByLabel(en.headerValue(1)).fill(secretHeader[1]);
    await page.getByRole('button', { name: en.review }).click();

    await expect.poll(() => page.locator('h1').textContent()).toBe(en.confirmTitle);
    expect(await page.locator('main').textContent()).toContain(en.confirmWhat('ns1.lab'));
    expect(await page.locator('main').textContent()).toContain(`${secretHeader[0]}: (${en.hidden})`);
    expect(await page.content()).not.toContain(secretHeader[1]);
    await page.getByRole('button', { name: en.confirmInstall }).click();

    await expect.poll(() => new URL(page.url()).pathname).toBe('/panel/servers/ns1.lab/deployment');
    const seen = new Set<string>();
    const phases = new Set<string>();
    const deadline = Date.now() + 120_000;
    let pictured = !process.env.BYOI_PANEL_SCREENSHOT;
    while ((await page.locator('#state').getAttribute('class')) === 'state-deploying') {
      if (Date.now() > deadline)
        throw new Error(`still deploying; the agent's log:\n${readFileSync(join(dir, 'agent-ns1.lab.log'), 'utf8')}`);
      const percent = (await page.locator('#percent').textContent()) ?? '';
      seen.add(percent);
      phases.add((await page.locator('#phase').textContent()) ?? '');
      if (!pictured && Number.parseInt(percent, 10) >= 30 && Number.parseInt(percent, 10) <= 80) {
        // The README's picture: the download under way.
        await page.setViewportSize({ width: 900, height: 640 });
        await page.screenshot({ path: join(repo, 'docs/panel.png') });
        await page.setViewportSize({ width: 390, height: 844 });
        pictured = true;
      }
      await page.waitForTimeout(100);
    }
    expect(
      await page.locator('#state').getAttribute('class'),
      readFileSync(join(dir, 'agent-ns1.lab.log'), 'utf8'),
    ).toBe('state-done');
    expect(await page.locator('#state').textContent()).toBe(en.done);
    expect(await page.locator('#percent').textContent()).toBe('100 %');
    expect(await page.locator('#message').textContent()).toContain(disk);
    const percents = [...seen].filter((p) => /^\d+ %$/.test(p) && p !== '100 %');
    expect(percents.length, `percents seen: ${[...seen].join(', ')}`).toBeGreaterThanOrEqual(2);
    expect(phases.size, `phases seen: ${[...phases].join(', ')}`).toBeGreaterThanOrEqual(2);
    expect(await page.locator('#steps li').count()).toBeGreaterThanOrEqual(4);
    expect(await page.locator('#steps li.step-done').count()).toBe(await page.locator('#steps li').count());
    expect(readAt(disk, MiB, 40 * MiB).equals(readAt(raw, MiB, 40 * MiB))).toBe(true);
    expect(pictured, 'BYOI_PANEL_SCREENSHOT: no moment of the download to picture').toBe(true);
  });

  it('lets another customer neither see nor act on the server', async () => {
    const bob = await browser.newContext();
    try {
      const other = await bob.newPage();
      await signIn(other, 'bob', 'bob-password');
      await expect.poll(() => other.locator('tbody th').allTextContents()).toEqual(['ns2.lab']);
      for (const path of ['', '/deployment', '/deployment.json', '/install', '/delete']) {
        const response = await other.goto(`${api.url}/panel/servers/ns1.lab${path}`);
        expect(response?.status(), path).toBe(404);
        expect(await other.content()).not.toContain('Debian from the panel');
      }
      // His own, valid token on a form aimed at her server.
      await other.goto(`${api.url}/panel/servers/ns2.lab/delete`);
      await other
        .locator('form[action$="/delete"]')
        .evaluate((form) => form.setAttribute('action', '/panel/servers/ns1.lab/delete'));
      const [response] = await Promise.all([
        other.waitForResponse((r) => r.url().endsWith('/ns1.lab/delete')),
        other.getByRole('button', { name: en.confirmDelete }).click(),
      ]);
      expect(response.status()).toBe(404);
      expect((await api.store.current('ns1.lab'))?.status).toBe('done');
    } finally {
      await bob.close();
    }
  });

  it('deletes the installation after a confirmation: the server goes to rescue', async () => {
    await page.goto(`${api.url}/panel/servers/ns1.lab`);
    await page.getByRole('link', { name: en.deleteInstall }).click();
    expect(await page.locator('main p').first().textContent()).toBe(en.deleteWhat('ns1.lab'));
    await page.getByRole('button', { name: en.confirmDelete }).press('Enter');
    await expect.poll(() => page.locator('main').textContent()).toContain(en.noDeployment);
    expect(await api.store.current('ns1.lab')).toBeUndefined();
    expect(await api.store.inRescue('ns1.lab')).toBe(true);
  });
});
