// One validation, two doors: every invalid body gets from the API's 400 the very sentence that
// `byoi deploy --job` prints as its last line (exit 2).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, RecordingBoot, startApi, type TestApi } from '../helpers/api.ts';
import { byoi } from '../helpers/deploy.ts';

const sha256 = 'c'.repeat(64);
const url = 'http://images.example/disk.qcow2';
const bodies: [string, 'bringYourOwnImage' | 'reinstall', unknown][] = [
  ['an unknown type', 'bringYourOwnImage', { URL: url, type: 'vmdk' }],
  ['an unknown checksum type', 'bringYourOwnImage', { URL: url, type: 'qcow2', checkSum: sha256, checkSumType: 'crc' }],
  ['a checksum without its type', 'bringYourOwnImage', { URL: url, type: 'qcow2', checkSum: sha256 }],
  ['a short sha256', 'bringYourOwnImage', { URL: url, type: 'qcow2', checkSum: 'abc', checkSumType: 'sha256' }],
  ['a file URL', 'bringYourOwnImage', { URL: 'file:///etc/passwd', type: 'raw' }],
  [
    'a header with a newline',
    'bringYourOwnImage',
    { URL: url, type: 'raw', httpHeader: [{ key: 'X-A', value: 'a\nb' }] },
  ],
  ['a bad diskGroupId', 'bringYourOwnImage', { URL: url, type: 'raw', diskGroupId: 'one' }],
  [
    'reinstall: an unknown imageType',
    'reinstall',
    { operatingSystem: 'byoi_64', customizations: { imageURL: url, imageType: 'vhd' } },
  ],
  [
    'reinstall: a checksum type alone',
    'reinstall',
    { operatingSystem: 'byoi_64', customizations: { imageURL: url, imageType: 'raw', imageCheckSumType: 'md5' } },
  ],
  [
    'reinstall: headers not a map',
    'reinstall',
    { operatingSystem: 'byoi_64', customizations: { imageURL: url, imageType: 'raw', httpHeaders: ['x'] } },
  ],
];

describe('validation messages', () => {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-same-'));
  let api: TestApi;
  beforeAll(async () => {
    api = await startApi(
      { servers: [{ serviceName: 'ns1.lab', apiKeys: ['k'] }] },
      join(dir, 'db.sqlite'),
      new RecordingBoot(),
    );
  });
  afterAll(async () => {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it.concurrent.each(bodies)('are the same from the API and from byoi deploy: %s', async (name, route, body) => {
    const file = join(dir, `${name.replace(/\W+/g, '-')}.json`);
    writeFileSync(file, JSON.stringify(body));
    const cli = await byoi(['deploy', '--job', file, '--no-reboot']);
    expect(cli.exitCode).toBe(2);
    const response = await call(api.url, 'POST', `/dedicated/server/ns1.lab/${route}`, { key: 'k', body });
    expect(response).toEqual({ status: 400, body: { class: 'Client::BadRequest', message: cli.lastLine } });
  });
});
