import { describe, expect, it } from 'vitest';
import { ByoiError } from '../lib/errors.ts';
import { jobFromBody, mergeJobInputs, parseHeaderFlag, validateJob, type JobInput } from '../lib/job.ts';

// Real public keys (ssh-keygen): config drive validation parses them.
const KEY_ONE = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO7gfb3FTFlICyL5M+WuiYFIWe/NnJ77RD99BgYHIXWx one';
const KEY_TWO = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH010w8TYFOFpbpjds6GQwy9DD3CEHXvXkcVC2KOOYKH two';
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHAQ/qaataaEa42RN31yZsTIY5pAGcckDMyMvbIU1oIb key';

const sha256 = 'ab'.repeat(32);

function invalid(input: JobInput | (() => unknown)): ByoiError {
  try {
    if (typeof input === 'function') input();
    else validateJob(input);
  } catch (error) {
    expect(error).toBeInstanceOf(ByoiError);
    expect((error as ByoiError).kind).toBe('invalid-job');
    return error as ByoiError;
  }
  throw new Error('expected an invalid-job error');
}

describe('the legacy bringYourOwnImage body', () => {
  const body = {
    URL: 'https://images.example/debian.qcow2',
    type: 'qcow2',
    checkSum: sha256.toUpperCase(),
    checkSumType: 'sha256',
    description: 'Debian 12',
    diskGroupId: 2,
    httpHeader: [
      { key: 'Authorization', value: 'Bearer s3cr3t' },
      { key: null, value: 'ignored' },
    ],
    configdrive: {
      enable: true,
      hostname: 'web1',
      sshKey: `${KEY_ONE}\n${KEY_TWO}\n`,
      userData: '#cloud-config\n',
      userMetadatas: [{ key: 'role', value: 'web' }],
    },
  };

  it('becomes a job', () => {
    expect(validateJob(jobFromBody(body))).toEqual({
      url: 'https://images.example/debian.qcow2',
      type: 'qcow2',
      checksum: { type: 'sha256', hex: sha256 },
      target: { diskGroupId: 2 },
      description: 'Debian 12',
      httpHeaders: { Authorization: 'Bearer s3cr3t' },
      noReboot: false,
      configDrive: {
        hostname: 'web1',
        userData: '#cloud-config\n',
        sshKeys: [KEY_ONE, KEY_TWO],
        metadata: { role: 'web' },
      },
    });
  });

  it('has no config drive when it is disabled or absent', () => {
    expect(
      validateJob(jobFromBody({ ...body, configdrive: { ...body.configdrive, enable: false } })).configDrive,
    ).toBeUndefined();
    expect(validateJob(jobFromBody({ URL: body.URL, type: 'raw' })).configDrive).toBeUndefined();
  });

  it('reads the older flat shape', () => {
    const job = validateJob(
      jobFromBody({
        URL: body.URL,
        type: 'raw',
        hostname: 'h',
        sshKey: KEY,
        userMetadatas: [{ key: 'a', value: 'b' }],
      }),
    );
    expect(job.configDrive).toEqual({ hostname: 'h', sshKeys: [KEY], metadata: { a: 'b' } });
  });

  it('defaults to disk group 1', () => {
    expect(validateJob(jobFromBody({ URL: body.URL, type: 'raw' })).target).toEqual({ diskGroupId: 1 });
  });
});

describe('the reinstall body', () => {
  const body = {
    operatingSystem: 'byoi_64',
    customizations: {
      imageURL: 'http://10.0.0.1/img.raw',
      imageType: 'raw',
      imageCheckSum: 'd41d8cd98f00b204e9800998ecf8427e',
      imageCheckSumType: 'md5',
      httpHeaders: { 'X-Token': 'tok3n' },
      configDriveUserData: 'I2Nsb3VkLWNvbmZpZwo=',
      configDriveMetadata: { env: 'prod' },
      hostname: 'db1',
      sshKey: KEY,
      efiBootloaderPath: '\\efi\\debian\\grubx64.efi',
    },
    storage: [{ diskGroupId: 3 }],
  };

  it('becomes the same kind of job', () => {
    expect(validateJob(jobFromBody(body))).toEqual({
      url: 'http://10.0.0.1/img.raw',
      type: 'raw',
      checksum: { type: 'md5', hex: 'd41d8cd98f00b204e9800998ecf8427e' },
      target: { diskGroupId: 3 },
      httpHeaders: { 'X-Token': 'tok3n' },
      noReboot: false,
      efiBootloaderPath: '\\efi\\debian\\grubx64.efi',
      configDrive: { hostname: 'db1', userData: 'I2Nsb3VkLWNvbmZpZwo=', sshKeys: [KEY], metadata: { env: 'prod' } },
    });
  });

  it('has no config drive without config-drive customizations', () => {
    const job = validateJob(
      jobFromBody({ operatingSystem: 'byoi_64', customizations: { imageURL: 'http://h/i', imageType: 'qcow2' } }),
    );
    expect(job.configDrive).toBeUndefined();
    expect(job.target).toEqual({ diskGroupId: 1 });
  });

  it('refuses a body of neither shape', () => {
    expect(invalid(() => jobFromBody({ url: 'http://h/i' })).message).toBe(
      'Bad job, expected: a bringYourOwnImage or reinstall JSON body.',
    );
    expect(invalid(() => jobFromBody([1])).message).toBe(
      'Bad job, expected: a bringYourOwnImage or reinstall JSON body.',
    );
  });
});

