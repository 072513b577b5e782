// Run by decompress-pool-close.test.ts in a process of its own (a native abort must not take the test
// runner down): opens a compressed qcow2 with worker threads, takes a few extents and stops, again
// and again, so the pool is closed while its workers are busy decompressing. Prints "done".
import { FileSource } from '../../lib/source/file-source.ts';
import { openImage } from '../../lib/formats/open.ts';

const [path, rounds] = process.argv.slice(2);
const source = new FileSource(path!);
for (let round = 0; round < Number(rounds); round++) {
  let taken = 0;
  for await (const _extent of openImage(source, 'qcow2', { threads: 2 }).extents())
    if (++taken > 20 + (round % 50)) break;
}
source.close();
process.stdout.write('done\n');
