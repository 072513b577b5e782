// The OVH-compatible provisioning API: customers start, follow and erase deployments of their own
// servers; each deployment's agent takes its job and reports its status through agent-only routes.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { ByoiError, apiMessages, bootStep, messages } from '../errors.ts';
import { validateJob } from '../job.ts';
import { bearer, checkCustomer, hashToken, newAgentToken } from './auth.ts';
import type { BootAdapter } from './boot.ts';
import type { ApiConfig } from './config.ts';
import { jobInputFor } from './job-body.ts';
import type { AgentEvent, Deployment, DeploymentKind, Store } from './store.ts';
import { byoiStatusView, installStatusView, taskView } from './views.ts';

export interface ApiOptions {
  readonly config: ApiConfig;
  readonly store: Store;
  readonly boot: BootAdapter;
  /** The URL agents use to reach this API; read when a deployment starts (the port may be known late). */
  readonly agentUrl: () => string;
  readonly logger?: boolean;
}

/** OVH's error classes, by HTTP status. */
const errorClasses: Record<number, string> = {
  400: 'Client::BadRequest',
  401: 'Client::Unauthorized',
  403: 'Client::Forbidden',
  404: 'Client::NotFound',
  409: 'Client::Conflict',
  413: 'Client::BadRequest',
  415: 'Client::BadRequest',
};

/** An error answered as OVH does: `{class, message}`. */
class ApiError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

function sendError(reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  return reply.code(statusCode).send({ class: errorClasses[statusCode] ?? 'Server::InternalServerError', message });
}

type ServiceParams = { serviceName: string };

const eventSchema = {
  type: 'object',
  required: ['events'],
  additionalProperties: false,
  properties: {
    events: {
      type: 'array',
      maxItems: 1000,
      items: {
        type: 'object',
        required: ['status', 'message', 'at'],
        properties: {
          status: { enum: ['doing', 'done', 'error'] },
          message: { type: 'string', maxLength: 4096 },
          errorKind: { enum: ['invalid-job', 'refused-image', 'failed', null] },
          checksum: { type: ['string', 'null'], maxLength: 300 },
          phase: { type: ['string', 'null'], maxLength: 64 },
          progress: {
            anyOf: [
              { type: 'null' },
              {
                type: 'object',
                required: ['done', 'total', 'bytesPerSecond'],
                properties: { done: { type: 'number', minimum: 0 }, total: { type: ['number', 'null'], minimum: 0 }, bytesPerSecond: { type: 'number', minimum: 0 } },
              },
            ],
          },
          at: { type: 'string', format: 'date-time' },
        },
      },
    },
  },
} as const;

export function buildApi(options: ApiOptions): FastifyInstance {
  const { config, store, boot } = options;
  const app = Fastify({ logger: options.logger ?? false, bodyLimit: 16 * 1024 * 1024 });

  app.setErrorHandler((error: { statusCode?: number; validation?: unknown; code?: string; message: string }, request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error.statusCode, error.message);
    if (error.validation) return sendError(reply, 400, request.url.startsWith('/agent/') ? apiMessages.badEvents : apiMessages.badJson);
    if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return sendError(reply, 400, apiMessages.badJson);
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error(error);
    return sendError(reply, status, status === 500 ? 'Internal server error' : error.message);
  });
  app.setNotFoundHandler((_request, reply) => sendError(reply, 404, apiMessages.notFound));

  // ---- Customers ----

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
    const created = store.create({ serviceName, kind, body, tokenHash: hash, phase: bootStep.phase, message: bootStep.message });
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
    return byoiStatusView(serviceName, store.current(serviceName));
  });

  app.delete<{ Params: ServiceParams }>('/dedicated/server/:serviceName/bringYourOwnImage', customerRoute, async (request, reply) => {
    const { serviceName } = request.params;
    store.erase(serviceName);
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
    const deployment = /^\d{1,15}$/.test(taskId) ? store.byId(Number(taskId)) : undefined;
    if (!deployment || deployment.serviceName !== serviceName) throw new ApiError(404, apiMessages.noSuchTask(taskId));
    return taskView(deployment);
  });

  app.get<{ Params: ServiceParams }>('/dedicated/server/:serviceName/install/status', customerRoute, async (request) => {
    const deployment = store.current(request.params.serviceName);
    if (!deployment) throw new ApiError(404, apiMessages.notInstalling);
    return installStatusView(deployment, store.steps(deployment.id));
  });

  // ---- Agents ----

  /** The deployment whose token the request carries, if that token belongs to this server. */
  function agentDeployment(request: FastifyRequest<{ Params: ServiceParams }>): Deployment {
    const token = bearer(request.headers.authorization);
    if (!token) throw new ApiError(401, apiMessages.missingAgentToken);
    const deployment = store.byTokenHash(hashToken(token));
    if (!deployment || deployment.erased || deployment.serviceName !== request.params.serviceName) throw new ApiError(403, apiMessages.wrongAgentToken);
    return deployment;
  }

  app.get<{ Params: ServiceParams }>('/agent/v1/servers/:serviceName/job', async (request) => {
    const deployment = agentDeployment(request);
    if (deployment.status !== 'doing') throw new ApiError(409, apiMessages.deploymentFinished);
    store.markJobTaken(deployment.id);
    // The lab's settings for this server go with the job: the customer's body cannot carry them.
    const { network, verifyWrite } = config.servers.find((s) => s.serviceName === deployment.serviceName) ?? {};
    return { deploymentId: deployment.id, serviceName: deployment.serviceName, kind: deployment.kind, body: deployment.body, ...(network && { network }), ...(verifyWrite && { verifyWrite }) };
  });

  app.post<{ Params: ServiceParams; Body: { events: AgentEvent[] } }>(
    '/agent/v1/servers/:serviceName/events',
    { schema: { body: eventSchema } },
    async (request) => {
      const deployment = agentDeployment(request);
      const after = store.record(deployment.id, request.body.events);
      return { status: after.status };
    },
  );

  return app;
}
