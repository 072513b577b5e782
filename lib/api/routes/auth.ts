// APIv6's own routes: the server's time, credential requests by an application, the credential in use,
// the account (`/me`), a customer's credentials to list and revoke and the applications they granted. Served under `/1.0`, `/v1` and bare, like OVH's.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { invalidKey, noSuchApplication, noSuchCredential, notCredential, tooManyPending } from '../../errors.ts';
import { parseCredentialRequest } from '../access-rules.ts';
import type { ApiContext } from '../context.ts';
import { isUsable, type Application, type Credential } from '../credentials.ts';
import { API_BASE_PATHS, baseUrlOf, identifyCaller, verifySignedCall } from '../signed-requests.ts';

/** `api.Credential`, as `GET /auth/currentCredential` and `/me/api/credential/{id}` answer it. */
export function credentialView(credential: Credential) {
  const expired = credential.status === 'validated' && !isUsable(credential);
  return {
    credentialId: credential.id,
    applicationId: credential.applicationId,
    creation: credential.creation,
    expiration: credential.expiration,
    lastUse: credential.lastUse,
    status: expired ? 'expired' : credential.status,
    rules: credential.rules,
    allowedIPs: credential.allowedIPs,
    ovhSupport: false,
  };
}

/** The signed caller's credential; Bearer keys have none. */
function signedCredential(request: FastifyRequest): Credential & { customer: string } {
  const caller = request.caller;
  if (caller?.kind !== 'signed') throw notCredential();
  return { ...caller.credential, customer: caller.customer };
}

function authRoutesAt(app: FastifyInstance, options: ApiContext): void {
  app.get('/auth/time', async (_request, reply) =>
    reply.type('application/json').send(String(Math.floor(Date.now() / 1000))),
  );

  // An application asks for a consumer key: known by its key alone (unsigned), before its body is read.
  const application = new WeakMap<FastifyRequest, Application>();
  app.post(
    '/auth/credential',
    {
      onRequest: async (request) => {
        const appKey = request.headers['x-ovh-application'];
        const found =
          typeof appKey === 'string' && appKey.length <= 256
            ? await options.credentials?.applicationByKey(appKey)
            : undefined;
        if (!found) throw invalidKey();
        application.set(request, found);
      },
    },
    async (request) => {
      const input = parseCredentialRequest(request.body, application.get(request)!.id);
      const requested = await options.credentials!.request(input);
      if (requested === 'too-many') throw tooManyPending();
      const { consumerKey, validationToken } = requested;
      return {
        validationUrl: `${baseUrlOf(options, request)}/auth/?credentialToken=${validationToken}`,
        consumerKey,
        state: 'pendingValidation',
      };
    },
  );

  const signed = {
    onRequest: async (request: FastifyRequest) => identifyCaller(options, request),
    preValidation: async (request: FastifyRequest) => verifySignedCall(options, request),
  };

  // Every valid credential may read itself, whatever its rules.
  app.get(
    '/auth/currentCredential',
    {
      onRequest: signed.onRequest,
      preValidation: async (request: FastifyRequest) => verifySignedCall(options, request, true),
    },
    async (request) => credentialView(signedCredential(request)),
  );

  app.get<{ Querystring: { status?: string; applicationId?: string } }>(
    '/me/api/credential',
    signed,
    async (request) => {
      const { customer } = signedCredential(request);
      const { status, applicationId } = request.query;
      return (await options.credentials!.ofCustomer(customer))
        .map(credentialView)
        .filter(
          (c) =>
            (status === undefined || c.status === status) &&
            (applicationId === undefined || String(c.applicationId) === applicationId),
        )
        .map((c) => c.credentialId);
    },
  );

  async function ownCredential(request: FastifyRequest<{ Params: { credentialId: string } }>): Promise<Credential> {
    const { customer } = signedCredential(request);
    const { credentialId } = request.params;
    const found = /^\d{1,15}$/.test(credentialId) ? await options.credentials!.byId(Number(credentialId)) : undefined;
    if (!found || found.customer !== customer) throw noSuchCredential(credentialId.slice(0, 32));
    return found;
  }

  app.get<{ Params: { credentialId: string } }>('/me/api/credential/:credentialId', signed, async (request) =>
    credentialView(await ownCredential(request)),
  );

  // The account itself, as scripts often call first to check their keys: its name, OVH's `nichandle`.
  app.get('/me', signed, async (request) => ({ nichandle: signedCredential(request).customer, state: 'complete' }));

  /** The applications the customer has granted credentials to. */
  async function grantedApplications(customer: string): Promise<number[]> {
    return [...new Set((await options.credentials!.ofCustomer(customer)).map((c) => c.applicationId))].sort(
      (a, b) => a - b,
    );
  }

  app.get('/me/api/application', signed, async (request) => grantedApplications(signedCredential(request).customer));

  app.get<{ Params: { applicationId: string } }>('/me/api/application/:applicationId', signed, async (request) => {
    const { customer } = signedCredential(request);
    const { applicationId } = request.params;
    const id = /^\d{1,15}$/.test(applicationId) ? Number(applicationId) : undefined;
    const found =
      id !== undefined && (await grantedApplications(customer)).includes(id)
        ? await options.credentials!.applicationById(id)
        : undefined;
    if (!found) throw noSuchApplication(applicationId.slice(0, 32));
    // `api.Application`: never its secret.
    return {
      applicationId: found.id,
      applicationKey: found.appKey,
      name: found.name,
      description: found.description,
      status: 'active',
    };
  });

  app.delete<{ Params: { credentialId: string } }>(
    '/me/api/credential/:credentialId',
    signed,
    async (request, reply) => {
      await options.credentials!.remove((await ownCredential(request)).id);
      return reply.type('application/json').send('null');
    },
  );
}

export function authRoutes(app: FastifyInstance, options: ApiContext): void {
  for (const prefix of API_BASE_PATHS) void app.register(async (scope) => authRoutesAt(scope, options), { prefix });
}
