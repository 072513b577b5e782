// The byoi command line (started by agent/byoi.ts). Each subcommand lives in agent/commands/ and is
// registered here.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { commands } from './commands/index.ts';

await yargs(hideBin(process.argv))
  .scriptName('byoi')
  .command(commands)
  .demandCommand(1, 'Name a command: byoi --help lists them.')
  .strict()
  .fail((message, error, cli) => {
    // Usage errors (yargs' own YError or a bad flag): help, then the message last on stderr, exit 2.
    // Errors thrown by handlers are not usage errors: they end through agent/run.ts.
    if (error && error.name !== 'YError') throw error;
    cli.showHelp((help: string) => process.stderr.write(`${help}\n\n`));
    process.stderr.write(`${message ?? error?.message}\n`);
    process.exit(2);
  })
  .help()
  .version(false)
  .parseAsync();
