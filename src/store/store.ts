import { userInfo } from 'node:os';
import { readStream, readStreamPage, readStreamWindow, jobStream, streamEntries, type AuditEntry, type AuditReport } from '../audit/audit.ts';
import { verifyAudit } from '../audit/verify.ts';
import { NotFoundError, readOnlyStore, ValidationError, type StorageError } from '../errors.ts';
import { requireJob, replayJob, type Job, type JobRef } from '../jobs/job-rows.ts';
import { described, inputObject, jsonMember } from '../util/values.ts';
import { checkWindow, isIsoTime, notIsoTime } from '../util/time.ts';
import { Jobs } from '../jobs/jobs.ts';
import { Ledger } from '../ledger/ledger.ts';
import type { Migration } from './migrations/migration.ts';
import type { Adapter, Capabilities, Dialect, Durability, Engine, Executor } from './adapter.ts';
import { checkActor, Context, type CallOptions } from './context.ts';
import { DEFAULT_DB, describeLocation, parseLocation } from './location.ts';
import { databaseNow, runsNow } from './instances.ts';
import { assertCurrent, checkCurrent, migrate, rollback, schemaStatus, type SchemaStatus } from './migrations/runner.ts';
import { PostgresAdapter } from './postgres/postgres-adapter.ts';
import { SqliteAdapter } from './sqlite/sqlite-adapter.ts';

export interface StoreOptions {
  /**
   * `process` (default) survives kill -9 of the bot; `power` also survives a power cut.
   * See docs/durability.md for exactly what each can lose.
   */
  readonly durability?: Durability;
  /**
   * What to do about the schema on open: `migrate` (default; `check` with `readOnly`) applies
   * pending migrations under the migration lock, and refuses a schema newer than this code or an
   * edited migration, and on SQLite an outdated schema while a daemon runs on the file
   * (DAEMON_RUNNING: one daemon runs per file, and it would go on on a schema it does not know);
   * `check` refuses unless the schema is exactly current (and never creates a SQLite file);
   * `create` migrates a database that has no botstate schema yet (new), or one part-way through
   * being made that holds no job yet (another process is making it, or was killed doing so), and
   * otherwise acts as `check` (what `botstate start` does: a command that may be refused must not
   * have migrated a database in use);
   * `none` checks nothing, for `botstate db …` — a store opened so must not be used for jobs.
   * With `readOnly`, only `check` and `none` may be given.
   */
  readonly schema?: 'migrate' | 'create' | 'check' | 'none';
  /**
   * Called once as the store starts migrating a database that already has a botstate schema, one
   * older than this code (`from` its version, `to` the latest), under the migration lock just
   * before the first step: a migration of a large database takes a while, and a caller can say
   * what it waits for. Not called for a new database, nor when no step runs (another process
   * migrated it meanwhile, or a daemon running on the SQLite file refuses it).
   */
  readonly onMigrate?: (from: number, to: number) => void;
  /**
   * Create the database if there is none (default true; false with `readOnly`, which refuses
   * true): on SQLite the file, on PostgreSQL the schema's tables. With false, a missing one is
   * DATABASE_NOT_FOUND and nothing is created.
   */
  readonly create?: boolean;
  /** Who is acting, for the audit log (default `lib:<os user>`). */
  readonly actor?: string;
  /**
   * The caller only reads (a report, a dashboard, an audit), on either engine. The store then
   * never creates a database (a missing SQLite file or PostgreSQL schema is DATABASE_NOT_FOUND)
   * and never migrates: the schema is checked as with `schema: 'check'` (the default then; only
   * `check` and `none` may be given, and `create: true` is refused), so a schema older than this
   * code is SCHEMA_OUTDATED, to be migrated with `botstate db migrate`. Every write is refused
   * with INVALID_ARGUMENT ("opened read-only"): the store's calls that write (jobs.start,
   * ledger.recordTrade, …, migrate, rollback) before they run, and SQL that writes in a
   * store.transaction (which runs as a read) by the database itself, since the connection is
   * read-only: a SQLite file is opened read-only, as it is (in WAL mode or not: a backup made by
   * `backup()` stays as it is), and a PostgreSQL session has default_transaction_read_only on.
   * Reads, history, jobAt, verifyAudit, schemaStatus and backup work as usual. A SQLite file this
   * user may not write, or in a folder it may not write (a backup kept read-only, another user's
   * database), can be read so; one in WAL mode needs a `-shm` file beside it that SQLite can make
   * or write. Default false.
   */
  readonly readOnly?: boolean;
  /**
   * SQLite: how long to wait for another connection's write lock (default 5000 ms), and, on this
   * store's one connection, for a transaction of this process that holds it. A store call made
   * outside a transaction and awaited inside one waits for that transaction: it is refused with
   * STORAGE_BUSY after this long, and the transaction with it, instead of waiting for ever.
   */
  readonly busyTimeoutMs?: number;
  /**
   * PostgreSQL: how long a statement waits for a lock another session holds (a row of a job
   * another transaction is changing) before it fails with STORAGE_BUSY; 0 waits as long as it
   * takes. Unset (the default), the server's setting holds (a role's or database's lock_timeout,
   * else none). `lock_timeout` in the URL comes first. Migrations always wait. The CLI's commands
   * wait 5000 ms, as on SQLite; its daemon waits.
   */
  readonly lockTimeoutMs?: number;
  /** PostgreSQL: connections in the pool (default 10). */
  readonly poolSize?: number;
  /**
   * PostgreSQL: how long to wait for a connection, to the server or from the pool when all of
   * its connections are in use (default: the URL's connect_timeout, else 5000 ms).
   */
  readonly connectTimeoutMs?: number;
  /**
   * PostgreSQL: end a session whose transaction stays idle (the client holds it open and sends
   * nothing) for longer than this, releasing its row locks (default: off). The daemon sets it
   * below its lease TTL, so that a frozen daemon cannot keep the locks that a takeover needs.
   * Such a transaction is refused with STORAGE_BUSY, saying that nothing of it was written.
   */
  readonly idleTransactionTimeoutMs?: number;
  /**
   * SQLite in `power` mode: let concurrent write transactions share one COMMIT (and fsync)
   * (default true). Turning it off is for measuring what it saves.
   */
  readonly groupCommit?: boolean;
}

