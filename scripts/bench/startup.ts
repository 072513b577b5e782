// Fixed costs of a command: `byoi --help` against `qemu-img --help`, and `byoi inspect` of a small
// qcow2 against `qemu-img info` of it. The target is 60 ms of wall time for byoi's.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { interleaved, measure, summary } from './measure.ts';
import type { Row } from './convert.ts';

export async function benchStartup(node: string, byoi: string, runs: number): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-bench-startup-'));
  try {
    const small = join(dir, 'small.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', small, '64M']);
    // The compile cache is filled by a first run, as on any machine after the first command.
    await measure(node, [byoi, 'inspect', small]);
    const help = await interleaved(runs, {
      ours: () => measure(node, [byoi, '--help']),
      reference: () => measure('qemu-img', ['--help']),
    });
    const inspect = await interleaved(runs, {
      ours: () => measure(node, [byoi, 'inspect', small]),
      reference: () => measure('qemu-img', ['info', small]),
    });
    return [
      {
        name: 'start-up: byoi --help (qemu-img --help)',
        ours: summary(help.ours!),
        reference: summary(help.reference!),
        imageBytes: 0,
      },
      {
        name: 'start-up: byoi inspect of a 64 MiB qcow2 (qemu-img info)',
        ours: summary(inspect.ours!),
        reference: summary(inspect.reference!),
        imageBytes: 0,
      },
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
