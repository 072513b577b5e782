// qcow2 decoded as it is downloaded, for the streaming mode. It works when every table precedes
// the clusters it maps, as `qemu-img convert` lays images out: header, L1 table, then each L2
// table ahead of its data clusters. Bytes are wanted by offset as the tables that name them go
// by; a table that names a cluster the stream has already passed is refused, naming the mode.
// Guest clusters that no table maps (or that read as zeros) are written as zeros at the end. With
// extended L2 entries, a cluster whose subclusters are only partly allocated is emitted whole, its
// other subclusters as zeros.
import {
  imageFormatMismatch,
  qcow2BadCompressedCluster,
  qcow2CompressedWithBitmap,
  qcow2BeyondEnd,
  qcow2GuestData,
  qcow2Misaligned,
  qcow2V2ZeroFlag,
  streamingUnsupported,
} from '../errors.ts';
import { bufferSource } from '../formats/guest.ts';
import { detectFormat } from '../formats/detect.ts';
import { decodeClusterHere } from '../formats/batch-decoder.ts';
import { parseQcow2Header, type Qcow2Header } from '../formats/qcow2-header.ts';
import { allocatedSubclusters, bitOf, SUBCLUSTERS } from '../formats/qcow2-map.ts';
import type { ImageSource } from '../source/image-source.ts';

const OFFSET_MASK = 0x00fffffffffffe00n;
const ZEROS = Buffer.alloc(1024 * 1024);
/** Guest clusters tracked, one bit each (written or not): 32 MiB at most. */
const MAX_CLUSTERS = 2 ** 28;

export interface Piece {
  readonly offset: number;
  readonly data: Buffer;
}

/** A byte range of the file that a table named, and what to do with it once it is all here. */
interface Want {
  readonly start: number;
  readonly end: number;
  readonly seq: number;
  readonly done: (bytes: Buffer, complete: boolean) => void;
  buffer?: Buffer;
  filled?: number;
}

