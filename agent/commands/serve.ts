// byoi serve: the OVH-compatible provisioning API for the lab's servers.
import { readFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { badField, notices } from '../../lib/errors.ts';
import { run } from '../run.ts';
import { openServiceAt, serveAdminCommands, storeOptions } from './serve-admin.ts';

interface ServeArgs {
  config?: string;
  listen: string;
  db?: string;
  tlsCert?: string;
  tlsKey?: string;
  'agent-silence': number;
}

function parseListen(listen: string): { host: string; port: number } {
  const match = /^(.+):(\d{1,5})$/.exec(listen);
  const port = Number(match?.[2]);
  if (!match || port > 65535) throw badField('--listen', 'HOST:PORT');
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1'), port };
}

export const serveCommand: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'Serve the OVH-compatible provisioning API (bringYourOwnImage, reinstall, task, install/status)',
  builder: (y) =>
    storeOptions(y.command(serveAdminCommands))
      .option('config', {
        type: 'string',
        describe: 'JSON file declaring the servers, their API keys and boot commands (required to serve)',
      })
      .option('listen', { type: 'string', default: '127.0.0.1:8080', describe: 'HOST:PORT to listen on' })
      .option('tls-cert', { type: 'string', describe: 'PEM certificate chain: serve HTTPS (with --tls-key)' })
      .option('tls-key', { type: 'string', describe: 'PEM private key of --tls-cert' })
      .option('agent-silence', {
        type: 'number',
        default: 900,
        describe:
          "seconds without word from a deployment's agent (its boot included) before it ends in error and its server goes back to rescue",
      }),
  handler: (argv) =>
    run(async () => {
      // Loaded here, not at start-up: the web server is the heaviest part of the bundle.
      const [{ CommandBootAdapter }, { loadConfig }, { buildApi }, { isPostgresUrl }, { startWatchdog }] =
        await Promise.all([
          import('../../lib/api/boot.ts'),
          import('../../lib/api/config.ts'),
          import('../../lib/api/server.ts'),
          import('../../lib/api/store/database-url.ts'),
          import('../../lib/api/watchdog.ts'),
        ]);
      if (!argv.config) throw badField('--config', "the JSON file declaring the lab's servers");
      if (!(argv['agent-silence'] > 0)) throw badField('--agent-silence', 'a number of seconds');
      const config = loadConfig(argv.config);
      if (Boolean(argv.tlsCert) !== Boolean(argv.tlsKey)) throw badField('--tls-cert and --tls-key', 'both or neither');
      const tls =
        argv.tlsCert && argv.tlsKey ? { cert: readFileSync(argv.tlsCert), key: readFileSync(argv.tlsKey) } : undefined;
      const { host, port } = parseListen(argv.listen);
      const { store, customers, credentials, close } = await openServiceAt(argv.db, config);
      if (isPostgresUrl(argv.db ?? config.database ?? '') && !config.publicUrl)
        process.stderr.write(`${notices.fleetWithoutPublicUrl}\n`);
      let address = `${tls ? 'https' : 'http'}://${argv.listen}`;
      const boot = new CommandBootAdapter(config.servers, { netboot: config.netboot !== undefined });
      const app = buildApi({
        config,
        store,
        customers,
        credentials,
        boot,
        agentUrl: () => config.publicUrl ?? address,
        logger: true,
        ...(tls && { tls }),
      });
      address = await app.listen({ host, port });
      const watchdog = startWatchdog({ store, silenceMs: argv['agent-silence'] * 1000, log: app.log });
      process.stderr.write(`byoi serve: listening on ${address}\n`);
      await new Promise<void>((done) => {
        const stop = () => done();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      watchdog.stop();
      await app.close();
      await close();
    }),
};
