// The last step: reboot onto the written disk, through systemd when it runs, else forcibly.
import { execa } from 'execa';
import { failed, messages } from './errors.ts';

export async function reboot(): Promise<void> {
  await execa('sync', { reject: false });
  const systemd = await execa('systemctl', ['reboot'], { reject: false, all: true });
  if (systemd.exitCode === 0) return;
  const forced = await execa('reboot', ['-f'], { reject: false, all: true });
  if (forced.exitCode === 0) return;
  throw failed(messages.rebootFailed, `systemctl reboot: ${systemd.all ?? systemd.message}; reboot -f: ${forced.all ?? forced.message}`);
}
