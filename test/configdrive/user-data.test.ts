import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeUserData } from '../../lib/configdrive/user-data.ts';

const text = (bytes: Uint8Array) => Buffer.from(bytes).toString('utf8');

describe('decodeUserData', () => {
  const cloudConfig = '#cloud-config\npackages: [htop]\n';
  const script = '#!/bin/bash\necho deployed > /root/marker\n';
  const mime =
    'Content-Type: multipart/mixed; boundary="XX"\nMIME-Version: 1.0\n\n--XX\nContent-Type: text/x-shellscript\n\n#!/bin/sh\ntrue\n--XX--\n';

  it.each([cloudConfig, script, mime, '#ps1_sysnative\nWrite-Host hi\n', 'just some text\n'])(
    'keeps plain text as given: %j',
    (plain) => {
      expect(text(decodeUserData(plain))).toBe(plain);
    },
  );

  it.each([cloudConfig, script, mime])('decodes base64 of a cloud-config, script or MIME message: %j', (plain) => {
    expect(text(decodeUserData(Buffer.from(plain).toString('base64')))).toBe(plain);
  });

  it('decodes base64 wrapped over several lines (base64 without -w0)', () => {
    const long = `#!/bin/sh\n${'echo 0123456789abcdef\n'.repeat(20)}`;
    const wrapped = Buffer.from(long)
      .toString('base64')
      .replace(/(.{76})/g, '$1\n');
    expect(wrapped).toContain('\n');
    expect(text(decodeUserData(wrapped))).toBe(long);
  });

  it('decodes base64 of gzip to the gzip bytes, and keeps gzip bytes given as bytes', () => {
    const gz = gzipSync(Buffer.from(cloudConfig));
    expect(Buffer.from(decodeUserData(gz.toString('base64'))).equals(gz)).toBe(true);
    expect(Buffer.from(decodeUserData(new Uint8Array(gz))).equals(gz)).toBe(true);
  });

  it('keeps text that merely looks like base64 when it decodes to something cloud-init would not run', () => {
    expect(text(decodeUserData('abcd'))).toBe('abcd');
    const prose = Buffer.from('hello world, not a script').toString('base64');
    expect(text(decodeUserData(prose))).toBe(prose);
  });
});
