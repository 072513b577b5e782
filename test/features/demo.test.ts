// The README's first Quick start command: scripts/demo.sh deploys a qcow2 image over HTTP onto a
// loop device and checks the result itself (sgdisk -v, the bytes against qemu-img, the file).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';

const run = promisify(execFile);
describe.skipIf(skipWithout('root', 'loop', 'qemu-img', 'sgdisk'))('demo', () => {
  beforeAll(() => assertCapable('root', 'loop', 'qemu-img', 'sgdisk'));

  it('deploys its image and finds it intact', async () => {
    const { stdout } = await run('bash', ['scripts/demo.sh'], { timeout: 300_000, maxBuffer: 16 << 20 });
    expect(stdout).toContain('"status": "done"');
    expect(stdout).toMatch(/^identical: bytes 17408 to \d+ of \/dev\/loop\d+ equal qemu-img convert's output$/m);
    expect(stdout).toContain('Hello from an image deployed by byoi.');
    expect(stdout).toContain('LABEL=config-2');
    expect(stdout).toMatch(/meta_data.json: \{[\s\S]*"hostname": "demo.byoi.example"/);
  }, 300_000);
});
