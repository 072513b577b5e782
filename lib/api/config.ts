// The lab's servers, declared in a JSON file: which customer API keys may manage each one, and
// how the lab boots it onto the deployment agent.
//
//   {
//     "publicUrl": "http://10.0.0.1:8080",          // how agents reach this API (optional)
//     "database": "postgres://byoi@db.lab/byoi",    // the store (optional; docs/fleet.md)
//     "servers": [{
//       "serviceName": "ns1.lab",
//       "apiKeys": ["<a customer's key>"],
//       "macs": ["52:54:00:12:34:56"],                 // netboot by MAC (lib/api/netboot.ts)
//       "boot": { "command": ["byoi", "agent", "--server", "{server}", "--service-name", "{service}",
//                             "--disk", "/dev/loop7"],           // the token comes as $BYOI_AGENT_TOKEN
//                 "rescueCommand": ["ipmi-power-cycle", "{service}"],
//                 "env": {}, "logFile": "/var/log/byoi/{service}.log" }
//     }]
//   }
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { parseNetworkConfig, type NetworkConfig } from '../configdrive/network-config.ts';
import { ByoiError, badConfig, tokenOnCommandLineReason, weakApiKeyReason } from '../errors.ts';

/** Boots a server onto `byoi agent` by running a command; `{server}`, `{service}` are filled in, the token is $BYOI_AGENT_TOKEN. */
export interface CommandBoot {
  readonly command: readonly string[];
  /** Run after DELETE to put the server in rescue mode (a power cycle: its next netboot is the rescue). */
  readonly rescueCommand?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Where the agent's output goes (same placeholders); discarded when absent. */
  readonly logFile?: string;
}

/** A customer account declared by the lab: signs in to the control panel and validates API credentials. */
export interface CustomerConfig {
  readonly name: string;
  /** scrypt hash (lib/api/passwords.ts): `byoi serve` never reads a password in clear from its config. */
  readonly passwordHash: string;
}

/** How servers netboot (lib/api/netboot.ts): the rescue system's kernel and initrd, files served here or URLs. */
export interface NetbootConfig {
  /** A file `byoi serve` serves (with Range), or an http(s) URL the iPXE script points at. */
  readonly kernel: string;
  readonly initrd: string;
  /** Added to every rescue kernel command line, e.g. "console=ttyS0,115200". */
  readonly cmdline?: string;
  /** Added when the rescue boots without a job (an operator's rescue), e.g. an SSH key parameter. */
  readonly rescueCmdline?: string;
  /** Rescue boots a deployment may have without its agent reporting an outcome, before it is settled in error. */
  readonly maxBoots?: number;
  /**
   * The addresses and networks (CIDR) allowed to fetch boot scripts and rescue files: the lab's
   * provisioning network. A deploy script carries a live agent token and each fetch counts a boot,
   * so anyone else who can reach the API would read the job or burn the deployment's boots.
   */
  readonly clients?: readonly string[];
}

/** A disk group the lab declares for a server (shown by the control panel until the agent reports them). */
export interface DiskGroupConfig {
  readonly diskGroupId: number;
  readonly description: string;
}

export interface ServerConfig {
  readonly serviceName: string;
  /** MAC addresses the server's firmware netboots from (iPXE's ${net0/mac}), lower case. */
  readonly macs?: readonly string[];
  /** The customer account that owns the server, if any. */
  readonly customer?: string;
  readonly apiKeys: readonly string[];
  readonly boot?: CommandBoot;
  readonly diskGroups?: readonly DiskGroupConfig[];
  /** The server's network for its config drive (lib/configdrive/network-config.ts's JSON form), given to its agent with the job. */
  readonly network?: NetworkConfig;
  /** Its agent reads the disk back after writing (the job's verifyWrite). */
  readonly verifyWrite?: boolean;
}

