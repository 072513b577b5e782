// The API under load (scripts/bench/api-load.ts starts it as a child process so that the load
// generator does not share its event loop): byoi's Fastify app over a SQLite file, its boot adapter
// handing each deployment's agent token to the parent over IPC instead of booting anything.
import type { AddressInfo } from 'node:net';
import type { BootAdapter, BootContext } from '../../lib/api/boot.ts';
import type { ApiConfig } from '../../lib/api/config.ts';
import { buildApi } from '../../lib/api/server.ts';
import { openStore } from '../../lib/api/store/open.ts';

// The config (its API key) comes over IPC: never a secret on a command line.
const dbPath = process.argv[2]!;
const config = await new Promise<ApiConfig>((resolve) => process.once('message', (m) => resolve(m as ApiConfig)));

const boot: BootAdapter = {
  async boot(context: BootContext) {
    process.send!({ serviceName: context.serviceName, token: context.token });
  },
  async rescue() {},
};

const store = await openStore(dbPath);
let url = '';
const app = buildApi({ config, store, boot, agentUrl: () => url });
await app.listen({ host: '127.0.0.1', port: 0 });
url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
process.send!({ url });
process.on(
  'disconnect',
  () =>
    void app
      .close()
      .then(() => store.close())
      .then(() => process.exit(0)),
);
