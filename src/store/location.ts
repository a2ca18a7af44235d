import { accessSync, closeSync, constants, openSync, readSync, statSync } from 'node:fs';
import { ValidationError } from '../errors.ts';

/** Where a store lives, parsed from a URL, a bare path or `:memory:`. */
export type Location =
  | { readonly engine: 'sqlite'; readonly path: string }
  | {
      readonly engine: 'postgres';
      readonly connectionString: string;
      readonly schema: string;
      /** From the URL's connect_timeout (seconds, as libpq reads it), when it gives one. */
      readonly connectTimeoutMs?: number;
      /** The URL's channel_binding=prefer: SCRAM-SHA-256-PLUS when the server offers it. */
      readonly channelBinding?: true;
      /** The URL sets lock_timeout (passed to the server as it is): the store's option gives way. */
      readonly lockTimeoutInUrl?: true;
    };

export const DEFAULT_DB = './botstate.db';
export const DEFAULT_PG_SCHEMA = 'botstate';

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/**
 * Parses a store URL.
 *
 * - `sqlite:./path.db`, `sqlite:/abs/path.db`, a bare path, `:memory:` or `sqlite::memory:`
 * - `postgres://user@host:5432/db` or `postgresql://…`, with an optional `?schema=name`
 *   (default `botstate`) that holds botstate's tables.
 *
 * @example parseLocation('postgres://postgres@127.0.0.1/test?schema=bots')
 */
export function parseLocation(url: string): Location {
  // What the messages below echo of it: a password typed in a mistaken URL is not printed.
  const shown = hideCredentials(url);
  if (url.trim() === '') {
    throw new ValidationError('USAGE', 'the database URL is empty', {
      hint: 'pass a path such as ./botstate.db or a postgres:// URL',
    });
  }
  if (/^postgres(ql)?:\/\//i.test(url)) return parsePostgres(url);
  if (/^sqlite:/i.test(url)) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/|\.)/, '');
    if (path === '') {
      throw new ValidationError('USAGE', `database URL "${shown}" names no file`, {
        hint: 'write sqlite:./botstate.db',
      });
    }
    // sqlite://name.db would be /name.db, at the root; and SQLite's ?mode=… URI parameters are not
    // read here (the file would be named with them).
    if (path.startsWith('//') || path.includes('?') || /^file:/i.test(path) || /^[a-z][a-z0-9+.-]*:\/\//i.test(path)) {
      throw new ValidationError('USAGE', `database URL "${shown}" is ambiguous`, {
        hint: 'write sqlite:./name.db (relative) or sqlite:/abs/name.db (absolute), with no ?parameters',
      });
    }
    return sqlitePath(path);
  }
  if (/^file:/i.test(url)) {
    throw new ValidationError('USAGE', `SQLite file: URIs are not read: "${shown}" would be a file of that name`, {
      hint: 'pass the path itself (./botstate.db) or sqlite:./botstate.db',
    });
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url);
  if (scheme) {
    throw new ValidationError('USAGE', `database URL scheme "${scheme[1]}:" is not supported`, {
      hint: 'use a SQLite path (./botstate.db, sqlite:./x.db) or postgres://…',
    });
  }
  // postgres:mydb (the // forgotten) would quietly be a SQLite file of that name, in the current folder.
  const forgotten = /^(postgres|postgresql|mysql|mariadb|mongodb|redis|http|https):(?!\/\/)/i.exec(url);
  if (forgotten) {
    throw new ValidationError('USAGE', `database URL "${shown}" lacks the // after "${forgotten[1]}:"`, {
      hint: `write postgres://user@host:5432/database for PostgreSQL; a SQLite file of that name as ./${shown}`,
    });
  }
  return sqlitePath(url);
}

