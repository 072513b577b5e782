// The long-link benchmark's byoi client: one download into RAM with sha256, timed in-process (Node's
// start under TCG takes seconds and is no part of the transfer). Prints "<seconds> <sha256>".
// Usage: node long-link-client.ts URL [CONNECTIONS]  (several: segmented, whatever the image's size)
import { download } from '../../lib/download/download.ts';

const [url, connections = '1'] = process.argv.slice(2) as [string, string?];
const started = performance.now();
const { digest } = await download({
  url,
  headers: {},
  type: 'raw',
  budget: 8 * 1024 ** 3,
  checksumType: 'sha256',
  connections: Number(connections),
  segmentedMinBytes: 0,
});
console.log(`${((performance.now() - started) / 1000).toFixed(3)} ${digest}`);
