// The agents' routes: a deployment's agent takes its job and reports its status with its own token.
// The token is checked in the request hook, before a byte of the body is read or parsed; the events
// schema keeps only the contract's fields and bounds every one of them.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import {
  deploymentCancelled,
  deploymentFinished,
  missingAgentToken,
  tooManyFailures,
  wrongAgentToken,
} from '../../errors.ts';
import { phaseNames } from '../../report/phases.ts';
import { bearer, hashToken } from '../auth.ts';
import type { ApiContext, ServiceParams } from '../context.ts';
import type { AgentEvent, Deployment } from '../store/types.ts';

/** How many events one request may carry (the agent sends at most 100). */
export const MAX_EVENTS = 100;

const byteCount = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;

// `additionalProperties: false` with Fastify's default `removeAdditional`: unknown fields are dropped.
const eventSchema = {
  type: 'object',
  required: ['events'],
  additionalProperties: false,
  properties: {
    events: {
      type: 'array',
      maxItems: MAX_EVENTS,
      items: {
        type: 'object',
        required: ['status', 'message'],
        additionalProperties: false,
        properties: {
          status: { enum: ['doing', 'done', 'error'] },
          message: { type: 'string', maxLength: 4096 },
          errorKind: { enum: ['invalid-job', 'refused-image', 'failed', null] },
          // The image's digest in hex (the agent's), optionally prefixed by its type.
          checksum: {
            anyOf: [
              { type: 'null' },
              { type: 'string', pattern: '^(?:(?:md5|sha1|sha256|sha512):)?[0-9a-f]{32,128}$' },
            ],
          },
          phase: { enum: [...phaseNames, null] },
          progress: {
            anyOf: [
              { type: 'null' },
              {
                type: 'object',
                required: ['done', 'total', 'bytesPerSecond'],
                additionalProperties: false,
                properties: {
                  done: byteCount,
                  total: { anyOf: [{ type: 'null' }, byteCount] },
                  bytesPerSecond: { type: 'number', minimum: 0, maximum: 1e12 },
                  etaSeconds: { anyOf: [{ type: 'null' }, { type: 'number', minimum: 0, maximum: 1e9 }] },
                },
              },
            ],
          },
          // When the agent saw it: informative only, the server's clock dates what it stores.
          at: { type: 'string', maxLength: 64 },
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

declare module 'fastify' {
  interface FastifyRequest {
    /** The deployment whose agent token the request carries (agent routes). */
    agentDeployment?: Deployment;
  }
}

export function agentRoutes(app: FastifyInstance, options: ApiContext): void {
  const { store, authFailures, config } = options;

  /** The deployment whose token the request carries, if that token belongs to this server. */
  async function authenticate(request: FastifyRequest<{ Params: ServiceParams }>): Promise<void> {
    if (await authFailures.limited(request.ip)) throw tooManyFailures();
    const token = bearer(request.headers.authorization);
    const deployment = token === undefined ? undefined : await store.byTokenHash(hashToken(token));
    if (!deployment || deployment.serviceName !== request.params.serviceName) {
      await authFailures.failed(request.ip);
      throw token === undefined ? missingAgentToken() : wrongAgentToken();
    }
    // DELETE reaches the agent here: every answer to it says so, and it stops at once.
    if (deployment.erased) throw deploymentCancelled();
    request.agentDeployment = deployment;
  }

  const agentRoute = { onRequest: authenticate };

  app.get<{ Params: ServiceParams }>('/agent/v1/servers/:serviceName/job', agentRoute, async (request) => {
    const deployment = request.agentDeployment!;
    if (deployment.status !== 'doing') throw deploymentFinished();
    const body = await store.jobBody(deployment.id);
    if (body === undefined) throw deploymentFinished();
    await store.markJobTaken(deployment.id);
    // The lab's settings for this server go with the job: the customer's body cannot carry them.
    const { network, verifyWrite } = config.servers.find((s) => s.serviceName === deployment.serviceName) ?? {};
    return {
      deploymentId: deployment.id,
      serviceName: deployment.serviceName,
      kind: deployment.kind,
      body,
      ...(network && { network }),
      ...(verifyWrite && { verifyWrite }),
    };
  });

  app.post<{ Params: ServiceParams; Body: { events: AgentEvent[] } }>(
    '/agent/v1/servers/:serviceName/events',
    { ...agentRoute, bodyLimit: options.limits.eventsBodyBytes, schema: { body: eventSchema } },
    async (request) => {
      const after = await store.record(request.agentDeployment!.id, request.body.events);
      return { status: after.status };
    },
  );

  app.post<{ Params: ServiceParams; Body: unknown }>(
    '/agent/v1/servers/:serviceName/disks',
    { ...agentRoute, schema: { body: disksSchema }, bodyLimit: 512 * 1024 },
    async (request) => {
      await store.reportDisks(request.agentDeployment!.serviceName, request.body);
      return null;
    },
  );
}
