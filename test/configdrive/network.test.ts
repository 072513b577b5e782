import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dhcpOn, networkData, nicLinks, nicsToConfigure, physicalNics } from '../../lib/configdrive/network.ts';

// A fake /sys/class/net: physical NICs have a `device` link; virtual ones do not.
const root = mkdtempSync(join(tmpdir(), 'byoi-sysnet-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function nic(name: string, files: Record<string, string>, physical: boolean, extra: string[] = []): void {
  const dir = join(root, name);
  mkdirSync(dir);
  for (const [file, value] of Object.entries(files)) writeFileSync(join(dir, file), `${value}\n`);
  if (physical) symlinkSync('../../devices/pci0000:00/0000:00:03.0', join(dir, 'device'));
  for (const sub of extra) mkdirSync(join(dir, sub));
}

nic('lo', { type: '772', address: '00:00:00:00:00:00', mtu: '65536', carrier: '1' }, false);
nic('eno1', { type: '1', address: '0C:C4:7A:AA:BB:CC', mtu: '1500', carrier: '1' }, true);
nic('eno2', { type: '1', address: '0c:c4:7a:aa:bb:cd', mtu: '9000', carrier: '0' }, true);
nic('ens3', { type: '1', address: '0c:c4:7a:aa:bb:ce', mtu: '1500' }, true); // down: carrier unreadable
nic('br0', { type: '1', address: '0c:c4:7a:aa:bb:cf', mtu: '1500', carrier: '1' }, false);
nic('wlan0', { type: '1', address: '0c:c4:7a:aa:bb:d0', mtu: '1500', carrier: '1' }, true, ['wireless']);
nic(
  'ib0',
  { type: '32', address: '80:00:00:48:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:00', mtu: '2044', carrier: '1' },
  true,
);

describe('physicalNics', () => {
  it('lists physical Ethernet NICs only, MACs lowercased, carrier when known', () => {
    expect(physicalNics(root)).toEqual([
      { name: 'eno1', mac: '0c:c4:7a:aa:bb:cc', mtu: 1500, carrier: true },
      { name: 'eno2', mac: '0c:c4:7a:aa:bb:cd', mtu: 9000, carrier: false },
      { name: 'ens3', mac: '0c:c4:7a:aa:bb:ce', mtu: 1500 },
    ]);
  });

  it('configures the NICs with a link, or all when none has one', () => {
    const nics = physicalNics(root);
    expect(nicsToConfigure(nics).map((n) => n.name)).toEqual(['eno1']);
    expect(nicsToConfigure(nics.slice(1)).map((n) => n.name)).toEqual(['eno2', 'ens3']);
  });

  it('DHCPv4 on NICs given by MAC', () => {
    expect(networkData(dhcpOn(nicLinks(physicalNics(root).slice(0, 1))))).toEqual({
      links: [{ id: 'eno1', type: 'phy', ethernet_mac_address: '0c:c4:7a:aa:bb:cc', mtu: 1500 }],
      networks: [{ id: 'network0', type: 'ipv4_dhcp', link: 'eno1', network_id: 'network0' }],
      services: [],
    });
  });
});
