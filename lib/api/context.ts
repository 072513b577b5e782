// What every group of routes is built from: the lab's configuration, the store and the boot control.
import type { FastifyBaseLogger } from 'fastify';
import type { AuthFailures } from './auth-failures.ts';
import type { BootAdapter } from './boot.ts';
import type { ApiConfig } from './config.ts';
import type { Credentials } from './credentials.ts';
import type { Customers } from './customers.ts';
import type { Store } from './store/types.ts';
import type { SignInFailures } from '../panel/sign-in-limit.ts';

export interface ApiOptions {
  readonly config: ApiConfig;
  readonly store: Store;
  readonly boot: BootAdapter;
  /** The URL agents use to reach this API; read when a deployment starts (the port may be known late). */
  readonly agentUrl: () => string;
  readonly logger?: boolean;
  /** Customer accounts; by default those the config declares. */
  readonly customers?: Customers;
  /** APIv6 applications and consumer keys; without them every signed call is refused (INVALID_KEY). */
  readonly credentials?: Credentials;
  /** Serve HTTPS with this certificate chain and key (PEM); plain HTTP without. */
  readonly tls?: { readonly cert: Buffer; readonly key: Buffer };
  /** Bounds on requests' sizes and times; defaults in server.ts. */
  readonly limits?: Partial<ApiLimits>;
  /** Failed authentications per client; by default counted in the store. */
  readonly authFailures?: AuthFailures;
  /** The control panel's failed sign-ins per account and per address; by default counted in this process. */
  readonly signInFailures?: SignInFailures;
}

export interface ApiLimits {
  /** Largest request body (a customer's job with 10 MiB of user data fits). */
  readonly bodyBytes: number;
  /** Largest agent events body. */
  readonly eventsBodyBytes: number;
  /** Time to receive a whole request, headers and body. */
  readonly requestTimeoutMs: number;
  /** Time to receive a request's headers. */
  readonly headersTimeoutMs: number;
  /** How long an idle keep-alive connection stays open. */
  readonly keepAliveTimeoutMs: number;
  /** How long a socket may stay silent. */
  readonly idleTimeoutMs: number;
  /** Connections open at once; more are closed as they come (each holds a file descriptor and buffers). */
  readonly maxConnections: number;
}

/** What the routes are built from: the options, with the customers and the server's logger settled. */
export interface ApiContext extends ApiOptions {
  readonly customers: Customers;
  readonly authFailures: AuthFailures;
  readonly limits: ApiLimits;
  /** For what happens outside a request. */
  readonly log: FastifyBaseLogger;
}

export type ServiceParams = { serviceName: string };
