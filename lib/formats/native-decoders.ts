// The system's liblzma and libbz2 through native/stream-decoders.c: xz at `xz -d`'s speed (and a
// stream of several blocks on several threads), bzip2 at `bzip2 -d`'s, where the bundled decoders
// (lib/formats/decompress.ts) run at about a half and a third of it. Where the module is missing
// or will not load (a system without liblzma.so.5 or libbz2.so.1.0), the bundled decoders are used.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
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
