// The disk groups the panel shows and offers for a server: those its agent last reported (as the API's
// specifications/hardware route gives them), else those the lab declares, else none known.
import type { DiskGroupConfig } from '../api/config.ts';
import type { DisksReport } from '../api/store/types.ts';
import { hardwareView } from '../api/views.ts';

export interface DiskGroup {
  readonly id: number;
  readonly description: string;
  /** The disks' names, when the agent reported them. */
  readonly disks: readonly string[];
}

export type KnownDiskGroups =
  | { readonly source: 'reported'; readonly reportedAt: string; readonly groups: readonly DiskGroup[] }
  | { readonly source: 'declared'; readonly groups: readonly DiskGroup[] }
  | { readonly source: 'unknown' };

export function knownDiskGroups(
  report: DisksReport | undefined,
  declared: readonly DiskGroupConfig[] | undefined,
): KnownDiskGroups {
  const reported = report ? hardwareView(report) : undefined;
  if (reported && reported.diskGroups.length > 0) {
    const groups = reported.diskGroups.map((g) => ({ id: g.diskGroupId, description: g.description, disks: g.disks }));
    return { source: 'reported', reportedAt: reported.reportedAt, groups };
  }
  if (declared && declared.length > 0)
    return {
      source: 'declared',
      groups: declared.map((g) => ({ id: g.diskGroupId, description: g.description, disks: [] })),
    };
  return { source: 'unknown' };
}
