// Hostile input for the VMDK and OVA decoders: seeded random mutations of small qemu-made VMDKs
// (header fields, grain directory and table entries, grain markers, deflate data, random bytes)
// and of an OVA (tar headers, with and without a fixed-up checksum; OVF text; manifest text).
// Every run (one in eight with its grains inflated on worker threads) must end in a clean
// refused-image ByoiError or in output that keeps the extent contract; a sample of decoded VMDK
// runs is compared with `qemu-img convert` of the same file (qemu refusing a file we decode is
// counted, not failed: it reads fields we do not need).
// Reproduce a failure: VMDK_MUTATION_SEED=<seed> npx vitest run test/formats/vmdk-mutation.test.ts
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openImage } from '../../lib/formats/open.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { decodeMutant, prng, qemuSha256, type Outcome } from '../helpers/mutation-check.ts';
import { makeOva } from '../helpers/ova-fixtures.ts';
import { makeSmallDisk, makeVmdk, toFooterLayout } from '../helpers/vmdk-fixtures.ts';

const RUNS = 1000;
const QEMU_SAMPLES = 100;
const RUN_TIME_LIMIT_MS = 5_000;

interface Seed {
  name: string;
  kind: 'vmdk' | 'ova';
  bytes: Buffer;
  /** VMDK: offsets of directory entries, table entries and grain markers. OVA: tar header offsets and the OVF/manifest ranges. */
  spots: { directory: number[]; tables: number[]; markers: number[]; tarHeaders: number[]; texts: [number, number][] };
}

/** Where the structures of a qemu-made VMDK lie, read independently of the decoder. */
function vmdkSpots(bytes: Buffer): Seed['spots'] {
  let header = bytes.subarray(0, 512);
  if (header.readBigUInt64LE(56) === 0xffffffffffffffffn)
    header = bytes.subarray(bytes.length - 1024, bytes.length - 512);
  const gd = Number(header.readBigUInt64LE(56)) * 512;
  const capacity = Number(header.readBigUInt64LE(12));
  const grain = Number(header.readBigUInt64LE(20));
  const perTable = header.readUInt32LE(44);
  const entries = Math.ceil(capacity / grain / perTable);
  const directory = Array.from({ length: entries }, (_, i) => gd + 4 * i);
  const tables: number[] = [];
  const markers: number[] = [];
  for (const at of directory) {
    const table = bytes.readUInt32LE(at) * 512;
    for (let i = 0; i < perTable; i++) {
      tables.push(table + 4 * i);
      const grainAt = bytes.readUInt32LE(table + 4 * i) * 512;
      if (grainAt > 1) markers.push(grainAt);
    }
  }
  return { directory, tables, markers, tarHeaders: [], texts: [] };
}

