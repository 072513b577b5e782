// Follows the frames of a zstd file as its bytes go by (RFC 8878, section 3.1), reading only the
// frame and block headers: says at the end whether the file was one frame, several, or cut short.
// The streaming mode decodes one frame (Node's decoder stops there), so several are refused.

type Want = 'magic' | 'skippable-size' | 'descriptor' | 'block';

export class ZstdFrameWatch {
  /** Bytes seen so far. */
  private position = 0;
  /** Where the next header starts, and how many of its bytes are wanted. */
  private next = 0;
  private want: Want = 'magic';
  private wanted = 4;
  private held: number[] = [];
  private frames = 0;
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

  /** After the last byte: undefined for one whole frame, 'several', or what is wrong. */
  end(): string | undefined {
    if (this.problem !== undefined) return this.problem;
    if (this.want !== 'magic' || this.held.length > 0 || this.position !== this.next) return 'the zstd data ends early';
    return this.frames > 1 ? 'several' : undefined;
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
        this.frames++;
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
        return this.expect('magic', end + ((this.descriptor & 0x04) !== 0 ? 4 : 0), 4);
      }
    }
  }
}
