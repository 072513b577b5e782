// The worker of lib/formats/early-check.ts: the deployment's dry decoding pass, run on the image's bytes
// while they are still arriving. Its source blocks (Atomics.wait) until the bytes a decoder asks
// for have arrived, so the decoders run unchanged. It reports success and the long zero runs (or
// a compressed raw image's first pass), a compressed raw image's refusal, or that it did not
// finish; the deployment then decodes after the download as before.
import { readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { receiveMessageOnPort, workerData, parentPort, type MessagePort } from 'node:worker_threads';
import { verifyImage } from '../write/verify.ts';
import { openImage } from './open.ts';
import { decodeFirstPass, handFirstPass } from './compressed-raw.ts';
import { compressions, type Compression } from './decompress.ts';
import { detectFormat } from './detect.ts';
import { bufferSource } from './guest.ts';
import { ByoiError } from '../errors.ts';
import { defaultThreads } from './decompress-pool.ts';
import type { ImageSource } from '../source/image-source.ts';
import type { EarlyCheckData, EarlyCheckReply } from './early-check.ts';

const {
  type,
  total,
  chunkSize,
  progress,
  passProgress,
  keepDecoded,
  limit,
  chunks: port,
} = workerData as EarlyCheckData & {
  chunks: MessagePort;
};
/** [0]: bytes held by the main thread, or -1 once the check is called off. */
const held = new BigInt64Array(progress);
/** [done, total] of this pass, for the deployment's progress while it waits. */
const passDone = new Float64Array(passProgress);

/** Records how far the pass is (a torn read of the two is harmless: a progress report). */
function tell(done: number, total: number): void {
  passDone[0] = done;
  passDone[1] = total;
}

class CalledOff extends Error {}

/**
 * This thread (and the decompression threads it starts, which inherit it) runs at a lower priority:
 * the pass takes the CPU the download leaves, not the download's. On Linux a nice value is per
 * thread, and setpriority() takes a thread id; /proc/thread-self names this thread's.
 */
function yieldToTheDownload(): void {
  try {
    setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), 10);
  } catch {
    // not Linux, or not allowed: the pass runs at the normal priority
  }
}

/**
 * Every cluster decompressed here is a new buffer that V8 frees late (it lets a thread's dead
 * buffers reach 64 MiB or more): collected once this many bytes of them may be dead instead, as a
 * lean decompression pool does (lib/formats/decompress-pool.ts), to keep the deployment's RSS down.
 * Clusters stored as they are are views of the image's shared chunks, which are not counted there:
 * an uncompressed image is never collected (a full collection per 16 MiB cost a plain 2 GiB
 * image ~0.5 s of this thread's CPU, measured, which the download wanted).
 */
const COLLECT_EVERY = 16 * 1024 * 1024;
const buffersHeld = () => getHeapStatistics().external_memory;
setFlagsFromString('--expose-gc');
const collect = runInNewContext('gc') as () => void;

/** A progress callback that collects once COLLECT_EVERY more bytes are held, looked at every `step` bytes of progress. */
function collecting(step: number): (done: number) => void {
  let checkedAt = 0;
  let heldAfterCollecting = buffersHeld();
  return (done) => {
    if (done - checkedAt < step) return;
    checkedAt = done;
    if (buffersHeld() - heldAfterCollecting < COLLECT_EVERY) return;
    collect();
    heldAfterCollecting = buffersHeld();
  };
}

/**
 * Decompression threads: as a full pass has them (a single core decodes here). The download no longer
 * takes the cores (the kernel reads the body into the image, lib/download/raw-get.ts), and these
 * threads run at this one's low priority: on the 2-core bench machine, two threads against none
 * (decoding here) measured a zlib deployment 2.02 s against 2.40 s and zstd 1.81 against 1.95 s,
 * with ~50 MiB less peak RSS (a lean pool collects as it goes; 3 alternated runs each).
 */
const decompressThreads = defaultThreads();

/** The image's chunks as they arrive: shared memory, read where it lies. */
class ArrivingSource implements ImageSource {
  readonly size = total;
  readonly chunkSize = chunkSize;
  private readonly chunks: Buffer[] = [];

