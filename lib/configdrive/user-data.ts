// User data as cloud-init gets it. OVH recommends sending it base64-encoded, and also accepts it
// in clear: base64 is decoded only when what it decodes to is something cloud-init (or
// cloudbase-init) runs; anything else is kept byte for byte as given.

const BASE64_TEXT = /^[A-Za-z0-9+/\s]+={0,2}\s*$/;

/** The bytes for openstack/latest/user_data. */
export function decodeUserData(userData: string | Uint8Array): Uint8Array {
  const given = typeof userData === 'string' ? new Uint8Array(Buffer.from(userData, 'utf8')) : userData;
  const text = Buffer.from(given).toString('latin1');
  if (!BASE64_TEXT.test(text)) return given;
  const compact = text.replace(/\s+/g, '');
  if (compact.length % 4 !== 0) return given;
  const decoded = new Uint8Array(Buffer.from(compact, 'base64'));
  return looksLikeUserData(decoded) ? decoded : given;
}

/**
 * What cloud-init's user-data handler recognises: a `#` first line (#cloud-config, #!, #include,
 * #cloud-boothook, ## template: jinja, #part-handler, #ps1 for cloudbase-init, ...), a MIME
 * message, or gzip.
 */
function looksLikeUserData(bytes: Uint8Array): boolean {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) return true;
  const head = Buffer.from(bytes.subarray(0, 64)).toString('latin1');
  return head.startsWith('#') || /^(content-type|mime-version):/i.test(head) || /^rem cmd\b/i.test(head);
}
