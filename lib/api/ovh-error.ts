// OVH's error shapes: `{class, message}` for resource errors, `{errorCode, httpCode, message}` for
// authentication refusals (INVALID_SIGNATURE, NOT_GRANTED_CALL...). Every refusal of the API is answered
// one of these ways, however early it happens (route, hook, framework).
import type { FastifyReply } from 'fastify';
import type { ErrorCode } from '../errors.ts';

/** OVH's error classes, by HTTP status. */
const errorClasses: Record<number, string> = {
  400: 'Client::BadRequest',
  401: 'Client::Unauthorized',
  403: 'Client::Forbidden',
  404: 'Client::NotFound',
  405: 'Client::MethodNotAllowed',
  408: 'Client::RequestTimeout',
  409: 'Client::Conflict',
  410: 'Client::Gone',
  413: 'Client::BadRequest',
  414: 'Client::BadRequest',
  415: 'Client::BadRequest',
  429: 'Client::TooManyRequests',
  431: 'Client::BadRequest',
  503: 'Server::ServiceUnavailable',
};

/** The `{class, message}` body for `statusCode`. */
export function ovhErrorBody(statusCode: number, message: string): { class: string; message: string } {
  return {
    class: errorClasses[statusCode] ?? (statusCode < 500 ? 'Client::BadRequest' : 'Server::InternalServerError'),
    message,
  };
}

/** The `errorCode`s OVH's API answers authentication refusals with, and its clients map. */
export type OvhErrorCode =
  | 'INVALID_KEY'
  | 'NOT_CREDENTIAL'
  | 'INVALID_CREDENTIAL'
  | 'INVALID_SIGNATURE'
  | 'QUERY_TIME_OUT'
  | 'NOT_GRANTED_CALL'
  | 'FORBIDDEN';

/** An error answered as OVH does: `{class, message}`, or `{errorCode, httpCode, message}` given an OVH code. */
export class ApiError extends Error {
  /** Which refusal this is, stable and machine-readable, like ByoiError's (lib/errors.ts makes every ApiError). */
  readonly code: ErrorCode;
  readonly statusCode: number;
  readonly errorCode: OvhErrorCode | undefined;
  constructor(
    code: ErrorCode,
    statusCode: number,
    message: string,
    options: { errorCode?: OvhErrorCode; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ApiError';
    this.code = code;
    this.statusCode = statusCode;
    this.errorCode = options.errorCode;
  }
}

/**
 * HTTP's reason phrases. Taken from node:http when an answer is sent, not imported: every command
 * loads this module (lib/errors.ts makes ApiErrors), and node:http costs each start ~15 ms.
 */
const reasonPhrase = (statusCode: number): string | undefined =>
  process.getBuiltinModule('node:http').STATUS_CODES[statusCode];

/** How long a client refused 429 is told to wait. */
const RETRY_AFTER_SECONDS = 60;

export function sendError(reply: FastifyReply, error: ApiError): FastifyReply {
  const { statusCode, message, errorCode } = error;
  if (statusCode === 429) reply.header('retry-after', String(RETRY_AFTER_SECONDS));
  if (errorCode)
    return reply
      .code(statusCode)
      .type('application/json')
      .send({ errorCode, httpCode: `${statusCode} ${reasonPhrase(statusCode)}`, message });
  return reply.code(statusCode).type('application/json').send(ovhErrorBody(statusCode, message));
}