const OPTION_KEYS = ['durability', 'schema', 'onMigrate', 'create', 'readOnly', 'actor', 'busyTimeoutMs', 'lockTimeoutMs', 'poolSize', 'connectTimeoutMs', 'idleTransactionTimeoutMs', 'groupCommit'] as const;

function checkOptions(options: StoreOptions): Required<Omit<StoreOptions, 'lockTimeoutMs' | 'onMigrate'>> & Pick<StoreOptions, 'lockTimeoutMs' | 'onMigrate'> {
  for (const key of Object.keys(options)) {
    if (!(OPTION_KEYS as readonly string[]).includes(key)) {
      throw new ValidationError('INVALID_ARGUMENT', `unknown store option "${key}"`, { hint: `the options are ${OPTION_KEYS.join(', ')}` });
    }
  }
  const oneOf = <T extends string>(key: string, value: T | undefined, allowed: readonly T[], fallback: T): T => {
    if (value === undefined) return fallback;
    if (!allowed.includes(value)) {
      throw new ValidationError('INVALID_ARGUMENT', `store option ${key} must be one of ${allowed.join(', ')}, got ${String(value)}`, { hint: 'see StoreOptions' });
    }
    return value;
  };
  const int = (key: string, value: number | undefined, min: number, max: number, fallback: number): number => {
    if (value === undefined) return fallback;
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ValidationError('INVALID_ARGUMENT', `store option ${key} must be an integer from ${min} to ${max}, got ${described(value)}`, { hint: 'see StoreOptions' });
    }
    return value;
  };
  for (const key of ['create', 'groupCommit', 'readOnly'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'boolean') {
      throw new ValidationError('INVALID_ARGUMENT', `store option ${key} must be true or false`);
    }
  }
  if (options.actor !== undefined) checkActor(options.actor, 'store option actor');
  if (options.onMigrate !== undefined && typeof options.onMigrate !== 'function') {
    throw new ValidationError('INVALID_ARGUMENT', `store option onMigrate must be a function, got ${described(options.onMigrate)}`, { hint: 'see StoreOptions' });
  }
  const readOnly = options.readOnly ?? false;
  if (readOnly && (options.schema === 'migrate' || options.schema === 'create')) {
    throw new ValidationError('INVALID_ARGUMENT', `store option schema '${options.schema}' cannot go with readOnly: a read-only store never creates or migrates a schema`, {
      hint: "leave schema out (readOnly checks that the schema is current), or give 'check' or 'none'",
    });
  }
  if (readOnly && options.create === true) {
    throw new ValidationError('INVALID_ARGUMENT', 'store option create cannot be true with readOnly: a read-only store never creates a database', {
      hint: 'leave create out',
    });
  }
  return Object.freeze({
    durability: oneOf('durability', options.durability, ['process', 'power'], 'process'),
    schema: oneOf('schema', options.schema, ['migrate', 'create', 'check', 'none'], readOnly ? 'check' : 'migrate'),
    create: readOnly ? false : (options.create ?? true),
    readOnly,
    actor: options.actor ?? `lib:${safeUser()}`,
    busyTimeoutMs: int('busyTimeoutMs', options.busyTimeoutMs, 0, 600_000, 5000),
    // Unset unless given: the server's own setting (a role's, a database's) then holds.
    lockTimeoutMs: options.lockTimeoutMs === undefined ? undefined : int('lockTimeoutMs', options.lockTimeoutMs, 0, 86_400_000, 0),
    poolSize: int('poolSize', options.poolSize, 1, 1000, 10),
    connectTimeoutMs: int('connectTimeoutMs', options.connectTimeoutMs, 1, 600_000, 5000),
    idleTransactionTimeoutMs: int('idleTransactionTimeoutMs', options.idleTransactionTimeoutMs, 0, 86_400_000, 0),
    groupCommit: options.groupCommit ?? true,
    ...(options.onMigrate === undefined ? {} : { onMigrate: options.onMigrate }),
  });
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}

