// Where the agent finds its API, its server's name and its token: flags first (the token never on
// the command line: the environment or a 0600 file), else the kernel command line a PXE boot passes
// (`byoi.server=URL byoi.service=NAME byoi.token=TOKEN`).
import { readFileSync } from 'node:fs';
import { TOKEN_ENV, TOKEN_FILE_ENV } from '../../lib/api/auth.ts';
import { apiMessages, invalidJob, lifecycleMessages } from '../../lib/errors.ts';

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
    throw invalidJob(lifecycleMessages.unreadableTokenFile(file), String(error));
  }
}

export interface AgentSettings {
  /** The API's base URL, e.g. http://10.0.0.1:8080. */
  readonly server: string;
  readonly serviceName: string;
  readonly token: string;
}

/** The `byoi.*` parameters of a kernel command line. */
export function parseCmdline(cmdline: string): Partial<AgentSettings> {
  const out: { server?: string; serviceName?: string; token?: string } = {};
  for (const word of cmdline.trim().split(/\s+/)) {
    const eq = word.indexOf('=');
    if (eq < 0) continue;
    const [key, value] = [word.slice(0, eq), word.slice(eq + 1).replace(/^"(.*)"$/, '$1')];
    if (key === 'byoi.server') out.server = value;
    else if (key === 'byoi.service') out.serviceName = value;
    else if (key === 'byoi.token') out.token = value;
  }
  return out;
}

/** Flags win over the command line, read from `cmdlinePath` only when a flag is missing. */
export function agentSettings(flags: Partial<AgentSettings>, cmdlinePath: string): AgentSettings {
  let fromCmdline: Partial<AgentSettings> = {};
  if (!flags.server || !flags.serviceName || !flags.token) {
    try {
      fromCmdline = parseCmdline(readFileSync(cmdlinePath, 'utf8'));
    } catch {
      // no command line to read: the flags must say it all
    }
  }
  const server = flags.server || fromCmdline.server;
  const serviceName = flags.serviceName || fromCmdline.serviceName;
  const token = flags.token || fromCmdline.token;
  const missing = [!server && 'server', !serviceName && 'service name', !token && 'token'].filter((m): m is string => typeof m === 'string');
  if (missing.length > 0 || !server || !serviceName || !token) throw invalidJob(apiMessages.badAgentSettings(missing));
  return { server: server.replace(/\/+$/, ''), serviceName, token };
}
