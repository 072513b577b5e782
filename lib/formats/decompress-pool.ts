// Worker threads that decompress batches of compressed clusters (qcow2's, a VMDK's grains), so
// decompression runs on the other cores while the main thread walks the map and writes. A batch's
// compressed bytes are read by the worker itself from the image file when there is one (the main
// thread only says where), otherwise copied into one transferable buffer; a batch to keep comes back in a slot of the pool's arena
// (lib/formats/slot-arena.ts), one cluster after another.
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { Worker } from 'node:worker_threads';
import { decompressBatch, decompressCluster, OWN_BUFFER_CLUSTER_SIZE, type Codec } from './cluster-decompress.ts';
import { nativeModulePath } from '../system/native-module.ts';
import type { Slot, SlotArena } from './slot-arena.ts';
import { decompressionStopped, decompressionWorkerFailed, imageFileChanged, imageFileUnreadable } from '../errors.ts';

/** Compressed batches in flight per worker: keeps the workers busy, and memory bounded. */
export const BATCHES_PER_WORKER = 4;
/** Below this many compressed clusters, starting workers costs more than it saves. */
export const POOL_THRESHOLD = 64;
/**
 * Decompressed bytes a pass makes on the calling thread before it starts its workers (unless told
 * a number of threads): a pass that stops early (the inspect step's reads of a partition table and
 * a partition's first bytes) never starts them. Starting and stopping two workers cost 0.13-0.45 s
 * per such read on the bench machine.
 */
export const DECODE_HERE_FIRST = 4 * 1024 * 1024;

/** Decompression threads of a full pass: one per core, up to 4; none on a single core. */
export function defaultThreads(): number {
  const cores = availableParallelism();
  return cores > 1 ? Math.min(cores, 4) : 0;
}

/** A batch that did not decompress: which cluster of it, and why. */
export interface BatchFailure {
  readonly index: number;
  readonly reason: string;
}

/** A batch's clusters, in order. */
export interface DecodedBatch {
  readonly pieces: Buffer[];
  /**
   * Gives their memory back: a slot of the pool's arena for the next batch, or buffers decoded on
   * the calling thread freed (batch-decoder.ts); absent: it is collected.
   */
  readonly release?: () => void;
}

/** What every worker of a pool is started with (its workerData). */
interface WorkerSettings {
  /** One Int32: 1 once the pool closes. */
  closing: SharedArrayBuffer;
  /** Bytes of output between the worker's collections (COLLECT_EVERY). */
  collectEvery: number;
  /** The native cluster decoders' file, where they load in this process: the worker loads them too. */
  clusterDecoders: string | undefined;
}

interface Request {
  id: number;
  codec: Codec;
  clusterSize: number;
  /** false: a dry pass; the clusters are decompressed and checked, then dropped, not sent back. */
  keep: boolean;
  /** The batch's compressed bytes, copied here; or, with `span`, read by the worker. */
  input?: ArrayBuffer;
  /** Where in the image file the batch's bytes lie (FileSpan), for the worker to read them itself. */
  span?: FileSpan & { position: number; length: number };
  /** [start, length] of each cluster's bytes in `input` (or in the span). */
  bounds: number[];
  /** With `keep`: where the worker puts the clusters, one after another. */
  out?: { memory: SharedArrayBuffer; offset: number; length: number };
}

/** An image file the workers read themselves: its descriptor (shared by the process's threads). */
export interface FileSpan {
  readonly fd: number;
}

/**
 * Done (the clusters checked, and put in the slot if kept), or the failure, or why the span could
 * not be read (the file ended at `endedAt`, or the read failed); the request's input buffer, if any,
 * always comes back for reuse.
 */
type Reply = { id: number; input?: ArrayBuffer } & (
  { done: true; natively: boolean } | { index: number; reason: string } | { readError: string; endedAt?: number }
);

/**
 * Each cluster zlib or zstd decompresses is a new buffer, freed only when V8 collects it; V8 lets a
 * thread's dead buffers reach 64 MiB or more before it does, so two workers of a dry pass alone
 * would hold ~170 MiB of garbage. decompressBatch frees clusters of Buffer.poolSize bytes or more
 * itself; for smaller ones, each worker collects after every `collectEvery` bytes of them (default:
 * this; measured on the bench images before clusters were freed: peak RSS -65 MiB for ~10% more
 * decompression CPU).
 */
