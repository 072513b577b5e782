// The planner alone, on tables described by hand: cases too large for a test disk (MBR over 2 TiB)
// and the arithmetic of the window at the end. The same rules run on real disks in partition.test.ts.
import { describe, expect, it } from 'vitest';
import type { ByoiError } from '../../lib/errors.ts';

/** OVH's sentence for any failure to add the config drive partition. */
const COULD_NOT_CREATE_CONFIGDRIVE = 'Could not create configdrive on disk.';
import type { PartitionTable } from '../../lib/configdrive/partition-table.ts';
import { planConfigDrivePartition } from '../../lib/configdrive/plan.ts';

const MIB = 1024 * 1024;
const TIB = 1024 * 1024 * MIB;

function gpt(totalBytes: number, sectorSize: number, partitions: PartitionTable['partitions']): PartitionTable {
  const total = totalBytes / sectorSize;
  const arraySectors = (128 * 128) / sectorSize;
  return {
    label: 'gpt',
    sectorSize,
    totalSectors: total,
    firstUsable: 2 + arraySectors,
    lastUsable: total - 2 - arraySectors,
    backupLba: total - 1,
    partitions,
  };
}

function mbr(totalBytes: number, sectorSize: number, partitions: PartitionTable['partitions']): PartitionTable {
  const total = totalBytes / sectorSize;
  return { label: 'dos', sectorSize, totalSectors: total, firstUsable: 1, lastUsable: total - 1, partitions };
}

function detailOf(table: PartitionTable): string {
  try {
    planConfigDrivePartition(table);
  } catch (error) {
    expect((error as ByoiError).message).toBe(COULD_NOT_CREATE_CONFIGDRIVE);
    return (error as ByoiError).detail!;
  }
  throw new Error('planned');
}

describe('planConfigDrivePartition', () => {
  it.each([512, 4096])(
    'GPT, %i-byte sectors: the last 64 MiB, starting and ending on 1 MiB boundaries, inside the last usable sector',
    (ss) => {
      const table = gpt(1024 * MIB, ss, [{ number: 1, start: MIB / ss, sectors: (512 * MIB) / ss }]);
      const plan = planConfigDrivePartition(table);
      expect(plan).toMatchObject({
        action: 'create',
        label: 'gpt',
        number: 2,
        start: (960 * MIB) / ss,
        sectorSize: ss,
      });
      // The backup array sits in the disk's last MiB: the partition ends on the boundary before it.
      expect((plan.start + plan.sectors) * ss).toBe(1023 * MIB);
      expect(plan.start + plan.sectors - 1).toBeLessThanOrEqual(table.lastUsable);
    },
  );

  it('MBR on a disk over 2 TiB: the partition ends at 2 TiB', () => {
    for (const ss of [512, 4096]) {
      const plan = planConfigDrivePartition(mbr(3 * TIB, ss, [{ number: 1, start: MIB / ss, sectors: TIB / ss }]));
      expect(plan.start * ss).toBe(2 * TIB - 64 * MIB);
      expect((plan.start + plan.sectors) * ss).toBe(2 * TIB);
    }
  });

  it('MBR whose partition reaches past 2 TiB - 64 MiB on a larger disk has no room', () => {
    const detail = detailOf(mbr(3 * TIB, 4096, [{ number: 1, start: 256, sectors: (2 * TIB) / 4096 }]));
    expect(detail).toMatch(/^only 0 bytes are free at the end of the disk/);
  });

  it('uses the free space after the last partition when it is less than 64 MiB but at least 1 MiB', () => {
    const plan = planConfigDrivePartition(mbr(100 * MIB, 512, [{ number: 1, start: 2048, sectors: (90 * MIB) / 512 }]));
    expect(plan.start).toBe((91 * MIB) / 512);
    expect(plan.start + plan.sectors).toBe((100 * MIB) / 512);
  });

  it('takes the lowest free MBR primary slot, ignoring logical partitions', () => {
    const plan = planConfigDrivePartition(
      mbr(1024 * MIB, 512, [
        { number: 1, start: 2048, sectors: 2048 },
        { number: 3, start: 8192, sectors: 100_000 },
        { number: 5, start: 10_240, sectors: 2048 },
      ]),
    );
    expect(plan.number).toBe(2);
  });

  it('refuses a GPT whose backup header is not at the disk end', () => {
    const table = { ...gpt(1024 * MIB, 512, []), backupLba: (512 * MIB) / 512 - 1 };
    expect(detailOf(table)).toBe(
      'the GPT backup header is at sector 1048575, not at the last sector 2097151; move it to the end of the disk first.',
    );
  });

  it('reuses a config-2 partition found by GPT name or filesystem label, in any case', () => {
    const named = gpt(1024 * MIB, 512, [{ number: 4, start: 2048, sectors: 4096, name: 'CONFIG-2' }]);
    expect(planConfigDrivePartition(named)).toMatchObject({ action: 'reuse', number: 4, start: 2048, sectors: 4096 });
    const labelled = mbr(1024 * MIB, 512, [{ number: 4, start: 2048, sectors: 4096, fsLabel: 'config-2' }]);
    expect(planConfigDrivePartition(labelled)).toMatchObject({ action: 'reuse', number: 4 });
    const tiny = mbr(1024 * MIB, 512, [{ number: 2, start: 2048, sectors: 64, fsLabel: 'config-2' }]);
    expect(detailOf(tiny)).toBe(
      'the existing config-2 partition 2 has 32768 bytes, less than the 1048576 a config drive needs.',
    );
  });
});
