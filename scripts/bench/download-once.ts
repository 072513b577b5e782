// One download into RAM with the sha256 computed as bytes arrive: what `byoi deploy` does before
// verifying. Prints the digest so the bench can check it against the reference's.
import { enableCompileCache } from 'node:module';

enableCompileCache(); // as agent/byoi.ts does
const { download } = await import('../../lib/download.ts');

const url = process.argv[2]!;
const { digest } = await download({ url, headers: {}, type: 'raw', budget: 16 * 1024 ** 3, checksumType: 'sha256' });
console.log(digest);