/** A min-heap of wants by start offset (then by the order they were named). */
class Wants {
  private readonly heap: Want[] = [];
  get size(): number {
    return this.heap.length;
  }
  peek(): Want | undefined {
    return this.heap[0];
  }
  push(want: Want): void {
    const h = this.heap;
    h.push(want);
    for (let i = h.length - 1; i > 0;) {
      const parent = (i - 1) >> 1;
      if (!before(h[i]!, h[parent]!)) break;
      [h[i], h[parent]] = [h[parent]!, h[i]!];
      i = parent;
    }
  }
  pop(): Want | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (h.length > 0 && last) {
      h[0] = last;
      for (let i = 0; ;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && before(h[l]!, h[m]!)) m = l;
        if (r < h.length && before(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}

const before = (a: Want, b: Want): boolean => a.start < b.start || (a.start === b.start && a.seq < b.seq);

export interface StreamedQcow2 {
  readonly virtualSize: number;
  /** Every piece starts on a cluster (the zeros at the end too). */
  readonly clusterSize: number;
  /** The disk's pieces at their guest offsets, in file order, then zeros for what no table mapped. */
  readonly pieces: AsyncIterable<Piece>;
}

/** The first bytes of the body (its header cluster), and the body again from its start. */
async function peekHeader(body: AsyncIterable<Buffer>): Promise<{ head: Buffer; all: AsyncIterable<Buffer> }> {
  const iterator = body[Symbol.asyncIterator]();
  const seen: Buffer[] = [];
  let length = 0;
  let wanted = 4096;
  while (length < wanted) {
    const next = await iterator.next();
    if (next.done) break;
    seen.push(next.value);
    length += next.value.length;
    // Cluster 0 holds the header and its extensions: up to 2 MiB.
    if (length >= 24)
      wanted = Math.min(2 ** Math.min(21, Math.max(9, Buffer.concat(seen).readUInt32BE(20))), 2 * 1024 * 1024);
  }
  async function* all(): AsyncGenerator<Buffer> {
    yield* seen;
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
  }
  return { head: Buffer.concat(seen), all: all() };
}

const outOfOrder = () =>
  streamingUnsupported(
    'a qcow2 image whose tables do not all precede the clusters they map (qemu-img convert -O qcow2 lays them out so)',
  );

/** Opens a qcow2 stream: reads its header cluster; refuses what the mode cannot decode. */
export async function qcow2StreamPieces(body: AsyncIterable<Buffer>, length: number | null): Promise<StreamedQcow2> {
  const { head, all } = await peekHeader(body);
  const fileSize = length ?? Number.MAX_SAFE_INTEGER;
  const source: ImageSource = {
    size: fileSize,
    read: (offset, n) => {
      if (offset + n > head.length) throw qcow2BeyondEnd('the header', offset, head.length);
      return head.subarray(offset, offset + n);
    },
  };
  const detected = detectFormat(bufferSource(head));
  if (detected.format !== 'qcow2')
    throw imageFormatMismatch(
      detected.format === 'vmdk' || detected.format === 'tar' ? detected.format : 'raw',
      'qcow2',
      detected.description,
    );
  const header = parseQcow2Header(source);
  if (header.virtualSize / header.clusterSize > MAX_CLUSTERS)
    throw streamingUnsupported(
      `a qcow2 image of more than ${MAX_CLUSTERS} clusters (${header.clusterSize}-byte clusters)`,
    );
  return { virtualSize: header.virtualSize, clusterSize: header.clusterSize, pieces: decode(all, header) };
}

async function* decode(body: AsyncIterable<Buffer>, header: Qcow2Header): AsyncGenerator<Piece> {
  const { clusterSize, clusterBits, l2Entries, virtualSize, version, compression } = header;
  const wants = new Wants();
  const active: Want[] = [];
  const out: Piece[] = [];
  const clusters = Math.ceil(virtualSize / clusterSize);
  const written = new Uint8Array(Math.ceil(clusters / 8));
  const isWritten = (c: number): boolean => (written[c >> 3]! & (1 << (c & 7))) !== 0;
  let seq = 0;
  /** Where the stream has got to: a want that starts before it was named too late. */
  let position = 0;
  const want = (start: number, end: number, done: Want['done']): void => {
    if (start < position) throw outOfOrder();
    wants.push({ start, end, seq: seq++, done });
  };
  const emit = (guest: number, data: Buffer): void => {
    const c = guest / clusterSize;
    written[c >> 3]! |= 1 << (c & 7);
    out.push({ offset: guest, data });
  };

  const entrySize = header.extendedL2 ? 16 : 8;
  const subclusterSize = clusterSize / SUBCLUSTERS;

  /** A standard cluster with extended L2 entries: its allocated subclusters' bytes, zeros elsewhere. */
  const subclusters = (table: Buffer, at: number, guest: number, host: number, inGuest: number): void => {
    // Nothing allocated reads as zeros (zero flags, or unallocated): written at the end.
    const end = allocatedSubclusters(table, at, guest, host, inGuest, subclusterSize)?.end ?? 0;
    if (end === 0) return; // or only subclusters past the guest's end
    const allocWord = table.readUInt32BE(at + 12);
    const bits = Buffer.from(table.subarray(at + 12, at + 16)); // the table's buffer is not kept
    want(host, host + end, (bytes, complete) => {
      if (!complete) throw qcow2BeyondEnd(qcow2GuestData(guest), host, position);
      if (end === inGuest && allocWord === 0xffffffff) return emit(guest, bytes);
      const cluster = Buffer.alloc(inGuest);
      for (let i = 0; i * subclusterSize < end; i++)
        if (bitOf(bits, 0, i))
          bytes.copy(cluster, i * subclusterSize, i * subclusterSize, Math.min((i + 1) * subclusterSize, end));
      emit(guest, cluster);
    });
  };

  const l2Table =
    (index: number) =>
    (table: Buffer): void => {
      for (let k = 0; k < l2Entries; k++) {
        const guest = (index * l2Entries + k) * clusterSize;
        if (guest >= virtualSize) break;
        const inGuest = Math.min(clusterSize, virtualSize - guest);
        const at = entrySize * k;
        const entry = table.readBigUInt64BE(at);
        if ((entry >> 62n) & 1n) {
          if (header.extendedL2 && table.readBigUInt64BE(at + 8) !== 0n) throw qcow2CompressedWithBitmap(guest);
          const x = 62n - BigInt(clusterBits - 8);
          const coffset = Number(entry & ((1n << x) - 1n));
          const sectors = Number((entry >> x) & ((1n << BigInt(clusterBits - 8)) - 1n)) + 1;
          const csize = sectors * 512 - (coffset % 512);
          // A compressed cluster whose last sectors run past the end of the file is decoded from
          // what is there, as qemu does (it zero-pads).
          want(coffset, coffset + csize, (bytes) => {
            const cluster = decodeClusterHere(compression, bytes, clusterSize);
            if (typeof cluster === 'string') throw qcow2BadCompressedCluster(guest, compression, clusterSize, cluster);
            emit(guest, cluster.subarray(0, inGuest));
          });
          continue;
        }
        const host = Number(entry & OFFSET_MASK);
        if (header.extendedL2) {
          if (host % clusterSize !== 0) throw qcow2Misaligned(qcow2GuestData(guest), host, clusterSize);
          subclusters(table, at, guest, host, inGuest);
          continue;
        }
        if (entry & 1n) {
          if (version === 2) throw qcow2V2ZeroFlag(guest);
          continue;
        }
        if (host === 0) continue;
        if (host % clusterSize !== 0) throw qcow2Misaligned(qcow2GuestData(guest), host, clusterSize);
        want(host, host + inGuest, (bytes, complete) => {
          if (!complete) throw qcow2BeyondEnd(qcow2GuestData(guest), host, position);
          emit(guest, bytes);
        });
      }
    };
  want(header.l1Offset, header.l1Offset + 8 * header.l1Needed, (l1, complete) => {
    if (!complete) throw qcow2BeyondEnd('the L1 table', header.l1Offset, position);
    for (let i = 0; i < header.l1Needed; i++) {
      const offset = Number(l1.readBigUInt64BE(8 * i) & OFFSET_MASK);
      if (offset === 0) continue;
      if (offset % clusterSize !== 0) throw qcow2Misaligned('the L2 table', offset, clusterSize);
      want(offset, offset + clusterSize, (table, whole) => {
        if (!whole) throw qcow2BeyondEnd('the L2 table', offset, position);
        l2Table(i)(table);
      });
    }
  });

  /** Hands `chunk` (file bytes [at, at + chunk.length)) to the wants it covers. */
  const feed = (chunk: Buffer, at: number): void => {
    const end = at + chunk.length;
    for (;;) {
      while (wants.size > 0 && wants.peek()!.start < end) {
        const next = wants.pop()!;
        next.buffer = Buffer.alloc(next.end - next.start);
        next.filled = 0;
        active.push(next);
      }
      let finished = false;
      for (let i = 0; i < active.length; i++) {
        const w = active[i]!;
        const from = Math.max(w.start + w.filled!, at);
        const to = Math.min(w.end, end);
        if (to > from) {
          chunk.copy(w.buffer!, from - w.start, from - at, to - at);
          w.filled = to - w.start;
        }
        if (w.start + w.filled! === w.end) {
          active.splice(i--, 1);
          // What this want names must lie after it: the stream is past its own end.
          position = Math.max(position, w.end);
          w.done(w.buffer!, true);
          finished = true;
        }
      }
      if (!finished) break;
    }
    position = end;
  };

  let at = 0;
  for await (const chunk of body) {
    feed(chunk, at);
    at += chunk.length;
    yield* out.splice(0);
  }
  // The end of the file: what is still wanted lies past it (a compressed cluster's last sectors may).
  for (const w of active.splice(0)) w.done(w.buffer!.subarray(0, w.filled!), false);
  yield* out.splice(0);
  const missing = wants.pop();
  if (missing) throw qcow2BeyondEnd('a cluster an L2 table maps', missing.start, at);
  // Zeros where no table mapped data (unallocated, zero flag): the disk's old bytes must not show.
  for (let c = 0; c < clusters;) {
    if (isWritten(c)) {
      c++;
      continue;
    }
    const start = c;
    while (c < clusters && !isWritten(c)) c++;
    for (
      let offset = start * clusterSize, end = Math.min(c * clusterSize, virtualSize);
      offset < end;
      offset += ZEROS.length
    ) {
      yield { offset, data: ZEROS.subarray(0, Math.min(ZEROS.length, end - offset)) };
    }
  }
}
