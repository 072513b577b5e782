// Disk groups, minimally: OVH numbers groups of identical disks from its own hardware records,
// which the agent cannot see. Until discovery and grouping are built, the only group resolved is
// the unambiguous one: every local disk of one kind and size forms group 1 (0 = automatic = 1),
// and BYOI writes to its first disk. Anything else asks for --disk.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { failed, messages } from '../errors.ts';

export interface LocalDisk {
  readonly path: string;
  readonly kind: 'NVME' | 'SSD' | 'HDD';
  readonly size: number;
}

/** Physical, fixed disks: a `device` link (not loop, ram, dm, md) and not removable. */
export function localDisks(sys = '/sys'): LocalDisk[] {
  const disks: LocalDisk[] = [];
  const read = (name: string, file: string) => readFileSync(join(sys, 'block', name, file), 'utf8').trim();
  for (const name of readdirSync(join(sys, 'block'))) {
    if (!existsSync(join(sys, 'block', name, 'device'))) continue;
    if (read(name, 'removable') !== '0' || /^(sr|fd)\d/.test(name)) continue;
    const size = Number(read(name, 'size')) * 512;
    if (size === 0) continue;
    const kind = name.startsWith('nvme') ? 'NVME' : read(name, 'queue/rotational') === '1' ? 'HDD' : 'SSD';
    disks.push({ path: `/dev/${name}`, kind, size });
  }
  return disks.sort((a, b) => a.path.localeCompare(b.path, 'en', { numeric: true }));
}

/** The first disk of the group, or a clear error when the group cannot be told without --disk. */
export function diskOfGroup(id: number, disks: LocalDisk[]): string {
  const kinds = new Set(disks.map((d) => `${d.kind} ${d.size}`));
  if ((id === 0 || id === 1) && kinds.size === 1) return disks[0]!.path;
  const found = disks.map((d) => `${d.path} ${d.kind} ${d.size} bytes`).join(', ') || 'no disk';
  throw failed(messages.noDiskGroup(id), `disk groups are resolved only when all disks are alike; found: ${found}`);
}
