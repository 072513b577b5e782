// Download + hash throughput over loopback: byoi's downloader (into RAM, sha256 as bytes arrive)
// against `curl | sha256sum` on the same bytes from the same server. The target is >= 0.9x curl's
// throughput, i.e. a time ratio <= 1.11.
import { execa } from 'execa';
import { createReadStream, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { BenchImages } from './images.ts';
import { interleaved, measure, summary } from './measure.ts';
import type { Row } from './convert.ts';

function serveFile(file: string): Promise<Server> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-length': statSync(file).size, 'content-type': 'application/octet-stream' });
    createReadStream(file, { highWaterMark: 1024 * 1024 }).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

export async function benchDownload(images: BenchImages, node: string, runs: number): Promise<Row[]> {
  const once = fileURLToPath(new URL('./download-once.ts', import.meta.url));
  // The raw image: the largest file, random data and zeros alike.
  const server = await serveFile(images.raw);
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/image`;
  try {
    const ours = (await execa(node, [once, url])).stdout.trim();
    const reference = (await execa('bash', ['-c', 'set -o pipefail; curl -sSf "$0" | sha256sum | cut -d" " -f1', url])).stdout.trim();
    if (ours !== reference) throw new Error(`byoi's download hashed to ${ours}, curl's to ${reference}`);
    const samples = await interleaved(runs, {
      ours: () => measure(node, [once, url]),
      reference: () => measure('bash', ['-c', 'set -o pipefail; curl -sSf -o /dev/stdout "$0" | sha256sum >/dev/null', url]),
    });
    return [{ name: 'download + sha256 (loopback)', ours: summary(samples.ours!), reference: summary(samples.reference!), imageBytes: statSync(images.raw).size }];
  } finally {
    server.closeAllConnections();
    server.close();
  }
}
