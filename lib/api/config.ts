// The lab's servers, declared in a JSON file: which customer API keys may manage each one, and
// how the lab boots it onto the deployment agent.
//
//   {
//     "publicUrl": "http://10.0.0.1:8080",          // how agents reach this API (optional)
//     "servers": [{
//       "serviceName": "ns1.lab",
//       "apiKeys": ["<a customer's key>"],
//       "boot": { "command": ["byoi", "agent", "--server", "{server}", "--service-name", "{service}",
//                             "--token", "{token}", "--disk", "/dev/loop7"],
//                 "env": {}, "logFile": "/var/log/byoi/{service}.log" }
//     }]
//   }
import { readFileSync } from 'node:fs';
import { parseNetworkConfig, type NetworkConfig } from '../configdrive/network-config.ts';
import { ByoiError, failed, apiMessages } from '../errors.ts';

/** Boots a server onto `byoi agent` by running a command; `{server}`, `{service}`, `{token}` are filled in. */
export interface CommandBoot {
  readonly command: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  /** Where the agent's output goes (same placeholders); discarded when absent. */
  readonly logFile?: string;
}

export interface ServerConfig {
  readonly serviceName: string;
  readonly apiKeys: readonly string[];
  readonly boot?: CommandBoot;
  /** The server's network for its config drive (lib/configdrive/network-config.ts's JSON form), given to its agent with the job. */
  readonly network?: NetworkConfig;
  /** Its agent reads the disk back after writing (the job's verifyWrite). */
  readonly verifyWrite?: boolean;
}

export interface ApiConfig {
  readonly publicUrl?: string;
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

function parseNetwork(value: unknown, where: string, bad: (why: string) => never): NetworkConfig | undefined {
  if (value === undefined) return undefined;
  try {
    return parseNetworkConfig(value, where);
  } catch (error) {
    return bad(error instanceof ByoiError ? error.message : String(error));
  }
}

/** Checks a parsed configuration; `source` names it in errors. */
export function parseConfig(value: unknown, source: string): ApiConfig {
  const bad = (why: string): never => {
    throw failed(apiMessages.badConfig(source, why));
  };
  if (!isObject(value) || !Array.isArray(value.servers)) return bad('expected {"servers": [...]}');
  if (value.publicUrl !== undefined && typeof value.publicUrl !== 'string') bad('publicUrl must be a URL');
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
    const network = parseNetwork(server.network, `${where}.network`, bad);
    if (server.verifyWrite !== undefined && typeof server.verifyWrite !== 'boolean') bad(`${where}.verifyWrite must be true or false`);
    const verifyWrite = server.verifyWrite === true;
    return { serviceName: server.serviceName, apiKeys: server.apiKeys as string[], ...(boot && { boot }), ...(network && { network }), ...(verifyWrite && { verifyWrite }) };
  });
  return { ...(typeof value.publicUrl === 'string' && { publicUrl: value.publicUrl }), servers };
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
