// What the agent tells the API about its server when it starts: the disks and the disk groups a
// job's diskGroupId refers to (as `byoi disks --json` shows them), without the holders' details.
import { discoverDisks, type Disk } from './discover.ts';
import { diskGroups } from './groups.ts';

export interface DisksReportShape {
  readonly disks: {
    name: string;
    path: string;
    byId: string | null;
    size: number;
    logicalSectorSize: number;
    media: string;
    transport: string;
    model: string | null;
    serial: string | null;
    excluded: string | null;
  }[];
  readonly groups: { id: number; media: string; sizeGB: number; description: string; disks: string[] }[];
}

export function disksReport(disks: readonly Disk[]): DisksReportShape {
  return {
    disks: disks.map((d) => ({
      name: d.name,
      path: d.path,
      byId: d.byId ?? null,
      size: d.size,
      logicalSectorSize: d.logicalSectorSize,
      media: d.media,
      transport: d.transport,
      model: d.model ?? null,
      serial: d.serial ?? null,
      excluded: d.excluded ?? null,
    })),
    groups: diskGroups(disks).map((g) => ({
      id: g.id,
      media: g.media,
      sizeGB: g.sizeGB,
      description: g.description,
      disks: g.disks.map((d) => d.name),
    })),
  };
}

export async function discoverDisksReport(): Promise<DisksReportShape> {
  return disksReport(await discoverDisks());
}
