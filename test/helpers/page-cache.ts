// How much of a block device's first bytes sit in the page cache: mincore(2) over a shared mapping
// of the device (fincore(1) reports nothing for a block device: it trusts st_size, which is 0).
import { execFileSync } from 'node:child_process';

const MINCORE = `
import ctypes, os, sys
path, length = sys.argv[1], int(sys.argv[2])
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
fd = os.open(path, os.O_RDONLY)
address = libc.mmap(None, length, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
if address in (None, ctypes.c_void_p(-1).value):
    raise OSError(ctypes.get_errno(), 'mmap')
page = os.sysconf('SC_PAGE_SIZE')
pages = (length + page - 1) // page
vector = (ctypes.c_ubyte * pages)()
if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(length), vector) != 0:
    raise OSError(ctypes.get_errno(), 'mincore')
print(sum(v & 1 for v in vector) * page)
`;

/** Bytes of [0, length) of `device` held in the page cache. */
export function cachedBytes(device: string, length: number): number {
  return Number(execFileSync('python3', ['-c', MINCORE, device, String(length)], { encoding: 'utf8' }).trim());
}
