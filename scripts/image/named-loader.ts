// A variant of the cloud image whose EFI system partition no longer holds the removable-media
// fallback \EFI\BOOT\BOOTX64.EFI: its loader is moved to a named path, so a UEFI firmware boots it
// only through a boot entry naming that path (the one byoi makes from the job's efiBootloaderPath).
// The image's GRUB carries its own config (it finds the root by UUID), so it boots from any path.
//
// Made with tools byoi does not use to write disks (qemu-img, sfdisk, mtools) and cached beside its
// source (so cleared with it), under the source's digest: about 25 s once.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where the variant's loader is; the fallback path is gone. */
export const NAMED_LOADER = '\\EFI\\debian\\grubx64.efi';
const ESP_TYPE = 'C12A7328-F81F-11D2-BA4B-00A0C93EC93B';

/** `source`: the cloud image (qcow2, see build-cloud-image.sh); `sourceSha256`: its digest. Returns the variant's qcow2. */
export async function ensureNamedLoaderImage(source: string, sourceSha256: string): Promise<string> {
  const out = join(dirname(source), `named-loader-${sourceSha256.slice(0, 16)}.qcow2`);
  if (existsSync(out)) return out;
  const work = mkdtempSync(join(dirname(source), '.named-loader.'));
  try {
    const raw = join(work, 'disk.raw');
    await run('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', source, raw]);
    const esp = `${raw}@@${(await findEsp(raw)).offset}`;
    const mtools = (command: string, ...args: string[]) =>
      run(command, ['-i', esp, ...args], { env: { ...process.env, MTOOLS_SKIP_CHECK: '1' } });
    await mtools('mmd', '::/EFI/debian');
    await mtools('mmove', '::/EFI/BOOT/BOOTX64.EFI', '::/EFI/debian/grubx64.efi');
    await mtools('mrd', '::/EFI/BOOT');
    const made = join(work, 'image.qcow2');
    await run('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', raw, made]);
    renameSync(made, out);
    return out;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** The disk's (GPT) EFI system partition as sfdisk reads the table: its number, byte offset and unique GUID. */
export async function findEsp(disk: string): Promise<{ number: number; offset: number; guid: string }> {
  const { stdout } = await run('sfdisk', ['--json', disk]);
  const { partitiontable: table } = JSON.parse(stdout) as {
    partitiontable: { sectorsize?: number; partitions: { node: string; start: number; type: string; uuid: string }[] };
  };
  const esp = table.partitions.find((p) => p.type.toUpperCase() === ESP_TYPE);
  if (!esp) throw new Error(`${disk} has no EFI system partition`);
  return {
    number: Number(/(\d+)$/.exec(esp.node)?.[1]),
    offset: esp.start * (table.sectorsize ?? 512),
    guid: esp.uuid.toUpperCase(),
  };
}
