// The control panel (/panel/): a customer signs in, installs an image on one of their servers, follows
// the deployment and deletes it, through the same deployment code as the API (../deployments.ts).
// Server-rendered pages (lib/panel/pages.ts), one small script; sessions in the store, CSRF tokens on
// every form, a strict CSP. Its own body parsers, error and not-found pages live in this plugin only.
import { timingSafeEqual, randomBytes, createHash } from 'node:crypto';
import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { USER_DATA_MAX_BYTES } from '../../configdrive/options.ts';
import { panelScript, panelStyle } from '../../panel/assets.ts';
import { knownDiskGroups } from '../../panel/disk-groups.ts';
import { followView, serverState, shownDeployment } from '../../panel/follow.ts';
import type { Html } from '../../panel/html.ts';
import { chooseLanguage, dictionaries, languages, type Language } from '../../panel/i18n.ts';
import { bodyOf, emptyForm, fieldOf, formFromFields, formOfBody, type InstallForm } from '../../panel/install-form.ts';
import * as pages from '../../panel/pages.ts';
import { signInFailed, signInLimited, storeSignInFailures } from '../../panel/sign-in-limit.ts';
import type { ApiContext } from '../context.ts';
import { checkDeploymentBody, eraseDeployment, startDeployment } from '../deployments.ts';
import { badCsrfToken, formFieldTooLarge, formTooLarge, notMultipart } from '../../errors.ts';
import { ApiError } from '../ovh-error.ts';
import { SessionStore, type Session } from '../store/sessions-store.ts';

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/** Bounds of what a form may post: sign-in, delete and confirm forms are tiny; the install form carries user data. */
const FORM_BODY_LIMIT = 16 * 1024;
const INSTALL_LIMITS = {
  fieldNameSize: 64,
  fieldSize: 1024 * 1024,
  fields: 120,
  fileSize: USER_DATA_MAX_BYTES,
  files: 1,
  parts: 121,
  headerPairs: 20,
};
/** The install form's text fields together (user data typed in is the only large one): 120 full fields would be 120 MiB. */
const INSTALL_TEXT_BYTES = 2 * INSTALL_LIMITS.fieldSize;

const sameSecret = (a: string, b: string) =>
  timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());

type Params = { serviceName: string };
type PanelRequest = FastifyRequest<{ Params: Params }>;

export function panelRoutes(app: FastifyInstance, context: ApiContext): void {
  app.register(
    async (panel) => {
      await panel.register(cookie);
      // The panel posts forms only: a JSON body (up to the API's 16 MiB) is refused before it is read.
      panel.removeContentTypeParser('application/json');
      await panel.register(formbody, { bodyLimit: FORM_BODY_LIMIT });
      await panel.register(multipart, { limits: INSTALL_LIMITS, throwFileSizeLimit: true });
      routes(panel, context);
    },
    { prefix: '/panel' },
  );
}

