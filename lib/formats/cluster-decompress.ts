// One compressed qcow2 cluster (or VMDK grain) to exactly one cluster of bytes.
//
// `decompressCluster` and `decompressBatch` are self-contained on purpose (they use only their
// arguments, no imports or outer names): the worker pool runs the very same functions in worker
// threads from their source text, so there is one implementation and it survives bundling. Keep it
// that way.

/**
 * Clusters at least this large are handed on one by one, each in the buffer zlib or zstd made (no
 * copy); smaller ones are copied into one buffer per batch so extents stay large.
 */
export const OWN_BUFFER_CLUSTER_SIZE = 65536;
import type * as Zlib from 'node:zlib';

/** qcow2's codecs, and `deflate`: a VMDK grain. */
export type Codec = 'zlib' | 'zstd' | 'deflate';

/**
 * native/cluster-decoders.c: a batch decoded in one call by one kept decoder per thread, straight
 * into `output` (or checked and dropped: null), with decompressCluster's results. Undefined when
 * every input is one cluster; else the first that is not, and why.
 */
export interface ClusterDecoders {
  decodeClusters(
    codec: Codec,
    inputs: readonly Uint8Array[],
    clusterSize: number,
    output: Uint8Array | null,
  ): [index: number, reason: string] | undefined;
}

/**
 * Decompresses `input` (the sector-rounded bytes qemu stored, trailing garbage included) into
 * exactly `clusterSize` bytes. Returns the bytes, or why they are not one cluster.
 * - zlib: raw deflate with a 4 KiB window (qemu's windowBits -12). As in qemu, a stream that fills
 *   the cluster is accepted even if its end marker lies past the stored sectors.
 * - zstd: one or more frames, decoded until the cluster is full; the bytes after them are garbage.
 *   qemu writes one frame a cluster; more than 64 are refused: each costs a decoder call, so a
 *   cluster of thousands of empty frames would cost seconds to decode (an image made to be slow).
 *   Node's zstd rejects trailing bytes, so frame boundaries are found by walking the frame and
 *   block headers (RFC 8878 section 3.1.1).
 * - deflate: a VMDK grain, a zlib stream (RFC 1950: CM 8 and a header check) or raw deflate, with
 *   a full window. qemu and VMware write the former; the latter is taken as lib/formats/vmdk.ts does.
 * One flat function with no inner named functions: a bundler's keep-names mode would wrap those in
 * a helper that the worker's copy of this source does not have.
 */
