import type { CommandModule } from 'yargs';
import { configDriveCommand } from './configdrive.ts';

// Every subcommand, in the order `byoi --help` lists them.
export const commands: CommandModule<any, any>[] = [configDriveCommand];
