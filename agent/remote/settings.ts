// Where the agent finds its API, its server's name and its token: flags first (the token never on
// the command line: the environment or a 0600 file), else the kernel command line a PXE boot passes
// (`byoi.server=URL byoi.service=NAME byoi.token=TOKEN`). The API is reached over HTTPS, its
// certificate verified against `--ca-file` / `byoi.ca=PATH`, else the CA baked into the rescue image
// (BAKED_CA), else the system's; plain HTTP only when the lab says so (`--insecure` /
// `byoi.insecure=1`): the token and the customer's secrets would travel in clear.
import { existsSync, readFileSync } from 'node:fs';
import { TOKEN_ENV, TOKEN_FILE_ENV } from '../../lib/api/auth.ts';
import { badAgentSettings, badCaFile, insecureApi, unreadableTokenFile } from '../../lib/errors.ts';

/**
 * The token from the environment or a file (`--token-file`, else $BYOI_AGENT_TOKEN_FILE), if given.
 * Taken out of `env` once read, so the agent's own children (disk tools) do not inherit it.
 */
export function tokenFromEnvironment(env: NodeJS.ProcessEnv, tokenFile: string | undefined): string | undefined {
  const direct = env[TOKEN_ENV];
  const file = tokenFile ?? env[TOKEN_FILE_ENV];
  delete env[TOKEN_ENV];
  if (direct) return direct.trim();
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch (error) {
    throw unreadableTokenFile(file, {
      detail: String(error),
      cause: error,
    });
  }
}

export interface AgentSettings {
  /** The API's base URL, e.g. https://10.0.0.1:8443. */
  readonly server: string;
  readonly serviceName: string;
  readonly token: string;
  /** PEM certificates the API's certificate must chain to; the system's when absent. */
  readonly ca?: Buffer;
}

/** Where the rescue image builder puts the lab's CA. */
export const BAKED_CA = '/etc/byoi/api-ca.pem';

interface CmdlineSettings {
  server?: string;
  serviceName?: string;
  token?: string;
  caFile?: string;
  insecure?: boolean;
}

/** The `byoi.*` parameters of a kernel command line. */
export function parseCmdline(cmdline: string): CmdlineSettings {
  const out: CmdlineSettings = {};
  for (const word of cmdline.trim().split(/\s+/)) {
    const eq = word.indexOf('=');
    if (eq < 0) continue;
    const [key, value] = [word.slice(0, eq), word.slice(eq + 1).replace(/^"(.*)"$/, '$1')];
    if (key === 'byoi.server') out.server = value;
    else if (key === 'byoi.service') out.serviceName = value;
    else if (key === 'byoi.token') out.token = value;
    else if (key === 'byoi.ca') out.caFile = value;
    else if (key === 'byoi.insecure') out.insecure = value === '1';
  }
  return out;
}

function readCa(path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw badCaFile(path, { detail: String(error), cause: error });
  }
}

/** Flags win over the command line, read from `cmdlinePath`; `bakedCa` is used when neither names a CA. */
export function agentSettings(flags: CmdlineSettings, cmdlinePath: string, bakedCa = BAKED_CA): AgentSettings {
  let fromCmdline: CmdlineSettings = {};
  try {
    fromCmdline = parseCmdline(readFileSync(cmdlinePath, 'utf8'));
  } catch {
    // no command line to read: the flags must say it all
  }
  const server = flags.server || fromCmdline.server;
  const serviceName = flags.serviceName || fromCmdline.serviceName;
  const token = flags.token || fromCmdline.token;
  const missing = [!server && 'server', !serviceName && 'service name', !token && 'token'].filter(
    (m): m is string => typeof m === 'string',
  );
  if (missing.length > 0 || !server || !serviceName || !token) throw badAgentSettings(missing);
  const base = server.replace(/\/+$/, '');
  const insecure = flags.insecure === true || fromCmdline.insecure === true;
  if (!/^https:\/\//i.test(base) && !(insecure && /^http:\/\//i.test(base))) throw insecureApi(base);
  const caFile = flags.caFile || fromCmdline.caFile || (existsSync(bakedCa) ? bakedCa : undefined);
  return { server: base, serviceName, token, ...(caFile && /^https:/i.test(base) && { ca: readCa(caFile) }) };
}
