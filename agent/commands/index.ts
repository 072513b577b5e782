import type { CommandModule } from 'yargs';
import { agentCommand } from './agent.ts';
import { configDriveCommand } from './configdrive.ts';
import { convertCommand } from './convert.ts';
import { deployCommandModule } from './deploy.ts';
import { disksCommand } from './disks.ts';
import { inspectCommand } from './inspect.ts';
import { serveCommand } from './serve.ts';

// Every subcommand, in the order `byoi --help` lists them.
export const commands: CommandModule<any, any>[] = [
  deployCommandModule,
  inspectCommand,
  convertCommand,
  disksCommand,
  configDriveCommand,
  serveCommand,
  agentCommand,
];