describe('flags over a body', () => {
  it('override fields, merge headers, and a disk replaces the disk group', () => {
    const body = jobFromBody({
      URL: 'http://h/a.qcow2',
      type: 'qcow2',
      diskGroupId: 2,
      httpHeader: [
        { key: 'A', value: 'one' },
        { key: 'B', value: 'two' },
      ],
    });
    const flags: JobInput = {
      url: 'http://h/b.raw',
      type: 'raw',
      disk: '/dev/loop7',
      httpHeaders: { B: 'three' },
      noReboot: true,
      statusFile: '/tmp/s.json',
      ramSize: 8 * 2 ** 30,
    };
    expect(validateJob(mergeJobInputs(body, flags))).toEqual({
      url: 'http://h/b.raw',
      type: 'raw',
      target: { disk: '/dev/loop7' },
      httpHeaders: { A: 'one', B: 'three' },
      noReboot: true,
      statusFile: '/tmp/s.json',
      ramSize: 8 * 2 ** 30,
    });
  });

  it('parse header flags', () => {
    expect(parseHeaderFlag('Authorization: Basic a:b')).toEqual(['Authorization', 'Basic a:b']);
    expect(invalid(() => parseHeaderFlag('no colon here')).message).toBe("Bad httpHeader, expected: 'Name: value'.");
  });
});

describe('validation messages', () => {
  const ok: JobInput = { url: 'https://h/i.qcow2', type: 'qcow2' };

  it.each([
    [{ ...ok, type: 'vhd' }, 'Bad format image, expected: qcow2, raw, ova.'],
    [{ ...ok, type: undefined }, 'Bad format image, expected: qcow2, raw, ova.'],
    [{ ...ok, checksum: sha256, checksumType: 'crc32' }, 'Bad checkSumType, expected: md5, sha1, sha256, sha512.'],
    [{ ...ok, checksum: sha256 }, 'Please provide checkSum AND checkSumType or none of them'],
    [{ ...ok, checksumType: 'sha256' }, 'Please provide checkSum AND checkSumType or none of them'],
    [{ ...ok, checksum: 'abc', checksumType: 'sha256' }, 'Bad checkSum, expected: 64 hexadecimal digits for sha256.'],
    [{ ...ok, checksum: sha256, checksumType: 'md5' }, 'Bad checkSum, expected: 32 hexadecimal digits for md5.'],
    [
      { ...ok, checksum: 'z'.repeat(40), checksumType: 'sha1' },
      'Bad checkSum, expected: 40 hexadecimal digits for sha1.',
    ],
    [
      { ...ok, checksum: 'a'.repeat(64), checksumType: 'sha512' },
      'Bad checkSum, expected: 128 hexadecimal digits for sha512.',
    ],
    [{ ...ok, url: undefined }, 'Missing URL, expected: the http or https address of the image.'],
    [{ ...ok, url: 'ftp://h/i' }, 'Bad URL, expected: an http or https address.'],
    [{ ...ok, url: 'file:///etc/passwd' }, 'Bad URL, expected: an http or https address.'],
    [{ ...ok, url: 'not a url' }, 'Bad URL, expected: an http or https address.'],
    [{ ...ok, diskGroupId: -1 }, 'Bad diskGroupId, expected: a positive integer.'],
    [{ ...ok, diskGroupId: 1.5 }, 'Bad diskGroupId, expected: a positive integer.'],
    [{ ...ok, disk: 'sda' }, 'Bad disk, expected: the path of a block device such as /dev/sda.'],
    [{ ...ok, ramSize: Number.NaN }, 'Bad ramSize, expected: a number of bytes.'],
    [
      { ...ok, httpHeaders: { 'Bad Name': 'x' } },
      'Bad httpHeader "Bad Name", expected: a header name and a value on one line.',
    ],
    [
      { ...ok, httpHeaders: { Good: 'line\r\nInjected: yes' } },
      'Bad httpHeader "Good", expected: a header name and a value on one line.',
    ],
    [{ ...ok, stream: 'yes' }, 'Bad stream, expected: true or false.'],
  ] as [JobInput, string][])('%o -> %s', (input, message) => {
    expect(invalid(input).message).toBe(message);
  });

  it('accepts type ova, and the streaming mode from a flag or a body', () => {
    expect(validateJob({ ...ok, type: 'ova' }).type).toBe('ova');
    expect(validateJob({ ...ok, stream: true }).stream).toBe(true);
    expect(validateJob(ok).stream).toBeUndefined();
    expect(validateJob(jobFromBody({ URL: 'https://h/i.raw.xz', type: 'raw', stream: true })).stream).toBe(true);
    expect(
      validateJob(
        jobFromBody({
          operatingSystem: 'byoi_64',
          customizations: { imageURL: 'https://h/i.raw', imageType: 'raw', stream: true },
        }),
      ).stream,
    ).toBe(true);
  });

  it('accepts every checksum type with its length, in either case', () => {
    for (const [type, digits] of [
      ['md5', 32],
      ['sha1', 40],
      ['sha256', 64],
      ['sha512', 128],
    ] as const) {
      expect(validateJob({ ...ok, checksum: 'A'.repeat(digits), checksumType: type }).checksum).toEqual({
        type,
        hex: 'a'.repeat(digits),
      });
    }
  });

  it('never quotes a header value in its message', () => {
    expect(invalid({ ...ok, httpHeaders: { X: 'top\nsecret' } }).message).not.toContain('secret');
  });
});
