// A throwaway PostgreSQL cluster for tests: Debian's own server binaries (package `postgresql`),
// `initdb` in a temp dir, listening only on a Unix socket in that dir, stopped and removed after.
// No service of the machine is used. PostgreSQL refuses to run as root, so as root the cluster runs
// as `nobody` (setpriv); the test, as root, still reaches the socket.
//
// Roles: `byoi` (superuser, trusted on the socket: what tests use) and any role `createRole` adds,
// which must give its password (scram-sha-256): for tests of PGPASSWORD and password files.
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';

/** The newest installed server's binaries, if any. */
function serverBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => /^\d+$/.test(v) && existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] && join(root, versions[0], 'bin');
}

/** Whether tests that need PostgreSQL can run here; in CI they must (startPostgres then fails loudly). */
export const postgresAvailable = serverBin() !== undefined;
export const skipWithoutPostgres = !postgresAvailable && !process.env.CI;

const NOBODY = { uid: 65534, gid: 65534 };

export interface TestPostgres {
  /** The directory holding the cluster's Unix socket. */
  readonly socketDir: string;
  /** A URL for `database` as `user` (default: the trusted superuser), over the socket. */
  url(database: string, user?: string): string;
  /** Creates an empty database and answers its URL. */
  createDatabase(name: string): Promise<string>;
  /** Creates a login role that must give `password`, owning `database` (created). */
  createRole(name: string, password: string, database: string): Promise<void>;
  /** Runs one statement as the superuser on the `postgres` database. */
  admin(sql: string): Promise<void>;
  stop(): Promise<void>;
}

export interface PostgresOptions {
  readonly maxConnections?: number;
  /** Keep PostgreSQL's default durability (fsync on every commit): for benchmarks against SQLite's. */
  readonly durable?: boolean;
}

export async function startPostgres(options: PostgresOptions = {}): Promise<TestPostgres> {
  const bin = serverBin();
  if (!bin)
    throw new Error('PostgreSQL server binaries not found under /usr/lib/postgresql (Debian package postgresql)');
  const dir = mkdtempSync(join(tmpdir(), 'byoi-pg-'));
  const asRoot = process.getuid?.() === 0;
  if (asRoot) chownSync(dir, NOBODY.uid, NOBODY.gid);
  const runAsOwner = (tool: string, args: string[]) => {
    const [command, argv] = asRoot
      ? ['setpriv', [`--reuid=${NOBODY.uid}`, `--regid=${NOBODY.gid}`, '--clear-groups', join(bin, tool), ...args]]
      : [join(bin, tool), args];
    return execFileSync(command as string, argv as string[], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, LC_ALL: 'C.UTF-8' },
    });
  };
  const data = join(dir, 'data');
  const ctl = (args: string[]) => runAsOwner('pg_ctl', ['-D', data, ...args]);
  try {
    runAsOwner('initdb', ['-D', data, '-U', 'byoi', '-E', 'UTF8', '--locale=C.UTF-8', '--no-sync', '--auth=trust']);
    // The superuser is trusted on the socket; every other role proves its password.
    writeFileSync(join(data, 'pg_hba.conf'), 'local all byoi trust\nlocal all all scram-sha-256\n');
    const settings = [
      "-c listen_addresses=''",
      `-c unix_socket_directories=${dir}`,
      `-c max_connections=${options.maxConnections ?? 100}`,
      // A throwaway cluster: durability is not worth its cost in tests.
      ...(options.durable ? [] : ['-c fsync=off -c synchronous_commit=off -c full_page_writes=off']),
    ].join(' ');
    ctl(['-l', join(dir, 'server.log'), '-o', settings, '-w', '-t', '60', 'start']);
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  // Should the test process end without stop(), the cluster must not outlive it.
  const kill = () => {
    try {
      ctl(['-m', 'immediate', 'stop']);
    } catch {
      // already stopped
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', kill);

  const url = (database: string, user = 'byoi') => `postgres://${user}@/${database}?host=${encodeURIComponent(dir)}`;
  const admin = async (sql: string) => {
    const client = new pg.Client({ connectionString: url('postgres') });
    await client.connect();
    try {
      await client.query(sql);
    } finally {
      await client.end();
    }
  };
  return {
    socketDir: dir,
    url,
    admin,
    async createDatabase(name) {
      await admin(`CREATE DATABASE "${name}"`);
      return url(name);
    },
    async createRole(name, password, database) {
      await admin(`CREATE ROLE "${name}" LOGIN PASSWORD '${password.replaceAll("'", "''")}'`);
      await admin(`CREATE DATABASE "${database}" OWNER "${name}"`);
    },
    async stop() {
      process.off('exit', kill);
      try {
        ctl(['-m', 'fast', '-w', 'stop']);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
