// The OVH-compatible provisioning API: customers start, follow and erase deployments of their own
// servers (routes/customer.ts); each deployment's agent takes its job and reports its status through
// agent-only routes (routes/agent.ts). Every refusal is OVH-shaped (ovh-error.ts), however early it
// happens: in a route, in the framework (bad URL, body, content type) or in the HTTP parser.
import type { Socket } from 'node:net';
import Fastify, { type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import {
  badContentLength,
  badContentType,
  badEvents,
  badJson,
  badRequest,
  badRequestUrl,
  badServiceName,
  bodyTooLarge,
  headersTooLarge,
  internalError,
  notFound,
  requestTimeout,
  urlTooLong,
} from '../errors.ts';
import { isServiceName } from './config.ts';
import type { ApiContext, ApiLimits, ApiOptions } from './context.ts';
import { ConfigCustomers } from './customers.ts';
import { ApiError, ovhErrorBody, sendError } from './ovh-error.ts';
import { DEFAULT_RETENTION_DAYS, keepPruning } from './retention.ts';
import { agentRoutes } from './routes/agent.ts';
import { authRoutes } from './routes/auth.ts';
import { credentialPageRoutes } from './routes/credential-page.ts';
import { customerRoutes } from './routes/customer.ts';
import { netbootRoutes } from './routes/netboot.ts';
import { panelRoutes } from './routes/panel.ts';

export type { ApiOptions } from './context.ts';

export const defaultLimits: ApiLimits = {
  bodyBytes: 16 * 1024 * 1024,
  eventsBodyBytes: 512 * 1024,
  requestTimeoutMs: 60_000,
  headersTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 30_000,
  maxConnections: 4096,
};

/** What a framework error is answered, by its code; the framework's own message may echo input. */
const frameworkAnswers: Record<string, () => ApiError> = {
  FST_ERR_BAD_URL: badRequestUrl,
  FST_ERR_MAX_PARAM_LENGTH: urlTooLong,
  FST_ERR_ASYNC_CONSTRAINT: () => badRequest(),
  FST_ERR_CTP_BODY_TOO_LARGE: bodyTooLarge,
  FST_ERR_CTP_INVALID_MEDIA_TYPE: () => badContentType(),
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: badContentLength,
  FST_ERR_CTP_INVALID_JSON_BODY: badJson,
  FST_ERR_CTP_EMPTY_JSON_BODY: badJson,
  FST_ERR_CTP_INVALID_TYPE: () => badContentType(400),
};

/** The HTTP parser's refusals (before Fastify sees a request): answered on the raw socket. */
function clientError(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const { statusCode: status, message } =
    error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? requestTimeout()
      : error.code === 'HPE_HEADER_OVERFLOW'
        ? headersTooLarge()
        : error.code === 'HPE_URI_TOO_LONG'
          ? urlTooLong()
          : badRequest();
  const body = JSON.stringify(ovhErrorBody(status, message));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

export function buildApi(options: ApiOptions): FastifyInstance {
  const limits: ApiLimits = { ...defaultLimits, ...options.limits };
  // Node checks the request and headers timeouts on this period: a fraction of the shortest one.
  const connectionsCheckingInterval = Math.max(
    50,
    Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs) / 4)),
  );
  // Request logs name the method and path only: a validation URL's query carries its secret token.
  const logger = options.logger
    ? {
        serializers: {
          req: (request: { method: string; url: string }) => ({
            method: request.method,
            url: request.url.split('?')[0],
          }),
        },
      }
    : false;
  const settings = {
    logger,
    bodyLimit: limits.bodyBytes,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    connectionTimeout: limits.idleTimeoutMs,
    routerOptions: { maxParamLength: 256 },
    clientErrorHandler: clientError,
    frameworkErrors: (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
      return sendError(reply, frameworkAnswers[error.code]?.() ?? badRequest());
    },
  };
  const app = (options.tls
    ? Fastify({ ...settings, https: { ...options.tls, connectionsCheckingInterval } })
    : Fastify({ ...settings, http: { connectionsCheckingInterval } })) as unknown as FastifyInstance;
  app.server.headersTimeout = Math.min(limits.headersTimeoutMs, limits.requestTimeoutMs); // Node wants it within the request's
  app.server.maxConnections = limits.maxConnections;
  // OVH's API speaks JSON only: any other body is refused 415 before it is read.
  app.removeContentTypeParser('text/plain');

  app.setErrorHandler((error: FastifyError & { validation?: unknown }, request, reply) => {
    if (error instanceof ApiError) return sendError(reply, error);
    if (error.validation) return sendError(reply, request.url.startsWith('/agent/') ? badEvents() : badJson());
    const known = frameworkAnswers[error.code];
    if (known) return sendError(reply, known());
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error(error);
    return sendError(reply, status === 500 ? internalError() : badRequest(status));
  });
  app.setNotFoundHandler((_request, reply) => sendError(reply, notFound()));
  // JSON as Fastify parses it, the raw text kept (within the body limit): APIv6 signatures cover it.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    request.rawBody = body as string;
    // OVH's clients send `Content-Type: application/json` on every call, DELETE included, bodiless.
    if (body === '' && request.method !== 'POST' && request.method !== 'PUT') return done(null, undefined);
    parseJson(request, body as string, done);
  });

  // Before anything else, and never echoed: a serviceName outside the config's charset names no server.
  app.addHook('onRequest', async (request) => {
    // No route, no body: a stranger's POST to nowhere is not read (nor parsed) before its 404.
    if (request.is404) throw notFound();
    const { serviceName } = (request.params ?? {}) as { serviceName?: unknown };
    if (serviceName !== undefined && (typeof serviceName !== 'string' || !isServiceName(serviceName)))
      throw badServiceName();
  });

  const context: ApiContext = {
    ...options,
    customers: options.customers ?? new ConfigCustomers(options.config),
    authFailures: options.authFailures ?? options.store.authFailures,
    limits,
    log: app.log,
  };
  customerRoutes(app, context);
  authRoutes(app, context);
  credentialPageRoutes(app, context);
  agentRoutes(app, context);
  netbootRoutes(app, context);
  panelRoutes(app, context);

  let stopPruning = () => {};
  app.addHook('onReady', async () => {
    stopPruning = keepPruning(options.store, options.config.jobBodyRetentionDays ?? DEFAULT_RETENTION_DAYS, app.log);
  });
  app.addHook('onClose', async () => stopPruning());
  return app;
}
