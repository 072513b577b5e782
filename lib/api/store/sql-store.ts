// The store's rules, written once over the SQL interface (sql.ts) for every database behind it.
import type { ErrorKind } from '../../errors.ts';
import type { Progress, StatusState } from '../../status.ts';
import { migrate } from './migrations.ts';
import type { Database, Sql } from './sql.ts';
import type { AgentEvent, Deployment, DeploymentKind, NewDeployment, Step, Store } from './types.ts';

interface Row {
  id: number | string;
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
  erased: number | string;
}

function toDeployment(row: Row): Deployment {
  return {
    id: Number(row.id),
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
    erased: Number(row.erased) !== 0,
  };
}

const now = () => new Date().toISOString();

async function deploymentWhere(sql: Sql, where: string, params: (string | number)[]): Promise<Deployment | undefined> {
  const row = await sql.get<Row>(`SELECT * FROM deployments WHERE ${where}`, params);
  return row && toDeployment(row);
}

/**
 * Serialises the transactions that change one server's deployments (create, erase) across replicas: a
 * write that changes nothing but takes the server row's lock on PostgreSQL until commit (on SQLite the
 * transaction already holds the whole database's write lock).
 */
const lockServer = (tx: Sql, serviceName: string) =>
  tx.run('INSERT INTO servers (service_name, rescue) VALUES (?, 0) ON CONFLICT (service_name) DO UPDATE SET rescue = servers.rescue', [serviceName]);

/** Locks the rows a read returns until commit, where the database has row locks (PostgreSQL). */
const forUpdate = (tx: Sql) => (tx.dialect === 'postgres' ? ' FOR UPDATE' : '');

const currentOf = (sql: Sql, serviceName: string) =>
  deploymentWhere(sql, 'service_name = ? AND erased = 0 ORDER BY id DESC LIMIT 1', [serviceName]);

export class SqlStore implements Store {
  private readonly db: Database;

  private constructor(db: Database) {
    this.db = db;
  }

  /** The store over `db`, its schema brought up to date first. */
  static async open(db: Database): Promise<SqlStore> {
    await migrate(db);
    return new SqlStore(db);
  }

  create(input: NewDeployment): Promise<Deployment | 'conflict'> {
    return this.db.transaction(async (tx) => {
      // Under the server's lock, the check below sees every create and erase committed before it.
      await lockServer(tx, input.serviceName);
      if ((await currentOf(tx, input.serviceName))?.status === 'doing') return 'conflict';
      const startedAt = now();
      const inserted = await tx.get<{ id: number | string }>(
        'INSERT INTO deployments (service_name, kind, body, token_hash, status, message, phase, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id',
        [input.serviceName, input.kind, JSON.stringify(input.body), input.tokenHash, 'doing', input.message, input.phase, startedAt],
      );
      const id = Number(inserted!.id);
      await tx.run('INSERT INTO steps (deployment_id, n, phase, comment, started_at) VALUES (?, 0, ?, ?, ?)', [id, input.phase, input.message, startedAt]);
      await tx.run('INSERT INTO servers (service_name, rescue) VALUES (?, 0) ON CONFLICT (service_name) DO UPDATE SET rescue = 0', [input.serviceName]);
      return (await deploymentWhere(tx, 'id = ?', [id]))!;
    });
  }

  current(serviceName: string): Promise<Deployment | undefined> {
    return currentOf(this.db, serviceName);
  }

  byId(id: number): Promise<Deployment | undefined> {
    return deploymentWhere(this.db, 'id = ?', [id]);
  }

  byTokenHash(tokenHash: string): Promise<Deployment | undefined> {
    return deploymentWhere(this.db, 'token_hash = ?', [tokenHash]);
  }

  async markJobTaken(id: number): Promise<void> {
    await this.db.run('UPDATE deployments SET job_taken_at = coalesce(job_taken_at, ?) WHERE id = ?', [now(), id]);
  }

  record(id: number, events: readonly AgentEvent[]): Promise<Deployment> {
    return this.db.transaction(async (tx) => {
      // Locked: two replicas recording the same agent's retried events take turns, so a final status
      // is never overwritten and steps are numbered once.
      let deployment = await deploymentWhere(tx, `id = ?${forUpdate(tx)}`, [id]);
      if (!deployment) throw new Error(`no deployment ${id}`);
      for (const event of events) {
        if (deployment.status !== 'doing') break; // the outcome is final
        const phase = event.phase ?? deployment.phase;
        if (phase !== deployment.phase) {
          await tx.run(
            'INSERT INTO steps (deployment_id, n, phase, comment, started_at) VALUES (?, (SELECT count(*) FROM steps WHERE deployment_id = ?), ?, ?, ?)',
            [id, id, phase, event.message, event.at],
          );
        }
        const final = event.status !== 'doing';
        await tx.run(
          'UPDATE deployments SET status = ?, message = ?, error_kind = ?, checksum = coalesce(?, checksum), phase = ?, progress = ?, finished_at = ? WHERE id = ?',
          [
            event.status,
            event.message,
            event.status === 'error' ? (event.errorKind ?? null) : null,
            event.checksum ?? null,
            phase,
            event.progress ? JSON.stringify(event.progress) : null,
            final ? event.at : null,
            id,
          ],
        );
        deployment = (await deploymentWhere(tx, 'id = ?', [id]))!;
      }
      return deployment;
    });
  }

  async steps(id: number): Promise<Step[]> {
    const rows = await this.db.all<{ phase: string; comment: string; started_at: string }>(
      'SELECT phase, comment, started_at FROM steps WHERE deployment_id = ? ORDER BY n',
      [id],
    );
    return rows.map((r) => ({ phase: r.phase, comment: r.comment, startedAt: r.started_at }));
  }

  async erase(serviceName: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      // The server's row first: it is also the lock that orders this erase with any create.
      await tx.run('INSERT INTO servers (service_name, rescue) VALUES (?, 1) ON CONFLICT (service_name) DO UPDATE SET rescue = 1', [serviceName]);
      await tx.run('UPDATE deployments SET erased = 1 WHERE service_name = ?', [serviceName]);
    });
  }

  async inRescue(serviceName: string): Promise<boolean> {
    const row = await this.db.get<{ rescue: number | string }>('SELECT rescue FROM servers WHERE service_name = ?', [serviceName]);
    return row !== undefined && Number(row.rescue) === 1;
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
