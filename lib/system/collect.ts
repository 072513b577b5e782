// A full garbage collection on demand, for the rare point where a program knows that much memory
// has just become garbage and V8 would free it late (SharedArrayBuffers' memory, outside its heap).
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gc: (() => void) | undefined;

/** Collects every isolate-unreachable object of this thread now. */
export function collectGarbage(): void {
  if (!gc) {
    // `gc` is defined only in contexts made after the flag is set: a new one is made for it.
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}
