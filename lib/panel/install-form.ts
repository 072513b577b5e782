// The install form: its fields as posted, the bringYourOwnImage body they make (validated by the API's
// one validation, lib/api/deployments.ts), and which field each of the API's refusals belongs to.
import { ByoiError, type ErrorCode } from '../errors.ts';
import { imageTypes } from '../job.ts';

export interface KeyValue {
  readonly key: string;
  readonly value: string;
}

/** What the form holds. Header values and user data are secrets: pages never render them. */
export interface InstallForm {
  readonly URL: string;
  readonly type: string;
  readonly checkSum: string;
  readonly checkSumType: string;
  readonly description: string;
  readonly diskGroupId: string;
  readonly httpHeader: readonly KeyValue[];
  readonly configdrive: boolean;
  readonly hostname: string;
  readonly sshKey: string;
  /** Text from the form, or a file's bytes. */
  readonly userData: string | Uint8Array;
  readonly userMetadatas: readonly KeyValue[];
}

export const fieldNames = [
  'URL',
  'type',
  'checkSum',
  'checkSumType',
  'description',
  'diskGroupId',
  'httpHeader',
  'hostname',
  'sshKey',
  'userData',
  'userMetadatas',
] as const;

export type FieldName = (typeof fieldNames)[number];

/** Rows of name/value pairs a form may post (headers, metadata). */
export const MAX_ROWS = 20;

export const emptyForm: InstallForm = {
  URL: '',
  type: imageTypes[0],
  checkSum: '',
  checkSumType: '',
  description: '',
  diskGroupId: '1',
  httpHeader: [],
  configdrive: false,
  hostname: '',
  sshKey: '',
  userData: '',
  userMetadatas: [],
};

function rows(fields: ReadonlyMap<string, string>, prefix: string): KeyValue[] {
  const out: KeyValue[] = [];
  for (let i = 0; i < MAX_ROWS; i++) {
    const key = fields.get(`${prefix}.${i}.key`) ?? '';
    const value = fields.get(`${prefix}.${i}.value`) ?? '';
    if (key !== '' || value !== '') out.push({ key, value });
  }
  return out;
}

/** The form from posted fields (`httpHeader.N.key`, ...) and the optional user data file. */
export function formFromFields(fields: ReadonlyMap<string, string>, userDataFile: Uint8Array | undefined): InstallForm {
  const text = (name: string) => fields.get(name) ?? '';
  return {
    URL: text('URL').trim(),
    type: text('type'),
    checkSum: text('checkSum').trim(),
    checkSumType: text('checkSumType'),
    description: text('description'),
    diskGroupId: text('diskGroupId'),
    httpHeader: rows(fields, 'httpHeader'),
    configdrive: fields.get('configdrive') === 'on',
    hostname: text('hostname').trim(),
    sshKey: text('sshKey'),
    userData: userDataFile && userDataFile.length > 0 ? userDataFile : text('userData').replace(/\r\n/g, '\n'),
    userMetadatas: rows(fields, 'userMetadatas'),
  };
}

/** User data as the JSON body's text: a file that is not UTF-8 text (gzip) goes as base64, which the agent decodes. */
function userDataText(userData: string | Uint8Array): string {
  if (typeof userData === 'string') return userData;
  const text = new TextDecoder('utf-8', { fatal: false }).decode(userData);
  return Buffer.from(text, 'utf8').equals(Buffer.from(userData)) ? text : Buffer.from(userData).toString('base64');
}

/** The `POST .../bringYourOwnImage` body the form asks for (OVH's field names). */
export function bodyOf(form: InstallForm): Record<string, unknown> {
  const given = (value: string) => (value === '' ? undefined : value);
  const userData = userDataText(form.userData);
  return JSON.parse(
    JSON.stringify({
      URL: form.URL,
      type: form.type,
      checkSum: given(form.checkSum),
      checkSumType: given(form.checkSumType),
      description: given(form.description),
      // A number when it reads as one; anything else goes as typed, for the API's own message.
      diskGroupId: /^\d{1,15}$/.test(form.diskGroupId) ? Number(form.diskGroupId) : given(form.diskGroupId),
      httpHeader: form.httpHeader.length > 0 ? form.httpHeader : undefined,
      configdrive: form.configdrive
        ? {
            enable: true,
            hostname: given(form.hostname),
            sshKey: given(form.sshKey),
            userData: given(userData),
            userMetadatas: form.userMetadatas,
          }
        : undefined,
    }),
  );
}

/** The form a stored body came from, without its secrets (header values, user data). */
export function formOfBody(body: Record<string, unknown>): InstallForm {
  const text = (value: unknown) => (typeof value === 'string' ? value : typeof value === 'number' ? String(value) : '');
  const list = (value: unknown): KeyValue[] =>
    Array.isArray(value) ? value.map((e) => ({ key: text(e?.key), value: text(e?.value) })) : [];
  const drive = (typeof body.configdrive === 'object' && body.configdrive !== null ? body.configdrive : {}) as Record<
    string,
    unknown
  >;
  return {
    URL: text(body.URL),
    type: text(body.type),
    checkSum: text(body.checkSum),
    checkSumType: text(body.checkSumType),
    description: text(body.description),
    diskGroupId: body.diskGroupId === undefined ? '1' : text(body.diskGroupId),
    httpHeader: list(body.httpHeader).map((h) => ({ key: h.key, value: '' })),
    configdrive: drive.enable === true,
    hostname: text(drive.hostname),
    sshKey: text(drive.sshKey),
    userData: '',
    userMetadatas: list(drive.userMetadatas),
  };
}

/** The field each job failure is about, by its stable code (lib/errors.ts). */
const fieldOfCode: Partial<Record<ErrorCode, FieldName>> = {
  'missing-url': 'URL',
  'bad-url': 'URL',
  'bad-image-type': 'type',
  'bad-checksum-type': 'checkSumType',
  'checksum-pair': 'checkSum',
  'bad-checksum': 'checkSum',
  'bad-disk-group-id': 'diskGroupId',
  'bad-http-header': 'httpHeader',
  'invalid-hostname': 'hostname',
  'invalid-ssh-key': 'sshKey',
  'user-data-too-big': 'userData',
  'reserved-metadata-key': 'userMetadatas',
  'empty-metadata-key': 'userMetadatas',
  'metadata-key-too-long': 'userMetadatas',
  'metadata-key-control': 'userMetadatas',
  'metadata-value-not-string': 'userMetadatas',
  'metadata-too-big': 'userMetadatas',
};

/** Failures about whichever field they name (a wrong shape, a reserved name): the field is the error's. */
const namedFieldCodes: ReadonlySet<ErrorCode> = new Set(['bad-field', 'reserved-key']);

/** The field the job validation's failure (the API's refusal's cause) is about; undefined for the whole request. */
export function fieldOf(error: unknown): FieldName | undefined {
  if (!(error instanceof ByoiError)) return undefined;
  if (namedFieldCodes.has(error.code)) return fieldNames.find((name) => name === error.field);
  return fieldOfCode[error.code];
}