function sqlitePath(path: string): Location {
  // The driver opens the name trimmed (better-sqlite3): botstate's own checks, and the file it
  // creates with mode 0600, would be of another file than the database.
  if (path !== path.trim()) {
    throw new ValidationError('USAGE', `database path ${JSON.stringify(path)} has white space at its start or end`, {
      hint: 'remove it (quote the path if it holds spaces inside)',
    });
  }
  if (/[/\\]$/.test(path)) {
    throw new ValidationError('USAGE', `database path "${path}" names a directory`, {
      hint: `add a file name, e.g. ${path}botstate.db`,
    });
  }
  checkNotCompanion(path);
  return { engine: 'sqlite', path };
}

/**
 * A file SQLite would take for a database: its header, or empty (a database not written yet). A
 * file this user may not read is taken for one (refusing its companion is the safe side).
 */
function isSqliteFile(path: string): boolean {
  try {
    if (!statSync(path).isFile()) return false;
  } catch {
    return false; // nothing there
  }
  let fd: number | undefined;
  try {
    fd = openSync(path, 'r');
    const header = Buffer.alloc(16);
    const read = readSync(fd, header, 0, 16, 0);
    return read === 0 || header.toString('latin1', 0, read) === 'SQLite format 3\0';
  } catch {
    return true;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/** Files SQLite and botstate keep beside a database `x.db`: `x.db-wal`, and so on. */
const COMPANIONS = ['-wal', '-shm', '-journal', '-wait'] as const;

/**
 * Refuses `x.db-wal` (or `-shm`, `-journal`, `-wait`) when `x.db` is there: opened as a database of
 * its own, the file would be written to as one, and the next connection to `x.db` deletes it, with
 * whatever was written to it (the WAL of x.db is replayed or reset, a stale -journal rolled back).
 * A name that only ends so, with no database beside it (`./trading-journal`), is a database like
 * any other.
 */
export function checkNotCompanion(
  path: string,
  hint = (database: string) => `open the database itself, ${database}`,
  code: 'USAGE' | 'INVALID_ARGUMENT' = 'USAGE',
): void {
  const suffix = COMPANIONS.find((s) => path.endsWith(s) && path.length > s.length);
  if (suffix === undefined) return;
  const database = path.slice(0, -suffix.length);
  if (!isSqliteFile(database)) return; // nothing there, or no database: the name is a database's own
  throw new ValidationError(code, `${path} is the ${suffix} file of the database ${database}, which SQLite or botstate would delete`, {
    hint: hint(database),
  });
}

function parsePostgres(url: string): Location {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ValidationError('USAGE', 'the PostgreSQL URL is malformed', {
      hint: 'write postgres://user@host:5432/database',
    });
  }
  for (const key of new Set(parsed.searchParams.keys())) {
    if (key.toLowerCase() === 'schema' && (key !== 'schema' || parsed.searchParams.getAll(key).length > 1)) {
      throw new ValidationError('USAGE', `the PostgreSQL URL's "${key}" parameter is misspelt or repeated`, {
        hint: 'name the schema once, as ?schema=name (lower case)',
      });
    }
    const refused = Object.hasOwn(REFUSED_PARAMS, key) ? REFUSED_PARAMS[key] : undefined;
    if (refused !== undefined) {
      throw new ValidationError('USAGE', `the PostgreSQL URL may not set "${key}": ${refused.why}`, { hint: refused.hint });
    }
    if (LIBPQ_ONLY_PARAMS.includes(key)) {
      throw new ValidationError('USAGE', `the PostgreSQL URL's "${key}" is a libpq parameter that node-postgres, botstate's driver, does not implement`, {
        hint: `remove ${key}=… from the URL`,
      });
    }
    // node-postgres reads the parameters it knows and ignores the rest without a word: a
    // misspelt sslmode would connect without SSL.
    if (!ACCEPTED_PARAMS.includes(key)) {
      throw new ValidationError('USAGE', `the PostgreSQL URL's parameter "${key}" is not one botstate or node-postgres reads`, {
        hint: 'check its spelling; docs/cli.md lists the parameters taken',
      });
    }
    if (parsed.searchParams.getAll(key).length > 1) {
      // node-postgres takes the last of a repeated parameter, and this code would read the first.
      throw new ValidationError('USAGE', `the PostgreSQL URL gives ${key} more than once`, { hint: `give one ${key}` });
    }
  }
  for (const [key, { ok, what, hint }] of Object.entries(PARAM_VALUES)) {
    const value = parsed.searchParams.get(key);
    if (value !== null && !ok(value)) {
      throw new ValidationError('USAGE', `the PostgreSQL URL's ${key} "${value}" is not ${what}`, { hint });
    }
  }
  checkSslParams(parsed);
  if (parsed.searchParams.has('port') && parsed.port !== '') {
    throw new ValidationError('USAGE', `the PostgreSQL URL gives the port twice, after the host (${parsed.port}) and as port=${parsed.searchParams.get('port')}`, {
      hint: 'give it once, after the host',
    });
  }
  // In seconds, as libpq reads it (checked above); node-postgres itself would ignore it. It
  // replaces the store's connectTimeoutMs default (not an option given).
  const connectTimeout = parsed.searchParams.get('connect_timeout');
  const connectTimeoutMs = connectTimeout === null ? undefined : Number(connectTimeout) * 1000;
  parsed.searchParams.delete('connect_timeout');
  // libpq's channel_binding: node-postgres uses channel binding when the server offers it
  // (prefer) if told to, and cannot insist on it.
  const channelBinding = parsed.searchParams.get('channel_binding');
  parsed.searchParams.delete('channel_binding');
  const sslmodes = parsed.searchParams.getAll('sslmode');
  // With uselibpqcompat=true pg reads sslmode as libpq does, which has no no-verify (pg would
  // then verify the certificate after all).
  const libpq = parsed.searchParams.get('uselibpqcompat') === 'true';
  const modes = libpq ? LIBPQ_SSL_MODES : SSL_MODES;
  if (sslmodes.length === 1 && !modes.includes(sslmodes[0]!)) {
    throw new ValidationError('USAGE', `the PostgreSQL URL's sslmode "${sslmodes[0]}" is not one of ${modes.join(', ')}${libpq ? ' (with uselibpqcompat=true)' : ''}`, {
      hint: 'see docs/cli.md for what each does',
    });
  }
  if (libpq && sslmodes[0] === 'verify-ca' && !parsed.searchParams.get('sslrootcert')) {
    throw new ValidationError('USAGE', "the PostgreSQL URL's sslmode=verify-ca with uselibpqcompat=true needs sslrootcert", {
      hint: 'add sslrootcert=/path/to/ca.pem (the CA to verify the server against), or use sslmode=verify-full',
    });
  }
  const schema = parsed.searchParams.get('schema') ?? DEFAULT_PG_SCHEMA;
  if (!SCHEMA_NAME.test(schema) || schema.startsWith('pg_')) {
    throw new ValidationError('USAGE', `schema name "${schema}" is not allowed`, {
      hint: 'use lower-case letters, digits and _ (at most 63), starting with a letter or _, not pg_',
    });
  }
  parsed.searchParams.delete('schema');
  return {
    engine: 'postgres',
    connectionString: parsed.toString(),
    schema,
    ...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
    ...(channelBinding === 'prefer' ? { channelBinding: true } : {}),
    ...(parsed.searchParams.has('lock_timeout') ? { lockTimeoutInUrl: true } : {}),
  };
}

/**
 * node-postgres lets any of sslmode, sslrootcert, sslcert and sslkey turn SSL on whatever
 * `ssl` says (ssl=0&sslmode=require tries SSL, ssl=1&sslmode=disable does not), and refuses
 * sslnegotiation=direct without SSL only when it connects. Said here instead, before connecting.
 * The files it reads when it connects are checked too (an unreadable one was an "unexpected error").
 */
function checkSslParams(parsed: URL): void {
  const q = parsed.searchParams;
  const sslParams = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey'].filter((k) => q.has(k));
  if (q.has('ssl') && sslParams.length > 0) {
    throw new ValidationError('USAGE', `the PostgreSQL URL gives both ssl and ${sslParams.join(', ')}, which decide SSL over ssl`, {
      hint: 'give sslmode alone: sslmode=disable for no SSL, sslmode=verify-full to verify the server',
    });
  }
  const noSsl = q.get('ssl') === '0' || q.get('sslmode') === 'disable';
  if (q.get('sslnegotiation') === 'direct' && (noSsl || (!q.has('ssl') && sslParams.length === 0))) {
    throw new ValidationError('USAGE', "the PostgreSQL URL's sslnegotiation=direct needs SSL", {
      hint: 'add sslmode=verify-full, or remove sslnegotiation=direct',
    });
  }
  for (const key of ['sslrootcert', 'sslcert', 'sslkey']) {
    const file = q.get(key);
    if (file === null || file === '') continue;
    try {
      accessSync(file, constants.R_OK);
    } catch (e) {
      throw new ValidationError('USAGE', `the PostgreSQL URL's ${key} ${file} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, {
        hint: 'check the path and its permissions',
      });
    }
  }
}

/**
 * The URL parameters taken: botstate's schema, connect_timeout (read by botstate), and those
 * node-postgres 8 reads and that leave botstate's session as it needs it.
 */
const ACCEPTED_PARAMS = [
  'schema', 'connect_timeout',
  'host', 'port', 'user', 'password',
  'ssl', 'sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslnegotiation', 'uselibpqcompat',
  'application_name', 'fallback_application_name', 'statement_timeout', 'lock_timeout', 'channel_binding', 'gssencmode',
];

/** libpq's parameters that node-postgres does not implement (it would ignore them). */
const LIBPQ_ONLY_PARAMS = [
  'dbname', 'hostaddr', 'service', 'passfile', 'require_auth', 'target_session_attrs', 'load_balance_hosts',
  'keepalives', 'keepalives_idle', 'keepalives_interval', 'keepalives_count', 'tcp_user_timeout',
  'sslcompression', 'sslsni', 'sslcrl', 'sslcrldir', 'sslpassword', 'sslcertmode', 'ssl_min_protocol_version',
  'ssl_max_protocol_version', 'requirepeer', 'krbsrvname', 'gsslib', 'gssdelegation', 'requiressl',
];

/** Values node-postgres would misread rather than refuse (connect_timeout: read by botstate). */
const PARAM_VALUES: Record<string, { ok: (v: string) => boolean; what: string; hint: string }> = {
  connect_timeout: {
    ok: (v) => /^\d{1,3}$/.test(v) && Number(v) >= 1 && Number(v) <= 600,
    what: 'a whole number of seconds from 1 to 600',
    hint: 'write connect_timeout=10 for 10 seconds; without it the timeout is 5 seconds',
  },
  // Sent to the server as parseInt reads them: "5s" would become 5 ms, "abc" NaN.
  statement_timeout: { ok: (v) => /^\d{1,9}$/.test(v), what: 'a whole number of milliseconds', hint: 'write statement_timeout=5000 for 5 seconds, or 0 for none' },
  lock_timeout: { ok: (v) => /^\d{1,9}$/.test(v), what: 'a whole number of milliseconds', hint: 'write lock_timeout=5000 for 5 seconds, or 0 for none' },
  // Anything but "true" leaves node-postgres's own meanings.
  uselibpqcompat: { ok: (v) => v === 'true' || v === 'false', what: 'true or false', hint: "write uselibpqcompat=true for libpq's sslmode meanings" },
  channel_binding: {
    ok: (v) => v === 'disable' || v === 'prefer',
    what: 'disable or prefer',
    hint: 'node-postgres uses channel binding when the server offers it (prefer) but cannot require it: write channel_binding=prefer',
  },
  // node-postgres never encrypts with GSSAPI: libpq's prefer then connects without it too.
  gssencmode: { ok: (v) => v === 'disable' || v === 'prefer', what: 'disable or prefer', hint: 'node-postgres has no GSSAPI encryption; remove gssencmode or write disable' },
  // Any other text, "false" among them, would turn SSL on.
  ssl: { ok: (v) => ['true', '1', '0', 'no-verify'].includes(v), what: 'one of true, 1, 0, no-verify', hint: 'write ssl=0 (or sslmode=disable) for no SSL' },
  sslnegotiation: { ok: (v) => v === 'postgres' || v === 'direct', what: 'postgres or direct', hint: 'write sslnegotiation=postgres (the default) or direct' },
  // It replaces the URL's own port.
  port: { ok: (v) => /^\d{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535, what: 'a port from 1 to 65535', hint: 'write the port after the host instead: postgres://user@host:5432/database' },
};

/** Parameters node-postgres reads that would change what botstate's session is or reads. */
const REFUSED_PARAMS: Record<string, { why: string; hint: string }> = {
  // Its search_path is the schema: a URL's own options would replace botstate's, and the tables
  // would go to another schema.
  options: { why: 'botstate sets the session options itself', hint: 'remove options=… from the URL; name the schema with ?schema=name' },
  binary: { why: 'botstate reads every value as text (amounts are exact decimals)', hint: 'remove binary=… from the URL' },
  replication: { why: 'a replication connection cannot run botstate\'s queries', hint: 'remove replication=… from the URL' },
  client_encoding: { why: 'botstate exchanges text in UTF-8', hint: 'remove client_encoding=… from the URL' },
  encoding: { why: 'botstate exchanges text in UTF-8', hint: 'remove encoding=… from the URL' },
  idle_in_transaction_session_timeout: {
    why: 'botstate sets it itself',
    hint: 'remove it from the URL; in the library, pass the store option idleTransactionTimeoutMs',
  },
  query_timeout: {
    why: 'a query cut off by the client leaves its transaction in doubt',
    hint: 'use statement_timeout=MS, which the server enforces',
  },
};

/** What the PostgreSQL driver (pg 8) takes for sslmode; anything else it would silently read as verify-full. */
const SSL_MODES = ['disable', 'no-verify', 'prefer', 'require', 'verify-ca', 'verify-full'];
/** libpq's, which pg takes with uselibpqcompat=true. */
const LIBPQ_SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];

/**
 * The connection string handed to pg. pg 8 verifies the server's certificate and host name for
 * sslmode prefer, require and verify-ca (as for verify-full, not as libpq does), and says so in a
 * multi-line warning on stderr at the first connection. botstate keeps that behaviour and names
 * it (verify-full), so that no such warning breaks its one-line output. With uselibpqcompat=true
 * pg follows libpq's meanings instead, and the URL is passed as it is.
 */
export function driverConnectionString(connectionString: string): string {
  const u = new URL(connectionString);
  const mode = u.searchParams.get('sslmode');
  if (u.searchParams.get('uselibpqcompat') === 'true' || (mode !== 'prefer' && mode !== 'require' && mode !== 'verify-ca')) return connectionString;
  u.searchParams.set('sslmode', 'verify-full');
  return u.toString();
}

/**
 * `text` with the password of a `user:password@` in it shown as ***, for messages: up to the last
 * `@` (a password may hold `/` and `@`; hiding a little more than the password is no harm).
 */
export function hideCredentials(text: string): string {
  return text.replace(/(\/\/|^[a-z][a-z0-9+.-]*:)([^\s:/@]*):\S*@/i, '$1$2:***@');
}

/** The location with any password removed, for messages and logs. */
export function describeLocation(loc: Location): string {
  if (loc.engine === 'sqlite') return loc.path;
  const u = new URL(loc.connectionString);
  u.password = '';
  if (u.searchParams.has('password')) u.searchParams.set('password', '***');
  return `${u.toString()} (schema ${loc.schema})`;
}
