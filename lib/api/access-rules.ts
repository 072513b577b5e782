// A credential's limits: its access rules (method + path pattern, `*` matching anything) and the
// addresses it may be used from; and the checks of a credential request's body that declares them.
import { BlockList, isIP } from 'node:net';
import { invalidCredentialRequest } from '../errors.ts';
import type { AccessRule, HttpMethod, NewCredential } from './credentials.ts';

const METHODS: readonly HttpMethod[] = ['GET', 'POST', 'PUT', 'DELETE'];
const MAX_RULES = 100;
const MAX_IPS = 64;

function patternOf(path: string): RegExp {
  return new RegExp(
    `^${path
      .split('*')
      .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
}

/** Whether a rule grants `method` on `path` (the path below the API's base, without its query). */
export function isGranted(rules: readonly AccessRule[], method: string, path: string): boolean {
  return rules.some((rule) => rule.method === method && patternOf(rule.path).test(path));
}

/** Whether `address` is one of `allowed` (addresses and CIDR blocks); every address when null. */
export function isAllowedAddress(allowed: readonly string[] | null, address: string): boolean {
  if (allowed === null || allowed.length === 0) return true;
  const plain = address.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
  const family = isIP(plain) === 6 ? 'ipv6' : 'ipv4';
  const list = new BlockList();
  for (const entry of allowed) {
    const [ip, bits] = entry.split('/') as [string, string | undefined];
    const type = isIP(ip) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(ip, type);
    else list.addSubnet(ip, Number(bits), type);
  }
  return isIP(plain) !== 0 && list.check(plain, family);
}

function validAddressEntry(entry: unknown): entry is string {
  if (typeof entry !== 'string' || entry.length > 64) return false;
  const [ip, bits, extra] = entry.split('/');
  const version = isIP(ip ?? '');
  if (version === 0 || extra !== undefined) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (version === 4 ? 32 : 128));
}

const bad = (why: string): never => {
  throw invalidCredentialRequest(why);
};

/** `POST /auth/credential`'s body: `{accessRules, redirection?, allowedIPs?}`, checked field by field. */
export function parseCredentialRequest(body: unknown, applicationId: number): NewCredential {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    return bad('expected {"accessRules": [{"method", "path"}]}');
  const { accessRules, redirection, allowedIPs } = body as Record<string, unknown>;
  if (!Array.isArray(accessRules) || accessRules.length === 0 || accessRules.length > MAX_RULES)
    bad(`accessRules must be a list of 1 to ${MAX_RULES} rules`);
  const rules = (accessRules as unknown[]).map((rule): AccessRule => {
    const { method, path } = (typeof rule === 'object' && rule !== null ? rule : {}) as Record<string, unknown>;
    if (typeof method !== 'string' || !METHODS.includes(method as HttpMethod))
      return bad("each rule's method must be GET, POST, PUT or DELETE");
    if (typeof path !== 'string' || !/^\/[\x21-\x7e]{0,255}$/.test(path))
      return bad("each rule's path must start with / (printable, at most 256 characters)");
    return { method: method as HttpMethod, path };
  });
  let target: string | null = null;
  if (redirection !== undefined && redirection !== null && redirection !== '') {
    const url =
      typeof redirection === 'string' && redirection.length <= 2048 && URL.canParse(redirection)
        ? new URL(redirection)
        : undefined;
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) bad('redirection must be an http(s) URL');
    target = url!.href;
  }
  let ips: string[] | null = null;
  if (allowedIPs !== undefined && allowedIPs !== null) {
    if (!Array.isArray(allowedIPs) || allowedIPs.length > MAX_IPS || !allowedIPs.every(validAddressEntry))
      bad(`allowedIPs must be a list of at most ${MAX_IPS} addresses or CIDR blocks`);
    ips = allowedIPs as string[];
  }
  return { applicationId, rules, allowedIPs: ips, redirection: target };
}
