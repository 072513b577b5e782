// How the lab boots a server onto `byoi agent`, and back into rescue mode. Tests pass their own
// adapter; `CommandBootAdapter` runs the command each server declares in the config file.
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import type { ServerConfig } from './config.ts';
import { failed, apiMessages } from '../errors.ts';

/** How long an agent may take to stop on SIGTERM before it is killed. */
const RESCUE_GRACE_MS = 5000;

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

function fill(text: string, context: BootContext): string {
  return text.replaceAll('{server}', context.serverUrl).replaceAll('{service}', context.serviceName).replaceAll('{token}', context.token);
}

export class CommandBootAdapter implements BootAdapter {
  private readonly servers: readonly ServerConfig[];
  private readonly running = new Map<string, ChildProcess>();

  constructor(servers: readonly ServerConfig[]) {
    this.servers = servers;
  }

  async boot(context: BootContext): Promise<void> {
    const boot = this.servers.find((s) => s.serviceName === context.serviceName)?.boot;
    if (!boot) throw failed(apiMessages.bootFailed(context.serviceName), 'no boot command is configured for this server');
    const [command, ...args] = boot.command.map((part) => fill(part, context));
    const log = boot.logFile ? openSync(fill(boot.logFile, context), 'a') : 'ignore';
    try {
      // Its own process group, so rescue can stop the agent and everything it started.
      const child = spawn(command!, args, { stdio: ['ignore', log, log], env: { ...process.env, ...boot.env }, detached: true });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', (error) => reject(failed(apiMessages.bootFailed(context.serviceName), String(error))));
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
