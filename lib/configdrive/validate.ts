// Refuses, before anything is written, config drive fields cloud-init could not use or that would
// silently change how it runs. Throws ByoiError kind invalid-job (exit 2).
import {
  emptyMetadataKey,
  invalidHostname,
  invalidSshKey,
  metadataKeyControl,
  metadataKeyTooLong,
  metadataTooBig,
  metadataValueNotString,
  reservedMetadataKey,
  userDataTooBig,
} from '../errors.ts';
import { hostnameProblem } from './hostname.ts';
import { METADATA_KEY_MAX_CHARS, METADATA_MAX_BYTES, USER_DATA_MAX_BYTES, type ConfigDriveOptions } from './options.ts';
import { parseSshPublicKey, sshKeyLines } from './ssh-key.ts';
import { decodeUserData } from './user-data.ts';

/** cloud-init reads meta.dsmode as its datasource mode (local/net/pass/disabled). */
const RESERVED_METADATA_KEYS = ['dsmode'];

export function validateConfigDrive(options: ConfigDriveOptions): void {
  const hostname = options.hostname?.trim();
  if (hostname) {
    const problem = hostnameProblem(hostname);
    if (problem) throw invalidHostname(hostname, problem);
  }

  sshKeyLines(options.sshKeys).forEach((line, index) => {
    const parsed = parseSshPublicKey(line);
    if (typeof parsed === 'string') throw invalidSshKey(index + 1, parsed);
  });

  for (const [key, value] of Object.entries(options.metadata)) {
    if (key === '') throw emptyMetadataKey();
    if (RESERVED_METADATA_KEYS.includes(key)) throw reservedMetadataKey(key);
    if (key.length > METADATA_KEY_MAX_CHARS) throw metadataKeyTooLong(key, METADATA_KEY_MAX_CHARS);
    if (/[\u0000-\u001f\u007f]/.test(key)) throw metadataKeyControl(key);
    if (typeof value !== 'string') throw metadataValueNotString(key);
  }
  const metadataBytes = Buffer.byteLength(JSON.stringify(options.metadata));
  if (metadataBytes > METADATA_MAX_BYTES) throw metadataTooBig(metadataBytes, METADATA_MAX_BYTES);

  if (options.userData !== undefined) {
    const bytes = decodeUserData(options.userData).length;
    if (bytes > USER_DATA_MAX_BYTES) throw userDataTooBig(bytes, USER_DATA_MAX_BYTES);
  }
}
