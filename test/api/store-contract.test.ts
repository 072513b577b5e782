// The store's contract, run against every database behind it: the embedded SQLite file and a real
// PostgreSQL server (a throwaway cluster, test/helpers/postgres.ts). Two stores opened on the same
// database stand for two `byoi serve` replicas: each has its own connections.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, openStore } from '../../lib/api/store/open.ts';
import type { AgentEvent, Deployment, NewDeployment, Store } from '../../lib/api/store/types.ts';
import { migrations } from '../../lib/api/store/migrations.ts';
import { skipWithoutPostgres, startPostgres, type TestPostgres } from '../helpers/postgres.ts';

interface Backend {
  readonly name: string;
  readonly skip: boolean;
  /**
   * Whether two stores in one process stand for two replicas. SQLite is one process's database:
   * node:sqlite is synchronous, so a second connection waiting for the write lock would block the very
   * thread that must commit; its "other replica" is the same store, called concurrently.
   */
  readonly replicasInProcess: boolean;
  /** Set up once; answers a fresh, empty database's location. */
  freshDatabase(): Promise<string>;
  teardown(): Promise<void>;
}

const run = promisify(execFile);
const openModule = fileURLToPath(new URL('../../lib/api/store/open.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'byoi-store-contract-'));
let databases = 0;
let cluster: TestPostgres | undefined;

const backends: Backend[] = [
  {
    name: 'SQLite',
    skip: false,
    replicasInProcess: false,
    freshDatabase: async () => join(dir, `store-${++databases}.sqlite`),
    teardown: async () => rmSync(dir, { recursive: true, force: true }),
  },
  {
    name: 'PostgreSQL',
    skip: skipWithoutPostgres,
    replicasInProcess: true,
    freshDatabase: async () => {
      cluster ??= await startPostgres();
      return cluster.createDatabase(`store_${++databases}`);
    },
    teardown: async () => cluster?.stop(),
  },
];

let servers = 0;
/** A server name no other test uses. */
const newServer = () => `ns${++servers}.fleet`;

const deploymentOf = (serviceName: string, extra: Partial<NewDeployment> = {}): NewDeployment => ({
  serviceName,
  kind: 'bringYourOwnImage',
  body: { URL: 'https://images.lab/debian.qcow2', type: 'qcow2', configdrive: { enable: true, hostname: 'h' } },
  tokenHash: `hash-${serviceName}-${Math.random()}`,
  phase: 'boot',
  message: 'Booting the server on the deployment agent',
  ...extra,
});

const at = (ms = 0) => new Date(Date.UTC(2026, 0, 1) + ms).toISOString();
const doing = (phase: string, message: string, ms = 0, extra: Partial<AgentEvent> = {}): AgentEvent => ({ status: 'doing', phase, message, at: at(ms), ...extra });

async function started(store: Store, serviceName = newServer()): Promise<Deployment> {
  const created = await store.create(deploymentOf(serviceName));
  if (created === 'conflict') throw new Error(`${serviceName} conflicts`);
  return created;
}

describe.each(backends)('the store on $name', (backend) => {
  let location: string;
  let store: Store;
  /** A second replica over the same database. */
  let other: Store;

  beforeAll(async () => {
    if (backend.skip) return;
    location = await backend.freshDatabase();
    store = await openStore(location);
    other = backend.replicasInProcess ? await openStore(location) : store;
  });

  afterAll(async () => {
    if (backend.skip) return;
    await store?.close();
    if (other !== store) await other?.close();
    await backend.teardown();
  });

  it.skipIf(backend.skip)('creates a deployment: doing, at its boot step, its body kept as sent', async () => {
    const serviceName = newServer();
    const input = deploymentOf(serviceName, { kind: 'reinstall' });
    const created = await store.create(input);
    expect(created).toMatchObject({
      serviceName,
      kind: 'reinstall',
      body: input.body,
      status: 'doing',
      message: input.message,
      errorKind: null,
      checksum: null,
      phase: 'boot',
      progress: null,
      jobTakenAt: null,
      finishedAt: null,
      erased: false,
    });
    const deployment = created as Deployment;
    expect(typeof deployment.id).toBe('number');
    expect(Date.parse(deployment.startedAt)).not.toBeNaN();
    expect(await store.steps(deployment.id)).toEqual([{ phase: 'boot', comment: input.message, startedAt: deployment.startedAt }]);
  });

  it.skipIf(backend.skip)('refuses a second deployment while one is doing, and allows one after it ends or is erased', async () => {
    const serviceName = newServer();
    const first = await started(store, serviceName);
    expect(await store.create(deploymentOf(serviceName))).toBe('conflict');
    expect(await other.create(deploymentOf(serviceName))).toBe('conflict');
    await started(store); // another server is not held up
    await store.record(first.id, [{ status: 'done', message: 'Deployed', at: at() }]);
    const second = await started(other, serviceName);
    expect(second.id).toBeGreaterThan(first.id);
    await store.erase(serviceName);
    await started(store, serviceName);
  });

  it.skipIf(backend.skip)('finds a deployment by id, by token hash and as its server\'s current one', async () => {
    const serviceName = newServer();
    const input = deploymentOf(serviceName);
    const created = (await store.create(input)) as Deployment;
    expect(await other.byId(created.id)).toEqual(created);
    expect(await other.byTokenHash(input.tokenHash)).toEqual(created);
    expect(await other.current(serviceName)).toEqual(created);
    expect(await store.byId(created.id + 1_000_000)).toBeUndefined();
    expect(await store.byTokenHash('no-such-hash')).toBeUndefined();
    expect(await store.current(newServer())).toBeUndefined();
  });

  it.skipIf(backend.skip)('current is the latest deployment not erased', async () => {
    const serviceName = newServer();
    const first = await started(store, serviceName);
    await store.record(first.id, [{ status: 'error', message: 'Could not download', errorKind: 'failed', at: at() }]);
    const second = await started(store, serviceName);
    expect((await store.current(serviceName))?.id).toBe(second.id);
    await store.erase(serviceName);
    expect(await store.current(serviceName)).toBeUndefined();
    expect(await store.byId(first.id)).toMatchObject({ erased: true, status: 'error' });
    expect(await store.byId(second.id)).toMatchObject({ erased: true });
  });

  it.skipIf(backend.skip)('marks the job taken once: the first time stays', async () => {
    const deployment = await started(store);
    await store.markJobTaken(deployment.id);
    const taken = (await store.byId(deployment.id))!.jobTakenAt;
    expect(taken).not.toBeNull();
    await new Promise((resolve) => setTimeout(resolve, 5));
    await other.markJobTaken(deployment.id);
    expect((await store.byId(deployment.id))!.jobTakenAt).toBe(taken);
  });

  it.skipIf(backend.skip)('records events in order: a step per new phase, progress, checksum, the final status', async () => {
    const deployment = await started(store);
    const progress = { done: 512, total: 2048, bytesPerSecond: 1e6 };
    let after = await store.record(deployment.id, [
      doing('download', 'Downloading', 1),
      doing('download', 'Downloading', 2, { progress }),
      doing('write', 'Writing', 3, { checksum: 'sha256:ab' }),
    ]);
    expect(after).toMatchObject({ status: 'doing', phase: 'write', message: 'Writing', checksum: 'sha256:ab', progress: null, finishedAt: null });
    after = await other.record(deployment.id, [doing('write', 'Writing', 4, { progress })]);
    expect(after).toMatchObject({ progress, checksum: 'sha256:ab' });
    after = await store.record(deployment.id, [{ status: 'done', message: 'Deployed', phase: 'reboot', at: at(5) }]);
    expect(after).toMatchObject({ status: 'done', message: 'Deployed', errorKind: null, phase: 'reboot', finishedAt: at(5) });
    expect(await store.steps(deployment.id)).toEqual([
      { phase: 'boot', comment: 'Booting the server on the deployment agent', startedAt: deployment.startedAt },
      { phase: 'download', comment: 'Downloading', startedAt: at(1) },
      { phase: 'write', comment: 'Writing', startedAt: at(3) },
      { phase: 'reboot', comment: 'Deployed', startedAt: at(5) },
    ]);
  });

  it.skipIf(backend.skip)('never overwrites a final status: later events are ignored', async () => {
    const deployment = await started(store);
    const after = await store.record(deployment.id, [
      { status: 'error', message: 'Bad sha256 for downloaded file', errorKind: 'refused-image', phase: 'download', at: at(1) },
      doing('write', 'Writing', 2),
    ]);
    expect(after).toMatchObject({ status: 'error', errorKind: 'refused-image', phase: 'download', finishedAt: at(1) });
    expect(await other.record(deployment.id, [{ status: 'done', message: 'Deployed', at: at(3) }])).toMatchObject({ status: 'error' });
    expect((await store.steps(deployment.id)).map((s) => s.phase)).toEqual(['boot', 'download']);
  });

  it.skipIf(backend.skip)('refuses events for a deployment that does not exist', async () => {
    await expect(store.record(9_999_999, [doing('download', 'x')])).rejects.toThrow();
  });

  it.skipIf(backend.skip)('erase marks the server for rescue; a new deployment clears it', async () => {
    const serviceName = newServer();
    expect(await store.inRescue(serviceName)).toBe(false);
    await store.erase(serviceName); // a server never deployed may be erased too
    expect(await other.inRescue(serviceName)).toBe(true);
    await started(other, serviceName);
    expect(await store.inRescue(serviceName)).toBe(false);
    await store.erase(serviceName);
    expect(await store.inRescue(serviceName)).toBe(true);
  });

  it.skipIf(backend.skip)('two replicas creating on the same servers at once: exactly one wins each server', async () => {
    const names = Array.from({ length: 20 }, () => newServer());
    const results = await Promise.all(names.flatMap((name) => [store.create(deploymentOf(name)), other.create(deploymentOf(name))]));
    for (let i = 0; i < names.length; i++) {
      const pair = [results[2 * i], results[2 * i + 1]];
      expect(pair.filter((r) => r === 'conflict')).toHaveLength(1);
      expect((await store.current(names[i]!))?.id).toBe((pair.find((r) => r !== 'conflict') as Deployment).id);
    }
  });

  it.skipIf(backend.skip)('create and erase racing on one server leave it consistent: rescue exactly when it has no current deployment', async () => {
    const names = Array.from({ length: 20 }, () => newServer());
    await Promise.all(names.map((name) => started(store, name).then((d) => store.record(d.id, [{ status: 'done', message: 'Deployed', at: at() }]))));
    await Promise.all(names.flatMap((name) => [store.create(deploymentOf(name)), other.erase(name)]));
    for (const name of names) {
      expect(await store.inRescue(name)).toBe((await store.current(name)) === undefined);
    }
  });

  it.skipIf(backend.skip)('one agent\'s events recorded by two replicas at once: steps numbered once, the final status kept', async () => {
    const deployment = await started(store);
    const phases = ['download', 'verify', 'write', 'gpt', 'configdrive', 'reboot'];
    await Promise.all(
      phases.map((phase, i) => (i % 2 ? other : store).record(deployment.id, [doing(phase, `step ${phase}`, i + 1), doing(phase, `step ${phase}`, i + 1, { progress: { done: i, total: 10, bytesPerSecond: 1 } })])),
    );
    const [doneHere, doneThere] = await Promise.all([
      store.record(deployment.id, [{ status: 'done', message: 'Deployed', at: at(10) }]),
      other.record(deployment.id, [doing('late', 'a retried old event', 11)]),
    ]);
    // In either order the outcome is final; the late event counts only if it came first.
    expect(doneHere.status).toBe('done');
    expect(await store.byId(deployment.id)).toMatchObject({ status: 'done', finishedAt: at(10) });
    const late = doneThere.status === 'doing' ? ['late'] : [];
    const steps = await store.steps(deployment.id);
    expect(steps.map((s) => s.phase).sort()).toEqual(['boot', ...phases, ...late].sort());
  });

  it.skipIf(backend.skip)('migrates once: replicas starting at once on an empty database all open it, each migration applied once', async () => {
    const fresh = await backend.freshDatabase();
    if (backend.replicasInProcess) {
      // Three stores starting in the same instant: the tightest race.
      const replicas = await Promise.all([openStore(fresh), openStore(fresh), openStore(fresh)]);
      await Promise.all(replicas.map((replica) => replica.close()));
    } else {
      // Three processes, as three `byoi serve` would be.
      const open = `const { openStore } = await import(${JSON.stringify(openModule)}); await (await openStore(process.argv[1])).close();`;
      await Promise.all([1, 2, 3].map(() => run(process.execPath, ['--input-type=module', '-e', open, fresh])));
    }
    const reopened = await openStore(fresh); // nothing left to apply
    await reopened.close();
    const db = await openDatabase(fresh);
    try {
      const rows = await db.all<{ id: number }>('SELECT id FROM schema_migrations ORDER BY id');
      expect(rows.map((r) => Number(r.id))).toEqual(migrations.map((m) => m.id));
    } finally {
      await db.close();
    }
  });

  it.skipIf(backend.skip)('holds one doing deployment per server in the schema itself', async () => {
    const deployment = await started(store);
    const db = await openDatabase(location);
    try {
      await expect(
        db.run(
          "INSERT INTO deployments (service_name, kind, body, token_hash, status, message, phase, started_at) VALUES (?, 'reinstall', '{}', ?, 'doing', 'm', 'boot', ?)",
          [deployment.serviceName, 'another-hash', at()],
        ),
      ).rejects.toThrow(/unique/i);
    } finally {
      await db.close();
    }
  });
});
