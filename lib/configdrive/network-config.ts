// The network a deployed server is given: NICs named by MAC, bonds, VLANs, DHCP or static IPv4 and
// IPv6 addresses, routes and DNS servers. It comes from the lab's config, a JSON file (--network) or
// the simple flags (--mac, --address, --gateway, --dns), is validated here once, and becomes
// network_data.json (network.ts). Without one, a config drive carries no network data at all, and
// cloud-init falls back to DHCP on the first NIC: a MAC the booted machine lacks would stop
// cloud-init ("Unable to find a system nic"), so MACs come only from someone who knows them.
import { isIPv4, isIPv6 } from 'node:net';
import { badNetwork, macsNeeded } from '../errors.ts';

export interface PhysicalLink {
  readonly id: string;
  readonly mac: string;
  readonly mtu?: number;
}

export const BOND_MODES = [
  'balance-rr',
  'active-backup',
  'balance-xor',
  'broadcast',
  '802.3ad',
  'balance-tlb',
  'balance-alb',
] as const;
export type BondMode = (typeof BOND_MODES)[number];

export interface Bond {
  readonly id: string;
  /** Ids of physical links. */
  readonly links: readonly string[];
  readonly mode: BondMode;
  readonly mac?: string;
  readonly mtu?: number;
}

export interface Vlan {
  readonly id: string;
  /** Id of a physical link or a bond. */
  readonly link: string;
  readonly vlanId: number;
  readonly mac?: string;
}

export interface Route {
  /** A CIDR, e.g. 10.0.0.0/8 or 2001:db8::/32. */
  readonly to: string;
  readonly via: string;
}

/** One IP configuration of a link: DHCP (v4 or v6), SLAAC, or a static address with its gateway and routes. */
export type IpNetwork =
  | { readonly link?: string; readonly type: 'dhcp4' | 'dhcp6' | 'slaac' }
  | {
      readonly link?: string;
      readonly type: 'static';
      readonly address: string;
      readonly gateway?: string;
      readonly routes: readonly Route[];
    };

export interface NetworkConfig {
  /**
   * Empty: the NICs are not known yet; only a deployment onto this server's own disk may fill
   * them in (from its own NICs). `link` may then be left out of the networks: the first link.
   */
  readonly links: readonly PhysicalLink[];
  readonly bonds: readonly Bond[];
  readonly vlans: readonly Vlan[];
  readonly networks: readonly IpNetwork[];
  readonly dns: readonly string[];
}

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$/;

type Obj = Record<string, unknown>;
const isObject = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** An IP address of either family, or undefined. */
export function ipFamily(address: string): 4 | 6 | undefined {
  return isIPv4(address) ? 4 : isIPv6(address) ? 6 : undefined;
}

/** `a.b.c.d/n` or `x::y/n`: the address, its family and prefix length; undefined if malformed. */
export function parseCidr(cidr: string): { address: string; family: 4 | 6; prefix: number } | undefined {
  const slash = cidr.indexOf('/');
  if (slash <= 0) return undefined;
  const address = cidr.slice(0, slash);
  const family = ipFamily(address);
  const text = cidr.slice(slash + 1);
  if (!family || !/^\d{1,3}$/.test(text)) return undefined;
  const prefix = Number(text);
  return prefix <= (family === 4 ? 32 : 128) ? { address, family, prefix } : undefined;
}

