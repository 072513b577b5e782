// The members of a tar archive held in RAM (an OVA), read where they lie: names, sizes and data
// offsets, never a copy. POSIX ustar and pax (a `path`/`size` record overrides the header), GNU
// long names ('L') and base-256 sizes. Every header's checksum and every member's extent is
// checked against the archive; npm's tar parsers are streams that would copy each disk out.
import { ovaBad } from '../errors.ts';
import { checkRead, type ImageSource } from '../source/image-source.ts';

const BLOCK = 512;
/** More members than an OVA holds (an OVF, a manifest, a certificate, disks): a bound on the work. */
const MAX_MEMBERS = 4096;
/** Longest pax record block or GNU long name read into memory. */
const MAX_META = 64 * 1024;

export interface TarMember {
  readonly name: string;
  /** Offset of the member's data in the archive. */
  readonly offset: number;
  readonly size: number;
}

/** A NUL-terminated field as text. */
function text(block: Buffer, at: number, length: number): string {
  const field = block.subarray(at, at + length);
  const nul = field.indexOf(0);
  return field.toString('utf8', 0, nul < 0 ? length : nul);
}

/** A numeric field: octal digits (space or NUL padded), or base-256 when its first byte has the high bit. */
function number(block: Buffer, at: number, length: number, what: string): number {
  const field = block.subarray(at, at + length);
  if ((field[0]! & 0x80) !== 0) {
    if (field[0] !== 0x80) throw ovaBad(`the tar header of member ${what} has a negative or oversized number`);
    let value = 0;
    for (let i = 1; i < length; i++) value = value * 256 + field[i]!;
    if (!Number.isSafeInteger(value)) throw ovaBad(`the tar header of member ${what} has a number above 2^53`);
    return value;
  }
  const digits = field
    .toString('latin1')
    .replace(/[\0 ]+$/, '')
    .replace(/^ +/, '');
  if (digits === '') return 0;
  if (!/^[0-7]+$/.test(digits)) throw ovaBad(`the tar header of member ${what} has a number that is not octal`);
  return parseInt(digits, 8);
}

/** The header checksum: the sum of its bytes with the checksum field read as spaces. */
function checksumOk(block: Buffer, what: string): boolean {
  let sum = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) if (i < 148 || i >= 156) sum += block[i]!;
  return number(block, 148, 8, what) === sum;
}

/** pax extended header records: "<length> <key>=<value>\n". */
function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space < 0) break;
    const length = Number(data.toString('latin1', at, space));
    if (!Number.isSafeInteger(length) || length <= space - at || at + length > data.length)
      throw ovaBad('a pax extended header of the tar archive is malformed');
    const record = data.toString('utf8', space + 1, at + length - 1);
    const equals = record.indexOf('=');
    if (equals > 0) records.set(record.slice(0, equals), record.slice(equals + 1));
    at += length;
  }
  return records;
}

/** Regular files of the archive in order. Directories, links and global headers are skipped. */
export function tarMembers(source: ImageSource): TarMember[] {
  const members: TarMember[] = [];
  let at = 0;
  let longName: string | undefined;
  let pax: Map<string, string> | undefined;
  for (let count = 0; ; count++) {
    if (at + BLOCK > source.size) {
      // An archive may end without its two zero blocks (some writers stop at the last member).
      if (at === source.size && count > 0) return members;
      throw ovaBad(`the tar archive ends inside a header at offset ${at} (truncated?)`);
    }
    if (count > MAX_MEMBERS) throw ovaBad(`the tar archive has more than ${MAX_MEMBERS} members`);
    const block = source.read(at, BLOCK);
    if (block.every((byte) => byte === 0)) return members;
    const headerName = text(block, 0, 100);
    const what = JSON.stringify(headerName);
    if (!checksumOk(block, what)) throw ovaBad(`the tar header at offset ${at} has a wrong checksum`);
    const prefix = block.toString('latin1', 257, 263) === 'ustar\0' ? text(block, 345, 155) : '';
    const type = String.fromCharCode(block[156]!);
    let size = number(block, 124, 12, what);
    const paxSize = pax?.get('size');
    if (paxSize !== undefined) {
      size = Number(paxSize);
      if (!Number.isSafeInteger(size) || size < 0) throw ovaBad(`the pax size of member ${what} is not a size`);
    }
    const dataStart = at + BLOCK;
    if (dataStart + size > source.size)
      throw ovaBad(`member ${what} of the tar archive runs past its end (${source.size} bytes; truncated?)`);
    at = dataStart + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x' || type === 'L') {
      if (size > MAX_META) throw ovaBad(`a tar metadata member of ${size} bytes is too long`);
      const data = source.read(dataStart, size);
      if (type === 'x') pax = paxRecords(data);
      else longName = text(data, 0, data.length);
      continue;
    }
    const name = pax?.get('path') ?? longName ?? (prefix ? `${prefix}/${headerName}` : headerName);
    longName = undefined;
    pax = undefined;
    if (type === '0' || type === '\0' || type === '7') members.push({ name, offset: dataStart, size });
  }
}

/** A member's bytes as an ImageSource of their own (a view: nothing is copied). */
export function memberSource(source: ImageSource, member: TarMember): ImageSource {
  /** The archive's offset of the member's [offset, offset + length), once checked inside the member. */
  const within = (offset: number, length: number): number => {
    checkRead(offset, length, member.size, 'a member');
    return member.offset + offset;
  };
  return {
    size: member.size,
    // A lending source lends a read of up to its chunk size wherever it lies (FileSource): the
    // member's runs, cut at that size, are lent too. Other sources' cheap reads are their own
    // aligned blocks (a ChunkedBuffer's chunks), which the member's offsets do not line up with.
    ...(source.lend && source.chunkSize !== undefined && { chunkSize: source.chunkSize }),
    read: (offset, length) => source.read(within(offset, length), length),
    ...(source.lend && { lend: (offset: number, length: number) => source.lend!(within(offset, length), length) }),
    ...(source.recycle && { recycle: (bytes: Buffer) => source.recycle!(bytes) }),
  };
}
