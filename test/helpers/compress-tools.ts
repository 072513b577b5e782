// Compressed raw disks made by the real tools (fast settings), for the decoders to read.
import { execFileSync } from 'node:child_process';

export const compressionTools = {
  gzip: ['gzip', '-1', '-c'],
  xz: ['xz', '-0', '-T1', '-c'],
  zstd: ['zstd', '-q', '-1', '-c'],
  bzip2: ['bzip2', '-1', '-c'],
} as const;

export type ToolFormat = keyof typeof compressionTools;
export const toolFormats = Object.keys(compressionTools) as ToolFormat[];

/** The file at `input`, compressed by `format`'s tool (with `extra` arguments). */
export function compressedByTool(format: ToolFormat, input: string, extra: string[] = []): Buffer {
  const [tool, ...args] = compressionTools[format];
  return execFileSync(tool, [...args, ...extra, input], { maxBuffer: 1 << 30 });
}
