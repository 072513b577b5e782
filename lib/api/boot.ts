// How the lab boots a server onto `byoi agent`, and back into rescue mode. Tests pass their own
// adapter; `CommandBootAdapter` runs the command each server declares in the config file (an IPMI or
// Redfish power cycle with PXE as next boot, when the lab netboots through lib/api/netboot.ts; or
// `byoi agent` itself). The token never goes on a command line, where every local user reads it:
// the command gets it as $BYOI_AGENT_TOKEN, and `{token}` in the config is refused (config.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import type { ServerConfig } from './config.ts';
import { TOKEN_ENV } from './auth.ts';
import { bootFailed } from '../errors.ts';

/** How long an agent may take to stop on SIGTERM before it is killed. */
const RESCUE_GRACE_MS = 5000;
/** How long the rescue command (a power cycle) may run. */
const RESCUE_COMMAND_TIMEOUT_MS = 60_000;

export interface BootContext {
  /** Where the agent reaches this API. */
  readonly serverUrl: string;
  readonly serviceName: string;
  /** The deployment's agent token. */
  readonly token: string;
}

export interface BootAdapter {
  /** Starts the agent on the server; resolves once it is started, not once it has finished. */
  boot(context: BootContext): Promise<void>;
  /** Stops whatever deploys on the server and leaves it in rescue mode. */
  rescue(serviceName: string): Promise<void>;
}

function fill(text: string, context: Omit<BootContext, 'token'>): string {
  return text.replaceAll('{server}', context.serverUrl).replaceAll('{service}', context.serviceName);
}

export class CommandBootAdapter implements BootAdapter {
  private readonly servers: readonly ServerConfig[];
  private readonly running = new Map<string, ChildProcess>();

  private readonly netboot: boolean;

  /** `netboot`: the lab netboots its servers (lib/api/netboot.ts), so a server without a command waits for its next boot. */
  constructor(servers: readonly ServerConfig[], options: { netboot?: boolean } = {}) {
    this.servers = servers;
    this.netboot = options.netboot ?? false;
  }

  async boot(context: BootContext): Promise<void> {
    const boot = this.servers.find((s) => s.serviceName === context.serviceName)?.boot;
    if (!boot && this.netboot) return;
    if (!boot)
      throw bootFailed(context.serviceName, {
        detail: 'no boot command is configured for this server',
      });
    const [command, ...args] = boot.command.map((part) => fill(part, context));
    const log = boot.logFile ? openSync(fill(boot.logFile, context), 'a', 0o600) : 'ignore';
    try {
      // Its own process group, so rescue can stop the agent and everything it started.
      const env = { ...process.env, ...boot.env, [TOKEN_ENV]: context.token };
      const child = spawn(command!, args, { stdio: ['ignore', log, log], env, detached: true });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', (error) =>
          reject(bootFailed(context.serviceName, { detail: String(error), cause: error })),
        );
      });
      child.unref();
      this.running.set(context.serviceName, child);
      child.once('exit', () => {
        if (this.running.get(context.serviceName) === child) this.running.delete(context.serviceName);
      });
    } finally {
      if (typeof log === 'number') closeSync(log);
    }
  }

  async rescue(serviceName: string): Promise<void> {
    await this.stopRunning(serviceName);
    const boot = this.servers.find((s) => s.serviceName === serviceName)?.boot;
    if (!boot?.rescueCommand) return;
    // The lab's power cycle into rescue (the next netboot says rescue): waited for, bounded.
    const [command, ...args] = boot.rescueCommand.map((part) => fill(part, { serverUrl: '', serviceName }));
    const child = spawn(command!, args, { stdio: 'ignore', env: { ...process.env, ...boot.env }, detached: true });
    child.once('error', () => undefined);
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }, RESCUE_COMMAND_TIMEOUT_MS);
    await new Promise<void>((resolve) => child.once('close', () => resolve()));
    clearTimeout(timer);
  }

  /** Stops the boot command this process started for the server, if it still runs. */
  private async stopRunning(serviceName: string): Promise<void> {
    const child = this.running.get(serviceName);
    if (!child?.pid) return;
    this.running.delete(serviceName);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return; // already gone
    }
    const killed = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }, RESCUE_GRACE_MS);
    await exited;
    clearTimeout(killed);
  }
}
