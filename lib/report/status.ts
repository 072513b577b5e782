// The status file: OVH's ByoiStatus ({status, message, checksum, servername}) plus the phase and
// its progress. Replaced atomically (temp file + rename) so a reader never sees half a file.
import { renameSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import type { PhaseName } from './phases.ts';

export type StatusState = 'doing' | 'done' | 'error';

export interface PhaseProgress {
  readonly done: number;
  /** Null when the total is unknown (a download without Content-Length). */
  readonly total: number | null;
  readonly bytesPerSecond: number;
  /** Seconds left at the current rate; null when the total or the rate is unknown. */
  readonly etaSeconds?: number | null;
}

export interface Status {
  readonly status: StatusState;
  readonly message: string;
  /** The cause of an error in more words. */
  readonly detail?: string;
  /** The image's checksum once computed, as "<type>:<hex>". */
  readonly checksum: string | null;
  readonly servername: string;
  readonly phase: PhaseName;
  readonly progress: PhaseProgress | null;
  readonly updatedAt: string;
}

export type StatusChange = Omit<Status, 'servername' | 'updatedAt'>;

export class StatusFile {
  private readonly path: string | undefined;
  private readonly scrub: (text: string) => string;
  private readonly servername = hostname();

  /** With no path, updates are dropped. `scrub` removes secrets from the serialised status. */
  constructor(path: string | undefined, scrub: (text: string) => string) {
    this.path = path;
    this.scrub = scrub;
  }

  write(change: StatusChange): void {
    if (!this.path) return;
    const status: Status = { ...change, servername: this.servername, updatedAt: new Date().toISOString() };
    const temp = `${this.path}.${process.pid}.tmp`;
    writeFileSync(temp, `${this.scrub(JSON.stringify(status, null, 2))}\n`);
    renameSync(temp, this.path);
  }
}
