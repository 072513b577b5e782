// The control panel's sign-in sessions, over the SQL interface (migration 20). The browser holds a
// random session id; the table holds only its SHA-256, so a copy of the database signs no one in.
// An install waiting for its confirmation holds the customer's secrets (header values, user data):
// it is sealed with the store's SecretBox, bound to its session's row, like job bodies.
import { createHash, randomBytes } from 'node:crypto';
import type { SecretBox } from './secret-box.ts';
import type { Sql } from './sql.ts';

export interface Session {
  readonly idHash: string;
  readonly customer: string;
  /** Sent back by every form of this session. */
  readonly csrfToken: string;
  /** An install form checked and waiting for its confirmation (a deployment body); sealed at rest. */
  readonly pendingInstall: { readonly serviceName: string; readonly body: unknown } | null;
  readonly expiresAt: string;
}

interface Row {
  id_hash: string;
  customer: string;
  csrf_token: string;
  pending_install: string | null;
  expires_at: string;
}

export const hashSessionId = (id: string): string => createHash('sha256').update(id).digest('hex');

/** Binds a sealed pending install to its session: moved onto another row, it does not open. */
const pendingContext = (idHash: string) => `panel_sessions.pending_install:${idHash}`;

export class SessionStore {
  private readonly sql: Sql;
  private readonly box: SecretBox;
  private readonly lifetimeMs: number;

  constructor(sql: Sql, box: SecretBox, lifetimeMs = 8 * 3600_000) {
    this.sql = sql;
    this.box = box;
    this.lifetimeMs = lifetimeMs;
  }

  /** A new session for `customer`: answers the id for the browser's cookie (kept nowhere else). */
  async create(customer: string): Promise<{ id: string; session: Session }> {
    const id = randomBytes(32).toString('base64url');
    const now = new Date();
    const session: Session = {
      idHash: hashSessionId(id),
      customer,
      csrfToken: randomBytes(32).toString('base64url'),
      pendingInstall: null,
      expiresAt: new Date(now.getTime() + this.lifetimeMs).toISOString(),
    };
    await this.sql.run('DELETE FROM panel_sessions WHERE expires_at < ?', [now.toISOString()]);
    await this.sql.run(
      'INSERT INTO panel_sessions (id_hash, customer, csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?)',
      [session.idHash, customer, session.csrfToken, now.toISOString(), session.expiresAt],
    );
    return { id, session };
  }

  /** The live session the cookie's id names; undefined when unknown or expired. */
  async find(id: string): Promise<Session | undefined> {
    const row = await this.sql.get<Row>(
      'SELECT id_hash, customer, csrf_token, pending_install, expires_at FROM panel_sessions WHERE id_hash = ? AND expires_at > ?',
      [hashSessionId(id), new Date().toISOString()],
    );
    if (!row) return undefined;
    return {
      idHash: row.id_hash,
      customer: row.customer,
      csrfToken: row.csrf_token,
      pendingInstall: row.pending_install === null ? null : this.openPending(row.pending_install, row.id_hash),
      expiresAt: row.expires_at,
    };
  }

  /** A pending install that does not open (another key, another row's) is as good as none: the customer reviews the form again. */
  private openPending(sealed: string, idHash: string): Session['pendingInstall'] {
    try {
      return JSON.parse(this.box.open(sealed, pendingContext(idHash)));
    } catch {
      return null;
    }
  }

  async setPendingInstall(idHash: string, pending: Session['pendingInstall']): Promise<void> {
    const sealed = pending === null ? null : this.box.seal(JSON.stringify(pending), pendingContext(idHash));
    await this.sql.run('UPDATE panel_sessions SET pending_install = ? WHERE id_hash = ?', [sealed, idHash]);
  }

  async end(idHash: string): Promise<void> {
    await this.sql.run('DELETE FROM panel_sessions WHERE id_hash = ?', [idHash]);
  }
}
