// The credential validation page in a real browser (Debian's chromium driven by playwright-core): the
// customer reads the rules, signs in, picks a validity and authorizes (or refuses); the browser then
// lands on the application's redirection, on another origin, which the page's strict CSP must let the
// form reach. No CSP violation is reported on the way.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ApiConfig } from '../../lib/api/config.ts';
import { RecordingBoot } from '../helpers/api.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { launchChromium } from '../helpers/chromium.ts';
import { signedCall, startApiv6Lab, type Apiv6Lab } from '../helpers/ovh-apiv6.ts';

const config: ApiConfig = { servers: [{ serviceName: 'ns1.lab', apiKeys: [] }] };
const rules = [{ method: 'GET', path: '/dedicated/server*' }];

describe.skipIf(skipWithout('chromium'))('the validation page in a browser', () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-validation-page-'));
  let lab: Apiv6Lab;
  let browser: Browser;
  let tool: Server;
  let toolUrl: string;
  const landed: string[] = [];
  let app: { appKey: string; appSecret: string };

  beforeAll(async () => {
    assertCapable('chromium');
    lab = await startApiv6Lab(config, join(dir, 'lab.sqlite'), new RecordingBoot(), {
      dana: ['dana password', ['ns1.lab']],
    });
    app = (await lab.credentials.createApplication("dana's <script>tool</script>", 'deploys web servers')).application;
    // The application's own site, on another origin: where the browser goes once the customer answered.
    tool = createServer((request, response) => {
      landed.push(request.url ?? '');
      response.writeHead(200, { 'content-type': 'text/plain' }).end('back in the tool');
    });
    await new Promise<void>((resolve) => tool.listen(0, '127.0.0.1', resolve));
    toolUrl = `http://localhost:${(tool.address() as AddressInfo).port}`;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    tool?.close();
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function request(redirection: string) {
    const response = await fetch(`${lab.url}/1.0/auth/credential`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-ovh-application': app.appKey },
      body: JSON.stringify({ accessRules: rules, redirection }),
    });
    return (await response.json()) as { validationUrl: string; consumerKey: string };
  }

  /** A page that records every CSP violation the browser reports. */
  async function openPage(url: string): Promise<{ page: Page; violations: string[] }> {
    const page = await (await browser.newContext()).newPage();
    const violations: string[] = [];
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
    });
    await page.goto(url);
    return { page, violations };
  }

  it('shows the request, refuses a wrong password, then authorizes for the validity picked and lands on the redirection', async () => {
    const { validationUrl, consumerKey } = await request(`${toolUrl}/done?state=42`);
    const { page, violations } = await openPage(validationUrl);
    await expect.poll(() => page.locator('table').innerText()).toContain('/dedicated/server*');
    // The application's name is text, not markup.
    expect(await page.locator('strong').first().innerText()).toBe("dana's <script>tool</script>");

    await page.fill('input[name=name]', 'dana');
    await page.fill('input[name=password]', 'wrong');
    await page.click('button[value=grant]');
    expect(await page.locator('[role=alert]').innerText()).toBe('Wrong account name or password.');
    expect(await page.inputValue('input[name=name]')).toBe('dana');

    await page.fill('input[name=password]', 'dana password');
    await page.selectOption('select[name=validity]', '2592000');
    await Promise.all([page.waitForURL(`${toolUrl}/done?state=42`), page.click('button[value=grant]')]);
    expect(await page.locator('body').innerText()).toBe('back in the tool');
    expect(landed).toContain('/done?state=42');
    expect(violations).toEqual([]);

    const keys = { ...app, consumerKey };
    const current = await signedCall(lab.url, keys, 'GET', '/1.0/auth/currentCredential');
    expect(current.body).toMatchObject({ status: 'validated', rules });
    const days = (Date.parse(current.body.expiration) - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThanOrEqual(30);
    expect((await signedCall(lab.url, keys, 'GET', '/1.0/dedicated/server')).body).toEqual(['ns1.lab']);
  });

  it('refuses: the browser lands on the redirection and the key never signs', async () => {
    const { validationUrl, consumerKey } = await request(`${toolUrl}/refused`);
    const { page, violations } = await openPage(validationUrl);
    await page.fill('input[name=name]', 'dana');
    await page.fill('input[name=password]', 'dana password');
    await Promise.all([page.waitForURL(`${toolUrl}/refused`), page.click('button[value=refuse]')]);
    expect(violations).toEqual([]);
    expect((await signedCall(lab.url, { ...app, consumerKey }, 'GET', '/1.0/dedicated/server')).body.errorCode).toBe(
      'INVALID_CREDENTIAL',
    );
    // The link is spent.
    await page.goto(validationUrl);
    expect(await page.locator('body').innerText()).toContain('no longer pending');
  });
});
