// network_data.json for another machine: nothing NIC-bound unless the MACs are given; static IPv4
// and IPv6, routes, DNS, bonds and VLANs as OpenStack's format has them. Every drive is read back
// by cloud-init's own reader and rendered by its netplan renderer (Debian's cloud-init).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configDriveContent } from '../../lib/configdrive/content.ts';
import { netmask } from '../../lib/configdrive/network.ts';
import {
  networkFromFlags,
  parseNetworkConfig,
  withLinks,
  type NetworkConfig,
} from '../../lib/configdrive/network-config.ts';
import { buildVfatImage } from '../../lib/configdrive/vfat.ts';
import { parseConfig } from '../../lib/api/config.ts';
import { ByoiError } from '../../lib/errors.ts';
import { validateJob } from '../../lib/job.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { readConfigDrive } from '../helpers/cloud-init.ts';

const MIB = 1024 * 1024;
const A = '0c:c4:7a:00:00:0a';
const B = '0c:c4:7a:00:00:0b';

function refusal(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(ByoiError);
    expect((error as ByoiError).kind).toBe('invalid-job');
    return (error as ByoiError).message;
  }
  throw new Error('not refused');
}

describe('network configuration', () => {
  it('netmasks from prefixes', () => {
    expect(netmask(4, 24)).toBe('255.255.255.0');
    expect(netmask(4, 0)).toBe('0.0.0.0');
    expect(netmask(4, 27)).toBe('255.255.255.224');
    expect(netmask(6, 64)).toBe('ffff:ffff:ffff:ffff:0:0:0:0');
    expect(netmask(6, 56)).toBe('ffff:ffff:ffff:ff00:0:0:0:0');
    expect(netmask(6, 128)).toBe('ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff');
  });

  it('refuses what cloud-init could not use, naming the field', () => {
    expect(refusal(() => parseNetworkConfig({ links: [{ id: 'eth0', mac: 'zz' }] }, 'lab'))).toMatch(
      /^Bad network configuration \(lab\): links\[0\]\.mac must be a MAC/,
    );
    expect(
      refusal(() =>
        parseNetworkConfig(
          {
            links: [
              { id: 'a', mac: A },
              { id: 'b', mac: A },
            ],
          },
          'x',
        ),
      ),
    ).toMatch(/same MAC/);
    expect(
      refusal(() =>
        parseNetworkConfig({ links: [{ id: 'a', mac: A }], networks: [{ link: 'a', address: '10.0.0.1' }] }, 'x'),
      ),
    ).toMatch(/prefix length/);
    expect(
      refusal(() =>
        parseNetworkConfig(
          { links: [{ id: 'a', mac: A }], networks: [{ link: 'a', address: '10.0.0.1/24', gateway: '2001:db8::1' }] },
          'x',
        ),
      ),
    ).toMatch(/gateway must be an IPv4/);
    expect(
      refusal(() =>
        parseNetworkConfig({ links: [{ id: 'a', mac: A }], networks: [{ link: 'nope', type: 'dhcp4' }] }, 'x'),
      ),
    ).toMatch(/link must be the id/);
    expect(
      refusal(() =>
        parseNetworkConfig({ links: [{ id: 'a', mac: A }], vlans: [{ id: 'v', link: 'a', vlanId: 4095 }] }, 'x'),
      ),
    ).toMatch(/vlanId/);
    expect(
      refusal(() =>
        parseNetworkConfig({ links: [{ id: 'a', mac: A }], bonds: [{ id: 'b', links: ['a'], mode: 'lacp' }] }, 'x'),
      ),
    ).toMatch(/mode must be one of/);
    expect(refusal(() => parseNetworkConfig({ links: [{ id: 'a', mac: A }], dns: ['ns1'] }, 'x'))).toMatch(/dns\[0\]/);
    expect(refusal(() => parseNetworkConfig({ links: [], nics: [] }, 'x'))).toMatch(/unknown field "nics"/);
    expect(refusal(() => networkFromFlags({ gateways: ['203.0.113.1'] }))).toMatch(/needs an IPv4 --address/);
  });

  it("static addresses without MACs: refused for another machine, this server's own NIC on its own disk", () => {
    const flags = networkFromFlags({ addresses: ['203.0.113.10/24'], gateways: ['203.0.113.1'] })!;
    expect(flags.links).toEqual([]);
    expect(refusal(() => withLinks(flags, undefined))).toMatch(/need the MAC/);
    expect(refusal(() => withLinks(flags, []))).toMatch(/need the MAC/);
    const own = withLinks(flags, [{ id: 'eno1', mac: A, mtu: 1500 }]);
    expect(own.links).toEqual([{ id: 'eno1', mac: A, mtu: 1500 }]);
    expect(own.networks).toEqual([
      { link: 'eno1', type: 'static', address: '203.0.113.10/24', gateway: '203.0.113.1', routes: [] },
    ]);
  });

  it("the lab's config names a server's network; a bad one is refused when the config loads", () => {
    const network = {
      links: [{ id: 'eth0', mac: A }],
      networks: [{ link: 'eth0', address: '2001:db8::2/64', gateway: '2001:db8::1' }],
    };
    const config = parseConfig(
      { servers: [{ serviceName: 'ns1.lab', apiKeys: ['3f9a1c0e7b5d42a8e6f1d9c3b7a05e2c48d6f0a1'], network }] },
      'lab.json',
    );
    expect(config.servers[0]!.network?.networks).toEqual([
      { link: 'eth0', type: 'static', address: '2001:db8::2/64', gateway: '2001:db8::1', routes: [] },
    ]);
    expect(() =>
      parseConfig(
        {
          servers: [
            {
              serviceName: 'ns1.lab',
              apiKeys: ['3f9a1c0e7b5d42a8e6f1d9c3b7a05e2c48d6f0a1'],
              network: { links: [{ id: 'eth0' }] },
            },
          ],
        },
        'lab.json',
      ),
    ).toThrow(
      /^Bad server configuration lab\.json: Bad network configuration \(servers\[0\]\.network\): links\[0\]\.mac/,
    );
  });

  it('a job carries a validated network (from the lab config or the flags)', () => {
    const job = validateJob({
      url: 'http://x/i.raw',
      type: 'raw',
      network: { links: [{ id: 'eth0', mac: A.toUpperCase() }], networks: [{ link: 'eth0', type: 'dhcp4' }] },
    });
    expect(job.network?.links).toEqual([{ id: 'eth0', mac: A }]);
    expect(refusal(() => validateJob({ url: 'http://x/i.raw', type: 'raw', network: { links: 'eth0' } }))).toMatch(
      /^Bad network configuration \(network\)/,
    );
  });
});