/** Parses and validates a network configuration (the JSON form); `where` names its source in messages. */
export function parseNetworkConfig(value: unknown, where: string): NetworkConfig {
  const bad = (why: string): never => {
    throw badNetwork(where, why);
  };
  if (!isObject(value)) return bad('expected an object with links, bonds, vlans, networks and dns');
  for (const key of Object.keys(value)) {
    if (!['links', 'bonds', 'vlans', 'networks', 'dns'].includes(key)) bad(`unknown field "${key.slice(0, 40)}"`);
  }
  const list = (name: string): unknown[] => {
    const v = value[name];
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.length > 64) return bad(`${name} must be a list (of at most 64)`);
    return v;
  };
  const ids = new Set<string>();
  const newId = (v: unknown, at: string): string => {
    if (typeof v !== 'string' || !ID.test(v))
      return bad(`${at}.id must be a name of 1 to 15 letters, digits, dots, dashes or underscores`);
    if (ids.has(v)) bad(`the id "${v}" is used twice`);
    ids.add(v);
    return v;
  };
  const mac = (v: unknown, at: string): string => {
    const text = typeof v === 'string' ? v.toLowerCase() : '';
    if (!MAC.test(text) || text === '00:00:00:00:00:00')
      return bad(`${at} must be a MAC address such as 52:54:00:12:34:56`);
    return text;
  };
  const mtu = (v: unknown, at: string): number | undefined => {
    if (v === undefined) return undefined;
    if (!Number.isInteger(v) || (v as number) < 576 || (v as number) > 65535)
      return bad(`${at} must be an integer from 576 to 65535`);
    return v as number;
  };

  const links = list('links').map((link, i): PhysicalLink => {
    const at = `links[${i}]`;
    if (!isObject(link)) return bad(`${at} must be {id, mac, mtu?}`);
    const size = mtu(link.mtu, `${at}.mtu`);
    return { id: newId(link.id, at), mac: mac(link.mac, `${at}.mac`), ...(size !== undefined && { mtu: size }) };
  });
  const physical = new Set(links.map((l) => l.id));
  const macs = links.map((l) => l.mac);
  if (new Set(macs).size !== macs.length) bad('two links have the same MAC');

  const bonds = list('bonds').map((bond, i): Bond => {
    const at = `bonds[${i}]`;
    if (!isObject(bond)) return bad(`${at} must be {id, links, mode, mac?, mtu?}`);
    const id = newId(bond.id, at);
    const members = bond.links;
    if (
      !Array.isArray(members) ||
      members.length === 0 ||
      !members.every((l) => typeof l === 'string' && physical.has(l))
    ) {
      return bad(`${at}.links must list ids of links`);
    }
    if (!BOND_MODES.includes(bond.mode as BondMode)) return bad(`${at}.mode must be one of ${BOND_MODES.join(', ')}`);
    const size = mtu(bond.mtu, `${at}.mtu`);
    return {
      id,
      links: members as string[],
      mode: bond.mode as BondMode,
      ...(bond.mac !== undefined && { mac: mac(bond.mac, `${at}.mac`) }),
      ...(size !== undefined && { mtu: size }),
    };
  });
  const bonded = bonds.flatMap((b) => b.links);
  if (new Set(bonded).size !== bonded.length) bad('a link is in two bonds');
  const carriers = new Set([...physical, ...bonds.map((b) => b.id)]);

  const vlans = list('vlans').map((vlan, i): Vlan => {
    const at = `vlans[${i}]`;
    if (!isObject(vlan)) return bad(`${at} must be {id, link, vlanId, mac?}`);
    const id = newId(vlan.id, at);
    if (typeof vlan.link !== 'string' || !carriers.has(vlan.link))
      return bad(`${at}.link must be the id of a link or a bond`);
    if (!Number.isInteger(vlan.vlanId) || (vlan.vlanId as number) < 1 || (vlan.vlanId as number) > 4094)
      return bad(`${at}.vlanId must be an integer from 1 to 4094`);
    return {
      id,
      link: vlan.link,
      vlanId: vlan.vlanId as number,
      ...(vlan.mac !== undefined && { mac: mac(vlan.mac, `${at}.mac`) }),
    };
  });
  const targets = new Set([...carriers, ...vlans.map((v) => v.id)]);

  const networks = list('networks').map((network, i): IpNetwork => {
    const at = `networks[${i}]`;
    if (!isObject(network)) return bad(`${at} must be {link, type} or {link, address, gateway?, routes?}`);
    const { link } = network;
    if (link === undefined ? links.length > 0 : typeof link !== 'string' || !targets.has(link)) {
      return bad(`${at}.link must be the id of a link, a bond or a VLAN`);
    }
    const on = link === undefined ? {} : { link: link as string };
    const type = network.type ?? (network.address !== undefined ? 'static' : undefined);
    if (type === 'dhcp4' || type === 'dhcp6' || type === 'slaac') {
      if (network.address !== undefined) bad(`${at} has an address but type ${type}`);
      return { ...on, type };
    }
    if (type !== 'static') return bad(`${at}.type must be dhcp4, dhcp6, slaac or static`);
    const cidr = typeof network.address === 'string' ? parseCidr(network.address) : undefined;
    if (!cidr)
      return bad(`${at}.address must be an address with its prefix length, such as 203.0.113.10/24 or 2001:db8::10/64`);
    const gateway = network.gateway;
    if (gateway !== undefined && (typeof gateway !== 'string' || ipFamily(gateway) !== cidr.family)) {
      bad(`${at}.gateway must be an IPv${cidr.family} address`);
    }
    const routes = network.routes ?? [];
    if (!Array.isArray(routes) || routes.length > 64) return bad(`${at}.routes must be a list of {to, via}`);
    return {
      ...on,
      type: 'static',
      address: network.address as string,
      ...(gateway !== undefined && { gateway: gateway as string }),
      routes: routes.map((route, r): Route => {
        const where = `${at}.routes[${r}]`;
        if (!isObject(route) || typeof route.to !== 'string' || typeof route.via !== 'string')
          return bad(`${where} must be {to, via}`);
        const to = parseCidr(route.to);
        if (!to || to.family !== cidr.family || ipFamily(route.via) !== cidr.family)
          bad(`${where} must route an IPv${cidr.family} CIDR via an IPv${cidr.family} address`);
        return { to: route.to, via: route.via };
      }),
    };
  });

  const dns = list('dns').map((server, i) => {
    if (typeof server !== 'string' || !ipFamily(server)) return bad(`dns[${i}] must be an IP address`);
    return server;
  });
  if (links.length === 0 && (bonds.length > 0 || vlans.length > 0)) bad('bonds and VLANs need links');
  if (links.length === 0 && networks.length === 0) bad('it names no link and no network');
  return { links, bonds, vlans, networks, dns };
}

