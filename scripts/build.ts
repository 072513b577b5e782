// `npm run build`: the agent and everything it imports, in dist/byoi.mjs (plus dist/chunk-*.mjs for
// what it imports lazily, dist/worker-*.mjs for any worker threads it starts and the native modules
// dist/huge-pages.node and dist/stream-decoders.node; see scripts/bundle.ts). Copy the whole dist/ directory.
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundle } from './bundle.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const built = await bundle(resolve(root, 'agent/byoi.ts'), resolve(root, 'dist'), 'byoi.mjs');
process.stdout.write(`built ${built.map((file) => relative(root, file)).join(', ')}\n`);