export interface ApiConfig {
  readonly publicUrl?: string;
  /** Where the store is: a postgres:// URL or an SQLite file path; `--db` overrides it. */
  readonly database?: string;
  /** The AES-256-GCM key (32 random bytes, base64) that encrypts job bodies at rest; default: beside the database. */
  readonly secretsKeyFile?: string;
  /** Days a finished or erased deployment's job body is kept; default 7. */
  readonly jobBodyRetentionDays?: number;
  /**
   * The URL customers' clients use for this API when it differs from what reaches byoi serve (a reverse
   * proxy): signatures cover it, validation URLs start with it. E.g. "https://api.lab.example".
   */
  readonly apiUrl?: string;
  readonly netboot?: NetbootConfig;
  readonly customers?: readonly CustomerConfig[];
  readonly servers: readonly ServerConfig[];
}

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringList = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === 'string' && s !== '');

function parseBoot(value: unknown, where: string, bad: (why: string) => never): CommandBoot | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || !isStringList(value.command) || value.command.length === 0)
    bad(`${where}.boot.command must be a non-empty list of strings`);
  const { env, logFile, rescueCommand } = value;
  if (rescueCommand !== undefined && (!isStringList(rescueCommand) || rescueCommand.length === 0))
    bad(`${where}.boot.rescueCommand must be a non-empty list of strings`);
  // Issue 13: a token on a command line is readable by every local user (ps).
  for (const [name, field] of Object.entries({
    command: value.command,
    rescueCommand,
    logFile,
    env: env === undefined ? undefined : JSON.stringify(env),
  })) {
    if (field !== undefined && JSON.stringify(field).includes('{token}'))
      bad(tokenOnCommandLineReason(`${where}.boot.${name}`));
  }
  if (env !== undefined && (!isObject(env) || !Object.values(env).every((s) => typeof s === 'string')))
    bad(`${where}.boot.env must map names to strings`);
  if (logFile !== undefined && typeof logFile !== 'string') bad(`${where}.boot.logFile must be a path`);
  return {
    command: value.command,
    ...(rescueCommand !== undefined && { rescueCommand: rescueCommand as string[] }),
    ...(env !== undefined && { env: env as Record<string, string> }),
    ...(logFile !== undefined && { logFile }),
  };
}

function parseNetwork(value: unknown, where: string, bad: (why: string) => never): NetworkConfig | undefined {
  if (value === undefined) return undefined;
  try {
    return parseNetworkConfig(value, where);
  } catch (error) {
    return bad(error instanceof ByoiError ? error.message : String(error));
  }
}

function parseNetboot(value: unknown, bad: (why: string) => never): NetbootConfig | undefined {
  if (value === undefined) return undefined;
  if (
    !isObject(value) ||
    typeof value.kernel !== 'string' ||
    typeof value.initrd !== 'string' ||
    !value.kernel ||
    !value.initrd
  ) {
    return bad('netboot must give "kernel" and "initrd" (files or http(s) URLs)');
  }
  const { cmdline, rescueCmdline, maxBoots, clients } = value;
  for (const [name, field] of Object.entries({ cmdline, rescueCmdline })) {
    // The line goes into an iPXE script: one line, no iPXE expansions but those the lab means.
    if (field !== undefined && (typeof field !== 'string' || /[\r\n]/.test(field)))
      bad(`netboot.${name} must be a one-line string`);
  }
  if (maxBoots !== undefined && (!Number.isInteger(maxBoots) || (maxBoots as number) < 1 || (maxBoots as number) > 100))
    bad('netboot.maxBoots must be an integer from 1 to 100');
  return {
    kernel: value.kernel,
    initrd: value.initrd,
    ...(typeof cmdline === 'string' && { cmdline }),
    ...(typeof rescueCmdline === 'string' && { rescueCmdline }),
    ...(typeof maxBoots === 'number' && { maxBoots }),
    ...(clients !== undefined && { clients: parseClients(clients, bad) }),
  };
}

function parseClients(value: unknown, bad: (why: string) => never): string[] {
  if (!isStringList(value)) return bad('netboot.clients must be a list of addresses or networks (CIDR)');
  for (const client of value) {
    try {
      networkOf(client);
    } catch {
      bad(`netboot.clients: ${JSON.stringify(client).slice(0, 60)} is not an address or a network like 10.0.0.0/24`);
    }
  }
  return value;
}

