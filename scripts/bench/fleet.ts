// npm run bench -- --only fleet [--fleet-agents 1000 --fleet-customers 100 --fleet-seconds 20]
// A fleet deploying at once against the provisioning API: every server gets a deployment (customers'
// POSTs), then each simulated agent (the real agent's HTTP client, agent/remote/client.ts) takes its job,
// reports progress twice a second and ends with done, while customers poll GET bringYourOwnImage once a
// second each. Run against one replica over SQLite, one over PostgreSQL, and three over PostgreSQL
// behind a round-robin proxy, the second of which is killed (SIGKILL) half-way: its agents' retries
// land on the others. After each run the database is read back: what the API acknowledged to an agent
// (200) must be there, its phases as steps and its done as the outcome, or the run counts it lost. An
// agent that gave up retrying (the API too slow for its deadline) is counted apart.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { AgentClient } from '../../agent/remote/client.ts';
import type { AgentEvent } from '../../lib/api/store/types.ts';
import { openStore } from '../../lib/api/store/open.ts';
import { SecretBox } from '../../lib/api/store/secret-box.ts';
import { startPostgres, type TestPostgres } from '../../test/helpers/postgres.ts';
import { startProxy, type Proxy } from './round-robin-proxy.ts';

export interface FleetOptions {
  readonly agents: number;
  readonly customers: number;
  /** How long each agent reports progress before it is done. */
  readonly seconds: number;
}

interface Scenario {
  readonly name: string;
  readonly database: 'sqlite' | 'postgres';
  readonly replicas: number;
  /** Kill this replica (index) half-way through the agents' reports. */
  readonly kill?: number;
}

const scenarios: Scenario[] = [
  { name: 'SQLite, 1 replica', database: 'sqlite', replicas: 1 },
  { name: 'PostgreSQL, 1 replica', database: 'postgres', replicas: 1 },
  { name: 'PostgreSQL, 3 replicas + proxy, 1 killed', database: 'postgres', replicas: 3, kill: 1 },
];

/** Strong enough for byoi serve's check (32+ random-looking characters). */
const CUSTOMER_KEY = 'fleet-bench-4f9c2a7e1b8d3065c7a9e2f41d6b8c03';
const PROGRESS_EVERY_MS = 500;
const POLL_EVERY_MS = 1000;
const RETRY_AFTER_MS = 250;
const replicaScript = fileURLToPath(new URL('./fleet-replica.ts', import.meta.url));

interface Replica {
  readonly url: string;
  readonly process: ChildProcess;
  peakRssBytes: number;
}

function startReplica(location: string, config: string, tokens: string): Promise<Replica> {
  const child = spawn(process.execPath, [replicaScript, location, config, tokens], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on (\S+)/.exec(out);
      if (match) resolve({ url: match[1]!, process: child, peakRssBytes: 0 });
    });
    child.once('exit', (code) => reject(new Error(`a replica exited ${code} before listening`)));
  });
}

function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0; // gone
  }
}

const percentile = (sorted: number[], p: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]! : NaN;

interface Stats {
  eventLatencies: number[];
  getLatencies: number[];
  eventRetries: number;
  eventRefused: number;
  getErrors: number;
  postErrors: number;
  /** Agents that gave up or never got their job. */
  agentFailures: number;
  /** Why the first agent or POST failed, to print below the table. */
  firstFailure?: string;
}

/** What the API acknowledged to one agent. */
interface Acknowledged {
  readonly phases: Set<string>;
  done: boolean;
}

/** One agent: take the job, report progress, end with done; every report retried until delivered. */
async function playAgent(
  url: string,
  serviceName: string,
  token: string,
  reports: number,
  stats: Stats,
  deadline: number,
  acked: Acknowledged,
): Promise<void> {
  const client = new AgentClient({ server: url, serviceName, token });
  while ((await client.fetchJob()) === 'retry') {
    if (Date.now() > deadline) throw new Error('no job');
    await sleep(RETRY_AFTER_MS);
  }
  const deliver = async (event: AgentEvent) => {
    for (;;) {
      const started = performance.now();
      const delivery = await client.postEvents([event]);
      if (delivery === 'delivered') {
        stats.eventLatencies.push(performance.now() - started);
        acked.phases.add(event.phase!);
        acked.done ||= event.status === 'done';
        return;
      }
      if (delivery === 'refused' || Date.now() > deadline) {
        stats.eventRefused++;
        throw new Error(`${serviceName}: events ${delivery}`);
      }
      stats.eventRetries++;
      await sleep(RETRY_AFTER_MS);
    }
  };
  const total = 8 * 1024 ** 3;
  for (let i = 0; i < reports; i++) {
    const phase = i < reports / 2 ? 'download' : 'write';
    const done = Math.round((total * (i + 1)) / reports);
    await deliver({
      status: 'doing',
      phase,
      message: phase === 'download' ? 'Downloading the image' : 'Writing the image',
      progress: { done, total, bytesPerSecond: 500e6 },
      at: new Date().toISOString(),
    });
    await sleep(PROGRESS_EVERY_MS);
  }
  await deliver({ status: 'done', phase: 'done', message: 'Deployed', at: new Date().toISOString() });
}

