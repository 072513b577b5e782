// Transparent huge pages for the large buffers (the downloaded image's chunks, the file reader's
// slab, kept decoded clusters): the kernel backs fresh memory with 4 KiB pages, a page fault each,
// unless told otherwise, and where transparent huge pages are in "madvise" mode (Debian's default)
// only madvise(MADV_HUGEPAGE) tells it. Filling 2 GiB of fresh memory is then 1,024 faults instead
// of 524,288: on a virtual machine, where a fault can cost ~14 us, 2-3x faster to fill (docs/
// performance.md, ninth round). Node cannot give that advice, so native/huge-pages.c does; where
// it is missing or will not load, memory is as before: advice, never a requirement.
import { nativeModule } from './native-module.ts';

interface HugePagesAddon {
  adviseHugePages(view: Uint8Array): boolean;
}

/** Smaller memory holds no whole huge page (2 MiB on x86-64 and arm64 with 4 KiB pages). */
const HUGE_PAGE = 2 * 1024 * 1024;

/**
 * Asks the kernel to back `memory` with huge pages when it is first touched: call it before
 * anything writes there. True when the advice was taken.
 */
export function adviseHugePages(memory: ArrayBufferLike): boolean {
  if (memory.byteLength < HUGE_PAGE) return false;
  return nativeModule<HugePagesAddon>('huge-pages')?.adviseHugePages(new Uint8Array(memory)) ?? false;
}
