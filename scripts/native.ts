// The project's native code, compiled with the system's C compiler against Node-API's headers (and
// the Debian libraries each module names below): each result loads in any Node 24 process
// of this platform that has those libraries. native/huge-pages.c (lib/system/huge-pages.ts says
// why) needs only libc; native/stream-decoders.c (lib/formats/native-decoders.ts) decodes xz and
// bzip2; native/cluster-decoders.c (lib/formats/cluster-decompress.ts) decodes compressed clusters
// with Debian's libdeflate and Node's own zlib and zstd (zstd.h from libzstd-dev: Node ships zlib.h,
// not zstd.h). `node scripts/native.ts DIR` builds them all into DIR (scripts/setup.sh, for source runs);
// scripts/bundle.ts puts them beside every bundle.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * Each native module: its source, the libraries it links and the Debian packages that hold their
 * headers. The cluster decoders use libdeflate, and the zlib and zstd inside the node binary (its
 * own symbols), bound at load (-z now) so that a Node without them refuses the module at once
 * instead of failing at the first call.
 */
const addons = [
  { name: 'huge-pages', libraries: [], packages: [] },
  { name: 'stream-decoders', libraries: ['-llzma', '-lbz2'], packages: ['liblzma-dev', 'libbz2-dev'] },
  { name: 'cluster-decoders', libraries: ['-ldeflate', '-Wl,-z,now'], packages: ['libdeflate-dev', 'libzstd-dev'] },
] as const;

/** node_api.h beside the running Node: an install's include/node, or the node@24 package's platform package's. */
function nodeApiHeaders(): string {
  const bin = dirname(process.execPath);
  const candidates = [
    join(bin, '..', 'include', 'node'),
    join(bin, '..', 'node_modules', `node-${process.platform}-${process.arch}`, 'include', 'node'),
  ];
  const found = candidates.find((dir) => existsSync(join(dir, 'node_api.h')));
  if (!found) throw new Error(`no Node-API headers for ${process.execPath}: looked in ${candidates.join(', ')}`);
  return found;
}

/** Compiles every native/*.c into `outDir`/NAME.node. */
export async function buildNative(outDir: string): Promise<void> {
  await mkdir(outDir, { recursive: true });
  const flags = ['-O2', '-Wall', '-Wextra', '-shared', '-fPIC', '-I', nodeApiHeaders()];
  await Promise.all(
    addons.map(({ name, libraries, packages }) =>
      promisify(execFile)('cc', [
        ...flags,
        '-o',
        join(outDir, `${name}.node`),
        join(root, 'native', `${name}.c`),
        ...libraries,
      ]).catch((error: NodeJS.ErrnoException & { stderr?: string }) => {
        if (error.code === 'ENOENT')
          throw new Error(
            `no C compiler (cc) to build native/${name}.c: install gcc and libc6-dev (scripts/setup.sh does)`,
          );
        throw new Error(
          `native/${name}.c did not compile (it needs gcc, libc6-dev${packages.map((p) => `, ${p}`).join('')}: scripts/setup.sh installs them): ${error.stderr ?? error.message}`,
        );
      }),
    ),
  );
}

if (import.meta.main) {
  const out = process.argv[2];
  if (!out) throw new Error('usage: node scripts/native.ts DIR');
  await buildNative(resolve(out));
}
