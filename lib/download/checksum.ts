// The comparison of a digest with the job's checksum (the digest itself: lib/download/digest-thread.ts).
import { checksumMismatch } from '../errors.ts';
import type { Checksum } from '../job.ts';

/** Throws OVH's mismatch message when the digest differs from the expected one. */
export function verifyChecksum(expected: Checksum, gotHex: string): void {
  if (gotHex.toLowerCase() !== expected.hex) throw checksumMismatch(expected.type, gotHex.toLowerCase(), expected.hex);
}
