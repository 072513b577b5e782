// A real provisioning API on 127.0.0.1 for tests: byoi's Fastify app over a SQLite file in a temp
// dir, with a boot adapter the test controls. Restartable on the same port and database.
import type { AddressInfo } from 'node:net';
import type { BootAdapter, BootContext } from '../../lib/api/boot.ts';
import type { ApiConfig } from '../../lib/api/config.ts';
import { buildApi, type ApiOptions } from '../../lib/api/server.ts';
import { openStore } from '../../lib/api/store/open.ts';
import type { Store } from '../../lib/api/store/types.ts';

/** Records every boot; `onBoot` lets a test start an agent. */
export class RecordingBoot implements BootAdapter {
  readonly boots: BootContext[] = [];
  readonly rescues: string[] = [];
  onBoot: (context: BootContext) => Promise<void> = async () => {};
  onRescue: (serviceName: string) => Promise<void> = async () => {};

  async boot(context: BootContext): Promise<void> {
    this.boots.push(context);
    await this.onBoot(context);
  }

  async rescue(serviceName: string): Promise<void> {
    this.rescues.push(serviceName);
    await this.onRescue(serviceName);
  }
}

export interface TestApi {
  readonly url: string;
  readonly port: number;
  readonly store: Store;
  close(): Promise<void>;
}

/** `extra`: limits, a failed-authentication counter, TLS... (HTTPS when `extra.tls` is given). */
export async function startApi(
  config: ApiConfig,
  dbPath: string,
  boot: BootAdapter,
  port = 0,
  extra: Partial<ApiOptions> = {},
): Promise<TestApi> {
  const store = await openStore(dbPath);
  let url = '';
  const app = buildApi({ config, store, boot, agentUrl: () => url, ...extra });
  await app.listen({ host: '127.0.0.1', port });
  const actual = (app.server.address() as AddressInfo).port;
  url = `${extra.tls ? 'https' : 'http'}://127.0.0.1:${actual}`;
  return {
    url,
    port: actual,
    store,
    close: async () => {
      await app.close();
      await store.close();
    },
  };
}

/** A JSON request; answers the status and the parsed body (null for an empty body). */
export async function call(
  url: string,
  method: string,
  path: string,
  options: { key?: string; body?: unknown; rawBody?: string } = {},
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {};
  if (options.key !== undefined) headers.authorization = `Bearer ${options.key}`;
  let payload: string | undefined;
  if (options.rawBody !== undefined || options.body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = options.rawBody ?? JSON.stringify(options.body);
  }
  const response = await fetch(`${url}${path}`, { method, headers, ...(payload !== undefined && { body: payload }) });
  const text = await response.text();
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) };
}