export interface NetworkFlags {
  macs?: readonly string[];
  addresses?: readonly string[];
  gateways?: readonly string[];
  dns?: readonly string[];
}

/**
 * The simple flags as a configuration, or undefined when none is given: each MAC a link (nic0,
 * nic1, ...) with DHCPv4; static addresses, gateways (one per family) on the first link, which
 * keeps DHCPv4 unless an IPv4 address is given.
 */
export function networkFromFlags(flags: NetworkFlags): NetworkConfig | undefined {
  const macs = flags.macs ?? [];
  const addresses = flags.addresses ?? [];
  const gateways = flags.gateways ?? [];
  const dns = flags.dns ?? [];
  if (macs.length + addresses.length + gateways.length + dns.length === 0) return undefined;
  const ids = macs.map((_, i) => `nic${i}`);
  const gateway = (family: 4 | 6) => {
    const found = gateways.filter((g) => ipFamily(g) === family);
    if (found.length > 1) throw badNetwork('flags', `--gateway is given twice for IPv${family}`);
    return found[0];
  };
  for (const g of gateways)
    if (!ipFamily(g)) throw badNetwork('flags', `--gateway ${JSON.stringify(g)} is not an IP address`);
  const families = addresses.map((a) => parseCidr(a)?.family);
  const staticNets = addresses.map((address, i) => {
    const family = families[i];
    const gw = family && gateway(family);
    return { ...(ids[0] && { link: ids[0] }), type: 'static', address, ...(gw && { gateway: gw }) };
  });
  for (const family of [4, 6] as const) {
    if (gateway(family) && !families.includes(family))
      throw badNetwork('flags', `--gateway for IPv${family} needs an IPv${family} --address`);
  }
  const dhcp = ids.filter((_, i) => i > 0 || !families.includes(4)).map((link) => ({ link, type: 'dhcp4' }));
  const plainDhcp = ids.length === 0 && !families.includes(4) ? [{ type: 'dhcp4' }] : [];
  return parseNetworkConfig(
    { links: macs.map((mac, i) => ({ id: ids[i], mac })), networks: [...plainDhcp, ...dhcp, ...staticNets], dns },
    'flags',
  );
}

/**
 * A configuration whose links are known: `own` (this server's NICs) fill in a configuration
 * without links, and only when byoi deploys this server's own disk; otherwise a static
 * configuration without MACs is refused, before anything is written.
 */
export function withLinks(config: NetworkConfig, own: readonly PhysicalLink[] | undefined): NetworkConfig {
  if (config.links.length > 0) return config;
  if (!own || own.length === 0) throw macsNeeded();
  const first = own[0]!;
  return { ...config, links: [first], networks: config.networks.map((n) => ({ ...n, link: n.link ?? first.id })) };
}
