// `byoi configdrive` end to end: the CLI as a user runs it, its image read back by cloud-init.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { probe, readConfigDrive, sshKeygen } from '../helpers/cloud-init.ts';

const BYOI = ['agent/byoi.ts'];

function byoi(args: string[], input?: string) {
  return spawnSync(process.execPath, [...BYOI, ...args], {
    encoding: 'utf8',
    ...(input === undefined ? {} : { input }),
  });
}

describe.skipIf(skipWithout('mtools', 'cloud-init', 'ssh-keygen'))('byoi configdrive', () => {
  let work: string;
  beforeAll(() => {
    assertCapable('mtools', 'cloud-init', 'ssh-keygen');
    work = mkdtempSync(join(tmpdir(), 'byoi-cd-cli-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('builds an image cloud-init reads: flags, repeated keys and metadata, user data from stdin', () => {
    const key1 = sshKeygen('ed25519', 'one');
    const key2 = sshKeygen('ecdsa', 'two');
    const out = join(work, 'cd.img');
    const script = '#!/bin/sh\necho hello\n';
    const result = byoi(
      [
        'configdrive',
        '--out',
        out,
        '--hostname',
        'web-1',
        '--ssh-key',
        key1,
        '--ssh-key',
        key2,
        '--user-metadata',
        'role=web',
        '--user-metadata',
        'note=a=b',
        '--user-data',
        '-',
        '--sector-size',
        '4096',
      ],
      Buffer.from(script).toString('base64'),
    );
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const uuid = /instance id ([0-9a-f-]{36})/.exec(result.stdout)![1];
    expect(statSync(out).size).toBe(63 * 1024 * 1024);
    expect(probe(out)).toMatchObject({ LABEL: 'config-2', TYPE: 'vfat', BLOCK_SIZE: '4096' });
    const seen = readConfigDrive(out);
    expect(seen).toMatchObject({ instanceId: uuid, localHostname: 'web-1', meta: { role: 'web', note: 'a=b' } });
    expect(seen.publicKeys.sort()).toEqual([key1, key2].sort());
    expect(Buffer.from(seen.userData, 'base64').toString()).toBe(script);
  });

  it('reads user data from a file, byte for byte', () => {
    const file = join(work, 'user-data');
    writeFileSync(file, '#cloud-config\npackage_update: true\n');
    const out = join(work, 'cd2.img');
    expect(byoi(['configdrive', '--out', out, '--user-data', file, '--size-mib', '4']).status).toBe(0);
    expect(Buffer.from(readConfigDrive(out).userData, 'base64').toString()).toBe(
      '#cloud-config\npackage_update: true\n',
    );
  });

  it('refuses invalid fields with exit 2 and the message last, writing nothing', () => {
    const out = join(work, 'bad.img');
    const reserved = byoi(['configdrive', '--out', out, '--user-metadata', 'dsmode=local']);
    expect(reserved.status).toBe(2);
    expect(reserved.stderr.trim().split('\n').at(-1)).toBe(
      'Invalid configdrive metadata: the key "dsmode" is reserved by cloud-init (it sets the datasource mode); use another key.',
    );
    const pair = byoi(['configdrive', '--out', out, '--user-metadata', 'novalue']);
    expect(pair.status).toBe(2);
    expect(pair.stderr.trim().split('\n').at(-1)).toBe('Invalid --user-metadata "novalue": expected key=value.');
    const host = byoi(['configdrive', '--out', out, '--hostname', 'under_score']);
    expect(host.status).toBe(2);
    expect(() => statSync(out)).toThrow();
  });
});
