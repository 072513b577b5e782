// Download + hash throughput over loopback: byoi's downloader (into RAM, sha256 as bytes arrive)
// against `curl | sha256sum` on the same bytes from the same server, for each server of
// servers.ts (Python's http.server, nginx, a plain Node server writing 16 KiB .. 1 MiB at a time).
// The target is at least curl's throughput: a time ratio of at most 1.0 from every server.
import { execa } from 'execa';
import { statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { BenchImages } from './images.ts';
import { cacheOnly, interleaved, measure, settleFreedMemory, summary } from './measure.ts';
import type { Row } from './convert.ts';
import { startServers } from './servers.ts';

/** `once`: download-once.ts, or its bundle. */
export async function benchDownload(images: BenchImages, node: string, once: string, runs: number): Promise<Row[]> {
  // The raw image: the largest file, random data and zeros alike.
  const servers = await startServers(dirname(images.raw), node);
  const rows: Row[] = [];
  try {
    for (const server of servers) {
      const url = server.url(basename(images.raw));
      const ours = (await execa(node, [once, url])).stdout.trim();
      const reference = (
        await execa('bash', ['-c', 'set -o pipefail; curl -sSf "$0" | sha256sum | cut -d" " -f1', url])
      ).stdout.trim();
      if (ours !== reference)
        throw new Error(`byoi's download from ${server.name} hashed to ${ours}, curl's to ${reference}`);
      const samples = await interleaved(
        runs,
        {
          ours: () => measure(node, [once, url]),
          reference: () =>
            measure('bash', ['-c', 'set -o pipefail; curl -sSf -o /dev/stdout "$0" | sha256sum >/dev/null', url]),
        },
        async () => {
          await cacheOnly(images.raw, images);
          await settleFreedMemory();
        },
      );
      rows.push({
        name: `download + sha256 from ${server.name}`,
        ours: summary(samples.ours!),
        reference: summary(samples.reference!),
        imageBytes: statSync(images.raw).size,
      });
    }
    return rows;
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}
