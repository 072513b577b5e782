// `byoi configdrive --out FILE [fields]`: builds the config drive filesystem alone, as a deployment
// would (this machine's NICs, a fresh instance id), for debugging and tooling. The field flags are
// exported for `byoi deploy`, which takes the same ones.
import { readFile, writeFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import type { CommandModule, Options } from 'yargs';
import { configDriveMessages, invalidConfigDrive } from '../../lib/errors.ts';
import { configDriveContent } from '../../lib/configdrive/content.ts';
import { nicsToConfigure, physicalNics } from '../../lib/configdrive/network.ts';
import type { ConfigDriveOptions } from '../../lib/configdrive/options.ts';
import { validateConfigDrive } from '../../lib/configdrive/validate.ts';
import { buildVfatImage } from '../../lib/configdrive/vfat.ts';
import { run } from '../run.ts';

/** The config drive fields, as flags; `byoi deploy` adds `configDriveEnableFlag` to them. */
export const configDriveFieldFlags = {
  hostname: { type: 'string', requiresArg: true, describe: 'Hostname or FQDN for cloud-init' },
  'ssh-key': { type: 'string', array: true, nargs: 1, describe: 'SSH public key line (repeatable)' },
  'user-data': { type: 'string', requiresArg: true, describe: 'User data file (#cloud-config, script, MIME, gzip; plain or base64), - for stdin' },
  'user-metadata': { type: 'string', array: true, nargs: 1, describe: 'key=value for meta_data.json "meta" (repeatable)' },
} as const satisfies Record<string, Options>;

export const configDriveEnableFlag = {
  'config-drive': { type: 'boolean', describe: 'Add a config drive (implied by any config drive field)' },
} as const satisfies Record<string, Options>;

/** All five config drive flags of `byoi deploy`. */
export const configDriveFlags = { ...configDriveEnableFlag, ...configDriveFieldFlags };

export interface ConfigDriveArgs {
  configDrive?: boolean;
  hostname?: string;
  sshKey?: string[];
  userData?: string;
  userMetadata?: string[];
}

/** The options the flags ask for (not yet validated), or undefined when they ask for no config drive. */
export async function configDriveFromArgs(args: ConfigDriveArgs): Promise<ConfigDriveOptions | undefined> {
  const asked =
    args.configDrive === true ||
    args.hostname !== undefined ||
    (args.sshKey?.length ?? 0) > 0 ||
    args.userData !== undefined ||
    (args.userMetadata?.length ?? 0) > 0;
  if (!asked) return undefined;
  const metadata: Record<string, string> = {};
  for (const pair of args.userMetadata ?? []) {
    const at = pair.indexOf('=');
    if (at <= 0) throw invalidConfigDrive(configDriveMessages.invalidUserMetadataFlag(pair));
    metadata[pair.slice(0, at)] = pair.slice(at + 1);
  }
  return {
    ...(args.hostname !== undefined ? { hostname: args.hostname } : {}),
    sshKeys: args.sshKey ?? [],
    ...(args.userData !== undefined ? { userData: await readUserData(args.userData) } : {}),
    metadata,
  };
}

/** Bytes, not text: gzip user data must reach the drive unchanged. */
async function readUserData(path: string): Promise<Uint8Array> {
  return new Uint8Array(path === '-' ? await buffer(process.stdin) : await readFile(path));
}

interface Args extends ConfigDriveArgs {
  out: string;
  sectorSize: number;
  sizeMib: number;
}

export const configDriveCommand: CommandModule<object, Args> = {
  command: 'configdrive',
  describe: 'Build a config drive filesystem image (vfat, label config-2) without touching any disk',
  builder: (yargs) =>
    yargs
      .options(configDriveFieldFlags)
      .option('out', { type: 'string', demandOption: true, requiresArg: true, describe: 'Where to write the image' })
      .option('sector-size', { type: 'number', choices: [512, 4096], default: 512, describe: "The target disk's logical sector size" })
      .option('size-mib', { type: 'number', default: 63, describe: 'Filesystem size in MiB (1-64; 63 fits the partition byoi adds)' })
      .check((argv) => {
        if (!Number.isInteger(argv['size-mib']) || argv['size-mib'] < 1 || argv['size-mib'] > 64) throw new Error('--size-mib must be a whole number from 1 to 64.');
        return true;
      }) as never,
  handler: (args) =>
    run(async () => {
      const options = (await configDriveFromArgs(args)) ?? { sshKeys: [], metadata: {} };
      validateConfigDrive(options);
      const content = configDriveContent(options, { nics: nicsToConfigure(physicalNics()) });
      const image = await buildVfatImage(content.files, { bytes: args.sizeMib * 1024 * 1024, sectorSize: args.sectorSize });
      await writeFile(args.out, image);
      process.stdout.write(`${args.out}: config drive, instance id ${content.uuid}, files ${content.files.map((f) => f.path).join(', ')}\n`);
    }),
};
