// The benchmark images: a 2 GiB GPT disk holding about 1 GiB of mixed data (real binaries from
// /usr, random bytes, explicit zero runs, holes), and its qcow2 forms made by qemu-img.
// Made once into the bench directory and reused while the recipe is unchanged.
import { createCipheriv } from 'node:crypto';
import {
  existsSync,
  openSync,
  closeSync,
  writeSync,
  ftruncateSync,
  readdirSync,
  readFileSync,
  statSync,
  mkdirSync,
  writeFileSync,
  rmSync,
} from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';

const MiB = 1024 * 1024;
/** The 2 GiB images' recipe; an image of N GiB repeats the pattern 31 x N times (time and RSS should be linear in N). */
const recipe = (gib: number) =>
  gib === 2
    ? 'v1: 62 x [8 MiB /usr binaries, 4 MiB random, 4 MiB zeros, 16 MiB hole] from 1 MiB, GPT'
    : `v1, ${gib} GiB: ${31 * gib} x [8 MiB /usr binaries, 4 MiB random, 4 MiB zeros, 16 MiB hole] from 1 MiB, GPT`;

export interface BenchImages {
  /** Bytes of the disk the images describe. */
  virtualSize: number;
  raw: string;
  qcow2: { plain: string; zlib: string; zstd: string };
}

/** Real executables and libraries, the bulk of an OS image: compressible to about half. */
function* binaryBytes(): Generator<Buffer> {
  const roots = ['/usr/lib/x86_64-linux-gnu', '/usr/bin', '/usr/lib', '/usr/libexec'];
  for (;;) {
    for (const root of roots) {
      const stack = [root];
      while (stack.length) {
        const dir = stack.pop()!;
        let names: string[];
        try {
          names = readdirSync(dir).sort();
        } catch {
          continue;
        }
        for (const name of names) {
          const path = join(dir, name);
          try {
            const st = statSync(path, { throwIfNoEntry: false });
            if (!st) continue;
            if (st.isDirectory()) stack.push(path);
            else if (st.isFile() && st.size > 4096 && st.size < 64 * MiB) yield readFileSync(path);
          } catch {
            // unreadable entries are skipped
          }
        }
      }
    }
  }
}

function fill(source: Generator<Buffer>, length: number): Buffer {
  const out = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const next = source.next().value as Buffer;
    done += next.copy(out, done, 0, Math.min(next.length, length - done));
  }
  return out;
}

function makeRaw(path: string, gib: number): void {
  rmSync(path, { force: true });
  const fd = openSync(path, 'w');
  ftruncateSync(fd, gib * 1024 * MiB);
  closeSync(fd);
  execFileSync('sgdisk', ['-o', '-n', '1:2048:0', '-t', '1:8300', path], { stdio: 'ignore' });
  const binaries = binaryBytes();
  // AES-CTR over zeros: fast, reproducible incompressible bytes.
  const random = createCipheriv('aes-128-ctr', Buffer.alloc(16, 7), Buffer.alloc(16));
  const zeros = Buffer.alloc(4 * MiB);
  const out = openSync(path, 'r+');
  try {
    for (let cycle = 0; cycle < 31 * gib; cycle++) {
      const base = MiB + cycle * 32 * MiB;
      writeSync(out, fill(binaries, 8 * MiB), 0, 8 * MiB, base);
      writeSync(out, random.update(zeros), 0, 4 * MiB, base + 8 * MiB);
      writeSync(out, zeros, 0, 4 * MiB, base + 12 * MiB);
    }
  } finally {
    closeSync(out);
  }
}

/** The images of `gib` GiB (2: the bench's usual ones, in `dir` itself; others in `dir/<N>g`). */
export function makeBenchImages(root: string, gib = 2): BenchImages {
  const dir = gib === 2 ? root : join(root, `${gib}g`);
  const RECIPE = recipe(gib);
  mkdirSync(dir, { recursive: true });
  const images: BenchImages = {
    virtualSize: gib * 1024 * MiB,
    raw: join(dir, 'disk.raw'),
    qcow2: { plain: join(dir, 'plain.qcow2'), zlib: join(dir, 'zlib.qcow2'), zstd: join(dir, 'zstd.qcow2') },
  };
  const stamp = join(dir, 'recipe');
  if (existsSync(stamp) && readFileSync(stamp, 'utf8') === RECIPE) return images;
  rmSync(stamp, { force: true });
  process.stderr.write('bench: making images (once)...\n');
  makeRaw(images.raw, gib);
  const convert = (out: string, ...options: string[]) =>
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', ...options, images.raw, out], {
      stdio: 'inherit',
    });
  convert(images.qcow2.plain, '-o', 'cluster_size=65536');
  convert(images.qcow2.zlib, '-c', '-o', 'cluster_size=65536,compression_type=zlib');
  convert(images.qcow2.zstd, '-c', '-o', 'cluster_size=65536,compression_type=zstd');
  writeFileSync(stamp, RECIPE);
  return images;
}
