// What the config drive flags (./configdrive.ts) ask for: the drive's options and the network, read
// from their files. Shared by `byoi configdrive` and `byoi deploy`, and imported by their handlers only.
import { readFile } from 'node:fs/promises';
import { buffer } from 'node:stream/consumers';
import { badNetwork, invalidUserMetadataFlag } from '../../lib/errors.ts';
import { networkFromFlags, parseNetworkConfig, type NetworkConfig } from '../../lib/configdrive/network-config.ts';
import type { ConfigDriveOptions } from '../../lib/configdrive/options.ts';
import type { ConfigDriveArgs, NetworkArgs } from './configdrive.ts';

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
