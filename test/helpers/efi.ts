// A firmware boot manager in memory, for the UEFI tests (this machine boots with BIOS and has no EFI variables).
import type { BootEntry, EfiBootManager } from '../../lib/disk/efi.ts';

/** A boot manager in memory, as the firmware's NVRAM would hold it. */
export class FakeBootManager implements EfiBootManager {
  entries_: BootEntry[] = [
    { number: '0000', label: 'UiApp' },
    { number: '0001', label: 'byoi' },
    { number: '0002', label: 'UEFI PXEv4', network: true },
  ];
  order = ['0002', '0001', '0000'];
  created: { disk: string; partition: number; label: string; loader: string }[] = [];
  fail = false;

  async entries() {
    return { entries: [...this.entries_], order: [...this.order] };
  }
  async remove(number: string) {
    this.entries_ = this.entries_.filter((e) => e.number !== number);
    this.order = this.order.filter((n) => n !== number);
  }
  async create(entry: { disk: string; partition: number; label: string; loader: string }) {
    if (this.fail) throw new Error('efibootmgr: Could not prepare Boot variable: No space left on device');
    this.created.push(entry);
    const number = (Math.max(...this.entries_.map((e) => parseInt(e.number, 16))) + 1)
      .toString(16)
      .toUpperCase()
      .padStart(4, '0');
    this.entries_.push({ number, label: entry.label });
    this.order.push(number); // as some firmware does: last, not first
    return number;
  }
  async setOrder(order: readonly string[]) {
    this.order = [...order];
  }
}
