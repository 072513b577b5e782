// The OVH-compatible provisioning API: customers start, follow and erase deployments of their own
// servers (routes/customer.ts); each deployment's agent takes its job and reports its status through
// agent-only routes (routes/agent.ts). Every refusal is OVH-shaped (ovh-error.ts).
import Fastify, { type FastifyInstance } from 'fastify';
import { apiMessages } from '../errors.ts';
import type { ApiContext, ApiOptions } from './context.ts';
import { ConfigCustomers } from './customers.ts';
import { ApiError, sendError } from './ovh-error.ts';
import { agentRoutes } from './routes/agent.ts';
import { authRoutes } from './routes/auth.ts';
import { credentialPageRoutes } from './routes/credential-page.ts';
import { customerRoutes } from './routes/customer.ts';

export type { ApiOptions } from './context.ts';

export function buildApi(options: ApiOptions): FastifyInstance {
  // Request logs name the method and path only: a validation URL's query carries its secret token.
  const logger = options.logger ? { serializers: { req: (request: { method: string; url: string }) => ({ method: request.method, url: request.url.split('?')[0] }) } } : false;
  const settings = { logger, bodyLimit: 16 * 1024 * 1024 };
  // Typed as the plain-HTTP instance: routes and hooks do not depend on the transport.
  const app = (options.tls ? Fastify({ ...settings, https: options.tls }) : Fastify(settings)) as unknown as FastifyInstance;

  app.setErrorHandler((error: { statusCode?: number; validation?: unknown; code?: string; message: string }, request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error.statusCode, error.message, error.errorCode);
    if (error.validation) return sendError(reply, 400, request.url.startsWith('/agent/') ? apiMessages.badEvents : apiMessages.badJson);
    if (error.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error.code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return sendError(reply, 400, apiMessages.badJson);
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error(error);
    return sendError(reply, status, status === 500 ? 'Internal server error' : error.message);
  });
  app.setNotFoundHandler((_request, reply) => sendError(reply, 404, apiMessages.notFound));
  // JSON as Fastify parses it, the raw text kept (within the body limit): APIv6 signatures cover it.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    request.rawBody = body as string;
    // OVH's clients send `Content-Type: application/json` on every call, DELETE included, bodiless.
    if (body === '' && request.method !== 'POST' && request.method !== 'PUT') return done(null, undefined);
    parseJson(request, body as string, done);
  });

  const context: ApiContext = { ...options, customers: options.customers ?? new ConfigCustomers(options.config), log: app.log };
  customerRoutes(app, context);
  authRoutes(app, context);
  credentialPageRoutes(app, context);
  agentRoutes(app, context);
  return app;
}
