// The system's liblzma and libbz2 through native/stream-decoders.c: xz at `xz -d`'s speed (and a
// stream of several blocks on several threads), bzip2 at `bzip2 -d`'s, where the bundled decoders
// (lib/formats/decompress.ts) run at about a half and a third of it. Where the module is missing
// or will not load (a system without liblzma.so.5 or libbz2.so.1.0), the bundled decoders are used.
import { availableParallelism } from 'node:os';
import { nativeModule } from '../system/native-module.ts';

/** A decoder of one stream, freed by `end` (or when collected). */
export type NativeDecoder = { readonly __brand: 'native decoder' };

/** "more": call again; "end": the stream ended; anything else: why the data cannot be decoded. */
export type NativeStatus =
  'more' | 'end' | 'corrupt' | 'format' | 'options' | 'check' | 'memory limit' | 'memory' | 'truncated';

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
  /** A bzip2 decoder whose stream ended, ready for the next stream. */
  restart(decoder: NativeDecoder): void;
  end(decoder: NativeDecoder): void;
}

/** The native decoders, or null where they are not built or will not load here. */
export function nativeDecoders(): NativeDecoders | null {
  return nativeModule<NativeDecoders>('stream-decoders');
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

/** How long decoding may keep the event loop from its timers and I/O (ms). */
const TURN_EVERY_MS = 20;

/**
 * Decodes compressed bytes taken in order from `input`: one xz stream, or bzip2 streams end to end
 * (as pbzip2 or `cat` make them, and bzip2 -d reads them). Chunks are CHUNK bytes but the last:
 * output is gathered however little each call or stream makes (a file of many tiny streams, or a
 * download in tiny pieces, would otherwise make as many chunks). With `reuse`, each chunk is the
 * same buffer, filled again for the next (for a consumer that copies each before asking for the
 * next); else each has its own. Returns, for xz, the bytes of the chunk of `input` it ended in
 * that follow the stream (the rest of `input` is not read); `refuse` makes the error for why the
 * data cannot be decoded. Stopped early or refused, it closes `input` (a download ends).
 */
export async function* decodedNatively(
  native: NativeDecoders,
  format: 'xz' | 'bzip2',
  input: Iterator<Buffer> | AsyncIterator<Buffer>,
  refuse: (reason: string) => Error,
  reuse: boolean,
): AsyncGenerator<Buffer, Buffer> {
  let output = Buffer.allocUnsafeSlow(CHUNK);
  let filled = 0;
  const threads = Math.min(availableParallelism(), 4);
  const decoder =
    format === 'xz' ? native.xzDecoder(threads, XZ_MEMORY_FOR_THREADS, XZ_MEMORY_LIMIT) : native.bzip2Decoder();
  let pending: Buffer = Buffer.alloc(0);
  let ended = false;
  let done = false;
  let turned = performance.now();
  /** Takes the next chunk of `input` as pending, or notes that it ended. */
  const refill = async (): Promise<void> => {
    const next = await input.next();
    if (next.done) ended = true;
    else pending = next.value;
  };
  try {
    for (;;) {
      // Decoding from memory never waits: the loop gets its turn (timers, the agent's reports).
      if (performance.now() - turned > TURN_EVERY_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        turned = performance.now();
      }
      if (pending.length === 0 && !ended) {
        await refill();
        continue;
      }
      const [consumed, produced, status] = native.decode(decoder, pending, output.subarray(filled), ended);
      pending = pending.subarray(consumed);
      filled += produced;
      if (filled === CHUNK) {
        yield output;
        if (!reuse) output = Buffer.allocUnsafeSlow(CHUNK);
        filled = 0;
      }
      if (status === 'end') {
        if (format === 'xz') break;
        // bzip2: another stream follows where bytes do (the next chunk is looked at when needed).
        while (pending.length === 0 && !ended) await refill();
        if (pending.length === 0) break;
        native.restart(decoder);
        continue;
      }
      if (status !== 'more') throw refuse(reason(format, status));
      // libbz2 asks for more input without saying the stream is cut short (liblzma says so itself:
      // with threads, it may also return with nothing done while they work).
      if (format === 'bzip2' && consumed === 0 && produced === 0 && ended && pending.length === 0)
        throw refuse(reason(format, 'truncated'));
    }
    if (filled > 0) yield output.subarray(0, filled);
    done = true;
    return pending;
  } finally {
    native.end(decoder);
    if (!done) await input.return?.();
  }
}

function reason(format: 'xz' | 'bzip2', status: NativeStatus): string {
  switch (status) {
    case 'format':
      return format === 'xz' ? 'not xz data' : 'bad bzip2 data (not a bzip2 stream)';
    case 'options':
      return 'unsupported xz options';
    case 'check':
      return 'an xz integrity check of a kind this decoder cannot verify';
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
