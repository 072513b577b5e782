// `byoi convert IMAGE TARGET [--type auto|qcow2|raw]`: the raw disk an image describes, into a
// regular file (sparse) or onto an existing block device. A refused image leaves TARGET untouched.
// The decoders and the writer are imported by the handler, not here (start-up of every command).
import type { CommandModule } from 'yargs';
import { imageFormats, type ImageFormat } from '../../lib/formats/types.ts';
import { run } from '../run.ts';

interface ConvertArgs {
  image: string;
  target: string;
  type: ImageFormat;
}

export const convertCommand: CommandModule<object, ConvertArgs> = {
  command: 'convert <image> <target>',
  describe: 'Write the raw disk an image describes into a file or onto a block device',
  builder: (yargs) =>
    yargs
      .positional('image', { type: 'string', demandOption: true, describe: 'image file' })
      .positional('target', {
        type: 'string',
        demandOption: true,
        describe: 'regular file (created or replaced) or block device',
      })
      .option('type', {
        choices: imageFormats,
        default: 'auto' as ImageFormat,
        describe: 'image format; auto detects it by content',
      }),
  handler: (args) =>
    run(async () => {
      const [{ destinationAt }, { writeImageTo }, { openAnyImage }, { openImageFile }, { roomForDecoded, ramBudget }] =
        await Promise.all([
          import('../../lib/write/destination.ts'),
          import('../../lib/write/write-image.ts'),
          import('../../lib/formats/open.ts'),
          import('./read-image.ts'),
          import('../../lib/system/memory.ts'),
        ]);
      const target = await destinationAt(args.target); // a directory or special file is a usage error: say so before reading the image
      const source = openImageFile(args.image);
      try {
        // The file is not held in RAM, so up to its size in decoded clusters may be held instead,
        // as far as the machine's RAM has room: what the dry pass keeps, the write pass does not
        // decompress again. A compressed raw image may decode to no more than a block device holds.
        const image = await openAnyImage(source, args.type, {
          keepDecoded: Math.min(source.size, roomForDecoded(ramBudget(), 0, 0)),
          ...(target.capacity !== undefined && { limit: target.capacity }),
        });
        const written = await writeImageTo(image, target);
        process.stdout.write(
          `Wrote ${image.info.virtualSize} bytes (${written} of data) from ${image.info.format} image to ${args.target}\n`,
        );
      } finally {
        source.close();
      }
    }),
};
