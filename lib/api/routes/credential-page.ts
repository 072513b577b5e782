// The validation page of a credential request (OVH's `validationUrl`, /auth/?credentialToken=...): the
// customer signs in with their account, reads the rules asked for, picks a validity and grants or
// refuses; the browser then goes to the request's `redirection`. Server-rendered, no script, a strict
// CSP, and a double-submit CSRF token (SameSite=Strict cookie equal to a hidden field).
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { badValidationForm, credentialRequestGone, tooManyFailures, wrongSignIn } from '../../errors.ts';
import type { ApiContext } from '../context.ts';
import type { ApiError } from '../ovh-error.ts';
import { messagePage, validationPage, VALIDITIES } from '../credential-page-html.ts';
import type { Credential } from '../credentials.ts';
import { baseUrlOf } from '../signed-requests.ts';

const CSRF_COOKIE = 'byoi_validation_csrf';
const FORM_LIMIT = 8 * 1024;

type Form = Partial<Record<'credentialToken' | 'csrf' | 'name' | 'password' | 'validity' | 'decision', string>>;

function cookie(request: FastifyRequest, name: string): string | undefined {
  for (const part of (request.headers.cookie ?? '').split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return value.join('=');
  }
  return undefined;
}

const same = (a: string, b: string) =>
  timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());

function html(
  reply: FastifyReply,
  status: number,
  nonce: string,
  page: string,
  redirection: string | null = null,
): FastifyReply {
  // form-action must name the redirection's origin: browsers hold a form's redirect to it too.
  const formAction = ["'self'", ...(redirection ? [new URL(redirection).origin] : [])].join(' ');
  return (
    reply
      .code(status)
      .header(
        'content-security-policy',
        `default-src 'none'; style-src 'nonce-${nonce}'; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
      )
      .header('x-frame-options', 'DENY')
      .header('x-content-type-options', 'nosniff')
      // Never the link's token to another site; same-origin keeps the form's Origin (no-referrer makes it "null").
      .header('referrer-policy', 'same-origin')
      .header('cache-control', 'no-store')
      .type('text/html; charset=utf-8')
      .send(page)
  );
}

export function credentialPageRoutes(app: FastifyInstance, options: ApiContext): void {
  void app.register(async (scope) => {
    // Unless the app parses forms already (the control panel may), this page's own bounded parser.
    if (!scope.hasContentTypeParser('application/x-www-form-urlencoded')) {
      scope.addContentTypeParser(
        'application/x-www-form-urlencoded',
        { parseAs: 'string', bodyLimit: FORM_LIMIT },
        (_request, body, done) => {
          const form: Form = {};
          for (const [key, value] of new URLSearchParams(body as string))
            if (!(key in form)) (form as Record<string, string>)[key] = value;
          done(null, form);
        },
      );
    }

    async function pending(token: string | undefined): Promise<Credential | undefined> {
      if (!token || token.length > 64) return undefined;
      const credential = await options.credentials?.byValidationToken(token);
      return credential?.status === 'pendingValidation' ? credential : undefined;
    }

    async function form(
      reply: FastifyReply,
      nonce: string,
      credential: Credential,
      token: string,
      csrf: string,
      refusal?: ApiError,
      name?: string,
    ) {
      const application = (await options.credentials!.applicationById(credential.applicationId))!;
      const { rules, allowedIPs, redirection } = credential;
      const page = validationPage({
        nonce,
        csrf,
        credentialToken: token,
        application,
        rules,
        allowedIPs,
        redirection,
        ...(refusal && { error: refusal.message }),
        ...(name && { name }),
      });
      return html(reply, refusal?.statusCode ?? 200, nonce, page, credential.redirection);
    }

    /** A refusal as a page: its status, and its sentence on the page. */
    const refusalPage = (reply: FastifyReply, nonce: string, refusal: ApiError) =>
      html(reply, refusal.statusCode, nonce, messagePage(nonce, 'Authorize an application', refusal.message));
    const gone = (reply: FastifyReply, nonce: string) => refusalPage(reply, nonce, credentialRequestGone());

    scope.get<{ Querystring: { credentialToken?: string } }>('/auth/', async (request, reply) => {
      const nonce = randomBytes(16).toString('base64');
      const token = request.query.credentialToken;
      const credential = await pending(token);
      if (!credential) return gone(reply, nonce);
      const csrf = randomBytes(32).toString('base64url');
      // The page's own path, behind a reverse proxy's prefix too (config apiUrl).
      const base = new URL(baseUrlOf(options, request));
      const secure = base.protocol === 'https:' ? '; Secure' : '';
      reply.header(
        'set-cookie',
        `${CSRF_COOKIE}=${csrf}; Path=${base.pathname.replace(/\/$/, '')}/auth/; HttpOnly; SameSite=Strict${secure}`,
      );
      return form(reply, nonce, credential, token!, csrf);
    });

    scope.post('/auth/', { bodyLimit: FORM_LIMIT }, async (request, reply) => {
      const nonce = randomBytes(16).toString('base64');
      const body =
        typeof request.body === 'object' && request.body !== null ? (request.body as Record<string, unknown>) : {};
      // One string per field, whoever parsed the form (a repeated field is not an answer).
      const fields: Form = Object.fromEntries(
        Object.entries(body).filter(([, value]) => typeof value === 'string'),
      ) as Form;
      const credential = await pending(fields.credentialToken);
      if (!credential) return gone(reply, nonce);
      const expectedCsrf = cookie(request, CSRF_COOKIE);
      const origin = request.headers.origin;
      const sameOrigin = origin === undefined || origin === new URL(baseUrlOf(options, request)).origin;
      if (!expectedCsrf || !fields.csrf || !same(expectedCsrf, fields.csrf) || !sameOrigin) {
        return refusalPage(reply, nonce, badValidationForm());
      }
      // Password guesses count against the client like bad API keys (auth-failures.ts).
      if (await options.authFailures.limited(request.ip)) return refusalPage(reply, nonce, tooManyFailures());
      const validity = VALIDITIES.find((v) => v.value === fields.validity);
      const customer = await options.customers.signIn(fields.name ?? '', fields.password ?? '');
      if (!customer) await options.authFailures.failed(request.ip);
      if (!customer || !validity || (fields.decision !== 'grant' && fields.decision !== 'refuse')) {
        return form(reply, nonce, credential, fields.credentialToken!, expectedCsrf, wrongSignIn(), fields.name);
      }
      const done =
        fields.decision === 'grant'
          ? await options.credentials!.validate(credential.id, customer.name, validity.seconds)
          : await options.credentials!.refuse(credential.id);
      if (!done) return gone(reply, nonce);
      request.log.info(
        { credentialId: credential.id, customer: customer.name, decision: fields.decision },
        'credential request answered',
      );
      if (credential.redirection)
        return reply.header('cache-control', 'no-store').redirect(credential.redirection, 303);
      const words =
        fields.decision === 'grant'
          ? 'The application may now act within these rights. You can close this page.'
          : 'The request was refused. You can close this page.';
      return html(reply, 200, nonce, messagePage(nonce, 'Authorize an application', words));
    });
  });
}
