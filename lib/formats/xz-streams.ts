// Where the streams of an .xz file lie, read backwards from its end through each stream's footer
// and index (the .xz file format, sections 2.1 and 4): a file may hold several streams one after
// another, with zero padding between them, and a decoder of one stream stops at its end.
import type { ImageSource } from '../source/image-source.ts';

const HEADER_MAGIC = Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]);
const FOOTER_MAGIC = 'YZ';
const HEADER = 12;
const FOOTER = 12;

export interface XzStream {
  readonly start: number;
  readonly end: number;
  /** Uncompressed bytes the stream's index declares (the decoder checks it against the blocks). */
  readonly declared: number;
}

/** Reads a multibyte integer (7 bits a byte, at most 9 bytes) at `at`; returns it and the next offset. */
function varint(bytes: Buffer, at: number): [number, number] {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    if (at + i >= bytes.length) throw new Error('bad xz index (it ends inside a number)');
    const byte = bytes[at + i]!;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) {
      if (!Number.isSafeInteger(value)) throw new Error('bad xz index (a size above 2^53)');
      return [value, at + i + 1];
    }
  }
  throw new Error('bad xz index (a number longer than 9 bytes)');
}

/** The streams in file order; throws an Error saying what is wrong with the file's structure. */
export function xzStreamRanges(source: ImageSource): XzStream[] {
  const streams: XzStream[] = [];
  let end = source.size;
  while (end > 0) {
    // Stream padding: zero bytes in groups of four, after a stream.
    while (end >= 4 && source.read(end - 4, 4).readUInt32LE(0) === 0) end -= 4;
    if (end < HEADER + FOOTER) throw new Error('bad xz data (no stream footer at its end: truncated?)');
    const footer = source.read(end - FOOTER, FOOTER);
    if (footer.toString('latin1', 10, 12) !== FOOTER_MAGIC)
      throw new Error('bad xz data (no stream footer at its end: truncated?)');
    const indexSize = (footer.readUInt32LE(4) + 1) * 4;
    const indexStart = end - FOOTER - indexSize;
    if (indexStart < HEADER) throw new Error('bad xz data (its index lies before the start of the file)');
    const index = source.read(indexStart, indexSize);
    if (index[0] !== 0) throw new Error('bad xz index (no index indicator)');
    let [records, at] = varint(index, 1);
    if (records > indexSize / 2) throw new Error('bad xz index (more records than it has room for)');
    let blocks = 0;
    let declared = 0;
    for (; records > 0; records--) {
      let unpadded: number;
      let uncompressed: number;
      [unpadded, at] = varint(index, at);
      [uncompressed, at] = varint(index, at);
      blocks += Math.ceil(unpadded / 4) * 4;
      declared += uncompressed;
    }
    if (at > indexSize - 4) throw new Error('bad xz index (its records overrun it)');
    const start = indexStart - blocks - HEADER;
    if (start < 0 || !source.read(start, HEADER_MAGIC.length).equals(HEADER_MAGIC)) {
      throw new Error('bad xz data (its index does not lead back to a stream header)');
    }
    if (!Number.isSafeInteger(declared)) throw new Error('bad xz index (a size above 2^53)');
    streams.unshift({ start, end, declared });
    end = start;
  }
  return streams;
}

/** [start, end) of each stream, in file order. */
export function xzStreams(source: ImageSource): (readonly [number, number])[] {
  return xzStreamRanges(source).map(({ start, end }) => [start, end] as const);
}
