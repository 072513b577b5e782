// Applications and consumer keys (lib/api/credentials.ts), written once over the SQL interface.
// Application secrets are sealed with the secret box; consumer keys and validation tokens kept hashed.
import {
  hashKey,
  randomKey,
  type AccessRule,
  type Application,
  type Credential,
  type CredentialStatus,
  type Credentials,
  type NewCredential,
} from '../credentials.ts';
import type { SecretBox } from './secret-box.ts';
import type { Sql } from './sql.ts';

interface ApplicationRow {
  id: number | string;
  app_key: string;
  secret_sealed: string;
  name: string;
  description: string;
}

interface CredentialRow {
  id: number | string;
  application_id: number | string;
  customer: string | null;
  status: string;
  rules: string;
  allowed_ips: string | null;
  redirection: string | null;
  created_at: string;
  expires_at: string | null;
  last_use: string | null;
}

function toCredential(row: CredentialRow): Credential {
  return {
    id: Number(row.id),
    applicationId: Number(row.application_id),
    customer: row.customer,
    status: row.status as CredentialStatus,
    rules: JSON.parse(row.rules) as AccessRule[],
    allowedIPs: row.allowed_ips === null ? null : (JSON.parse(row.allowed_ips) as string[]),
    redirection: row.redirection,
    creation: row.created_at,
    expiration: row.expires_at,
    lastUse: row.last_use,
  };
}

const now = () => new Date().toISOString();

/** Bound into each sealed secret: a secret moved onto another application's row does not open. */
const sealContext = (appKey: string) => `api_applications:${appKey}`;

/** How long a credential request may wait for its validation (OVH's are short-lived too). */
export const PENDING_LIFETIME_MS = 60 * 60 * 1000;

/** How many requests of one application may wait for their validation at once. */
export const MAX_PENDING_PER_APPLICATION = 1000;

export class SqlCredentials implements Credentials {
  private readonly sql: Sql;
  private readonly box: SecretBox;

  /** `sql` must have had the store's migrations (store/migrations.ts). */
  constructor(sql: Sql, box: SecretBox) {
    this.sql = sql;
    this.box = box;
  }

  async createApplication(name: string, description: string): Promise<{ application: Application; appSecret: string }> {
    const appKey = randomKey(16);
    const appSecret = randomKey(32);
    const row = await this.sql.get<{ id: number | string }>(
      'INSERT INTO api_applications (app_key, secret_sealed, name, description, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id',
      [appKey, this.box.seal(appSecret, sealContext(appKey)), name, description, now()],
    );
    return { application: { id: Number(row!.id), appKey, appSecret, name, description }, appSecret };
  }

  applicationByKey(appKey: string): Promise<Application | undefined> {
    return this.application('app_key = ?', appKey);
  }

  applicationById(id: number): Promise<Application | undefined> {
    return this.application('id = ?', id);
  }

  private async application(where: string, value: string | number): Promise<Application | undefined> {
    const row = await this.sql.get<ApplicationRow>(`SELECT * FROM api_applications WHERE ${where}`, [value]);
    if (!row) return undefined;
    let appSecret: string;
    try {
      appSecret = this.box.open(row.secret_sealed, sealContext(row.app_key));
    } catch {
      return undefined; // sealed under another key, or altered: this application cannot sign
    }
    return { id: Number(row.id), appKey: row.app_key, appSecret, name: row.name, description: row.description };
  }

  async request(
    input: NewCredential,
  ): Promise<{ credential: Credential; consumerKey: string; validationToken: string } | 'too-many'> {
    // Requests nobody validated in time are dropped, so that unanswered requests cannot pile up.
    const stale = new Date(Date.now() - PENDING_LIFETIME_MS).toISOString();
    await this.sql.run("DELETE FROM api_credentials WHERE status <> 'validated' AND created_at < ?", [stale]);
    // An application key is no secret (programs carry it): its pending requests are bounded.
    const pending = await this.sql.get<{ n: number | string }>(
      "SELECT count(*) AS n FROM api_credentials WHERE application_id = ? AND status = 'pendingValidation'",
      [input.applicationId],
    );
    if (Number(pending!.n) >= MAX_PENDING_PER_APPLICATION) return 'too-many';
    const consumerKey = randomKey(32);
    const validationToken = randomKey(32);
    const row = await this.sql.get<CredentialRow>(
      `INSERT INTO api_credentials (consumer_key_hash, validation_token_hash, application_id, status, rules, allowed_ips, redirection, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *`,
      [
        hashKey(consumerKey),
        hashKey(validationToken),
        input.applicationId,
        'pendingValidation',
        JSON.stringify(input.rules),
        input.allowedIPs === null ? null : JSON.stringify(input.allowedIPs),
        input.redirection,
        now(),
      ],
    );
    return { credential: toCredential(row!), consumerKey, validationToken };
  }

  private async where(where: string, params: (string | number)[]): Promise<Credential | undefined> {
    const row = await this.sql.get<CredentialRow>(`SELECT * FROM api_credentials WHERE ${where}`, params);
    return row && toCredential(row);
  }

  byConsumerKey(consumerKey: string): Promise<Credential | undefined> {
    return this.where('consumer_key_hash = ?', [hashKey(consumerKey)]);
  }

  byValidationToken(token: string): Promise<Credential | undefined> {
    const fresh = new Date(Date.now() - PENDING_LIFETIME_MS).toISOString();
    return this.where('validation_token_hash = ? AND created_at >= ?', [hashKey(token), fresh]);
  }

  byId(id: number): Promise<Credential | undefined> {
    return this.where('id = ?', [id]);
  }

  async ofCustomer(customer: string): Promise<Credential[]> {
    const rows = await this.sql.all<CredentialRow>('SELECT * FROM api_credentials WHERE customer = ? ORDER BY id', [
      customer,
    ]);
    return rows.map(toCredential);
  }

  async validate(id: number, customer: string, validitySeconds: number | null): Promise<boolean> {
    const expires = validitySeconds === null ? null : new Date(Date.now() + validitySeconds * 1000).toISOString();
    // The validation token is spent: the page cannot be used twice.
    const changed = await this.sql.run(
      "UPDATE api_credentials SET status = 'validated', customer = ?, expires_at = ?, validation_token_hash = NULL WHERE id = ? AND status = 'pendingValidation' AND created_at >= ?",
      [customer, expires, id, new Date(Date.now() - PENDING_LIFETIME_MS).toISOString()],
    );
    return changed === 1;
  }

  async refuse(id: number): Promise<boolean> {
    const changed = await this.sql.run(
      "UPDATE api_credentials SET status = 'refused', validation_token_hash = NULL WHERE id = ? AND status = 'pendingValidation'",
      [id],
    );
    return changed === 1;
  }

  async remove(id: number): Promise<void> {
    await this.sql.run('DELETE FROM api_credentials WHERE id = ?', [id]);
  }

  async touch(id: number): Promise<void> {
    // To the minute: a busy key does not cost a write per call.
    const minuteAgo = new Date(Date.now() - 60_000).toISOString();
    await this.sql.run('UPDATE api_credentials SET last_use = ? WHERE id = ? AND (last_use IS NULL OR last_use < ?)', [
      now(),
      id,
      minuteAgo,
    ]);
  }
}
