// Where the frames of a .zst file lie (RFC 8878, section 3.1): a file may hold several frames one
// after another (zstd -T, pzstd, or files joined with cat), and Node's zstd decoder stops at the
// end of the first. Each frame is walked block header by block header without decoding it, only
// as far as its decoder has been given bytes: decoding may start before the frame has arrived.
import type { ImageSource } from '../source/image-source.ts';

const FRAME_MAGIC = 0xfd2fb528;

/** What is wrong with a file's frame structure (not a failure to read it). */
export class ZstdStructureError extends Error {}

function u24le(bytes: Buffer): number {
  return bytes[0]! + bytes[1]! * 256 + bytes[2]! * 65536;
}

/** Bytes [at, at + length) of `source`; throws where it ends first. */
function need(source: ImageSource, at: number, length: number): Buffer {
  if (at + length > source.size) throw new ZstdStructureError('the zstd data ends early');
  return source.read(at, length);
}

/** Where the first frame at or after `at` starts, skippable frames passed over (source.size: none left). Throws a ZstdStructureError saying what is wrong. */
export function nextZstdFrame(source: ImageSource, at: number): number {
  while (at < source.size) {
    const magic = need(source, at, 4).readUInt32LE(0);
    if (magic < 0x184d2a50 || magic > 0x184d2a5f) break;
    at += 8 + need(source, at + 4, 4).readUInt32LE(0);
    if (at > source.size) throw new ZstdStructureError('the zstd data ends early');
  }
  return at;
}

/** One zstd frame, from its header, walked as far as asked (`walkTo`); throws a ZstdStructureError saying what is wrong. */
export class ZstdFrameWalk {
  readonly start: number;
  private walkedEnd: number | undefined;
  private readonly source: ImageSource;
  /** The next block header's offset. */
  private at: number;
  private readonly checksum: boolean;

  constructor(source: ImageSource, start: number) {
    this.source = source;
    this.start = start;
    if (need(source, start, 4).readUInt32LE(0) !== FRAME_MAGIC)
      throw new ZstdStructureError(`bad zstd data (no frame at offset ${start})`);
    const descriptor = need(source, start + 4, 1)[0]!;
    const singleSegment = (descriptor & 0x20) !== 0;
    const contentSizeBytes = [singleSegment ? 1 : 0, 2, 4, 8][descriptor >> 6]!;
    const dictionaryBytes = [0, 1, 2, 4][descriptor & 3]!;
    if ((descriptor & 0x08) !== 0) throw new ZstdStructureError('bad zstd data (a reserved bit is set)');
    this.checksum = (descriptor & 0x04) !== 0;
    this.at = start + 5 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
  }

  /** Where the frame ends, once its last block has been walked. */
  get end(): number | undefined {
    return this.walkedEnd;
  }

  /** Walks the blocks whose headers lie before `offset`: returns how far the frame's bytes are known (its end, once walked). */
  walkTo(offset: number): number {
    while (this.walkedEnd === undefined && this.at < offset) {
      const header = u24le(need(this.source, this.at, 3));
      const last = (header & 1) === 1;
      const type = (header >> 1) & 3;
      const size = header >> 3;
      if (type === 3) throw new ZstdStructureError(`bad zstd data (a reserved block type at offset ${this.at})`);
      this.at += 3 + (type === 1 ? 1 : size);
      if (last && this.checksum) this.at += 4;
      if (this.at > this.source.size) throw new ZstdStructureError('the zstd data ends early');
      if (last) this.walkedEnd = this.at;
    }
    return this.at;
  }
}
