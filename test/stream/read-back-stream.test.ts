// Read-back verification in the streaming mode: BlockRecord notes what the stream writer was given,
// in whatever order its pieces came (a qcow2's clusters in file order, then zeros); the target read
// back around the page cache must give the same data blocks and zeros elsewhere. A changed byte, in
// data or in a zero run, is a failed deployment; `byoi deploy --stream --verify-write` runs it and
// reports it as the normal mode does (test/write/read-back.test.ts).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { verifyReadBack } from '../../lib/disk/read-back.ts';
import { ByoiError } from '../../lib/errors.ts';
import { BlockRecord, MAX_BLOCK } from '../../lib/stream/block-record.ts';
import { StreamWriter } from '../../lib/stream/stream-writer.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { byoi, sha256OfFile } from '../helpers/deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { detachAllLoops } from '../helpers/loop.ts';
import { expectReadBackCatches, jsonLines } from '../helpers/read-back.ts';
import { garbageLoop } from '../helpers/target-disk.ts';

const MiB = 1024 * 1024;
const BLOCK = 4096;
const SIZE = 16 * MiB - 512;

/** A 16 MiB image (its size not a multiple of the block) as pieces of one block, data at 2 and 10 MiB. */
function pieces(): { offset: number; data: Buffer }[] {
  const size = SIZE;
  const image = Buffer.alloc(size);
  randomBytes(4096).copy(image, 0);
  randomBytes(MiB).copy(image, 2 * MiB);
  randomBytes(MiB + 4096).copy(image, 10 * MiB);
  randomBytes(512).copy(image, size - 512);
  const out = [];
  for (let offset = 0; offset < size; offset += BLOCK)
    out.push({ offset, data: image.subarray(offset, Math.min(size, offset + BLOCK)) });
  return out;
}

/** Data first in a shuffled order, then the zero blocks: as a qcow2 stream gives them. */
function qcow2Order(all: { offset: number; data: Buffer }[]): { offset: number; data: Buffer }[] {
  const zero = (p: { data: Buffer }) => p.data.every((b) => b === 0);
  const data = all.filter((p) => !zero(p));
  for (let i = data.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [data[i], data[j]] = [data[j]!, data[i]!];
  }
  return [...data, ...all.filter(zero)];
}

function recordOf(order: { offset: number; data: Buffer }[], block = BLOCK): BlockRecord {
  const record = new BlockRecord(block);
  for (const piece of order) record.add(piece.offset, piece.data);
  record.check(SIZE); // the last, short block is complete once the image's size is known
  return record;
}

describe('BlockRecord', () => {
  it('the same image gives the same digest in any order, and counts only blocks that hold data', () => {
    const all = pieces();
    const inOrder = recordOf(all);
    const shuffled = recordOf(qcow2Order(all));
    expect(shuffled.digest()).toBe(inOrder.digest());
    expect(shuffled.dataBytes).toBe(inOrder.dataBytes);
    expect(inOrder.dataBytes).toBe(4096 + MiB + MiB + 4096 + 3584);
    const changed = all.map((p) => ({ ...p, data: Buffer.from(p.data) }));
    changed[2 * 256 + 3]!.data[7]! ^= 1;
    expect(recordOf(changed).digest()).not.toBe(inOrder.digest());
  });

  it("pieces smaller than a block, in the stream's order, fill it", () => {
    const all = pieces();
    const small = all.flatMap((p) => [
      { offset: p.offset, data: p.data.subarray(0, 100) },
      { offset: p.offset + 100, data: p.data.subarray(100) },
    ]);
    expect(recordOf(small, MAX_BLOCK).digest()).toBe(recordOf(all, MAX_BLOCK).digest());
  });

  it("a block's bytes out of order are the caller's bug, not the disk's", () => {
    const record = new BlockRecord(BLOCK);
    record.add(0, Buffer.alloc(100, 1));
    const error = (() => {
      try {
        record.add(200, Buffer.alloc(100, 1));
      } catch (e) {
        return e as ByoiError;
      }
    })();
    expect(error).toBeInstanceOf(ByoiError);
    expect(error!.code).toBe('internal-write-error');
    expect(error!.detail).toMatch(/block 0 written out of order/);
  });
});

