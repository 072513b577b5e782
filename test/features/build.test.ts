// The bundle (scripts/bundle.ts): a program that runs on Node 24 with no node_modules around it,
// with its runtime dependencies inside, lazily imported parts in chunks and worker threads bundled
// beside it.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bundle } from '../../scripts/bundle.ts';

const run = promisify(execFile);

describe('bundle', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'byoi-bundle-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('runs the agent: its --help is the one the sources print', async () => {
    const out = join(dir, 'agent');
    await bundle('agent/byoi.ts', out, 'byoi.mjs');
    const fromSource = await run(process.execPath, ['agent/byoi.ts', '--help']);
    const fromBundle = await run(process.execPath, [join(out, 'byoi.mjs'), '--help'], { cwd: out });
    expect(fromBundle.stdout).toBe(fromSource.stdout);
    expect(fromBundle.stdout).toContain('--help');
  });

  it('decodes bzip2 without Node deprecation warnings (seek-bzip bundled with a Buffer of its own)', async () => {
    const out = join(dir, 'agent');
    const disk = Buffer.concat([randomBytes(3 * 1024 * 1024), Buffer.alloc(1024 * 1024)]);
    await writeFile(join(dir, 'disk.raw'), disk);
    await run('bzip2', ['-k', join(dir, 'disk.raw')]);
    const converted = join(dir, 'converted.raw');
    const { stderr } = await run(
      process.execPath,
      [join(out, 'byoi.mjs'), 'convert', join(dir, 'disk.raw.bz2'), converted],
      {
        cwd: out,
      },
    );
    expect(stderr).not.toMatch(/Warning/);
    expect((await readFile(converted)).equals(disk)).toBe(true);
  });

  it('leaves what commands import lazily out of the program file: the API server is a chunk', async () => {
    const out = join(dir, 'agent');
    const files = await readdir(out);
    expect(files.filter((file) => /^chunk-[A-Z0-9]+\.mjs$/.test(file)).length).toBeGreaterThan(0);
    const program = await readFile(join(out, 'byoi.mjs'), 'utf8');
    expect(program).not.toContain('find-my-way'); // fastify's router
    const chunks = await Promise.all(
      files.filter((file) => file.startsWith('chunk-')).map((file) => readFile(join(out, file), 'utf8')),
    );
    expect(chunks.some((chunk) => chunk.includes('find-my-way'))).toBe(true);
  });

  it('carries yargs, pino, got and execa, bundles a worker started by new URL(...ts), and loads the native modules beside it', async () => {
    const out = join(dir, 'probe');
    const built = await bundle('test/bundle-probe/main.ts', out, 'probe.mjs');
    expect(built.length).toBe(2);
    expect((await readdir(out)).sort()).toEqual([
      'cluster-decoders.node',
      'huge-pages.node',
      'probe.mjs',
      'stream-decoders.node',
      'worker-test.bundle-probe.square.mjs',
    ]);
    // Run from the temp dir (outside the checkout): nothing can come from node_modules.
    const { stdout, stderr } = await run(join(out, 'probe.mjs'), ['--square', '12'], {
      cwd: out,
      env: { ...process.env, PATH: `${join(process.execPath, '..')}:${process.env.PATH}` },
    });
    // The kernel takes the advice wherever it has transparent huge pages at all.
    const hugePages = existsSync('/sys/kernel/mm/transparent_hugepage');
    expect(JSON.parse(stdout)).toEqual({
      squared: 144,
      echoed: 'execa works',
      got: 'function',
      hugePages,
      decoders: true,
      clusterDecoders: true,
    });
    expect(JSON.parse(stderr.trim())).toMatchObject({ level: 30, probe: true, msg: 'probe started' });
  });

  it('lays out help text with wide characters as the sources do (string-width loaded on demand)', async () => {
    const out = join(dir, 'probe');
    const env = { ...process.env, COLUMNS: '60' };
    const fromSource = await run(process.execPath, ['test/bundle-probe/main.ts', '--help'], { env });
    const fromBundle = await run(process.execPath, [join(out, 'probe.mjs'), '--help'], { cwd: out, env });
    expect(fromBundle.stdout).toBe(fromSource.stdout);
    expect(fromBundle.stdout).toContain('🚀');
  });
});
