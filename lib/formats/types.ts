// The boundary between decoders and the writer: a decoder turns an image into extents of the
// raw disk it describes, in guest order; the writer knows nothing about formats. Decoders read
// their image from an ImageSource (lib/source/image-source.ts).
/** A run of guest bytes that hold data. */
export interface DataExtent {
  readonly offset: number;
  readonly length: number;
  /** Exactly `length` bytes. May be a view into the source: do not modify. */
  readonly data: Buffer;
  /**
   * Optional: call once the bytes are no longer needed (written), and keep no view of them after:
   * their buffer may then be reused. Extents are released in the order they came: releasing one
   * may give back the bytes of the extents before it that were decoded with it (a batch of clusters
   * carries its release on its last extent). Not calling it is always safe (the buffer is
   * collected, or held until the image is: a decoder's shared memory is then not reused).
   */
  readonly release?: () => void;
}

/** A run of guest bytes that read as zeros (unallocated, zero flag, or zero grains). */
export interface ZeroExtent {
  readonly offset: number;
  readonly length: number;
  readonly zero: true;
}

export type Extent = DataExtent | ZeroExtent;

export function isZero(extent: Extent): extent is ZeroExtent {
  return 'zero' in extent;
}

/** Where an extent lies and whether it reads as zeros, without its bytes: what a dry pass yields. */
export interface ExtentShape {
  readonly offset: number;
  readonly length: number;
  readonly zero: boolean;
}

/** What `--type` may name: a decoder, or `auto` to pick one by content (lib/formats/open.ts). */
export type ImageFormat = 'auto' | 'qcow2' | 'raw' | 'vmdk' | 'ova';
export const imageFormats: readonly ImageFormat[] = ['auto', 'qcow2', 'raw', 'vmdk', 'ova'];

/** Formats recognised by content (lib/formats/detect.ts). */
export type DetectedFormat =
  'qcow2' | 'vmdk' | 'tar' | 'gzip' | 'xz' | 'zstd' | 'bzip2' | 'gpt' | 'mbr' | 'iso9660' | 'filesystem' | 'unknown';

/** What `byoi inspect` reports about an image. */
export interface ImageInfo {
  readonly format: 'qcow2' | 'raw' | 'vmdk' | 'ova';
  readonly virtualSize: number;
  readonly fileSize: number;
  /** Bytes of guest data stored in the file (not zero, not unallocated). */
  readonly allocatedBytes: number;
  readonly clusterSize?: number;
  /** qcow2 clusters' codec, VMDK grains' (zlib), or the codec a compressed raw image arrives in. */
  readonly compression?: 'zlib' | 'zstd' | 'gzip' | 'xz' | 'bzip2';
  /** qcow2 version, feature names, snapshots, and the like: name -> value, for display. */
  readonly features: Readonly<Record<string, string | number | boolean>>;
}

/**
 * An image whose structure has been validated: every table and offset is inside the file.
 * `extents()` covers [0, virtualSize) exactly, in guest order, with no gaps or overlaps.
 * A failure found while decoding (a compressed cluster that does not inflate to one cluster)
 * rejects the iteration with a refused-image ByoiError.
 */
export interface DiskImage {
  readonly info: ImageInfo;
  extents(): AsyncIterable<Extent>;
  /**
   * A dry decoding pass: decodes everything `extents()` would and refuses exactly what it refuses,
   * in the same guest order, but keeps none of the decoded bytes (cheaper: nothing is handed on).
   * Optional: without it, a dry pass iterates `extents()` and drops the data.
   */
  check?(): AsyncIterable<ExtentShape>;
  /**
   * The decoded batches the last dry pass kept, those in shared memory, for another opening of the
   * same bytes (on another thread) to write without decoding them again. Optional: none kept.
   */
  keptDecoded?(): HandedBatch[];
  /**
   * Takes batches a dry pass over the same bytes kept (`keptDecoded` of another opening): the next
   * `extents()` hands them out instead of decoding their clusters. Only a batch of exactly the
   * guest range a pass would decode is used.
   */
  adoptDecoded?(batches: readonly HandedBatch[]): void;
}

/** Decoded guest bytes [offset, offset + length), in shared memory another thread can read. */
export interface HandedBatch {
  readonly offset: number;
  readonly length: number;
  readonly pieces: readonly SharedPiece[];
}

/** `length` bytes of `memory` from `byteOffset`. */
export interface SharedPiece {
  readonly memory: SharedArrayBuffer;
  readonly byteOffset: number;
  readonly length: number;
  /** Whether `memory` is page-aligned (lib/source/aligned-memory.ts), as the thread that made it knows. */
  readonly aligned: boolean;
}
