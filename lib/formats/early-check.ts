// The dry decoding pass of a deployment, started while the image downloads: every cluster decoded
// and checked before the first write, as before, but on a worker thread that follows the bytes as
// they arrive (lib/formats/early-check-worker.ts), so that little of it is left when the last byte comes.
// Nothing is written meanwhile: this only reads. Its result stands only for the very bytes held
// at the end (the same ChunkedBuffer, never restarted, of the announced length); otherwise, or if
// a qcow2's pass refused anything, the deployment runs the pass after the download as before,
// which finds and reports any refusal in the usual order (after the checksum).
//
// A raw job's file that arrives compressed (.raw.xz and the like) has its first pass run here
// (lib/formats/compressed-raw.ts `decodeFirstPass`): the inspection takes it (`firstPass`) instead
// of decoding the stream itself after the download, and so does the write where it kept every
// window. Its refusal (a corrupt stream, a disk past the target's size) is the inspection's: given
// after the checksum, in the words decoding found, without decoding again.
//
// A qcow2 is decoded progressively (lib/formats/qcow2.ts `progressive`): each L2 table is read when
// decoding reaches it, not all of them first, since a GPT disk's last table is written near the
// file's end. So decoding keeps up with the bytes in guest order and waits only for that last part.
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { ChunkedBuffer } from '../source/chunked-buffer.ts';
import type { VerifiedImage } from '../write/verify.ts';
import type { DiskImage, HandedBatch } from './types.ts';
import type { ImageType } from '../job.ts';
import { takeFirstPass, type FirstPass, type HandedFirstPass } from './compressed-raw.ts';
import type { Compression } from './decompress.ts';
import { ByoiError, type ErrorCode } from '../errors.ts';

export interface EarlyCheckData {
  readonly type: 'qcow2' | 'raw';
  readonly total: number;
  readonly chunkSize: number;
  /** One BigInt64: bytes held, -1 once called off. */
  readonly progress: SharedArrayBuffer;
  /** Two Float64s the pass writes: how far it is, of how much (guest bytes; a compressed raw image's file bytes read). */
  readonly passProgress: SharedArrayBuffer;
  /** Bytes of decoded clusters (or a compressed raw image's windows) the pass may keep for the write. */
  readonly keepDecoded: number;
  /** A compressed raw image may not decode to more than this many bytes (the target's size). */
  readonly limit: number;
}

export type EarlyCheckReply =
  | { ok: true; longZeroRuns: [number, number][]; kept: HandedBatch[] }
  | { ok: true; compression: Compression; firstPass: HandedFirstPass }
  | { ok: false; reason: string; refusal?: Refusal };

/** Why a compressed raw image's first pass refused it (a ByoiError of kind refused-image; its message is the reply's reason). */
export interface Refusal {
  readonly code: ErrorCode;
  readonly detail: string | undefined;
}

/** How far the pass is, `done` of `total`: reported while the deployment waits for it. */
export type PassProgress = (done: number, total: number) => void;

/** How often the pass's progress is reported while the deployment waits for it (ms). */
const PROGRESS_EVERY_MS = 250;

/** Bytes of decoded clusters the pass may keep, for an image of `total` bytes of which `held` have arrived. */
export type RoomForDecoded = (total: number, held: number) => number;

export interface EarlyCheckOptions {
  /** Bytes of decoded clusters (or a compressed raw image's windows) the pass may keep for the write: default none. */
  readonly room?: RoomForDecoded;
  /** A compressed raw image may not decode to more than this many bytes: the target's size. */
  readonly limit: number;
}

export class EarlyCheck {
  private readonly type: 'qcow2' | 'raw';
  private image: ChunkedBuffer | undefined;
  private total = 0;
  private worker: Worker | undefined;
  private port: MessagePort | undefined;
  private held: BigInt64Array | undefined;
  /** [done, total] of the pass, as the worker writes them. */
  private passDone: Float64Array | undefined;
  private posted = 0;
  private reply: Promise<EarlyCheckReply> | undefined;
  /** What became of it, for the log: 'used', or why not. */
  outcome = 'not started';
  /** How long the pass still ran after the last byte arrived (ms). */
  waitedMs: number | undefined;
  /** Set once the bytes followed are no longer the image's (a restart, a segmented download). */
  private void = false;
  private readonly room: RoomForDecoded;
  private readonly limit: number;
  /** Bytes of decoded clusters the pass kept and the write takes instead of decoding them again. */
  keptBytes = 0;
  /** Set once the inspection asked for a compressed raw image's first pass (`firstPass`), which settled the outcome. */
  private firstPassAsked = false;

  /** Only qcow2 and raw (plain or compressed) are followed: an OVA is decoded after the checksum. */
  constructor(type: ImageType, options: EarlyCheckOptions) {
    this.room = options.room ?? (() => 0);
    this.limit = options.limit;
    if (type === 'qcow2' || type === 'raw') this.type = type;
    else {
      this.type = 'raw';
      this.void = true;
    }
  }

  /** The download holds `image`'s bytes so far, of `total` announced (null: unknown). */
  follow(image: ChunkedBuffer, total: number | null): void {
    if (this.void) return;
    if (this.image === undefined) {
      if (total === null || total === 0) return this.callOff();
      this.start(image, total);
    } else if (image !== this.image || total !== this.total) return this.callOff();
    for (; this.posted * image.chunkSize < image.size; this.posted++)
      this.port!.postMessage(image.chunk(this.posted).buffer);
    Atomics.store(this.held!, 0, BigInt(image.size));
    Atomics.notify(this.held!, 0);
  }

