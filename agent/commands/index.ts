import type { CommandModule } from 'yargs';
import { configDriveCommand } from './configdrive.ts';
import { disksCommand } from './disks.ts';

// Every subcommand, in the order `byoi --help` lists them.
export const commands: CommandModule<any, any>[] = [disksCommand, configDriveCommand];
