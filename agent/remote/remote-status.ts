// The status as the agent reports it: the local status file (when asked for) and, as an event for
// the API, every change the Reporter makes, scrubbed of secrets like the file.
import type { AgentEvent } from '../../lib/api/store/types.ts';
import type { ErrorKind, Fault } from '../../lib/errors.ts';
import { StatusFile, type StatusChange } from '../../lib/report/status.ts';
import type { EventQueue } from './queue.ts';

export class RemoteStatus extends StatusFile {
  private readonly queue: EventQueue;
  private readonly scrubText: (text: string) => string;
  /** Set before reporting an error, so the API can tell a refused image from a failure. */
  errorKind: ErrorKind | null = null;
  /** Set with errorKind: a customerError or an ovhError. */
  fault: Fault | null = null;

  constructor(path: string | undefined, scrub: (text: string) => string, queue: EventQueue) {
    super(path, scrub);
    this.queue = queue;
    this.scrubText = scrub;
  }

  override write(change: StatusChange): void {
    super.write(change);
    const { status, message, detail, checksum, phase, progress } = JSON.parse(
      this.scrubText(JSON.stringify(change)),
    ) as StatusChange;
    const event: AgentEvent = { status, message, checksum, phase, progress, at: new Date().toISOString() };
    this.queue.push(
      status === 'error'
        ? { ...event, errorKind: this.errorKind, fault: this.fault, detail: detail?.slice(0, 4096) ?? null }
        : event,
    );
  }
}
