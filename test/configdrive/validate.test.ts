import { beforeAll, describe, expect, it } from 'vitest';
import { ByoiError, exitCodeOf } from '../../lib/errors.ts';
import { USER_DATA_MAX_BYTES, type ConfigDriveOptions } from '../../lib/configdrive/options.ts';
import { parseSshPublicKey, sshKeyLines } from '../../lib/configdrive/ssh-key.ts';
import { validateConfigDrive } from '../../lib/configdrive/validate.ts';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';
import { sshKeygen } from '../helpers/cloud-init.ts';

function refusal(options: Partial<ConfigDriveOptions>): ByoiError {
  try {
    validateConfigDrive({ sshKeys: [], metadata: {}, ...options });
  } catch (error) {
    expect(error).toBeInstanceOf(ByoiError);
    expect((error as ByoiError).kind).toBe('invalid-job');
    expect(exitCodeOf(error)).toBe(2);
    return error as ByoiError;
  }
  throw new Error('validateConfigDrive accepted it');
}

describe('validateConfigDrive: hostname', () => {
  it.each([
    'node-01',
    'node-01.example.net',
    'A1',
    '1host',
    'x'.repeat(63),
    `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`,
  ])('accepts %s', (hostname) =>
    expect(() => validateConfigDrive({ hostname, sshKeys: [], metadata: {} })).not.toThrow(),
  );

  it.each([
    ['-node', 'Invalid configdrive hostname "-node": the label "-node" starts or ends with a hyphen.'],
    ['node-.example', 'Invalid configdrive hostname "node-.example": the label "node-" starts or ends with a hyphen.'],
    [
      'no_de',
      'Invalid configdrive hostname "no_de": the label "no_de" has characters other than letters, digits and hyphens.',
    ],
    [
      'node 1',
      'Invalid configdrive hostname "node 1": the label "node 1" has characters other than letters, digits and hyphens.',
    ],
    [
      'nöde',
      'Invalid configdrive hostname "nöde": the label "nöde" has characters other than letters, digits and hyphens.',
    ],
    [
      'a..b',
      'Invalid configdrive hostname "a..b": it has an empty label (two dots in a row, or a leading or trailing dot).',
    ],
    [
      'a.b.',
      'Invalid configdrive hostname "a.b.": it has an empty label (two dots in a row, or a leading or trailing dot).',
    ],
    [
      'x'.repeat(64),
      `Invalid configdrive hostname "${'x'.repeat(64)}": the label "${'x'.repeat(20)}…" is longer than 63 characters.`,
    ],
  ])('refuses %j', (hostname, message) => {
    expect(refusal({ hostname }).message).toBe(message);
  });

  it('refuses a name longer than 253 characters', () => {
    const hostname = Array.from({ length: 5 }, () => 'a'.repeat(60)).join('.');
    expect(refusal({ hostname }).message).toMatch(/: it is 304 characters long, more than 253\.$/);
  });

  it('treats an empty hostname as none', () => {
    expect(() => validateConfigDrive({ hostname: '', sshKeys: [], metadata: {} })).not.toThrow();
  });
});

