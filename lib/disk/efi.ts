// UEFI boot: on a server booted with UEFI, the deployed image must carry an EFI system partition
// (GPT type EF00, MBR type 0xEF) holding its bootloader (the job's efiBootloaderPath, else the
// fallback \EFI\BOOT\BOOTX64.EFI); checked from the decoded image before the first write. After
// the write, a firmware boot entry for that file on that disk and partition is made first in
// BootOrder, replacing an older entry of byoi's. On legacy BIOS nothing is done (and logged).
// The firmware and efibootmgr are behind interfaces, so the logic is tested without UEFI here.
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bootEntryFailed, bootManagerUnavailable, noEsp, noLoader } from '../errors.ts';
import { normaliseLoaderPath } from './efi-path.ts';
import { exec } from '../system/exec.ts';
import type { GuestReader } from '../formats/guest.ts';
import { ESP_GUID, MBR_ESP_TYPE, type ImagePartition, type ImageTable } from '../formats/image-partitions.ts';

/** The removable-media fallback path every UEFI firmware tries on x86-64. */
export const FALLBACK_LOADER = '\\EFI\\BOOT\\BOOTX64.EFI';
/** The label of byoi's boot entry; an entry with this label is byoi's and is replaced. */
export const ENTRY_LABEL = 'byoi';

export interface BootEntry {
  /** Four hex digits, as in Boot0003. */
  readonly number: string;
  readonly label: string;
  /** A network boot (PXE, HTTP boot): a netbooting lab keeps it first. */
  readonly network?: boolean;
}

/** The firmware's boot manager (efibootmgr on Linux). */
export interface EfiBootManager {
  entries(): Promise<{ entries: BootEntry[]; order: string[] }>;
  remove(number: string): Promise<void>;
  /** Creates an entry and returns its number. */
  create(entry: { disk: string; partition: number; label: string; loader: string }): Promise<string>;
  setOrder(order: readonly string[]): Promise<void>;
}

export interface Platform {
  /** Whether this system was booted with UEFI (Linux: /sys/firmware/efi exists). */
  readonly uefi: boolean;
  readonly bootManager: EfiBootManager;
}

/** What will be done after the write: the entry to make. */
export interface EfiBootPlan {
  readonly partition: number;
  /** Backslash form, as the firmware and efibootmgr take it. */
  readonly loader: string;
}

/**
 * Before the write: on UEFI, the image's ESP and the loader in it, or a refusal (unless `check` is
 * false: then whatever can be found, or nothing). Undefined on legacy BIOS.
 */
export async function planEfiBoot(
  platform: Platform,
  table: ImageTable | undefined,
  guest: GuestReader,
  sectorSize: number,
  options: { loaderPath?: string; check: boolean },
): Promise<EfiBootPlan | undefined> {
  if (!platform.uefi) return undefined;
  const loader = normaliseLoaderPath(options.loaderPath ?? FALLBACK_LOADER);
  const esp = espOf(table);
  if (!esp) {
    if (options.check) throw noEsp();
    return undefined;
  }
  const found = await fileInFat(guest, { offset: esp.start * sectorSize, length: esp.sectors * sectorSize }, loader);
  if (!found && options.check) throw noLoader(loader, esp.number);
  if (!found) return undefined;
  // The entry is made after the write: a boot manager that cannot even list entries fails now instead.
  await checkBootManager(platform.bootManager);
  return { partition: esp.number, loader };
}

/** The table's EFI system partition (GPT type EF00, MBR type 0xEF), if any. */
export function espOf(table: ImageTable | undefined): ImagePartition | undefined {
  return table?.partitions.find((p) => (table.label === 'gpt' ? p.type === ESP_GUID : p.type === MBR_ESP_TYPE));
}

/** Fails, in the deployment's sentence, when the boot manager cannot list its entries. */
export async function checkBootManager(manager: EfiBootManager): Promise<void> {
  await manager.entries().catch((error: unknown) => {
    throw bootManagerUnavailable(error);
  });
}

