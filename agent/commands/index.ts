import type { CommandModule } from 'yargs';
import { configDriveCommand } from './configdrive.ts';
import { disksCommand } from './disks.ts';
import { serveCommand } from './serve.ts';

// Every subcommand, in the order `byoi --help` lists them.
export const commands: CommandModule<any, any>[] = [disksCommand, configDriveCommand, serveCommand];
