// byoi disks: what a rescue system sees, and the disk groups a job's diskGroupId refers to.
import type { CommandModule } from 'yargs';
import type { Disk } from '../../lib/disk/discover.ts';
import { run } from '../run.ts';

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function describeHolders(disk: Disk): string {
  return (
    disk.holders
      .map((h) => (h.kind === 'mount' ? `${h.device} on ${h.mountpoint}` : `${h.kind} ${h.device}`))
      .join(', ') || '-'
  );
}

export const disksCommand: CommandModule<object, { json: boolean }> = {
  command: 'disks',
  describe: 'List disks, what holds them, and the disk groups',
  builder: (y) => y.option('json', { type: 'boolean', default: false, describe: 'Machine-readable output' }),
  handler: (argv) =>
    run(async () => {
      // Imported here, not at start-up (every command would load the disk tools' helpers).
      const [{ discoverDisks }, { diskGroups }] = await Promise.all([
        import('../../lib/disk/discover.ts'),
        import('../../lib/disk/groups.ts'),
      ]);
      const disks = await discoverDisks();
      const groups = diskGroups(disks);
      if (argv.json) {
        const out = { disks, groups: groups.map((g) => ({ ...g, disks: g.disks.map((d) => d.path) })) };
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      const groupOf = new Map(groups.flatMap((g) => g.disks.map((d) => [d.path, g.id] as const)));
      const rows = disks.map((d) => [
        String(groupOf.get(d.path) ?? '-'),
        d.name,
        human(d.size),
        `${d.logicalSectorSize}/${d.physicalSectorSize}`,
        d.media,
        d.transport,
        d.model ?? '-',
        d.serial ?? '-',
        d.byId ?? '-',
        d.excluded ? `excluded: ${d.excluded}` : describeHolders(d),
      ]);
      const header = ['GROUP', 'NAME', 'SIZE', 'SECTORS', 'MEDIA', 'TRAN', 'MODEL', 'SERIAL', 'BY-ID', 'HOLDERS'];
      const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      for (const row of [header, ...rows])
        process.stdout.write(
          `${row
            .map((c, i) => c.padEnd(widths[i]!))
            .join('  ')
            .trimEnd()}\n`,
        );
      process.stdout.write('\n');
      for (const g of groups)
        process.stdout.write(`group ${g.id}: ${g.description} (${g.disks.map((d) => d.name).join(', ')})\n`);
    }),
};
