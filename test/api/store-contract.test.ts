// The store's contract, run against every database behind it: the embedded SQLite file and a real
// PostgreSQL server (a throwaway cluster, test/helpers/postgres.ts). Two stores opened on the same
// database stand for two `byoi serve` replicas: each has its own connections.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase, openStore as openStoreWithKey } from '../../lib/api/store/open.ts';
import { SecretBox } from '../../lib/api/store/secret-box.ts';
import { SqlAuthFailures } from '../../lib/api/store/auth-failures-store.ts';
import type { AgentEvent, Deployment, NewDeployment, Store } from '../../lib/api/store/types.ts';
import type { PhaseName } from '../../lib/report/phases.ts';
import { migrations } from '../../lib/api/store/migrations.ts';
import { skipWithoutPostgres, startPostgres, type TestPostgres } from '../helpers/postgres.ts';

interface Backend {
  readonly name: string;
  readonly skip: boolean;
  /** Set up once; answers a fresh, empty database's location. */
  freshDatabase(): Promise<string>;
  teardown(): Promise<void>;
}

const dir = mkdtempSync(join(tmpdir(), 'byoi-store-contract-'));
// Every replica seals job bodies with the same key, as a fleet's must.
const keyFile = join(dir, 'bodies.key');
SecretBox.fromKeyFile(keyFile);
const openStore = (location: string) => openStoreWithKey(location, { keyFile });
let databases = 0;
let cluster: TestPostgres | undefined;

const backends: Backend[] = [
  {
    name: 'SQLite',
    skip: false,
    freshDatabase: async () => join(dir, `store-${++databases}.sqlite`),
    teardown: async () => {},
  },
  {
    name: 'PostgreSQL',
    skip: skipWithoutPostgres,
    freshDatabase: async () => {
      cluster ??= await startPostgres();
      return cluster.createDatabase(`store_${++databases}`);
    },
    teardown: async () => cluster?.stop(),
  },
];

afterAll(() => rmSync(dir, { recursive: true, force: true }));

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

