#!/usr/bin/env node
// A program shaped like the agent, for test/features/build.test.ts: the runtime dependencies the agent
// bundles (yargs, pino on stderr, got, execa), a worker thread started the way decoders do, and the
// native modules (lib/system/huge-pages.ts, lib/formats/native-decoders.ts, the cluster decoders) loaded from
// beside the bundle.
import { Worker } from 'node:worker_threads';
import got from 'got';
import { execa } from 'execa';
import pino from 'pino';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { adviseHugePages } from '../../lib/system/huge-pages.ts';
import { nativeDecoders } from '../../lib/formats/native-decoders.ts';
import { nativeModule } from '../../lib/system/native-module.ts';

const argv = await yargs(hideBin(process.argv))
  .option('square', { type: 'number', demandOption: true })
  // Wide characters in help text: the bundle's stand-in for string-width hands them to the real one.
  .option('wide', {
    type: 'string',
    describe: '全角の文字は二桁を占める 🚀 emoji take two columns too, and this text is long enough to be wrapped',
  })
  .strict()
  .parseAsync();

const log = pino({ base: null }, pino.destination({ dest: 2, sync: true }));
log.info({ probe: true }, 'probe started');

const worker = new Worker(new URL('./square.ts', import.meta.url));
const squared = await new Promise<number>((resolve, reject) => {
  worker.once('message', resolve);
  worker.once('error', reject);
  worker.postMessage(argv.square);
});
await worker.terminate();

const echoed = (await execa('echo', ['execa works'])).stdout;
const hugePages = adviseHugePages(new SharedArrayBuffer(4 * 1024 * 1024));
const decoders = nativeDecoders() !== null;
const clusterDecoders = nativeModule('cluster-decoders') !== null;
process.stdout.write(
  `${JSON.stringify({ squared, echoed, got: typeof got.stream, hugePages, decoders, clusterDecoders })}\n`,
);
