// The lab's servers, declared in a JSON file: which customer API keys may manage each one, and
// how the lab boots it onto the deployment agent.
//
//   {
//     "publicUrl": "http://10.0.0.1:8080",          // how agents reach this API (optional)
//     "database": "postgres://byoi@db.lab/byoi",    // the store (optional; docs/fleet.md)
//     "servers": [{
//       "serviceName": "ns1.lab",
//       "apiKeys": ["<a customer's key>"],
//       "boot": { "command": ["byoi", "agent", "--server", "{server}", "--service-name", "{service}",
//                             "--token", "{token}", "--disk", "/dev/loop7"],
//                 "env": {}, "logFile": "/var/log/byoi/{service}.log" }
//     }]
//   }
import { readFileSync } from 'node:fs';
import { failed, apiMessages } from '../errors.ts';

/** Boots a server onto `byoi agent` by running a command; `{server}`, `{service}`, `{token}` are filled in. */
export interface CommandBoot {
  readonly command: readonly string[];
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

export interface ServerConfig {
  readonly serviceName: string;
  /** The customer account that owns the server, if any. */
  readonly customer?: string;
  readonly apiKeys: readonly string[];
  readonly boot?: CommandBoot;
}

export interface ApiConfig {
  readonly publicUrl?: string;
  /** Where the store is: a postgres:// URL or an SQLite file path; `--db` overrides it. */
  readonly database?: string;
  readonly customers?: readonly CustomerConfig[];
  readonly servers: readonly ServerConfig[];
}

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.every((s) => typeof s === 'string' && s !== '');

function parseBoot(value: unknown, where: string, bad: (why: string) => never): CommandBoot | undefined {
  if (value === undefined) return undefined;
  if (!isObject(value) || !isStringList(value.command) || value.command.length === 0) bad(`${where}.boot.command must be a non-empty list of strings`);
  const { env, logFile } = value;
  if (env !== undefined && (!isObject(env) || !Object.values(env).every((s) => typeof s === 'string'))) bad(`${where}.boot.env must map names to strings`);
  if (logFile !== undefined && typeof logFile !== 'string') bad(`${where}.boot.logFile must be a path`);
  return {
    command: value.command,
    ...(env !== undefined && { env: env as Record<string, string> }),
    ...(logFile !== undefined && { logFile }),
  };
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
  if (typeof value !== 'string' || value === '') return bad('database must be a postgres:// URL or an SQLite file path');
  return value;
}

/** Checks a parsed configuration; `source` names it in errors. */
export function parseConfig(value: unknown, source: string): ApiConfig {
  const bad = (why: string): never => {
    throw failed(apiMessages.badConfig(source, why));
  };
  if (!isObject(value) || !Array.isArray(value.servers)) return bad('expected {"servers": [...]}');
  if (value.publicUrl !== undefined && typeof value.publicUrl !== 'string') bad('publicUrl must be a URL');
  const customers = parseCustomers(value.customers, bad);
  const database = parseDatabase(value.database, bad);
  const seen = new Set<string>();
  const servers = value.servers.map((server: unknown, i): ServerConfig => {
    const where = `servers[${i}]`;
    if (!isObject(server) || typeof server.serviceName !== 'string' || !/^[A-Za-z0-9._-]+$/.test(server.serviceName)) {
      return bad(`${where}.serviceName must be a name of letters, digits, dots, dashes or underscores`);
    }
    if (seen.has(server.serviceName)) bad(`${server.serviceName} is declared twice`);
    seen.add(server.serviceName);
    if (!isStringList(server.apiKeys)) bad(`${where}.apiKeys must be a list of keys`);
    const boot = parseBoot(server.boot, where, bad);
    const { customer } = server;
    if (customer !== undefined && !customers.some((c) => c.name === customer)) bad(`${where}.customer must name one of "customers"`);
    return { serviceName: server.serviceName, apiKeys: server.apiKeys as string[], ...(typeof customer === 'string' && { customer }), ...(boot && { boot }) };
  });
  return {
    ...(typeof value.publicUrl === 'string' && { publicUrl: value.publicUrl }),
    ...(database !== undefined && { database }),
    ...(customers.length > 0 && { customers }),
    servers,
  };
}

export function loadConfig(path: string): ApiConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw failed(apiMessages.badConfig(path, 'it cannot be read'), String(error));
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw failed(apiMessages.badConfig(path, 'it is not JSON'), String(error));
  }
  return parseConfig(value, path);
}
