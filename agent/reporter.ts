// One place that tells the world how a deployment goes: the status file, the JSON log and, on a
// terminal, the progress bar. Progress (bytes done and total, rate, ETA) is throttled to at most
// two JSON log lines and two status writes a second; phase changes and the outcome are not. The
// rate (and the ETA drawn from it) is the one of the last few seconds.
import type { Logger, ProgressBar } from '../lib/report/log.ts';
import type { PhaseName } from '../lib/report/phases.ts';
import { RateMeter } from '../lib/report/rate.ts';
import type { PhaseProgress, StatusFile } from '../lib/report/status.ts';

const STATUS_INTERVAL_MS = 500;
const LOG_INTERVAL_MS = 500;

export class Reporter {
  private readonly status: StatusFile;
  private readonly log: Logger;
  private readonly bar: ProgressBar | undefined;
  private phaseName: PhaseName = 'validate';
  private message = 'Validating the job';
  private phaseStart = Date.now();
  private rate = new RateMeter();
  private progressNow: PhaseProgress | null = null;
  private checksum: string | null = null;
  private lastStatusAt = 0;
  private lastLogAt = 0;
  private readonly stop: AbortSignal | undefined;

  /** `stop`: once aborted (the deployment was cancelled), the next phase or checkpoint throws its reason. */
  constructor(status: StatusFile, log: Logger, bar?: ProgressBar, stop?: AbortSignal) {
    this.status = status;
    this.log = log;
    this.bar = bar;
    this.stop = stop;
  }

  /**
   * Throws the stop's reason once the deployment is cancelled. Called where a throw unwinds the
   * pipeline cleanly: every phase start, and the progress of the passes over the image (the
   * writer then leaves the disk without a partition table).
   */
  checkpoint(): void {
    this.stop?.throwIfAborted();
  }

  /** Aborted once the deployment is cancelled: for what waits on others (a download) between checkpoints. */
  get cancelled(): AbortSignal | undefined {
    return this.stop;
  }

  get logger(): Logger {
    return this.log;
  }

  /** Starts a phase; `total` bytes when it moves bytes (null when unknown), undefined otherwise. */
  phase(name: PhaseName, message: string, total?: number | null): void {
    this.checkpoint();
    this.bar?.stop();
    this.phaseName = name;
    this.message = message;
    this.phaseStart = Date.now();
    this.rate = new RateMeter();
    this.rate.sample(0, this.phaseStart);
    this.progressNow = total === undefined ? null : { done: 0, total, bytesPerSecond: 0, etaSeconds: null };
    this.log.info({ phase: name, ...(total !== undefined && { total }) }, message);
    if (total !== undefined) this.bar?.start(name, total);
    this.writeStatus();
  }

  /** The current phase's byte total, once it is known after the phase began: starts its progress. */
  phaseTotal(total: number): void {
    this.progressNow = { done: 0, total, bytesPerSecond: 0, etaSeconds: null };
    this.bar?.start(this.phaseName, total);
  }

  progress(done: number, total: number | null): void {
    const now = Date.now();
    const bytesPerSecond = this.rate.sample(done, now);
    const etaSeconds =
      total !== null && bytesPerSecond > 0 ? Math.max(0, Math.round((total - done) / bytesPerSecond)) : null;
    this.progressNow = { done, total, bytesPerSecond, etaSeconds };
    this.bar?.update(this.progressNow);
    if (now - this.lastStatusAt >= STATUS_INTERVAL_MS) this.writeStatus();
    if (!this.bar && now - this.lastLogAt >= LOG_INTERVAL_MS) {
      this.lastLogAt = now;
      this.log.info({ phase: this.phaseName, progress: this.progressNow }, 'progress');
    }
  }

  /** Closes a byte-moving phase with its final figures. */
  endPhase(fields: Record<string, unknown> = {}): void {
    this.bar?.stop();
    const seconds = (Date.now() - this.phaseStart) / 1000;
    this.log.info(
      { phase: this.phaseName, seconds, ...(this.progressNow && { progress: this.progressNow }), ...fields },
      `${this.message}: finished`,
    );
    this.writeStatus();
  }

  setChecksum(checksum: string): void {
    this.checksum = checksum;
  }

  done(message: string): void {
    this.bar?.stop();
    this.log.info({ phase: 'done' }, message);
    this.status.write({ status: 'done', message, checksum: this.checksum, phase: 'done', progress: null });
  }

  error(message: string, detail: string | undefined): void {
    this.bar?.stop();
    this.log.error({ phase: this.phaseName, ...(detail && { detail }) }, message);
    this.status.write({
      status: 'error',
      message,
      ...(detail && { detail }),
      checksum: this.checksum,
      phase: this.phaseName,
      progress: this.progressNow,
    });
  }

  private writeStatus(): void {
    this.lastStatusAt = Date.now();
    this.status.write({
      status: 'doing',
      message: this.message,
      checksum: this.checksum,
      phase: this.phaseName,
      progress: this.progressNow,
    });
  }
}
