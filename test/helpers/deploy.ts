// Shared by the deploy integration tests: run the real CLI, hash devices, read GPT headers.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, openSync, readSync, closeSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const repo = fileURLToPath(new URL('../..', import.meta.url));

export interface CliResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The last non-empty line of stderr: the message of a failure. */
  readonly lastLine: string;
}

/** `byoi ARGS` under the same Node that runs the tests (Node 24), asynchronously so the test's HTTP server keeps serving. */
export async function byoi(args: string[], input?: string): Promise<CliResult> {
  return run(process.execPath, ['agent/byoi.ts', ...args], input);
}

/** As `byoi`, `program` (a bundle: scripts/bundle.ts) under an address-space limit (`ulimit -v`, in KiB). */
export async function byoiWithAddressSpace(kib: number, program: string, args: string[]): Promise<CliResult> {
  return run('bash', ['-c', `ulimit -v ${kib} && exec "$@"`, 'bash', process.execPath, program, ...args]);
}

async function run(file: string, argv: string[], input?: string): Promise<CliResult> {
  const result = await execa(file, argv, {
    cwd: repo,
    reject: false,
    ...(input !== undefined ? { input } : { stdin: 'ignore' }),
  });
  const lines = result.stderr.split('\n').filter((line) => line.trim() !== '');
  return {
    exitCode: result.exitCode ?? -1,
    stdout: result.stdout,
    stderr: result.stderr,
    lastLine: lines.at(-1) ?? '',
  };
}

export async function sha256Of(path: string, length?: number): Promise<string> {
  const hash = createHash('sha256');
  const stream = createReadStream(path, length === undefined ? {} : { start: 0, end: length - 1 });
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export function sha256OfFile(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

export function sh(command: string, args: string[]): string {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function readAt(path: string, position: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, position);
    return buffer;
  } finally {
    closeSync(fd);
  }
}

/** The primary and backup GPT headers' own LBAs and where each says the other is. */
export function gptHeaders(
  device: string,
  size: number,
  sector = 512,
): { primaryAlternate: bigint; backupSignature: string; backupMyLba: bigint; lastLba: bigint } {
  const primary = readAt(device, sector, 92);
  const backup = readAt(device, size - sector, 92);
  return {
    primaryAlternate: primary.readBigUInt64LE(32),
    backupSignature: backup.toString('latin1', 0, 8),
    backupMyLba: backup.readBigUInt64LE(24),
    lastLba: BigInt(size / sector - 1),
  };
}

/** The arguments of `byoi deploy` of `url` onto `disk` with its sha256, no reboot, status to a file. */
export function deployArgs(deployment: {
  url: string;
  type: string;
  sha256: string;
  disk: string;
  statusFile: string;
}): string[] {
  const { url, type, sha256, disk, statusFile } = deployment;
  return [
    ...['deploy', '--url', url, '--type', type, '--checksum', sha256, '--checksum-type', 'sha256'],
    ...['--disk', disk, '--no-reboot', '--status-file', statusFile],
  ];
}
