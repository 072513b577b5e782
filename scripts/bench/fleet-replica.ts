// One replica of `byoi serve` for the fleet benchmark (fleet.ts): the same API (buildApi) over the same
// store (openStore) as `byoi serve`, except for the boot adapter. Instead of booting a server it hands
// each deployment's agent token to the benchmark, which plays the agents, in a 0600 file named after the
// server.   node fleet-replica.ts <db location> <config.json> <token dir>
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { BootAdapter } from '../../lib/api/boot.ts';
import { loadConfig } from '../../lib/api/config.ts';
import { buildApi } from '../../lib/api/server.ts';
import { openStore } from '../../lib/api/store/open.ts';

const [location, configPath, tokenDir] = process.argv.slice(2);
if (!location || !configPath || !tokenDir) throw new Error('usage: fleet-replica.ts <db> <config.json> <token dir>');

const boot: BootAdapter = {
  boot: (context) => writeFile(join(tokenDir, context.serviceName), context.token, { mode: 0o600 }),
  rescue: async () => {},
};
const config = loadConfig(configPath);
const store = await openStore(location, { ...(config.secretsKeyFile && { keyFile: config.secretsKeyFile }) });
let url = '';
const app = buildApi({ config, store, boot, agentUrl: () => url });
await app.listen({ host: '127.0.0.1', port: 0 });
url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
process.stdout.write(`listening on ${url}\n`);
process.once('SIGTERM', () => {
  void app
    .close()
    .then(() => store.close())
    .then(() => process.exit(0));
});
