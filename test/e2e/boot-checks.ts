// What a booted cloud image must show on its serial console once cloud-init applied a config drive
// made for the end-to-end tests.
import { expect } from 'vitest';
import type { Firmware } from '../../scripts/image/boot.ts';

/** The user-data script: prints the marker, the hostname, the default user's keys and the system's addresses. */
export function userDataScript(marker: string): string {
  return [
    '#!/bin/sh',
    `echo "${marker} hostname=$(hostname)"`,
    `echo "${marker} authorized_keys=$(cat /home/debian/.ssh/authorized_keys)"`,
    `echo "${marker} addresses=$(hostname -I)"`,
    '',
  ].join('\n');
}

export function expectCloudInitApplied(
  console: string,
  expected: { firmware: Firmware; marker: string; hostname: string; publicKey: string; configDrive: string },
): void {
  expect(console).toContain(`byoi-image: GRUB ${expected.firmware === 'bios' ? 'pc' : 'efi'} loaded grub.cfg`);
  expect(console).toMatch(/Linux version 6\.1\.\S+-amd64/);
  expect(console).toContain(`Datasource DataSourceConfigDrive [net,ver=2][source=${expected.configDrive}]`);
  expect(console).toContain(`${expected.marker} hostname=${expected.hostname}`);
  expect(console).toContain(`${expected.marker} authorized_keys=${expected.publicKey}`);
}
