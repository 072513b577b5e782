// Worker threads that decompress batches of qcow2 clusters, so decompression runs on the other cores
// while the main thread walks the map and writes. A batch's compressed bytes are copied into one
// transferable buffer; its clusters come back in one transferred buffer, in order.
import { Worker } from 'node:worker_threads';
import { decompressCluster, type Codec } from './qcow2-decompress.ts';
import { decompressionStopped, decompressionWorkerFailed } from '../errors.ts';

/** A batch that did not decompress: which cluster of it, and why. */
export interface BatchFailure {
  readonly index: number;
  readonly reason: string;
}

interface Request {
  id: number;
  codec: Codec;
  clusterSize: number;
  input: ArrayBuffer;
  /** [start, length] of each cluster's bytes in `input`. */
  bounds: number[];
}

type Reply = { id: number; output: ArrayBuffer } | { id: number; index: number; reason: string };

// Runs inside each worker: CommonJS `eval` code, built from `decompressCluster`'s own source text.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const zlib = require('node:zlib');
const decompressCluster = (${decompressCluster.toString()});
parentPort.on('message', ({ id, codec, clusterSize, input, bounds }) => {
  const output = Buffer.allocUnsafeSlow((bounds.length / 2) * clusterSize);
  for (let i = 0; i < bounds.length / 2; i++) {
    const cluster = decompressCluster(zlib, codec, new Uint8Array(input, bounds[2 * i], bounds[2 * i + 1]), clusterSize);
    if (typeof cluster === 'string') return parentPort.postMessage({ id, index: i, reason: cluster });
    cluster.copy(output, i * clusterSize);
  }
  parentPort.postMessage({ id, output: output.buffer }, [output.buffer]);
});
`;

interface Pending {
  resolve(result: Buffer | BatchFailure): void;
  reject(error: Error): void;
}

export class DecompressPool {
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly load = new Map<Worker, number>();
  private readonly codec: Codec;
  private readonly clusterSize: number;
  private nextId = 0;
  private failure: Error | undefined;

  constructor(codec: Codec, clusterSize: number, threads: number) {
    this.codec = codec;
    this.clusterSize = clusterSize;
    for (let i = 0; i < threads; i++) {
      const worker = new Worker(WORKER_SOURCE, { eval: true });
      worker.on('message', (reply: Reply) => this.settle(worker, reply));
      worker.on('error', (error) => this.fail(decompressionWorkerFailed(error.message)));
      worker.on('exit', (code) => {
        if (this.workers.includes(worker)) this.fail(decompressionWorkerFailed(`a worker exited with code ${code}`));
      });
      this.workers.push(worker);
      this.load.set(worker, 0);
    }
  }

  /** The batch's clusters, one after the other, or the first that failed. */
  decompress(inputs: readonly Buffer[]): Promise<Buffer | BatchFailure> {
    if (this.failure) return Promise.reject(this.failure);
    let total = 0;
    for (const input of inputs) total += input.length;
    const packed = Buffer.allocUnsafeSlow(total);
    const bounds: number[] = [];
    let at = 0;
    for (const input of inputs) {
      input.copy(packed, at);
      bounds.push(at, input.length);
      at += input.length;
    }
    let worker = this.workers[0]!;
    for (const candidate of this.workers) if (this.load.get(candidate)! < this.load.get(worker)!) worker = candidate;
    this.load.set(worker, this.load.get(worker)! + 1);
    const id = this.nextId++;
    const request: Request = { id, codec: this.codec, clusterSize: this.clusterSize, input: packed.buffer as ArrayBuffer, bounds };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      worker.postMessage(request, [request.input]);
    });
  }

  /** Stops the workers; batches still pending are rejected. */
  async close(): Promise<void> {
    const workers = this.workers.splice(0);
    this.fail(decompressionStopped());
    await Promise.all(workers.map((worker) => worker.terminate()));
  }

  private settle(worker: Worker, reply: Reply): void {
    const waiting = this.pending.get(reply.id);
    if (!waiting) return;
    this.pending.delete(reply.id);
    this.load.set(worker, this.load.get(worker)! - 1);
    waiting.resolve('output' in reply ? Buffer.from(reply.output) : { index: reply.index, reason: reply.reason });
  }

  private fail(error: Error): void {
    this.failure ??= error;
    for (const waiting of this.pending.values()) waiting.reject(error);
    this.pending.clear();
  }
}
