// The agents' routes: a deployment's agent takes its job and reports its status with its own token.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { apiMessages, lifecycleMessages } from '../../errors.ts';
import { bearer, hashToken } from '../auth.ts';
import type { ApiContext, ServiceParams } from '../context.ts';
import { ApiError } from '../ovh-error.ts';
import type { AgentEvent, Deployment } from '../store/types.ts';

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
          detail: { type: ['string', 'null'], maxLength: 4096 },
          fault: { enum: ['customer', 'lab', null] },
        },
      },
    },
  },
} as const;

const text = (maxLength: number) => ({ type: ['string', 'null'], maxLength }) as const;

/** What an agent found on its server (lib/disk/report.ts), bounded field by field. */
const disksSchema = {
  type: 'object',
  required: ['disks', 'groups'],
  additionalProperties: false,
  properties: {
    disks: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        required: ['name', 'size'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', maxLength: 64 },
          path: text(256),
          byId: text(256),
          size: { type: 'number', minimum: 0 },
          logicalSectorSize: { type: 'number', minimum: 0 },
          media: text(16),
          transport: text(16),
          model: text(128),
          serial: text(128),
          excluded: text(256),
        },
      },
    },
    groups: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        required: ['id', 'media', 'sizeGB', 'description', 'disks'],
        additionalProperties: false,
        properties: {
          id: { type: 'integer', minimum: 1 },
          media: { type: 'string', maxLength: 16 },
          sizeGB: { type: 'number', minimum: 0 },
          description: { type: 'string', maxLength: 128 },
          disks: { type: 'array', maxItems: 256, items: { type: 'string', maxLength: 64 } },
        },
      },
    },
  },
} as const;

export function agentRoutes(app: FastifyInstance, options: ApiContext): void {
  const { store } = options;

  /** The deployment whose token the request carries, if that token belongs to this server. */
  async function agentDeployment(request: FastifyRequest<{ Params: ServiceParams }>): Promise<Deployment> {
    const token = bearer(request.headers.authorization);
    if (!token) throw new ApiError(401, apiMessages.missingAgentToken);
    const deployment = await store.byTokenHash(hashToken(token));
    if (!deployment || deployment.serviceName !== request.params.serviceName) throw new ApiError(403, apiMessages.wrongAgentToken);
    // DELETE reaches the agent here: every answer to it says so, and it stops at once.
    if (deployment.erased) throw new ApiError(410, lifecycleMessages.deploymentCancelled);
    return deployment;
  }

  app.get<{ Params: ServiceParams }>('/agent/v1/servers/:serviceName/job', async (request) => {
    const deployment = await agentDeployment(request);
    if (deployment.status !== 'doing') throw new ApiError(409, apiMessages.deploymentFinished);
    await store.markJobTaken(deployment.id);
    return { deploymentId: deployment.id, serviceName: deployment.serviceName, kind: deployment.kind, body: deployment.body };
  });

  app.post<{ Params: ServiceParams; Body: { events: AgentEvent[] } }>(
    '/agent/v1/servers/:serviceName/events',
    { schema: { body: eventSchema } },
    async (request) => {
      const deployment = await agentDeployment(request);
      const after = await store.record(deployment.id, request.body.events);
      return { status: after.status };
    },
  );

  app.post<{ Params: ServiceParams; Body: unknown }>(
    '/agent/v1/servers/:serviceName/disks',
    { schema: { body: disksSchema }, bodyLimit: 512 * 1024 },
    async (request) => {
      const deployment = await agentDeployment(request);
      await store.reportDisks(deployment.serviceName, request.body);
      return null;
    },
  );
}