describe.skipIf(skipWithout('ssh-keygen'))('validateConfigDrive: SSH keys', () => {
  const keys: Record<string, string> = {};
  beforeAll(() => {
    assertCapable('ssh-keygen');
    for (const type of ['ed25519', 'rsa', 'ecdsa'] as const) keys[type] = sshKeygen(type, `${type}@test`);
  });

  it('accepts keys made by ssh-keygen, with comments, options and several per entry', () => {
    const sshKeys = [keys.ed25519!, `${keys.rsa!}\n\n${keys.ecdsa!}\n`, `from="10.0.0.0/8",no-pty ${keys.ed25519!}`];
    expect(() => validateConfigDrive({ sshKeys, metadata: {} })).not.toThrow();
    expect(sshKeyLines(sshKeys)).toHaveLength(4);
    const parsed = parseSshPublicKey(keys.ecdsa!);
    expect(typeof parsed === 'object' && [parsed.type, parsed.comment]).toEqual(['ecdsa-sha2-nistp256', 'ecdsa@test']);
  });

  it('refuses a key whose data is for another type', () => {
    const [, blob] = keys.rsa!.split(' ');
    expect(refusal({ sshKeys: [`ssh-ed25519 ${blob}`] }).message).toBe(
      'Invalid configdrive SSH key #1: the key data is of type "ssh-rsa", not ssh-ed25519.',
    );
  });

  it('refuses truncated and non-base64 key data, numbering keys across entries', () => {
    const [type, blob] = keys.ed25519!.split(' ');
    expect(refusal({ sshKeys: [keys.rsa!, `${type} ${blob!.slice(0, 12)}`] }).message).toBe(
      'Invalid configdrive SSH key #2: the key data is too short or malformed.',
    );
    expect(refusal({ sshKeys: [`${keys.rsa!}\n${type} ${blob!.slice(0, 30)}`] }).message).toBe(
      'Invalid configdrive SSH key #2: the key data is not valid base64.',
    );
    expect(refusal({ sshKeys: [`${type} not*base64`] }).message).toBe(
      'Invalid configdrive SSH key #1: the key data is not valid base64.',
    );
  });

  it('refuses unknown types, a lone type and private keys', () => {
    expect(refusal({ sshKeys: ['ssh-foo AAAAB3NzaC1yc2E= me'] }).message).toBe(
      'Invalid configdrive SSH key #1: the key type "ssh-foo" is not one of ssh-ed25519, ssh-rsa, ssh-dss, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521 (or their security-key and certificate forms).',
    );
    expect(refusal({ sshKeys: ['ssh-ed25519'] }).message).toBe(
      'Invalid configdrive SSH key #1: no key data follows the type ssh-ed25519.',
    );
    expect(
      refusal({
        sshKeys: ['-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----'],
      }).message,
    ).toBe('Invalid configdrive SSH key #1: it is a PEM block (a private key?), not an OpenSSH public key line.');
  });
});

describe('validateConfigDrive: metadata and user data', () => {
  it('refuses the reserved dsmode key', () => {
    expect(refusal({ metadata: { role: 'web', dsmode: 'local' } }).message).toBe(
      'Invalid configdrive metadata: the key "dsmode" is reserved by cloud-init (it sets the datasource mode); use another key.',
    );
  });

  it('refuses empty, overlong and control-character keys and non-string values', () => {
    expect(refusal({ metadata: { '': 'x' } }).message).toBe('Invalid configdrive metadata: a key is empty.');
    expect(refusal({ metadata: { ['k'.repeat(256)]: 'x' } }).message).toMatch(/is longer than 255 characters\.$/);
    expect(refusal({ metadata: { 'a\nb': 'x' } }).message).toBe(
      'Invalid configdrive metadata: the key "a\\nb" contains control characters.',
    );
    expect(refusal({ metadata: { n: 5 as unknown as string } }).message).toBe(
      'Invalid configdrive metadata: the value of "n" is not a string.',
    );
  });

  it('refuses metadata over 1 MiB in all', () => {
    const metadata = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, 'v'.repeat(60_000)]));
    expect(refusal({ metadata }).message).toMatch(
      /^Invalid configdrive metadata: \d+ bytes in all, more than the 1048576 bytes allowed\.$/,
    );
  });

  it('measures user data after base64 decoding', () => {
    const script = Buffer.concat([Buffer.from('#!/bin/sh\n'), Buffer.alloc(USER_DATA_MAX_BYTES - 10, 0x3a)]);
    expect(script.length).toBe(USER_DATA_MAX_BYTES);
    expect(() => validateConfigDrive({ sshKeys: [], metadata: {}, userData: script.toString('base64') })).not.toThrow();
    const tooBig = Buffer.concat([script, Buffer.from('x')]);
    expect(refusal({ userData: tooBig.toString('base64') }).message).toBe(
      `Invalid configdrive user data: ${USER_DATA_MAX_BYTES + 1} bytes, more than the ${USER_DATA_MAX_BYTES} bytes a config drive holds.`,
    );
  });
});
