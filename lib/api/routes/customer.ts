// The customers' routes, OVH's: list their servers, start, follow and erase deployments of their own
// servers. Served under `/1.0`, its alias `/v1` and bare; callers are a lab's Bearer key or a signed
// APIv6 call (signed-requests.ts), and either reaches only its own servers whatever its rules say.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  badJobBody,
  badOperatingSystem,
  refusedJob,
  noDisksReport,
  noSuchServer,
  noSuchTask,
  notInstalling,
  notYourServer,
  unknownApiKey,
} from '../../errors.ts';
import { checkCustomer } from '../auth.ts';
import type { ApiContext, ServiceParams } from '../context.ts';
import { eraseDeployment, startDeployment } from '../deployments.ts';
import { API_BASE_PATHS, identifyCaller, verifySignedCall } from '../signed-requests.ts';
import { byoiStatusView, dedicatedServerView, hardwareView, installStatusView, taskView } from '../views.ts';

/** The servers the caller may manage, among those the lab declares. */
async function serversOf(options: ApiContext, request: FastifyRequest): Promise<string[]> {
  const caller = request.caller!;
  const declared = options.config.servers;
  if (caller.kind === 'bearer')
    return declared
      .filter((s) => checkCustomer(options.config, caller.key, s.serviceName) === 'allowed')
      .map((s) => s.serviceName);
  const theirs = new Set(await options.customers.servers({ name: caller.customer }));
  return declared.filter((s) => theirs.has(s.serviceName)).map((s) => s.serviceName);
}

/** Refuses a caller that may not manage the server: Bearer keys as before, signed callers by ownership. */
async function mayManage(options: ApiContext, request: FastifyRequest<{ Params: ServiceParams }>): Promise<void> {
  // server.ts has refused serviceNames outside the config's charset already.
  const { serviceName } = request.params;
  const caller = request.caller!;
  if (caller.kind === 'signed') {
    // Another customer's server is answered like one that does not exist.
    if (!(await serversOf(options, request)).includes(serviceName)) throw noSuchServer(serviceName);
    return;
  }
  switch (checkCustomer(options.config, caller.key, serviceName)) {
    case 'allowed':
      return;
    case 'unknown-key':
      throw unknownApiKey();
    case 'no-such-server':
      throw noSuchServer(serviceName);
    case 'not-yours':
      throw notYourServer(serviceName);
  }
}

function serverRoutes(app: FastifyInstance, options: ApiContext): void {
  const { store } = options;
  // Authentication before the body is read; the signature once the raw body is in.
  app.addHook('onRequest', async (request) => identifyCaller(options, request));
  app.addHook('preValidation', async (request) => verifySignedCall(options, request));
  const customerRoute = {
    // A Bearer caller is settled from its headers alone; a signed caller once its signature is checked.
    onRequest: async (request: FastifyRequest<{ Params: ServiceParams }>) => {
      if (request.caller?.kind === 'bearer') await mayManage(options, request);
    },
    preHandler: async (request: FastifyRequest<{ Params: ServiceParams }>) => {
      if (request.caller?.kind === 'signed') await mayManage(options, request);
    },
  };

  app.get('/dedicated/server', async (request) => serversOf(options, request));

  app.get<{ Params: ServiceParams }>('/dedicated/server/:serviceName', customerRoute, async (request) => {
    const { serviceName } = request.params;
    return dedicatedServerView(serviceName, await store.current(serviceName));
  });

  app.post<{ Params: ServiceParams }>(
    '/dedicated/server/:serviceName/bringYourOwnImage',
    customerRoute,
    async (request, reply) => {
      await startDeployment(options, request.params.serviceName, 'bringYourOwnImage', request.body);
      return reply.type('application/json').send('null');
    },
  );

  app.get<{ Params: ServiceParams }>(
    '/dedicated/server/:serviceName/bringYourOwnImage',
    customerRoute,
    async (request) => {
      const { serviceName } = request.params;
      return byoiStatusView(serviceName, await store.current(serviceName));
    },
  );

  app.delete<{ Params: ServiceParams }>(
    '/dedicated/server/:serviceName/bringYourOwnImage',
    customerRoute,
    async (request, reply) => {
      const { serviceName } = request.params;
      await eraseDeployment(options, serviceName);
      return reply.type('application/json').send('null');
    },
  );

  app.post<{ Params: ServiceParams }>('/dedicated/server/:serviceName/reinstall', customerRoute, async (request) => {
    const body = request.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw refusedJob(badJobBody());
    if ((body as Record<string, unknown>).operatingSystem !== 'byoi_64') throw badOperatingSystem();
    return taskView(await startDeployment(options, request.params.serviceName, 'reinstall', body));
  });

  app.get<{ Params: ServiceParams & { taskId: string } }>(
    '/dedicated/server/:serviceName/task/:taskId',
    customerRoute,
    async (request) => {
      const { serviceName, taskId } = request.params;
      const deployment = /^\d{1,15}$/.test(taskId) ? await store.byId(Number(taskId)) : undefined;
      if (!deployment || deployment.serviceName !== serviceName) throw noSuchTask(taskId);
      return taskView(deployment);
    },
  );

  app.get<{ Params: ServiceParams }>(
    '/dedicated/server/:serviceName/install/status',
    customerRoute,
    async (request) => {
      const deployment = await store.current(request.params.serviceName);
      if (!deployment) throw notInstalling();
      return installStatusView(deployment, await store.steps(deployment.id));
    },
  );

  // The disks and groups the server's agent found when it last started (before a job is chosen).
  app.get<{ Params: ServiceParams }>(
    '/dedicated/server/:serviceName/specifications/hardware',
    customerRoute,
    async (request) => {
      const disks = await store.disks(request.params.serviceName);
      if (!disks) throw noDisksReport(request.params.serviceName);
      return hardwareView(disks);
    },
  );
}

export function customerRoutes(app: FastifyInstance, options: ApiContext): void {
  for (const prefix of API_BASE_PATHS) void app.register(async (scope) => serverRoutes(scope, options), { prefix });
}
