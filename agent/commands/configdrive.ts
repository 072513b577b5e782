// `byoi configdrive --out FILE [fields]`: builds the config drive filesystem alone, as a deployment
// would (a fresh instance id), for debugging, tooling and preparing another machine's disk: the
// network is the one the flags give, MACs included; this machine's NICs are never used. The field
// flags are exported for `byoi deploy`, which takes the same ones.
import { readFile, writeFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import type { CommandModule, Options } from 'yargs';
import { badNetwork, invalidUserMetadataFlag } from '../../lib/errors.ts';
import { configDriveContent } from '../../lib/configdrive/content.ts';
import {
  networkFromFlags,
  parseNetworkConfig,
  withLinks,
  type NetworkConfig,
} from '../../lib/configdrive/network-config.ts';
import type { ConfigDriveOptions } from '../../lib/configdrive/options.ts';
import { validateConfigDrive } from '../../lib/configdrive/validate.ts';
import { buildVfatImage } from '../../lib/configdrive/vfat.ts';
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

/** The network the flags describe (not yet given its links), or undefined. */
export async function networkFromArgs(args: NetworkArgs): Promise<NetworkConfig | undefined> {
  const simple = networkFromFlags({
    macs: args.mac ?? [],
    addresses: args.address ?? [],
    gateways: args.gateway ?? [],
    dns: args.dns ?? [],
  });
  if (args.network === undefined) return simple;
  if (simple)
    throw badNetwork('flags', '--network replaces --mac, --address, --gateway and --dns; give one or the other');
  let text: string;
  try {
    text = await readFile(args.network, 'utf8');
  } catch (error) {
    throw badNetwork(args.network, 'it cannot be read', { detail: (error as Error).message, cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw badNetwork(args.network, 'it is not JSON');
  }
  return parseNetworkConfig(value, args.network);
}

export interface ConfigDriveArgs extends NetworkArgs {
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
    (args.userMetadata?.length ?? 0) > 0 ||
    args.network !== undefined ||
    [args.mac, args.address, args.gateway, args.dns].some((list) => (list?.length ?? 0) > 0);
  if (!asked) return undefined;
  const metadata: Record<string, string> = {};
  for (const pair of args.userMetadata ?? []) {
    const at = pair.indexOf('=');
    if (at <= 0) throw invalidUserMetadataFlag(pair);
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
