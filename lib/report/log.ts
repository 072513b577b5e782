// Logging for machines and people: pino JSON lines on stderr, every line scrubbed of secrets;
// on a terminal, a live progress bar per phase with rate and ETA (none when stderr is not a TTY).
import { pino, type Logger } from 'pino';
import cliProgress from 'cli-progress';
import type { PhaseProgress } from './status.ts';

export type { Logger };

const CLEAR_LINE = '\r\x1b[K';

/** The process-wide progress bar on a TTY; log lines clear it first so the two never interleave. */
export class ProgressBar {
  private bar: cliProgress.SingleBar | undefined;
  private label = '';
  private knownTotal = false;

  get active(): boolean {
    return this.bar !== undefined;
  }

  start(label: string, total: number | null): void {
    this.stop();
    const known = total !== null && total > 0;
    this.label = label;
    this.knownTotal = known;
    this.bar = new cliProgress.SingleBar(
      {
        format: known
          ? `${label.padEnd(9)} [{bar}] {percentage}% | {doneH} / {totalH} | {rate} | ETA {etaH}`
          : `${label.padEnd(9)} {doneH} | {rate}`,
        stream: process.stderr,
        hideCursor: true,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(known ? total : 1, 0, { doneH: bytes(0), totalH: known ? bytes(total) : '?', rate: '', etaH: '' });
  }

  /** The rate and ETA are the caller's (cli-progress's own ETA, over its last updates, jumps about). */
  update({ done, total, bytesPerSecond, etaSeconds }: PhaseProgress): void {
    if (!this.bar) return;
    // A total learnt after the start (a download's Content-Length): switch to a bar with ETA.
    if (total !== null && total > 0 && !this.knownTotal) this.start(this.label, total);
    if (total !== null && total > 0) this.bar!.setTotal(total);
    this.bar!.update(total !== null && total > 0 ? done : 0, {
      doneH: bytes(done),
      rate: `${bytes(bytesPerSecond)}/s`,
      etaH: etaSeconds === null || etaSeconds === undefined ? '?' : duration(etaSeconds),
    });
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

/** 1536 -> "1.5 KiB". */
export function bytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/** 75 -> "1m15s", 3725 -> "1h02m". */
export function duration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/**
 * A pino logger writing synchronously to stderr (so its lines precede the final message), each
 * line passed through `scrub`. When `bar` is given, a line first clears the bar's line.
 */
export function createLogger(scrub: (text: string) => string, bar?: ProgressBar): Logger {
  const destination = {
    write(line: string) {
      process.stderr.write(bar?.active ? `${CLEAR_LINE}${line}` : line);
    },
  };
  return pino({ base: null, hooks: { streamWrite: scrub } }, destination);
}
