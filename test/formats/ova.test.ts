// OVAs assembled by tar around an OVF and a sha256sum/sha1sum manifest, holding disks made by
// qemu-img: the boot disk decoded byte for byte as `qemu-img convert -O raw` decodes it, and the
// refusals (lying manifest, missing disk, disk of another format, ambiguous boot disk, truncation).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedBuffer } from '../../lib/source/chunked-buffer.ts';
import { FileSource } from '../../lib/source/file-source.ts';
import { ByoiError } from '../../lib/errors.ts';
import { openImage } from '../../lib/formats/open.ts';
import type { ImageSource } from '../../lib/source/image-source.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { cli } from '../helpers/convert.ts';
import { decodeToSha256 } from '../helpers/decode.ts';
import { makeOva, ovfText, type OvaDisk } from '../helpers/ova-fixtures.ts';
import { makeSmallDisk, makeVmdk, qemuRaw } from '../helpers/vmdk-fixtures.ts';

const CAPACITY = 5 * 1024 * 1024 + 1536;
let dir: string;
let rawSha: string;
let stream: OvaDisk;
let sparse: OvaDisk;
let qcow2: OvaDisk;
let gptRaw: OvaDisk;
let dataDisk: OvaDisk;

function sourceOf(path: string): ChunkedBuffer {
  const source = new ChunkedBuffer(64 * 1024);
  source.append(readFileSync(path));
  return source;
}

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

function refusal(path: string): string {
  try {
    openImage(sourceOf(path), 'ova');
  } catch (error) {
    expect(error).toBeInstanceOf(ByoiError);
    expect((error as ByoiError).kind).toBe('refused-image');
    return (error as Error).message;
  }
  throw new Error('the OVA was not refused');
}

