// Who is calling a customer route, decided before the body is read (onRequest), and the signature of
// an APIv6 call checked once its raw body is in (preValidation): OVH's scheme exactly as its clients
// compute it (docs/api.md, "APIv6"):
//   X-Ovh-Signature = "$1$" + hex(SHA1(AS + "+" + CK + "+" + METHOD + "+" + URL + "+" + BODY + "+" + TIMESTAMP))
// URL is the full URL the client requested. A lab's Bearer key (config `apiKeys`) stays a shortcut.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import {
  forbiddenIp,
  invalidCredential,
  invalidKey,
  invalidSignature,
  missingApiKey,
  notCredential,
  notGrantedCall,
  queryTimeOut,
  tooManyFailures,
  unknownApiKey,
} from '../errors.ts';
import { isAllowedAddress, isGranted } from './access-rules.ts';
import { bearer, knownApiKey } from './auth.ts';
import type { ApiContext } from './context.ts';
import { isUsable, type Application, type Credential } from './credentials.ts';
import { ApiError } from './ovh-error.ts';

/** Where the customer routes are served: OVH's base path `/1.0`, its alias `/v1`, and bare (the lab's first routes). */
export const API_BASE_PATHS = ['', '/1.0', '/v1'] as const;

/** How far a call's timestamp may be from the server's clock, in seconds: the replay window. */
export const REPLAY_WINDOW_SECONDS = 120;

export type Caller =
  | { readonly kind: 'bearer'; readonly key: string }
  | {
      readonly kind: 'signed';
      readonly application: Application;
      readonly credential: Credential;
      readonly customer: string;
      readonly consumerKey: string;
      readonly timestamp: string;
      readonly signature: string;
    };

declare module 'fastify' {
  interface FastifyRequest {
    caller?: Caller;
    /** The body exactly as received (JSON requests), for the signature. */
    rawBody?: string;
  }
}

export function signatureOf(
  appSecret: string,
  consumerKey: string,
  method: string,
  url: string,
  body: string,
  timestamp: string,
): string {
  return `$1$${createHash('sha1').update([appSecret, consumerKey, method, url, body, timestamp].join('+')).digest('hex')}`;
}

function sameText(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

const header = (request: FastifyRequest, name: string): string | undefined => {
  const value = request.headers[name];
  return typeof value === 'string' && value.length <= 256 ? value : undefined;
};

/** This API's public URL (config `apiUrl`, for a reverse proxy), else the scheme and Host it was reached by. */
export function baseUrlOf(context: ApiContext, request: FastifyRequest): string {
  return (
    context.config.apiUrl?.replace(/\/+$/, '') ?? `${context.tls ? 'https' : 'http'}://${request.headers.host ?? ''}`
  );
}

/**
 * The URLs a client may have signed for this request: the configured public URL (behind a reverse
 * proxy), else the scheme and Host it reached us by; each with and without the port, since node's
 * `ovh` signs "https://" + host + path whatever the port.
 */
export function signedUrls(context: ApiContext, request: FastifyRequest): string[] {
  const base = baseUrlOf(context, request);
  const withoutPort = base.replace(/^(https?:\/\/(?:\[[^\]]*\]|[^/:]*)):\d+/, '$1');
  return [...new Set([base, withoutPort])].map((b) => b + request.url);
}

/** The request's path below the API's base path (`/1.0`, `/v1`), without its query: what rules match. */
export function rulePath(url: string): string {
  return url.split('?')[0]!.replace(/^\/(?:1\.0|v1)(?=\/)/, '');
}

/** onRequest: settles the caller from the headers alone; refuses unknown, pending or stale callers. */
export async function identifyCaller(context: ApiContext, request: FastifyRequest): Promise<void> {
  const { authFailures } = context;
  if (await authFailures.limited(request.ip)) throw tooManyFailures();
  /** A guess: counted against the client (auth-failures.ts), then refused. */
  const guessed = async (error: ApiError): Promise<never> => {
    await authFailures.failed(request.ip);
    throw error;
  };
  const key = bearer(request.headers.authorization);
  if (key) {
    if (!knownApiKey(context.config, key)) await guessed(unknownApiKey());
    request.caller = { kind: 'bearer', key };
    return;
  }
  const appKey = header(request, 'x-ovh-application');
  if (appKey === undefined) return guessed(missingApiKey());
  const application = await context.credentials?.applicationByKey(appKey);
  if (!application) return guessed(invalidKey());
  const consumerKey = header(request, 'x-ovh-consumer');
  const credential = consumerKey === undefined ? undefined : await context.credentials!.byConsumerKey(consumerKey);
  if (!credential || credential.applicationId !== application.id) return guessed(notCredential());
  if (!isUsable(credential) || credential.customer === null) throw invalidCredential();
  const timestamp = header(request, 'x-ovh-timestamp') ?? '';
  if (
    !/^\d{1,12}$/.test(timestamp) ||
    Math.abs(Number(timestamp) - Math.floor(Date.now() / 1000)) > REPLAY_WINDOW_SECONDS
  ) {
    throw queryTimeOut();
  }
  const signature = header(request, 'x-ovh-signature');
  if (signature === undefined || !/^\$1\$[0-9a-f]{40}$/.test(signature)) throw invalidSignature();
  if (!isAllowedAddress(credential.allowedIPs, request.ip)) throw forbiddenIp();
  request.caller = {
    kind: 'signed',
    application,
    credential,
    customer: credential.customer,
    consumerKey: consumerKey!,
    timestamp,
    signature,
  };
}

/**
 * preValidation: the signature over the raw body, then the credential's rules. `exempt`: a call every
 * valid credential may make whatever its rules (`/auth/currentCredential`).
 */
export async function verifySignedCall(context: ApiContext, request: FastifyRequest, exempt = false): Promise<void> {
  const caller = request.caller;
  if (caller?.kind !== 'signed') return;
  const body = request.rawBody ?? '';
  // Every candidate is computed and compared, so the time taken does not say which one matched.
  let matched = false;
  for (const url of signedUrls(context, request)) {
    const expected = signatureOf(
      caller.application.appSecret,
      caller.consumerKey,
      request.method,
      url,
      body,
      caller.timestamp,
    );
    matched = sameText(expected, caller.signature) || matched;
  }
  if (!matched) {
    await context.authFailures.failed(request.ip);
    throw invalidSignature();
  }
  if (!exempt && !isGranted(caller.credential.rules, request.method, rulePath(request.url))) {
    throw notGrantedCall();
  }
  await context.credentials!.touch(caller.credential.id);
}
