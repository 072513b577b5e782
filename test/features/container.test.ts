// The container: scripts/container-test.sh builds the Dockerfile with podman and runs
// `byoi --help` inside it, failing unless the output is the checkout's own help.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { assertCapable, skipWithout } from '../helpers/capabilities.ts';

const run = promisify(execFile);

describe.skipIf(skipWithout('root', 'podman'))('container', () => {
  beforeAll(() => assertCapable('root', 'podman'));

  it('builds, and byoi --help runs inside it', async () => {
    const { stdout } = await run('bash', ['scripts/container-test.sh'], { timeout: 600_000, maxBuffer: 16 << 20 });
    expect(stdout).toMatch(/^container ok: byoi --help runs in localhost\/byoi:ctx-[0-9a-f]{16}$/m);
  }, 600_000);
});
