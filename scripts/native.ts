// The project's one piece of native code, native/huge-pages.c (lib/system/huge-pages.ts says why),
// compiled with the system's C compiler against Node-API's headers alone: the result loads in any
// Node 24 process of this platform. `node scripts/native.ts OUT` builds OUT (scripts/setup.sh, for
// source runs); scripts/bundle.ts puts one beside every bundle.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'native/huge-pages.c');

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

/** Compiles native/huge-pages.c into `outFile` (a .node file). */
export async function buildNative(outFile: string): Promise<void> {
  await mkdir(dirname(outFile), { recursive: true });
  const flags = ['-O2', '-Wall', '-Wextra', '-shared', '-fPIC'];
  await promisify(execFile)('cc', [...flags, '-I', nodeApiHeaders(), '-o', outFile, source]).catch(
    (error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
      throw new Error(
        'no C compiler (cc) to build native/huge-pages.c: install gcc and libc6-dev (scripts/setup.sh does)',
      );
    },
  );
}

if (import.meta.main) {
  const out = process.argv[2];
  if (!out) throw new Error('usage: node scripts/native.ts OUT.node');
  await buildNative(resolve(out));
}
