// Static HTTP servers the download benchmark fetches from, each in its own process on 127.0.0.1:
// servers we did not write (Python's http.server, nginx when installed) and a plain Node server
// at several read sizes (what it writes per call: 16 KiB .. 1 MiB; 64 KiB is createReadStream's
// default). Each serves every file of one directory.
import { execa, type ResultPromise } from 'execa';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchServer {
  readonly name: string;
  /** The URL of `file` (a name in the served directory). */
  url(file: string): string;
  stop(): Promise<void>;
}

const KiB = 1024;
export const NODE_READ_SIZES = [16 * KiB, 64 * KiB, 256 * KiB, 1024 * KiB];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Waits until something accepts connections on the port (the server process is up). */
async function listening(port: number, child: ResultPromise): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode})`);
    const ok = await fetch(`http://127.0.0.1:${port}/`, { method: 'HEAD' }).then(
      () => true,
      () => false,
    );
    if (ok) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`nothing listens on ${port}`);
}

async function spawned(
  name: string,
  port: number,
  command: string,
  args: string[],
  cwd: string,
  cleanup = () => {},
): Promise<BenchServer> {
  const child = execa(command, args, { cwd, reject: false, stdio: 'ignore' });
  await listening(port, child);
  return {
    name,
    url: (file) => `http://127.0.0.1:${port}/${file}`,
    stop: async () => {
      child.kill();
      await child;
      cleanup();
    },
  };
}

const nodeServer = fileURLToPath(new URL('./static-server.ts', import.meta.url));

/** Starts every server over `dir`: Node at each read size, Debian's python3, nginx if there. */
export async function startServers(dir: string, node: string): Promise<BenchServer[]> {
  const servers: BenchServer[] = [];
  try {
    for (const size of NODE_READ_SIZES) {
      const port = await freePort();
      servers.push(
        await spawned(`node, ${size / KiB} KiB writes`, port, node, [nodeServer, dir, String(port), String(size)], dir),
      );
    }
    // Debian's Python: the `python3` on PATH may be another one.
    const port = await freePort();
    servers.push(
      await spawned(
        'python3 -m http.server',
        port,
        '/usr/bin/python3',
        ['-m', 'http.server', '--bind', '127.0.0.1', String(port)],
        dir,
      ),
    );
    if (existsSync('/usr/sbin/nginx')) servers.push(await startNginx(dir));
    return servers;
  } catch (error) {
    await Promise.all(servers.map((s) => s.stop()));
    throw error;
  }
}

/** Debian's nginx with its own configuration in a temporary directory (sendfile on, as shipped). */
async function startNginx(dir: string): Promise<BenchServer> {
  const port = await freePort();
  const home = mkdtempSync(join(tmpdir(), 'byoi-bench-nginx-'));
  const temp = join(home, 'tmp');
  writeFileSync(
    join(home, 'nginx.conf'),
    `daemon off;
worker_processes 1;
pid ${home}/nginx.pid;
error_log ${home}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path ${temp}; proxy_temp_path ${temp}; fastcgi_temp_path ${temp}; uwsgi_temp_path ${temp}; scgi_temp_path ${temp};
  server { listen 127.0.0.1:${port}; root ${dir}; }
}
`,
  );
  return spawned(
    'nginx',
    port,
    '/usr/sbin/nginx',
    ['-c', join(home, 'nginx.conf'), '-e', join(home, 'error.log')],
    home,
    () => rmSync(home, { recursive: true, force: true }),
  );
}