/** An address or a CIDR network, as node:net's BlockList takes it; throws when it is neither. */
export function networkOf(client: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } {
  const [address = '', prefix, ...rest] = client.split('/');
  const version = isIP(address);
  const bits = version === 4 ? 32 : 128;
  const length = prefix === undefined ? bits : /^\d{1,3}$/.test(prefix) ? Number(prefix) : NaN;
  if (version === 0 || rest.length > 0 || !(length >= 0 && length <= bits)) throw new Error(`not a network: ${client}`);
  return { address, prefix: length, family: version === 4 ? 'ipv4' : 'ipv6' };
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

function parseMacs(
  value: unknown,
  where: string,
  seen: Set<string>,
  bad: (why: string) => never,
): string[] | undefined {
  if (value === undefined) return undefined;
  if (!isStringList(value)) return bad(`${where}.macs must be a list of MAC addresses`);
  return value.map((raw) => {
    const mac = raw.toLowerCase().replaceAll('-', ':');
    if (!MAC.test(mac))
      bad(`${where}.macs: ${JSON.stringify(raw).slice(0, 40)} is not a MAC address like 52:54:00:12:34:56`);
    if (seen.has(mac)) bad(`${where}.macs: ${mac} is declared twice`);
    seen.add(mac);
    return mac;
  });
}

function parseCustomers(value: unknown, bad: (why: string) => never): CustomerConfig[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) return bad('customers must be a list');
  const names = new Set<string>();
  return value.map((customer: unknown, i): CustomerConfig => {
    const where = `customers[${i}]`;
    if (!isObject(customer) || typeof customer.name !== 'string' || !/^[A-Za-z0-9._@-]{1,64}$/.test(customer.name)) {
      return bad(`${where}.name must be 1 to 64 letters, digits, dots, dashes, underscores or @`);
    }
    if (names.has(customer.name)) bad(`customer ${customer.name} is declared twice`);
    names.add(customer.name);
    if (typeof customer.passwordHash !== 'string' || !customer.passwordHash.startsWith('scrypt$')) {
      bad(`${where}.passwordHash must be an scrypt hash (byoi serve hash-password)`);
    }
    return { name: customer.name, passwordHash: customer.passwordHash as string };
  });
}

function parseDatabase(value: unknown, bad: (why: string) => never): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value === '')
    return bad('database must be a postgres:// URL or an SQLite file path');
  return value;
}

/** The serviceNames a config may declare; a request naming anything else names no server. */
export function isServiceName(name: string): boolean {
  return /^[A-Za-z0-9._-]{1,255}$/.test(name);
}

/** The information a key's characters carry, judged from the key itself (its empirical entropy). */
function entropyBits(key: string): number {
  const counts = new Map<string, number>();
  for (const c of key) counts.set(c, (counts.get(c) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) bits -= n * Math.log2(n / key.length);
  return bits;
}

/** A key that is a shorter string repeated ("abcabcabc..."). */
function repeats(key: string): boolean {
  for (let period = 1; period <= key.length / 2; period++) {
    if (key.slice(period) === key.slice(0, key.length - period)) return true;
  }
  return false;
}

/** An API key strong enough to guard a server: 32 characters or more, not a pattern, not few symbols. */
export function isStrongKey(key: string): boolean {
  return key.length >= 32 && !repeats(key) && entropyBits(key) >= 80;
}

function parseRetention(value: unknown, bad: (why: string) => never): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || value > 3650)
    bad('jobBodyRetentionDays must be a number of days from 0 to 3650');
  return value as number;
}

function parseApiUrl(value: unknown, bad: (why: string) => never): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^https?:\/\/[^/?#\s]+(\/[^?#\s]*)?$/.test(value))
    return bad('apiUrl must be an http(s) URL without query');
  return value.replace(/\/+$/, '');
}

