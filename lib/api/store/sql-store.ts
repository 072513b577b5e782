// The store's rules, written once over the SQL interface (sql.ts) for every database behind it.
import type { ErrorKind } from '../../errors.ts';
import type { Progress, StatusState } from '../../status.ts';
import { migrate } from './migrations.ts';
import { SecretBox } from './secret-box.ts';
import type { Database, Sql } from './sql.ts';
import type { AgentEvent, Deployment, DeploymentKind, NewDeployment, Step, Store } from './types.ts';

interface Row {
  id: number | string;
  service_name: string;
  kind: string;
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

/** Steps a deployment may list at most: the pipeline has a dozen phases; a looping agent adds no more. */
export const MAX_STEPS = 32;

const columns = 'id, service_name, kind, status, message, error_kind, checksum, phase, progress, started_at, job_taken_at, finished_at, erased';

async function deploymentWhere(sql: Sql, where: string, params: (string | number)[]): Promise<Deployment | undefined> {
  const row = await sql.get<Row>(`SELECT ${columns} FROM deployments WHERE ${where}`, params);
  return row && toDeployment(row);
}

const currentOf = (sql: Sql, serviceName: string) =>
  deploymentWhere(sql, 'service_name = ? AND erased = 0 ORDER BY id DESC LIMIT 1', [serviceName]);

/** What the store keeps of a progress: its contract's fields, nothing else the agent may have sent. */
function progressOf(progress: Progress | null | undefined): string | null {
  if (!progress) return null;
  const { done, total, bytesPerSecond, etaSeconds } = progress;
  return JSON.stringify({ done, total, bytesPerSecond, ...(etaSeconds !== undefined && { etaSeconds }) });
}

/** The associated data a body is sealed with: it opens on its own deployment's row only. */
const bodyContext = (id: number) => `byoi job body of deployment ${id}`;

export class SqlStore implements Store {
  private readonly db: Database;
  private readonly box: SecretBox;

  private constructor(db: Database, box: SecretBox) {
    this.db = db;
    this.box = box;
  }

  /** The store over `db`, its schema brought up to date first; job bodies are sealed with `box`. */
  static async open(db: Database, box: SecretBox = SecretBox.ephemeral()): Promise<SqlStore> {
    await migrate(db);
    const store = new SqlStore(db, box);
    await store.sealClearBodies();
    return store;
  }

  /** Bodies stored in clear before they were sealed (databases older than migration 2). */
  private async sealClearBodies(): Promise<void> {
    await this.db.transaction(async (tx) => {
      const rows = await tx.all<{ deployment_id: number | string; body: string }>("SELECT deployment_id, body FROM job_bodies WHERE body NOT LIKE 'v1:%'");
      for (const row of rows) {
        const id = Number(row.deployment_id);
        await tx.run('UPDATE job_bodies SET body = ? WHERE deployment_id = ?', [this.box.seal(row.body, bodyContext(id)), id]);
      }
    });
  }

  create(input: NewDeployment): Promise<Deployment | 'conflict'> {
    return this.db.transaction(async (tx) => {
      if ((await currentOf(tx, input.serviceName))?.status === 'doing') return 'conflict';
      const startedAt = now();
      const inserted = await tx.get<{ id: number | string }>(
        'INSERT INTO deployments (service_name, kind, token_hash, status, message, phase, started_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id',
        [input.serviceName, input.kind, input.tokenHash, 'doing', input.message, input.phase, startedAt],
      );
      const id = Number(inserted!.id);
      await tx.run('INSERT INTO job_bodies (deployment_id, body) VALUES (?, ?)', [id, this.box.seal(JSON.stringify(input.body), bodyContext(id))]);
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

  async jobBody(id: number): Promise<unknown | undefined> {
    const row = await this.db.get<{ body: string }>('SELECT body FROM job_bodies WHERE deployment_id = ?', [id]);
    return row && JSON.parse(this.box.open(row.body, bodyContext(id)));
  }

  async pruneJobBodies(before: string): Promise<number> {
    return this.db.run(
      'DELETE FROM job_bodies WHERE deployment_id IN (SELECT id FROM deployments WHERE finished_at < ? OR erased_at < ?)',
      [before, before],
    );
  }

  async markJobTaken(id: number): Promise<void> {
    await this.db.run('UPDATE deployments SET job_taken_at = coalesce(job_taken_at, ?) WHERE id = ?', [now(), id]);
  }

  /**
   * Applies a batch in order, then writes the outcome once: consecutive progress of one phase
   * collapses into the last, a phase change opens a step (at most MAX_STEPS), and the server's clock
   * dates steps and the outcome, whatever the agent's says.
   */
  record(id: number, events: readonly AgentEvent[]): Promise<Deployment> {
    return this.db.transaction(async (tx) => {
      const before = await deploymentWhere(tx, 'id = ?', [id]);
      if (!before) throw new Error(`no deployment ${id}`);
      if (before.status !== 'doing' || events.length === 0) return before; // the outcome is final
      const at = now();
      let steps = Number((await tx.get<{ n: number | string }>('SELECT count(*) AS n FROM steps WHERE deployment_id = ?', [id]))!.n);
      let state = before;
      for (const event of events) {
        if (state.status !== 'doing') break;
        const phase = event.phase ?? state.phase;
        if (phase !== state.phase && steps < MAX_STEPS) {
          await tx.run('INSERT INTO steps (deployment_id, n, phase, comment, started_at) VALUES (?, ?, ?, ?, ?)', [id, steps++, phase, event.message, at]);
        }
        state = {
          ...state,
          status: event.status,
          message: event.message,
          errorKind: event.status === 'error' ? (event.errorKind ?? null) : null,
          checksum: event.checksum ?? state.checksum,
          phase,
          progress: event.progress ?? null,
          finishedAt: event.status === 'doing' ? null : at,
        };
      }
      await tx.run('UPDATE deployments SET status = ?, message = ?, error_kind = ?, checksum = ?, phase = ?, progress = ?, finished_at = ? WHERE id = ?', [
        state.status,
        state.message,
        state.errorKind,
        state.checksum,
        state.phase,
        progressOf(state.progress),
        state.finishedAt,
        id,
      ]);
      return (await deploymentWhere(tx, 'id = ?', [id]))!;
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
      await tx.run('UPDATE deployments SET erased = 1, erased_at = coalesce(erased_at, ?) WHERE service_name = ?', [now(), serviceName]);
      await tx.run('INSERT INTO servers (service_name, rescue) VALUES (?, 1) ON CONFLICT (service_name) DO UPDATE SET rescue = 1', [serviceName]);
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
