// SSH public keys as authorized_keys lines: [options] type base64-blob [comment]. The blob must be
// valid base64 whose first field (a length-prefixed string) names the same key type.

/** Key types OpenSSH accepts in authorized_keys, including security keys and certificates. */
export const SSH_KEY_TYPES: readonly string[] = [
  'ssh-ed25519',
  'ssh-rsa',
  'ssh-dss',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
  'ssh-ed25519-cert-v01@openssh.com',
  'ssh-rsa-cert-v01@openssh.com',
  'ssh-dss-cert-v01@openssh.com',
  'ecdsa-sha2-nistp256-cert-v01@openssh.com',
  'ecdsa-sha2-nistp384-cert-v01@openssh.com',
  'ecdsa-sha2-nistp521-cert-v01@openssh.com',
  'sk-ssh-ed25519-cert-v01@openssh.com',
  'sk-ecdsa-sha2-nistp256-cert-v01@openssh.com',
];

export interface SshPublicKey {
  type: string;
  /** The key itself, decoded from base64. */
  blob: Uint8Array;
  comment: string;
  /** The line as it goes into meta_data.json: trimmed, otherwise as given. */
  line: string;
}

/** The keys in a list of entries: each entry is split into lines; blank lines are dropped. */
export function sshKeyLines(entries: readonly string[]): string[] {
  return entries
    .flatMap((entry) => entry.split(/\r?\n/))
    .map((line) => line.trim())
    .filter((line) => line !== '');
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Parses one authorized_keys line; returns the reason it is not an SSH public key instead. */
export function parseSshPublicKey(line: string): SshPublicKey | string {
  const text = line.trim();
  if (text === '') return 'it is empty';
  if (text.startsWith('-----BEGIN')) return 'it is a PEM block (a private key?), not an OpenSSH public key line';
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(text)) return 'it contains control characters';
  const tokens = text.split(/[ \t]+/);
  // Options (from="…",no-pty) may precede the type; the type is the first token we know.
  const at = tokens.findIndex((token) => SSH_KEY_TYPES.includes(token));
  if (at < 0) {
    return `the key type ${JSON.stringify(tokens[0]!.slice(0, 40))} is not one of ${SSH_KEY_TYPES.slice(0, 6).join(', ')} (or their security-key and certificate forms)`;
  }
  const type = tokens[at]!;
  const data = tokens[at + 1];
  if (data === undefined) return `no key data follows the type ${type}`;
  if (!BASE64.test(data) || data.length % 4 !== 0) return 'the key data is not valid base64';
  const blob = new Uint8Array(Buffer.from(data, 'base64'));
  const innerType = lengthPrefixedString(blob);
  if (innerType === undefined) return 'the key data is too short or malformed';
  if (innerType !== type) return `the key data is of type ${JSON.stringify(innerType.slice(0, 40))}, not ${type}`;
  return { type, blob, comment: tokens.slice(at + 2).join(' '), line: text };
}

/** The SSH wire format's first field: a big-endian u32 length, then that many bytes. */
function lengthPrefixedString(blob: Uint8Array): string | undefined {
  if (blob.length < 4) return undefined;
  const length = new DataView(blob.buffer, blob.byteOffset, blob.byteLength).getUint32(0);
  if (length === 0 || length > 64 || 4 + length > blob.length) return undefined;
  return Buffer.from(blob.subarray(4, 4 + length)).toString('latin1');
}
