// The customers' routes, OVH's: start, follow and erase deployments of their own servers.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { apiMessages, lifecycleMessages, messages } from '../../errors.ts';
import { bearer, checkCustomer } from '../auth.ts';
import type { ApiContext, ServiceParams } from '../context.ts';
import { eraseDeployment, startDeployment } from '../deployments.ts';
import { ApiError } from '../ovh-error.ts';
import { byoiStatusView, hardwareView, installStatusView, taskView } from '../views.ts';

export function customerRoutes(app: FastifyInstance, options: ApiContext): void {
  const { config, store, authFailures } = options;

  /** Checked in the request hook: nothing of the body is read before. */
  async function customer(request: FastifyRequest<{ Params: ServiceParams }>): Promise<void> {
    if (await authFailures.limited(request.ip)) throw new ApiError(429, apiMessages.tooManyFailures);
    const key = bearer(request.headers.authorization);
    if (!key) {
      await authFailures.failed(request.ip);
      throw new ApiError(401, apiMessages.missingApiKey);
    }
    const { serviceName } = request.params;
    switch (checkCustomer(config, key, serviceName)) {
      case 'allowed':
        return;
      case 'unknown-key':
        await authFailures.failed(request.ip);
        throw new ApiError(403, apiMessages.unknownApiKey);
      case 'no-such-server':
        throw new ApiError(404, apiMessages.noSuchServer(serviceName));
      case 'not-yours':
        throw new ApiError(403, apiMessages.notYourServer(serviceName));
    }
  }

  const customerRoute = { onRequest: async (request: FastifyRequest<{ Params: ServiceParams }>) => customer(request) };

  app.post<{ Params: ServiceParams }>('/dedicated/server/:serviceName/bringYourOwnImage', customerRoute, async (request, reply) => {
    await startDeployment(options, request.params.serviceName, 'bringYourOwnImage', request.body);
    return reply.type('application/json').send('null');
  });

  app.get<{ Params: ServiceParams }>('/dedicated/server/:serviceName/bringYourOwnImage', customerRoute, async (request) => {
    const { serviceName } = request.params;
    return byoiStatusView(serviceName, await store.current(serviceName));
  });

  app.delete<{ Params: ServiceParams }>('/dedicated/server/:serviceName/bringYourOwnImage', customerRoute, async (request, reply) => {
    const { serviceName } = request.params;
    await eraseDeployment(options, serviceName);
    return reply.type('application/json').send('null');
  });

  app.post<{ Params: ServiceParams }>('/dedicated/server/:serviceName/reinstall', customerRoute, async (request) => {
    const body = request.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, messages.badJobBody);
    if ((body as Record<string, unknown>).operatingSystem !== 'byoi_64') throw new ApiError(400, apiMessages.badOperatingSystem);
    return taskView(await startDeployment(options, request.params.serviceName, 'reinstall', body));
  });

  app.get<{ Params: ServiceParams & { taskId: string } }>('/dedicated/server/:serviceName/task/:taskId', customerRoute, async (request) => {
    const { serviceName, taskId } = request.params;
    const deployment = /^\d{1,15}$/.test(taskId) ? await store.byId(Number(taskId)) : undefined;
    if (!deployment || deployment.serviceName !== serviceName) throw new ApiError(404, apiMessages.noSuchTask(taskId));
    return taskView(deployment);
  });

  app.get<{ Params: ServiceParams }>('/dedicated/server/:serviceName/install/status', customerRoute, async (request) => {
    const deployment = await store.current(request.params.serviceName);
    if (!deployment) throw new ApiError(404, apiMessages.notInstalling);
    return installStatusView(deployment, await store.steps(deployment.id));
  });

  // The disks and groups the server's agent found when it last started (before a job is chosen).
  app.get<{ Params: ServiceParams }>('/dedicated/server/:serviceName/specifications/hardware', customerRoute, async (request) => {
    const disks = await store.disks(request.params.serviceName);
    if (!disks) throw new ApiError(404, lifecycleMessages.noDisksReport(request.params.serviceName));
    return hardwareView(disks);
  });
}
