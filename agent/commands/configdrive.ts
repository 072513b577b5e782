// `byoi configdrive --out FILE [fields]`: builds the config drive filesystem alone, as a deployment
// would (a fresh instance id), for debugging, tooling and preparing another machine's disk: the
// network is the one the flags give, MACs included; this machine's NICs are never used. The field
// flags are exported for `byoi deploy`, which takes the same ones. What they ask for is read by
// ./configdrive-args.ts; it and the drive's builder are imported by the handlers, when they run.
import { writeFile } from 'node:fs/promises';
import type { CommandModule, Options } from 'yargs';
import { run } from '../run.ts';

/** The config drive fields, as flags; `byoi deploy` adds `configDriveEnableFlag` to them. */
export const configDriveFieldFlags = {
  hostname: { type: 'string', requiresArg: true, describe: 'Hostname or FQDN for cloud-init' },
  'ssh-key': { type: 'string', array: true, nargs: 1, describe: 'SSH public key line (repeatable)' },
  'user-data': {
    type: 'string',
    requiresArg: true,
    describe: 'User data file (#cloud-config, script, MIME, gzip; plain or base64), - for stdin',
  },
  'user-metadata': {
    type: 'string',
    array: true,
    nargs: 1,
    describe: 'key=value for meta_data.json "meta" (repeatable)',
  },
} as const satisfies Record<string, Options>;

export const configDriveEnableFlag = {
  'config-drive': { type: 'boolean', describe: 'Add a config drive (implied by any config drive field)' },
} as const satisfies Record<string, Options>;

/** The deployed server's network (network_data.json); without them the drive has none (DHCP on the first NIC). */
export const networkFlags = {
  network: {
    type: 'string',
    requiresArg: true,
    describe: 'JSON file of the network: links (id, mac), bonds, vlans, networks, dns (docs/network.md)',
  },
  mac: {
    type: 'string',
    array: true,
    nargs: 1,
    describe: 'MAC of a NIC of the server that boots the disk (repeatable; DHCPv4 on each unless --address)',
  },
  address: {
    type: 'string',
    array: true,
    nargs: 1,
    describe: 'Static address with prefix on the first --mac, e.g. 203.0.113.10/24 or 2001:db8::10/64 (repeatable)',
  },
  gateway: { type: 'string', array: true, nargs: 1, describe: 'Default gateway, one per IP family (repeatable)' },
  dns: { type: 'string', array: true, nargs: 1, describe: 'DNS server address (repeatable)' },
} as const satisfies Record<string, Options>;

/** All the config drive flags of `byoi deploy`. */
export const configDriveFlags = { ...configDriveEnableFlag, ...configDriveFieldFlags, ...networkFlags };

export interface NetworkArgs {
  network?: string;
  mac?: string[];
  address?: string[];
  gateway?: string[];
  dns?: string[];
}

export interface ConfigDriveArgs extends NetworkArgs {
  configDrive?: boolean;
  hostname?: string;
  sshKey?: string[];
  userData?: string;
  userMetadata?: string[];
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
      .options(networkFlags)
      .option('out', { type: 'string', demandOption: true, requiresArg: true, describe: 'Where to write the image' })
      .option('sector-size', {
        type: 'number',
        choices: [512, 4096],
        default: 512,
        describe: "The target disk's logical sector size",
      })
      .option('size-mib', {
        type: 'number',
        default: 63,
        describe: 'Filesystem size in MiB (1-64; 63 fits the partition byoi adds)',
      })
      .check((argv) => {
        if (!Number.isInteger(argv['size-mib']) || argv['size-mib'] < 1 || argv['size-mib'] > 64)
          throw new Error('--size-mib must be a whole number from 1 to 64.');
        return true;
      }) as never,
  handler: (args) =>
    run(async () => {
      const [
        { configDriveFromArgs, networkFromArgs },
        { configDriveContent },
        { withLinks },
        { validateConfigDrive },
        { buildVfatImage },
      ] = await Promise.all([
        import('./configdrive-args.ts'),
        import('../../lib/configdrive/content.ts'),
        import('../../lib/configdrive/network-config.ts'),
        import('../../lib/configdrive/validate.ts'),
        import('../../lib/configdrive/vfat.ts'),
      ]);
      const options = (await configDriveFromArgs(args)) ?? { sshKeys: [], metadata: {} };
      validateConfigDrive(options);
      const network = await networkFromArgs(args);
      const content = configDriveContent(options, network ? { network: withLinks(network, undefined) } : {});
      const image = await buildVfatImage(content.files, {
        bytes: args.sizeMib * 1024 * 1024,
        sectorSize: args.sectorSize,
      });
      await writeFile(args.out, image);
      process.stdout.write(
        `${args.out}: config drive, instance id ${content.uuid}, files ${content.files.map((f) => f.path).join(', ')}\n`,
      );
    }),
};
