// The customers' routes, OVH's: start, follow and erase deployments of their own servers.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ByoiError, apiMessages, bootStep, messages } from '../../errors.ts';
import { validateJob } from '../../job.ts';
import { bearer, checkCustomer, newAgentToken } from '../auth.ts';
import type { ApiOptions, ServiceParams } from '../context.ts';
import { jobInputFor } from '../job-body.ts';
import { ApiError } from '../ovh-error.ts';
import type { Deployment, DeploymentKind } from '../store/types.ts';
import { byoiStatusView, installStatusView, taskView } from '../views.ts';

export function customerRoutes(app: FastifyInstance, options: ApiOptions): void {
  const { config, store, boot } = options;

  function customer(request: FastifyRequest<{ Params: ServiceParams }>): void {
    const key = bearer(request.headers.authorization);
    if (!key) throw new ApiError(401, apiMessages.missingApiKey);
    const { serviceName } = request.params;
    switch (checkCustomer(config, key, serviceName)) {
      case 'allowed':
        return;
      case 'unknown-key':
        throw new ApiError(403, apiMessages.unknownApiKey);
      case 'no-such-server':
        throw new ApiError(404, apiMessages.noSuchServer(serviceName));
      case 'not-yours':
        throw new ApiError(403, apiMessages.notYourServer(serviceName));
    }
  }

  /** Validates the body with the one job validation, then records the deployment and boots the server. */
  async function startDeployment(serviceName: string, kind: DeploymentKind, body: unknown): Promise<Deployment> {
    try {
      validateJob(jobInputFor(kind, body));
    } catch (error) {
      if (error instanceof ByoiError && error.kind === 'invalid-job') throw new ApiError(400, error.message);
      throw error;
    }
    const { token, hash } = newAgentToken();
    const created = await store.create({ serviceName, kind, body, tokenHash: hash, phase: bootStep.phase, message: bootStep.message });
    if (created === 'conflict') throw new ApiError(409, apiMessages.deploymentRunning(serviceName));
    try {
      await boot.boot({ serverUrl: options.agentUrl(), serviceName, token });
    } catch (error) {
      const message = error instanceof ByoiError ? error.message : apiMessages.bootFailed(serviceName);
      app.log.error({ serviceName, error: String(error) }, message);
      return store.record(created.id, [{ status: 'error', message, errorKind: 'failed', at: new Date().toISOString() }]);
    }
    return created;
  }

  const customerRoute = { onRequest: async (request: FastifyRequest<{ Params: ServiceParams }>) => customer(request) };

  app.post<{ Params: ServiceParams }>('/dedicated/server/:serviceName/bringYourOwnImage', customerRoute, async (request, reply) => {
    await startDeployment(request.params.serviceName, 'bringYourOwnImage', request.body);
    return reply.type('application/json').send('null');
  });

  app.get<{ Params: ServiceParams }>('/dedicated/server/:serviceName/bringYourOwnImage', customerRoute, async (request) => {
    const { serviceName } = request.params;
    return byoiStatusView(serviceName, await store.current(serviceName));
  });

  app.delete<{ Params: ServiceParams }>('/dedicated/server/:serviceName/bringYourOwnImage', customerRoute, async (request, reply) => {
    const { serviceName } = request.params;
    await store.erase(serviceName);
    await boot.rescue(serviceName);
    return reply.type('application/json').send('null');
  });

  app.post<{ Params: ServiceParams }>('/dedicated/server/:serviceName/reinstall', customerRoute, async (request) => {
    const body = request.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(400, messages.badJobBody);
    if ((body as Record<string, unknown>).operatingSystem !== 'byoi_64') throw new ApiError(400, apiMessages.badOperatingSystem);
    return taskView(await startDeployment(request.params.serviceName, 'reinstall', body));
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
}
