// The system's liblzma and libbz2 through native/stream-decoders.c: xz at `xz -d`'s speed (and a
// stream of several blocks on several threads), bzip2 at `bzip2 -d`'s, where the bundled decoders
// (lib/formats/decompress.ts) run at about a half and a third of it. Where the module is missing
// or will not load (a system without liblzma.so.5 or libbz2.so.1.0), the bundled decoders are used.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

/** A decoder of one stream, freed by `end` (or when collected). */
export type NativeDecoder = { readonly __brand: 'native decoder' };

/** "more": call again; "end": the stream ended; anything else: why the data cannot be decoded. */
export type NativeStatus = 'more' | 'end' | 'corrupt' | 'format' | 'options' | 'memory limit' | 'memory' | 'truncated';

export interface NativeDecoders {
  /** liblzma's multi-threaded decoder: `threads` for a stream of several blocks, fewer past `memlimitThreading` bytes; refuses data that needs more than `memlimitStop`. */
  xzDecoder(threads: number, memlimitThreading: number, memlimitStop: number): NativeDecoder;
  bzip2Decoder(): NativeDecoder;
  /** Decodes from `input` into `output`; `finish`: `input` holds the rest of the stream. Returns bytes consumed and produced. */
  decode(
    decoder: NativeDecoder,
    input: Uint8Array,
    output: Uint8Array,
    finish: boolean,
  ): [number, number, NativeStatus];
  end(decoder: NativeDecoder): void;
}

/** Beside the bundle's modules (scripts/bundle.ts puts it in dist/), or built for source runs by scripts/setup.sh. */
const places = [
  new URL('./stream-decoders.node', import.meta.url),
  new URL('../../build/native/stream-decoders.node', import.meta.url),
];

let loaded: NativeDecoders | null | undefined;

/** The native decoders, or null where they are not built or will not load here. */
export function nativeDecoders(): NativeDecoders | null {
  if (loaded !== undefined) return loaded;
  const require = createRequire(import.meta.url);
  loaded = null;
  for (const place of places) {
    const path = fileURLToPath(place);
    if (!existsSync(path)) continue;
    try {
      loaded = require(path) as NativeDecoders;
      break;
    } catch {
      // A library this system lacks, or built for another platform: the next place, or the bundled decoders.
    }
  }
  return loaded;
}

const MiB = 1024 * 1024;
/** What one call of a decoder produces at most. */
const CHUNK = MiB;
/**
 * The xz decoder's memory: past the first, fewer threads (a stream of several blocks holds blocks
 * in and out per thread); past the second, the data is refused (xz -9's dictionary needs 65 MiB;
 * the format allows 1.5 GiB).
 */
const XZ_MEMORY_FOR_THREADS = 256 * MiB;
const XZ_MEMORY_LIMIT = 512 * MiB;

/**
 * Decodes compressed bytes taken in order from `input`: one xz stream, or bzip2 streams end to end
 * (as pbzip2 or `cat` make them, and bzip2 -d reads them). With `reuse`, each chunk yielded is the
 * same buffer, filled again for the next (for a consumer that copies each before asking for the
 * next); else each has its own. Returns, for xz, the bytes of the chunk it ended in that follow
 * the stream (the rest of `input` is not read); `refuse` makes the error for why the data cannot
 * be decoded.
 */
export async function* decodedNatively(
  native: NativeDecoders,
  format: 'xz' | 'bzip2',
  input: Iterator<Buffer> | AsyncIterator<Buffer>,
  refuse: (reason: string) => Error,
  reuse: boolean,
): AsyncGenerator<Buffer, Buffer> {
  let output = Buffer.allocUnsafeSlow(CHUNK);
  const threads = Math.min(availableParallelism(), 4);
  let pending: Buffer = Buffer.alloc(0);
  let ended = false;
  do {
    const decoder =
      format === 'xz' ? native.xzDecoder(threads, XZ_MEMORY_FOR_THREADS, XZ_MEMORY_LIMIT) : native.bzip2Decoder();
    try {
      for (;;) {
        if (pending.length === 0 && !ended) {
          const next = await input.next();
          if (next.done) ended = true;
          else pending = next.value;
          continue;
        }
        const [consumed, produced, status] = native.decode(decoder, pending, output, ended);
        pending = pending.subarray(consumed);
        if (produced > 0) {
          yield output.subarray(0, produced);
          if (!reuse) output = Buffer.allocUnsafeSlow(CHUNK);
        }
        if (status === 'end') break;
        if (status !== 'more') throw refuse(reason(format, status));
        // libbz2 asks for more input without saying the stream is cut short (liblzma says so itself:
        // with threads, it may also return with nothing done while they work).
        if (format === 'bzip2' && consumed === 0 && produced === 0 && ended && pending.length === 0)
          throw refuse(reason(format, 'truncated'));
      }
    } finally {
      native.end(decoder);
    }
    // bzip2: another stream follows where bytes do (the next chunk is looked at when needed).
    while (format === 'bzip2' && pending.length === 0 && !ended) {
      const next = await input.next();
      if (next.done) ended = true;
      else pending = next.value;
    }
  } while (format === 'bzip2' && pending.length > 0);
  return pending;
}

function reason(format: 'xz' | 'bzip2', status: NativeStatus): string {
  switch (status) {
    case 'format':
      return format === 'xz' ? 'not xz data' : 'bad bzip2 data (not a bzip2 stream)';
    case 'options':
      return 'unsupported xz options';
    case 'memory limit':
      return `the xz data needs more than ${XZ_MEMORY_LIMIT / MiB} MiB of memory to decode`;
    case 'memory':
      return `out of memory decoding ${format} data`;
    case 'truncated':
      return `the ${format} data ends early`;
    default:
      return `corrupt ${format} data`;
  }
}