export function decompressCluster(
  zlib: typeof Zlib,
  codec: Codec,
  input: Uint8Array,
  clusterSize: number,
): Buffer | string {
  try {
    if (codec === 'zlib') {
      const out = zlib.inflateRawSync(input, {
        windowBits: 12,
        // A little more than a cluster: zlib then stops with room to spare instead of allocating a
        // second, empty, output chunk for every cluster.
        chunkSize: clusterSize + 64,
        maxOutputLength: clusterSize,
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      });
      return out.length === clusterSize ? out : `it decompresses to ${out.length} bytes`;
    }
    if (codec === 'deflate') {
      const options = {
        chunkSize: clusterSize + 64,
        maxOutputLength: clusterSize,
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
      };
      const wrapped = input.length >= 2 && (input[0]! & 0x0f) === 8 && (input[0]! * 256 + input[1]!) % 31 === 0;
      const out = wrapped ? zlib.inflateSync(input, options) : zlib.inflateRawSync(input, options);
      return out.length === clusterSize ? out : `it inflates to ${out.length} bytes`;
    }
    const view = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
    const parts: Buffer[] = [];
    let produced = 0;
    let start = 0;
    let frames = 0;
    while (produced < clusterSize) {
      if (start >= view.length) return `it decompresses to ${produced} bytes`;
      if (start + 8 > view.length) return 'the data ends inside a frame header';
      const magic = view.readUInt32LE(start);
      if (Math.floor(magic / 16) === 0x184d2a5) {
        start += 8 + view.readUInt32LE(start + 4); // a skippable frame
        continue;
      }
      if (magic !== 0xfd2fb528) return 'no zstd frame where one should start';
      if (++frames > 64) return 'more than 64 zstd frames in one cluster';
      const descriptor = view[start + 4]!;
      if (descriptor & 0x08) return 'a zstd frame header has its reserved bit set';
      const singleSegment = (descriptor >> 5) & 1;
      const contentSizeBytes = [singleSegment, 2, 4, 8][descriptor >> 6]!;
      const dictionaryBytes = [0, 1, 2, 4][descriptor & 3]!;
      let end = start + 5 + (singleSegment ? 0 : 1) + dictionaryBytes + contentSizeBytes;
      for (let last = false; !last;) {
        if (end + 3 > view.length) return 'the data ends inside a zstd frame';
        const block = view[end]! + view[end + 1]! * 256 + view[end + 2]! * 65536;
        const type = (block >> 1) & 3;
        if (type === 3) return 'a zstd block has the reserved type';
        end += 3 + (type === 1 ? 1 : block >> 3);
        last = (block & 1) === 1;
      }
      if (descriptor & 0x04) end += 4;
      if (end > view.length) return 'the data ends inside a zstd frame';
      const out = zlib.zstdDecompressSync(view.subarray(start, end), {
        maxOutputLength: clusterSize - produced,
        chunkSize: clusterSize + 64,
      });
      parts.push(out);
      produced += out.length;
      start = end;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, clusterSize);
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE')
      return codec === 'deflate' ? 'it inflates to more' : 'it decompresses to more';
    return String((error as { message?: unknown }).message ?? error);
  }
}

/**
 * A batch of compressed clusters, decompressed in order: with `keep`, their bytes (copied one after
 * another into `into` when given; else small clusters packed into one buffer of their own, large
 * ones each in the buffer zlib or zstd made, from `ownBufferFrom` bytes on); without (a dry pass),
 * none; or the first that is not a cluster, and why. `decompress` is `decompressCluster`, passed in
 * so that this stays self-contained. A cluster's own buffer that is not handed on (checked only, or
 * copied) is freed at once, not left for the garbage collector, from Buffer.poolSize bytes on.
 * With `native` (the cluster decoders, where they load), the batch is decoded by them instead,
 * into `into` or one buffer of its own.
 */
export function decompressBatch(
  zlib: typeof Zlib,
  codec: Codec,
  inputs: readonly Uint8Array[],
  clusterSize: number,
  keep: boolean,
  decompress: typeof decompressCluster,
  ownBufferFrom: number,
  into?: Buffer,
  native?: ClusterDecoders | null,
): Buffer[] | { index: number; reason: string } {
  if (native) {
    const output = keep ? (into ?? Buffer.allocUnsafeSlow(inputs.length * clusterSize)) : null;
    const failure = native.decodeClusters(codec, inputs, clusterSize, output);
    if (failure) return { index: failure[0], reason: failure[1] };
    return output ? [output.subarray(0, inputs.length * clusterSize)] : [];
  }
  const packed =
    into ?? (clusterSize >= ownBufferFrom || !keep ? undefined : Buffer.allocUnsafeSlow(inputs.length * clusterSize));
  // Clusters of Buffer.poolSize or more never lie in Buffer's shared pool: the memory is the
  // cluster's alone, and detaching it (transfer to an empty buffer) frees it now.
  const free = clusterSize >= Buffer.poolSize;
  const pieces: Buffer[] = [];
  for (let i = 0; i < inputs.length; i++) {
    const cluster = decompress(zlib, codec, inputs[i]!, clusterSize);
    if (typeof cluster === 'string') return { index: i, reason: cluster };
    if (keep && packed) cluster.copy(packed, i * clusterSize);
    else if (keep) pieces.push(cluster);
    if ((!keep || packed) && free) (cluster.buffer as ArrayBuffer).transfer(0);
  }
  return packed ? [packed.subarray(0, inputs.length * clusterSize)] : pieces;
}
