// lib/system/exec.ts: the same results whether a tool is started here or by the helper process.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exec, ExecError, toolHelperStarted, withToolHelper } from '../../lib/system/exec.ts';

const modes = [
  ['in this process', <T>(action: () => Promise<T>) => action()],
  [
    'through the helper process',
    <T>(action: () => Promise<T>) =>
      withToolHelper(async () => {
        await toolHelperStarted();
        return action();
      }),
  ],
] as const;

describe.each(modes)('exec, %s', (_name, around) => {
  it('returns the exit code, stdout and stderr without their final newline, and both interleaved', async () => {
    const result = await around(() =>
      exec('sh', ['-c', 'echo out; sleep 0.05; echo err >&2; exit 3'], { reject: false }),
    );
    expect(result).toMatchObject({ exitCode: 3, failed: true, stdout: 'out', stderr: 'err', all: 'out\nerr' });
    expect(result.message).toBe('sh -c echo out; sleep 0.05; echo err >&2; exit 3 failed with exit code 3\nout\nerr');
  });

  it('feeds input to stdin and adds to the environment', async () => {
    const result = await around(() =>
      exec('sh', ['-c', 'read line; echo "$line $EXTRA $HOME"'], { input: 'hello\n', env: { EXTRA: 'x' } }),
    );
    expect(result).toMatchObject({ exitCode: 0, failed: false, stdout: `hello x ${process.env.HOME}` });
  });

  it('gives stdin /dev/null without input', async () => {
    expect((await around(() => exec('sh', ['-c', 'cat; echo done']))).stdout).toBe('done');
  });

  it('throws an ExecError by default, and reports a tool that does not exist', async () => {
    await expect(around(() => exec('false'))).rejects.toThrow(ExecError);
    const missing = await around(() => exec('byoi-no-such-tool', ['a'], { reject: false }));
    expect(missing).toMatchObject({ exitCode: undefined, failed: true });
    expect(missing.message).toMatch(/^byoi-no-such-tool a could not run: .*ENOENT/);
  });

  it('reports a tool killed by a signal', async () => {
    const result = await around(() => exec('sh', ['-c', 'kill -9 $$'], { reject: false }));
    expect(result).toMatchObject({
      exitCode: undefined,
      failed: true,
      message: 'sh -c kill -9 $$ was killed by SIGKILL',
    });
  });
});

describe('withToolHelper', () => {
  it('starts the tools from another process, which ends with the action', async () => {
    const parentOf = async () => Number((await exec('sh', ['-c', 'echo $PPID'])).stdout);
    expect(await parentOf()).toBe(process.pid);
    let helperPid = 0;
    await withToolHelper(async () => {
      await toolHelperStarted();
      helperPid = await parentOf();
      expect(await withToolHelper(parentOf)).toBe(helperPid); // nested: the same helper
    });
    expect(helperPid).not.toBe(process.pid);
    await expect.poll(() => isAlive(helperPid), { timeout: 5000 }).toBe(false);
  });
});

describe('before the helper is ready', () => {
  const parentOf = async () => Number((await exec('sh', ['-c', 'echo $PPID'])).stdout);

  it('a tool starts from this process while it is small enough to fork cheaply; then from the helper', async () => {
    await withToolHelper(
      async () => {
        expect(await parentOf()).toBe(process.pid);
        await toolHelperStarted();
        expect(await parentOf()).not.toBe(process.pid);
      },
      { forkBelow: Infinity },
    );
  });

  it('a tool goes through the helper where this process is too large to fork', async () => {
    await withToolHelper(
      async () => {
        expect(await parentOf()).not.toBe(process.pid);
      },
      { forkBelow: 0 },
    );
  });

  it('a helper that is not ready in time is killed, and tools then start from this process', async () => {
    // The helper inherits the environment: a preloaded module keeps it from ever saying it is ready.
    const dir = mkdtempSync(join(tmpdir(), 'byoi-exec-'));
    const hang = join(dir, 'hang.cjs');
    const pidFile = join(dir, 'pid');
    writeFileSync(
      hang,
      `require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); for (;;);\n`,
    );
    const before = process.env.NODE_OPTIONS;
    process.env.NODE_OPTIONS = `--require ${hang}`;
    try {
      // forkBelow 0: every tool waits for the helper, as in a process that holds an image.
      const parent = await withToolHelper(parentOf, { forkBelow: 0, readyWithinMs: 300 });
      expect(parent).toBe(process.pid);
      const helperPid = Number(readFileSync(pidFile, 'utf8'));
      await expect.poll(() => isAlive(helperPid), { timeout: 5000 }).toBe(false);
    } finally {
      if (before === undefined) delete process.env.NODE_OPTIONS;
      else process.env.NODE_OPTIONS = before;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
