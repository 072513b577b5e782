// An OVA: a tar archive holding an OVF descriptor, its disks and usually a manifest of their
// digests. The archive is read where it lies in RAM (lib/formats/tar.ts); the OVF names the boot
// disk (lib/formats/ovf.ts); every digest the manifest lists is checked before the disk is opened;
// the disk is decoded by the decoder of its format, found by its content: VMDK, qcow2 or raw.
import { ovaBad, ovaManifestMismatch, ovaUnsupported } from '../errors.ts';
import { detectFormat } from './detect.ts';
import { bootDisk, MAX_OVF_BYTES } from './ovf.ts';
import { openQcow2, type Qcow2Options } from './qcow2.ts';
import { openRaw } from './raw.ts';
import { memberSource, tarMembers, type TarMember } from './tar.ts';
import type { DiskImage, ImageInfo } from './types.ts';
import { lendOrRead, type ImageSource } from '../source/image-source.ts';
import { openVmdk } from './vmdk.ts';

const HASH_WINDOW = 4 * 1024 * 1024;
/** Manifest algorithms and the digest length each gives. */
const ALGORITHMS: Readonly<Record<string, { name: string; hexLength: number }>> = {
  SHA1: { name: 'sha1', hexLength: 40 },
  SHA256: { name: 'sha256', hexLength: 64 },
  SHA512: { name: 'sha512', hexLength: 128 },
};

/** "./disk.vmdk" and "disk.vmdk" are the same member. */
const normalise = (name: string): string => name.replace(/^(\.\/)+/, '');

function digestOf(source: ImageSource, member: TarMember, algorithm: string): string {
  // node:crypto is loaded here, not with the decoders: ~3 ms of the start of every command that opens an image.
  const hash = process.getBuiltinModule('node:crypto').createHash(algorithm);
  // Lent and given back: a file's bytes then land in the same memory window after window, where
  // fresh buffers cost a page fault every 4 KiB (the whole member's size in new memory).
  for (let at = 0; at < member.size; at += HASH_WINDOW) {
    const window = lendOrRead(source, member.offset + at, Math.min(HASH_WINDOW, member.size - at));
    hash.update(window);
    source.recycle?.(window);
  }
  return hash.digest('hex');
}

/** Checks every digest the manifest lists; returns the names it covers. */
function verifyManifest(
  source: ImageSource,
  manifest: TarMember,
  members: ReadonlyMap<string, TarMember>,
): Set<string> {
  if (manifest.size > MAX_OVF_BYTES) throw ovaBad(`its manifest is ${manifest.size} bytes long`);
  const covered = new Set<string>();
  const lines = source.read(manifest.offset, manifest.size).toString('utf8').split(/\r?\n/);
  for (const line of lines) {
    if (line.trim() === '') continue;
    const match = /^\s*(SHA1|SHA256|SHA512)\s*\((.+)\)\s*=\s*([0-9a-fA-F]+)\s*$/.exec(line);
    if (!match)
      throw ovaBad(`its manifest has a line that is not "SHA256(name)= digest": ${JSON.stringify(line.slice(0, 80))}`);
    const [, algorithm, rawName, expected] = match as unknown as [string, string, string, string];
    const { name: hashName, hexLength } = ALGORITHMS[algorithm]!;
    if (expected.length !== hexLength)
      throw ovaBad(`its manifest gives a ${algorithm} of ${expected.length} digits for "${rawName}"`);
    const name = normalise(rawName);
    const member = members.get(name);
    if (!member) throw ovaBad(`its manifest lists "${name}", which the archive does not hold`);
    const got = digestOf(source, member, hashName);
    if (got !== expected.toLowerCase()) throw ovaManifestMismatch(name, algorithm, got, expected.toLowerCase());
    covered.add(name);
  }
  return covered;
}

/** The boot disk's decoder, by the disk's content. */
function openDisk(disk: ImageSource, href: string, options: Qcow2Options): DiskImage {
  const detected = detectFormat(disk);
  if (detected.format === 'vmdk' && disk.size >= 4 && disk.read(0, 4).toString('latin1') === 'KDMV')
    return openVmdk(disk, options);
  if (detected.format === 'qcow2') return openQcow2(disk, options);
  if (detected.format === 'gpt' || detected.format === 'mbr') return openRaw(disk);
  throw ovaUnsupported(
    `its boot disk "${href}" is ${detected.description}; byoi reads VMDK (streamOptimized, monolithicSparse), qcow2 and raw disks`,
  );
}

export function openOva(source: ImageSource, options: Qcow2Options = {}): DiskImage {
  const list = tarMembers(source);
  const members = new Map(list.map((member) => [normalise(member.name), member] as const));
  const ovf = list.find((member) => member.name.toLowerCase().endsWith('.ovf'));
  if (!ovf) throw ovaBad('its archive holds no OVF descriptor (.ovf)');
  if (ovf.size > MAX_OVF_BYTES) throw ovaBad(`its OVF descriptor is ${ovf.size} bytes long`);
  const xml = source
    .read(ovf.offset, ovf.size)
    .toString('utf8')
    .replace(/^\uFEFF/, '');
  const { file } = bootDisk(xml);
  const href = normalise(file.href);
  const member = members.get(href);
  if (!member) throw ovaBad(`its boot disk file "${href}" is not in the archive`);
  if (file.size !== undefined && file.size !== member.size)
    throw ovaBad(`its OVF gives "${href}" ${file.size} bytes, the archive holds ${member.size}`);
  const manifest = list.find((m) => m.name.toLowerCase().endsWith('.mf'));
  if (manifest) {
    const covered = verifyManifest(source, manifest, members);
    for (const name of [normalise(ovf.name), href])
      if (!covered.has(name)) throw ovaBad(`its manifest does not list "${name}"`);
  }
  const inner = openDisk(memberSource(source, member), href, options);
  const info: ImageInfo = {
    ...inner.info,
    format: 'ova',
    fileSize: source.size,
    features: {
      ...inner.info.features,
      disk: href,
      diskFormat: inner.info.format,
      manifest: manifest ? 'verified' : 'none',
    },
  };
  return {
    info,
    extents: () => inner.extents(),
    ...(inner.check && { check: () => inner.check!() }),
  };
}