/**
 * Opens a store.
 *
 * @param url `./path.db`, `sqlite:./path.db`, `:memory:` or `postgres://…[?schema=name]`.
 *   Default: `$BOTSTATE_DB`, else `./botstate.db`.
 *
 * @example
 * const store = await openStore('postgres://postgres@127.0.0.1/test', { durability: 'power' });
 * try { await store.jobs.start({ tokenAddress }) } finally { await store.close() }
 */
export async function openStore(url?: string, options: StoreOptions = {}): Promise<Store> {
  if (url !== undefined && typeof url !== 'string') {
    throw new ValidationError('INVALID_ARGUMENT', `the database URL must be a string, got ${url === null ? 'null' : typeof url}`, {
      hint: "pass a path such as './botstate.db' or a postgres:// URL (a URL object: its .href)",
    });
  }
  const opts = checkOptions(inputObject(options, 'the store options'));
  const location = parseLocation(url ?? (process.env['BOTSTATE_DB'] || DEFAULT_DB));
  const adapter: Adapter =
    location.engine === 'sqlite'
      ? await SqliteAdapter.open({
          path: location.path,
          durability: opts.durability,
          busyTimeoutMs: opts.busyTimeoutMs,
          // A new, empty file could never pass the check: do not leave one behind.
          create: opts.create && opts.schema !== 'check',
          groupCommit: opts.groupCommit,
          readOnly: opts.readOnly,
        })
      : await PostgresAdapter.open({
          connectionString: location.connectionString,
          schema: location.schema,
          durability: opts.durability,
          poolSize: opts.poolSize,
          // The URL's connect_timeout, unless the option is given.
          connectTimeoutMs: options.connectTimeoutMs === undefined ? (location.connectTimeoutMs ?? opts.connectTimeoutMs) : opts.connectTimeoutMs,
          channelBinding: location.channelBinding === true,
          idleTransactionTimeoutMs: opts.idleTransactionTimeoutMs,
          readOnly: opts.readOnly,
          // The URL's lock_timeout, unless none is given there.
          ...(location.lockTimeoutInUrl || opts.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: opts.lockTimeoutMs }),
          location: describeLocation(location),
        });
  try {
    if (opts.schema === 'migrate' && !opts.create && adapter.engine === 'postgres' && (await schemaStatus(adapter)).current === 0) {
      // As a missing SQLite file is not created: a schema that holds no botstate database stays as it is.
      throw new NotFoundError('DATABASE_NOT_FOUND', `there is no botstate database at ${adapter.location}`, {
        hint: 'start a job first (botstate start <token>) or pass --db with the right path or URL',
      });
    }
    const migrating = opts.onMigrate === undefined ? {} : { onStart: opts.onMigrate };
    if (opts.schema === 'migrate') await migrate(adapter, migrating);
    else if (opts.schema === 'check') await assertCurrent(adapter);
    else if (opts.schema === 'create') {
      const status = await schemaStatus(adapter);
      // A new database, or one still being made: another process creating it is part-way
      // through (migrate waits for it under the migration lock, then goes on from the version it
      // left), or one was killed part-way. Holding no job, it has nothing to lose by migrating.
      // An outdated database in use is left to db migrate.
      if (status.current === 0 || (status.current < status.latest && !(await inUse(adapter)))) await migrate(adapter, migrating);
      // In use by now: another start may have finished the migration and started its job since
      // the status was read (six starts at once on a new file): judged on the schema as it is now.
      else checkCurrent(status.current < status.latest ? await schemaStatus(adapter) : status, adapter.location);
    }
  } catch (e) {
    await adapter.close();
    throw e;
  }
  return new Store(adapter, opts.actor);
}

