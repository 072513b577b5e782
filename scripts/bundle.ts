// The bundler behind `npm run build` (scripts/build.ts): an ESM program that runs on a bare Node 24,
// with no node_modules beside it (the rescue image has none).
//
// Code splitting: what a program loads with `await import(...)` (each command's heavy modules, the
// API server) goes into chunk-*.mjs files beside it and is read only when used. One file of
// everything costs every run ~0.1 s of compiling code it never calls (2.4 MB: `byoi convert`
// starts in 0.26 s instead of 0.16 s). Ship the whole output directory.
//
// Worker threads: a module that starts a worker with `new URL('./x.ts', import.meta.url)` (a
// literal, relative .ts path) gets that worker bundled too. The plugin below rewrites the URL to
// `./worker-<path>.mjs` beside byoi.mjs and the worker is built as its own bundle, recursively.
// So in development the .ts runs directly, and in the bundle its built twin does.
import { build, type BuildOptions, type OnResolveArgs, type Plugin } from 'esbuild';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNative } from './native.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// Bundled CommonJS dependencies call require() and read __dirname; an ESM bundle has neither.
// __dirname/__filename go through `define` so that ESM modules declaring their own are untouched.
// (esbuild keeps the entry's own `#!/usr/bin/env node` line first; ensureShebang checks it is there.)
const banner = [
  "import { createRequire as __byoiCreateRequire } from 'node:module';",
  "import { fileURLToPath as __byoiFileURLToPath } from 'node:url';",
  'const require = __byoiCreateRequire(import.meta.url);',
  'const __byoiFilename = __byoiFileURLToPath(import.meta.url);',
  "const __byoiDirname = __byoiFilename.slice(0, __byoiFilename.lastIndexOf('/'));",
].join('\n');