/** Whether the FAT filesystem in `range` of the image holds `loader` (mtools reads FAT; this kernel may not mount it). */
async function fileInFat(
  guest: GuestReader,
  range: { offset: number; length: number },
  loader: string,
): Promise<boolean> {
  const work = await mkdtemp(join(tmpdir(), 'byoi-esp-'));
  try {
    const image = join(work, 'esp.fat');
    await guest.save(range, image);
    const result = await exec('mdir', ['-b', '-i', image, `::${loader.replaceAll('\\', '/')}`], {
      env: { MTOOLS_SKIP_CHECK: '1' },
      reject: false,
    });
    return result.exitCode === 0 && result.stdout.trim() !== '';
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * After the write: removes byoi's older entries, creates one for the plan's loader on `disk`, and
 * puts it first in BootOrder, after the network boots that lead it: a lab that netboots its servers
 * (byoi serve's iPXE scripts) must keep doing so, or DELETE could not send the server to rescue.
 * Returns the new entry's number.
 */
export async function installBootEntry(manager: EfiBootManager, disk: string, plan: EfiBootPlan): Promise<string> {
  try {
    const before = await manager.entries();
    for (const entry of before.entries.filter((e) => e.label === ENTRY_LABEL)) await manager.remove(entry.number);
    const number = await manager.create({ disk, partition: plan.partition, label: ENTRY_LABEL, loader: plan.loader });
    const { order, entries } = await manager.entries();
    const network = new Set(entries.filter((e) => e.network).map((e) => e.number));
    const others = order.filter((n) => n !== number);
    let lead = 0;
    while (lead < others.length && network.has(others[lead]!)) lead++;
    const wanted = [...others.slice(0, lead), number, ...others.slice(lead)];
    if (wanted.join() !== order.join()) await manager.setOrder(wanted);
    return number;
  } catch (error) {
    throw bootEntryFailed(error);
  }
}

/** `efibootmgr` output: "BootOrder: 0003,0001" and "Boot0003* label<TAB>device path". */
export function parseEfibootmgr(output: string): { entries: BootEntry[]; order: string[] } {
  const order =
    /^BootOrder:\s*(.*)$/m
      .exec(output)?.[1]
      ?.split(',')
      .map((n) => n.trim().toUpperCase())
      .filter((n) => /^[0-9A-F]{4}$/.test(n)) ?? [];
  const entries: BootEntry[] = [];
  for (const line of output.split('\n')) {
    const match = /^Boot([0-9A-Fa-f]{4})\*?\s+([^\t]*?)\s*(\t.*)?$/.exec(line);
    if (!match) continue;
    const [, number, label, path = ''] = match;
    const network = /\/(MAC|IPv4|IPv6|Uri)\(/.test(path) || /\b(PXE|HTTP boot|Network)\b/i.test(label!);
    entries.push({ number: number!.toUpperCase(), label: label!, ...(network && { network }) });
  }
  return { entries, order };
}

async function efibootmgr(args: string[]): Promise<string> {
  const result = await exec('efibootmgr', args, { reject: false });
  if (result.exitCode !== 0)
    throw new Error(`efibootmgr ${args.join(' ')}: ${(result.stderr || result.stdout).trim()}`);
  return result.stdout;
}

/** The boot manager of this system, through efibootmgr. */
export const efibootmgrManager: EfiBootManager = {
  // -v: the device paths, which tell a network boot (efibootmgr 17 prints them only then).
  entries: async () => parseEfibootmgr(await efibootmgr(['-v'])),
  remove: async (number) => void (await efibootmgr(['--bootnum', number, '--delete-bootnum'])),
  create: async ({ disk, partition, label, loader }) => {
    const before = new Set(parseEfibootmgr(await efibootmgr([])).entries.map((e) => e.number));
    const after = parseEfibootmgr(
      await efibootmgr(['--create', '--disk', disk, '--part', String(partition), '--label', label, '--loader', loader]),
    );
    const made = after.entries.find((e) => !before.has(e.number) && e.label === label);
    if (!made) throw new Error('efibootmgr --create listed no new entry');
    return made.number;
  },
  setOrder: async (order) => void (await efibootmgr(['--bootorder', order.join(',')])),
};

/** This system: UEFI when the kernel exposes the firmware's variables. */
export function thisPlatform(): Platform {
  return { uefi: existsSync('/sys/firmware/efi'), bootManager: efibootmgrManager };
}
