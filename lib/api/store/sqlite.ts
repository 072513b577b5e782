// The embedded store: deployments and their status in an SQLite file (node:sqlite), so that a restart
// of the API loses none. node:sqlite is synchronous; the methods are async to fit `Store`.
import { DatabaseSync } from 'node:sqlite';
import type { ErrorKind } from '../../errors.ts';
import type { Progress, StatusState } from '../../status.ts';
import type { AgentEvent, Deployment, DeploymentKind, NewDeployment, Step, Store } from './types.ts';

const schema = `
CREATE TABLE IF NOT EXISTS deployments (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  service_name TEXT NOT NULL,
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  token_hash TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL,
  message TEXT NOT NULL,
  error_kind TEXT,
  checksum TEXT,
  phase TEXT NOT NULL,
  progress TEXT,
  started_at TEXT NOT NULL,
  job_taken_at TEXT,
  finished_at TEXT,
  erased INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS deployments_by_server ON deployments (service_name, id);
CREATE TABLE IF NOT EXISTS steps (
  deployment_id INTEGER NOT NULL REFERENCES deployments (id),
  n INTEGER NOT NULL,
  phase TEXT NOT NULL,
  comment TEXT NOT NULL,
  started_at TEXT NOT NULL,
  PRIMARY KEY (deployment_id, n)
);
CREATE TABLE IF NOT EXISTS servers (
  service_name TEXT PRIMARY KEY,
  rescue INTEGER NOT NULL
);
`;

interface Row {
  id: number;
  service_name: string;
  kind: string;
  body: string;
  status: string;
  message: string;
  error_kind: string | null;
  checksum: string | null;
  phase: string;
  progress: string | null;
  started_at: string;
  job_taken_at: string | null;
  finished_at: string | null;
  erased: number;
}

function toDeployment(row: Row): Deployment {
  return {
    id: row.id,
    serviceName: row.service_name,
    kind: row.kind as DeploymentKind,
    body: JSON.parse(row.body),
    status: row.status as StatusState,
    message: row.message,
    errorKind: row.error_kind as ErrorKind | null,
    checksum: row.checksum,
    phase: row.phase,
    progress: row.progress === null ? null : (JSON.parse(row.progress) as Progress),
    startedAt: row.started_at,
    jobTakenAt: row.job_taken_at,
    finishedAt: row.finished_at,
    erased: row.erased !== 0,
  };
}

const now = () => new Date().toISOString();

export class SqliteStore implements Store {
  private readonly db: DatabaseSync;

  /** `path` is a file, or ':memory:'. */
  constructor(path: string) {
    this.db = new DatabaseSync(path);
    this.db.exec('PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;');
    this.db.exec(schema);
  }

  private row(sql: string, ...params: (string | number)[]): Deployment | undefined {
    const row = this.db.prepare(sql).get(...params) as Row | undefined;
    return row && toDeployment(row);
  }

  private transaction<T>(work: () => T): T {
    this.db.exec('BEGIN IMMEDIATE');
    try {
      const result = work();
      this.db.exec('COMMIT');
      return result;
    } catch (error) {
      this.db.exec('ROLLBACK');
      throw error;
    }
  }

  private currentOf(serviceName: string): Deployment | undefined {
    return this.row('SELECT * FROM deployments WHERE service_name = ? AND erased = 0 ORDER BY id DESC LIMIT 1', serviceName);
  }

  private withId(id: number): Deployment | undefined {
    return this.row('SELECT * FROM deployments WHERE id = ?', id);
  }

  async create(input: NewDeployment): Promise<Deployment | 'conflict'> {
    return this.transaction(() => {
      if (this.currentOf(input.serviceName)?.status === 'doing') return 'conflict';
      const startedAt = now();
      const { lastInsertRowid } = this.db
        .prepare('INSERT INTO deployments (service_name, kind, body, token_hash, status, message, phase, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(input.serviceName, input.kind, JSON.stringify(input.body), input.tokenHash, 'doing', input.message, input.phase, startedAt);
      const id = Number(lastInsertRowid);
      this.db.prepare('INSERT INTO steps (deployment_id, n, phase, comment, started_at) VALUES (?, 0, ?, ?, ?)').run(id, input.phase, input.message, startedAt);
      this.db.prepare('INSERT INTO servers (service_name, rescue) VALUES (?, 0) ON CONFLICT (service_name) DO UPDATE SET rescue = 0').run(input.serviceName);
      return this.withId(id)!;
    });
  }

  async current(serviceName: string): Promise<Deployment | undefined> {
    return this.currentOf(serviceName);
  }

  async byId(id: number): Promise<Deployment | undefined> {
    return this.withId(id);
  }

  async byTokenHash(tokenHash: string): Promise<Deployment | undefined> {
    return this.row('SELECT * FROM deployments WHERE token_hash = ?', tokenHash);
  }

  async markJobTaken(id: number): Promise<void> {
    this.db.prepare('UPDATE deployments SET job_taken_at = coalesce(job_taken_at, ?) WHERE id = ?').run(now(), id);
  }

  async record(id: number, events: readonly AgentEvent[]): Promise<Deployment> {
    return this.transaction(() => {
      let deployment = this.withId(id);
      if (!deployment) throw new Error(`no deployment ${id}`);
      for (const event of events) {
        if (deployment.status !== 'doing') break; // the outcome is final
        const phase = event.phase ?? deployment.phase;
        if (phase !== deployment.phase) {
          this.db
            .prepare('INSERT INTO steps (deployment_id, n, phase, comment, started_at) VALUES (?, (SELECT count(*) FROM steps WHERE deployment_id = ?), ?, ?, ?)')
            .run(id, id, phase, event.message, event.at);
        }
        const final = event.status !== 'doing';
        this.db
          .prepare('UPDATE deployments SET status = ?, message = ?, error_kind = ?, checksum = coalesce(?, checksum), phase = ?, progress = ?, finished_at = ? WHERE id = ?')
          .run(
            event.status,
            event.message,
            event.status === 'error' ? (event.errorKind ?? null) : null,
            event.checksum ?? null,
            phase,
            event.progress ? JSON.stringify(event.progress) : null,
            final ? event.at : null,
            id,
          );
        deployment = this.withId(id)!;
      }
      return deployment;
    });
  }

  async steps(id: number): Promise<Step[]> {
    const rows = this.db.prepare('SELECT phase, comment, started_at FROM steps WHERE deployment_id = ? ORDER BY n').all(id) as {
      phase: string;
      comment: string;
      started_at: string;
    }[];
    return rows.map((r) => ({ phase: r.phase, comment: r.comment, startedAt: r.started_at }));
  }

  async erase(serviceName: string): Promise<void> {
    this.transaction(() => {
      this.db.prepare('UPDATE deployments SET erased = 1 WHERE service_name = ?').run(serviceName);
      this.db.prepare('INSERT INTO servers (service_name, rescue) VALUES (?, 1) ON CONFLICT (service_name) DO UPDATE SET rescue = 1').run(serviceName);
    });
  }

  async inRescue(serviceName: string): Promise<boolean> {
    const row = this.db.prepare('SELECT rescue FROM servers WHERE service_name = ?').get(serviceName) as { rescue: number } | undefined;
    return row?.rescue === 1;
  }

  async close(): Promise<void> {
    this.db.close();
  }
}
