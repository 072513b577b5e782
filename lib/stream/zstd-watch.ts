// Follows the frames of a zstd file as its bytes go by (RFC 8878, section 3.1), reading only the
// frame and block headers: where each frame starts and, once its last block header has gone by,
// where it ends (Node's decoder stops at the end of a frame, so each gets its own), and at the end
// whether the file was cut short.

type Want = 'magic' | 'skippable-size' | 'descriptor' | 'block';

/** A frame's extent in the file; `end` is known once its last block header has been read. */
export interface FrameExtent {
  readonly start: number;
  end: number | undefined;
}

export class ZstdFrameWatch {
  /** Bytes seen so far. */
  private position = 0;
  /** Where the next header starts, and how many of its bytes are wanted. */
  private next = 0;
  private want: Want = 'magic';
  private wanted = 4;
  private held: number[] = [];
  /** The (non-skippable) frames seen so far, in file order. */
  readonly frames: FrameExtent[] = [];
  private descriptor = 0;
  private problem: string | undefined;

  update(chunk: Buffer): void {
    let at = 0;
    while (this.problem === undefined && at < chunk.length) {
      const absolute = this.position + at;
      if (absolute < this.next) {
        at += Math.min(chunk.length - at, this.next - absolute);
        continue;
      }
      this.held.push(chunk[at]!);
      at++;
      if (this.held.length === this.wanted) this.parse(this.next + this.wanted);
    }
    this.position += chunk.length;
  }

  /** What is wrong with the bytes seen so far, if anything is. */
  get error(): string | undefined {
    return this.problem;
  }

  /** After the last byte: undefined when every frame was whole, else what is wrong. */
  end(): string | undefined {
    if (this.problem !== undefined) return this.problem;
    if (this.want !== 'magic' || this.held.length > 0 || this.position !== this.next) return 'the zstd data ends early';
    return this.frames.length === 0 ? 'no zstd frame' : undefined;
  }

  private expect(want: Want, at: number, bytes: number): void {
    this.want = want;
    this.next = at;
    this.wanted = bytes;
    this.held = [];
  }

  /** The wanted bytes are held; `after` is the offset just past them. */
  private parse(after: number): void {
    const b = this.held;
    switch (this.want) {
      case 'magic': {
        const magic = (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
        if (magic >= 0x184d2a50 && magic <= 0x184d2a5f) return this.expect('skippable-size', after, 4);
        if (magic !== 0xfd2fb528) {
          this.problem = `bad zstd data (no frame at offset ${after - 4})`;
          return;
        }
        this.frames.push({ start: after - 4, end: undefined });
        return this.expect('descriptor', after, 1);
      }
      case 'skippable-size':
        return this.expect('magic', after + ((b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0), 4);
      case 'descriptor': {
        const d = b[0]!;
        this.descriptor = d;
        const single = (d & 0x20) !== 0;
        const headerRest = (single ? 0 : 1) + [0, 1, 2, 4][d & 3]! + [single ? 1 : 0, 2, 4, 8][d >> 6]!;
        return this.expect('block', after + headerRest, 3);
      }
      case 'block': {
        const header = b[0]! | (b[1]! << 8) | (b[2]! << 16);
        const type = (header >> 1) & 3;
        if (type === 3) {
          this.problem = 'bad zstd data (a reserved block type)';
          return;
        }
        const end = after + (type === 1 ? 1 : header >>> 3);
        if ((header & 1) === 0) return this.expect('block', end, 3);
        const frameEnd = end + ((this.descriptor & 0x04) !== 0 ? 4 : 0);
        this.frames[this.frames.length - 1]!.end = frameEnd;
        return this.expect('magic', frameEnd, 4);
      }
    }
  }
}
