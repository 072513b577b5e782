// One place that tells the world how a deployment goes: the status file, the JSON log and, on a
// terminal, the progress bar. Progress is throttled; phase changes and the outcome are not.
import type { Logger, ProgressBar } from '../lib/log.ts';
import type { Progress, StatusFile } from '../lib/status.ts';

const STATUS_INTERVAL_MS = 1000;
const LOG_INTERVAL_MS = 5000;

export class Reporter {
  private readonly status: StatusFile;
  private readonly log: Logger;
  private readonly bar: ProgressBar | undefined;
  private phaseName = 'validate';
  private message = 'Validating the job';
  private phaseStart = Date.now();
  private progressNow: Progress | null = null;
  private checksum: string | null = null;
  private lastStatusAt = 0;
  private lastLogAt = 0;

  constructor(status: StatusFile, log: Logger, bar?: ProgressBar) {
    this.status = status;
    this.log = log;
    this.bar = bar;
  }

  get logger(): Logger {
    return this.log;
  }

  /** Starts a phase; `total` bytes when it moves bytes (null when unknown), undefined otherwise. */
  phase(name: string, message: string, total?: number | null): void {
    this.bar?.stop();
    this.phaseName = name;
    this.message = message;
    this.phaseStart = Date.now();
    this.progressNow = total === undefined ? null : { done: 0, total, bytesPerSecond: 0 };
    this.log.info({ phase: name, ...(total !== undefined && { total }) }, message);
    if (total !== undefined) this.bar?.start(name, total);
    this.writeStatus();
  }

  progress(done: number, total: number | null): void {
    const seconds = (Date.now() - this.phaseStart) / 1000;
    this.progressNow = { done, total, bytesPerSecond: seconds > 0 ? Math.round(done / seconds) : 0 };
    this.bar?.update(done, total, this.progressNow.bytesPerSecond);
    const now = Date.now();
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
    this.log.info({ phase: this.phaseName, seconds, ...(this.progressNow && { progress: this.progressNow }), ...fields }, `${this.message}: finished`);
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
    this.status.write({ status: 'error', message, ...(detail && { detail }), checksum: this.checksum, phase: this.phaseName, progress: this.progressNow });
  }

  private writeStatus(): void {
    this.lastStatusAt = Date.now();
    this.status.write({ status: 'doing', message: this.message, checksum: this.checksum, phase: this.phaseName, progress: this.progressNow });
  }
}
