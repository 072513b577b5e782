// `byoi convert` against `qemu-img convert -n -O raw`, both onto the same loop device.
import { createHash } from 'node:crypto';
import { createReadStream, openSync, closeSync, ftruncateSync, rmSync } from 'node:fs';
import type { BenchImages } from './images.ts';
import { freshRun, interleaved, measure, summary, type Measurement } from './measure.ts';
import { attachLoop, detachLoop } from '../../test/helpers/loop.ts';

export interface Row {
  name: string;
  ours: Measurement;
  reference: Measurement;
  /** The strongest reference: qemu-img with O_DIRECT (`-t none`), the same pipeline with it for deploy. */
  direct?: Measurement;
  /** deploy: `curl | sha256sum` of the same URL, the download alone. */
  downloadAlone?: Measurement;
  imageBytes: number;
}

/** sha256 of the bytes [start, end) of a file or device. */
export async function sha256Of(path: string, end: number, start = 0): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path, { start, end: end - 1, highWaterMark: 4 * 1024 * 1024 }))
    hash.update(chunk as Buffer);
  return hash.digest('hex');
}

export async function benchConvert(
  images: BenchImages,
  node: string,
  byoi: string,
  runs: number,
  sizes: Record<string, number>,
): Promise<Row[]> {
  const backing = '/dev/shm/byoi-bench-convert-target';
  const fd = openSync(backing, 'w');
  ftruncateSync(fd, images.virtualSize);
  closeSync(fd);
  const device = attachLoop(backing);
  try {
    const expected = await sha256Of(images.raw, images.virtualSize);
    const rows: Row[] = [];
    for (const [name, image] of Object.entries(images.qcow2)) {
      // Correctness first: a fast wrong answer is no result.
      await measure(node, [byoi, 'convert', image, device, '--type', 'qcow2']);
      const got = await sha256Of(device, images.virtualSize);
      if (got !== expected) throw new Error(`byoi convert of ${name} wrote ${got}, expected ${expected}`);
      // qemu-img convert's default target cache mode is "unsafe": it exits without flushing, leaving
      // the data in the page cache. `-t writeback` makes it fdatasync at the end, as byoi does.
      const samples = await interleaved(
        runs,
        {
          ours: () => measure(node, [byoi, 'convert', image, device, '--type', 'qcow2']),
          reference: () =>
            measure('qemu-img', ['convert', '-t', 'writeback', '-n', '-f', 'qcow2', '-O', 'raw', image, device]),
          direct: () => measure('qemu-img', ['convert', '-t', 'none', '-n', '-f', 'qcow2', '-O', 'raw', image, device]),
        },
        () => freshRun(device, image, images),
      );
      rows.push({
        name: `convert qcow2 ${name}`,
        ours: summary(samples.ours!),
        reference: summary(samples.reference!),
        direct: summary(samples.direct!),
        imageBytes: sizes[image]!,
      });
    }
    return rows;
  } finally {
    detachLoop(device);
    rmSync(backing, { force: true });
  }
}
