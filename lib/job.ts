// The job: what to deploy and where. Every entry point (CLI flags, a JSON job body, later a
// provisioning server) builds a loose `JobInput`, and `validateJob` turns it into one `Job` or
// throws an invalid-job ByoiError with OVH's sentence.
import { parseNetworkConfig, type NetworkConfig } from './configdrive/network-config.ts';
import type { ConfigDriveOptions } from './configdrive/options.ts';
import { validateConfigDrive } from './configdrive/validate.ts';
import { normaliseLoaderPath } from './disk/efi-path.ts';
import {
  badChecksum,
  badChecksumType,
  badDisk,
  badDiskGroupId,
  badField,
  badHttpHeader,
  badHttpHeaderFlag,
  badImageType,
  badJobBody,
  badRamSize,
  badUrl,
  checksumPair,
  missingUrl,
  reservedKey,
} from './errors.ts';

export const imageTypes = ['qcow2', 'raw', 'ova'] as const;
export type ImageType = (typeof imageTypes)[number];

export const checksumTypes = ['md5', 'sha1', 'sha256', 'sha512'] as const;
export type ChecksumType = (typeof checksumTypes)[number];

/** Hex digits of each digest. */
export const checksumDigits: Readonly<Record<ChecksumType, number>> = { md5: 32, sha1: 40, sha256: 64, sha512: 128 };

export interface Checksum {
  readonly type: ChecksumType;
  /** Lower-case hex. */
  readonly hex: string;
}

/** Where to write: a disk group (OVH's; 0 means automatic) or a device named by hand. */
export type DiskChoice = { readonly diskGroupId: number } | { readonly disk: string };

export interface Job {
  readonly url: string;
  readonly type: ImageType;
  readonly checksum?: Checksum;
  readonly target: DiskChoice;
  readonly description?: string;
  /** Name -> value. Values are secrets: never logged, never in status or errors. */
  readonly httpHeaders: Readonly<Record<string, string>>;
  readonly noReboot: boolean;
  readonly statusFile?: string;
  /** Bytes of RAM to assume instead of /proc/meminfo's MemTotal. */
  readonly ramSize?: number;
  /** Present when a config drive is asked for; validated by lib/configdrive. */
  readonly configDrive?: ConfigDriveOptions;
  readonly efiBootloaderPath?: string;
  /** The deployed server's network for the config drive (the lab's config, or flags); none: DHCP on the first NIC. */
  readonly network?: NetworkConfig;
  /** Read the written ranges back after the final flush and compare them with what was decoded. */
  readonly verifyWrite?: boolean;
  /** On a UEFI server, deploy even an image without an EFI system partition or without its bootloader. */
  readonly skipEfiCheck?: boolean;
  /** The streaming mode (agent/deploy-stream.ts): written as it downloads, for images larger than RAM. */
  readonly stream?: boolean;
}

/** A job as it arrives, fields unchecked. Later sources override earlier ones with `mergeJobInputs`. */
export interface JobInput {
  url?: unknown;
  type?: unknown;
  checksum?: unknown;
  checksumType?: unknown;
  diskGroupId?: unknown;
  disk?: unknown;
  description?: unknown;
  httpHeaders?: Record<string, unknown>;
  noReboot?: unknown;
  statusFile?: unknown;
  ramSize?: unknown;
  configDrive?: ConfigDriveInput;
  efiBootloaderPath?: unknown;
  network?: unknown;
  verifyWrite?: unknown;
  skipEfiCheck?: unknown;
  stream?: unknown;
}

export interface ConfigDriveInput {
  hostname?: unknown;
  sshKey?: unknown;
  userData?: unknown;
  metadata?: Record<string, unknown>;
}

// ---- Sources ----

type Obj = Record<string, unknown>;

function isObject(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Names that would reach an object's prototype rather than be a name: refused wherever names are keys. */
const reservedNames = new Set(['__proto__', 'constructor', 'prototype']);

function checkNames(names: readonly string[], field: string): void {
  if (names.some((name) => reservedNames.has(name))) throw reservedKey(field);
}

/** OVH's `SafeKeyValueCanBeNull[]`: entries without a key are skipped. */
function keyValues(value: unknown, field: string): Record<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) throw badField(field, 'a list of {key, value}');
  const out: Record<string, unknown> = {};
  for (const entry of value) {
    if (!isObject(entry)) throw badField(field, 'a list of {key, value}');
    if (entry.key === undefined || entry.key === null || entry.key === '') continue;
    if (typeof entry.key !== 'string') throw badField(field, 'a list of {key, value}');
    checkNames([entry.key], field);
    out[entry.key] = entry.value ?? '';
  }
  return out;
}

function map(value: unknown, field: string): Record<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined;
  if (!isObject(value)) throw badField(field, 'an object of names to values');
  checkNames(Object.keys(value), field);
  return { ...value };
}

function hasAny(fields: ConfigDriveInput): boolean {
  return Object.values(fields).some(
    (v) => v !== undefined && v !== null && v !== '' && !(isObject(v) && Object.keys(v).length === 0),
  );
}

