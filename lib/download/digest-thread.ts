// A digest computed on a worker thread, so hashing runs beside the main thread's receiving and
// copying instead of after it (`curl | sha256sum` gets two processes; a download into RAM gets this).
// The bytes are not copied to the worker: they lie in SharedArrayBuffers (ChunkedBuffer's chunks).
// Each buffer is sent to the worker once (sending one costs ~0.5 ms), then runs of its bytes by
// (buffer id, offset, length), a message per MiB or so.
// The worker also makes the pages of a chunk resident before the main thread copies into it,
// which takes the page faults of filling fresh memory off the main thread too.
import { Worker } from 'node:worker_threads';
import type { ChecksumType } from '../job.ts';
import { PAGE_SIZE } from '../source/aligned-memory.ts';

/** Bytes gathered before they are sent: fewer messages, and hash calls of a good size. */
const BATCH_BYTES = 1024 * 1024;

type Message =
  | { kind: 'buffer'; id: number; buffer: SharedArrayBuffer; prefault?: { offset: number; length: number } }
  | { kind: 'update'; id: number; offset: number; length: number }
  | { kind: 'copy'; bytes: Uint8Array }
  | { kind: 'digest' }
  | { kind: 'reset' };

// CommonJS `eval` code. Prefaulting writes a byte of each page with a compare-exchange of 0 for 0: whatever
// the main thread has written there already (it may be copying into the same chunk) stays as is.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
let hash = createHash(workerData.type);
const buffers = new Map();
parentPort.on('message', (message) => {
  switch (message.kind) {
    case 'buffer': {
      buffers.set(message.id, message.buffer);
      if (!message.prefault) break;
      const { offset, length } = message.prefault;
      const bytes = new Uint8Array(message.buffer);
      const page = workerData.pageSize;
      for (let i = Math.floor(offset / page) * page; i < offset + length; i += page) Atomics.compareExchange(bytes, i, 0, 0);
      break;
    }
    case 'update': hash.update(new Uint8Array(buffers.get(message.id), message.offset, message.length)); break;
    case 'copy': hash.update(message.bytes); break;
    case 'digest': parentPort.postMessage(hash.digest('hex')); // falls through: a new digest starts
    case 'reset': hash = createHash(workerData.type); buffers.clear(); break;
  }
});
`;

export class DigestThread {
  readonly type: ChecksumType;
  private readonly worker: Worker;
  /** The worker's id of each buffer it was sent. */
  private ids = new WeakMap<SharedArrayBuffer, number>();
  private nextId = 0;
  /** The run of bytes not sent yet (kept as numbers: no object per update). */
  private pendingBuffer: ArrayBufferLike | undefined;
  private pendingOffset = 0;
  private pendingLength = 0;
  private failure: Error | undefined;

  constructor(type: ChecksumType) {
    this.type = type;
    this.worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { type, pageSize: PAGE_SIZE } });
    this.worker.on('error', (error) => (this.failure = error));
    // Idle, it does not keep the process alive; a hex() in flight does.
    this.worker.unref();
  }

  /** Feeds `bytes`, which must not change until hex() resolves (ChunkedBuffer's bytes do not). */
  update(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    if (this.pendingBuffer === bytes.buffer && this.pendingOffset + this.pendingLength === bytes.byteOffset) {
      this.pendingLength += bytes.length;
    } else {
      this.flush();
      this.pendingBuffer = bytes.buffer;
      this.pendingOffset = bytes.byteOffset;
      this.pendingLength = bytes.length;
    }
    if (this.pendingLength >= BATCH_BYTES) this.flush();
  }

  /** Makes a chunk's pages resident on the worker's time, before the main thread fills it. */
  prefault(chunk: Uint8Array): void {
    if (chunk.buffer instanceof SharedArrayBuffer)
      this.idOf(chunk.buffer, { offset: chunk.byteOffset, length: chunk.byteLength });
  }

  /** Lower-case hex of everything fed; the digest starts afresh after. */
  async hex(): Promise<string> {
    this.flush();
    this.worker.ref();
    try {
      return await new Promise<string>((resolve, reject) => {
        if (this.failure) return reject(this.failure);
        const onError = (error: Error) => reject(error);
        this.worker.once('error', onError);
        this.worker.once('message', (hex: string) => {
          this.worker.off('error', onError);
          resolve(hex);
        });
        this.post({ kind: 'digest' });
        this.ids = new WeakMap();
      });
    } finally {
      this.worker.unref();
    }
  }

  /** Forgets every byte fed so far. */
  reset(): void {
    this.pendingBuffer = undefined;
    this.ids = new WeakMap();
    this.post({ kind: 'reset' });
  }

  /** Ends the worker; nothing may be fed after. */
  async close(): Promise<void> {
    await this.worker.terminate();
  }

  /** The worker's id of `buffer`, sent to it first if new (with the bytes to make resident, if any). */
  private idOf(buffer: SharedArrayBuffer, prefault?: { offset: number; length: number }): number {
    let id = this.ids.get(buffer);
    if (id === undefined) {
      id = this.nextId++;
      this.ids.set(buffer, id);
      this.post({ kind: 'buffer', id, buffer, ...(prefault && { prefault }) });
    }
    return id;
  }

  private flush(): void {
    const buffer = this.pendingBuffer;
    if (buffer === undefined) return;
    this.pendingBuffer = undefined;
    // Bytes outside shared memory (none of ChunkedBuffer's) are copied to the worker.
    if (!(buffer instanceof SharedArrayBuffer))
      return this.post({ kind: 'copy', bytes: new Uint8Array(buffer, this.pendingOffset, this.pendingLength).slice() });
    this.post({ kind: 'update', id: this.idOf(buffer), offset: this.pendingOffset, length: this.pendingLength });
  }

  private post(message: Message): void {
    this.worker.postMessage(message);
  }
}
