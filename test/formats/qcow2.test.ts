// The qcow2 decoder against qemu: every variant qemu-img and qemu-io make decodes to the same bytes
// as `qemu-img convert -O raw`, on the calling thread and in the worker pool.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ChunkedBuffer } from '../../lib/chunked-buffer.ts';
import { openQcow2 } from '../../lib/formats/qcow2.ts';
import { makeQcow2Fixtures, qemuRawSha256, QCOW2_FIXTURE_NAMES, type Qcow2Fixture } from '../../scripts/fixtures/qcow2.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { decodeToSha256 } from './decode.ts';

describe.skipIf(skipWithout('qemu-img'))('qcow2 decoder against qemu-img convert', () => {
  let dir: string;
  const fixtures = new Map<string, Qcow2Fixture>();

  beforeAll(() => {
    assertCapable('qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-qcow2-'));
    for (const fixture of makeQcow2Fixtures(dir)) fixtures.set(fixture.name, fixture);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function open(name: string, threads?: number) {
    // Small chunks, so data runs must split at chunk ends and tables straddle nothing by luck.
    const source = await ChunkedBuffer.fromFile(fixtures.get(name)!.path, 1024 * 1024);
    return openQcow2(source, threads === undefined ? {} : { threads });
  }

  it.each(QCOW2_FIXTURE_NAMES)('%s decodes to qemu-img convert output', async (name) => {
    const expected = qemuRawSha256(fixtures.get(name)!.path, dir);
    const here = await decodeToSha256(await open(name, 0));
    expect(here.sha256).toBe(expected);
    const pooled = await decodeToSha256(await open(name, 2));
    expect(pooled.sha256).toBe(expected);
  });

  it('merges contiguous data clusters and zero runs into few extents', async () => {
    // 4 MiB of 4 KiB clusters: 1024 clusters, but only a handful of runs.
    const { extents } = await decodeToSha256(await open('v3-4k', 0));
    expect(extents).toBeLessThan(40);
  });

  it('reports what it read from the header', async () => {
    const dirty = await open('lazy-dirty');
    expect(dirty.info.features).toMatchObject({ dirty: true, lazyRefcounts: true, version: 3 });
    const snapshots = await open('snapshots');
    expect(snapshots.info.features).toMatchObject({ snapshots: 2 });
    const odd = await open('size-not-512');
    expect(odd.info.virtualSize).toBe(4 * 1024 * 1024);
    expect(odd.info.features).toMatchObject({ storedVirtualSize: 4 * 1024 * 1024 + 100 });
    const zstd = await open('zstd-4k');
    expect(zstd.info).toMatchObject({ compression: 'zstd', clusterSize: 4096 });
    expect(zstd.info.features).toMatchObject({ compressionType: 'zstd' });
    const v2 = await open('v2-64k');
    expect(v2.info.features).toMatchObject({ version: 2, refcountBits: 16 });
    const extended = await open('extl2-64k');
    expect(extended.info.features).toMatchObject({ extendedL2: true });
    const empty = await open('empty');
    expect(empty.info.allocatedBytes).toBe(0);
  });
});
