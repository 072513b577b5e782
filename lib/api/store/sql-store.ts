// The store's rules, written once over the SQL interface (sql.ts) for every database behind it.
import type { ErrorKind, Fault } from '../../errors.ts';
import { phaseNameOf } from '../../report/phases.ts';
import type { PhaseProgress, StatusState } from '../../report/status.ts';
import type { AuthFailures } from '../auth-failures.ts';
import { SqlAuthFailures } from './auth-failures-store.ts';
import { migrate } from './migrations.ts';
import { SecretBox } from './secret-box.ts';
import type { Database, Sql } from './sql.ts';
import type {
  AgentEvent,
  Deployment,
  DeploymentKind,
  DisksReport,
  NetbootState,
  NewDeployment,
  Step,
  Store,
} from './types.ts';

interface Row {
  id: number | string;
  service_name: string;
  kind: string;
  status: string;
  message: string;
  error_kind: string | null;
  checksum: string | null;
  // Only phase names are stored (the API's schema refuses others, lib/api/routes/agent.ts); read back as text.
  phase: string;
  progress: string | null;
  started_at: string;
  job_taken_at: string | null;
  finished_at: string | null;
  erased: number | string;
  detail: string | null;
  fault: string | null;
  cancelled: number | string;
  heard_at: string | null;
  boots: number | string;
  settled_by: string | null;
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
    phase: phaseNameOf(row.phase),
    progress: row.progress === null ? null : (JSON.parse(row.progress) as PhaseProgress),
    startedAt: row.started_at,
    jobTakenAt: row.job_taken_at,
    finishedAt: row.finished_at,
    erased: Number(row.erased) !== 0,
    detail: row.detail,
    fault: row.fault as Fault | null,
    cancelled: Number(row.cancelled) !== 0,
    heardAt: row.heard_at ?? row.started_at,
    boots: Number(row.boots),
    settledBy: row.settled_by as Deployment['settledBy'],
  };
}

const now = () => new Date().toISOString();

/** Steps a deployment may list at most: the pipeline has a dozen phases; a looping agent adds no more. */
export const MAX_STEPS = 32;

const columns =
  'id, service_name, kind, status, message, error_kind, checksum, phase, progress, started_at, job_taken_at, finished_at, erased, detail, fault, cancelled, heard_at, boots, settled_by';

async function deploymentWhere(sql: Sql, where: string, params: (string | number)[]): Promise<Deployment | undefined> {
  const row = await sql.get<Row>(`SELECT ${columns} FROM deployments WHERE ${where}`, params);
  return row && toDeployment(row);
}

/**
 * Takes the server's row lock until commit on PostgreSQL (a write that changes nothing; the row is made
 * if missing): create and erase on one server take turns across replicas. SQLite's transactions hold
 * the whole database's write lock already.
 */
const lockServer = (tx: Sql, serviceName: string) =>
  tx.run(
    'INSERT INTO servers (service_name, rescue) VALUES (?, 0) ON CONFLICT (service_name) DO UPDATE SET rescue = servers.rescue',
    [serviceName],
  );

/** Locks the rows a read returns until commit, where the database has row locks (PostgreSQL). */
const forUpdate = (tx: Sql) => (tx.dialect === 'postgres' ? ' FOR UPDATE' : '');

const currentOf = (sql: Sql, serviceName: string) =>
  deploymentWhere(sql, 'service_name = ? AND erased = 0 ORDER BY id DESC LIMIT 1', [serviceName]);

/** What the store keeps of a progress: its contract's fields, nothing else the agent may have sent. */
function progressOf(progress: PhaseProgress | null | undefined): string | null {
  if (!progress) return null;
  const { done, total, bytesPerSecond, etaSeconds } = progress;
  return JSON.stringify({ done, total, bytesPerSecond, ...(etaSeconds !== undefined && { etaSeconds }) });
}

/** The associated data a body is sealed with: it opens on its own deployment's row only. */
const bodyContext = (id: number) => `byoi job body of deployment ${id}`;

/** Whether the server's next netboot is the rescue system (after DELETE or a failed deployment). */
const setRescue = (sql: Sql, serviceName: string, rescue: boolean) =>
  sql.run(
    'INSERT INTO servers (service_name, rescue) VALUES (?, ?) ON CONFLICT (service_name) DO UPDATE SET rescue = ?',
    [serviceName, rescue ? 1 : 0, rescue ? 1 : 0],
  );

/** Ends a `doing` deployment in error for the lab's fault, when its agent cannot say how it ended. */
async function settle(
  sql: Sql,
  deployment: Deployment,
  message: string,
  by: 'watchdog' | 'netboot',
  guard: string,
  params: (string | number)[],
): Promise<boolean> {
  const changed = await sql.run(
    `UPDATE deployments SET status = 'error', message = ?, error_kind = 'failed', fault = 'lab', detail = NULL, finished_at = ?, settled_by = ? WHERE id = ? AND status = 'doing' AND erased = 0 ${guard}`,
    [message, now(), by, deployment.id, ...params],
  );
  if (changed === 0) return false; // another replica, or the agent, got there first
  await setRescue(sql, deployment.serviceName, true);
  return true;
}