const COLLECT_EVERY = 32 * 1024 * 1024;
/** `lean`: workers collect this often. */
const LEAN_COLLECT_EVERY = 16 * 1024 * 1024;

export interface PoolOptions {
  /**
   * Keep memory down at some CPU: workers collect twice as often. For a caller that holds the whole
   * image in RAM besides (a deployment).
   */
  readonly lean?: boolean;
}

/**
 * Each worker's young generation, in MiB. By default V8 grows it to tens of MiB per thread under
 * the batches' many small objects, and keeps those pages once grown (collecting does not shrink
 * it). Measured (a zstd 8 GiB deployment with RAM for the image only, 2 alternated runs each):
 * peak RSS -45 MiB, time unchanged; conversions and deployments that keep decoded clusters
 * unchanged in time too.
 */
const YOUNG_GENERATION_MB = 6;

/** Input buffers are at least this large, so one fits most batches. */
const MIN_INPUT_BUFFER = 2 * 1024 * 1024;

// Runs inside each worker: CommonJS `eval` code, built from `decompressCluster`'s and `decompressBatch`'s own source text.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { readSync } = require('node:fs');
const zlib = require('node:zlib');
const decompressCluster = (${decompressCluster.toString()});
const decompressBatch = (${decompressBatch.toString()});
const closing = new Int32Array(workerData.closing);
const collectEvery = workerData.collectEvery;
// Where they do not load in this thread, decompressCluster decodes.
let native = null;
try {
  if (workerData.clusterDecoders) native = require(workerData.clusterDecoders);
} catch {}
let sinceCollected = 0;
// Where spans are read: reused, so reading leaves no garbage behind.
let spanBuffer = new ArrayBuffer(0);
parentPort.on('message', (message) => {
  if (message === 'close') return parentPort.close(); // nothing else keeps the thread alive: it ends
  if (Atomics.load(closing, 0) === 1) return; // a batch queued before the close: nobody waits for it
  const { id, codec, clusterSize, keep, span, bounds, out } = message;
  let input = message.input;
  if (span) {
    if (spanBuffer.byteLength < span.length) spanBuffer = new ArrayBuffer(Math.max(span.length, ${MIN_INPUT_BUFFER}));
    const bytes = new Uint8Array(spanBuffer, 0, span.length);
    try {
      for (let done = 0; done < span.length;) {
        const n = readSync(span.fd, bytes, done, span.length - done, span.position + done);
        // The file shrank after it was opened: its bytes are no longer the image that was checked.
        if (n === 0) return parentPort.postMessage({ id, readError: 'ended', endedAt: span.position + done });
        done += n;
      }
    } catch (error) {
      return parentPort.postMessage({ id, readError: String(error && error.message || error) });
    }
    input = spanBuffer;
  }
  const count = bounds.length / 2;
  // decompressBatch frees larger clusters itself once checked or copied; smaller ones are garbage
  // (none with the native decoders, which decode into the slot or one scratch cluster).
  if (clusterSize < Buffer.poolSize && !native) sinceCollected += count * clusterSize;
  if (sinceCollected >= collectEvery && typeof gc === 'function') {
    sinceCollected = 0;
    gc();
  }
  const inputs = [];
  for (let i = 0; i < count; i++) inputs.push(new Uint8Array(input, bounds[2 * i], bounds[2 * i + 1]));
  const into = keep ? Buffer.from(out.memory, out.offset, out.length) : undefined;
  const result = decompressBatch(zlib, codec, inputs, clusterSize, keep, decompressCluster, ${OWN_BUFFER_CLUSTER_SIZE}, into, native);
  const back = span ? {} : { input };
  const transferBack = span ? [] : [input];
  if (!Array.isArray(result)) return parentPort.postMessage({ id, ...back, index: result.index, reason: result.reason }, transferBack);
  parentPort.postMessage({ id, ...back, done: true, natively: native !== null }, transferBack);
});
`;

/** How long close() waits for a worker to finish its batch and end. */
const CLOSE_TIMEOUT_MS = 10_000;

interface Pending {
  resolve(result: DecodedBatch | BatchFailure): void;
  reject(error: Error): void;
  /** The arena's slot the worker fills (a batch to keep), and how many bytes of it. */
  slot?: Slot;
  filled: number;
}

export class DecompressPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly load = new Map<Worker, number>();
  private readonly codec: Codec;
  private readonly clusterSize: number;
  private nextId = 0;
  /** Input buffers back from the workers: reused, so compressed bytes leave no garbage behind. */
  private readonly spareInputs: ArrayBuffer[] = [];
  private failure: Error | undefined;
  /** Whether the last batch done was decoded by the native cluster decoders (undefined before one). */
  decodedNatively: boolean | undefined;
  /** Set to 1 on close: workers skip the batches still queued to them. */
  private readonly closing = new Int32Array(new SharedArrayBuffer(4));
  private readonly exited = new Set<Worker>();
  private readonly arena: SlotArena;

  /** `arena`: where the batches to keep are put; its slots must hold a batch. */
  constructor(codec: Codec, clusterSize: number, threads: number, arena: SlotArena, options: PoolOptions = {}) {
    this.codec = codec;
    this.clusterSize = clusterSize;
    // Gives the workers started from now on a global gc() (see COLLECT_EVERY). V8 flags are
    // process-wide; this one only adds that function to new contexts.
    setFlagsFromString('--expose-gc');
    this.arena = arena;
    for (let i = 0; i < threads; i++) {
      const settings: WorkerSettings = {
        closing: this.closing.buffer as SharedArrayBuffer,
        collectEvery: options.lean ? LEAN_COLLECT_EVERY : COLLECT_EVERY,
        clusterDecoders: nativeModulePath('cluster-decoders'),
      };
      const worker = new Worker(WORKER_SOURCE, {
        eval: true,
        workerData: settings,
        resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
      });
      worker.on('message', (reply: Reply) => this.settle(worker, reply));
      worker.on('error', (error) => this.fail(decompressionWorkerFailed(error.message)));
      worker.on('exit', (code) => {
        this.exited.add(worker);
        if (this.workers.includes(worker)) this.fail(decompressionWorkerFailed(`a worker exited with code ${code}`));
      });
      this.workers.push(worker);
      this.load.set(worker, 0);
    }
  }

  /**
   * The batch's clusters in order, in a slot of the arena, or the first that failed. With `keep`
   * false (a dry pass) the clusters are checked but not kept: success is no pieces.
   */
  decompress(inputs: readonly Buffer[], keep = true): Promise<DecodedBatch | BatchFailure> {
    if (this.failure) return Promise.reject(this.failure);
    const { packed, bounds } = this.pack(inputs);
    return this.send({
      id: this.nextId++,
      codec: this.codec,
      clusterSize: this.clusterSize,
      keep,
      input: packed,
      bounds,
    });
  }

  /**
   * As `decompress`, for clusters the worker reads itself from `file`: the bytes [position, position +
   * length), cluster i at `bounds[2i]` from `position` for `bounds[2i + 1]` bytes. A file that ends
   * before the span, or cannot be read, rejects.
   */
  decompressSpan(
    file: FileSpan,
    position: number,
    length: number,
    bounds: number[],
    keep = true,
  ): Promise<DecodedBatch | BatchFailure> {
    if (this.failure) return Promise.reject(this.failure);
    const span = { fd: file.fd, position, length };
    return this.send({ id: this.nextId++, codec: this.codec, clusterSize: this.clusterSize, keep, span, bounds });
  }

  /** The inputs copied end to end into one transferable buffer (a spare one when one fits). */
  private pack(inputs: readonly Buffer[]): { packed: ArrayBuffer; bounds: number[] } {
    let total = 0;
    for (const input of inputs) total += input.length;
    const spare = this.spareInputs.findIndex((buffer) => buffer.byteLength >= total);
    const buffer =
      spare >= 0 ? this.spareInputs.splice(spare, 1)[0]! : new ArrayBuffer(Math.max(total, MIN_INPUT_BUFFER));
    const packed = Buffer.from(buffer);
    const bounds: number[] = [];
    let at = 0;
    for (const input of inputs) {
      input.copy(packed, at);
      bounds.push(at, input.length);
      at += input.length;
    }
    return { packed: buffer, bounds };
  }

  /**
   * Keeps an input buffer back from a worker for the next batches: at most as many as a pass keeps
   * in flight, the largest. Kept all, batches each a little larger than the last (clusters of 2 MiB
   * that claim up to 4 MiB each) held one more buffer per batch: gigabytes for a file of a few MiB.
   */
  private keepSpare(input: ArrayBuffer): void {
    const most = this.workers.length * BATCHES_PER_WORKER;
    if (this.spareInputs.length < most) {
      this.spareInputs.push(input);
      return;
    }
    let smallest = 0;
    this.spareInputs.forEach((spare, i) => {
      if (spare.byteLength < this.spareInputs[smallest]!.byteLength) smallest = i;
    });
    if (this.spareInputs[smallest]!.byteLength < input.byteLength) this.spareInputs[smallest] = input;
  }

  /** To the least loaded worker, with a slot of the arena to fill if the clusters are to be kept. */
  private send(request: Request): Promise<DecodedBatch | BatchFailure> {
    const filled = (request.bounds.length / 2) * this.clusterSize;
    if (filled > this.arena.slotSize)
      throw new RangeError(`a batch of ${filled} bytes for slots of ${this.arena.slotSize}`);
    let worker = this.workers[0]!;
    for (const candidate of this.workers) if (this.load.get(candidate)! < this.load.get(worker)!) worker = candidate;
    this.load.set(worker, this.load.get(worker)! + 1);
    const slot = request.keep ? this.arena.take() : undefined;
    if (slot) request.out = { memory: slot.memory, offset: slot.offset, length: filled };
    return new Promise((resolve, reject) => {
      this.pending.set(request.id, { resolve, reject, filled, ...(slot && { slot }) });
      worker.postMessage(request, request.input ? [request.input] : []);
    });
  }

  /**
   * Between passes: the workers stay, waiting, but do not keep the process alive (they end with it,
   * idle). `resume` before sending more batches.
   */
  idle(): void {
    for (const worker of this.workers) worker.unref();
  }

  resume(): void {
    for (const worker of this.workers) worker.ref();
  }

  /** false once a worker failed or the pool was closed. */
  get usable(): boolean {
    return this.failure === undefined;
  }

  /**
   * Stops the workers; batches still pending are rejected. Each worker finishes the batch in hand
   * and ends by itself: terminating one mid-batch can abort the whole process (Node 24 asserts in
   * its cleanup when termination lands between creating a zlib/zstd context and initialising it).
   */
  async close(): Promise<void> {
    const workers = this.workers.splice(0);
    this.fail(decompressionStopped());
    Atomics.store(this.closing, 0, 1);
    await Promise.all(
      workers.map(async (worker) => {
        if (this.exited.has(worker)) return;
        const exited = new Promise((resolve) => worker.once('exit', resolve));
        worker.postMessage('close');
        // A batch takes milliseconds; one that never ends is stopped the hard way.
        const timer = setTimeout(() => void worker.terminate(), CLOSE_TIMEOUT_MS);
        await exited;
        clearTimeout(timer);
      }),
    );
  }

  private settle(worker: Worker, reply: Reply): void {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    this.pending.delete(reply.id);
    this.load.set(worker, this.load.get(worker)! - 1);
    if (reply.input) this.keepSpare(reply.input);
    const { slot } = waiting;
    if (slot && !('done' in reply)) this.arena.give(slot);
    if ('done' in reply) this.decodedNatively = reply.natively;
    if ('readError' in reply)
      return waiting.reject(
        reply.endedAt === undefined ? imageFileUnreadable(reply.readError) : imageFileChanged(reply.endedAt),
      );
    if ('index' in reply) return waiting.resolve({ index: reply.index, reason: reply.reason });
    if (!slot) return waiting.resolve({ pieces: [] });
    let given = false;
    const release = () => {
      if (!given) this.arena.give(slot);
      given = true;
    };
    waiting.resolve({ pieces: [slot.bytes.subarray(0, waiting.filled)], release });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }
}
