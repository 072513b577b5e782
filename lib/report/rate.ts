// The current rate of a byte-moving phase, over a sliding window of the last few seconds: a rate
// averaged since the phase began lags behind after a stall or a change of speed, and its ETA with it.

const WINDOW_MS = 5000;
/** Samples closer together than this add nothing to the window. */
const SAMPLE_MS = 100;

export class RateMeter {
  private samples: { at: number; done: number }[] = [];

  /** Records `done` bytes at time `at` (ms) and returns the bytes per second over the window. */
  sample(done: number, at: number): number {
    const last = this.samples.at(-1);
    // Fewer bytes than before: the work started over (a download restarted); so does the window.
    if (last && done < last.done) this.samples = [];
    if (!last || done < last.done || at - last.at >= SAMPLE_MS) this.samples.push({ at, done });
    while (this.samples.length > 2 && at - this.samples[1]!.at >= WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    const seconds = (at - first.at) / 1000;
    return seconds > 0 ? Math.max(0, Math.round((done - first.done) / seconds)) : 0;
  }
}
