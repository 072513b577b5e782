// The last step: reboot onto the written disk, through systemd when it runs, else forcibly.
import { exec } from './exec.ts';
import { rebootFailed } from '../errors.ts';

export async function reboot(): Promise<void> {
  await exec('sync', [], { reject: false });
  const systemd = await exec('systemctl', ['reboot'], { reject: false });
  if (systemd.exitCode === 0) return;
  const forced = await exec('reboot', ['-f'], { reject: false });
  if (forced.exitCode === 0) return;
  throw rebootFailed({ detail: `systemctl reboot: ${systemd.message}; reboot -f: ${forced.message}` });
}
