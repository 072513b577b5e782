// Runs a command under GNU time and returns its wall time and peak RSS: the same instrument for
// byoi and for the reference tools, so ratios compare like with like. The wall time is taken here
// (GNU time's is rounded to 10 ms, which hides a start-up): it includes starting GNU time itself,
// about 1 ms, for every contender alike.
import { execa } from 'execa';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchImages } from './images.ts';

export interface Measurement {
  seconds: number;
  peakRssBytes: number;
}

export async function measure(command: string, args: string[]): Promise<Measurement> {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-time-'));
  const out = join(dir, 'time');
  try {
    const started = process.hrtime.bigint();
    const result = await execa('/usr/bin/time', ['-f', '%M', '-o', out, command, ...args], {
      reject: false,
      all: true,
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    if (result.exitCode !== 0)
      throw new Error(`${command} ${args.join(' ')} failed (${result.exitCode}):\n${result.all}`);
    const kib = Number(readFileSync(out, 'utf8').trim().split('\n').pop());
    return { seconds, peakRssBytes: kib * 1024 };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Runs each contender `runs` times, interleaved, so drift in the machine's load hits all alike.
 * `prepare` runs untimed before every run, so each starts from the same state.
 */
export async function interleaved(
  runs: number,
  contenders: Record<string, () => Promise<Measurement>>,
  prepare: () => Promise<void> = async () => {},
): Promise<Record<string, Measurement[]>> {
  const results: Record<string, Measurement[]> = {};
  for (const name of Object.keys(contenders)) results[name] = [];
  for (let i = 0; i < runs; i++) {
    for (const [name, run] of Object.entries(contenders)) {
      await prepare();
      results[name]!.push(await run());
    }
  }
  return results;
}

/**
 * Writes back and drops a block device's page cache (BLKFLSBUF), so that no run pays for the
 * writeback of the one before it and every run starts with the device uncached.
 */
export async function flushDevice(device: string): Promise<void> {
  await execa('blockdev', ['--flushbufs', device]);
}

/**
 * The page cache holds `served` whole and none of the bench's other images: every run of a case
 * starts from the same memory state. Otherwise what the runs before left cached decides
 * how much of the image comes from disk (~0.6 GB/s here, against several GB/s from the cache) and,
 * with 8 GiB images, which pages the kernel evicts during a run: the same command measured 4.3 s
 * in one row and 5.8 s in another of the same run.
 */
export async function cacheOnly(served: string, images: BenchImages): Promise<void> {
  const others = [images.raw, ...Object.values(images.qcow2)].filter((image) => image !== served);
  await execa('sync', others); // dirty pages (images just made) cannot be dropped
  for (const other of others) {
    // GNU dd: with count=0, nocache drops the file's whole cache (posix_fadvise DONTNEED).
    await execa('dd', [`if=${other}`, 'iflag=nocache', 'count=0', 'status=none']);
  }
  await execa('dd', [`if=${served}`, 'of=/dev/null', 'bs=4M', 'status=none']);
}

/** Before a timed run onto `device`: the device flushed and uncached, `served` alone cached (cacheOnly). */
export async function freshRun(device: string, served: string, images: BenchImages): Promise<void> {
  await flushDevice(device);
  await cacheOnly(served, images);
  await settleFreedMemory();
}

/**
 * The guest kernel's count of memory handed back to the hypervisor (free page reporting), where it
 * says so: the VMs this project is benchmarked on have it, bare metal does not.
 */
const REPORTED_KIB = '/sys/module/page_reporting/parameters/reported_kib';
/** Longer than the reporter takes to hand back what a run freed (~1.6 s measured). */
const REPORTING_QUIET_MS = 2500;
const REPORTING_WAIT_MAX_MS = 15_000;

/**
 * Waits until the memory the last run freed has been handed back to the hypervisor. In a VM that
 * reports free pages, memory a run touches for the first time costs a fault in the host once it
 * has been reported (here ~2.7 ms of system time per MiB, a zlib deployment's 1.1 GiB: 1.1-2 s
 * more), and not before: a run started within ~1.6 s of the last one's exit is fast, one started
 * later slow, and the medians were either. Every run now starts with the freed memory reported.
 */
export async function settleFreedMemory(): Promise<void> {
  if (!existsSync(REPORTED_KIB)) return;
  const reported = () => readFileSync(REPORTED_KIB, 'utf8').trim();
  const start = Date.now();
  let last = reported();
  let since = start;
  while (Date.now() - since < REPORTING_QUIET_MS) {
    if (Date.now() - start >= REPORTING_WAIT_MAX_MS) {
      // Something else keeps freeing memory: this run starts in whichever state, and says so.
      console.error(`bench: free page reporting still busy after ${REPORTING_WAIT_MAX_MS / 1000} s; running anyway`);
      return;
    }
    await sleep(100);
    const now = reported();
    if (now !== last) [last, since] = [now, Date.now()];
  }
}

export function summary(samples: Measurement[]): Measurement {
  return {
    seconds: median(samples.map((s) => s.seconds)),
    peakRssBytes: Math.max(...samples.map((s) => s.peakRssBytes)),
  };
}
