// The operator's subcommands of `byoi serve`: customer accounts, APIv6 applications and the validation
// of a pending consumer key, written to the same database (and key file) `byoi serve` uses. Secrets
// are read from standard input and printed once (an application secret), never taken from argv.
import { resolve } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import type { ApiConfig } from '../../lib/api/config.ts';
import {
  badCredentialRequest,
  badCustomerName,
  customerExists,
  databasePasswordOnCommandLine,
  noSuchCustomer,
  notPending,
} from '../../lib/errors.ts';
import { readSecret } from '../read-secret.ts';
import { run } from '../run.ts';

interface StoreArgs {
  db?: string;
  config?: string;
}

/** The options every subcommand that opens the store takes (the parent `serve` declares them). */
export function storeOptions<T>(y: Argv<T>) {
  return y.option('db', {
    type: 'string',
    describe:
      'Where deployments, accounts and API credentials are kept: an SQLite file (default byoi-serve.sqlite or the config\'s "database"; created 0600; secrets sealed with the key in DB.key or the config\'s secretsKeyFile), ' +
      'or postgres://user@host/db for several replicas (password from PGPASSWORD or ~/.pgpass, never here; docs/fleet.md)',
  });
}

/** The database `--db` or else the config names (the embedded default without either), and its key file. */
export async function openServiceAt(db: string | undefined, config: ApiConfig) {
  const [{ openService }, { isPostgresUrl, hasPassword }] = await Promise.all([
    import('../../lib/api/open-service.ts'),
    import('../../lib/api/store/database-url.ts'),
  ]);
  // A command line is readable by every user of the host.
  if (db !== undefined && isPostgresUrl(db) && hasPassword(db)) throw databasePasswordOnCommandLine();
  const location = db ?? config.database ?? 'byoi-serve.sqlite';
  return openService(
    isPostgresUrl(location) ? location : resolve(location),
    config.secretsKeyFile && resolve(config.secretsKeyFile),
    config,
  );
}

/** The store `byoi serve` uses: the same database and key file (`--config` names a secretsKeyFile, if any). */
async function open(argv: StoreArgs) {
  const { loadConfig } = await import('../../lib/api/config.ts');
  return openServiceAt(argv.db, argv.config ? loadConfig(argv.config) : { servers: [] });
}

const CUSTOMER_NAME = /^[A-Za-z0-9._@-]{1,64}$/;

const hashPassword: CommandModule<StoreArgs, StoreArgs> = {
  command: 'hash-password',
  describe: 'Print the scrypt hash of a password read from standard input (for the config\'s "customers")',
  handler: () =>
    run(async () => {
      const { hashPassword } = await import('../../lib/api/passwords.ts');
      process.stdout.write(`${await hashPassword(await readSecret('password'))}\n`);
    }),
};

const customerAdd: CommandModule<StoreArgs, StoreArgs & { name: string; server?: string[] }> = {
  command: 'add <name>',
  describe: 'Add a customer account (password on standard input) owning the given servers',
  builder: (y) =>
    y.positional('name', { type: 'string', demandOption: true }).option('server', {
      type: 'string',
      array: true,
      describe: 'serviceName of a server the customer owns (repeatable)',
    }),
  handler: (argv) =>
    run(async () => {
      if (!CUSTOMER_NAME.test(argv.name)) throw badCustomerName();
      const password = await readSecret('password');
      const { hashPassword } = await import('../../lib/api/passwords.ts');
      const service = await open(argv);
      try {
        if (!(await service.customers.add(argv.name, await hashPassword(password), argv.server ?? [])))
          throw customerExists(argv.name);
        process.stdout.write(`customer ${argv.name} added\n`);
      } finally {
        await service.close();
      }
    }),
};

const customerAssign: CommandModule<StoreArgs, StoreArgs & { name: string; server: string }> = {
  command: 'assign <name> <server>',
  describe: 'Give a server (serviceName) to a customer account of the store',
  builder: (y) =>
    y
      .positional('name', { type: 'string', demandOption: true })
      .positional('server', { type: 'string', demandOption: true }),
  handler: (argv) =>
    run(async () => {
      const service = await open(argv);
      try {
        if (!(await service.customers.byName(argv.name))) throw noSuchCustomer(argv.name);
        await service.customers.assign(argv.name, argv.server);
        process.stdout.write(`${argv.server} belongs to ${argv.name}\n`);
      } finally {
        await service.close();
      }
    }),
};

const applicationCreate: CommandModule<StoreArgs, StoreArgs & { name: string; description?: string }> = {
  command: 'create',
  describe: 'Create an APIv6 application: prints its application key and secret, once',
  builder: (y) =>
    y
      .option('name', {
        type: 'string',
        demandOption: true,
        describe: "The application's name, shown on validation pages",
      })
      .option('description', { type: 'string', default: '' }),
  handler: (argv) =>
    run(async () => {
      const service = await open(argv);
      try {
        const { application, appSecret } = await service.credentials.createApplication(
          argv.name.slice(0, 200),
          (argv.description ?? '').slice(0, 1000),
        );
        process.stdout.write(`applicationKey=${application.appKey}\napplicationSecret=${appSecret}\n`);
      } finally {
        await service.close();
      }
    }),
};

const credentialValidate: CommandModule<StoreArgs, StoreArgs & { customer: string; validity?: number }> = {
  command: 'validate',
  describe: 'Validate a pending consumer key (read from standard input) for a customer, as the validation page does',
  builder: (y) =>
    y
      .option('customer', { type: 'string', demandOption: true, describe: 'The account the key acts for' })
      .option('validity', { type: 'number', describe: 'Seconds the key stays valid (default: unlimited)' }),
  handler: (argv) =>
    run(async () => {
      if (argv.validity !== undefined && !(Number.isInteger(argv.validity) && argv.validity > 0))
        throw badCredentialRequest('--validity must be a positive number of seconds');
      const consumerKey = await readSecret('consumer key');
      const service = await open(argv);
      try {
        if (!(await service.customers.byName(argv.customer))) throw noSuchCustomer(argv.customer);
        const credential = await service.credentials.byConsumerKey(consumerKey);
        if (
          credential?.status !== 'pendingValidation' ||
          !(await service.credentials.validate(credential.id, argv.customer, argv.validity ?? null))
        ) {
          throw notPending();
        }
        process.stdout.write(`credential ${credential.id} validated for ${argv.customer}\n`);
      } finally {
        await service.close();
      }
    }),
};

/** A word grouping subcommands: `byoi serve customer add ...`. */
function group(command: string, describe: string, children: CommandModule<any, any>[]): CommandModule<any, any> {
  return {
    command,
    describe,
    builder: (y) =>
      y.command(children).demandCommand(1, `Name a ${command} command: byoi serve ${command} --help lists them.`),
    handler: () => {},
  };
}

export const serveAdminCommands: CommandModule<any, any>[] = [
  hashPassword,
  group('customer', 'Customer accounts of the store', [customerAdd, customerAssign]),
  group('application', 'APIv6 applications', [applicationCreate]),
  group('credential', 'APIv6 consumer keys', [credentialValidate]),
];
