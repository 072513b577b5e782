// Read-back verification for the streaming mode: the twin of WrittenRecord (lib/disk/read-back.ts)
// for pieces that come in any order (a qcow2's clusters in file order, then zeros for what no
// table mapped). The image is cut into fixed blocks; each block that is not all zeros is hashed
// with its index (sha256) and the hashes are XORed together, so the order pieces came in does not
// matter; a bitmap says which blocks hold data. Read back, data blocks are hashed the same way and
// every other block must read as zeros. Memory: one bit per block, plus the blocks being filled.
import { createHash, type Hash } from 'node:crypto';
import { firstNonZero, type ReadBackCheck, type ReadBackRecord } from '../disk/read-back.ts';
import { internalWriteError, readBackMismatch } from '../errors.ts';

/** Blocks of 64 KiB at most: a block's bytes must arrive in order, so no larger than a qcow2 cluster. */
export const MAX_BLOCK = 64 * 1024;

interface Filling {
  readonly hash: Hash;
  filled: number;
  data: boolean;
}

export class BlockRecord implements ReadBackRecord {
  /** Bytes in data blocks (blocks not all zeros). */
  dataBytes = 0;
  readonly block: number;
  /** One bit per block: it holds data. Grows as the image does (a compressed one's size is not known). */
  private blocks = new Uint8Array(1024);
  private readonly sum = Buffer.alloc(32);
  private readonly filling = new Map<number, Filling>();

  /** `block`: a power of two dividing every piece's offset, except where a piece continues the one before it. */
  constructor(block: number) {
    this.block = block;
  }

  /** `data` written at `offset`: each block's bytes must come in order (as pieces of a stream do). */
  add(offset: number, data: Buffer): void {
    for (let at = 0; at < data.length;) {
      const position = offset + at;
      const index = Math.floor(position / this.block);
      let state = this.filling.get(index);
      if (!state) {
        state = { hash: blockHash(index), filled: 0, data: false };
        this.filling.set(index, state);
      }
      // A broken promise of the writer's caller, not the disk's fault.
      if (position !== index * this.block + state.filled)
        throw internalWriteError(`read-back record: block ${index} written out of order`);
      const part = data.subarray(at, at + Math.min(data.length - at, this.block - state.filled));
      state.hash.update(part);
      state.filled += part.length;
      state.data ||= firstNonZero(part) >= 0;
      at += part.length;
      if (state.filled === this.block) this.close(index, state);
    }
  }

  /** The XOR of the data blocks' hashes, as recorded. */
  digest(): string {
    return this.sum.toString('hex');
  }

  /** `size`: the image's; its last block may be short. */
  check(size: number): ReadBackCheck {
    const last = Math.floor(size / this.block);
    const tail = this.filling.get(last);
    if (tail && last * this.block + tail.filled === size) this.close(last, tail);
    if (this.filling.size > 0) throw internalWriteError('read-back record: a block was left part-written');
    const sum = Buffer.alloc(32);
    return {
      chunk: (at, bytes) => {
        if (at % this.block !== 0) throw internalWriteError('read-back chunks must start on a block');
        for (let offset = 0; offset < bytes.length; offset += this.block) {
          const index = (at + offset) / this.block;
          const part = bytes.subarray(offset, offset + this.block);
          if (this.holdsData(index)) xorInto(sum, blockHash(index).update(part).digest());
          else {
            const bad = firstNonZero(part);
            if (bad >= 0) throw readBackMismatch(`byte ${at + offset + bad} should read as zero`);
          }
        }
      },
      end: () => {
        const digest = sum.toString('hex');
        if (digest !== this.digest())
          throw readBackMismatch(`the data read back has digest ${digest}, the data written ${this.digest()}`);
        return digest;
      },
    };
  }

  private close(index: number, state: Filling): void {
    this.filling.delete(index);
    if (!state.data) return;
    xorInto(this.sum, state.hash.digest());
    const byte = index >> 3;
    if (byte >= this.blocks.length) {
      const grown = new Uint8Array(Math.max(byte + 1, this.blocks.length * 2));
      grown.set(this.blocks);
      this.blocks = grown;
    }
    this.blocks[byte]! |= 1 << (index & 7);
    this.dataBytes += state.filled;
  }

  private holdsData(index: number): boolean {
    return ((this.blocks[index >> 3] ?? 0) & (1 << (index & 7))) !== 0;
  }
}

function blockHash(index: number): Hash {
  const label = Buffer.alloc(8);
  label.writeBigUInt64LE(BigInt(index));
  return createHash('sha256').update(label);
}

function xorInto(sum: Buffer, digest: Buffer): void {
  for (let i = 0; i < sum.length; i++) sum[i]! ^= digest[i]!;
}
