// npm run bench:api [-- --agents 200 --customers 20 --seconds 10 --big 20]: byoi serve under load, not a test.
// Every agent reports progress twice a second while customers poll their server's status; printed:
// p50/p99 latency of the customers' GET, events recorded per second, and the agents' POST latency,
// for small jobs and with `--big` of the servers deploying a job that carries 10 MiB of user data (so
// that the database stays a few hundred MiB). The API runs in its own process.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    agents: { type: 'string', default: '200' },
    customers: { type: 'string', default: '20' },
    seconds: { type: 'string', default: '10' },
    'poll-ms': { type: 'string', default: '200' },
    big: { type: 'string', default: '20' },
  },
});
const agents = Number(values.agents);
const customers = Number(values.customers);
const seconds = Number(values.seconds);
const pollMs = Number(values['poll-ms']);
const big = Math.min(agents, Number(values.big));
const REPORT_MS = 500;
const MiB = 1024 * 1024;

interface Started {
  readonly url: string;
  readonly tokens: Map<string, string>;
  readonly child: ChildProcess;
}

async function startServer(dir: string, names: string[], key: string): Promise<Started> {
  const config = { servers: names.map((serviceName) => ({ serviceName, apiKeys: [key] })) };
  const child = fork(fileURLToPath(new URL('./api-server.ts', import.meta.url)), [join(dir, 'load.sqlite')], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  });
  child.send(config);
  const tokens = new Map<string, string>();
  const url = await new Promise<string>((resolve, reject) => {
    child.on('message', (m: { url?: string; serviceName?: string; token?: string }) => {
      if (m.url) resolve(m.url);
      if (m.serviceName && m.token) tokens.set(m.serviceName, m.token);
    });
    child.once('exit', (code) => reject(new Error(`the API exited ${code}`)));
  });
  return { url, tokens, child };
}

function percentile(sorted: number[], p: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function timed(request: () => Promise<Response>): Promise<{ ms: number; ok: boolean }> {
  const start = performance.now();
  try {
    const response = await request();
    await response.arrayBuffer();
    return { ms: performance.now() - start, ok: response.status === 200 };
  } catch {
    return { ms: performance.now() - start, ok: false };
  }
}

async function scenario(label: string, userDataBytes: number): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'byoi-api-load-'));
  const key = randomBytes(24).toString('hex');
  const names = Array.from({ length: agents }, (_, i) => `ns${i}.load`);
  const server = await startServer(dir, names, key);
  try {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const small = JSON.stringify({ URL: 'https://images.example/disk.qcow2', type: 'qcow2' });
    const large = JSON.stringify({
      URL: 'https://images.example/disk.qcow2',
      type: 'qcow2',
      configdrive: { enable: true, userData: `#cloud-config\n# ${'x'.repeat(userDataBytes)}\n` },
    });
    for (const [i, name] of names.entries()) {
      const body = userDataBytes > 0 && i < big ? large : small;
      const response = await fetch(`${server.url}/dedicated/server/${name}/bringYourOwnImage`, {
        method: 'POST',
        headers: auth,
        body,
      });
      if (response.status !== 200) throw new Error(`POST ${name}: HTTP ${response.status} ${await response.text()}`);
    }
    while (server.tokens.size < agents) await new Promise((resolve) => setTimeout(resolve, 10));

    const gets: number[] = [];
    const posts: number[] = [];
    let events = 0;
    let failures = 0;
    const until = Date.now() + seconds * 1000;
    const agent = async (name: string, token: string) => {
      const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
      await new Promise((resolve) => setTimeout(resolve, Math.random() * REPORT_MS));
      for (let done = 0; Date.now() < until; done += MiB) {
        const next = Date.now() + REPORT_MS;
        const event = {
          status: 'doing',
          message: 'Writing image',
          phase: 'write',
          progress: { done, total: 10_000 * MiB, bytesPerSecond: 2 * MiB },
          at: new Date().toISOString(),
        };
        const result = await timed(() =>
          fetch(`${server.url}/agent/v1/servers/${name}/events`, {
            method: 'POST',
            headers,
            body: JSON.stringify({ events: [event] }),
          }),
        );
        posts.push(result.ms);
        if (result.ok) events++;
        else failures++;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
      }
    };
    const customer = async (i: number) => {
      await new Promise((resolve) => setTimeout(resolve, Math.random() * pollMs));
      for (let n = i; Date.now() < until; n += customers) {
        const next = Date.now() + pollMs;
        const result = await timed(() =>
          fetch(`${server.url}/dedicated/server/${names[n % agents]}/bringYourOwnImage`, { headers: auth }),
        );
        gets.push(result.ms);
        if (!result.ok) failures++;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())));
      }
    };
    const started = Date.now();
    await Promise.all([
      ...names.map((name) => agent(name, server.tokens.get(name)!)),
      ...Array.from({ length: customers }, (_, i) => customer(i)),
    ]);
    const elapsed = (Date.now() - started) / 1000;
    gets.sort((a, b) => a - b);
    posts.sort((a, b) => a - b);
    console.log(
      `| ${label} | ${agents} | ${customers} | ${percentile(gets, 50).toFixed(1)} | ${percentile(gets, 99).toFixed(1)} | ${(events / elapsed).toFixed(0)} | ${(agents * 1000) / REPORT_MS} | ${percentile(posts, 50).toFixed(1)} | ${percentile(posts, 99).toFixed(1)} | ${failures} |`,
    );
  } finally {
    server.child.disconnect();
    await new Promise((resolve) => server.child.once('exit', resolve));
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log(
  `byoi serve under load: ${agents} agents reporting every ${REPORT_MS} ms, ${customers} customers polling every ${pollMs} ms, ${seconds} s per case; latencies in ms; ${cpus().length} CPUs, load average ${loadavg()[0]!.toFixed(1)} at start`,
);
console.log(
  '| job | agents | customers | GET p50 | GET p99 | events/s | events/s offered | POST events p50 | POST events p99 | failed requests |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|');
await scenario('small', 0);
await scenario(`${big} of them 10 MiB userData`, 10 * MiB);