describe.skipIf(skipWithout('root', 'loop', 'qemu-img', 'sgdisk'))('read-back verification, streaming', () => {
  let dir: string;
  let server: TestServer;
  const served = new Map<string, string>();

  beforeAll(async () => {
    assertCapable('root', 'loop', 'qemu-img', 'sgdisk');
    dir = mkdtempSync(join(tmpdir(), 'byoi-read-back-stream-'));
    server = await startServer();
    // A GPT image with data at 2 MiB and 10 MiB and zeros between, served raw, xz and qcow2 (by qemu-img).
    const raw = join(dir, 'image.raw');
    writeFileSync(raw, Buffer.alloc(16 * MiB));
    execFileSync('sgdisk', ['-n', '1:2048:0', '-t', '1:8300', raw], { stdio: 'ignore' });
    const bytes = readFileSync(raw);
    randomBytes(MiB).copy(bytes, 2 * MiB);
    randomBytes(MiB + 4096).copy(bytes, 10 * MiB);
    writeFileSync(raw, bytes);
    execFileSync('sh', ['-c', 'xz -T1 -c < "$1" > "$2"', 'sh', raw, join(dir, 'image.raw.xz')]);
    execFileSync('qemu-img', [
      'convert',
      '-f',
      'raw',
      '-O',
      'qcow2',
      '-o',
      'cluster_size=4096',
      raw,
      join(dir, 'image.qcow2'),
    ]);
    for (const name of ['image.raw.xz', 'image.qcow2']) {
      served.set(name, sha256OfFile(join(dir, name)));
      server.serve(`/${name}`, { body: readFileSync(join(dir, name)) });
    }
  });
  afterEach(() => detachAllLoops());
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The pieces written out of guest order by the stream writer onto a garbage-filled loop device. */
  async function written(): Promise<{ file: string; device: string; record: BlockRecord; size: number }> {
    const file = join(dir, `disk-${randomBytes(4).toString('hex')}`);
    const device = garbageLoop(file);
    const all = pieces();
    const writer = await StreamWriter.open(device, 24 * MiB);
    const record = new BlockRecord(BLOCK);
    for (const piece of qcow2Order(all)) {
      await writer.write(piece.offset, piece.data);
      record.add(piece.offset, piece.data);
    }
    await writer.finish();
    return { file, device, record, size: writer.written };
  }

  it('passes on what was written, read around the page cache', async () => {
    const { device, record, size } = await written();
    const result = await verifyReadBack(device, size, record);
    expect(result).toEqual({ digest: record.digest(), bytesRead: size, direct: true });
  });

  for (const [where, offset, detail] of [
    ['a data byte', 10 * MiB + 77, /the data read back has digest [0-9a-f]{64}, the data written [0-9a-f]{64}/],
    ['a byte of the held-back first MiB', 300, /the data read back has digest/],
    ['a byte of a zero run', 6 * MiB + 5, new RegExp(`byte ${6 * MiB + 5} should read as zero`)],
  ] as const) {
    it(`fails when ${where} changed on the disk`, async () => {
      await expectReadBackCatches(await written(), offset, detail);
    });
  }

  for (const [name, type] of [
    ['image.raw.xz', 'raw'],
    ['image.qcow2', 'qcow2'],
  ] as const) {
    it(`\`byoi deploy --stream --verify-write\` of ${name} reads the disk back and says so`, async () => {
      const device = garbageLoop(join(dir, `deploy-disk-${type}`));
      const result = await byoi([
        'deploy',
        '--stream',
        '--url',
        `${server.url}/${name}`,
        '--type',
        type,
        '--checksum',
        served.get(name)!,
        '--checksum-type',
        'sha256',
        '--disk',
        device,
        '--no-reboot',
        '--verify-write',
      ]);
      expect(result.exitCode, result.lastLine).toBe(0);
      const lines = jsonLines(result.stderr);
      const phase = lines.find((l) => l.phase === 'read-back' && l.sha256);
      expect(phase).toMatchObject({ direct: true, dataBytes: expect.any(Number) });
      // The data blocks: the GPT's, and the two runs of random data (4 KiB blocks for this qcow2, 64 KiB for raw).
      expect(phase!.dataBytes as number).toBeGreaterThanOrEqual(2 * MiB + 4096);
      expect(phase!.dataBytes as number).toBeLessThan(3 * MiB);
      // Read back after the first MiB was written, before the partitions were fixed up.
      const order = lines.map((l) => l.phase);
      expect(order.indexOf('read-back')).toBeGreaterThan(order.lastIndexOf('write'));
      expect(order.indexOf('read-back')).toBeLessThan(order.indexOf('partitions'));
    });
  }
});
