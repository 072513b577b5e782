// The config drive step of a deployment, in one call: content for this server, filesystem sized
// for the partition, partition added or reused. The parts are usable alone (see the imports).
import { configDriveContent } from './content.ts';
import { nicsToConfigure, physicalNics, type Nic } from './network.ts';
import type { ConfigDriveOptions } from './options.ts';
import { addConfigDrivePartition, type ConfigDrivePartition } from './partition.ts';
import { buildVfatImage } from './vfat.ts';

export type { ConfigDriveOptions } from './options.ts';
export { validateConfigDrive } from './validate.ts';

export interface ConfigDriveContext {
  /** The NICs to describe; by default this machine's physical NICs (those with a link, if any). */
  nics?: readonly Nic[];
  /** The instance id; by default a fresh UUID. */
  uuid?: string;
}

export interface WrittenConfigDrive {
  uuid: string;
  partition: ConfigDrivePartition;
}

/** Adds the config drive to `device` (options already validated); throws COULD_NOT_CREATE_CONFIGDRIVE. */
export async function writeConfigDrive(
  device: string,
  options: ConfigDriveOptions,
  context: ConfigDriveContext = {},
): Promise<WrittenConfigDrive> {
  const nics = context.nics ?? nicsToConfigure(physicalNics());
  const content = configDriveContent(options, { nics, ...(context.uuid ? { uuid: context.uuid } : {}) });
  const partition = await addConfigDrivePartition(device, (geometry) => buildVfatImage(content.files, geometry));
  return { uuid: content.uuid, partition };
}
