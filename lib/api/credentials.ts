// APIv6's applications and consumer keys (docs/api.md, "APIv6"): an application (AK, AS) asks for
// a credential with access rules; the customer validates it on the validation page (or an operator
// with `byoi serve credential validate`); its consumer key (CK) then signs calls within those rules.
import { createHash, randomInt } from 'node:crypto';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** One rule of a credential: a method and a path pattern where `*` matches anything. */
export interface AccessRule {
  readonly method: HttpMethod;
  readonly path: string;
}

export type CredentialStatus = 'pendingValidation' | 'validated' | 'refused';

export interface Application {
  readonly id: number;
  readonly appKey: string;
  /** In clear, for the signature check; sealed in the store. */
  readonly appSecret: string;
  readonly name: string;
  readonly description: string;
}

export interface Credential {
  readonly id: number;
  readonly applicationId: number;
  /** The account that validated it; null while pending. */
  readonly customer: string | null;
  readonly status: CredentialStatus;
  readonly rules: readonly AccessRule[];
  readonly allowedIPs: readonly string[] | null;
  readonly redirection: string | null;
  readonly creation: string;
  /** Null: unlimited, or not validated yet. */
  readonly expiration: string | null;
  readonly lastUse: string | null;
}

export interface NewCredential {
  readonly applicationId: number;
  readonly rules: readonly AccessRule[];
  readonly allowedIPs: readonly string[] | null;
  readonly redirection: string | null;
}

/** Where applications and credentials are kept (store/credentials-store.ts). */
export interface Credentials {
  createApplication(name: string, description: string): Promise<{ application: Application; appSecret: string }>;
  applicationByKey(appKey: string): Promise<Application | undefined>;
  applicationById(id: number): Promise<Application | undefined>;
  /** A pending credential, its consumer key and the token of its validation URL (both shown once); 'too-many' past the application's bound. */
  request(
    input: NewCredential,
  ): Promise<{ credential: Credential; consumerKey: string; validationToken: string } | 'too-many'>;
  byConsumerKey(consumerKey: string): Promise<Credential | undefined>;
  byValidationToken(token: string): Promise<Credential | undefined>;
  byId(id: number): Promise<Credential | undefined>;
  ofCustomer(customer: string): Promise<Credential[]>;
  /** Grants a pending credential to `customer` for `validitySeconds` (null: unlimited); false when not pending. */
  validate(id: number, customer: string, validitySeconds: number | null): Promise<boolean>;
  refuse(id: number): Promise<boolean>;
  /** Revokes: the consumer key no longer exists. */
  remove(id: number): Promise<void>;
  touch(id: number): Promise<void>;
}

/** Whether the credential may sign calls now (validated and not expired). */
export function isUsable(credential: Credential, now = new Date()): boolean {
  return credential.status === 'validated' && (credential.expiration === null || new Date(credential.expiration) > now);
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A random key of letters and digits, as OVH's (an AK has 16, an AS and a CK 32). */
export function randomKey(length: number): string {
  let key = '';
  for (let i = 0; i < length; i++) key += ALPHABET[randomInt(ALPHABET.length)];
  return key;
}

/** What the store keeps of a consumer key or a validation token. */
export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}
