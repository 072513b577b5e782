// Logging for machines and people: pino JSON lines on stderr, every line scrubbed of secrets;
// on a terminal, a live progress bar per phase with rate and ETA (none when stderr is not a TTY).
import { pino, type Logger } from 'pino';
import cliProgress from 'cli-progress';

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
          ? `${label.padEnd(9)} [{bar}] {percentage}% | {doneH} / {totalH} | {rate} | ETA {eta_formatted}`
          : `${label.padEnd(9)} {doneH} | {rate}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
        fps: 5,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(known ? total : 1, 0, { doneH: bytes(0), totalH: known ? bytes(total) : '?', rate: '' });
  }

  update(done: number, total: number | null, bytesPerSecond: number): void {
    if (!this.bar) return;
    // A total learnt after the start (a download's Content-Length): switch to a bar with ETA.
    if (total !== null && total > 0 && !this.knownTotal) this.start(this.label, total);
    if (total !== null && total > 0) this.bar!.setTotal(total);
    this.bar!.update(total !== null && total > 0 ? done : 0, { doneH: bytes(done), rate: `${bytes(bytesPerSecond)}/s` });
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
