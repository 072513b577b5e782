// Runs the system tools the agent drives (lsblk, wipefs, sgdisk, xfs_io, mtools, reboot, ...).
//
// A deployment holds its image in RAM, and every fork() copies the page tables of all of it: here
// ~0.1 s per tool with 741 MiB held, ~0.3 s with 2 GiB, and under strict overcommit a fork of a
// process that large may fail outright. So while an image is held, tools are started by a small
// helper process forked before the image was loaded (`withToolHelper`). The helper is a Node
// process of its own, ready ~0.1-0.2 s later: until then, while this process is still small, a
// tool starts from here rather than wait for it (the disk's choice, before the download, did). The
// helper runs the very same function as the in-process path, from its source text (see
// lib/formats/cluster-decompress.ts for the same pattern): one implementation either way.
import { spawn, type ChildProcess } from 'node:child_process';

export interface ExecOptions {
  /** Throw an ExecError when the tool fails (default); false returns the failed result. */
  readonly reject?: boolean;
  /** Written to the tool's stdin; without it stdin is /dev/null. */
  readonly input?: string;
  /** Added to the environment. */
  readonly env?: Readonly<Record<string, string>>;
}

export interface ExecResult {
  readonly command: string;
  /** undefined when the tool could not be started or was killed by a signal. */
  readonly exitCode: number | undefined;
  readonly failed: boolean;
  /** Without the final newline. */
  readonly stdout: string;
  readonly stderr: string;
  /** stdout and stderr interleaved as they came. */
  readonly all: string;
  /** One line saying how it failed (or that it succeeded), then its output: for logs and details. */
  readonly message: string;
}

export class ExecError extends Error {
  readonly result: ExecResult;

  constructor(result: ExecResult) {
    super(result.message);
    this.name = 'ExecError';
    this.result = result;
  }
}

interface Request {
  readonly file: string;
  readonly args: readonly string[];
  readonly input?: string;
  readonly env?: Readonly<Record<string, string>>;
}

interface Outcome {
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly spawnError: string | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly all: string;
}

/**
 * Runs one tool to its end. Self-contained on purpose (only its arguments, no imports, no inner
 * named functions): the helper process evaluates its source text.
 */