  read(offset: number, length: number): Buffer {
    if (offset < 0 || length < 0 || offset + length > total)
      throw new RangeError(`read of ${length} bytes at ${offset} is outside an image of ${total} bytes`);
    this.waitFor(offset + length);
    if (length === 0) return Buffer.alloc(0);
    const index = Math.floor(offset / chunkSize);
    const within = offset - index * chunkSize;
    if (within + length <= chunkSize) return this.chunks[index]!.subarray(within, within + length);
    const out = Buffer.allocUnsafe(length);
    for (let done = 0; done < length;) {
      const at = offset + done;
      const i = Math.floor(at / chunkSize);
      const w = at - i * chunkSize;
      const n = Math.min(chunkSize - w, length - done);
      this.chunks[i]!.copy(out, done, w, w + n);
      done += n;
    }
    return out;
  }

  private waitFor(end: number): void {
    for (;;) {
      const bytes = Atomics.load(held, 0);
      if (bytes < 0n) throw new CalledOff();
      if (bytes >= BigInt(end)) break;
      Atomics.wait(held, 0, bytes);
    }
    // The chunks that hold them were posted before the count covering them was stored.
    for (let message; this.chunks.length * chunkSize < end && (message = receiveMessageOnPort(port));)
      this.chunks.push(Buffer.from(message.message as SharedArrayBuffer));
  }
}

/**
 * The codec a raw job's file arrives compressed in, if any: told by its first bytes alone (a whole
 * detection also probes near the end, which has not arrived), where every compressed format's
 * magic lies and no earlier probe looks further.
 */
function compressionOf(source: ImageSource): Compression | undefined {
  const { format } = detectFormat(bufferSource(source.read(0, Math.min(source.size, 4096))));
  return compressions.has(format) ? (format as Compression) : undefined;
}

/**
 * A compressed raw image's first pass; kept windows in shared memory, which the deployment's
 * thread writes. Its refusal is final (the deployment gives it after the checksum): decoding the
 * same bytes again would only find it again, a bomb's after as long.
 */
async function firstPass(source: ImageSource, compression: Compression): Promise<EarlyCheckReply> {
  // Decoded chunks (zlib's, zstd's) are new buffers each: collected as the clusters' are. Looked
  // at every MiB read, as a MiB of compressed bytes may be gigabytes of disk.
  const collectAsItGoes = collecting(1024 * 1024);
  try {
    const pass = await decodeFirstPass(source, compression, {
      limit,
      keepDecoded,
      shared: true,
      onProgress: (done, total) => {
        tell(done, total);
        collectAsItGoes(done);
      },
    });
    return { ok: true, compression, firstPass: handFirstPass(pass) };
  } catch (error) {
    if (!(error instanceof ByoiError) || error.kind !== 'refused-image') throw error;
    return { ok: false, reason: error.message, refusal: { code: error.code, detail: error.detail } };
  }
}

async function check(): Promise<EarlyCheckReply> {
  try {
    const source = new ArrivingSource();
    const compression = type === 'raw' ? compressionOf(source) : undefined;
    if (compression) return await firstPass(source, compression);
    // Progressive: each L2 table is read when decoding reaches it, not all before decoding starts.
    // Kept clusters go to the write only from the decompression threads' shared memory: none without them.
    const image = openImage(source, type, {
      lean: true,
      progressive: true,
      threads: decompressThreads,
      keepDecoded: decompressThreads > 0 ? keepDecoded : 0,
    });
    const collectAsItGoes = collecting(COLLECT_EVERY);
    const { longZeroRuns } = await verifyImage(image, ({ done, total }) => {
      tell(done, total);
      collectAsItGoes(done);
    });
    return {
      ok: true,
      longZeroRuns: longZeroRuns.map(([start, end]) => [start, end]),
      kept: image.keptDecoded?.() ?? [],
    };
  } catch (error) {
    // A qcow2's refusal is found again, and reported in order (after the checksum, after what the
    // inspection refuses first), by the pass after the download.
    return { ok: false, reason: error instanceof CalledOff ? 'called off' : (error as Error).message };
  }
}

yieldToTheDownload();
parentPort!.postMessage(await check());
port.close(); // nothing else keeps the thread alive: it ends
