// The probe's worker thread: squares the number it is sent.
import { parentPort } from 'node:worker_threads';

parentPort?.once('message', (n: number) => parentPort?.postMessage(n * n));
