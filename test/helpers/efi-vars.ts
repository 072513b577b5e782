// UEFI boot variables as a booted guest reads them from efivarfs (a 4-byte attribute word, then the
// variable's data), hex-dumped on its console by the user data: which boot option the firmware
// started (BootCurrent) and what that option is (Boot####, an EFI_LOAD_OPTION, UEFI 2.10 §3.1.3).

/** The lines the user data prints: `<marker> BootCurrent=<hex>`, `<marker> BootOrder=<hex>`, `<marker> Boot####=<hex>`. */
export function bootVariablesScript(marker: string): string {
  return [
    'v=/sys/firmware/efi/efivars g=8be4df61-93ca-11d2-aa0d-00e098032b8c',
    'hex() { od -An -tx1 -v "$1" | tr -d " \\n"; }',
    `echo "${marker} BootCurrent=$(hex $v/BootCurrent-$g)"`,
    `echo "${marker} BootOrder=$(hex $v/BootOrder-$g)"`,
    'n=$(printf %04X $(od -An -tu2 -j4 -N2 $v/BootCurrent-$g))',
    `echo "${marker} Boot$n=$(hex $v/Boot$n-$g)"`,
    '',
  ].join('\n');
}

export interface LoadOption {
  description: string;
  /** The HD() node: the partition's number and GPT unique GUID (upper case). */
  partition?: { number: number; guid: string };
  /** The File() node's path. */
  file?: string;
}

const bytes = (hex: string): Buffer => Buffer.from(hex, 'hex').subarray(4); // efivarfs's attribute word

/** Boot option numbers (Boot####'s ####) of BootCurrent (one) or BootOrder (the list). */
export function bootNumbers(hex: string): string[] {
  const data = bytes(hex);
  const numbers: string[] = [];
  for (let at = 0; at + 2 <= data.length; at += 2)
    numbers.push(data.readUInt16LE(at).toString(16).toUpperCase().padStart(4, '0'));
  return numbers;
}

function guidText(raw: Buffer): string {
  const hex = (b: Buffer) => b.toString('hex');
  const le = (b: Buffer) => hex(Buffer.from(b).reverse());
  return [
    le(raw.subarray(0, 4)),
    le(raw.subarray(4, 6)),
    le(raw.subarray(6, 8)),
    hex(raw.subarray(8, 10)),
    hex(raw.subarray(10, 16)),
  ]
    .join('-')
    .toUpperCase();
}

export function parseLoadOption(hex: string): LoadOption {
  const data = bytes(hex);
  const pathLength = data.readUInt16LE(4);
  let end = 6;
  while (end + 1 < data.length && data.readUInt16LE(end) !== 0) end += 2;
  const option: LoadOption = { description: data.subarray(6, end).toString('utf16le') };
  const path = data.subarray(end + 2, end + 2 + pathLength);
  for (let at = 0; at + 4 <= path.length;) {
    const [type, subtype] = [path[at]!, path[at + 1]!];
    const node = path.subarray(at, at + path.readUInt16LE(at + 2));
    if (type === 0x7f && subtype === 0xff) break;
    if (node.length < 4) throw new Error(`a device path node of ${node.length} bytes`);
    if (type === 4 && subtype === 1)
      option.partition = { number: node.readUInt32LE(4), guid: guidText(node.subarray(24, 40)) };
    if (type === 4 && subtype === 4) option.file = node.subarray(4).toString('utf16le').replace(/\0+$/, '');
    at += node.length;
  }
  return option;
}