function runTool(spawnTool: typeof spawn, request: Request): Promise<Outcome> {
  return new Promise((resolve) => {
    const child = spawnTool(request.file, [...request.args], {
      env: { ...process.env, ...request.env },
      stdio: [request.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const all: Buffer[] = [];
    let spawnError: string | null = null;
    child.stdout!.on('data', (chunk: Buffer) => out.push(chunk) && all.push(chunk));
    child.stderr!.on('data', (chunk: Buffer) => err.push(chunk) && all.push(chunk));
    child.on('error', (error: Error) => {
      spawnError = error.message;
    });
    child.on('close', (exitCode: number | null, signal: string | null) =>
      resolve({
        exitCode: spawnError === null ? exitCode : null,
        signal,
        spawnError,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
        all: Buffer.concat(all).toString(),
      }),
    );
    if (request.input !== undefined) {
      child.stdin!.on('error', () => undefined); // a tool that exits without reading its input
      child.stdin!.end(request.input);
    }
  });
}

const HELPER_SOURCE = `
const { spawn } = require('node:child_process');
const runTool = (${runTool.toString()});
// Sent with a callback: the agent may have ended (and closed the channel) first, which would
// otherwise be an uncaught error here, printed on the agent's stderr.
const ignore = () => {};
process.on('message', ({ id, request }) => runTool(spawn, request).then((outcome) => process.send({ id, outcome }, ignore)));
process.send('ready', ignore);
`;

/**
 * Below this resident size a fork costs a few milliseconds: a tool wanted before the helper is
 * ready starts from here. Above it (an image arriving), it waits for the helper.
 */
const SMALL_ENOUGH_TO_FORK = 256 * 1024 * 1024;

/**
 * A helper not ready by then is killed, and tools start from this process from then on (at a
 * fork's cost): it is a Node process that should be ready in ~0.2 s, and a tool must not wait
 * forever on one that hangs while starting.
 */
const READY_WITHIN_MS = 30_000;

export interface ToolHelperOptions {
  /** Resident bytes below which a tool wanted before the helper is ready starts from this process. */
  readonly forkBelow?: number;
  /** How long the helper may take to be ready before it is killed. */
  readonly readyWithinMs?: number;
}

/** The helper process, while one runs. */
let helper: ToolHelper | undefined;

class ToolHelper {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, (outcome: Outcome) => void>();
  private nextId = 0;
  /** Why the helper can run no more tools, once it cannot. */
  private gone: string | undefined;
  /** True once the helper said it listens. */
  ready = false;
  /** Settles once the helper is ready, or gone (its requests then fail, as `run` says). */
  readonly started: Promise<void>;
  /** Resident bytes below which a tool wanted before the helper is ready starts from this process. */
  readonly forkBelow: number;

  constructor({ forkBelow = SMALL_ENOUGH_TO_FORK, readyWithinMs = READY_WITHIN_MS }: ToolHelperOptions) {
    this.forkBelow = forkBelow;
    this.child = spawn(process.execPath, ['-e', HELPER_SOURCE], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    let settle = () => {};
    this.started = new Promise((resolve) => (settle = resolve));
    const notReady = setTimeout(() => {
      this.end(`the tool helper process was not ready within ${readyWithinMs / 1000} s`);
      this.child.kill('SIGKILL');
      settle();
    }, readyWithinMs).unref();
    this.child.on('message', (message: 'ready' | { id: number; outcome: Outcome }) => {
      if (message === 'ready') {
        clearTimeout(notReady);
        this.ready = true;
        return settle();
      }
      this.pending.get(message.id)?.(message.outcome);
      this.pending.delete(message.id);
    });
    // A helper that dies leaves its requests failed, not hanging.
    this.child.on('exit', (code, signal) => {
      clearTimeout(notReady);
      this.end(`the tool helper process exited (${signal ?? `code ${code}`})`);
      settle();
    });
    this.child.on('error', (error) => {
      clearTimeout(notReady);
      this.end(`the tool helper process failed: ${error.message}`);
      settle();
    });
  }

  /** Whether tools can go to it: false once it was killed, exited or failed. */
  usable(): boolean {
    return this.gone === undefined && this.child.connected;
  }

  run(request: Request): Promise<Outcome> {
    if (!this.usable()) {
      return Promise.resolve(failure(this.gone ?? 'the tool helper process is gone'));
    }
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.child.send({ id, request });
    });
  }

  /** The helper ends once disconnected: nothing else keeps its event loop alive. */
  stop(): void {
    if (this.child.connected) this.child.disconnect();
  }

  /** Fails the requests waiting and every later one; the first reason given is kept. */
  private end(reason: string): void {
    this.gone ??= reason;
    for (const resolve of this.pending.values()) resolve(failure(this.gone));
    this.pending.clear();
  }
}

function failure(reason: string): Outcome {
  return { exitCode: null, signal: null, spawnError: reason, stdout: '', stderr: '', all: '' };
}

/**
 * Runs `action` with tools started by a helper process forked now, while this process is still
 * small; call it before loading anything large. Nested calls share the outer helper. Until the
 * helper is ready, a tool starts from this process while its resident size is below `forkBelow`.
 */
export async function withToolHelper<T>(action: () => Promise<T>, options: ToolHelperOptions = {}): Promise<T> {
  if (helper) return action();
  helper = new ToolHelper(options);
  try {
    return await action();
  } finally {
    helper.stop();
    helper = undefined;
  }
}

/** Settles once tools go through the current helper (at once without one): for tests. */
export async function toolHelperStarted(): Promise<void> {
  await helper?.started;
}

/**
 * Starts a tool: by the helper where there is one, unless it is not ready yet and this process is
 * still small, or it is gone (killed, or exited): then from this process, whatever its size (a
 * fork of a large process is slow, and may fail under strict overcommit, saying so).
 */
async function start(request: Request): Promise<Outcome> {
  const current = helper;
  if (!current || (!current.ready && process.memoryUsage.rss() < current.forkBelow)) return runTool(spawn, request);
  await current.started;
  return current.usable() ? current.run(request) : runTool(spawn, request);
}

/** Runs a tool; see ExecOptions. */
export async function exec(file: string, args: readonly string[] = [], options: ExecOptions = {}): Promise<ExecResult> {
  const request: Request = {
    file,
    args,
    ...(options.input !== undefined && { input: options.input }),
    ...(options.env && { env: options.env }),
  };
  const outcome = await start(request);
  const result = toResult([file, ...args].join(' '), outcome);
  if (result.failed && options.reject !== false) throw new ExecError(result);
  return result;
}

function toResult(command: string, outcome: Outcome): ExecResult {
  const failed = outcome.exitCode !== 0;
  const how =
    outcome.spawnError !== null
      ? `${command} could not run: ${outcome.spawnError}`
      : outcome.signal !== null
        ? `${command} was killed by ${outcome.signal}`
        : failed
          ? `${command} failed with exit code ${outcome.exitCode}`
          : `${command} succeeded`;
  const output = outcome.all.trim();
  return {
    command,
    exitCode: outcome.exitCode ?? undefined,
    failed,
    stdout: outcome.stdout.replace(/\r?\n$/, ''),
    stderr: outcome.stderr.replace(/\r?\n$/, ''),
    all: outcome.all.replace(/\r?\n$/, ''),
    message: output === '' ? how : `${how}\n${output}`,
  };
}
