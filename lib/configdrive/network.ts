// The server's NICs, as network_data.json describes them to cloud-init: each physical NIC by its
// MAC (names differ between the rescue system and the installed one), configured by DHCP.
import { existsSync, lstatSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

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
    if (!hasEntry(join(dir, 'device')) || existsSync(join(dir, 'wireless')) || existsSync(join(dir, 'phy80211'))) continue;
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

/** network_data.json (nova's format; top level links, networks, services), or undefined without NICs. */
export function networkData(nics: readonly Nic[]): object | undefined {
  if (nics.length === 0) return undefined;
  return {
    links: nics.map((nic) => ({ id: nic.name, type: 'phy', ethernet_mac_address: nic.mac, mtu: nic.mtu })),
    networks: nics.map((nic, index) => ({
      id: `network${index}`,
      type: 'ipv4_dhcp',
      link: nic.name,
      network_id: `network${index}`,
    })),
    services: [],
  };
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
