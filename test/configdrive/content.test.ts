// Every drive is read back by cloud-init's own reader (Debian's cloud-init) after extracting it
// from the vfat image with mtools.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configDriveContent } from '../../lib/configdrive/content.ts';
import { dhcpOn, nicLinks } from '../../lib/configdrive/network.ts';
import type { NetworkConfig } from '../../lib/configdrive/network-config.ts';
import type { ConfigDriveOptions } from '../../lib/configdrive/options.ts';
import { validateConfigDrive } from '../../lib/configdrive/validate.ts';
import { buildVfatImage } from '../../lib/configdrive/vfat.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { probe, readConfigDrive, sshKeygen } from '../helpers/cloud-init.ts';

const MIB = 1024 * 1024;
const NETWORK = dhcpOn(
  nicLinks([
    { name: 'eth0', mac: '0c:c4:7a:aa:bb:cc', mtu: 1500 },
    { name: 'eth1', mac: '0c:c4:7a:aa:bb:dd', mtu: 9000 },
  ]),
);

describe.skipIf(skipWithout('mtools', 'cloud-init', 'ssh-keygen'))('config drive content, read by cloud-init', () => {
  let work: string;
  let keys: string[];
  beforeAll(() => {
    assertCapable('mtools', 'cloud-init', 'ssh-keygen');
    work = mkdtempSync(join(tmpdir(), 'byoi-cd-content-'));
    keys = [sshKeygen('ed25519', 'alice@laptop'), sshKeygen('rsa', 'bob@ci')];
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  async function build(
    options: ConfigDriveOptions,
    sectorSize: number,
    network: NetworkConfig | null = NETWORK,
    bytes = 8 * MIB,
  ) {
    validateConfigDrive(options);
    const content = configDriveContent(options, network ? { network } : {});
    const path = join(work, `cd-${content.uuid}.vfat`);
    writeFileSync(path, await buildVfatImage(content.files, { bytes, sectorSize }));
    return { uuid: content.uuid, path };
  }

  it.each([512, 4096])('carries hostname, keys, meta, user data and NICs (%i-byte sectors)', async (sectorSize) => {
    const userData = '#cloud-config\nruncmd:\n  - [touch, /root/deployed]\n';
    const { uuid, path } = await build(
      {
        hostname: 'node-01.example.net',
        sshKeys: [keys[0]!, `${keys[1]!}\n`],
        userData,
        metadata: { role: 'web', 'customer-key': 'a=b c' },
      },
      sectorSize,
      NETWORK,
      63 * MIB,
    );
    expect(probe(path)).toMatchObject({ LABEL: 'config-2', TYPE: 'vfat', BLOCK_SIZE: String(sectorSize) });
    const seen = readConfigDrive(path, 0, { '0c:c4:7a:aa:bb:cc': 'eno1', '0c:c4:7a:aa:bb:dd': 'eno2' });
    expect(seen.version).toBe(2);
    expect(seen.instanceId).toBe(uuid);
    expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(seen.localHostname).toBe('node-01.example.net');
    expect(seen.publicKeys.sort()).toEqual([...keys].sort());
    expect(seen.meta).toEqual({ role: 'web', 'customer-key': 'a=b c' });
    expect(Buffer.from(seen.userData, 'base64').toString()).toBe(userData);
    expect(seen.vendorData).toEqual({});
    expect(seen.network).toEqual({
      version: 1,
      config: [
        { type: 'physical', name: 'eno1', mac_address: '0c:c4:7a:aa:bb:cc', mtu: 1500, subnets: [{ type: 'dhcp4' }] },
        { type: 'physical', name: 'eno2', mac_address: '0c:c4:7a:aa:bb:dd', mtu: 9000, subnets: [{ type: 'dhcp4' }] },
      ],
    });
  });

  it('decodes base64-sent user data (a script, and gzip), keeps plain text as given', async () => {
    const script = '#!/bin/sh\necho "deployed by byoi" > /etc/motd\n';
    const sent = await build({ sshKeys: [], metadata: {}, userData: Buffer.from(script).toString('base64') }, 4096);
    expect(Buffer.from(readConfigDrive(sent.path).userData, 'base64').toString()).toBe(script);

    const gz = gzipSync(Buffer.from('#cloud-config\nhostname: gz\n'));
    const zipped = await build({ sshKeys: [], metadata: {}, userData: gz.toString('base64') }, 512);
    expect(Buffer.from(readConfigDrive(zipped.path).userData, 'base64').equals(gz)).toBe(true);

    const plain = await build({ sshKeys: [], metadata: {}, userData: script }, 512);
    expect(Buffer.from(readConfigDrive(plain.path).userData, 'base64').toString()).toBe(script);
  });

  it('with nothing but the defaults: no hostname, no keys, no user data, no network data, a fresh uuid each time', async () => {
    const a = await build({ sshKeys: [], metadata: {} }, 512, null);
    const b = await build({ sshKeys: [], metadata: {} }, 512, null);
    const seen = readConfigDrive(a.path);
    expect(seen).toMatchObject({
      instanceId: a.uuid,
      localHostname: null,
      publicKeys: [],
      meta: {},
      userData: '',
      network: null,
    });
    expect(readConfigDrive(b.path).instanceId).toBe(b.uuid);
    expect(a.uuid).not.toBe(b.uuid);
  });
});
