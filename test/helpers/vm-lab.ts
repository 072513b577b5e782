// The QEMU lab of the whole-system tests (test/e2e/deploy-and-boot.test.ts,
// test/e2e/netboot-story.test.ts): the agent as shipped inside the rescue system, the cloud image,
// an ssh key, files served to the guests, byoi's API as the guests reach it, blank server disks.
import { execFile } from 'node:child_process';
import {
  appendFileSync,
  createReadStream,
  mkdirSync,
  readFileSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import type { BootAdapter } from '../../lib/api/boot.ts';
import type { ApiConfig } from '../../lib/api/config.ts';
import { buildApi } from '../../lib/api/server.ts';
import { openStore } from '../../lib/api/store/open.ts';
import type { Store } from '../../lib/api/store/types.ts';
import { bundle } from '../../scripts/bundle.ts';
import { ensureCloudImage } from '../../scripts/image/boot.ts';
import { ensureRescue, type Rescue } from '../../scripts/rescue/boot.ts';

const repo = fileURLToPath(new URL('../..', import.meta.url));
/** The host's loopback as a guest on QEMU's user-mode network sees it. */
const HOST_FROM_GUEST = '10.0.2.2';

/** With BYOI_E2E_CONSOLES=DIR, each VM's serial console is kept in DIR/<name>.log. */
export function consoleLog(name: string): ((text: string) => void) | undefined {
  const keep = process.env.BYOI_E2E_CONSOLES;
  if (!keep) return undefined;
  mkdirSync(keep, { recursive: true });
  const file = join(keep, `${name}.log`);
  writeFileSync(file, '');
  return (text) => appendFileSync(file, text);
}

/**
 * The agent as shipped (this checkout bundled, in the rescue system built around it, in `dir`), the
 * cached cloud image, and an ed25519 key pair (`dir`/key) whose public key carries `marker`.
 */
export async function prepareVmLab(
  dir: string,
  marker: string,
): Promise<{ image: string; rescue: Rescue; publicKey: string }> {
  const dist = join(dir, 'dist');
  await bundle(join(repo, 'agent/byoi.ts'), dist, 'byoi.mjs');
  const [image, rescue] = await Promise.all([ensureCloudImage(), ensureRescue({ dist, out: join(dir, 'rescue') })]);
  await promisify(execFile)('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', marker, '-f', join(dir, 'key')]);
  return { image, rescue, publicKey: readFileSync(join(dir, 'key.pub'), 'utf8').trim() };
}

/** Serves `files` (URL path -> file) on 127.0.0.1; `url`: their base as the guests reach it. */
export async function serveToGuests(files: Map<string, string>): Promise<{ server: Server; url: string }> {
  const server = createServer((request, response) => {
    const file = files.get(request.url ?? '');
    if (!file) return void response.writeHead(404).end();
    response.writeHead(200, { 'content-length': statSync(file).size });
    createReadStream(file).pipe(response);
  });
  await new Promise<void>((listening) => server.listen(0, '127.0.0.1', listening));
  return { server, url: `http://${HOST_FROM_GUEST}:${(server.address() as AddressInfo).port}` };
}

/**
 * byoi's API on 127.0.0.1 over a SQLite store at `db`, with `boot` as its boot adapter and agents
 * told to come through the guests' view of the host; `prepare` runs before it listens (hooks).
 */
export async function startLabApi(
  config: ApiConfig,
  db: string,
  boot: BootAdapter,
  prepare: (api: FastifyInstance) => void = () => {},
): Promise<{ api: FastifyInstance; store: Store; apiUrl: string; agentUrl: string }> {
  const store = await openStore(db);
  let agentUrl = '';
  const api = buildApi({ config, store, boot, agentUrl: () => agentUrl });
  prepare(api);
  await api.listen({ host: '127.0.0.1', port: 0 });
  const port = (api.server.address() as AddressInfo).port;
  agentUrl = `http://${HOST_FROM_GUEST}:${port}`;
  return { api, store, apiUrl: `http://127.0.0.1:${port}`, agentUrl };
}

/** A server's blank 2 GiB disk (sparse) at `file`. */
export function blankDisk(file: string): string {
  writeFileSync(file, '');
  truncateSync(file, 2 * 1024 ** 3);
  return file;
}
