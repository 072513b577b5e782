// Shared by the CLI deploy tests of served images (test/features/deploy-formats.test.ts,
// test/features/deploy-stream.test.ts): the GPT image they serve in many encodings, `byoi deploy`
// with its status file, and the check that the disk holds the image with its backup GPT at the end.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { expect } from 'vitest';
import { byoi, deployArgs, gptHeaders, readAt, sh, type CliResult } from './deploy.ts';

const MiB = 1024 * 1024;
/** The image's virtual size. */
export const GPT_IMAGE_SIZE = 24 * MiB;

/**
 * Makes `raw`: a GPT made by sgdisk (a 4 MiB ESP and a Linux partition) with random data in both
 * partitions and a compressible run at 9 MiB, `more` bytes added by the caller; returns the image as
 * `qemu-img convert -O raw` reads it (the reference the deployed disk is compared with).
 */
export function makeGptImage(raw: string, more: (bytes: Buffer) => void = () => {}): Buffer {
  sh('truncate', ['-s', String(GPT_IMAGE_SIZE), raw]);
  sh('sgdisk', ['-n1:2048:+4M', '-t1:ef00', '-n2:0:0', '-t2:8300', raw]);
  const bytes = readFileSync(raw);
  randomBytes(512 * 1024).copy(bytes, MiB + 4096);
  randomBytes(MiB).copy(bytes, 6 * MiB);
  Buffer.from('compressible '.repeat(80000)).copy(bytes, 9 * MiB);
  more(bytes);
  writeFileSync(raw, bytes);
  const reference = `${raw}.reference`;
  sh('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', raw, reference]);
  return readFileSync(reference);
}

/** `command -c < from > to`: a compressor's own output (`command`: e.g. `xz -T1 -3`). */
export function compressFile(command: string, from: string, to: string): void {
  execFileSync('sh', ['-c', `${command} -c < "$1" > "$2"`, 'sh', from, to]);
}

/** `byoi deploy` of `url` onto `disk` (`extra`: more options), with the status file it left in `dir`. */
export async function deployWithStatus(
  deployment: { dir: string; name: string; url: string; type: string; sha256: string; disk: string },
  extra: string[] = [],
): Promise<{ result: CliResult; status: { status: string; message: string } }> {
  const { dir, name, ...rest } = deployment;
  const statusFile = join(dir, `${name}.status.json`);
  const result = await byoi([...deployArgs({ ...rest, statusFile }), ...extra]);
  return { result, status: JSON.parse(readFileSync(statusFile, 'utf8')) as { status: string; message: string } };
}

/**
 * The deployment succeeded and the disk of `diskSize` bytes holds `reference` as written, except what
 * moving the backup GPT rewrites (the protective MBR entry, the primary header), its backup GPT at its end.
 */
export function expectGptImageDeployed(
  deployed: { result: CliResult; status: { status: string } },
  device: string,
  reference: Buffer,
  diskSize: number,
): void {
  expect(deployed.result.exitCode, deployed.result.stderr).toBe(0);
  expect(deployed.status.status).toBe('done');
  const written = readAt(device, 0, GPT_IMAGE_SIZE);
  expect(written.subarray(0, 446).equals(reference.subarray(0, 446))).toBe(true);
  expect(written.subarray(1024).equals(reference.subarray(1024))).toBe(true);
  expect(sh('sgdisk', ['-v', device])).toContain('No problems found');
  const gpt = gptHeaders(device, diskSize);
  expect(gpt.backupMyLba).toBe(gpt.lastLba);
}