/** A PostgreSQL database is backed up with its own tools. */
export const PG_BACKUP_HINT = 'use pg_dump (pg_dump --schema=<schema> for a schema of its own), which copies a consistent snapshot too';

/**
 * Whether a database below the latest version is in use: it holds a job (its jobs table exists
 * from version 1 on), or a daemon is registered on it and has not stopped (version 3 on: one of an
 * older release may run on a database with no job yet). Read outside the migration lock: a job
 * started in the moment between this and the migration is migrated with it.
 */
async function inUse(adapter: Adapter): Promise<boolean> {
  return adapter.transaction(async (tx) => {
    if ((await tx.get('SELECT 1 AS one FROM jobs LIMIT 1')) !== undefined) return true;
    if (!(await adapter.hasTable(tx, 'daemon_instances'))) return false;
    return (await tx.get('SELECT 1 AS one FROM daemon_instances WHERE stopped_at IS NULL LIMIT 1')) !== undefined;
  }, { readOnly: true });
}

/** store.transaction's options. */
export interface TransactionOptions {
  /** No savepoint around each call made in it: the first that fails fails the whole transaction (see {@link Store.transaction}). */
  readonly atomic?: boolean;
}

/** Whether `options` make an atomic transaction; refused inside another transaction (`nested`), which decides. */
function checkTransactionOptions(options: TransactionOptions | undefined, nested: boolean): boolean {
  if (options === undefined) return false;
  const { atomic } = inputObject(options, 'the transaction options', ['atomic']);
  if (atomic !== undefined && typeof atomic !== 'boolean') {
    throw new ValidationError('INVALID_ARGUMENT', `atomic must be true or false, got ${described(atomic)}`, { hint: 'store.transaction(fn, { atomic: true })' });
  }
  if (atomic !== undefined && nested) {
    throw new ValidationError('INVALID_ARGUMENT', 'atomic is given to the outermost store.transaction only: a nested one is as the one around it', {
      hint: 'give { atomic: true } to the outermost transaction, or leave it out here',
    });
  }
  return atomic === true;
}

/** The daemon holding a job's lease: {@link Store.daemonFor}. */
export interface JobDaemon {
  /** The daemon's instance id (its `daemon_instances` row). */
  readonly instance: string;
  /** Its host name and process id, null if its row is gone. */
  readonly host: string | null;
  readonly pid: number | null;
  /** Until when the lease is held unless renewed (ISO 8601). */
  readonly leaseExpiresAt: string;
  /** Its last heartbeat (ISO 8601), null if its row is gone. */
  readonly heartbeatAt: string | null;
  /** It stopped, or another daemon found it dead. */
  readonly stopped: boolean;
  /**
   * It runs now, as `botstate daemons` judges it (see {@link DaemonInstance.running}): false for
   * one killed or stalled, whose lease holds the job until it runs out or a daemon that starts
   * takes it over.
   */
  readonly running: boolean;
}