function routes(panel: FastifyInstance, context: ApiContext): void {
  const sessions = new SessionStore(context.store.sql, context.store.secrets);
  const limits = context.signInFailures ?? storeSignInFailures(context.store.sql);
  // Each password check holds 32 MiB for scrypt: a burst of sign-ins must not hold unbounded memory.
  const MAX_CHECKS = 8;
  let checking = 0;
  const secure = Boolean(context.tls);
  // Under TLS the `__Host-` prefix: the browser takes the cookie only from this host, Secure, with
  // Path=/ and no Domain, so a sibling subdomain cannot plant a session of its own (cookie tossing).
  const sessionCookie = secure ? '__Host-byoi_session' : 'byoi_session';
  const signInCookie = secure ? '__Host-byoi_sign_in' : 'byoi_sign_in';
  const cookieOptions = { path: secure ? '/' : '/panel', httpOnly: true, sameSite: 'strict', secure } as const;
  /** The session of each request that has one (set by the hooks below). */
  const sessionOf = new WeakMap<FastifyRequest, Session>();

  // Cookies are parsed in this plugin's hook: a request refused in an earlier one (the server's) has none.
  const language = (request: FastifyRequest): Language =>
    chooseLanguage(request.cookies?.byoi_lang, request.headers['accept-language']);
  const pageContext = (request: FastifyRequest): pages.PageContext => {
    const session = sessionOf.get(request);
    return {
      t: dictionaries[language(request)],
      path: request.url.split('?')[0]!,
      ...(session && { customer: session.customer, csrfToken: session.csrfToken }),
    };
  };
  const send = (reply: FastifyReply, page: Html, status = 200) =>
    reply.code(status).type('text/html; charset=utf-8').send(page.text);
  const message = (
    request: FastifyRequest,
    reply: FastifyReply,
    status: number,
    pick: (t: pages.PageContext['t']) => string,
  ) => {
    const c = pageContext(request);
    return send(reply, pages.messagePage(c, c.t.appName, pick(c.t)), status);
  };

  panel.addHook('onRequest', async (_request, reply) => {
    reply.headers({
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'x-frame-options': 'DENY',
      'referrer-policy': 'same-origin',
      'cross-origin-opener-policy': 'same-origin',
      'cross-origin-resource-policy': 'same-origin',
      'permissions-policy': 'camera=(), microphone=(), geolocation=()',
      'cache-control': 'no-store',
      ...(secure && { 'strict-transport-security': 'max-age=31536000' }),
    });
  });

  panel.setErrorHandler((error: { statusCode?: number; code?: string; message: string }, request, reply) => {
    const status = error.statusCode && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500;
    if (status === 500) request.log.error(error);
    if (status === 413 || error.code?.startsWith('FST_PARTS') || error.code === 'FST_REQ_FILE_TOO_LARGE')
      return message(request, reply, 413, (t) => t.tooBig);
    return message(request, reply, status, (t) =>
      status === 500 ? t.failure : status === 404 ? t.notFound : t.badForm,
    );
  });
  panel.setNotFoundHandler((request, reply) => message(request, reply, 404, (t) => t.notFound));

  /** A post must come from a page of this panel: same origin (when the browser says), and its form's token. */
  function sameOrigin(request: FastifyRequest): boolean {
    const own = `${request.protocol}://${request.host}`;
    const origin = request.headers.origin;
    if (origin !== undefined) return origin === own;
    const referer = request.headers.referer;
    return referer === undefined || referer.startsWith(`${own}/`);
  }
  const tokenMatches = (given: unknown, expected: string | undefined) =>
    typeof given === 'string' && expected !== undefined && given !== '' && sameSecret(given, expected);

  /** onRequest: the customer's session, before any body is read; pages send strangers to the sign-in page. */
  async function signedIn(request: FastifyRequest, reply: FastifyReply) {
    const id = request.cookies[sessionCookie];
    const session = id ? await sessions.find(id) : undefined;
    if (!session) {
      if (request.method === 'GET' && !request.url.endsWith('.json')) return reply.redirect('/panel/sign-in', 303);
      return message(request, reply, 403, (t) => t.badForm);
    }
    if (request.method === 'POST' && !sameOrigin(request)) return message(request, reply, 403, (t) => t.badForm);
    sessionOf.set(request, session);
  }

  /** onRequest: the server must be the signed-in customer's; a stranger's and a missing one look alike. */
  async function owned(request: PanelRequest, reply: FastifyReply) {
    await signedIn(request, reply);
    if (reply.sent) return reply;
    const session = sessionOf.get(request)!;
    const customer = await context.customers.byName(session.customer);
    const mine = customer ? await context.customers.servers(customer) : [];
    if (!mine.includes(request.params.serviceName)) return message(request, reply, 404, (t) => t.notFound);
  }

  /** After the body: the form's CSRF token must be the session's. */
  function checkToken(request: FastifyRequest, given: unknown): void {
    if (!tokenMatches(given, sessionOf.get(request)?.csrfToken)) throw badCsrfToken();
  }

  const serverConfig = (name: string) => context.config.servers.find((s) => s.serviceName === name);
  const diskGroupsOf = async (name: string) =>
    knownDiskGroups(await context.store.disks(name), serverConfig(name)?.diskGroups);
  const deploymentOf = async (name: string) => shownDeployment(await context.store.latest(name));
  const serverPath = (name: string) => `/panel/servers/${encodeURIComponent(name)}`;
  const formBody = (request: FastifyRequest) => (request.body ?? {}) as Record<string, unknown>;

  panel.get('/', async (_request, reply) => reply.redirect('/panel/servers', 303));
  panel.get('/static/panel.js', async (_request, reply) =>
    reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-cache').send(panelScript),
  );
  panel.get('/static/panel.css', async (_request, reply) =>
    reply.type('text/css; charset=utf-8').header('cache-control', 'no-cache').send(panelStyle),
  );

  panel.get<{ Params: { lang: string }; Querystring: { back?: string } }>('/language/:lang', async (request, reply) => {
    const lang = languages.find((l) => l === request.params.lang);
    if (lang) reply.setCookie('byoi_lang', lang, { ...cookieOptions, maxAge: 365 * 86400 });
    const back = request.query.back;
    const safe = typeof back === 'string' && /^\/panel(\/[A-Za-z0-9._~%/-]*)?$/.test(back) && !back.includes('//');
    return reply.redirect(safe ? back : '/panel/servers', 303);
  });

  // ---- Sign-in and sign-out ----

  async function signInForm(request: FastifyRequest, reply: FastifyReply, error?: string, name?: string, status = 200) {
    const token = randomBytes(32).toString('base64url');
    reply.setCookie(signInCookie, token, cookieOptions);
    return send(reply, pages.signInPage(pageContext(request), token, error, name), status);
  }

  panel.get('/sign-in', async (request, reply) => signInForm(request, reply));

  panel.post('/sign-in', async (request, reply) => {
    const { name, password, csrf } = formBody(request);
    const t = dictionaries[language(request)];
    if (!sameOrigin(request) || !tokenMatches(csrf, request.cookies[signInCookie]))
      return message(request, reply, 403, (m) => m.badForm);
    const account = typeof name === 'string' ? name.slice(0, 64) : '';
    const blocked = (await signInLimited(limits, account, request.ip)) || checking >= MAX_CHECKS;
    if (blocked) return signInForm(request, reply, t.tooManyAttempts, account, 429);
    let customer;
    checking += 1;
    try {
      customer =
        typeof password === 'string' && password.length <= 1024
          ? await context.customers.signIn(account, password)
          : undefined;
    } finally {
      checking -= 1;
    }
    if (!customer) {
      await signInFailed(limits, account, request.ip);
      return signInForm(request, reply, t.wrongPassword, account, 401);
    }
    const old = request.cookies[sessionCookie];
    if (old) {
      const previous = await sessions.find(old);
      if (previous) await sessions.end(previous.idHash);
    }
    const { id } = await sessions.create(customer.name);
    reply.clearCookie(signInCookie, cookieOptions);
    reply.setCookie(sessionCookie, id, cookieOptions);
    return reply.redirect('/panel/servers', 303);
  });

  panel.post('/sign-out', { onRequest: signedIn }, async (request, reply) => {
    checkToken(request, formBody(request).csrf);
    await sessions.end(sessionOf.get(request)!.idHash);
    reply.clearCookie(sessionCookie, cookieOptions);
    return reply.redirect('/panel/sign-in', 303);
  });

  // ---- Servers ----

  panel.get('/servers', { onRequest: signedIn }, async (request, reply) => {
    const customer = await context.customers.byName(sessionOf.get(request)!.customer);
    const names = customer ? await context.customers.servers(customer) : [];
    const servers = await Promise.all(
      names.map(async (name) => ({ name, state: serverState(await deploymentOf(name)) })),
    );
    return send(reply, pages.serversPage(pageContext(request), servers));
  });

  panel.get<{ Params: Params }>('/servers/:serviceName', { onRequest: owned }, async (request, reply) => {
    const name = request.params.serviceName;
    const deployment = await deploymentOf(name);
    return send(
      reply,
      pages.serverPage(
        pageContext(request),
        name,
        await diskGroupsOf(name),
        serverState(deployment),
        deployment !== undefined,
      ),
    );
  });

  // ---- Install: form, check, confirmation ----

  panel.get<{ Params: Params }>('/servers/:serviceName/install', { onRequest: owned }, async (request, reply) => {
    const name = request.params.serviceName;
    // Back from the confirmation: the form as it was, without its secrets.
    const pending = sessionOf.get(request)!.pendingInstall;
    const form = pending?.serviceName === name ? formOfBody(pending.body as Record<string, unknown>) : emptyForm;
    return send(reply, pages.installPage(pageContext(request), name, await diskGroupsOf(name), form, {}));
  });

  panel.post<{ Params: Params }>('/servers/:serviceName/install', { onRequest: owned }, async (request, reply) => {
    const name = request.params.serviceName;
    if (!request.isMultipart()) throw notMultipart();
    const fields = new Map<string, string>();
    let textBytes = 0;
    let file: Buffer | undefined;
    for await (const part of request.parts()) {
      if (part.type === 'file') {
        const bytes = await part.toBuffer();
        if (part.fieldname === 'userDataFile') file = bytes;
      } else {
        if (part.valueTruncated || part.fieldnameTruncated) throw formFieldTooLarge();
        if (typeof part.value !== 'string') continue;
        textBytes += Buffer.byteLength(part.value);
        if (textBytes > INSTALL_TEXT_BYTES) throw formTooLarge();
        fields.set(part.fieldname, part.value);
      }
    }
    checkToken(request, fields.get('csrf'));
    const form = formFromFields(fields, file);
    const body = bodyOf(form);
    const c = pageContext(request);
    try {
      checkDeploymentBody('bringYourOwnImage', body);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      const shown: InstallForm = {
        ...form,
        httpHeader: form.httpHeader.map((h) => ({ key: h.key, value: '' })),
        userData: '',
      };
      return send(
        reply,
        pages.installPage(c, name, await diskGroupsOf(name), shown, {
          [fieldOf(error.cause) ?? 'form']: error.message,
        }),
        400,
      );
    }
    await sessions.setPendingInstall(sessionOf.get(request)!.idHash, { serviceName: name, body });
    const userData = (body.configdrive as { userData?: string } | undefined)?.userData;
    return send(reply, pages.confirmPage(c, name, form, userData === undefined ? 0 : Buffer.byteLength(userData)));
  });

  panel.post<{ Params: Params }>(
    '/servers/:serviceName/install/confirm',
    { onRequest: owned },
    async (request, reply) => {
      const name = request.params.serviceName;
      checkToken(request, formBody(request).csrf);
      const session = sessionOf.get(request)!;
      const pending = session.pendingInstall;
      if (!pending || pending.serviceName !== name) return reply.redirect(`${serverPath(name)}/install`, 303);
      try {
        await startDeployment(context, name, 'bringYourOwnImage', pending.body);
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        const body = pending.body as Record<string, unknown>;
        const userData = (body.configdrive as { userData?: string } | undefined)?.userData;
        return send(
          reply,
          pages.confirmPage(
            pageContext(request),
            name,
            formOfBody(body),
            userData === undefined ? 0 : Buffer.byteLength(userData),
            error.message,
          ),
          error.statusCode,
        );
      }
      await sessions.setPendingInstall(session.idHash, null);
      return reply.redirect(`${serverPath(name)}/deployment`, 303);
    },
  );

  // ---- Follow ----

  async function viewOf(name: string) {
    const deployment = await deploymentOf(name);
    return followView(deployment, deployment ? await context.store.steps(deployment.id) : []);
  }

  panel.get<{ Params: Params }>('/servers/:serviceName/deployment', { onRequest: owned }, async (request, reply) =>
    send(
      reply,
      pages.followPage(pageContext(request), request.params.serviceName, await viewOf(request.params.serviceName)),
    ),
  );

  panel.get<{ Params: Params }>('/servers/:serviceName/deployment.json', { onRequest: owned }, async (request) => {
    const view = await viewOf(request.params.serviceName);
    return { ...view, stateText: pages.stateText(dictionaries[language(request)], view.state) };
  });

  // ---- Delete ----

  panel.get<{ Params: Params }>('/servers/:serviceName/delete', { onRequest: owned }, async (request, reply) =>
    send(reply, pages.deletePage(pageContext(request), request.params.serviceName)),
  );

  panel.post<{ Params: Params }>('/servers/:serviceName/delete', { onRequest: owned }, async (request, reply) => {
    checkToken(request, formBody(request).csrf);
    await eraseDeployment(context, request.params.serviceName);
    return reply.redirect(serverPath(request.params.serviceName), 303);
  });
}
