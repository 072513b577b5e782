// OVH's error shape, `{class, message}`: every refusal of the API is answered this way, however early
// it happens (route, hook, framework).
import type { FastifyReply } from 'fastify';

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
  return { class: errorClasses[statusCode] ?? 'Server::InternalServerError', message };
}

/** An error answered as OVH does: `{class, message}`. */
export class ApiError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

export function sendError(reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  return reply.code(statusCode).type('application/json').send(ovhErrorBody(statusCode, message));
}
