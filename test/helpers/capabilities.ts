// Tests that need root, loop devices or system tools run in CI; outside CI they may skip.
// In CI (CI=true) they never skip: a missing capability makes them fail in `assertCapable`.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export const inCI = process.env.CI === 'true';

function commandExists(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const checks = {
  root: () => process.getuid?.() === 0,
  loop: () => process.getuid?.() === 0 && commandExists('losetup'),
  'qemu-img': () => commandExists('qemu-img') && commandExists('qemu-io'),
  sgdisk: () => commandExists('sgdisk'),
  podman: () => ['podman', 'runc', 'mmdebstrap'].every(commandExists),
  mtools: () => commandExists('mcopy') && commandExists('mkfs.fat'),
  'ssh-keygen': () => commandExists('ssh-keygen'),
  strace: () => commandExists('strace'),
  // The VM harness (scripts/vm): QEMU to boot the guest, mmdebstrap to build it when not cached.
  qemu: () => commandExists('qemu-system-x86_64') && commandExists('mmdebstrap'),
  // The control panel's browser tests: Debian's chromium (never a downloaded browser).
  chromium: () => existsSync('/usr/bin/chromium'),
  'cloud-init': () => {
    try {
      execFileSync('/usr/bin/python3', ['-c', 'import cloudinit.sources.DataSourceConfigDrive'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  },
  // OVH's Go client as Debian packages it, and a Go toolchain to build a program with it.
  'go-ovh': () => commandExists('go') && existsSync('/usr/share/gocode/src/github.com/ovh/go-ovh/ovh/ovh.go'),
} as const;

export type Capability = keyof typeof checks;

export function missing(...needs: Capability[]): Capability[] {
  return needs.filter((need) => !checks[need]());
}

/** For `describe.skipIf(skipWithout(...))`: skip only outside CI. */
export function skipWithout(...needs: Capability[]): boolean {
  return !inCI && missing(...needs).length > 0;
}

/** Call in beforeAll of a suite guarded by skipWithout: fails the suite in CI when it cannot run. */
export function assertCapable(...needs: Capability[]): void {
  const lacking = missing(...needs);
  if (lacking.length > 0) throw new Error(`this test needs ${lacking.join(', ')}, which this machine lacks`);
}
