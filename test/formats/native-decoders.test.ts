// xz and bzip2 through the system's liblzma and libbz2 (native/stream-decoders.c), against the
// bundled decoders and the files' own bytes: streams made by the real tools (one block, many
// blocks, several streams end to end) decode to the same bytes both ways, and what is cut short,
// corrupt or followed by bytes that are no stream is refused both ways. In CI the native decoders
// must load: there a fallback to the bundled ones would hide a broken build.
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { beforeAll, describe, expect, it } from 'vitest';
import { DecompressError, decompressedChunks, type DecoderChoice } from '../../lib/formats/decompress.ts';
import { nativeDecoders } from '../../lib/formats/native-decoders.ts';
import type { ImageSource } from '../../lib/source/image-source.ts';

const MiB = 1024 * 1024;
const choices: DecoderChoice[] = ['native', 'bundled'];
let disk: Buffer;

function sourceOf(bytes: Buffer): ImageSource {
  return { size: bytes.length, read: (offset, length) => bytes.subarray(offset, offset + length) };
}

function tool(command: string, args: string[], input: Buffer): Buffer {
  return execFileSync(command, args, { input, maxBuffer: 1 << 30 });
}

/** sha256 of what the chosen decoders make of `bytes`, or the DecompressError's message. */
async function decode(bytes: Buffer, format: 'xz' | 'bzip2', choice: DecoderChoice): Promise<string> {
  const hash = createHash('sha256');
  try {
    for await (const chunk of decompressedChunks(sourceOf(bytes), format, choice)) hash.update(chunk);
  } catch (error) {
    if (error instanceof DecompressError) return `refused: ${error.message}`;
    throw error;
  }
  return hash.digest('hex');
}

const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

const loads = nativeDecoders() !== null;