async function pollAsCustomer(url: string, servers: string[], stats: Stats, until: { done: boolean }): Promise<void> {
  await sleep(Math.random() * POLL_EVERY_MS);
  while (!until.done) {
    const server = servers[Math.floor(Math.random() * servers.length)]!;
    const started = performance.now();
    try {
      const response = await fetch(`${url}/dedicated/server/${server}/bringYourOwnImage`, {
        headers: { authorization: `Bearer ${CUSTOMER_KEY}` },
      });
      await response.arrayBuffer();
      if (response.status === 200) stats.getLatencies.push(performance.now() - started);
      else stats.getErrors++;
    } catch {
      stats.getErrors++;
    }
    await sleep(POLL_EVERY_MS);
  }
}

/** Runs `work` on each item, `width` at a time. */
async function inParallel<T>(items: readonly T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < items.length) await work(items[next++]!);
    }),
  );
}

async function runScenario(scenario: Scenario, options: FleetOptions, location: string, dir: string): Promise<string> {
  const servers = Array.from({ length: options.agents }, (_, i) => `fleet-${String(i + 1).padStart(5, '0')}.bench`);
  const config = join(dir, 'config.json');
  // One key file for every replica: each seals job bodies the others must open.
  const keyFile = join(dir, 'bodies.key');
  SecretBox.fromKeyFile(keyFile);
  writeFileSync(
    config,
    JSON.stringify({
      secretsKeyFile: keyFile,
      servers: servers.map((serviceName) => ({ serviceName, apiKeys: [CUSTOMER_KEY] })),
    }),
  );
  const tokens = join(dir, `tokens-${scenario.replicas}-${scenario.database}`);
  mkdirSync(tokens, { mode: 0o700 });

  // Replicas start at once: on PostgreSQL they race for the migrations, as a fleet's would.
  const replicas = await Promise.all(
    Array.from({ length: scenario.replicas }, () => startReplica(location, config, tokens)),
  );
  const sampler = setInterval(() => {
    for (const replica of replicas)
      replica.peakRssBytes = Math.max(replica.peakRssBytes, rssBytes(replica.process.pid!));
  }, 250);
  let proxy: Proxy | undefined;
  try {
    proxy = replicas.length > 1 ? await startProxy(replicas.map((r) => r.url)) : undefined;
    const front = proxy?.url ?? replicas[0]!.url;
    const stats: Stats = {
      eventLatencies: [],
      getLatencies: [],
      eventRetries: 0,
      eventRefused: 0,
      getErrors: 0,
      postErrors: 0,
      agentFailures: 0,
    };

    const postStart = performance.now();
    const body = {
      URL: 'https://images.bench/debian-12.qcow2',
      type: 'qcow2',
      checkSum: 'a'.repeat(64),
      checkSumType: 'sha256',
      configdrive: { enable: true, hostname: 'fleet' },
    };
    await inParallel(servers, 50, async (server) => {
      const response = await fetch(`${front}/dedicated/server/${server}/bringYourOwnImage`, {
        method: 'POST',
        headers: { authorization: `Bearer ${CUSTOMER_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const answer = await response.text();
      if (response.status !== 200) {
        stats.postErrors++;
        stats.firstFailure ??= `POST ${server}: HTTP ${response.status} ${answer.slice(0, 200)}`;
      }
    });
    const postSeconds = (performance.now() - postStart) / 1000;

    const reports = options.seconds * (1000 / PROGRESS_EVERY_MS);
    const deadline = Date.now() + options.seconds * 1000 * 4 + 120_000;
    const polling = { done: false };
    const customers = Array.from({ length: options.customers }, () => pollAsCustomer(front, servers, stats, polling));
    const killer =
      scenario.kill === undefined
        ? undefined
        : sleep((options.seconds * 1000) / 2).then(() => replicas[scenario.kill!]!.process.kill('SIGKILL'));
    const acknowledged = new Map(
      servers.map((server) => [server, { phases: new Set<string>(), done: false } as Acknowledged]),
    );
    const agentsStart = performance.now();
    await Promise.all(
      servers.map(async (server, i) => {
        await sleep((i / servers.length) * PROGRESS_EVERY_MS); // agents boot at different moments
        try {
          await playAgent(
            front,
            server,
            readFileSync(join(tokens, server), 'utf8'),
            reports,
            stats,
            deadline,
            acknowledged.get(server)!,
          );
        } catch (error) {
          stats.agentFailures++;
          stats.firstFailure ??= `${server}: ${String(error)}`;
        }
      }),
    );
    const agentSeconds = (performance.now() - agentsStart) / 1000;
    polling.done = true;
    await Promise.all(customers);
    await killer;

    // The database's own account: every deployment done, every reported phase a step.
    const store = await openStore(location, { keyFile });
    let lost = 0;
    try {
      for (const server of servers) {
        const deployment = await store.current(server);
        const steps: string[] = deployment ? (await store.steps(deployment.id)).map((s) => s.phase) : [];
        const acked = acknowledged.get(server)!;
        if ((acked.done && deployment?.status !== 'done') || [...acked.phases].some((phase) => !steps.includes(phase)))
          lost++;
      }
    } finally {
      await store.close();
    }

    const events = stats.eventLatencies.sort((a, b) => a - b);
    const gets = stats.getLatencies.sort((a, b) => a - b);
    const rss = replicas
      .map((r, i) => `${(r.peakRssBytes / 1024 ** 2).toFixed(0)}${i === scenario.kill ? ' (killed)' : ''}`)
      .join(' / ');
    const ms = (v: number) => v.toFixed(1);
    return (
      `| ${scenario.name} | ${(servers.length / postSeconds).toFixed(0)} | ${(events.length / agentSeconds).toFixed(0)} | ${ms(percentile(events, 50))} | ${ms(percentile(events, 99))} | ` +
      `${(gets.length / agentSeconds).toFixed(0)} | ${ms(percentile(gets, 50))} | ${ms(percentile(gets, 99))} | ` +
      `${stats.postErrors} / ${stats.eventRetries} / ${stats.getErrors} / ${stats.agentFailures} | ${lost} | ${rss} |` +
      (stats.firstFailure ? `\n(first agent failure: ${stats.firstFailure})` : '')
    );
  } finally {
    clearInterval(sampler);
    await proxy?.close();
    await Promise.all(
      replicas.map((r) =>
        r.process.exitCode !== null || r.process.signalCode !== null
          ? undefined
          : new Promise<void>((resolve) => {
              r.process.once('exit', () => resolve());
              r.process.kill('SIGTERM');
            }),
      ),
    );
  }
}

export async function benchFleet(options: FleetOptions): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-bench-fleet-'));
  let cluster: TestPostgres | undefined;
  try {
    console.log(
      `fleet: ${options.agents} agents reporting every ${PROGRESS_EVERY_MS} ms for ${options.seconds} s then done, ${options.customers} customers polling GET every ${POLL_EVERY_MS} ms; ` +
        `PostgreSQL 15: a local cluster with default settings (an fsync per commit) on a Unix socket; SQLite: byoi's settings (WAL, synchronous=NORMAL: no fsync per commit) on the same disk; load average at start ${loadavg()
          .map((l) => l.toFixed(1))
          .join(' ')}`,
    );
    console.log(
      '| setup | POST/s | events/s | event p50 ms | event p99 ms | GET/s | GET p50 ms | GET p99 ms | errors: POST / event retries / GET / agents gave up | acknowledged but lost | peak RSS MiB per replica |',
    );
    console.log('|---|---|---|---|---|---|---|---|---|---|---|');
    let n = 0;
    for (const scenario of scenarios) {
      let location: string;
      if (scenario.database === 'sqlite') location = join(dir, `fleet-${++n}.sqlite`);
      else {
        cluster ??= await startPostgres({ maxConnections: 200, durable: true });
        location = await cluster.createDatabase(`fleet_${++n}`);
      }
      console.log(await runScenario(scenario, options, location, dir));
    }
  } finally {
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