const at = () => new Date().toISOString();
const doing = (phase: PhaseName, message: string, extra: Partial<AgentEvent> = {}): AgentEvent => ({
  status: 'doing',
  phase,
  message,
  at: at(),
  ...extra,
});
const done: AgentEvent = { status: 'done', message: 'Deployed', phase: 'done' };

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
    other = await openStore(location);
  });

  afterAll(async () => {
    if (backend.skip) return;
    await store?.close();
    await other?.close();
    await backend.teardown();
  });

  it.skipIf(backend.skip)(
    'creates a deployment: doing, at its boot step, its body kept apart and readable by every replica',
    async () => {
      const serviceName = newServer();
      const input = deploymentOf(serviceName, { kind: 'reinstall' });
      const created = await store.create(input);
      expect(created).toMatchObject({
        serviceName,
        kind: 'reinstall',
        status: 'doing',
        message: input.message,
        errorKind: null,
        checksum: null,
        phase: 'boot',
        progress: null,
        jobTakenAt: null,
        finishedAt: null,
        erased: false,
        detail: null,
        fault: null,
        cancelled: false,
        boots: 0,
        settledBy: null,
      });
      const deployment = created as Deployment;
      expect(typeof deployment.id).toBe('number');
      expect(deployment.heardAt).toBe(deployment.startedAt);
      expect(await other.jobBody(deployment.id)).toEqual(input.body);
      expect(await store.jobBody(deployment.id + 1_000_000)).toBeUndefined();
      expect(await other.steps(deployment.id)).toEqual([
        { phase: 'boot', comment: input.message, startedAt: deployment.startedAt },
      ]);
    },
  );

  it.skipIf(backend.skip)(
    'refuses a second deployment while one is doing, and allows one after it ends or is erased',
    async () => {
      const serviceName = newServer();
      const first = await started(store, serviceName);
      expect(await store.create(deploymentOf(serviceName))).toBe('conflict');
      expect(await other.create(deploymentOf(serviceName))).toBe('conflict');
      await started(store); // another server is not held up
      await store.record(first.id, [done]);
      const second = await started(other, serviceName);
      expect(second.id).toBeGreaterThan(first.id);
      await store.erase(serviceName);
      await started(store, serviceName);
    },
  );

  it.skipIf(backend.skip)("finds a deployment by id, by token hash and as its server's current one", async () => {
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
    await store.record(first.id, [{ status: 'error', message: 'Could not download', errorKind: 'failed' }]);
    const second = await started(store, serviceName);
    expect((await store.current(serviceName))?.id).toBe(second.id);
    await other.erase(serviceName);
    expect(await store.current(serviceName)).toBeUndefined();
    expect(await store.byId(first.id)).toMatchObject({ erased: true, status: 'error', cancelled: false });
    expect(await store.byId(second.id)).toMatchObject({ erased: true, cancelled: true });
  });

  it.skipIf(backend.skip)('marks the job taken once, and the agent heard', async () => {
    const deployment = await started(store);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await store.markJobTaken(deployment.id);
    const taken = (await store.byId(deployment.id))!;
    expect(taken.jobTakenAt).not.toBeNull();
    expect(taken.heardAt > deployment.heardAt).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 5));
    await other.markJobTaken(deployment.id);
    expect((await store.byId(deployment.id))!.jobTakenAt).toBe(taken.jobTakenAt);
  });

  it.skipIf(backend.skip)(
    'records events in order: a step per new phase, progress, checksum, the final status',
    async () => {
      const deployment = await started(store);
      const progress = { done: 512, total: 2048, bytesPerSecond: 1e6 };
      let after = await store.record(deployment.id, [
        doing('download', 'Downloading'),
        doing('download', 'Downloading', { progress }),
        doing('write', 'Writing', { checksum: 'sha256:ab' }),
      ]);
      expect(after).toMatchObject({
        status: 'doing',
        phase: 'write',
        message: 'Writing',
        checksum: 'sha256:ab',
        progress: null,
        finishedAt: null,
      });
      after = await other.record(deployment.id, [doing('write', 'Writing', { progress })]);
      expect(after).toMatchObject({ progress, checksum: 'sha256:ab' });
      after = await store.record(deployment.id, [done]);
      expect(after).toMatchObject({ status: 'done', message: 'Deployed', errorKind: null, phase: 'done', fault: null });
      expect(after.finishedAt).not.toBeNull();
      expect(await store.inRescue(deployment.serviceName)).toBe(false);
      const steps = await store.steps(deployment.id);
      expect(steps.map((s) => [s.phase, s.comment])).toEqual([
        ['boot', 'Booting the server on the deployment agent'],
        ['download', 'Downloading'],
        ['write', 'Writing'],
        ['done', 'Deployed'],
      ]);
      expect(steps.every((s, i) => i === 0 || s.startedAt >= steps[i - 1]!.startedAt)).toBe(true);
    },
  );

  it.skipIf(backend.skip)(
    'never overwrites a final status: later events are ignored; an error sends the server to rescue',
    async () => {
      const deployment = await started(store);
      const after = await store.record(deployment.id, [
        {
          status: 'error',
          message: 'Bad sha256 for downloaded file',
          errorKind: 'refused-image',
          phase: 'download',
          detail: 'got ab',
        },
        doing('write', 'Writing'),
      ]);
      expect(after).toMatchObject({
        status: 'error',
        errorKind: 'refused-image',
        phase: 'download',
        detail: 'got ab',
        fault: 'customer',
      });
      expect(await other.record(deployment.id, [done])).toMatchObject({ status: 'error' });
      expect((await store.steps(deployment.id)).map((s) => s.phase)).toEqual(['boot', 'download']);
      expect(await store.inRescue(deployment.serviceName)).toBe(true);
    },
  );

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

  it.skipIf(backend.skip)('forgets job bodies finished or erased before a date, and only those', async () => {
    const finished = await started(store);
    await store.record(finished.id, [done]);
    const running = await started(store);
    const erased = await started(store);
    await store.erase(erased.serviceName);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await other.pruneJobBodies('2000-01-01T00:00:00.000Z')).toBe(0);
    expect(await other.pruneJobBodies(at())).toBeGreaterThanOrEqual(2);
    expect(await store.jobBody(finished.id)).toBeUndefined();
    expect(await store.jobBody(erased.id)).toBeUndefined();
    expect(await store.jobBody(running.id)).toBeDefined();
  });

  it.skipIf(backend.skip)(
    "the watchdog ends silent deployments once, even run by two replicas at once; the agent's later outcome wins",
    async () => {
      const silent = await started(store);
      const heard = await started(store);
      await new Promise((resolve) => setTimeout(resolve, 5));
      const cutoff = at();
      await store.record(heard.id, []); // a heartbeat
      const rounds = await Promise.all([
        store.expireSilent(cutoff, 'The agent went silent'),
        other.expireSilent(cutoff, 'The agent went silent'),
      ]);
      const ended = rounds.flat().filter((d) => d.id === silent.id || d.id === heard.id);
      expect(ended.map((d) => d.id)).toEqual([silent.id]);
      expect(ended[0]).toMatchObject({
        status: 'error',
        message: 'The agent went silent',
        errorKind: 'failed',
        fault: 'lab',
        settledBy: 'watchdog',
      });
      expect(await store.byId(heard.id)).toMatchObject({ status: 'doing' });
      expect(await store.inRescue(silent.serviceName)).toBe(true);
      expect(await other.record(silent.id, [done])).toMatchObject({ status: 'done', settledBy: null });
    },
  );

  it.skipIf(backend.skip)(
    'a netboot gives a doing deployment a fresh token, until it has had its boots; then rescue, else the disk',
    async () => {
      const deployment = await started(store);
      const first = await store.netboot(deployment.serviceName, 'fresh-hash-1', 2, 'Lost');
      expect(first).toMatchObject({ boot: 'deploy', deployment: { id: deployment.id, boots: 1 } });
      expect(await other.byTokenHash('fresh-hash-1')).toMatchObject({ id: deployment.id });
      await other.netboot(deployment.serviceName, 'fresh-hash-2', 2, 'Lost');
      expect(await store.netboot(deployment.serviceName, 'fresh-hash-3', 2, 'Lost')).toEqual({ boot: 'rescue' });
      expect(await store.byId(deployment.id)).toMatchObject({ status: 'error', message: 'Lost', settledBy: 'netboot' });
      const deployed = await started(store);
      await store.record(deployed.id, [done]);
      expect(await other.netboot(deployed.serviceName, 'unused', 2, 'Lost')).toEqual({ boot: 'disk' });
    },
  );

  it.skipIf(backend.skip)('keeps the disks an agent reported, the latest report winning', async () => {
    const serviceName = newServer();
    expect(await store.disks(serviceName)).toBeUndefined();
    await store.reportDisks(serviceName, { disks: [{ name: 'sda', size: 1 }] });
    await other.reportDisks(serviceName, { disks: [{ name: 'nvme0n1', size: 2 }] });
    expect(await store.disks(serviceName)).toMatchObject({ report: { disks: [{ name: 'nvme0n1', size: 2 }] } });
  });

  it.skipIf(backend.skip)(
    'two replicas creating on the same servers at once: exactly one wins each server',
    async () => {
      const names = Array.from({ length: 20 }, () => newServer());
      const results = await Promise.all(
        names.flatMap((name) => [store.create(deploymentOf(name)), other.create(deploymentOf(name))]),
      );
      for (let i = 0; i < names.length; i++) {
        const pair = [results[2 * i], results[2 * i + 1]];
        expect(pair.filter((r) => r === 'conflict')).toHaveLength(1);
        expect((await store.current(names[i]!))?.id).toBe((pair.find((r) => r !== 'conflict') as Deployment).id);
      }
    },
  );

  it.skipIf(backend.skip)(
    'create and erase racing on one server leave it consistent: rescue exactly when it has no current deployment',
    async () => {
      const names = Array.from({ length: 20 }, () => newServer());
      await Promise.all(names.map((name) => started(store, name).then((d) => store.record(d.id, [done]))));
      await Promise.all(names.flatMap((name) => [store.create(deploymentOf(name)), other.erase(name)]));
      for (const name of names) {
        expect(await store.inRescue(name)).toBe((await store.current(name)) === undefined);
      }
    },
  );

  it.skipIf(backend.skip)(
    "one agent's events recorded by two replicas at once: steps numbered once, the final status kept",
    async () => {
      const phases: PhaseName[] = ['download', 'verify', 'inspect', 'write', 'partitions', 'configdrive'];
      // Several deployments at once, each agent's phases delivered through both replicas concurrently.
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          const deployment = await started(store);
          await Promise.all(
            phases.map((phase, i) =>
              (i % 2 ? other : store).record(deployment.id, [
                doing(phase, `step ${phase}`),
                doing(phase, `step ${phase}`, { progress: { done: i, total: 10, bytesPerSecond: 1 } }),
              ]),
            ),
          );
          const [doneHere, doneThere] = await Promise.all([
            store.record(deployment.id, [done]),
            other.record(deployment.id, [doing('release', 'a retried old event')]),
          ]);
          // In either order the outcome is final; the late event counts only if it came first.
          expect(doneHere.status).toBe('done');
          expect(await store.byId(deployment.id)).toMatchObject({ status: 'done' });
          const late = doneThere.status === 'doing' ? ['release'] : [];
          const steps = await store.steps(deployment.id);
          expect(steps.map((s) => s.phase).sort()).toEqual(['boot', ...phases, ...late, 'done'].sort());
        }),
      );
    },
  );

  it.skipIf(backend.skip)(
    'migrates once: replicas starting at once on an empty database all open it, each migration applied once',
    async () => {
      const fresh = await backend.freshDatabase();
      const replicas = await Promise.all([openStore(fresh), openStore(fresh), openStore(fresh)]);
      await Promise.all(replicas.map((replica) => replica.close()));
      const reopened = await openStore(fresh); // nothing left to apply
      await reopened.close();
      const db = await openDatabase(fresh);
      try {
        const rows = await db.all<{ id: number }>('SELECT id FROM schema_migrations ORDER BY id');
        expect(rows.map((r) => Number(r.id))).toEqual(migrations.map((m) => m.id).sort((a, b) => a - b));
      } finally {
        await db.close();
      }
    },
  );

  it.skipIf(backend.skip)(
    'counts failed authentications per client across replicas, none lost, each window on its own',
    async () => {
      const db = await openDatabase(location);
      const db2 = await openDatabase(location);
      let clock = 1_000_000;
      const limits = { maxFailures: 30, windowMs: 60_000 };
      const [here, there] = [
        new SqlAuthFailures(db, limits, () => clock),
        new SqlAuthFailures(db2, limits, () => clock),
      ];
      try {
        const client = `192.0.2.${++servers % 250}`;
        await Promise.all(Array.from({ length: 29 }, (_, i) => (i % 2 ? here : there).failed(client)));
        expect(await there.limited(client)).toBe(false);
        await here.failed(client);
        expect(await there.limited(client)).toBe(true);
        expect(await here.limited('198.51.100.7')).toBe(false);
        // IPv6 clients count by their /64.
        for (let i = 0; i < 30; i++) await there.failed(`2001:db8:0:${servers}::${i + 1}`);
        expect(await here.limited(`2001:db8:0:${servers}::ffff`)).toBe(true);
        clock += limits.windowMs; // the window is over
        expect(await here.limited(client)).toBe(false);
        await there.failed(client);
        expect(await here.limited(client)).toBe(false);
      } finally {
        await db.close();
        await db2.close();
      }
    },
  );

  it.skipIf(backend.skip)('holds one doing deployment per server in the schema itself', async () => {
    const deployment = await started(store);
    const db = await openDatabase(location);
    try {
      await expect(
        db.run(
          "INSERT INTO deployments (service_name, kind, token_hash, status, message, phase, started_at) VALUES (?, 'reinstall', ?, 'doing', 'm', 'boot', ?)",
          [deployment.serviceName, 'another-hash', at()],
        ),
      ).rejects.toThrow(/unique/i);
    } finally {
      await db.close();
    }
  });
});