function compact<T extends object>(input: T): T {
  return Object.fromEntries(Object.entries(input).filter(([, v]) => v !== undefined && v !== null)) as T;
}

/** The body of `POST /dedicated/server/{serviceName}/bringYourOwnImage` (current and older, flat shape). */
export function jobFromLegacyBody(body: Obj): JobInput {
  const drive = isObject(body.configdrive) ? body.configdrive : body;
  const configDrive = compact<ConfigDriveInput>({
    hostname: drive.hostname,
    sshKey: drive.sshKey,
    userData: drive.userData,
    metadata: keyValues(drive.userMetadatas, 'userMetadatas'),
  });
  // An explicit `enable: false` turns the drive off; otherwise any field asks for it.
  const enable = isObject(body.configdrive) ? body.configdrive.enable : undefined;
  const wanted = enable === true || (enable !== false && hasAny(configDrive));
  return compact<JobInput>({
    url: body.URL,
    type: body.type,
    checksum: body.checkSum,
    checksumType: body.checkSumType,
    diskGroupId: body.diskGroupId,
    description: body.description,
    httpHeaders: keyValues(body.httpHeader, 'httpHeader'),
    configDrive: wanted ? configDrive : undefined,
    stream: body.stream,
  });
}

/** The body of `POST /dedicated/server/{serviceName}/reinstall` with BYOI `customizations`. */
export function jobFromReinstallBody(body: Obj): JobInput {
  const c = body.customizations;
  if (c !== undefined && !isObject(c)) throw badField('customizations', 'an object');
  const custom: Obj = c ?? {};
  if (body.storage !== undefined && body.storage !== null && !Array.isArray(body.storage)) {
    throw badField('storage', 'a list of {diskGroupId}');
  }
  const storage = Array.isArray(body.storage) ? body.storage : [];
  const first: unknown = storage[0];
  if (first !== undefined && !isObject(first)) throw badField('storage', 'a list of {diskGroupId}');
  // Only one disk group is supported by OVH's API for now; the first entry names it.
  const configDrive = compact<ConfigDriveInput>({
    hostname: custom.hostname,
    sshKey: custom.sshKey,
    userData: custom.configDriveUserData,
    metadata: map(custom.configDriveMetadata, 'configDriveMetadata'),
  });
  return compact<JobInput>({
    url: custom.imageURL,
    type: custom.imageType,
    checksum: custom.imageCheckSum,
    checksumType: custom.imageCheckSumType,
    diskGroupId: first?.diskGroupId,
    httpHeaders: map(custom.httpHeaders, 'httpHeaders'),
    efiBootloaderPath: custom.efiBootloaderPath,
    configDrive: hasAny(configDrive) ? configDrive : undefined,
    stream: custom.stream,
  });
}

/** Either body shape, told apart by `/reinstall`'s `operatingSystem` / `customizations`. */
export function jobFromBody(body: unknown): JobInput {
  if (!isObject(body)) throw badJobBody();
  if ('operatingSystem' in body || 'customizations' in body) return jobFromReinstallBody(body);
  if ('URL' in body) return jobFromLegacyBody(body);
  throw badJobBody();
}

/** Parses one `--http-header 'Name: value'`. */
export function parseHeaderFlag(flag: string): [string, string] {
  const colon = flag.indexOf(':');
  if (colon <= 0) throw badHttpHeaderFlag();
  return [flag.slice(0, colon).trim(), flag.slice(colon + 1).trim()];
}

/**
 * Later inputs override earlier ones field by field; naming a disk by hand drops an earlier
 * disk group, and the other way round. Headers merge by name.
 */
export function mergeJobInputs(...inputs: JobInput[]): JobInput {
  const out: JobInput = {};
  for (const input of inputs) {
    const { httpHeaders, configDrive, ...fields } = input;
    if (fields.disk !== undefined) delete out.diskGroupId;
    if (fields.diskGroupId !== undefined) delete out.disk;
    Object.assign(out, compact(fields));
    if (httpHeaders) out.httpHeaders = { ...out.httpHeaders, ...httpHeaders };
    if (configDrive) {
      const metadata = { ...out.configDrive?.metadata, ...configDrive.metadata };
      out.configDrive = { ...out.configDrive, ...compact(configDrive), metadata };
    }
  }
  return out;
}

// ---- Validation ----

function optionalString(value: unknown, field: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw badField(field, 'a string');
  return value;
}

const headerName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/**
 * RFC 9110's field-value: visible ASCII, space, tab and obs-text, which excludes every control
 * character, C0 and C1 (U+0085 NEL among them), and anything above U+00FF (U+2028/U+2029 line and
 * paragraph separators, bidi controls), none of which an HTTP/1.1 header can carry.
 */
const headerValue = /^[\t\x20-\x7e\xa0-\xff]*$/;

