// What a deployment asks the config drive to carry, and the limits byoi holds it to.

/** The config drive part of a job (OVH's configdrive / customizations fields, normalised). */
export interface ConfigDriveOptions {
  /** The server's hostname or FQDN (cloud-init's local-hostname). */
  hostname?: string;
  /** SSH public keys, one per entry; an entry holding several lines counts as several keys. */
  sshKeys: string[];
  /** A #cloud-config, a script, MIME multipart or gzip; plain or base64-encoded as OVH recommends. */
  userData?: string | Uint8Array;
  /** Free key/value pairs, written under `meta` in meta_data.json (OVH's userMetadatas / configDriveMetadata). */
  metadata: Record<string, string>;
}

/** Ironic's cap, and the size of the partition byoi adds: the last 64 MiB of the disk. */
export const CONFIG_DRIVE_MAX_BYTES = 64 * 1024 * 1024;
/** The smallest partition byoi will put a config drive in (a reused one, or the free space at the end). */
export const CONFIG_DRIVE_MIN_BYTES = 1024 * 1024;
/** User data, once decoded: leaves room for everything else in the smallest full-size drive. */
export const USER_DATA_MAX_BYTES = 16 * 1024 * 1024;
/** All of meta (keys and values, as JSON). */
export const METADATA_MAX_BYTES = 1024 * 1024;
export const METADATA_KEY_MAX_CHARS = 255;
