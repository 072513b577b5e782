import type { CommandModule } from 'yargs';

// Every subcommand, in the order `byoi --help` lists them.
export const commands: CommandModule<any, any>[] = [];