const workerUrl = /new\s+URL\(\s*(['"`])(\.{1,2}\/[^'"`]+\.ts)\1\s*,\s*import\.meta\.url\s*\)/g;

/** The bundle name of a worker source file: flat in dist/, so every rewritten URL is `./name`. */
function workerBundleName(source: string): string {
  return `worker-${relative(root, source).replace(/\.ts$/, '').replaceAll(/[/\\]/g, '.')}.mjs`;
}

/** Rewrites worker URLs in our own sources and records the workers it saw. */
function workerUrls(found: Set<string>): Plugin {
  return {
    name: 'byoi-worker-urls',
    setup(pluginBuild) {
      pluginBuild.onLoad({ filter: /\.ts$/ }, async (args) => {
        if (args.path.includes('/node_modules/')) return undefined;
        const text = await readFile(args.path, 'utf8');
        const contents = text.replaceAll(workerUrl, (_match, _quote: string, path: string) => {
          const source = resolve(dirname(args.path), path);
          found.add(source);
          return `new URL(${JSON.stringify(`./${workerBundleName(source)}`)}, import.meta.url)`;
        });
        return { contents, loader: 'ts' };
      });
    },
  };
}

/**
 * A plugin that bundles each import of `module` (those `accepts`) as a stand-in, whose source
 * `standIn` makes from the real module's path (relative to the project: no build-machine path in
 * the bundle); the stand-in may require() that path, which esbuild then bundles lazily.
 */
function standInFor(
  name: string,
  module: RegExp,
  standIn: (realPath: string) => string[],
  accepts: (args: OnResolveArgs) => boolean = () => true,
): Plugin {
  return {
    name,
    setup(pluginBuild) {
      pluginBuild.onResolve({ filter: module }, async (args) => {
        if (args.pluginData === 'real' || !accepts(args)) return undefined;
        const real = await pluginBuild.resolve(args.path, {
          kind: args.kind,
          importer: args.importer,
          resolveDir: args.resolveDir,
          pluginData: 'real',
        });
        if (real.errors.length > 0) return { errors: real.errors };
        return { path: relative(root, real.path), namespace: name };
      });
      pluginBuild.onLoad({ filter: /.*/, namespace: name }, (args) => ({
        loader: 'js',
        resolveDir: root,
        contents: standIn(`./${args.path}`).join('\n'),
      }));
    },
  };
}

/**
 * string-width (yargs', cliui's and wrap-ansi's) builds an Intl.Segmenter and Unicode-property
 * regular expressions when it loads: ~20 ms of CPU on every start of every command, for a function
 * only help and usage text call. Each import of it is bundled as a stand-in that measures printable
 * ASCII itself (one column a character, as string-width counts it) and loads that copy of
 * string-width, lazily (esbuild wraps a require()d module in an initialiser), for any other text.
 */
const lazyStringWidth = standInFor(
  'byoi-lazy-string-width',
  /^string-width$/,
  (real) => [
    'let real;',
    'export default function stringWidth(text, options) {',
    "  if (typeof text === 'string' && /^[\\x20-\\x7e]*$/.test(text)) return text.length;",
    `  real ??= require(${JSON.stringify(real)}).default;`,
    '  return real(text, options);',
    '}',
  ],
  // ESM importers only (a CommonJS one, cli-progress, calls what require() returns).
  (args) => args.kind === 'import-statement',
);

/**
 * seek-bzip (the bzip2 decoder) still calls the deprecated `new Buffer(n)`. From node_modules Node
 * lets that pass silently; bundled, it is our code to Node, which prints DEP0005 on stderr during
 * every bzip2 decode. Its files get a `Buffer` of their own that makes the same zero-filled buffers
 * through Buffer.alloc and Buffer.from (statics and instanceof as Buffer's).
 */
const seekBzipBuffer: Plugin = {
  name: 'byoi-seek-bzip-buffer',
  setup(pluginBuild) {
    pluginBuild.onLoad({ filter: /[/\\]node_modules[/\\]seek-bzip[/\\].*\.js$/ }, async (args) => ({
      loader: 'js',
      contents: [
        'var Buffer = (() => {',
        '  const Real = globalThis.Buffer;',
        "  const LegacyBuffer = function Buffer(value, encoding) { return typeof value === 'number' ? Real.alloc(value) : Real.from(value, encoding); };",
        '  Object.setPrototypeOf(LegacyBuffer, Real);',
        '  LegacyBuffer.prototype = Real.prototype;',
        '  return LegacyBuffer;',
        '})();',
        await readFile(args.path, 'utf8'),
      ].join('\n'),
    }));
  },
};

/**
 * An ESM import of node:http makes Node build that module's ESM facade, which reads every export and
 * so runs its lazy WebSocket getters: Node's whole fetch and WebSocket client (undici) is compiled,
 * ~15 ms of CPU on every command that downloads (measured). Each such import (got's, ours) is bundled
 * as a stand-in that takes node:http as CommonJS and re-exports the names importers use; a name
 * missing here fails the build.
 */
const httpWithoutFacade: Plugin = {
  name: 'byoi-http-without-facade',
  setup(pluginBuild) {
    pluginBuild.onResolve({ filter: /^(node:)?http$/ }, (args) =>
      args.kind === 'import-statement' ? { path: 'node:http', namespace: 'http-without-facade' } : undefined,
    );
    pluginBuild.onLoad({ filter: /.*/, namespace: 'http-without-facade' }, () => ({
      loader: 'js',
      contents: [
        "const http = process.getBuiltinModule('node:http');",
        'export default http;',
        'export const { Agent, ClientRequest, IncomingMessage, METHODS, OutgoingMessage, STATUS_CODES, Server,',
        '  ServerResponse, createServer, get, request, validateHeaderName, validateHeaderValue } = http;',
      ].join('\n'),
    }));
  },
};

/**
 * got imports http2-wrapper, which builds a TLS socket wrapper when it loads (~5 ms of CPU on every
 * download's start), for its `http2` option, which byoi never sets. got's import of it is bundled
 * as a stand-in that loads the real module at the first use of any of its properties.
 */
const lazyHttp2Wrapper = standInFor('byoi-lazy-http2-wrapper', /^http2-wrapper$/, (real) => [
  'let real;',
  `const load = () => (real ??= require(${JSON.stringify(real)}));`,
  'export default new Proxy({}, { get: (_, key) => load()[key], has: (_, key) => key in load() });',
]);

const common: BuildOptions = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node24',
  banner: { js: banner },
  define: { __dirname: '__byoiDirname', __filename: '__byoiFilename' },
  // pino's worker-thread transports are never used: the agent logs to stderr directly.
  logLevel: 'warning',
  legalComments: 'none',
};

/** The bundle is run as a program (`dist/byoi.mjs --help`): it must start with a shebang and be executable. */
async function ensureShebang(file: string): Promise<void> {
  const text = await readFile(file, 'utf8');
  if (!text.startsWith('#!')) await writeFile(file, `#!/usr/bin/env node\n${text}`);
  await chmod(file, 0o755);
}

/**
 * Bundles `entry` into `outdir/name` (its lazily imported parts into `outdir/chunk-*.mjs`) and every
 * worker it starts into `outdir/worker-*.mjs` (one file each), with the native modules the bundled
 * lib/system/huge-pages.ts and lib/formats/native-decoders.ts load beside them (`outdir/*.node`,
 * scripts/native.ts);
 * `outdir` is emptied first. Returns the entry points written: the program first, then its workers.
 */
export async function bundle(entry: string, outdir: string, name: string): Promise<string[]> {
  await rm(outdir, { recursive: true, force: true });
  await mkdir(outdir, { recursive: true });
  await buildNative(resolve(outdir));
  const built: string[] = [];
  const done = new Set<string>();
  const pending: { source: string; outfile: string }[] = [{ source: resolve(entry), outfile: resolve(outdir, name) }];
  while (pending.length > 0) {
    const { source, outfile } = pending.shift()!;
    done.add(source);
    const found = new Set<string>();
    const program = built.length === 0;
    await build({
      ...common,
      // Chunks only for the program: a worker's chunks would share names with the program's.
      ...(program
        ? {
            entryPoints: { [basename(outfile, '.mjs')]: source },
            outdir: dirname(outfile),
            splitting: true,
            outExtension: { '.js': '.mjs' },
            chunkNames: 'chunk-[hash]',
          }
        : { entryPoints: [source], outfile }),
      plugins: [workerUrls(found), lazyStringWidth, seekBzipBuffer, httpWithoutFacade, lazyHttp2Wrapper],
    });
    await ensureShebang(outfile);
    built.push(outfile);
    for (const worker of found) {
      if (!done.has(worker) && !pending.some((p) => p.source === worker)) {
        pending.push({ source: worker, outfile: resolve(outdir, workerBundleName(worker)) });
      }
    }
  }
  return built;
}