  /**
   * Once the download is done: the verification of `opened` (the image opened over `source`) if the
   * pass ran over exactly these bytes and found nothing to refuse, else undefined (also once
   * `firstPass` was asked: a compressed raw image's dry pass replays the first pass it gave).
   * `onProgress`: how far the pass is, while this waits for it.
   */
  async result(
    source: ChunkedBuffer,
    opened: DiskImage,
    onProgress?: PassProgress,
  ): Promise<VerifiedImage | undefined> {
    if (this.firstPassAsked) return undefined;
    // A raw job's file that arrived compressed is opened as another disk than the one followed.
    const other = opened.info.format !== this.type || (this.type === 'raw' && opened.info.compression !== undefined);
    const reply = other ? this.notUsed() : await this.finish(source, onProgress);
    if (!reply) return undefined;
    if (!reply.ok) return this.notUsed(reply.reason);
    if (!('longZeroRuns' in reply)) return this.notUsed('it decoded another kind of image');
    this.outcome = 'used';
    if (opened.adoptDecoded) {
      opened.adoptDecoded(reply.kept);
      for (const batch of reply.kept) this.keptBytes += batch.length;
    }
    return { image: opened, longZeroRuns: reply.longZeroRuns };
  }

  /**
   * Once the download is done, for a raw job's file in `format`: the first pass over its decoded
   * disk, run while the bytes arrived, if it ran over exactly these bytes; undefined if it did not
   * (the caller decodes itself). Rejects where it refused the image, in the words decoding found:
   * a bomb is not decoded twice up to the disk's size. `onProgress`: how far the pass is (the
   * file's bytes it has read), while this waits for it.
   */
  async firstPass(
    source: ChunkedBuffer,
    format: Compression,
    onProgress?: PassProgress,
  ): Promise<FirstPass | undefined> {
    this.firstPassAsked = true;
    const reply = await this.finish(source, onProgress);
    if (!reply) return undefined;
    if (!reply.ok) {
      this.notUsed(reply.reason);
      if (!reply.refusal) return undefined;
      this.outcome = 'used: it refused the image';
      throw new ByoiError('refused-image', reply.refusal.code, reply.reason, { detail: reply.refusal.detail });
    }
    if (!('firstPass' in reply) || reply.compression !== format)
      return this.notUsed('it decoded another kind of image');
    this.outcome = 'used';
    const pass = takeFirstPass(reply.firstPass);
    for (const window of pass.kept?.values() ?? []) this.keptBytes += window.length;
    return pass;
  }

  /** The pass's reply, once it ended, if it followed exactly `source`'s bytes; else undefined, with why in `outcome`. */
  private async finish(source: ChunkedBuffer, onProgress?: PassProgress): Promise<EarlyCheckReply | undefined> {
    if (this.void || this.image !== source || source.size !== this.total || !this.reply)
      return this.notUsed('it did not follow these bytes from the start');
    this.follow(source, this.total);
    this.worker?.ref(); // now something waits for it
    const started = performance.now();
    // A report that fails (the deployment cancelled, its status file not written) calls the pass
    // off and fails this once the worker has ended: thrown from a timer, it would end the process.
    let reportFailed: { error: unknown } | undefined;
    const report = () => {
      const [done, total] = this.passDone!;
      try {
        if (total! > 0 && !reportFailed) onProgress?.(done!, total!);
      } catch (error) {
        reportFailed = { error };
        this.callOff();
      }
    };
    report();
    const ticks = onProgress && setInterval(report, PROGRESS_EVERY_MS);
    const reply = await this.reply;
    clearInterval(ticks);
    report();
    this.reply = undefined; // what it holds goes with what takes it
    this.waitedMs = Math.round(performance.now() - started);
    // Its isolate refers to the image's chunks until it ends: ended now, so that they can be freed.
    await this.worker?.terminate();
    this.worker = undefined;
    this.port?.close();
    if (reportFailed) throw reportFailed.error;
    return reply;
  }

  private notUsed(reason = 'it did not follow these bytes from the start'): undefined {
    this.callOff();
    this.outcome = `not used: ${reason}`;
    return undefined;
  }

  /** Stops following: the worker ends at its next read (a failed download must call this). */
  callOff(): void {
    this.void = true;
    if (this.held) {
      Atomics.store(this.held, 0, -1n);
      Atomics.notify(this.held, 0);
    }
    this.port?.close();
    void this.worker?.terminate();
    this.worker = undefined;
  }

  private start(image: ChunkedBuffer, total: number): void {
    this.image = image;
    this.total = total;
    const progress = new SharedArrayBuffer(8);
    this.held = new BigInt64Array(progress);
    const passProgress = new SharedArrayBuffer(16);
    this.passDone = new Float64Array(passProgress);
    const { port1, port2 } = new MessageChannel();
    this.port = port1;
    const data: EarlyCheckData & { chunks: MessagePort } = {
      type: this.type,
      total,
      chunkSize: image.chunkSize,
      progress,
      passProgress,
      keepDecoded: this.room(total, image.size),
      limit: this.limit,
      chunks: port2,
    };
    const worker = new Worker(new URL('./early-check-worker.ts', import.meta.url), {
      workerData: data,
      transferList: [port2],
    });
    this.worker = worker;
    // Never what keeps the process alive: a deployment that fails after the download does not wait for it.
    worker.unref();
    this.reply = new Promise<EarlyCheckReply>((resolve) => {
      worker.once('message', resolve);
      worker.once('error', (error) => resolve({ ok: false, reason: error.message }));
      worker.once('exit', () => resolve({ ok: false, reason: 'the worker ended' }));
    });
  }
}
