// OVH's error shape, `{class, message}`: every refusal of the API is answered this way, however early
// it happens (route, hook, framework).
import type { FastifyReply } from 'fastify';

/** OVH's error classes, by HTTP status. */
const errorClasses: Record<number, string> = {
  400: 'Client::BadRequest',
  401: 'Client::Unauthorized',
  403: 'Client::Forbidden',
  404: 'Client::NotFound',
  409: 'Client::Conflict',
  410: 'Client::Gone',
  413: 'Client::BadRequest',
  415: 'Client::BadRequest',
};

/** An error answered as OVH does: `{class, message}`. */
export class ApiError extends Error {
  readonly statusCode: number;
  constructor(statusCode: number, message: string) {
    super(message);
    this.statusCode = statusCode;
  }
}

export function sendError(reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  return reply.code(statusCode).send({ class: errorClasses[statusCode] ?? 'Server::InternalServerError', message });
}