function validateHeaders(headers: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  checkNames(Object.keys(headers ?? {}), 'httpHeader');
  for (const [name, value] of Object.entries(headers ?? {})) {
    // The value is a secret: the message names the header only.
    if (!headerName.test(name) || typeof value !== 'string' || !headerValue.test(value)) throw badHttpHeader(name);
    out[name] = value;
  }
  return out;
}

function validateUrl(value: unknown): string {
  if (value === undefined || value === null || value === '') throw missingUrl();
  if (typeof value !== 'string') throw badUrl();
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw badUrl();
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') throw badUrl();
  return value;
}

function validateChecksum(value: unknown, type: unknown): Checksum | undefined {
  const given = (v: unknown) => v !== undefined && v !== null && v !== '';
  if (given(type) && !checksumTypes.includes(type as ChecksumType)) throw badChecksumType();
  if (given(value) !== given(type)) throw checksumPair();
  if (!given(value)) return undefined;
  const checksumType = type as ChecksumType;
  const digits = checksumDigits[checksumType];
  const hex = typeof value === 'string' ? value.trim().toLowerCase() : '';
  if (hex.length !== digits || !/^[0-9a-f]+$/.test(hex)) throw badChecksum(checksumType, digits);
  return { type: checksumType, hex };
}

function validateDiskChoice(input: JobInput): DiskChoice {
  if (input.disk !== undefined && input.disk !== null) {
    if (typeof input.disk !== 'string' || !input.disk.startsWith('/dev/')) throw badDisk();
    return { disk: input.disk };
  }
  const id = input.diskGroupId ?? 1;
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) throw badDiskGroupId();
  return { diskGroupId: id };
}

function configDriveOf(input: ConfigDriveInput | undefined): ConfigDriveOptions | undefined {
  if (!input) return undefined;
  const sshKey = optionalString(input.sshKey, 'sshKey');
  const metadata: Record<string, string> = {};
  checkNames(Object.keys(input.metadata ?? {}), 'configDriveMetadata');
  for (const [key, value] of Object.entries(input.metadata ?? {})) {
    if (typeof value !== 'string') throw badField('configDriveMetadata', 'string values');
    metadata[key] = value;
  }
  const hostname = optionalString(input.hostname, 'hostname');
  // Bytes from --user-data FILE (gzip must stay binary), text from a JSON body.
  const userData = input.userData instanceof Uint8Array ? input.userData : optionalString(input.userData, 'userData');
  const options: ConfigDriveOptions = {
    ...(hostname !== undefined && { hostname }),
    ...(userData !== undefined && { userData }),
    sshKeys: (sshKey ?? '')
      .split('\n')
      .map((k) => k.trim())
      .filter((k) => k !== ''),
    metadata,
  };
  validateConfigDrive(options);
  return options;
}

/** The one validation of a job, whatever its source. Throws an invalid-job ByoiError. */
export function validateJob(input: JobInput): Job {
  const type = input.type;
  if (!imageTypes.includes(type as ImageType)) throw badImageType();
  const url = validateUrl(input.url);
  const checksum = validateChecksum(input.checksum, input.checksumType);
  const target = validateDiskChoice(input);
  const ramSize = input.ramSize;
  if (ramSize !== undefined && (typeof ramSize !== 'number' || !Number.isSafeInteger(ramSize) || ramSize <= 0)) {
    throw badRamSize();
  }
  if (input.noReboot !== undefined && typeof input.noReboot !== 'boolean') throw badField('noReboot', 'true or false');
  if (input.verifyWrite !== undefined && typeof input.verifyWrite !== 'boolean')
    throw badField('verifyWrite', 'true or false');
  if (input.skipEfiCheck !== undefined && typeof input.skipEfiCheck !== 'boolean')
    throw badField('skipEfiCheck', 'true or false');
  if (input.stream !== undefined && typeof input.stream !== 'boolean') throw badField('stream', 'true or false');
  const description = optionalString(input.description, 'description');
  const statusFile = optionalString(input.statusFile, 'statusFile');
  const loaderPath = optionalString(input.efiBootloaderPath, 'efiBootloaderPath');
  const efiBootloaderPath = loaderPath === undefined || loaderPath === '' ? undefined : normaliseLoaderPath(loaderPath);
  const configDrive = configDriveOf(input.configDrive);
  const network =
    input.network === undefined || input.network === null ? undefined : parseNetworkConfig(input.network, 'network');
  return {
    url,
    type: type as ImageType,
    ...(checksum && { checksum }),
    target,
    ...(description !== undefined && { description }),
    httpHeaders: validateHeaders(input.httpHeaders),
    noReboot: input.noReboot === true,
    ...(statusFile !== undefined && { statusFile }),
    ...(typeof ramSize === 'number' && { ramSize }),
    ...(configDrive && { configDrive }),
    ...(efiBootloaderPath !== undefined && { efiBootloaderPath }),
    ...(network && { network }),
    ...(input.verifyWrite === true && { verifyWrite: true }),
    ...(input.skipEfiCheck === true && { skipEfiCheck: true }),
    ...(input.stream === true && { stream: true }),
  };
}
