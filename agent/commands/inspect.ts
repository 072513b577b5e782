// `byoi inspect IMAGE [--json]`: what an image is and what it holds, or why byoi refuses it.
// The decoders are imported by the handler, not here: `byoi --help` and the other commands do not load them.
import type { CommandModule } from 'yargs';
import type { ImageInfo } from '../../lib/formats/types.ts';
import { run } from '../run.ts';

interface InspectArgs {
  image: string;
  json: boolean;
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <image>',
  describe: 'Show the format, virtual size and features of an image file',
  builder: (yargs) =>
    yargs
      .positional('image', {
        type: 'string',
        demandOption: true,
        describe: 'image file (qcow2, VMDK, OVA, raw, or raw compressed with gzip, xz, zstd or bzip2)',
      })
      .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' }),
  handler: (args) =>
    run(async () => {
      const [{ detectFormat }, { openAnyImage }, { openImageFile }] = await Promise.all([
        import('../../lib/formats/detect.ts'),
        import('../../lib/formats/open.ts'),
        import('./read-image.ts'),
      ]);
      const source = openImageFile(args.image);
      let detected, info;
      try {
        detected = detectFormat(source);
        info = (await openAnyImage(source, 'auto')).info;
      } finally {
        source.close();
      }
      const report = { detected, ...info };
      process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : describe(info, detected.description));
    }),
};

function describe(info: ImageInfo, detected: string): string {
  const lines: [string, string | number][] = [
    ['format', info.format],
    ['content', detected],
    ['virtual size', `${info.virtualSize} bytes (${gib(info.virtualSize)})`],
    ['file size', `${info.fileSize} bytes`],
    ['allocated', `${info.allocatedBytes} bytes`],
  ];
  if (info.clusterSize !== undefined) lines.push(['cluster size', info.clusterSize]);
  if (info.compression !== undefined) lines.push(['compression', info.compression]);
  for (const [name, value] of Object.entries(info.features)) lines.push([name, String(value)]);
  const width = Math.max(...lines.map(([name]) => name.length));
  return lines.map(([name, value]) => `${`${name}:`.padEnd(width + 2)}${value}\n`).join('');
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
