// Page-aligned buffers, for writes that bypass the page cache (O_DIRECT needs the memory, the offset
// and the length aligned to the device's logical block). Node can neither allocate aligned memory
// nor tell a Buffer's address; a WebAssembly.Memory's bytes, though, are mapped by the engine itself
// and start on a page boundary. So alignment is known by where a buffer comes from: this module.

/** The alignment these buffers guarantee, and that direct writes use for offsets and lengths. */
export const PAGE_SIZE = 4096;
const WASM_PAGE_SIZE = 65536;

const alignedBackings = new WeakSet<ArrayBuffer>();

/** The part of the WebAssembly API used here (this project's TypeScript libs declare no DOM/wasm values). */
interface WasmMemoryConstructor {
  new (descriptor: { initial: number; maximum: number }): { readonly buffer: ArrayBuffer };
}
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryConstructor } }).WebAssembly.Memory;

/**
 * `count` zero-filled buffers of `size` bytes (a multiple of PAGE_SIZE), each starting on a page
 * boundary, in one allocation that is never resized.
 */
export function alignedBuffers(size: number, count: number): Buffer[] {
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0)
    throw new RangeError(`aligned buffer size ${size} is not a multiple of ${PAGE_SIZE}`);
  const pages = Math.ceil((size * count) / WASM_PAGE_SIZE);
  const memory = new WasmMemory({ initial: pages, maximum: pages });
  alignedBackings.add(memory.buffer);
  return Array.from({ length: count }, (_, i) => Buffer.from(memory.buffer, i * size, size));
}

/** Whether `bytes` provably starts on a page boundary and spans whole pages. */
export function isPageAligned(bytes: Buffer): boolean {
  return (
    alignedBackings.has(bytes.buffer as ArrayBuffer) &&
    bytes.byteOffset % PAGE_SIZE === 0 &&
    bytes.length % PAGE_SIZE === 0
  );
}
