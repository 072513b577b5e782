// Digests computed as bytes arrive, and the comparison with the job's checksum.
import { createHash, type Hash } from 'node:crypto';
import { customerFailure, messages } from './errors.ts';
import type { Checksum, ChecksumType } from './job.ts';

export class RunningDigest {
  readonly type: ChecksumType;
  private readonly hash: Hash;

  constructor(type: ChecksumType) {
    this.type = type;
    this.hash = createHash(type);
  }

  update(bytes: Uint8Array): void {
    this.hash.update(bytes);
  }

  /** Lower-case hex; call once, after the last byte. */
  hex(): string {
    return this.hash.digest('hex');
  }
}

/** Throws OVH's mismatch message when the digest differs from the expected one. */
export function verifyChecksum(expected: Checksum, gotHex: string): void {
  if (gotHex.toLowerCase() !== expected.hex) throw customerFailure(messages.checksumMismatch(expected.type, gotHex.toLowerCase(), expected.hex));
}