// Outside CI, skipped where scripts/setup.sh has not built them (xz and bzip2 come from it too).
describe.skipIf(!loads && !process.env.CI)('xz and bzip2: the native decoders', () => {
  beforeAll(() => {
    // Random data between zero runs: 6 MiB, several of xz's 1 MiB blocks and bzip2's 100 kB ones.
    disk = Buffer.alloc(6 * MiB);
    for (const at of [0, 2 * MiB + 4096, 5 * MiB - 777]) randomBytes(600 * 1024).copy(disk, at);
  });

  it('load here (in CI, they must)', () => {
    expect(nativeDecoders()).not.toBeNull();
  });

  const made: Record<string, () => { format: 'xz' | 'bzip2'; bytes: Buffer; decoded: Buffer }> = {
    'xz, one block': () => ({ format: 'xz', bytes: tool('xz', ['-1', '-T1', '-c'], disk), decoded: disk }),
    'xz, many blocks (xz -T2 --block-size)': () => ({
      format: 'xz',
      bytes: tool('xz', ['-1', '-T2', '--block-size=1MiB', '-c'], disk),
      decoded: disk,
    }),
    'xz, two streams with padding between': () => {
      const one = tool('xz', ['-1', '-T1', '-c'], disk);
      return {
        format: 'xz',
        bytes: Buffer.concat([one, Buffer.alloc(8), one]),
        decoded: Buffer.concat([disk, disk]),
      };
    },
    'bzip2, one stream': () => ({ format: 'bzip2', bytes: tool('bzip2', ['-1', '-c'], disk), decoded: disk }),
    'bzip2, two streams end to end': () => {
      const one = tool('bzip2', ['-1', '-c'], disk);
      return { format: 'bzip2', bytes: Buffer.concat([one, one]), decoded: Buffer.concat([disk, disk]) };
    },
  };

  it.each(Object.keys(made))('%s: decodes to the same bytes both ways', async (name) => {
    const { format, bytes, decoded } = made[name]!();
    for (const choice of choices) expect(await decode(bytes, format, choice)).toBe(sha256(decoded));
  });

  it.each(['xz', 'bzip2'] as const)('%s: a stream cut short is refused both ways', async (format) => {
    const whole = tool(format, format === 'xz' ? ['-1', '-T1', '-c'] : ['-1', '-c'], disk);
    const cut = whole.subarray(0, Math.floor(whole.length * 0.7));
    // liblzma reads the stream from its start and finds its end missing.
    expect(await decode(cut, format, 'native')).toBe(`refused: the ${format} data ends early`);
    expect(await decode(cut, format, 'bundled')).toMatch(/^refused: /);
  });

  it.each(['xz', 'bzip2'] as const)('%s: a corrupt byte is refused both ways', async (format) => {
    const bytes = tool(format, format === 'xz' ? ['-1', '-T1', '-c'] : ['-1', '-c'], disk);
    bytes[Math.floor(bytes.length / 2)]! ^= 0x5a;
    expect(await decode(bytes, format, 'native')).toBe(`refused: corrupt ${format} data`);
    expect(await decode(bytes, format, 'bundled')).toMatch(/^refused: /);
  });

  it('xz: stream padding that is not a multiple of four bytes is refused both ways', async () => {
    const one = tool('xz', ['-1', '-T1', '-c'], disk);
    for (const bytes of [Buffer.concat([one, Buffer.alloc(6), one]), Buffer.concat([one, Buffer.alloc(3)])]) {
      expect(await decode(bytes, 'xz', 'native')).toMatch(/^refused: bad xz data \(\d bytes of stream padding/);
      expect(await decode(bytes, 'xz', 'bundled')).toMatch(/^refused: /);
    }
    // Padding in fours is stream padding, at the end as between streams, across input windows too.
    expect(await decode(Buffer.concat([one, Buffer.alloc(12)]), 'xz', 'native')).toBe(sha256(disk));
    const long = Buffer.concat([one, Buffer.alloc(3 * MiB + 4), one]);
    expect(await decode(long, 'xz', 'native')).toBe(sha256(Buffer.concat([disk, disk])));
    expect(await decode(Buffer.concat([one, Buffer.alloc(3 * MiB + 2)]), 'xz', 'native')).toBe(
      `refused: bad xz data (${3 * MiB + 2} bytes of stream padding: not a multiple of four)`,
    );
  });

  it.each(['xz', 'bzip2'] as const)(
    '%s: a read that fails is passed on as it is, no refusal, both ways',
    async (format) => {
      const bytes = tool(format, format === 'xz' ? ['-1', '-T1', '-c'] : ['-1', '-c'], disk);
      const failure = new Error('the disk is gone');
      const source: ImageSource = {
        size: bytes.length,
        read: (offset, length) => {
          if (offset + length > bytes.length / 2) throw failure;
          return bytes.subarray(offset, offset + length);
        },
      };
      for (const choice of choices) {
        const decoding = (async () => {
          for await (const chunk of decompressedChunks(source, format, choice)) expect(chunk.length).toBeGreaterThan(0);
        })();
        await expect(decoding).rejects.toBe(failure);
      }
    },
  );

  it('bzip2: bytes after a stream that are no stream are refused both ways', async () => {
    const bytes = Buffer.concat([tool('bzip2', ['-1', '-c'], disk), Buffer.from('not a stream')]);
    expect(await decode(bytes, 'bzip2', 'native')).toBe('refused: bad bzip2 data (not a bzip2 stream)');
    expect(await decode(bytes, 'bzip2', 'bundled')).toMatch(/^refused: /);
  });

  it('bzip2: a file of many one-byte streams makes full chunks and leaves the event loop its turns', async () => {
    const one = tool('bzip2', ['-c'], Buffer.from('b'));
    const count = 200_000;
    const file = Buffer.concat(Array.from({ length: count }, () => one));
    let ticks = 0;
    const ticking = setInterval(() => ticks++, 5);
    const chunks: number[] = [];
    try {
      for await (const chunk of decompressedChunks(sourceOf(file), 'bzip2', 'native')) {
        chunks.push(chunk.length);
        expect(chunk.every((byte) => byte === 0x62)).toBe(true);
      }
    } finally {
      clearInterval(ticking);
    }
    expect(chunks).toEqual([count]); // one chunk, not one per stream
    expect(ticks).toBeGreaterThan(0);
  });

  it('xz: a check of a kind the decoder cannot verify (a reserved id) is refused, not skipped', async () => {
    const bytes = tool('xz', ['-1', '-T1', '--check=crc32', '-c'], disk.subarray(0, MiB));
    // Check id 1 (CRC32) to 2 (reserved, also 4 bytes) in the stream header's and footer's flags,
    // their CRC32s made right again: the structure stays sound.
    bytes[7] = 0x02;
    bytes.writeUInt32LE(crc32(bytes.subarray(6, 8)), 8);
    const footer = bytes.length - 12;
    bytes[footer + 9] = 0x02;
    bytes.writeUInt32LE(crc32(bytes.subarray(footer + 4, footer + 10)), footer);
    expect(await decode(bytes, 'xz', 'native')).toBe(
      'refused: an xz integrity check of a kind this decoder cannot verify',
    );
  });

  it('xz: a stream whose dictionary needs more memory than the limit is refused, saying so', async () => {
    const bytes = tool('xz', ['-1', '-T1', '-c'], disk.subarray(0, MiB));
    // The first block header's LZMA2 dictionary byte (after its flags, filter id 0x21 and a
    // properties size of 1) set to 40: 4 GiB, then the header's CRC32 made right again.
    const header = 12;
    const size = (bytes[header]! + 1) * 4;
    const props = bytes.indexOf(Buffer.from([0x21, 0x01]), header) + 2;
    expect(props).toBeGreaterThan(header);
    expect(props).toBeLessThan(header + size - 4);
    bytes[props] = 40;
    bytes.writeUInt32LE(crc32(bytes.subarray(header, header + size - 4)), header + size - 4);
    expect(await decode(bytes, 'xz', 'native')).toBe(
      'refused: the xz data needs more than 512 MiB of memory to decode',
    );
  });
});

/** CRC-32 (IEEE), as xz's headers use. */
function crc32(bytes: Buffer): number {
  let crc = 0xffffffff;
  for (const byte of bytes) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
