// Run by decompress-pool-close.test.ts in a process of its own: dry passes that run to their end leave
// their decompression workers idle for a writing pass that, here, mostly never comes. The process
// must still end by itself (nothing closes those workers) and normally. Prints "done".
import { FileSource } from '../../lib/source/file-source.ts';
import { openImage } from '../../lib/formats/open.ts';

const [path, rounds] = process.argv.slice(2);
const source = new FileSource(path!);
for (let round = 0; round < Number(rounds); round++) {
  const image = openImage(source, 'qcow2', { threads: 2 });
  for await (const _shape of image.check!()) continue;
  // Every other image is also written: its writing pass takes the dry pass's workers and ends them.
  if (round % 2 === 0) for await (const _extent of image.extents()) continue;
}
source.close();
process.stdout.write('done\n');