function parseDiskGroups(value: unknown, where: string, bad: (why: string) => never): DiskGroupConfig[] | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value)) return bad(`${where}.diskGroups must be a list`);
  return value.map((group: unknown, i): DiskGroupConfig => {
    if (
      !isObject(group) ||
      !Number.isSafeInteger(group.diskGroupId) ||
      (group.diskGroupId as number) < 0 ||
      typeof group.description !== 'string'
    ) {
      return bad(`${where}.diskGroups[${i}] must be {"diskGroupId": <integer>, "description": "..."}`);
    }
    return { diskGroupId: group.diskGroupId as number, description: group.description };
  });
}

/** Checks a parsed configuration; `source` names it in errors. */
export function parseConfig(value: unknown, source: string): ApiConfig {
  const bad = (why: string): never => {
    throw badConfig(source, why);
  };
  if (!isObject(value) || !Array.isArray(value.servers)) return bad('expected {"servers": [...]}');
  if (value.publicUrl !== undefined && typeof value.publicUrl !== 'string') bad('publicUrl must be a URL');
  if (value.secretsKeyFile !== undefined && (typeof value.secretsKeyFile !== 'string' || value.secretsKeyFile === ''))
    bad('secretsKeyFile must be a path');
  const retention = parseRetention(value.jobBodyRetentionDays, bad);
  const customers = parseCustomers(value.customers, bad);
  const database = parseDatabase(value.database, bad);
  const apiUrl = parseApiUrl(value.apiUrl, bad);
  const netboot = parseNetboot(value.netboot, bad);
  const seen = new Set<string>();
  const macsSeen = new Set<string>();
  const servers = value.servers.map((server: unknown, i): ServerConfig => {
    const where = `servers[${i}]`;
    if (!isObject(server) || typeof server.serviceName !== 'string' || !isServiceName(server.serviceName)) {
      return bad(`${where}.serviceName must be a name of 1 to 255 letters, digits, dots, dashes or underscores`);
    }
    if (seen.has(server.serviceName)) bad(`${server.serviceName} is declared twice`);
    seen.add(server.serviceName);
    if (!isStringList(server.apiKeys)) bad(`${where}.apiKeys must be a list of keys`);
    (server.apiKeys as string[]).forEach(
      (key, k) => isStrongKey(key) || bad(weakApiKeyReason(`${where}.apiKeys[${k}]`)),
    );
    const boot = parseBoot(server.boot, where, bad);
    const network = parseNetwork(server.network, `${where}.network`, bad);
    if (server.verifyWrite !== undefined && typeof server.verifyWrite !== 'boolean')
      bad(`${where}.verifyWrite must be true or false`);
    const verifyWrite = server.verifyWrite === true;
    const macs = parseMacs(server.macs, where, macsSeen, bad);
    const diskGroups = parseDiskGroups(server.diskGroups, where, bad);
    const { customer } = server;
    if (customer !== undefined && !customers.some((c) => c.name === customer))
      bad(`${where}.customer must name one of "customers"`);
    return {
      serviceName: server.serviceName,
      apiKeys: server.apiKeys as string[],
      ...(typeof customer === 'string' && { customer }),
      ...(macs && { macs }),
      ...(boot && { boot }),
      ...(diskGroups && { diskGroups }),
      ...(network && { network }),
      ...(verifyWrite && { verifyWrite }),
    };
  });
  return {
    ...(typeof value.publicUrl === 'string' && { publicUrl: value.publicUrl }),
    ...(database !== undefined && { database }),
    ...(apiUrl && { apiUrl }),
    ...(typeof value.secretsKeyFile === 'string' && { secretsKeyFile: value.secretsKeyFile }),
    ...(retention !== undefined && { jobBodyRetentionDays: retention }),
    ...(netboot && { netboot }),
    ...(customers.length > 0 && { customers }),
    servers,
  };
}

export function loadConfig(path: string): ApiConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw badConfig(path, 'it cannot be read', {
      detail: String(error),
      cause: error,
    });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw badConfig(path, 'it is not JSON', { detail: String(error), cause: error });
  }
  return parseConfig(value, path);
}
