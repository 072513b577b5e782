// The parts of an OVF descriptor (DMTF DSP0243) that say which disk a deployment writes: the
// file references, the disk section, and the first virtual system's disk drives. Parsed with
// fast-xml-parser, namespace prefixes dropped (ovf:, rasd: and vssd: vary between writers),
// entities left unexpanded.
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { ovaBad, ovaUnsupported } from '../errors.ts';

/** An OVF is a few KiB to a few hundred; more is not a descriptor. */
export const MAX_OVF_BYTES = 4 * 1024 * 1024;
/** rasd:ResourceType of a disk drive (CIM_ResourceAllocationSettingData). */
const DISK_DRIVE = '17';

export interface OvfFile {
  readonly id: string;
  readonly href: string;
  readonly size?: number;
  readonly compression?: string;
  readonly chunked: boolean;
}

export interface OvfDisk {
  readonly diskId: string;
  readonly fileRef: string;
  readonly format: string;
  /** Capacity in bytes, when the OVF states one in units byoi reads. */
  readonly capacity?: number;
}

export interface BootDisk {
  readonly disk: OvfDisk;
  readonly file: OvfFile;
}

type Node = Record<string, unknown>;

const asArray = (value: unknown): Node[] =>
  value === undefined
    ? []
    : (Array.isArray(value) ? value : [value]).filter((v): v is Node => typeof v === 'object' && v !== null);
const attr = (node: Node, name: string): string | undefined => {
  const value = node[`@_${name}`];
  return typeof value === 'string' ? value : undefined;
};
/** An element's text, whether the parser made it a string or an object with attributes. */
const textOf = (value: unknown): string | undefined => {
  if (typeof value === 'string') return value.trim();
  if (Array.isArray(value)) return textOf(value[0]);
  if (value && typeof value === 'object' && '#text' in value) return String((value as Node)['#text']).trim();
  return undefined;
};

/** "byte * 2^30" and the like (DSP0004 programmatic units), as a multiplier. */
function unitMultiplier(units: string | undefined): number | undefined {
  if (units === undefined) return 1;
  const match = /^\s*byte(?:\s*\*\s*(\d+)\s*\^\s*(\d+))?\s*$/.exec(units);
  if (!match) return undefined;
  return match[1] === undefined ? 1 : Number(match[1]) ** Number(match[2]);
}

function parseEnvelope(xml: string): Node {
  if (XMLValidator.validate(xml) !== true) throw ovaBad('its OVF descriptor is not well-formed XML');
  const parser = new XMLParser({
    ignoreAttributes: false,
    removeNSPrefix: true,
    processEntities: false,
    parseTagValue: false,
    parseAttributeValue: false,
    maxNestedTags: 64,
  });
  const document = parser.parse(xml) as Node;
  const envelope = document.Envelope;
  if (!envelope || typeof envelope !== 'object' || Array.isArray(envelope))
    throw ovaBad('its OVF descriptor has no Envelope');
  return envelope as Node;
}

function filesOf(envelope: Node): Map<string, OvfFile> {
  const files = new Map<string, OvfFile>();
  for (const references of asArray(envelope.References)) {
    for (const file of asArray(references.File)) {
      const id = attr(file, 'id');
      const href = attr(file, 'href');
      if (id === undefined || href === undefined) throw ovaBad('a File of its OVF References has no id or href');
      const size = attr(file, 'size');
      const compression = attr(file, 'compression');
      files.set(id, {
        id,
        href,
        ...(size !== undefined && Number.isSafeInteger(Number(size)) && { size: Number(size) }),
        ...(compression !== undefined && compression !== 'identity' && { compression }),
        chunked: attr(file, 'chunkSize') !== undefined,
      });
    }
  }
  return files;
}

function disksOf(envelope: Node): OvfDisk[] {
  const disks: OvfDisk[] = [];
  for (const section of [...asArray(envelope.DiskSection), ...asArray(envelope.VirtualDiskSection)]) {
    for (const disk of asArray(section.Disk)) {
      const diskId = attr(disk, 'diskId');
      const fileRef = attr(disk, 'fileRef');
      if (diskId === undefined) throw ovaBad('a Disk of its OVF DiskSection has no diskId');
      const multiplier = unitMultiplier(attr(disk, 'capacityAllocationUnits'));
      const capacity = Number(attr(disk, 'capacity')) * (multiplier ?? NaN);
      disks.push({
        diskId,
        fileRef: fileRef ?? '',
        format: attr(disk, 'format') ?? '',
        ...(Number.isSafeInteger(capacity) && { capacity }),
      });
    }
  }
  return disks;
}

/** The first VirtualSystem, at the top or in the first (nested) VirtualSystemCollection. */
function firstVirtualSystem(node: Node): Node | undefined {
  const system = asArray(node.VirtualSystem)[0];
  if (system) return system;
  for (const collection of asArray(node.VirtualSystemCollection)) {
    const found = firstVirtualSystem(collection);
    if (found) return found;
  }
  return undefined;
}

interface Drive {
  readonly disk: OvfDisk;
  /** rasd:AddressOnParent: 0 is the first unit of its controller. */
  readonly address: string | undefined;
}

/** The disk drives of a virtual system's hardware, in the order the OVF lists them. */
function drivesOf(system: Node, disks: readonly OvfDisk[]): Drive[] {
  const drives: Drive[] = [];
  for (const hardware of asArray(system.VirtualHardwareSection)) {
    for (const item of [...asArray(hardware.Item), ...asArray(hardware.StorageItem)]) {
      if (textOf(item.ResourceType) !== DISK_DRIVE) continue;
      // "ovf:/disk/<diskId>" (the prefix is a namespace-less string, kept by the parser).
      const host = textOf(item.HostResource);
      const diskId = host?.replace(/^(ovf:)?\/disk\//, '');
      const disk = disks.find((d) => d.diskId === diskId);
      if (disk) drives.push({ disk, address: textOf(item.AddressOnParent) });
    }
  }
  return drives;
}

/**
 * The disk the OVF boots from: of the first virtual system's disk drives, the one at the first
 * unit of its controller (AddressOnParent 0); without one, the first drive listed; without drives,
 * the first disk of the DiskSection. Drives at the first unit of several controllers are a
 * refusal that names them: which one firmware boots is not written in the OVF.
 */
export function bootDisk(xml: string): BootDisk {
  const envelope = parseEnvelope(xml);
  const files = filesOf(envelope);
  const disks = disksOf(envelope);
  if (disks.length === 0) throw ovaBad('its OVF descriptor lists no disk');
  const system = firstVirtualSystem(envelope);
  const drives = system ? drivesOf(system, disks) : [];
  const first = drives.filter((drive) => drive.address === '0');
  if (first.length > 1)
    throw ovaUnsupported(
      `its OVF attaches several disks as the first unit of a controller (${first.map((d) => d.disk.diskId).join(', ')}); byoi cannot tell which one boots`,
    );
  const disk = first[0]?.disk ?? drives[0]?.disk ?? disks[0]!;
  const file = files.get(disk.fileRef);
  if (!file)
    throw ovaBad(
      `its boot disk ${disk.diskId} refers to the file "${disk.fileRef}", which its OVF References do not list`,
    );
  if (file.compression !== undefined)
    throw ovaUnsupported(`its boot disk file "${file.href}" is ${file.compression}-compressed inside the OVA`);
  if (file.chunked) throw ovaUnsupported(`its boot disk file "${file.href}" is split into chunks`);
  return { disk, file };
}
