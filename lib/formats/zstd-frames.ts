// Where the frames of a .zst file lie (RFC 8878, section 3.1): a file may hold several frames one
// after another (zstd -T, pzstd, or files joined with cat), and Node's zstd decoder stops at the
// end of the first. Each frame is walked block header by block header without decoding it.
import type { ImageSource } from './types.ts';

const FRAME_MAGIC = 0xfd2fb528;

function u24le(bytes: Buffer): number {
  return bytes[0]! + bytes[1]! * 256 + bytes[2]! * 65536;
}

/** [start, end) of each zstd frame in file order; skippable frames are left out. Throws an Error saying what is wrong. */
export function zstdFrames(source: ImageSource): (readonly [number, number])[] {
  const frames: (readonly [number, number])[] = [];
  const need = (at: number, length: number): Buffer => {
    if (at + length > source.size) throw new Error('the zstd data ends early');
    return source.read(at, length);
  };
  let at = 0;
  while (at < source.size) {
    const magic = need(at, 4).readUInt32LE(0);
    if (magic >= 0x184d2a50 && magic <= 0x184d2a5f) {
      at += 8 + need(at + 4, 4).readUInt32LE(0);
      if (at > source.size) throw new Error('the zstd data ends early');
      continue;
    }
    if (magic !== FRAME_MAGIC) throw new Error(`bad zstd data (no frame at offset ${at})`);
    const start = at;
    const descriptor = need(at + 4, 1)[0]!;
    const singleSegment = (descriptor & 0x20) !== 0;
    const contentSizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6]!;
    const dictionaryBytes = [0, 1, 2, 4][descriptor & 3]!;
    if ((descriptor & 0x08) !== 0) throw new Error('bad zstd data (a reserved bit is set)');
    at += 5 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
    for (;;) {
      const header = u24le(need(at, 3));
      const last = (header & 1) === 1;
      const type = (header >> 1) & 3;
      const size = header >> 3;
      if (type === 3) throw new Error(`bad zstd data (a reserved block type at offset ${at})`);
      at += 3 + (type === 1 ? 1 : size);
      if (at > source.size) throw new Error('the zstd data ends early');
      if (last) break;
    }
    if ((descriptor & 0x04) !== 0) at += 4;
    if (at > source.size) throw new Error('the zstd data ends early');
    frames.push([start, at]);
  }
  return frames;
}
