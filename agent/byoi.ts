#!/usr/bin/env node
// The byoi command line. Each subcommand lives in agent/commands/ and is registered here.
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { commands } from './commands/index.ts';

await yargs(hideBin(process.argv))
  .scriptName('byoi')
  .command(commands)
  .demandCommand(1, 'Name a command: byoi --help lists them.')
  .strict()
  .fail((message, error, cli) => {
    // Usage errors: exit 2 with the message last on stderr. Errors thrown by handlers exit on their own.
    if (error) throw error;
    process.stderr.write(`${cli.help()}\n\n${message}\n`);
    process.exit(2);
  })
  .help()
  .version(false)
  .parseAsync();