export class SqlStore implements Store {
  private readonly db: Database;
  private readonly box: SecretBox;
  readonly authFailures: AuthFailures;

  private constructor(db: Database, box: SecretBox) {
    this.db = db;
    this.box = box;
    this.authFailures = new SqlAuthFailures(db);
  }

  get secrets(): SecretBox {
    return this.box;
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
      const rows = await tx.all<{ deployment_id: number | string; body: string }>(
        "SELECT deployment_id, body FROM job_bodies WHERE body NOT LIKE 'v1:%'",
      );
      for (const row of rows) {
        const id = Number(row.deployment_id);
        await tx.run('UPDATE job_bodies SET body = ? WHERE deployment_id = ?', [
          this.box.seal(row.body, bodyContext(id)),
          id,
        ]);
      }
    });
  }

  create(input: NewDeployment): Promise<Deployment | 'conflict'> {
    return this.db.transaction(async (tx) => {
      await lockServer(tx, input.serviceName);
      if ((await currentOf(tx, input.serviceName))?.status === 'doing') return 'conflict';
      const startedAt = now();
      // ON CONFLICT: a replica that started one in the meantime holds the server (migration 40's index).
      const inserted = await tx.get<{ id: number | string }>(
        "INSERT INTO deployments (service_name, kind, token_hash, status, message, phase, started_at, heard_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (service_name) WHERE status = 'doing' AND erased = 0 DO NOTHING RETURNING id",
        [input.serviceName, input.kind, input.tokenHash, 'doing', input.message, input.phase, startedAt, startedAt],
      );
      if (!inserted) return 'conflict';
      const id = Number(inserted.id);
      await tx.run('INSERT INTO job_bodies (deployment_id, body) VALUES (?, ?)', [
        id,
        this.box.seal(JSON.stringify(input.body), bodyContext(id)),
      ]);
      await tx.run('INSERT INTO steps (deployment_id, n, phase, comment, started_at) VALUES (?, 0, ?, ?, ?)', [
        id,
        input.phase,
        input.message,
        startedAt,
      ]);
      await setRescue(tx, input.serviceName, false);
      return (await deploymentWhere(tx, 'id = ?', [id]))!;
    });
  }

  current(serviceName: string): Promise<Deployment | undefined> {
    return currentOf(this.db, serviceName);
  }

  latest(serviceName: string): Promise<Deployment | undefined> {
    return deploymentWhere(this.db, 'service_name = ? ORDER BY id DESC LIMIT 1', [serviceName]);
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
    const at = now();
    await this.db.run('UPDATE deployments SET job_taken_at = coalesce(job_taken_at, ?), heard_at = ? WHERE id = ?', [
      at,
      at,
      id,
    ]);
  }

  /**
   * Applies a batch in order, then writes the outcome once: consecutive progress of one phase
   * collapses into the last, a phase change opens a step (at most MAX_STEPS), and the server's clock
   * dates steps and the outcome, whatever the agent's says.
   */
  record(id: number, events: readonly AgentEvent[]): Promise<Deployment> {
    return this.db.transaction(async (tx) => {
      // Locked: one agent's events delivered through two replicas at once take turns (steps numbered
      // once, a final status never overwritten).
      const before = await deploymentWhere(tx, `id = ?${forUpdate(tx)}`, [id]);
      if (!before) throw new Error(`no deployment ${id}`);
      const at = now();
      await tx.run('UPDATE deployments SET heard_at = ? WHERE id = ?', [at, id]); // none: a heartbeat, heard all the same
      let steps = Number(
        (await tx.get<{ n: number | string }>('SELECT count(*) AS n FROM steps WHERE deployment_id = ?', [id]))!.n,
      );
      let state = before;
      for (const event of events) {
        // The outcome is final, except one the API settled for want of news: the agent's own outcome wins.
        const reopened = state.settledBy !== null && event.status !== 'doing';
        if (state.status !== 'doing' && !reopened) break;
        const phase = event.phase ?? state.phase;
        if (phase !== state.phase && steps < MAX_STEPS) {
          await tx.run('INSERT INTO steps (deployment_id, n, phase, comment, started_at) VALUES (?, ?, ?, ?, ?)', [
            id,
            steps++,
            phase,
            event.message,
            at,
          ]);
        }
        const error = event.status === 'error';
        state = {
          ...state,
          status: event.status,
          message: event.message,
          errorKind: error ? (event.errorKind ?? null) : null,
          checksum: event.checksum ?? state.checksum,
          phase,
          progress: event.progress ?? null,
          finishedAt: event.status === 'doing' ? null : at,
          detail: error ? (event.detail ?? null) : null,
          fault: error ? (event.fault ?? (event.errorKind === 'failed' ? 'lab' : 'customer')) : null,
          settledBy: null,
        };
      }
      if (state !== before) {
        await tx.run(
          'UPDATE deployments SET status = ?, message = ?, error_kind = ?, checksum = ?, phase = ?, progress = ?, finished_at = ?, detail = ?, fault = ?, settled_by = NULL WHERE id = ?',
          [
            state.status,
            state.message,
            state.errorKind,
            state.checksum,
            state.phase,
            progressOf(state.progress),
            state.finishedAt,
            state.detail,
            state.fault,
            id,
          ],
        );
        // Its next netboot: the deployed disk once done, rescue after an error.
        if (state.status !== 'doing' && !before.erased)
          await setRescue(tx, before.serviceName, state.status === 'error');
      }
      return (await deploymentWhere(tx, 'id = ?', [id]))!;
    });
  }

  async steps(id: number): Promise<Step[]> {
    const rows = await this.db.all<{ phase: string; comment: string; started_at: string }>(
      'SELECT phase, comment, started_at FROM steps WHERE deployment_id = ? ORDER BY n',
      [id],
    );
    return rows.map((r) => ({ phase: phaseNameOf(r.phase), comment: r.comment, startedAt: r.started_at }));
  }

  async erase(serviceName: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      await lockServer(tx, serviceName); // first: its updates then see any create committed before it
      const at = now();
      await tx.run(
        "UPDATE deployments SET cancelled = 1, finished_at = ? WHERE service_name = ? AND erased = 0 AND status = 'doing'",
        [at, serviceName],
      );
      await tx.run('UPDATE deployments SET erased = 1, erased_at = coalesce(erased_at, ?) WHERE service_name = ?', [
        at,
        serviceName,
      ]);
      await setRescue(tx, serviceName, true);
    });
  }

  async inRescue(serviceName: string): Promise<boolean> {
    const row = await this.db.get<{ rescue: number | string }>('SELECT rescue FROM servers WHERE service_name = ?', [
      serviceName,
    ]);
    return row !== undefined && Number(row.rescue) === 1;
  }

  expireSilent(cutoff: string, message: string): Promise<Deployment[]> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.all<Row>(
        `SELECT ${columns} FROM deployments WHERE status = 'doing' AND erased = 0 AND heard_at < ?`,
        [cutoff],
      );
      const ended: Deployment[] = [];
      for (const deployment of rows.map(toDeployment)) {
        // Guarded again: the agent may have been heard since the SELECT (another connection, another replica).
        if (await settle(tx, deployment, message, 'watchdog', 'AND heard_at < ?', [cutoff]))
          ended.push((await deploymentWhere(tx, 'id = ?', [deployment.id]))!);
      }
      return ended;
    });
  }

  netboot(serviceName: string, tokenHash: string, maxBoots: number, lostMessage: string): Promise<NetbootState> {
    return this.db.transaction(async (tx): Promise<NetbootState> => {
      const current = await currentOf(tx, serviceName);
      if (current?.status === 'doing') {
        if (current.boots >= maxBoots) {
          await settle(tx, current, lostMessage, 'netboot', '', []);
          return { boot: 'rescue' };
        }
        await tx.run('UPDATE deployments SET token_hash = ?, boots = boots + 1, heard_at = ? WHERE id = ?', [
          tokenHash,
          now(),
          current.id,
        ]);
        return { boot: 'deploy', deployment: (await deploymentWhere(tx, 'id = ?', [current.id]))! };
      }
      const row = await tx.get<{ rescue: number | string }>('SELECT rescue FROM servers WHERE service_name = ?', [
        serviceName,
      ]);
      return row !== undefined && Number(row.rescue) === 1 ? { boot: 'rescue' } : { boot: 'disk' };
    });
  }

  async reportDisks(serviceName: string, report: unknown): Promise<void> {
    await this.db.run(
      'INSERT INTO server_disks (service_name, report, reported_at) VALUES (?, ?, ?) ON CONFLICT (service_name) DO UPDATE SET report = excluded.report, reported_at = excluded.reported_at',
      [serviceName, JSON.stringify(report), now()],
    );
  }

  async disks(serviceName: string): Promise<DisksReport | undefined> {
    const row = await this.db.get<{ report: string; reported_at: string }>(
      'SELECT report, reported_at FROM server_disks WHERE service_name = ?',
      [serviceName],
    );
    return row && { report: JSON.parse(row.report), reportedAt: row.reported_at };
  }

  get sql(): Database {
    return this.db;
  }

  close(): Promise<void> {
    return this.db.close();
  }
}
