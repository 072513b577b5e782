// Reads the block-device tree as lsblk reports it: one JSON call gives disks, their partitions and
// everything stacked on them (md arrays, LVM volumes, dm-crypt), with mountpoints.
import { exec } from '../system/exec.ts';

/** The lsblk columns byoi reads, exactly as `lsblk --json --bytes` names them. */
export interface LsblkDevice {
  name: string;
  kname: string;
  path: string;
  type: string;
  size: number | null;
  'log-sec': number | null;
  'phy-sec': number | null;
  rota: boolean | null;
  rm: boolean | null;
  ro: boolean | null;
  hotplug: boolean | null;
  tran: string | null;
  subsystems: string | null;
  model: string | null;
  serial: string | null;
  wwn: string | null;
  fstype: string | null;
  mountpoints: (string | null)[] | null;
  children?: LsblkDevice[];
}

export const LSBLK_COLUMNS =
  'NAME,KNAME,PATH,TYPE,SIZE,LOG-SEC,PHY-SEC,ROTA,RM,RO,HOTPLUG,TRAN,SUBSYSTEMS,MODEL,SERIAL,WWN,FSTYPE,MOUNTPOINTS';

export async function readLsblk(): Promise<LsblkDevice[]> {
  const { stdout } = await exec('lsblk', ['--json', '--bytes', '--output', LSBLK_COLUMNS]);
  return (JSON.parse(stdout) as { blockdevices: LsblkDevice[] }).blockdevices;
}
