// A lab API with APIv6 accounts for tests (customers and credentials in its SQLite store), and calls
// signed by hand the way OVH's clients sign them: written here from OVH's published scheme, not
// borrowed from lib/api, so that a mistake there cannot hide in both.
import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { BootAdapter } from '../../lib/api/boot.ts';
import type { ApiConfig } from '../../lib/api/config.ts';
import { hashPassword } from '../../lib/api/passwords.ts';
import { SecretBox } from '../../lib/api/store/secret-box.ts';
import { buildApi, type ApiOptions } from '../../lib/api/server.ts';
import { defaultAuthFailureLimits } from '../../lib/api/auth-failures.ts';
import { SqlAuthFailures } from '../../lib/api/store/auth-failures-store.ts';
import { SqlCredentials } from '../../lib/api/store/credentials-store.ts';
import { SqlCustomers } from '../../lib/api/store/customers-store.ts';
import { openDatabase } from '../../lib/api/store/open.ts';
import { SqlStore } from '../../lib/api/store/sql-store.ts';
import type { Store } from '../../lib/api/store/types.ts';

export interface Apiv6Lab {
  readonly url: string;
  readonly store: Store;
  readonly customers: SqlCustomers;
  readonly credentials: SqlCredentials;
  close(): Promise<void>;
}

/** `accounts`: name -> [password, servers]. */
export async function startApiv6Lab(
  config: ApiConfig,
  dbPath: string,
  boot: BootAdapter,
  accounts: Record<string, [string, string[]]>,
  options: Pick<ApiOptions, 'tls'> & { maxAuthFailures?: number } = {},
): Promise<Apiv6Lab> {
  const db = await openDatabase(dbPath);
  const box = new SecretBox(randomBytes(32));
  const store = await SqlStore.open(db, box);
  const customers = new SqlCustomers(db, config);
  const credentials = new SqlCredentials(db, box);
  for (const [name, [password, servers]] of Object.entries(accounts))
    await customers.add(name, await hashPassword(password), servers);
  let url = '';
  const { maxAuthFailures, ...rest } = options;
  const authFailures =
    maxAuthFailures === undefined
      ? undefined
      : new SqlAuthFailures(db, { ...defaultAuthFailureLimits, maxFailures: maxAuthFailures });
  const app = buildApi({
    config,
    store,
    boot,
    customers,
    credentials,
    agentUrl: () => url,
    ...rest,
    ...(authFailures && { authFailures }),
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  return { url, store, customers, credentials, close: async () => (await app.close(), await store.close()) };
}

export interface Keys {
  readonly appKey: string;
  readonly appSecret: string;
  readonly consumerKey?: string;
}

export function sign(
  appSecret: string,
  consumerKey: string,
  method: string,
  url: string,
  body: string,
  timestamp: number,
): string {
  return (
    '$1$' + createHash('sha1').update(`${appSecret}+${consumerKey}+${method}+${url}+${body}+${timestamp}`).digest('hex')
  );
}

export interface SignedOptions {
  /** The body sent; JSON.stringify of it unless a string. */
  body?: unknown;
  /** The body the signature covers, when it should differ from the one sent. */
  signedBody?: string;
  timestamp?: number;
  /** The URL the signature covers (default: the one requested). */
  signedUrl?: string;
}

/** A signed APIv6 call with fetch; answers the status, the parsed body and the headers. */
export async function signedCall(
  base: string,
  keys: Keys,
  method: string,
  path: string,
  options: SignedOptions = {},
): Promise<{ status: number; body: any }> {
  const url = `${base}${path}`;
  const body =
    options.body === undefined ? '' : typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    'x-ovh-application': keys.appKey,
    'x-ovh-timestamp': String(timestamp),
  };
  if (keys.consumerKey !== undefined) {
    headers['x-ovh-consumer'] = keys.consumerKey;
    headers['x-ovh-signature'] = sign(
      keys.appSecret,
      keys.consumerKey,
      method,
      options.signedUrl ?? url,
      options.signedBody ?? body,
      timestamp,
    );
  }
  const response = await fetch(url, { method, headers, ...(body !== '' && { body }) });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}

/** The validation page through plain HTTP requests, as a browser without script would: GET, then POST its form. */
export async function answerValidationPage(
  validationUrl: string,
  form: { name: string; password: string; decision: 'grant' | 'refuse'; validity?: string },
  fetchPage: typeof fetch = fetch,
): Promise<{ status: number; location: string | null; html: string }> {
  const page = await fetchPage(validationUrl);
  const html = await page.text();
  const cookie = (page.headers.get('set-cookie') ?? '').split(';')[0]!;
  const field = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1] ?? '';
  const origin = new URL(validationUrl).origin;
  const answer = await fetchPage(`${origin}/auth/`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin },
    body: new URLSearchParams({
      credentialToken: field('credentialToken'),
      csrf: field('csrf'),
      name: form.name,
      password: form.password,
      validity: form.validity ?? 'unlimited',
      decision: form.decision,
    }).toString(),
  });
  return { status: answer.status, location: answer.headers.get('location'), html: await answer.text() };
}