/** Tar header offsets and the text members' ranges of an OVA made by ustar tar. */
function ovaSpots(bytes: Buffer): Seed['spots'] {
  const tarHeaders: number[] = [];
  const texts: [number, number][] = [];
  for (let at = 0; at + 512 <= bytes.length;) {
    const block = bytes.subarray(at, at + 512);
    if (block.every((b) => b === 0)) break;
    tarHeaders.push(at);
    const size = parseInt(block.toString('latin1', 124, 136).replace(/\0.*$/, ''), 8);
    const name = block.toString('latin1', 0, 100).replace(/\0.*$/, '');
    if (/\.(ovf|mf)$/.test(name)) texts.push([at + 512, size]);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return { directory: [], tables: [], markers: [], tarHeaders, texts };
}

function fixTarChecksum(bytes: Buffer, at: number): void {
  bytes.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += bytes[at + i]!;
  bytes.write(`${sum.toString(8).padStart(6, '0')}\0 `, at + 148, 'latin1');
}

const HEADER_FIELDS: [number, number][] = [
  [4, 4],
  [8, 4],
  [12, 8],
  [20, 8],
  [28, 8],
  [36, 8],
  [44, 4],
  [48, 8],
  [56, 8],
  [64, 8],
  [77, 2],
];
const TEXT_EDITS = [
  '<',
  '>',
  '"',
  '&amp;',
  '&lt;',
  'ovf:',
  '0',
  '17',
  ' ',
  '\n',
  '<!DOCTYPE x [<!ENTITY a "aaaa">]>',
  '&a;',
  '/disk/vmdisk2',
  'SHA256(x)= 00',
];

function interesting(random: () => number, width: number, current: bigint): bigint {
  const max = (1n << BigInt(8 * width)) - 1n;
  const choices = [
    0n,
    1n,
    max,
    max >> 1n,
    current + 1n,
    current - 1n,
    current * 2n,
    current / 2n,
    current ^ (1n << BigInt(Math.floor(random() * 8 * width))),
    2n ** 31n,
    2n ** 32n,
    2n ** 53n,
    128n,
    512n,
    4096n,
  ];
  return ((choices[Math.floor(random() * choices.length)]! % (max + 1n)) + max + 1n) % (max + 1n);
}

function writeLE(bytes: Buffer, at: number, width: number, value: bigint): void {
  if (at < 0 || at + width > bytes.length) return;
  if (width === 8) bytes.writeBigUInt64LE(value, at);
  else if (width === 4) bytes.writeUInt32LE(Number(value), at);
  else if (width === 2) bytes.writeUInt16LE(Number(value), at);
  else bytes[at] = Number(value);
}

function readLE(bytes: Buffer, at: number, width: number): bigint {
  if (at < 0 || at + width > bytes.length) return 0n;
  return width === 8
    ? bytes.readBigUInt64LE(at)
    : width === 4
      ? BigInt(bytes.readUInt32LE(at))
      : width === 2
        ? BigInt(bytes.readUInt16LE(at))
        : BigInt(bytes[at]!);
}

/** One mutation; returns the new bytes (text edits change the length) and what it did. */
function mutate(input: Buffer, seed: Seed, random: () => number): [Buffer, string] {
  const bytes = Buffer.from(input);
  const pick = <T>(items: readonly T[]): T | undefined =>
    items.length ? items[Math.floor(random() * items.length)] : undefined;
  const kind = Math.floor(random() * 8);
  const field = (at: number | undefined, width: number, what: string): [Buffer, string] => {
    if (at === undefined) return [bytes, 'nothing'];
    const value = interesting(random, width, readLE(bytes, at, width));
    writeLE(bytes, at, width, value);
    return [bytes, `${what} @${at} = ${value}`];
  };
  if (seed.kind === 'vmdk') {
    if (kind === 0) {
      const [at, width] = pick(HEADER_FIELDS)!;
      // The footer layout's header is read from its footer.
      const base = seed.name === 'footer' && random() < 0.7 ? bytes.length - 1024 : 0;
      return field(base + at, width, 'header field');
    }
    if (kind === 1) return field(pick(seed.spots.directory), 4, 'directory entry');
    if (kind === 2) return field(pick(seed.spots.tables), 4, 'table entry');
    if (kind === 3) return field(pick(seed.spots.markers), 8, 'marker lba');
    if (kind === 4) {
      const at = pick(seed.spots.markers);
      return field(at === undefined ? undefined : at + 8, 4, 'marker size');
    }
    if (kind === 5) {
      const at = pick(seed.spots.markers);
      if (at !== undefined) bytes[at + 12 + Math.floor(random() * 200)] = Math.floor(random() * 256);
      return [bytes, `deflate byte near ${at}`];
    }
    if (kind === 6) return [bytes.subarray(0, Math.floor(random() * bytes.length)), 'truncated'];
  } else {
    if (kind <= 1) {
      const header = pick(seed.spots.tarHeaders)!;
      const at = header + Math.floor(random() * 512);
      bytes[at] = Math.floor(random() * 256);
      if (kind === 1) fixTarChecksum(bytes, header);
      return [bytes, `tar header byte @${at}${kind === 1 ? ' (checksum fixed)' : ''}`];
    }
    if (kind <= 4) {
      // Text of the OVF or the manifest: an edit that keeps the tar member's size.
      const [start, size] = pick(seed.spots.texts)!;
      const edit = Buffer.from(pick(TEXT_EDITS)!);
      const at = start + Math.floor(random() * Math.max(1, size - edit.length));
      edit.copy(bytes, at, 0, Math.min(edit.length, start + size - at));
      return [bytes, `text @${at} = ${JSON.stringify(edit.toString())}`];
    }
    if (kind === 5) return [bytes.subarray(0, Math.floor(random() * bytes.length)), 'truncated'];
  }
  const at = Math.floor(random() * bytes.length);
  bytes[at] = Math.floor(random() * 256);
  return [bytes, `byte @${at}`];
}

describe.skipIf(skipWithout('qemu-img'))('VMDK and OVA decoders under random mutation', () => {
  let dir: string;
  const seeds: Seed[] = [];

  beforeAll(() => {
    assertCapable('qemu-img');
    dir = mkdtempSync(join(tmpdir(), 'byoi-vmdk-mutation-'));
    const raw = join(dir, 'disk.raw');
    makeSmallDisk(raw, 2 * 1024 * 1024 + 1536);
    const stream = makeVmdk(raw, join(dir, 'disk1.vmdk'), 'streamOptimized');
    const sparse = makeVmdk(raw, join(dir, 'sparse.vmdk'), 'monolithicSparse');
    const footer = toFooterLayout(stream, join(dir, 'footer.vmdk'));
    for (const [name, path] of [
      ['stream', stream],
      ['sparse', sparse],
      ['footer', footer],
    ] as const) {
      const bytes = readFileSync(path);
      seeds.push({ name, kind: 'vmdk', bytes, spots: vmdkSpots(bytes) });
    }
    const ova = readFileSync(makeOva(dir, 'seed', [{ path: stream, capacity: 2 * 1024 * 1024 + 1536, address: '0' }]));
    seeds.push({ name: 'ova', kind: 'ova', bytes: ova, spots: ovaSpots(ova) });
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`ends every one of ${RUNS} runs in a correct output or a clean refusal`, { timeout: 300_000 }, async () => {
    const only = process.env.VMDK_MUTATION_SEED;
    const runSeeds = only ? [Number(only)] : Array.from({ length: RUNS }, (_, i) => 0x51ed270b + i);
    const tally = { refused: 0, capped: 0, decoded: 0, comparedWithQemu: 0, qemuRefusedWhatWeDecoded: 0 };
    for (const runSeed of runSeeds) {
      const random = prng(runSeed);
      const seed = seeds[Math.floor(random() * seeds.length)]!;
      let bytes = seed.bytes;
      const mutations: string[] = [];
      for (let i = 1 + Math.floor(random() * 3); i > 0; i--) {
        let what: string;
        [bytes, what] = mutate(bytes, seed, random);
        mutations.push(what);
      }
      const context = `seed ${runSeed} on ${seed.name}: ${mutations.join('; ')}`;
      const started = performance.now();
      let outcome: Outcome;
      try {
        // One run in eight inflates its grains on worker threads (whatever their number).
        const options = runSeed % 8 === 0 ? { threads: 2 } : {};
        outcome = await decodeMutant(bytes, (source) => openImage(source, seed.kind, options));
      } catch (error) {
        throw new Error(`${context}: ${(error as Error).stack}`, { cause: error });
      }
      const elapsed = performance.now() - started;
      if (elapsed > RUN_TIME_LIMIT_MS) throw new Error(`${context}: took ${elapsed.toFixed(0)} ms`);
      tally[outcome.kind]++;
      if (
        outcome.kind === 'decoded' &&
        outcome.sha256 &&
        seed.kind === 'vmdk' &&
        tally.comparedWithQemu < QEMU_SAMPLES &&
        runSeed % 3 === 0
      ) {
        const reference = qemuSha256(bytes, dir, 'vmdk');
        if (reference === undefined) tally.qemuRefusedWhatWeDecoded++;
        else {
          tally.comparedWithQemu++;
          if (reference !== outcome.sha256)
            throw new Error(`${context}: decoded ${outcome.sha256}, qemu-img ${reference}`);
        }
      }
    }
    console.log('VMDK/OVA mutation runs:', JSON.stringify(tally));
    if (!only) {
      expect(tally.refused).toBeGreaterThan(RUNS / 10);
      expect(tally.decoded).toBeGreaterThan(RUNS / 10);
      expect(tally.comparedWithQemu).toBeGreaterThan(30);
    }
  });
});
