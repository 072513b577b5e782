// ChunkedBuffer.fromFile: every byte lands in its place, whatever the file size.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ChunkedBuffer } from '../lib/chunked-buffer.ts';

describe('ChunkedBuffer.fromFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-chunked-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['more chunks than parallel reads, the last one partial', 64 * 1024 * 9 + 123],
    ['an exact number of chunks', 64 * 1024 * 3],
    ['less than one chunk', 1000],
    ['an empty file', 0],
  ])('%s', async (_, size) => {
    const bytes = randomBytes(size);
    const path = join(dir, `f-${size}`);
    writeFileSync(path, bytes);
    const image = await ChunkedBuffer.fromFile(path, 64 * 1024);
    expect(image.size).toBe(size);
    expect(Buffer.compare(image.read(0, size), bytes)).toBe(0);
    // Appending continues where the file ended.
    image.append(Buffer.from('tail'));
    expect(image.read(size, 4).toString()).toBe('tail');
    expect(() => image.read(0, size + 5)).toThrow(RangeError);
  });
});
