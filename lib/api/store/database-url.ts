// What a `--db` location is, and how it may be shown: a PostgreSQL URL is read the way node-postgres
// reads it (pg-connection-string: Unix sockets as `postgres://user@/db?host=/run/postgresql`, which
// WHATWG URL parsing refuses), and shown without its password or any query value.
import { parse } from 'pg-connection-string';

/** Whether `location` names a PostgreSQL database rather than an SQLite file. */
export const isPostgresUrl = (location: string): boolean => /^postgres(ql)?:\/\//i.test(location);

function parsed(url: string): ReturnType<typeof parse> | undefined {
  try {
    return parse(url);
  } catch {
    return undefined;
  }
}

/** Whether a PostgreSQL URL carries a password (in its user part or as `?password=`). */
export function hasPassword(url: string): boolean {
  const password = parsed(url)?.password;
  return typeof password === 'string' && password !== '';
}

/** The location as it may be shown in a message or a log: user, host, port and database only. */
export function shownLocation(location: string): string {
  if (!isPostgresUrl(location)) return location;
  const settings = parsed(location);
  if (!settings) return 'postgres://<unparsable URL>';
  const user = settings.user ? `${encodeURIComponent(settings.user)}@` : '';
  const host = settings.host ?? '';
  const database = encodeURIComponent(settings.database ?? '');
  if (host.startsWith('/')) return `postgres://${user}/${database}?host=${host}`;
  return `postgres://${user}${host}${settings.port ? `:${settings.port}` : ''}/${database}`;
}
