// Page-aligned buffers, for writes that bypass the page cache (O_DIRECT needs the memory, the offset
// and the length aligned to the device's logical block). Node can neither allocate aligned memory
// nor tell a Buffer's address; a WebAssembly.Memory's bytes, though, are mapped by the engine itself
// and start on a page boundary. So alignment is known by where a buffer comes from: this module.
// Each such memory reserves ~8 GiB of address space (WebAssembly's guard regions): under a limit
// (`ulimit -v`) a few would leave none for the worker threads, whose start then ends the process
// (V8 cannot reserve their code), so there, and where the engine refuses one, what is asked for
// here is ordinary memory: `isPageAligned` tells which, and the writers stage it or go through the
// page cache.
import { adviseHugePages } from '../system/huge-pages.ts';
import { addressSpaceLimited } from '../system/memory.ts';

/** The alignment of the buffers `isPageAligned` vouches for, and that direct writes use for offsets and lengths. */
export const PAGE_SIZE = 4096;
const WASM_PAGE_SIZE = 65536;

const alignedBackings = new WeakSet<ArrayBufferLike>();

/** The part of the WebAssembly API used here (this project's TypeScript libs declare no DOM/wasm values). */
interface WasmMemoryConstructor {
  new (descriptor: { initial: number; maximum: number; shared?: boolean }): { readonly buffer: ArrayBufferLike };
}
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryConstructor } }).WebAssembly.Memory;

/**
 * Set when the engine refused a memory (short of address space, or a size it never grants: over
 * 4 GiB); cleared when one made here is collected, which may have freed some. A refusal is slow
 * (the engine collects garbage first), so none is asked for meanwhile.
 */
let refused = false;
const collected = new FinalizationRegistry<undefined>(() => (refused = false));

/**
 * `count` zero-filled buffers of `size` bytes (a multiple of PAGE_SIZE), each starting on a page
 * boundary where the address space allows (see the module comment), in one allocation that is
 * never resized, backed by huge pages where the kernel has them (lib/system/huge-pages.ts).
 * `shared`: in a SharedArrayBuffer, which other threads of this process can be handed.
 */
export function alignedBuffers(size: number, count: number, shared = false): Buffer[] {
  const memory = alignedMemory(size, count, shared);
  return Array.from({ length: count }, (_, i) => Buffer.from(memory, i * size, size));
}

/**
 * As `alignedBuffers`, in memory other threads of this process can fill: one SharedArrayBuffer of
 * `count` slots of `size` bytes, slot i at i * size, page-aligned where the address space allows.
 */
export function sharedAlignedMemory(size: number, count: number): SharedArrayBuffer {
  return alignedMemory(size, count, true) as SharedArrayBuffer;
}

function alignedMemory(size: number, count: number, shared: boolean): ArrayBufferLike {
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0)
    throw new RangeError(`aligned buffer size ${size} is not a multiple of ${PAGE_SIZE}`);
  if (!refused && !addressSpaceLimited()) {
    try {
      const pages = Math.ceil((size * count) / WASM_PAGE_SIZE);
      const { buffer } = new WasmMemory({ initial: pages, maximum: pages, shared });
      alignedBackings.add(buffer);
      collected.register(buffer, undefined);
      adviseHugePages(buffer);
      return buffer;
    } catch (error) {
      if (!(error instanceof RangeError)) throw error;
      refused = true;
    }
  }
  const memory = shared ? new SharedArrayBuffer(size * count) : new ArrayBuffer(size * count);
  adviseHugePages(memory);
  return memory;
}

/**
 * Whether `memory` is known aligned on this thread: made here, or trusted (a WeakSet is per thread:
 * see `trustAligned`).
 */
export function isAlignedMemory(memory: ArrayBufferLike): boolean {
  return alignedBackings.has(memory);
}

/**
 * Records `memory`, which another thread of this process made with `sharedAlignedMemory` and says
 * so (`isAlignedMemory` there), as aligned on this thread too. Were it not, a direct write of it
 * fails with EINVAL, and that destination's writes go through the page cache from then on
 * (lib/write/positional-writes.ts): slower, never wrong.
 */
export function trustAligned(memory: SharedArrayBuffer): void {
  alignedBackings.add(memory);
}

/** Whether `bytes` provably starts on a page boundary and spans whole pages. */
export function isPageAligned(bytes: Buffer): boolean {
  return alignedBackings.has(bytes.buffer) && bytes.byteOffset % PAGE_SIZE === 0 && bytes.length % PAGE_SIZE === 0;
}
