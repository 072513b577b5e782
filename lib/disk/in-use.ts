// The agent never writes to a disk that the running system uses: a mounted filesystem or an
// active swap on the disk, one of its partitions, or a device stacked on them.
import { readFileSync, realpathSync } from 'node:fs';
import { basename } from 'node:path';
import { failed, messages } from '../errors.ts';
import { dependents, type WholeDisk } from './block.ts';

/** mountinfo escapes spaces and the like as \ooo. */
function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

function kernelName(path: string): string | undefined {
  try {
    return basename(realpathSync(path));
  } catch {
    return undefined;
  }
}

/** How the running system uses the disk, e.g. ["loop3p1 mounted at /mnt", "sda2 as swap"]; empty when unused. */
export function usesOf(disk: WholeDisk, options: { sys?: string; proc?: string } = {}): string[] {
  const proc = options.proc ?? '/proc';
  const nodes = [{ name: disk.name, dev: disk.dev }, ...dependents(disk, options.sys)];
  const byDev = new Map(nodes.map((n) => [n.dev, n.name]));
  const names = new Set(nodes.map((n) => n.name));
  const uses: string[] = [];

  for (const line of readFileSync(`${proc}/self/mountinfo`, 'utf8').split('\n')) {
    const fields = line.split(' ');
    const separator = fields.indexOf('-');
    if (fields.length < 5 || separator < 0) continue;
    const source = fields[separator + 2] ?? '';
    const sourceName = source.startsWith('/dev/') ? kernelName(unescape(source)) : undefined;
    const name = byDev.get(fields[2]!) ?? (sourceName !== undefined && names.has(sourceName) ? sourceName : undefined);
    if (name !== undefined) uses.push(`${name} mounted at ${unescape(fields[4]!)}`);
  }

  for (const line of readFileSync(`${proc}/swaps`, 'utf8').split('\n').slice(1)) {
    const file = line.split(/\s+/)[0];
    if (!file?.startsWith('/dev/')) continue; // a swap file lives on a filesystem, found above if on this disk
    const name = kernelName(unescape(file));
    if (name !== undefined && names.has(name)) uses.push(`${name} as swap`);
  }
  return uses;
}

export function assertNotInUse(disk: WholeDisk): void {
  const uses = usesOf(disk);
  if (uses.length > 0) throw failed(messages.diskInUse(disk.path, uses.join(', ')));
}
