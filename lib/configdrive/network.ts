// The server's NICs (read from sysfs) and network_data.json, as cloud-init reads it: each NIC by
// its MAC (names differ between the rescue system and the installed one). What to configure is a
// NetworkConfig (network-config.ts).
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCidr, type NetworkConfig, type PhysicalLink } from './network-config.ts';

export interface Nic {
  /** The name in the system that builds the drive; only an id inside network_data.json. */
  name: string;
  mac: string;
  mtu: number;
  /** Whether the NIC had a link when read; undefined when the kernel could not say (interface down). */
  carrier?: boolean;
}

/** ARPHRD_ETHER in /sys/class/net/<nic>/type. */
const ETHERNET = '1';

/**
 * The physical Ethernet NICs under `sysClassNet`: those backed by a device (not lo, bridges, bonds,
 * veth, ifb...) and not wireless, sorted by name.
 */
export function physicalNics(sysClassNet = '/sys/class/net'): Nic[] {
  const nics: Nic[] = [];
  for (const name of readdirSync(sysClassNet).sort()) {
    const dir = join(sysClassNet, name);
    if (!hasEntry(join(dir, 'device')) || existsSync(join(dir, 'wireless')) || existsSync(join(dir, 'phy80211')))
      continue;
    if (read(dir, 'type') !== ETHERNET) continue;
    const mac = read(dir, 'address')?.toLowerCase();
    if (!mac || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac) || mac === '00:00:00:00:00:00') continue;
    const carrier = read(dir, 'carrier');
    nics.push({
      name,
      mac,
      mtu: Number(read(dir, 'mtu') ?? 1500) || 1500,
      ...(carrier === undefined ? {} : { carrier: carrier === '1' }),
    });
  }
  return nics;
}

/**
 * The NICs worth configuring: those with a link, so that the installed system does not wait for
 * DHCP on unplugged ports; all of them when none reports a link (e.g. all were down).
 */
export function nicsToConfigure(nics: readonly Nic[]): Nic[] {
  const linked = nics.filter((nic) => nic.carrier === true);
  return linked.length > 0 ? linked : [...nics];
}

/** This server's NICs as links of a network configuration (their names as ids). */
export function nicLinks(nics: readonly Nic[]): PhysicalLink[] {
  return nics.map((nic) => ({ id: nic.name.slice(0, 15), mac: nic.mac, mtu: nic.mtu }));
}

/** DHCPv4 on each of `links`: what explicit MACs without static addresses ask for. */
export function dhcpOn(links: readonly PhysicalLink[]): NetworkConfig {
  return { links, bonds: [], vlans: [], networks: links.map((link) => ({ link: link.id, type: 'dhcp4' })), dns: [] };
}

/**
 * network_data.json (OpenStack's format: links, networks, services) for a configuration whose
 * links are known (see withLinks), as cloud-init's ConfigDrive datasource converts it.
 */
export function networkData(config: NetworkConfig): object {
  if (config.links.length === 0) throw new Error("network data needs the links' MACs");
  const macOf = new Map<string, string>(config.links.map((link) => [link.id, link.mac]));
  for (const bond of config.bonds) macOf.set(bond.id, bond.mac ?? macOf.get(bond.links[0]!)!);
  const links: object[] = [
    ...config.links.map((link) => ({
      id: link.id,
      type: 'phy',
      ethernet_mac_address: link.mac,
      ...(link.mtu && { mtu: link.mtu }),
    })),
    ...config.bonds.map((bond) => ({
      id: bond.id,
      type: 'bond',
      bond_links: bond.links,
      bond_mode: bond.mode,
      ethernet_mac_address: macOf.get(bond.id),
      ...(bond.mtu && { mtu: bond.mtu }),
    })),
    // cloud-init requires a VLAN's MAC: by default the one of the link it rides on.
    ...config.vlans.map((vlan) => ({
      id: vlan.id,
      type: 'vlan',
      vlan_link: vlan.link,
      vlan_id: vlan.vlanId,
      vlan_mac_address: vlan.mac ?? macOf.get(vlan.link),
    })),
  ];
  const first = config.links[0]!.id;
  const networks = config.networks.map((network, index) => {
    const id = `network${index}`;
    const link = network.link ?? first;
    if (network.type !== 'static') {
      const type = { dhcp4: 'ipv4_dhcp', dhcp6: 'ipv6_dhcp', slaac: 'ipv6_slaac' }[network.type];
      return { id, type, link, network_id: id };
    }
    const cidr = parseCidr(network.address)!;
    const routes = [
      ...(network.gateway ? [{ to: cidr.family === 4 ? '0.0.0.0/0' : '::/0', via: network.gateway }] : []),
      ...network.routes,
    ].map((route) => {
      const to = parseCidr(route.to)!;
      return { network: to.address, netmask: netmask(to.family, to.prefix), gateway: route.via };
    });
    return {
      id,
      type: cidr.family === 4 ? 'ipv4' : 'ipv6',
      link,
      ip_address: cidr.address,
      netmask: netmask(cidr.family, cidr.prefix),
      routes,
      network_id: id,
    };
  });
  return { links, networks, services: config.dns.map((address) => ({ type: 'dns', address })) };
}

/** A prefix length as a netmask: dotted for IPv4, colon-hex for IPv6 (nova writes both so). */
export function netmask(family: 4 | 6, prefix: number): string {
  const bits = family === 4 ? 32 : 128;
  const groups: number[] = [];
  const width = family === 4 ? 8 : 16;
  for (let at = 0; at < bits; at += width) {
    const ones = Math.max(0, Math.min(width, prefix - at));
    groups.push(ones === 0 ? 0 : (2 ** ones - 1) * 2 ** (width - ones));
  }
  return family === 4 ? groups.join('.') : groups.map((g) => g.toString(16)).join(':');
}

function hasEntry(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function read(dir: string, file: string): string | undefined {
  try {
    return readFileSync(join(dir, file), 'utf8').trim();
  } catch {
    return undefined;
  }
}