/** A registered daemon, as `botstate daemons` shows it (see {@link Store.daemonInstances}). */
export interface DaemonInstance {
  readonly instance: string;
  readonly host: string;
  readonly pid: number;
  /** When it registered (ISO 8601). */
  readonly startedAt: string;
  /** Its last heartbeat (ISO 8601). */
  readonly heartbeatAt: string;
  /** When it stopped, or another daemon found it dead; null otherwise. */
  readonly stoppedAt: string | null;
  /**
   * Not stopped, and heartbeated within its lease TTL (as the daemons judge each other; a minute
   * for a daemon of an older version, which did not record its TTL) and, on this host, its
   * process exists. False for one not stopped but silent: killed or stalled, until the next
   * daemon to start marks it stopped.
   */
  readonly running: boolean;
  /** Jobs whose lease it holds, not expired. */
  readonly jobs: number;
  /**
   * Its --max-jobs, null for none; 0 while it hands its jobs over, its exchange unreachable (a
   * --max-jobs is at least 1), and still 0 for one killed meanwhile.
   */
  readonly maxJobs: number | null;
  /** The exchange it trades on (Exchange.id), as its last start's `recover` audit entry names it; null if none does. */
  readonly exchange: string | null;
  /** Since when its exchange has answered no call (ISO 8601, its host's clock), as it last said; null while it answers, and once it is stopped. */
  readonly exchangeUnreachableSince: string | null;
}

interface InstanceListRow {
  id: string;
  host: string;
  pid: number | string;
  started_at: string;
  heartbeat_at: string;
  stopped_at: string | null;
  max_jobs: number | string | null;
  lease_ttl_ms: number | string | null;
  exchange_unreachable_since: string | null;
  jobs: number | string;
  recovered: string | null;
}

/** A held lease and its daemon's row (none if the row is gone). */
interface LeaseRow {
  owner: string;
  expires_at: string;
  host: string | null;
  pid: number | string | null;
  heartbeat_at: string | null;
  stopped_at: string | null;
  lease_ttl_ms: number | string | null;
}

const SELECT_LEASES =
  "SELECT l.job_id, l.owner, l.expires_at, d.host, d.pid, d.heartbeat_at, d.stopped_at, d.lease_ttl_ms FROM job_leases l LEFT JOIN daemon_instances d ON d.id = l.owner WHERE l.owner <> ''";

/** `nowMs`: the database's clock on PostgreSQL, by which daemons judge each other. */
function jobDaemon(row: LeaseRow, nowMs: number): JobDaemon {
  const pid = row.pid === null ? null : Number(row.pid);
  const running =
    row.stopped_at === null && row.host !== null && pid !== null && row.heartbeat_at !== null &&
    runsNow({ id: row.owner, host: row.host, pid, heartbeat_at: row.heartbeat_at, lease_ttl_ms: row.lease_ttl_ms }, nowMs);
  return {
    instance: row.owner,
    host: row.host,
    pid,
    leaseExpiresAt: row.expires_at,
    heartbeatAt: row.heartbeat_at,
    stopped: row.stopped_at !== null,
    running,
  };
}

/**
 * botstate's one API over SQLite and PostgreSQL: jobs, the trade ledger and the audit log.
 */
export class Store {
  readonly jobs: Jobs;
  readonly ledger: Ledger;
  readonly #ctx: Context;
  readonly #adapter: Adapter;

