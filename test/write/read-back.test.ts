// Read-back verification: what the writer was given is hashed as it is written; the target read back
// around the page cache must give the same data and zeros elsewhere. A changed byte, in data or in
// a zero run, is a failed deployment; `byoi deploy --verify-write` runs it and reports it.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { verifyReadBack, WrittenRecord } from '../../lib/disk/read-back.ts';
import { writeImage } from '../../lib/write/write-image.ts';
import { openImage } from '../../lib/formats/open.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { byoi, sha256OfFile } from '../helpers/deploy.ts';
import { startServer, type TestServer } from '../helpers/http.ts';
import { detachAllLoops } from '../helpers/loop.ts';
import { expectReadBackCatches, jsonLines } from '../helpers/read-back.ts';
import { garbageLoop } from '../helpers/target-disk.ts';

const MiB = 1024 * 1024;

describe.skipIf(skipWithout('root', 'loop', 'qemu-img'))('read-back verification', () => {
  let dir: string;
  let qcow2: string;
  let server: TestServer;

  beforeAll(async () => {
    assertCapable('root', 'loop', 'qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-read-back-'));
    // A GPT image with data at 2 MiB and 10 MiB and zeros between, made by qemu-img.
    const raw = join(dir, 'image.raw');
    writeFileSync(raw, Buffer.alloc(16 * MiB));
    execFileSync('sh', ['-c', `printf 'label: gpt\\n,,L\\n' | sfdisk -q ${raw}`]);
    const bytes = readFileSync(raw);
    randomBytes(MiB).copy(bytes, 2 * MiB);
    randomBytes(MiB + 4096).copy(bytes, 10 * MiB);
    writeFileSync(raw, bytes);
    qcow2 = join(dir, 'image.qcow2');
    execFileSync('qemu-img', ['convert', '-O', 'qcow2', raw, qcow2]);
    server = await startServer();
    server.serve('/image.qcow2', { body: readFileSync(qcow2) });
  });
  afterEach(() => detachAllLoops());
  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function written(): Promise<{ file: string; device: string; record: WrittenRecord; size: number }> {
    const file = join(dir, `disk-${randomBytes(4).toString('hex')}`);
    const device = garbageLoop(file);
    const image = openImage(await ChunkedBuffer.fromFile(qcow2), 'qcow2');
    const record = new WrittenRecord();
    await writeImage(image, device, { onData: (offset, data) => record.add(offset, data) });
    return { file, device, record, size: image.info.virtualSize };
  }

  it('passes on what was written, read around the page cache', async () => {
    const { device, record, size } = await written();
    const result = await verifyReadBack(device, size, record);
    expect(result).toEqual({ digest: record.digest(), bytesRead: size, direct: true });
    expect(record.ranges[0]![0]).toBe(0);
    expect(record.dataBytes).toBeGreaterThanOrEqual(2 * MiB);
  });

  for (const [where, offset, detail] of [
    ['a data byte', 10 * MiB + 77, /the data read back has sha256 [0-9a-f]{64}, the data written [0-9a-f]{64}/],
    ['a byte of a zero run', 6 * MiB + 5, new RegExp(`byte ${6 * MiB + 5} should read as zero`)],
  ] as const) {
    it(`fails when ${where} changed on the disk`, async () => {
      await expectReadBackCatches(await written(), offset, detail);
    });
  }

  it('under an address-space limit (no aligned memory), reads the device with its cached pages dropped first', () => {
    // In a child under `ulimit -v`: the writes go through the page cache, which then holds what was
    // written; a byte changed behind it (in the loop device's backing file) must still be found.
    // The device's last close would drop that cache: another opener (udev probing it after the
    // writes, here the child itself) keeps it.
    const file = join(dir, `limited-${randomBytes(4).toString('hex')}`);
    const device = garbageLoop(file);
    const lib = (path: string) => JSON.stringify(join(import.meta.dirname, '../../lib', path));
    const script = `
      import { openSync, writeSync, closeSync } from 'node:fs';
      import { ChunkedBuffer } from ${lib('source/chunked-buffer.ts')};
      import { openImage } from ${lib('formats/open.ts')};
      import { verifyReadBack, WrittenRecord } from ${lib('disk/read-back.ts')};
      import { writeImage } from ${lib('write/write-image.ts')};
      const holder = openSync(${JSON.stringify(device)}, 'r');
      const image = openImage(await ChunkedBuffer.fromFile(${JSON.stringify(qcow2)}), 'qcow2');
      const record = new WrittenRecord();
      await writeImage(image, ${JSON.stringify(device)}, { onData: (offset, data) => record.add(offset, data) });
      const fd = openSync(${JSON.stringify(file)}, 'r+');
      writeSync(fd, Buffer.from([0x5a]), 0, 1, ${10 * MiB + 77});
      closeSync(fd);
      const outcome = await verifyReadBack(${JSON.stringify(device)}, image.info.virtualSize, record).then(
        (result) => ({ passed: result }),
        (error) => ({ failed: error.message, detail: error.detail }),
      );
      closeSync(holder);
      process.stdout.write(JSON.stringify(outcome));
    `;
    const out = execFileSync(
      'bash',
      ['-c', 'ulimit -v 20000000 && exec "$0" --input-type=module -e "$1"', process.execPath, script],
      {
        encoding: 'utf8',
      },
    );
    expect(JSON.parse(out)).toEqual({
      failed: 'The disk does not read back what was written: it may be failing.',
      detail: expect.stringMatching(/the data read back has sha256 [0-9a-f]{64}, the data written [0-9a-f]{64}/),
    });
  });

  it('`byoi deploy --verify-write` reads the disk back and says so', async () => {
    const device = garbageLoop(join(dir, 'deploy-disk'));
    const result = await byoi([
      'deploy',
      '--url',
      `${server.url}/image.qcow2`,
      '--type',
      'qcow2',
      '--checksum',
      sha256OfFile(qcow2),
      '--checksum-type',
      'sha256',
      '--disk',
      device,
      '--no-reboot',
      '--verify-write',
    ]);
    expect(result.exitCode, result.lastLine).toBe(0);
    const phase = jsonLines(result.stderr).find((l) => l.phase === 'read-back' && l.sha256);
    expect(phase).toMatchObject({ direct: true, dataBytes: expect.any(Number) });
  });
});
