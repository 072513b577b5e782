// A customer's request body as a job input: the API validates it with it when the request comes in,
// and the agent again when it takes its job; both through lib/job.ts's one validation.
import { jobFromLegacyBody, jobFromReinstallBody, type JobInput } from '../job.ts';
import { badJobBody } from '../errors.ts';
import type { DeploymentKind } from './store/types.ts';

export function jobInputFor(kind: DeploymentKind, body: unknown): JobInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badJobBody();
  const fields = body as Record<string, unknown>;
  return kind === 'reinstall' ? jobFromReinstallBody(fields) : jobFromLegacyBody(fields);
}

type Fields = Record<string, unknown>;

const isFields = (value: unknown): value is Fields =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** `value`'s `names` that are present, nothing else. */
function pick(value: Fields, names: readonly string[]): Fields {
  return Object.fromEntries(names.filter((name) => value[name] !== undefined).map((name) => [name, value[name]]));
}

/** OVH's `{key, value}` lists, each entry cut down to its two fields. */
function keyValueList(value: unknown): unknown {
  return Array.isArray(value) ? value.map((entry) => (isFields(entry) ? pick(entry, ['key', 'value']) : entry)) : value;
}

function withDrive(value: Fields): Fields {
  const drive = pick(value, ['enable', 'hostname', 'sshKey', 'userData', 'userMetadatas']);
  return drive.userMetadatas === undefined ? drive : { ...drive, userMetadatas: keyValueList(drive.userMetadatas) };
}

/**
 * A validated body cut down to the fields of the contract that lib/job.ts reads (the same job comes
 * out of it), so that the store keeps nothing else a customer sent.
 */
export function contractBody(kind: DeploymentKind, body: unknown): Fields {
  if (!isFields(body)) throw badJobBody();
  if (kind === 'reinstall') {
    const out = pick(body, ['operatingSystem']);
    if (isFields(body.customizations)) {
      out.customizations = pick(body.customizations, [
        'imageURL',
        'imageType',
        'imageCheckSum',
        'imageCheckSumType',
        'httpHeaders',
        'configDriveUserData',
        'configDriveMetadata',
        'hostname',
        'sshKey',
        'efiBootloaderPath',
      ]);
    }
    // Only the first disk group is used (OVH supports one for now).
    if (Array.isArray(body.storage) && isFields(body.storage[0]))
      out.storage = [pick(body.storage[0], ['diskGroupId'])];
    return out;
  }
  const out = {
    ...pick(body, ['URL', 'type', 'checkSum', 'checkSumType', 'description', 'diskGroupId']),
    ...(isFields(body.configdrive) ? {} : withDrive(body)),
  };
  if (isFields(body.configdrive)) out.configdrive = withDrive(body.configdrive);
  if (body.httpHeader !== undefined) out.httpHeader = keyValueList(body.httpHeader);
  return out;
}
