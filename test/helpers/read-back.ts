// Read-back tests of both writers (test/write/read-back.test.ts, test/stream/read-back-stream.test.ts):
// a byte changed behind the writer's back that the read-back must report as a failing disk.
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import { expect } from 'vitest';
import { verifyReadBack, type ReadBackRecord, type WrittenRecord } from '../../lib/disk/read-back.ts';
import { ByoiError } from '../../lib/errors.ts';

const READ_BACK_MESSAGE = 'The disk does not read back what was written: it may be failing.';

/**
 * Changes the byte at `offset` of the loop device's backing `file`, flushes the device's buffers,
 * and expects the read-back to fail as a failing disk with a detail matching `detail`.
 */
export async function expectReadBackCatches(
  target: { file: string; device: string; record: WrittenRecord | ReadBackRecord; size: number },
  offset: number,
  detail: RegExp,
): Promise<void> {
  const { file, device, record, size } = target;
  const fd = openSync(file, 'r+');
  try {
    writeSync(fd, Buffer.from([0x5a]), 0, 1, offset);
  } finally {
    closeSync(fd);
  }
  execFileSync('blockdev', ['--flushbufs', device]);
  const error = await verifyReadBack(device, size, record).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ByoiError);
  expect((error as ByoiError).message).toBe(READ_BACK_MESSAGE);
  expect((error as ByoiError).detail).toMatch(detail);
}

/** The JSON lines of a `byoi deploy` run's stderr. */
export function jsonLines(stderr: string): Record<string, unknown>[] {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