  /** @internal use {@link openStore} */
  constructor(adapter: Adapter, actor: string) {
    this.#adapter = adapter;
    this.#ctx = new Context(adapter, actor);
    this.jobs = new Jobs(this.#ctx);
    this.ledger = new Ledger(this.#ctx);
  }

  get engine(): Engine {
    return this.#adapter.engine;
  }

  get durability(): Durability {
    return this.#adapter.durability;
  }

  /** @internal The engine's SQL spellings and capabilities, for botstate's own engine modules. */
  get dialect(): Dialect {
    return this.#adapter.dialect;
  }

  /** @internal */
  get capabilities(): Capabilities {
    return this.#adapter.capabilities;
  }

  /** Where the data lives, without credentials. */
  get location(): string {
    return this.#adapter.location;
  }

  /**
   * Runs `fn` in one transaction. Store calls made inside it (or given `{ tx }`) join it, so
   * a job transition, a trade and your own SQL commit or roll back together. `fn` may be
   * re-run when the engine reports a conflict (a PostgreSQL serialisation failure or deadlock,
   * SQLite's write lock held by another process), or when another transaction in the same
   * group commit throws (SQLite `power` mode, see docs/durability.md), so keep network calls and
   * other effects out of it; on SQLite it also holds the write lock until it ends, and in `power`
   * mode a body that runs behind others in its group commit longer than `busyTimeoutMs` is
   * refused (STORAGE_BUSY), since they wait for its COMMIT: do not await, inside `fn`, another
   * transaction of this store started outside it (in one batch with it, it cannot be answered
   * before `fn` ends). `tx` runs your
   * own SQL in it; once it has ended (a nested one's while the outer goes on), `tx` and store calls
   * given it are refused with INVALID_ARGUMENT instead of running outside it.
   *
   * Each call made in it runs under a savepoint, so that one that fails undoes only its own
   * writes and a body that catches its error can go on. With `{ atomic: true }` there are none
   * (two statements fewer per call: round trips, on PostgreSQL): the first call (or nested
   * transaction) that fails fails the whole transaction, which is rolled back even if the body
   * catches the error and returns. For a body that lets every error through anyway, as the
   * daemon's do. Given to a nested transaction it is refused: the outermost one decides.
   *
   * @example
   * await store.transaction(async (tx) => {
   *   await store.ledger.recordTrade(sell);
   *   await store.jobs.completeLiquidation({ id });
   * });
   */
  transaction<T>(fn: (tx: Executor) => Promise<T>, options?: TransactionOptions): Promise<T> {
    try {
      if (typeof fn !== 'function') {
        throw new ValidationError('INVALID_ARGUMENT', `store.transaction takes a function, got ${described(fn)}`, {
          hint: 'pass the body: store.transaction(async (tx) => { … })',
        });
      }
      return this.#ctx.transaction(fn, checkTransactionOptions(options, this.#ctx.inTransaction()));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * A job's audit entries, oldest first, a page (up to 2,000) at a time: for a history too long
   * to hold at once. Each page is its own read, so no transaction stays open while the caller
   * works through a page; the log is append-only, so the pages follow on from each other by seq.
   * With `upTo`, it ends at that seq (entries appended meanwhile are left for a later call).
   */
  async *historyPages(ref: JobRef, options: { readonly upTo?: number } = {}): AsyncGenerator<AuditEntry[]> {
    const upTo = inputObject(options, 'the options', ['upTo']).upTo;
    if (upTo !== undefined && !(Number.isSafeInteger(upTo) && upTo >= 0)) {
      throw new ValidationError('INVALID_ARGUMENT', `upTo must be a whole number from 0, got ${described(upTo)}`, { hint: "a seq, as history's entries have them" });
    }
    const stream = jobStream((await this.#ctx.read(undefined, (tx) => requireJob(tx, this.#adapter.dialect, ref, false))).id);
    for (let after = 0; ; ) {
      const page = (await this.#ctx.read(undefined, (tx) => readStreamPage(tx, stream, after))).filter((e) => upTo === undefined || e.seq <= upTo);
      if (page.length === 0) return;
      yield page;
      after = page[page.length - 1]!.seq;
      if (upTo !== undefined && after >= upTo) return;
    }
  }

  /**
   * A job's audit entries, oldest first. `since` (ISO 8601 UTC with milliseconds): only those
   * recorded at or after it; `limit`: only the last `limit` of them (the most recent). The whole
   * history is held at once: for a long one, see historyPages.
   */
  async history(ref: JobRef, options?: CallOptions & { readonly since?: string; readonly limit?: number }): Promise<AuditEntry[]> {
    const window = checkWindow(options ?? {});
    return this.#ctx.read(options, async (tx) => {
      const job = await requireJob(tx, this.#adapter.dialect, ref, false);
      const stream = jobStream(job.id);
      return window.since === undefined && window.limit === undefined ? readStream(tx, stream) : readStreamWindow(tx, stream, window);
    });
  }

  /**
   * The job as it was at `at` (ISO 8601 UTC with milliseconds), rebuilt from its audit log: the
   * job as its first entry created it, then every change the entries record, in order, up to the
   * first entry recorded after `at`. Its `version` and `updatedAt` are the last applied entry's
   * (`seq` and `at`); `strategyState` is not audited and comes back `{}`. A job that did not exist
   * yet is JOB_NOT_FOUND. An entry whose `before` disagrees with the state rebuilt so far (a log
   * changed outside botstate) is STORAGE_CORRUPT: run verifyAudit.
   */
  async jobAt(ref: JobRef, at: string, options?: CallOptions): Promise<Job> {
    if (!isIsoTime(at)) throw new ValidationError('INVALID_ARGUMENT', notIsoTime('at', at), { hint: "pass a time such as '2026-11-26T12:00:00.000Z'" });
    return this.#ctx.read(options, async (tx) => {
      const job = await requireJob(tx, this.#adapter.dialect, ref, false);
      // Entries up to `at`, a page at a time, folded as they come: neither the history after `at`
      // nor the entries already applied are held.
      return replayJob(streamEntries(tx, jobStream(job.id), at), at, job);
    });
  }

  /** The time daemons are judged by: the database's clock on PostgreSQL, by which they heartbeat. */
  async #nowMs(tx: Executor): Promise<number> {
    return this.#adapter.engine === 'postgres' ? databaseNow(tx) : Date.now();
  }

  /**
   * The daemon that holds a job's lease (docs/daemon.md, "Several daemons"), as the database has
   * it, or null when none does (no daemon has taken the job, or the last one handed it back). A
   * lease past `leaseExpiresAt` is another daemon's to take: its holder stopped renewing it (killed,
   * stalled, or cut off from the database). `heartbeatAt` is its daemon's last heartbeat, `stopped`
   * whether that daemon stopped (or was found dead by another), `running` whether it runs now (one
   * killed still holds the job until its lease runs out).
   */
  async daemonFor(ref: JobRef, options?: CallOptions): Promise<JobDaemon | null> {
    return this.#ctx.read(options, async (tx) => {
      const job = await requireJob(tx, this.#adapter.dialect, ref, false);
      const row = await tx.get<LeaseRow>(`${SELECT_LEASES} AND l.job_id = ?`, [job.id]);
      return row === undefined ? null : jobDaemon(row, await this.#nowMs(tx));
    });
  }

  /** {@link daemonFor} of every job a daemon holds, by job id, in one read (`botstate list`). */
  async daemons(options?: CallOptions): Promise<Map<string, JobDaemon>> {
    const { rows, nowMs } = await this.#ctx.read(options, async (tx) => ({ rows: await tx.all<LeaseRow & { job_id: string }>(SELECT_LEASES), nowMs: await this.#nowMs(tx) }));
    return new Map(rows.map((row) => [row.job_id, jobDaemon(row, nowMs)]));
  }

  /**
   * The daemons registered on this database, oldest first: those not marked stopped (running, or
   * silent: killed or stalled), or with `all` every one that ever registered. Each with the jobs
   * it holds and the exchange it trades on. Read in one snapshot.
   */
  async daemonInstances(filter: { readonly all?: boolean } = {}, options?: CallOptions): Promise<DaemonInstance[]> {
    const { all } = inputObject(filter, 'filter', ['all']) as { all?: unknown };
    if (all !== undefined && typeof all !== 'boolean') throw new ValidationError('INVALID_ARGUMENT', `filter.all must be a boolean, got ${described(all)}`, { hint: 'e.g. { all: true }' });
    return this.#ctx.read(options, async (tx) => {
      const nowMs = await this.#nowMs(tx);
      const rows = await tx.all<InstanceListRow>(
        `SELECT i.id, i.host, i.pid, i.started_at, i.heartbeat_at, i.stopped_at, i.max_jobs, i.lease_ttl_ms, i.exchange_unreachable_since,
           (SELECT count(*) FROM job_leases l WHERE l.owner = i.id AND l.expires_at > ?) AS jobs,
           (SELECT a.after FROM audit_log a WHERE a.stream = 'daemon:' || i.id AND a.action = 'recover' ORDER BY a.seq DESC LIMIT 1) AS recovered
         FROM daemon_instances i ${all === true ? '' : 'WHERE i.stopped_at IS NULL'} ORDER BY i.started_at, i.id`,
        [new Date(nowMs).toISOString()],
      );
      return rows.map((row): DaemonInstance => {
        const exchange = jsonMember(row.recovered, 'exchange'); // not JSON: verify reports such an entry
        const pid = Number(row.pid);
        return {
          instance: row.id,
          host: row.host,
          pid,
          startedAt: row.started_at,
          heartbeatAt: row.heartbeat_at,
          stoppedAt: row.stopped_at,
          running: row.stopped_at === null && runsNow({ id: row.id, host: row.host, pid, heartbeat_at: row.heartbeat_at, lease_ttl_ms: row.lease_ttl_ms }, nowMs),
          jobs: Number(row.jobs),
          maxJobs: row.max_jobs === null ? null : Number(row.max_jobs),
          exchange: typeof exchange === 'string' ? exchange : null,
          exchangeUnreachableSince: row.stopped_at === null ? row.exchange_unreachable_since : null,
        };
      });
    });
  }

  /**
   * Recomputes the audit log's hash chains and checks them against the jobs. Reads only, in one
   * snapshot: on PostgreSQL it is refused inside a caller's transaction (INVALID_ARGUMENT), where
   * writes committed meanwhile by others would read as problems.
   */
  verifyAudit(options?: CallOptions): Promise<AuditReport> {
    return this.#ctx.snapshotRead(options, 'verifyAudit', (tx) => verifyAudit(tx));
  }

  schemaStatus(): Promise<SchemaStatus> {
    return schemaStatus(this.#adapter);
  }

  /** Applies pending migrations (up to `to`). Refused on a read-only store (INVALID_ARGUMENT). */
  async migrate(options: { to?: number } = {}): Promise<Migration[]> {
    if (this.#adapter.readOnly) throw readOnlyStore(this.location);
    return migrate(this.#adapter, inputObject(options, 'the options', ['to']));
  }

  /**
   * Rolls the schema back to `to` (default: one version). A step that would delete data (rows of
   * jobs, trades or the audit log; jobs' strategy state) is refused with DATA_LOSS unless `force`.
   * Refused on a read-only store (INVALID_ARGUMENT).
   */
  async rollback(options: { to?: number; force?: boolean } = {}): Promise<Migration[]> {
    if (this.#adapter.readOnly) throw readOnlyStore(this.location);
    return rollback(this.#adapter, inputObject(options, 'the options', ['to', 'force']));
  }

  /**
   * SQLite: writes a consistent copy of the database to `path`, a new file (an existing one is
   * refused, INVALID_ARGUMENT) with the database's file mode, while other processes go on
   * writing; a crash leaves no file under that name. It runs on this thread and holds this store
   * for its length: in a daemon's process, that holds the daemon up (run `botstate db backup`
   * from another process instead). It waits for a transaction of this store in flight at most
   * `busyTimeoutMs` (then STORAGE_BUSY), and is refused inside one (INVALID_ARGUMENT: it would
   * wait for it). PostgreSQL is backed up with its own tools (pg_dump): refused, INVALID_ARGUMENT.
   */
  async backup(path: string): Promise<void> {
    this.#ctx.refuseInTransaction('backup()', 'back up after store.transaction has returned (the copy is consistent without one)');
    if (typeof path !== 'string' || path === '') throw new ValidationError('INVALID_ARGUMENT', 'backup needs the path of the file to write', { hint: "pass a path such as './botstate-2026-11-26.db'" });
    if (this.#adapter.backup === undefined) {
      throw new ValidationError('INVALID_ARGUMENT', `botstate backs up SQLite files; ${this.location} is PostgreSQL`, { hint: PG_BACKUP_HINT });
    }
    await this.#adapter.backup(path);
  }

  /**
   * Set once this store can no longer be used: on SQLite, an fsync or a checkpoint failed (a disk
   * error), so commits since may not be on disk. Every call is then refused with this error;
   * reopen the database (in a new process) once the disk is fixed.
   */
  get failure(): StorageError | undefined {
    return this.#adapter.failure;
  }

  /**
   * Whether {@link close} was called: every call is then refused with STORAGE_UNAVAILABLE. A
   * daemon on a store closed under it stops (see Daemon.failed).
   */
  get closed(): boolean {
    return this.#adapter.closed;
  }

  /**
   * Waits for the transaction in flight, then closes the connection(s). Called inside a
   * store.transaction it is refused (INVALID_ARGUMENT), since it would wait for that transaction:
   * close the store once the transaction has returned.
   */
  close(): Promise<void> {
    try {
      this.#ctx.refuseInTransaction('close()', 'close the store after store.transaction has returned (throw from the transaction body to roll it back first)');
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#adapter.close();
  }
}
