// One QEMU process with its serial console on stdout: started, watched, and always ended. The
// console is collected as it comes (optionally until a line matches), and QEMU is killed on a
// timeout, on `stop()`, or when this Node process dies (setpriv's parent-death signal). Every
// harness (scripts/vm/run.ts, scripts/image/boot.ts, scripts/rescue/boot.ts) boots through it.
import { spawn } from 'node:child_process';

export interface MachineOptions {
  /** `max` by default; the rescue system asks for `qemu64` (see scripts/rescue/boot.ts). */
  cpu?: string;
  cpus?: number;
  memoryMiB: number;
}

/** The machine every harness boots: q35 under TCG, no default devices, the serial console on stdio, off on a reboot. */
export function machineArgs(options: MachineOptions): string[] {
  return [
    '-machine',
    'q35',
    '-accel',
    'tcg',
    '-cpu',
    options.cpu ?? 'max',
    '-smp',
    String(options.cpus ?? 1),
    '-m',
    String(options.memoryMiB),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-serial',
    'stdio',
    '-no-reboot',
  ];
}

/** QEMU -drive/-device options are comma-separated; a comma in a value is written twice. */
export function qemuValue(value: string): string {
  return value.replaceAll(',', ',,');
}

/** A VM that did not do what was asked, with the console's last lines. */
export class VmError extends Error {
  readonly console: string;
  constructor(message: string, console: string) {
    super(`${message}\n--- last console lines ---\n${console.split('\n').slice(-40).join('\n')}`);
    this.name = 'VmError';
    this.console = console;
  }
}

export interface QemuOptions {
  /** Arguments after qemu-system-x86_64; must include `-serial stdio`. */
  args: string[];
  /** Kills QEMU once the (normalised) console matches. */
  until?: RegExp;
  timeoutSeconds: number;
  onConsole?: (text: string) => void;
}

/** How QEMU ended: by itself (`exited`, with its status), on a match, on the timeout, or stopped. */
export type QemuEnd = 'exited' | 'matched' | 'timeout' | 'stopped';

export interface QemuOutcome {
  end: QemuEnd;
  /** QEMU's exit status when it exited by itself (0 after a guest reboot under -no-reboot). */
  status: number | null;
  /** The serial console, escape sequences removed, \n line ends. */
  console: string;
  /** QEMU's own messages. */
  stderr: string;
  seconds: number;
}

export interface QemuRunning {
  readonly outcome: Promise<QemuOutcome>;
  /** The console so far, normalised. */
  console(): string;
  /** Kills QEMU (a power cut); `outcome` then resolves with end `stopped`. */
  stop(): void;
}

/** Firmware, boot loaders and consoles draw with escape sequences; keeps the plain text lines. */
export function normaliseConsole(text: string): string {
  return text
    .replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '')
    .replaceAll('\r\n', '\n')
    .replaceAll('\r', '\n');
}

export function startQemu(options: QemuOptions): QemuRunning {
  const started = performance.now();
  const child = spawn('setpriv', ['--pdeathsig', 'SIGKILL', '--', 'qemu-system-x86_64', ...options.args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let end: QemuEnd | undefined;
  const kill = (why: QemuEnd) => {
    end ??= why;
    child.kill('SIGKILL');
  };
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let text = '';
  let stderr = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    text += chunk;
    options.onConsole?.(chunk);
    if (options.until && end === undefined && options.until.test(normaliseConsole(text))) kill('matched');
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => kill('timeout'), options.timeoutSeconds * 1000);
  const outcome = new Promise<number | null>((done, fail) => {
    child.once('error', fail);
    child.once('close', (code) => done(code));
  })
    .finally(() => {
      clearTimeout(timer);
      process.off('exit', killOnExit);
    })
    .then((status) => ({
      end: end ?? 'exited',
      status,
      console: normaliseConsole(text),
      stderr: stderr.trim(),
      seconds: (performance.now() - started) / 1000,
    }));
  return { outcome, console: () => normaliseConsole(text), stop: () => kill('stopped') };
}
