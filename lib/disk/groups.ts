// Disk groups as OVH presents them: disks of the same media and size form a group. Ids are 1..N in
// a stable, documented order: fastest media first (NVMe, then SSD, then HDD), then smaller disks
// first (OS disks are the small fast ones on mixed servers), then by name. Within a group disks are
// in natural kernel-name order, so "the first disk of the group" is sda before sdb, nvme2n1 before nvme10n1.
import type { Disk, Media } from './discover.ts';

export interface DiskGroup {
  id: number;
  media: Media;
  /** The size of the group's disks, rounded to whole GB as vendors label them. */
  sizeGB: number;
  disks: Disk[];
  /** OVH's wording, e.g. "2 X Disk NVME 512 GB". */
  description: string;
}

const MEDIA_RANK: Record<Media, number> = { NVME: 0, SSD: 1, HDD: 2 };

/** Numbers compare as numbers (nvme2n1 before nvme10n1). Made on first use: a collator costs ~7 ms at load, and most commands load this module. */
let collator: Intl.Collator | undefined;
function naturalOrder(a: string, b: string): number {
  collator ??= new Intl.Collator('en', { numeric: true });
  return collator.compare(a, b);
}

/** Groups the disks that may be deployed onto; excluded disks are in no group. */
export function diskGroups(disks: readonly Disk[]): DiskGroup[] {
  const byKey = new Map<string, Disk[]>();
  for (const disk of disks) {
    if (disk.excluded) continue;
    const key = `${disk.media}:${Math.round(disk.size / 1e9)}`;
    byKey.set(key, [...(byKey.get(key) ?? []), disk]);
  }
  const groups = [...byKey.values()].map((members) => {
    members.sort((a, b) => naturalOrder(a.name, b.name));
    const first = members[0]!;
    const sizeGB = Math.round(first.size / 1e9);
    return {
      id: 0,
      media: first.media,
      sizeGB,
      disks: members,
      description: `${members.length} X Disk ${first.media} ${sizeGB} GB`,
    };
  });
  groups.sort(
    (a, b) =>
      MEDIA_RANK[a.media] - MEDIA_RANK[b.media] ||
      a.sizeGB - b.sizeGB ||
      naturalOrder(a.disks[0]!.name, b.disks[0]!.name),
  );
  return groups.map((group, index) => ({ ...group, id: index + 1 }));
}
