// Reads a config drive back with cloud-init's own code (Debian's cloud-init, /usr/bin/python3),
// after copying it out of the vfat filesystem with mtools (this kernel cannot mount vfat).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface CloudInitView {
  version: number;
  instanceId: string;
  localHostname: string | null;
  publicKeys: string[];
  meta: Record<string, string> | null;
  /** user_data as cloud-init read it, base64-encoded (it may be binary). */
  userData: string;
  vendorData: unknown;
  /** network_data.json converted by cloud-init, the NICs named by knownMacs (by default, by each link's id). */
  network: { version: number; config: Record<string, unknown>[] } | null;
  /** That network as cloud-init's netplan renderer writes it (YAML), or null. */
  netplan: string | null;
}

const READER = String.raw`
import base64, json, sys
from cloudinit import sources
from cloudinit.sources import DataSourceConfigDrive as cd
from cloudinit.sources.helpers import openstack
res = cd.read_config_drive(sys.argv[1])
md = res["metadata"]
ud = res.get("userdata") or b""
if isinstance(ud, str): ud = ud.encode()
nd = res.get("networkdata")
net = None
rendered = None
if nd:
    known = json.loads(sys.argv[2]) or {l["ethernet_mac_address"].lower(): l["id"] for l in nd["links"]}
    net = openstack.convert_net_json(nd, known_macs=known)
    from cloudinit.net import netplan, network_state
    rendered = netplan.Renderer()._render_content(network_state.parse_net_config_data(net, skip_broken=False))
print(json.dumps({
  "version": res["version"], "instanceId": md["instance-id"], "localHostname": md.get("local-hostname"),
  "publicKeys": sources.normalize_pubkey_data(md.get("public_keys")), "meta": md.get("meta"),
  "userData": base64.b64encode(ud).decode(), "vendorData": res.get("vendordata"), "network": net, "netplan": rendered,
}))
`;

/**
 * Extracts ::openstack from the vfat filesystem at `offset` bytes into `image` (a file or block
 * device) and runs cloud-init's reader on it. `knownMacs` maps MAC to the NIC name the installed
 * system would have.
 */
export function readConfigDrive(image: string, offset = 0, knownMacs: Record<string, string> = {}): CloudInitView {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-cloud-init-'));
  try {
    const source = offset === 0 ? image : `${image}@@${offset}`;
    execFileSync('mcopy', ['-s', '-n', '-i', source, '::openstack', dir], {
      env: { ...process.env, MTOOLS_SKIP_CHECK: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = execFileSync('/usr/bin/python3', ['-c', READER, dir, JSON.stringify(knownMacs)], { encoding: 'utf8' });
    return JSON.parse(out) as CloudInitView;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `blkid -p` tags of the filesystem at `offset` in `image` (TYPE, LABEL, ...). */
export function probe(image: string, offset = 0): Record<string, string> {
  const out = execFileSync('blkid', ['-p', '-O', String(offset), '-o', 'export', image], { encoding: 'utf8' });
  return Object.fromEntries(
    out
      .trim()
      .split('\n')
      .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
  );
}

/** An SSH public key line made by ssh-keygen. */
export function sshKeygen(type: 'ed25519' | 'rsa' | 'ecdsa', comment: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-sshkey-'));
  try {
    const key = join(dir, 'key');
    execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-C', comment, '-f', key]);
    return readFileSync(`${key}.pub`, 'utf8').trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
