// The servers' network boot: iPXE scripts by serviceName or by the MAC address iPXE sends, and the
// rescue system's kernel and initrd (with Range). Unauthenticated, as PXE is: answered only to the
// lab's provisioning network when the config names it (netboot.clients). A script that boots a deployment carries a fresh token: each netboot
// voids the previous one, so a token is good for one boot of one server. Nothing here logs it: the
// token is only in the answer's body, never in a URL.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { BlockList, isIP } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import {
  agentLost,
  noRescueImage,
  noSuchMac,
  noSuchServer,
  notFound,
  notProvisioningNetwork,
  notices,
  rangeNotSatisfiable,
} from '../../errors.ts';
import { newAgentToken } from '../auth.ts';
import { networkOf } from '../config.ts';
import type { ApiContext, ServiceParams } from '../context.ts';
import { chainByMacScript, deployScript, diskScript, IPXE_TYPE, rescueModeScript } from '../netboot.ts';
import { sendError } from '../ovh-error.ts';

/** Rescue boots a deployment may have without an outcome, unless the config says otherwise. */
const DEFAULT_MAX_BOOTS = 3;

/** Whether `ip` may netboot: any client when the config names no networks (then only a firewall protects the tokens). */
function provisioningNetwork(clients: readonly string[] | undefined): (ip: string) => boolean {
  if (!clients) return () => true;
  const allowed = new BlockList();
  for (const client of clients) {
    const { address, prefix, family } = networkOf(client);
    allowed.addSubnet(address, prefix, family);
  }
  return (ip) => {
    const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip)?.[1]; // an IPv4 client of a dual-stack socket
    return v4 ? allowed.check(v4, 'ipv4') : allowed.check(ip, isIP(ip) === 6 ? 'ipv6' : 'ipv4');
  };
}

export function netbootRoutes(app: FastifyInstance, options: ApiContext): void {
  const { config, store } = options;
  const netboot = config.netboot;
  const mayNetboot = provisioningNetwork(netboot?.clients);
  if (netboot && !netboot.clients) options.log.warn(notices.netbootOpenToAll);
  // Before anything is looked up: a stranger gets no token, and counts no boot.
  const bootRoute = {
    onRequest: async (request: FastifyRequest) => {
      if (!mayNetboot(request.ip)) throw notProvisioningNetwork();
    },
  };

  async function script(serviceName: string, reply: FastifyReply): Promise<string> {
    if (!config.servers.some((s) => s.serviceName === serviceName)) throw noSuchServer(serviceName);
    const apiUrl = options.agentUrl();
    const { token, hash } = newAgentToken();
    const lost = agentLost(netboot?.maxBoots ?? DEFAULT_MAX_BOOTS).message;
    // Without a rescue system to boot, a waiting deployment keeps waiting (the boot command may start it).
    const state = netboot
      ? await store.netboot(serviceName, hash, netboot.maxBoots ?? DEFAULT_MAX_BOOTS, lost)
      : { boot: 'disk' as const };
    reply.type(IPXE_TYPE).header('cache-control', 'no-store');
    options.log.info({ serviceName, boot: state.boot }, 'netboot');
    if (state.boot === 'deploy') return deployScript(netboot!, apiUrl, serviceName, token);
    if (state.boot === 'rescue') return rescueModeScript(netboot!, apiUrl, serviceName);
    return diskScript(serviceName);
  }

  app.get('/boot/v1/ipxe', bootRoute, async (_request, reply) =>
    reply.type(IPXE_TYPE).header('cache-control', 'no-store').send(chainByMacScript(options.agentUrl())),
  );

  app.get<{ Params: { mac: string } }>('/boot/v1/mac/:mac/ipxe', bootRoute, async (request, reply) => {
    const mac = request.params.mac.toLowerCase().replaceAll('-', ':');
    const server = config.servers.find((s) => s.macs?.includes(mac));
    if (!server) throw noSuchMac(/^[0-9a-f:]{1,17}$/.test(mac) ? mac : '(malformed)');
    return script(server.serviceName, reply);
  });

  app.get<{ Params: ServiceParams }>('/boot/v1/servers/:serviceName/ipxe', bootRoute, async (request, reply) =>
    script(request.params.serviceName, reply),
  );

  app.get<{ Params: { file: string } }>('/boot/v1/rescue/:file', bootRoute, async (request, reply) => {
    const { file } = request.params;
    if (file !== 'kernel' && file !== 'initrd') throw notFound();
    if (!netboot) throw noRescueImage();
    const path = netboot[file];
    if (/^https?:\/\//.test(path)) return reply.redirect(path);
    return sendFile(request, reply, path);
  });
}

/** A file, whole or one byte range of it (RFC 9110 single range; anything else gets the whole file). */
async function sendFile(request: FastifyRequest, reply: FastifyReply, path: string): Promise<FastifyReply> {
  const size = (
    await stat(path).catch(() => {
      throw noRescueImage();
    })
  ).size;
  reply.type('application/octet-stream').header('accept-ranges', 'bytes');
  const range = /^bytes=(\d*)-(\d*)$/.exec(request.headers.range ?? '');
  if (range && (range[1] || range[2])) {
    const start = range[1] ? Number(range[1]) : Math.max(0, size - Number(range[2]));
    const end = range[1] && range[2] ? Math.min(Number(range[2]), size - 1) : size - 1;
    if (start >= size || start > end)
      return sendError(reply.header('content-range', `bytes */${size}`), rangeNotSatisfiable());
    reply
      .code(206)
      .header('content-range', `bytes ${start}-${end}/${size}`)
      .header('content-length', end - start + 1);
    return reply.send(createReadStream(path, { start, end }));
  }
  reply.header('content-length', size);
  return reply.send(createReadStream(path));
}