describe.skipIf(skipWithout('qemu-img', 'sgdisk'))('OVA', () => {
  beforeAll(() => {
    assertCapable('qemu-img', 'sgdisk');
    dir = mkdtempSync(join(tmpdir(), 'byoi-ova-'));
    const raw = join(dir, 'disk.raw');
    makeSmallDisk(raw);
    rawSha = sha256(qemuRaw(raw, join(dir, 'reference.raw'), 'raw'));
    stream = { path: makeVmdk(raw, join(dir, 'disk1.vmdk'), 'streamOptimized'), capacity: CAPACITY, address: '0' };
    sparse = {
      path: makeVmdk(raw, join(dir, 'sparse.vmdk'), 'monolithicSparse'),
      capacity: CAPACITY,
      format: 'http://www.vmware.com/interfaces/specifications/vmdk.html#sparse',
    };
    const q = join(dir, 'disk.qcow2');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', '-c', raw, q]);
    qcow2 = { path: q, capacity: CAPACITY, format: 'http://www.gnome.org/~markmc/qcow-image-format.html' };
    const g = join(dir, 'gpt.img');
    execFileSync('truncate', ['-s', '4M', g]);
    execFileSync('sgdisk', ['-n1:2048:0', g], { stdio: 'ignore' });
    gptRaw = {
      path: g,
      capacity: 4 * 1024 * 1024,
      format: 'http://www.vmware.com/interfaces/specifications/vmdk.html#raw',
    };
    const other = join(dir, 'data.raw');
    writeFileSync(other, Buffer.alloc(1024 * 1024, 7));
    dataDisk = {
      path: makeVmdk(other, join(dir, 'data.vmdk'), 'streamOptimized'),
      capacity: 1024 * 1024,
      address: '1',
    };
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['streamOptimized VMDK, sha256 manifest', () => makeOva(dir, 'stream', [stream])],
    ['monolithicSparse VMDK, sha1 manifest', () => makeOva(dir, 'sparse', [sparse], { manifest: 'sha1' })],
    ['compressed qcow2, no manifest', () => makeOva(dir, 'qcow2', [qcow2], { manifest: false })],
    [
      'VirtualBox spellings (HostResource /disk/..., "SHA256 (name) = digest")',
      () => makeOva(dir, 'vbox', [stream], { style: 'virtualbox' }),
    ],
    ['the boot disk and a data disk', () => makeOva(dir, 'two', [stream, dataDisk])],
    ['the data disk listed first, the boot disk at unit 0', () => makeOva(dir, 'two-reversed', [dataDisk, stream])],
  ])('%s: the boot disk decodes as qemu-img convert -O raw', async (_name, make) => {
    const ova = make();
    const image = openImage(sourceOf(ova), 'ova');
    expect(image.info.format).toBe('ova');
    expect(image.info.virtualSize).toBe(CAPACITY);
    expect((await decodeToSha256(image)).sha256).toBe(rawSha);
  });

  it('reads pax and GNU tar layouts, found by content with --type auto', async () => {
    for (const format of ['pax', 'gnu']) {
      const ova = makeOva(dir, `layout-${format}`, [stream]);
      const members = execFileSync('tar', ['-tf', ova], { encoding: 'utf8' }).trim().split('\n');
      const relaid = join(dir, `relaid-${format}.ova`);
      execFileSync('tar', [`--format=${format}`, '-cf', relaid, '-C', join(dir, `layout-${format}.d`), ...members]);
      expect((await decodeToSha256(openImage(sourceOf(relaid), 'auto'))).sha256).toBe(rawSha);
    }
  });

  it('a raw disk inside an OVA', async () => {
    const image = openImage(sourceOf(makeOva(dir, 'raw', [gptRaw])), 'ova');
    expect(image.info.features.diskFormat).toBe('raw');
    expect((await decodeToSha256(image)).sha256).toBe(sha256(gptRaw.path));
  });

  it('byoi inspect and byoi convert take an OVA', async () => {
    const ova = makeOva(dir, 'cli', [stream]);
    const inspect = await cli('inspect', '--json', ova);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(JSON.parse(inspect.stdout)).toMatchObject({
      format: 'ova',
      virtualSize: CAPACITY,
      compression: 'zlib',
      features: { diskFormat: 'vmdk', disk: 'disk1.vmdk', manifest: 'verified', createType: 'streamOptimized' },
    });
    const target = join(dir, 'cli.raw');
    const convert = await cli('convert', ova, target);
    expect(convert.code, convert.stderr).toBe(0);
    expect(sha256(target)).toBe(rawSha);
  });

  it("checks the manifest's digests in memory lent by a file source, each window given back", () => {
    const file = new FileSource(makeOva(dir, 'lent', [stream]));
    try {
      const lent = new Set<Buffer>();
      let freshBytes = 0;
      const counting: ImageSource = {
        size: file.size,
        chunkSize: file.chunkSize,
        read: (offset, length) => {
          freshBytes += length;
          return file.read(offset, length);
        },
        lend: (offset, length) => {
          const bytes = file.lend(offset, length);
          lent.add(bytes);
          return bytes;
        },
        recycle: (bytes) => {
          lent.delete(bytes);
          file.recycle(bytes);
        },
      };
      const image = openImage(counting, 'ova');
      expect(image.info.features.manifest).toBe('verified');
      expect(lent.size).toBe(0);
      // The disk's bytes (5 MiB of data, ~0.3 MiB as a stream) went through lends, not fresh reads.
      expect(freshBytes).toBeLessThan(64 * 1024);
    } finally {
      file.close();
    }
  });

  it('refuses a manifest that lies, naming the file', () => {
    const ova = makeOva(dir, 'lying', [stream]);
    const work = join(dir, 'lying.d');
    const manifest = readFileSync(join(work, 'lying.mf'), 'utf8').replace(
      /(disk1\.vmdk\)= )([0-9a-f])/,
      (_m, head: string, digit: string) => `${head}${digit === '0' ? '1' : '0'}`,
    );
    writeFileSync(join(work, 'lying.mf'), manifest);
    execFileSync('tar', ['--format=ustar', '-cf', ova, '-C', work, 'lying.ovf', 'lying.mf', 'disk1.vmdk']);
    expect(refusal(ova)).toMatch(
      /^Bad OVA image: its manifest gives SHA256 [0-9a-f]{64} for "disk1\.vmdk", the file has [0-9a-f]{64}\.$/,
    );
  });

  it('refuses an OVA whose boot disk is missing from the archive', () => {
    const ova = makeOva(dir, 'missing', [stream], { manifest: false });
    execFileSync('tar', ['--format=ustar', '-cf', ova, '-C', join(dir, 'missing.d'), 'missing.ovf']);
    expect(refusal(ova)).toBe('Bad OVA image: its boot disk file "disk1.vmdk" is not in the archive.');
  });

  it('refuses a boot disk of another format, saying what it is', () => {
    const vhd = join(dir, 'disk.vhd');
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', join(dir, 'disk.raw'), vhd]);
    const ova = makeOva(dir, 'vhd', [{ path: vhd, capacity: CAPACITY }]);
    expect(refusal(ova)).toMatch(
      /^Unsupported OVA image: its boot disk "disk\.vhd" is a file of unknown format; byoi reads VMDK/,
    );
  });

  it('refuses an OVF with several disks at the first unit of their controllers, naming them', () => {
    const ova = makeOva(dir, 'ambiguous', [stream, { ...dataDisk, address: '0' }]);
    expect(refusal(ova)).toBe(
      'Unsupported OVA image: its OVF attaches several disks as the first unit of a controller (vmdisk1, vmdisk2); byoi cannot tell which one boots.',
    );
  });

  it('refuses a truncated archive and a broken tar header', () => {
    const whole = readFileSync(makeOva(dir, 'cut', [stream]));
    const cut = join(dir, 'cut-short.ova');
    writeFileSync(cut, whole.subarray(0, whole.length - 20 * 1024 - 4096));
    expect(refusal(cut)).toMatch(/^Bad OVA image: member "disk1\.vmdk" of the tar archive runs past its end/);
    const broken = Buffer.from(whole);
    broken[3]! ^= 0x20; // the OVF member's name, under the header checksum
    const brokenPath = join(dir, 'broken.ova');
    writeFileSync(brokenPath, broken);
    expect(refusal(brokenPath)).toBe('Bad OVA image: the tar header at offset 0 has a wrong checksum.');
  });

  it('refuses an OVF that is not XML and one that lists no disk', () => {
    expect(refusal(makeOva(dir, 'not-xml', [stream], { ovf: '<Envelope><References>', manifest: false }))).toBe(
      'Bad OVA image: its OVF descriptor is not well-formed XML.',
    );
    const noDisk = ovfText([stream]).replace(/<DiskSection>[\s\S]*<\/DiskSection>/, '');
    expect(refusal(makeOva(dir, 'no-disk', [stream], { ovf: noDisk, manifest: false }))).toBe(
      'Bad OVA image: its OVF descriptor lists no disk.',
    );
  });

  it('refuses an OVA given as qcow2, and a VMDK given as an OVA, with the "does not match" sentence', () => {
    const ova = makeOva(dir, 'as-qcow2', [stream]);
    expect(() => openImage(sourceOf(ova), 'qcow2')).toThrow(
      'image provided format is ova which does not match expected qcow2 format',
    );
    expect(() => openImage(sourceOf(stream.path), 'ova')).toThrow(
      'image provided format is vmdk which does not match expected ova format',
    );
  });
});
