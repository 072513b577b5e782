// What a server's network boot says, from the store's state (the store decides: a deployment
// waiting -> the rescue system with a fresh one-time agent token; rescue asked for -> the rescue
// system without a job; otherwise -> the local disk). The answers are iPXE scripts.
import type { NetbootConfig } from './config.ts';

export const IPXE_TYPE = 'text/plain; charset=utf-8';

/** Where the rescue kernel and initrd come from: the config's URLs, or this API's own routes. */
export function rescueFiles(netboot: NetbootConfig, apiUrl: string): { kernel: string; initrd: string } {
  const served = (file: string, route: string) =>
    /^https?:\/\//.test(file) ? file : `${apiUrl}/boot/v1/rescue/${route}`;
  return { kernel: served(netboot.kernel, 'kernel'), initrd: served(netboot.initrd, 'initrd') };
}

function rescueScript(netboot: NetbootConfig, apiUrl: string, title: string, parameters: string[]): string {
  const { kernel, initrd } = rescueFiles(netboot, apiUrl);
  // initrd= names the image for the EFI stub (UEFI); a BIOS boot ignores it.
  const line = ['initrd=initrd.img', netboot.cmdline, ...parameters].filter(Boolean).join(' ');
  return [
    '#!ipxe',
    `echo byoi: ${title}`,
    `kernel ${kernel} ${line}`,
    `initrd --name initrd.img ${initrd}`,
    'boot',
    '',
  ].join('\n');
}

/** The rescue system with its agent's settings: it takes the job with `token`, valid for this boot only. */
export function deployScript(netboot: NetbootConfig, apiUrl: string, serviceName: string, token: string): string {
  return rescueScript(netboot, apiUrl, `${serviceName}: deploying (rescue system with the agent)`, [
    `byoi.server=${apiUrl}`,
    `byoi.service=${serviceName}`,
    `byoi.token=${token}`,
    // The lab serves this API over plain HTTP: the agent must be told it may use it (it refuses otherwise).
    ...(apiUrl.startsWith('http://') ? ['byoi.insecure=1'] : []),
  ]);
}

/** The rescue system without a job (init.sh starts no agent without byoi.server=): an operator's rescue. */
export function rescueModeScript(netboot: NetbootConfig, apiUrl: string, serviceName: string): string {
  return rescueScript(netboot, apiUrl, `${serviceName}: rescue mode`, [netboot.rescueCmdline ?? '', 'byoi.rescue=1']);
}

/**
 * The local disk. UEFI: `exit` hands back to the firmware's boot manager, which tries the next
 * boot option (the disk). BIOS: `sanboot` boots the first hard disk (0x80); if it cannot, `exit`
 * lets the BIOS try its next boot device.
 */
export function diskScript(serviceName: string): string {
  return [
    '#!ipxe',
    `echo byoi: ${serviceName}: booting the local disk`,
    'iseq ${platform} efi && exit 1 ||',
    'sanboot --no-describe --drive 0x80 || exit 1',
    '',
  ].join('\n');
}

/** The entry point a DHCP server names: chains the script of the server whose NIC booted (an absolute URL: iPXE loaded by DHCP does not resolve a relative one). */
export function chainByMacScript(apiUrl: string): string {
  return ['#!ipxe', `chain --autofree ${apiUrl}/boot/v1/mac/\${net0/mac}/ipxe || exit 1`, ''].join('\n');
}
