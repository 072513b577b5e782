// The config drive step of a deployment, in one call: content for this server, filesystem sized
// for the partition, partition added or reused. The parts are usable alone (see the imports).
import { configDriveContent } from './content.ts';
import type { NetworkConfig } from './network-config.ts';
import type { ConfigDriveOptions } from './options.ts';
import { addConfigDrivePartition, type ConfigDrivePartition } from './partition.ts';
import { buildVfatFile } from './vfat.ts';

export type { ConfigDriveOptions } from './options.ts';
export { validateConfigDrive } from './validate.ts';

export interface ConfigDriveContext {
  /** The network to describe, its links known; none: no network_data.json (cloud-init's DHCP fallback). */
  network?: NetworkConfig;
  /** The instance id; by default a fresh UUID. */
  uuid?: string;
}

export interface WrittenConfigDrive {
  uuid: string;
  partition: ConfigDrivePartition;
}

/** Adds the config drive to `device` (options already validated); throws OVH's "Could not create configdrive on disk.". */
export async function writeConfigDrive(
  device: string,
  options: ConfigDriveOptions,
  context: ConfigDriveContext = {},
): Promise<WrittenConfigDrive> {
  const content = configDriveContent(options, {
    ...(context.network && { network: context.network }),
    ...(context.uuid && { uuid: context.uuid }),
  });
  const partition = await addConfigDrivePartition(device, (geometry, file) =>
    buildVfatFile(content.files, geometry, file),
  );
  return { uuid: content.uuid, partition };
}
