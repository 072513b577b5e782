// Where the project's native modules (native/*.c, built by scripts/native.ts) are found and loaded:
// beside the bundle's modules (scripts/bundle.ts puts them in dist/, the directory of the chunk this
// file is bundled into), or in build/native for source runs (scripts/setup.sh builds them there).
// Each is an optional speed-up: where it is missing or will not load (built for another platform,
// a library or symbol this system lacks), its caller does the work without it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** The project's native modules. */
export type NativeModuleName = 'huge-pages' | 'stream-decoders' | 'cluster-decoders';

/** The paths where `name` may be, in the order they are tried. */
function places(name: NativeModuleName): string[] {
  return [
    fileURLToPath(new URL(`./${name}.node`, import.meta.url)),
    fileURLToPath(new URL(`../../build/native/${name}.node`, import.meta.url)),
  ];
}

const loaded = new Map<NativeModuleName, { module: unknown; path: string } | null>();

function load(name: NativeModuleName): { module: unknown; path: string } | null {
  if (loaded.has(name)) return loaded.get(name)!;
  const require = createRequire(import.meta.url);
  let found: { module: unknown; path: string } | null = null;
  for (const path of places(name)) {
    if (!existsSync(path)) continue;
    try {
      found = { module: require(path), path };
      break;
    } catch {
      // Built for another platform, or a library this system lacks: the next place, or none.
    }
  }
  loaded.set(name, found);
  return found;
}

/** The module `name` as `T`, or null where it is not built or will not load in this process. */
export function nativeModule<T>(name: NativeModuleName): T | null {
  return (load(name)?.module as T | undefined) ?? null;
}

/** The file of the module `name` that loads in this process (for a worker thread to load too), or undefined. */
export function nativeModulePath(name: NativeModuleName): string | undefined {
  return load(name)?.path;
}