describe.skipIf(skipWithout('mtools', 'cloud-init'))('network_data.json, read by cloud-init', () => {
  let work: string;
  beforeAll(() => {
    assertCapable('mtools', 'cloud-init');
    work = mkdtempSync(join(tmpdir(), 'byoi-cd-net-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  async function read(network: NetworkConfig | undefined, knownMacs: Record<string, string>) {
    const content = configDriveContent({ sshKeys: [], metadata: {} }, network ? { network } : {});
    const path = join(work, `${content.uuid}.vfat`);
    writeFileSync(path, await buildVfatImage(content.files, { bytes: 4 * MIB, sectorSize: 512 }));
    return readConfigDrive(path, 0, knownMacs);
  }

  it('without a network: no network_data.json, whatever NICs the booted machine has', async () => {
    const seen = await read(undefined, { 'de:ad:be:ef:00:01': 'ens3' });
    expect(seen.network).toBeNull();
  });

  it('static IPv4 and IPv6 with gateways, routes and DNS on a NIC named by MAC', async () => {
    const network = parseNetworkConfig(
      {
        links: [{ id: 'wan', mac: A, mtu: 1500 }],
        networks: [
          {
            link: 'wan',
            address: '203.0.113.10/24',
            gateway: '203.0.113.1',
            routes: [{ to: '10.0.0.0/8', via: '203.0.113.254' }],
          },
          { link: 'wan', address: '2001:db8:1:2::10/64', gateway: '2001:db8:1:2::1' },
        ],
        dns: ['213.186.33.99', '2001:41d0:3:163::1'],
      },
      'test',
    );
    const seen = await read(network, { [A]: 'eno1' });
    const eno1 = seen.network!.config.find((c) => c.name === 'eno1') as { subnets: Record<string, unknown>[] };
    expect(eno1).toMatchObject({ type: 'physical', mac_address: A, mtu: 1500 });
    expect(eno1.subnets).toEqual([
      expect.objectContaining({ type: 'static', address: '203.0.113.10', netmask: '255.255.255.0' }),
      expect.objectContaining({ type: 'static6', address: '2001:db8:1:2::10', netmask: 'ffff:ffff:ffff:ffff:0:0:0:0' }),
    ]);
    expect(seen.network!.config.filter((c) => c.type === 'nameserver').map((c) => c.address)).toEqual([
      '213.186.33.99',
      '2001:41d0:3:163::1',
    ]);
    const plan = seen.netplan!;
    for (const text of [
      '203.0.113.10/24',
      '2001:db8:1:2::10/64',
      'to: 0.0.0.0/0',
      'via: 203.0.113.1',
      'to: ::/0',
      'via: 2001:db8:1:2::1',
      'to: 10.0.0.0/8',
      'via: 203.0.113.254',
      '213.186.33.99',
      '2001:41d0:3:163::1',
      `macaddress: ${A}`,
    ]) {
      expect(plan).toContain(text);
    }
  });

  it('a bond of two NICs, a VLAN on it with a static address, DHCP on the bond', async () => {
    const network = parseNetworkConfig(
      {
        links: [
          { id: 'p1', mac: A },
          { id: 'p2', mac: B },
        ],
        bonds: [{ id: 'agg', links: ['p1', 'p2'], mode: '802.3ad' }],
        vlans: [{ id: 'v42', link: 'agg', vlanId: 42 }],
        networks: [
          { link: 'agg', type: 'dhcp4' },
          { link: 'v42', address: '192.0.2.5/28', gateway: '192.0.2.1' },
        ],
      },
      'test',
    );
    const seen = await read(network, { [A]: 'enp1s0f0', [B]: 'enp1s0f1' });
    const bond = seen.network!.config.find((c) => c.type === 'bond') as Record<string, unknown>;
    expect(bond).toMatchObject({
      name: 'bond0',
      bond_interfaces: ['enp1s0f0', 'enp1s0f1'],
      mac_address: A,
      params: { bond_mode: '802.3ad' },
    });
    const vlan = seen.network!.config.find((c) => c.type === 'vlan') as Record<string, unknown>;
    expect(vlan).toMatchObject({ name: 'bond0.42', vlan_id: 42, vlan_link: 'bond0' });
    expect(seen.netplan).toMatch(/bonds:\s+bond0:/);
    expect(seen.netplan).toMatch(/mode: 802\.3ad/);
    expect(seen.netplan).toMatch(/vlans:\s+bond0\.42:/);
    expect(seen.netplan).toContain('192.0.2.5/28');
  });

  it("`byoi configdrive` takes the MACs and addresses as flags, never this machine's NICs", async () => {
    const byoi = (args: string[]) =>
      spawnSync(process.execPath, ['agent/byoi.ts', 'configdrive', '--size-mib', '4', ...args], { encoding: 'utf8' });
    const bare = join(work, 'bare.img');
    expect(byoi(['--out', bare]).status).toBe(0);
    expect(readConfigDrive(bare).network).toBeNull();

    const flagged = join(work, 'flagged.img');
    const ok = byoi([
      '--out',
      flagged,
      '--mac',
      B,
      '--address',
      '198.51.100.7/24',
      '--gateway',
      '198.51.100.1',
      '--address',
      '2001:db8::7/64',
      '--dns',
      '198.51.100.53',
    ]);
    expect(ok.stderr).toBe('');
    const seen = readConfigDrive(flagged, 0, { [B]: 'ens3' });
    expect(seen.netplan).toContain('198.51.100.7/24');
    expect(seen.netplan).toContain('2001:db8::7/64');
    expect(seen.netplan).toContain('198.51.100.53');
    expect(seen.netplan).toContain('via: 198.51.100.1');

    const file = join(work, 'network.json');
    writeFileSync(
      file,
      JSON.stringify({
        links: [{ id: 'a', mac: A }],
        networks: [
          { link: 'a', type: 'slaac' },
          { link: 'a', type: 'dhcp4' },
        ],
      }),
    );
    const fromFile = join(work, 'file.img');
    expect(byoi(['--out', fromFile, '--network', file]).status).toBe(0);
    expect(readConfigDrive(fromFile, 0, { [A]: 'eth0' }).netplan).toContain('dhcp4: true');

    const noMac = byoi(['--out', join(work, 'x.img'), '--address', '198.51.100.7/24']);
    expect(noMac.status).toBe(2);
    expect(noMac.stderr).toMatch(/need the MAC of the NIC/);
  });
});
