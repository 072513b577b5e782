// The files of an OpenStack config drive v2, as cloud-init's ConfigDrive datasource reads them.
// Only openstack/latest/ is written: cloud-init prefers a known dated directory when one exists,
// and older dates (e.g. 2012-08-10) make it skip network_data.json and vendor_data.json.
import { randomUUID } from 'node:crypto';
import { networkData } from './network.ts';
import type { NetworkConfig } from './network-config.ts';
import type { ConfigDriveOptions } from './options.ts';
import { sshKeyLines } from './ssh-key.ts';
import { decodeUserData } from './user-data.ts';

export interface ConfigDriveFile {
  /** Relative to the filesystem root, e.g. openstack/latest/meta_data.json. */
  path: string;
  data: Uint8Array;
}

export interface ContentContext {
  /** The instance id; a fresh one per deployment makes cloud-init treat the server as new. */
  uuid?: string;
  /**
   * The network to describe, its links known (see network-config.ts's withLinks); none: no
   * network_data.json, and cloud-init falls back to DHCP on the first NIC, whatever the machine.
   */
  network?: NetworkConfig;
}

export interface ConfigDriveContent {
  uuid: string;
  files: ConfigDriveFile[];
}

const DIR = 'openstack/latest';

/** Builds the drive's files from validated options (see validate.ts). */
export function configDriveContent(options: ConfigDriveOptions, context: ContentContext): ConfigDriveContent {
  const uuid = context.uuid ?? randomUUID();
  const files: ConfigDriveFile[] = [{ path: `${DIR}/meta_data.json`, data: json(metaData(options, uuid)) }];
  if (options.userData !== undefined && options.userData.length > 0) {
    files.push({ path: `${DIR}/user_data`, data: decodeUserData(options.userData) });
  }
  if (context.network) files.push({ path: `${DIR}/network_data.json`, data: json(networkData(context.network)) });
  files.push({ path: `${DIR}/vendor_data.json`, data: json({}) });
  return { uuid, files };
}

/** meta_data.json as in OVH's published sample (project_id left out: OVH's value is not public). */
function metaData(options: ConfigDriveOptions, uuid: string): object {
  const keys = sshKeyLines(options.sshKeys);
  const names = keys.map((_, index) => `key${index + 1}`);
  const hostname = options.hostname?.trim() || undefined;
  return {
    uuid,
    ...(hostname ? { hostname, name: hostname } : {}),
    availability_zone: 'nova',
    launch_index: 0,
    devices: [],
    public_keys: Object.fromEntries(keys.map((key, index) => [names[index], key])),
    keys: keys.map((key, index) => ({ name: names[index], type: 'ssh', data: key })),
    meta: { ...options.metadata },
  };
}

function json(value: object): Uint8Array {
  return new Uint8Array(Buffer.from(`${JSON.stringify(value, null, 2)}\n`, 'utf8'));
}
