// The disks of this machine as a rescue system finds them: what each is, what holds it, and whether
// it may be deployed onto.
import { readFile, readdir, readlink } from 'node:fs/promises';
import { basename } from 'node:path';
import type { LsblkDevice } from './lsblk.ts';
import { readLsblk } from './lsblk.ts';

export type Transport = 'nvme' | 'sata' | 'sas' | 'virtio' | 'usb' | 'scsi' | 'other';
/** The media kinds OVH names disk groups by ("NVME", "SSD", "HDD"). */
export type Media = 'NVME' | 'SSD' | 'HDD';

/** Something that keeps a disk busy: it must be released before the disk is written. */
export interface Holder {
  kind: 'mount' | 'swap' | 'md' | 'lvm' | 'crypt' | 'dm';
  /** The device that is held or holds (a partition, /dev/md127, a dm name). */
  device: string;
  /** A mountpoint for mounts. */
  mountpoint?: string;
  /** True for a filesystem the running system needs (its root, /usr, the rescue media...). */
  system: boolean;
  /** How deep in the device stack: 0 the disk, 1 a partition, 2 an md array or LV on it, ... */
  depth: number;
}

export interface Disk {
  name: string;
  path: string;
  /** Stable /dev/disk/by-id path, when udev made one. */
  byId: string | undefined;
  size: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  rotational: boolean;
  transport: Transport;
  media: Media;
  model: string | undefined;
  serial: string | undefined;
  wwn: string | undefined;
  holders: Holder[];
  /** Why this disk is never picked by a disk group, or undefined if it may be. */
  excluded: string | undefined;
}

// Mountpoints a rescue or installed system cannot live without: such a disk is never released.
const SYSTEM_MOUNTS = [
  '/',
  '/usr',
  '/var',
  '/etc',
  '/boot',
  '/lib',
  '/lib64',
  '/bin',
  '/sbin',
  '/opt',
  '/run',
  '/srv',
  '/home',
  '/root',
  '/nix',
];

export function isSystemMount(mountpoint: string): boolean {
  return SYSTEM_MOUNTS.some((m) => mountpoint === m || (m !== '/' && mountpoint.startsWith(`${m}/`)));
}

function transportOf(device: LsblkDevice): Transport {
  const tran = device.tran ?? '';
  if (tran === 'nvme' || device.name.startsWith('nvme')) return 'nvme';
  if (tran === 'sata' || tran === 'ata') return 'sata';
  if (tran === 'sas') return 'sas';
  if (tran === 'usb') return 'usb';
  if ((device.subsystems ?? '').split(':').includes('virtio')) return 'virtio';
  if (tran === 'spi' || tran === 'fc' || tran === 'iscsi') return 'scsi';
  return 'other';
}

function mediaOf(transport: Transport, rotational: boolean): Media {
  if (transport === 'nvme') return 'NVME';
  return rotational ? 'HDD' : 'SSD';
}

// lsblk device types that are built on top of a disk and keep it busy.
const STACKED_KINDS: Record<string, Holder['kind'] | undefined> = { raid: 'md', lvm: 'lvm', crypt: 'crypt', dm: 'dm' };

/** Everything stacked on `device` (partitions, md, LVM, crypt), and their mounts and swaps. */
function holdersOf(device: LsblkDevice, swaps: ReadonlySet<string>, depth: number): Holder[] {
  const holders: Holder[] = [];
  for (const mountpoint of device.mountpoints ?? []) {
    if (mountpoint && mountpoint !== '[SWAP]')
      holders.push({ kind: 'mount', device: device.path, mountpoint, system: isSystemMount(mountpoint), depth });
  }
  if (swaps.has(device.path) || (device.mountpoints ?? []).includes('[SWAP]')) {
    holders.push({ kind: 'swap', device: device.path, system: false, depth });
  }
  const stacked = STACKED_KINDS[device.type.startsWith('raid') ? 'raid' : device.type];
  if (depth > 0 && stacked) holders.push({ kind: stacked, device: device.path, system: false, depth });
  for (const child of device.children ?? []) holders.push(...holdersOf(child, swaps, depth + 1));
  return holders;
}

function exclusionOf(device: LsblkDevice, transport: Transport, holders: Holder[]): string | undefined {
  if (device.type !== 'disk') return `it is a ${device.type} device`;
  if (/^(loop|ram|zram|sr|fd)\d/.test(device.name)) return 'it is a virtual or optical device';
  if (!device.size) return 'it has no size';
  if (device.ro) return 'it is read-only';
  if (device.rm || transport === 'usb') return 'it is removable or USB media';
  const system = holders.find((h) => h.system);
  if (system) return `it holds ${system.mountpoint}, a filesystem of the running system`;
  return undefined;
}

export interface DiscoveryContext {
  /** Device paths listed in /proc/swaps. */
  swaps: ReadonlySet<string>;
  /** Kernel name -> /dev/disk/by-id path. */
  byId: ReadonlyMap<string, string>;
}

/** Turns lsblk's tree into disks: pure, so recorded outputs of real servers can be tested. */
export function disksFromLsblk(devices: LsblkDevice[], context: DiscoveryContext): Disk[] {
  return devices.map((device) => {
    const transport = transportOf(device);
    const rotational = device.rota ?? false;
    const holders = holdersOf(device, context.swaps, 0);
    return {
      name: device.kname,
      path: device.path,
      byId: context.byId.get(device.kname),
      size: device.size ?? 0,
      logicalSectorSize: device['log-sec'] ?? 512,
      physicalSectorSize: device['phy-sec'] ?? 512,
      rotational,
      transport,
      media: mediaOf(transport, rotational),
      model: device.model?.trim() || undefined,
      serial: device.serial?.trim() || undefined,
      wwn: device.wwn ?? undefined,
      holders,
      excluded: exclusionOf(device, transport, holders),
    };
  });
}

async function readSwaps(): Promise<Set<string>> {
  const text = await readFile('/proc/swaps', 'utf8').catch(() => '');
  return new Set(
    text
      .split('\n')
      .slice(1)
      .map((line) => line.split(/\s+/)[0]!)
      .filter(Boolean),
  );
}

/** The most telling by-id link per disk: wwn- and nvme-eui first, as they survive re-cabling. */
async function readById(): Promise<Map<string, string>> {
  const dir = '/dev/disk/by-id';
  const names = await readdir(dir).catch(() => [] as string[]);
  const rank = (name: string) => (name.startsWith('wwn-') || name.startsWith('nvme-eui') ? 0 : 1);
  const byId = new Map<string, string>();
  for (const name of names.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b))) {
    if (/-part\d+$/.test(name)) continue;
    const target = basename(await readlink(`${dir}/${name}`).catch(() => ''));
    if (target && !byId.has(target)) byId.set(target, `${dir}/${name}`);
  }
  return byId;
}

export async function discoverDisks(): Promise<Disk[]> {
  const [devices, swaps, byId] = await Promise.all([readLsblk(), readSwaps(), readById()]);
  return disksFromLsblk(devices, { swaps, byId });
}
