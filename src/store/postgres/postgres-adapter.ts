import { createHash } from 'node:crypto';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { BotstateError, closedStore, constraintViolation, invalidSql, MISSING_HINT, readOnlyStore, REFUSED_SQL_HINT, StorageError, ValidationError } from '../../errors.ts';
import { VERSION_COLUMNS } from '../migrations/migration.ts';
import { driverConnectionString } from '../location.ts';
import { numberedPlaceholders } from '../tx-control.ts';
import type {
  Adapter,
  Capabilities,
  Dialect,
  Durability,
  Executor,
  SqlParam,
  TransactionOptions,
} from '../adapter.ts';

export interface PostgresOptions {
  readonly connectionString: string;
  readonly schema: string;
  readonly durability: Durability;
  readonly poolSize: number;
  readonly connectTimeoutMs: number;
  /** SCRAM-SHA-256-PLUS (channel binding) when the server offers it. */
  readonly channelBinding?: boolean;
  /** idle_in_transaction_session_timeout; 0 = off. */
  readonly idleTransactionTimeoutMs: number;
  /** lock_timeout, when the URL does not set it; 0 = off. */
  readonly lockTimeoutMs?: number;
  /** For messages: the URL without its password. */
  readonly location: string;
  /** How long a statement goes unanswered before the server is asked whether it is at work on it (see #watched); default 10 s. */
  readonly stallCheckMs?: number;
  /**
   * The caller only reads: every session starts with default_transaction_read_only on, so that
   * the server refuses every write (25006, refused with readOnlyStore's error), and every
   * transaction is read-only from its first statement (see #begin).
   */
  readonly readOnly?: boolean;
}

const DIALECT: Dialect = Object.freeze({
  forUpdate: ' FOR UPDATE',
  skipLocked: (table: string) => ` FOR UPDATE OF ${table} SKIP LOCKED`,
  writableCte: true,
  pendingTradesFrom: 'trades',
});
const CAPABILITIES: Capabilities = Object.freeze({ concurrentWriters: true });

/**
 * The settings botstate's statements depend on, as each session starts with them and as each
 * transaction sets them again (see #begin): its schema, then pg_temp (searched after it, so that
 * no temporary table, however it was made, hides one of botstate's: PostgreSQL searches pg_temp
 * first unless it is named), times in UTC and ISO form, text in UTF-8, and the commit waiting for
 * the disk in `power` mode. Values as SET takes them.
 */
function sessionSettings(schema: string, durability: Durability): Array<[string, string]> {
  return [
    // Quoted: a schema may be named as a keyword (user, order), which SET does not take bare.
    ['search_path', `"${schema}", pg_temp`],
    ['TimeZone', "'UTC'"],
    ['DateStyle', "'ISO, MDY'"],
    ['client_encoding', "'UTF8'"],
    ['synchronous_commit', durability === 'power' ? 'on' : 'off'],
  ];
}

/**
 * The server refused a write in a read-only transaction (read_only_sql_transaction), or to make
 * one read-write once it has begun (active_sql_transaction, said so).
 */
function isReadOnlyRefusal(e: unknown): boolean {
  const { code, message } = e as { code?: unknown; message?: unknown };
  return code === '25006' || (code === '25001' && typeof message === 'string' && /read-write/.test(message));
}

/**
 * A table, column, function or other object (an index, a collation, a type) that is not there:
 * the caller's name, or a schema changed outside botstate, which botstate's own statements meet
 * as well. STORAGE_FAILED with a hint saying both, not the caller's SQL alone.
 */
const MISSING_CODES = new Set(['42P01', '42703', '42883', '42704']);

/** Serialisation failures and deadlocks: PostgreSQL rolled the transaction back, so it is safe to re-run. */
const RETRYABLE = new Set(['40001', '40P01']);
const MAX_ATTEMPTS = 8;
/** Each pooled client's first connection error (see open()). */
const FIRST_ERROR = new WeakMap<pg.PoolClient, Error>();
/** Each pooled client's backend, as the server names it (see identify and #checkStalled). */
const BACKEND = new WeakMap<pg.Client, { pid: number; started: string }>();
/** The idle backend's state_change a probe saw last while the client's statement went unanswered. */
const SUSPECT = new WeakMap<pg.Client, string>();
/** Distinct statements given a server-side prepared name (see #prepared). */
const MAX_PREPARED = 1000;
/** See PostgresOptions.stallCheckMs. */
const STALL_CHECK_MS = 10_000;
/** The error that breaks a connection found lost (see #checkStalled): pg rejects the statement in flight with it. */
const LOST_ON_THE_WAY = 'Connection terminated by botstate: a statement went unanswered and the server was not at work on it (the connection was lost on the way)';

/**
 * PostgreSQL through pg: a pool, one client per transaction, READ COMMITTED with row locks
 * (`SELECT … FOR UPDATE`) and guarded updates, and a bounded retry with jittered backoff on
 * serialisation failures and deadlocks.
 */
export class PostgresAdapter implements Adapter {
  readonly engine = 'postgres' as const;
  readonly dialect = DIALECT;
  readonly capabilities = CAPABILITIES;
  readonly durability: Durability;
  readonly location: string;
  readonly schema: string;
  readonly readOnly: boolean;

  readonly #pool: pg.Pool;
  /** The session settings botstate's statements depend on, for each transaction of its own (see #begin). */
  readonly #settings: string;
  readonly #names = new Map<string, { text: string; name: string | undefined }>();
  #closing: Promise<void> | undefined;
  /** Transactions begun and not yet ended: close() waits for them. */
  #active = 0;
  #idle: (() => void) | undefined;
  #ended = false;
  readonly #idleTransactionTimeoutMs: number;
  readonly #stallCheckMs: number;
  /** What a probe connection of #checkStalled connects with: the pool's server, user and TLS. */
  readonly #probeConfig: pg.ClientConfig;
  /** Clients a probe is asking about now: one probe at a time each. */
  readonly #probing = new WeakSet<pg.PoolClient>();

  private constructor(pool: pg.Pool, options: PostgresOptions, probeConfig: pg.ClientConfig) {
    this.#pool = pool;
    this.#probeConfig = probeConfig;
    this.#stallCheckMs = options.stallCheckMs ?? STALL_CHECK_MS;
    this.#idleTransactionTimeoutMs = options.idleTransactionTimeoutMs;
    this.durability = options.durability;
    this.location = options.location;
    this.schema = options.schema;
    this.readOnly = options.readOnly === true;
    this.#settings = sessionSettings(options.schema, options.durability).map(([name, value]) => `SET LOCAL ${name} = ${value}`).join('; ');
  }

  static async open(options: PostgresOptions): Promise<PostgresAdapter> {
    const server: pg.ClientConfig = {
      connectionString: driverConnectionString(options.connectionString),
      connectionTimeoutMillis: options.connectTimeoutMs,
      enableChannelBinding: options.channelBinding === true,
    };
    const pool = new pg.Pool({
      ...server,
      max: options.poolSize,
      // An idle connection that a NAT or firewall forgot is found out by TCP within seconds (see
      // #watched for one that a statement waits on).
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
      options:
        sessionSettings(options.schema, options.durability)
          .map(([name, value]) => `-c ${name}=${value.replace(/['" ]/g, '')}`)
          .join(' ') +
        ` -c idle_in_transaction_session_timeout=${options.idleTransactionTimeoutMs}` +
        (options.lockTimeoutMs === undefined ? '' : ` -c lock_timeout=${options.lockTimeoutMs}`) +
        (options.readOnly === true ? ' -c default_transaction_read_only=on' : ''),
      types: { getTypeParser: typeParser } as pg.CustomTypesConfig,
    });
    // An idle client whose connection drops emits 'error' on the pool; without a listener
    // that would crash the process. The next checkout gets a fresh connection.
    pool.on('error', () => {});
    // A checked-out client whose connection the server ends (idle_in_transaction_session_timeout,
    // an administrator, a restart) also emits 'error'; its query in flight rejects anyway, and
    // the broken client is discarded on release. Without a listener the process would crash.
    // The first is kept: the server's idle_in_transaction_session_timeout (25P03) says that the
    // transaction was rolled back, which the errors after it ("Connection terminated
    // unexpectedly", then "not queryable" for every later query) no longer say.
    pool.on('connect', (client) =>
      client.on('error', (e) => {
        if (!FIRST_ERROR.has(client)) FIRST_ERROR.set(client, e);
      }),
    );
    const adapter = new PostgresAdapter(pool, options, server);
    let foreign: boolean;
    try {
      foreign = await holdsForeignTables(pool, options.schema);
    } catch (e) {
      await pool.end().catch(() => {});
      throw classifyPostgresError(e, options.location);
    }
    if (foreign) {
      await pool.end().catch(() => {});
      throw new StorageError('STORAGE_UNAVAILABLE', `the schema ${options.schema} at ${options.location} holds another application's tables, not botstate's`, {
        hint: 'give botstate a schema of its own: ?schema=name in the URL (botstate creates it)',
      });
    }
    return adapter;
  }

  async transaction<T>(fn: (tx: Executor) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    if (this.#closing !== undefined) throw closedStore(this.location);
    if (this.readOnly) {
      // Migrations (which create the schema first): refused before anything runs. Any other runs
      // as a read (one snapshot, READ ONLY): a write in it is refused by the server, and said so.
      if (options.exclusive) throw readOnlyStore(this.location);
      if (!options.readOnly) options = { readOnly: true };
    }
    this.#active++;
    try {
      return await this.#attempts(fn, options);
    } finally {
      if (--this.#active === 0) this.#idle?.();
    }
  }

  async #attempts<T>(fn: (tx: Executor) => Promise<T>, options: TransactionOptions): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.#connect();
      let broken: Error | undefined;
      try {
        // A read sees one snapshot (REPEATABLE READ): under READ COMMITTED each statement saw the commits
        // made since the one before, and verifyAudit, reading the chains and then the jobs, reported
        // a daemon's fresh writes as tampering.
        try {
          if (!BACKEND.has(client)) await identify(client);
          await this.#watched(client, () => client.query(this.#begin(options)));
        } catch (e) {
          // A pooled connection whose session the server ended while it sat idle (a restart,
          // pg_terminate_backend) before the pool heard of it: nothing was begun, so the caller's
          // body has not run. The connection is dropped and the transaction begun on another.
          if (isDriverError(e) && classifyPostgresError(e, this.location).code === 'STORAGE_UNAVAILABLE' && attempt < MAX_ATTEMPTS) {
            broken = e as Error;
            continue;
          }
          throw e;
        }
        const result = await fn(this.#executor(client));
        // The session was lost while the body ran (the server ended it, or the connection broke),
        // and the body went on (it caught the error, or made no call since): the server rolled the
        // transaction back, and a COMMIT would not even be sent.
        const lost = FIRST_ERROR.get(client);
        if (lost !== undefined) throw this.#endedIdle(client, lost) ?? lostBeforeCommit(lost, this.location);
        // A statement that failed in the transaction aborted it, even if the caller caught its
        // error: PostgreSQL then answers COMMIT with ROLLBACK, and nothing was written.
        let committed: pg.QueryResult;
        try {
          committed = await this.#watched(client, () => client.query('COMMIT'));
        } catch (e) {
          // The server's own refusal (a serialisation failure at commit, a deferred constraint)
          // rolled it back, and is handled below; a lost connection leaves the outcome unknown,
          // but for a session the server ended because the transaction sat idle (rolled back) and
          // a COMMIT the driver never sent (its connection already broken). A read-only
          // transaction changed nothing either way.
          if (e instanceof Error && NOT_SENT.test(e.message)) throw this.#endedIdle(client, e) ?? lostBeforeCommit(FIRST_ERROR.get(client) ?? e, this.location);
          throw this.#endedIdle(client, e) ?? (!options.readOnly && isDriverError(e) && classifyPostgresError(e, this.location).code === 'STORAGE_UNAVAILABLE' ? commitOutcomeUnknown(e, this.location) : e);
        }
        if (committed.command === 'ROLLBACK') throw abortedAtCommit(this.location);
        return result;
      } catch (e) {
        try {
          await this.#watched(client, () => client.query('ROLLBACK'));
        } catch (rollbackError) {
          broken = rollbackError as Error;
        }
        // The driver's code, also under a statement's error already made botstate's (see #executor).
        const code = (e instanceof BotstateError ? (e.cause as { code?: unknown } | undefined) : (e as { code?: unknown }))?.code;
        if (typeof code === 'string' && RETRYABLE.has(code) && attempt < MAX_ATTEMPTS) {
          await sleep(Math.random() * 2 ** attempt);
          continue;
        }
        // The driver's errors become botstate's; the caller's own errors pass through as they are.
        throw this.#endedIdle(client, e) ?? (isDriverError(e) ? classifyPostgresError(e, this.location) : e);
      } finally {
        client.release(broken);
      }
    }
  }

  /**
   * The BEGIN of a transaction, with the session settings botstate's statements depend on set
   * again for the transaction, in the same round trip (~10 µs more per transaction, measured on this
   * machine kind): a tx refuses a statement that would change them for the session, but a function
   * the caller's SQL calls may still do it (set_config(…, false) in its body), and every later
   * transaction on that pooled connection would then read another schema's tables or commit
   * without waiting for the disk. On a read-only store (every transaction a read), a query follows
   * too: once a transaction has taken its snapshot, PostgreSQL refuses to make it read-write (SET
   * TRANSACTION READ WRITE, set_config('transaction_read_only', …), which a tx allows as the first
   * statement of a body), so it stays read-only to its end.
   */
  #begin(options: TransactionOptions): string {
    const begin = `${options.readOnly ? 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY' : 'BEGIN'}; ${this.#settings}`;
    return this.readOnly ? `${begin}; SELECT 1` : begin;
  }

  /**
   * When the server ended `client`'s session because its transaction sat idle past
   * idleTransactionTimeoutMs (25P03), the error `e` that followed (the connection's, or a
   * statement's or COMMIT's on the broken client) says so: nothing of the transaction was written.
   * Undefined otherwise, and for an error of the caller's own.
   */
  #endedIdle(client: pg.PoolClient, e: unknown): StorageError | undefined {
    const first = FIRST_ERROR.get(client) as { code?: unknown } | undefined;
    if (first?.code !== '25P03') return undefined;
    if (!(isDriverError(e) || e === first || (e instanceof BotstateError && e.code === 'STORAGE_UNAVAILABLE'))) return undefined;
    return new StorageError('STORAGE_BUSY', `${this.location}: the transaction waited for its caller longer than idleTransactionTimeoutMs (${this.#idleTransactionTimeoutMs} ms), and the server ended it: nothing of it was written`, {
      hint: 'keep slow work (network calls, long computations) out of store.transaction, or raise the idleTransactionTimeoutMs option',
      cause: first,
    });
  }

  async lockForMigration(tx: Executor): Promise<void> {
    // A migration waits for another process's migration, and for the table locks its DDL needs,
    // as long as it takes: a lock_timeout (the CLI's 5 s) is for rows a stalled program holds.
    await tx.exec('SET LOCAL lock_timeout = 0');
    // A transaction-level advisory lock: held until this migration step commits or rolls back,
    // on the step's own connection (so a pool of one connection cannot deadlock on it).
    await tx.get('SELECT pg_advisory_xact_lock(?::bigint) AS locked', [lockKey(`botstate:migrate:${this.schema}`)]);
    await tx.exec(`CREATE SCHEMA IF NOT EXISTS "${this.schema}"`);
  }

  async hasTable(tx: Executor, name: string): Promise<boolean> {
    const sql = 'SELECT 1 AS present FROM information_schema.tables WHERE table_schema = ? AND table_name = ?';
    return (await tx.get(sql, [this.schema, name])) !== undefined;
  }

  /** A lost connection is replaced by the pool: nothing here fails for good. */
  readonly failure = undefined;

  get closed(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Refuses new transactions, waits for those begun before (as on SQLite: a call made before
   * close() completes), then ends the pool, once; later calls wait for the same end.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#active > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
      this.#ended = true;
      await this.#pool.end();
    })();
    return this.#closing;
  }

  async #connect(): Promise<pg.PoolClient> {
    if (this.#ended) throw closedStore(this.location);
    try {
      return await this.#pool.connect();
    } catch (e) {
      throw classifyPostgresError(e, this.location);
    }
  }

  #executor(client: pg.PoolClient): Executor {
    // A statement's failure is botstate's error (as on SQLite), the driver's kept as its cause.
    const botstates = (e: unknown) => {
      if (this.readOnly && isReadOnlyRefusal(e)) throw readOnlyStore(this.location, e);
      if (!isDriverError(e)) throw e;
      const error = classifyPostgresError(e, this.location);
      // The session is gone (before the COMMIT, which only the transaction sends): so is the transaction.
      throw error.code === 'STORAGE_UNAVAILABLE' ? lostBeforeCommit(FIRST_ERROR.get(client) ?? e, this.location) : error;
    };
    const query = (sql: string, params: readonly SqlParam[] | undefined) => {
      const { text, name } = this.#prepared(sql);
      return this.#watched(client, () => client.query({ text, ...(name === undefined ? {} : { name }), values: params as unknown[] | undefined })).catch(botstates);
    };
    return {
      all: async (sql, params) => (await query(sql, params)).rows,
      get: async (sql, params) => (await query(sql, params)).rows[0],
      run: async (sql, params) => (await query(sql, params)).rowCount ?? 0,
      exec: async (sql) => void (await this.#watched(client, () => client.query(sql)).catch(botstates)),
    };
  }

  /**
   * Runs one statement of `client`'s, watched: a connection that a middlebox stopped passing
   * while it kept both ends' TCP connections up (a proxy or firewall gone wrong) never answers,
   * and TCP does not notice. A statement unanswered for stallCheckMs is asked about (see
   * #checkStalled), again every stallCheckMs while it waits: a lock wait or a long query is the
   * server at work, and goes on as long as it takes.
   */
  async #watched<T>(client: pg.PoolClient, run: () => Promise<T>): Promise<T> {
    let answered = false;
    const timer = setInterval(() => void this.#checkStalled(client, () => answered), this.#stallCheckMs);
    timer.unref();
    try {
      return await run();
    } finally {
      answered = true;
      clearInterval(timer);
    }
  }

  /**
   * Asks the server, on a connection of its own, what `client`'s backend is doing. The connection
   * is taken for lost only when its backend (the same pid and start time: not another session on
   * another server) is found idle, in an idle state the server names, since at least
   * stallCheckMs, at two probes in a row that see the same idle spell, while the statement is
   * still unanswered: it never reached the backend or its answer never came back. The backend is
   * then ended (its transaction rolled back, its locks let go) and the connection broken, so that
   * the statement fails (STORAGE_UNAVAILABLE; a COMMIT's outcome is then unknown, as for any
   * connection lost while committing) and the pool replaces it. Anything else waits, asked about
   * again: a backend at work (a lock wait, a long query, an answer still being written), one not
   * found (gone, where TCP keepalive finds the dead socket; another server; a pooler in front, whose
   * sessions botstate cannot name), a state the server does not track, a server that cannot be asked.
   */
  async #checkStalled(client: pg.PoolClient, answered: () => boolean): Promise<void> {
    const backend = BACKEND.get(client);
    if (backend === undefined || this.#probing.has(client) || this.#ended) return;
    this.#probing.add(client);
    const probe = new pg.Client({ ...this.#probeConfig, query_timeout: this.#stallCheckMs, keepAlive: true });
    probe.on('error', () => {});
    try {
      await probe.connect();
      // Not to keep a process that is ending alive.
      internals(probe).connection.stream.unref();
      const { rows } = await probe.query<{ changed: string; idle: boolean }>(
        `SELECT state_change::text AS changed,
           state IN ('idle', 'idle in transaction', 'idle in transaction (aborted)')
             AND state_change < now() - make_interval(secs => $3::float8 / 1000) AS idle
         FROM pg_stat_activity WHERE pid = $1 AND backend_start::text = $2`,
        [backend.pid, backend.started, this.#stallCheckMs],
      );
      const row = rows[0];
      if (answered() || row === undefined || row.idle !== true) return void SUSPECT.delete(client);
      if (SUSPECT.get(client) !== row.changed) return void SUSPECT.set(client, row.changed);
      await probe.query('SELECT pg_terminate_backend($1)', [backend.pid]).catch(() => {});
      if (answered()) return;
      internals(client).connection.stream.destroy(new Error(LOST_ON_THE_WAY));
    } catch {
      // The server could not be asked: the statement waits on, and is asked about again.
    } finally {
      this.#probing.delete(client);
      // Not awaited: over a network that has just failed, ending may wait long; the socket goes.
      void probe.end().catch(() => {});
      setTimeout(() => internals(probe).connection.stream.destroy(), 1000).unref();
    }
  }

  /**
   * `?` placeholders become `$n` (outside quotes and comments), and each distinct statement gets a
   * server-side prepared name, up to MAX_PREPARED of them: botstate's own statements, a few dozen
   * constant texts, come first; beyond that (a caller's SQL with values written into it is seldom
   * seen twice) a statement is sent unnamed, so that neither this map nor every pooled
   * connection's prepared statements grow without end.
   */
  #prepared(sql: string): { text: string; name: string | undefined } {
    const entry = this.#names.get(sql);
    if (entry !== undefined) return entry;
    const text = numberedPlaceholders(sql);
    if (this.#names.size >= MAX_PREPARED) return { text, name: undefined };
    const named = { text, name: `bs${this.#names.size}` };
    this.#names.set(sql, named);
    return named;
  }
}

/**
 * True if the schema has tables and none of them is botstate's schema_migrations (known by its
 * columns: other tools name a table so as well). botstate's tables would otherwise go in beside
 * another application's, as SQLite refuses for a file.
 */
async function holdsForeignTables(pool: pg.Pool, schema: string): Promise<boolean> {
  const { rows } = await pool.query<{ table_name: string; columns: string[] | null }>(
    `SELECT t.table_name,
       (SELECT array_agg(c.column_name::text) FROM information_schema.columns c
         WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name) AS columns
     FROM information_schema.tables t WHERE t.table_schema = $1`,
    [schema],
  );
  if (rows.length === 0) return false;
  const migrations = rows.find((r) => r.table_name === 'schema_migrations');
  if (migrations === undefined) return true;
  const columns = new Set(migrations.columns ?? []);
  return !VERSION_COLUMNS.every((c) => columns.has(c));
}

/** What pg 8 keeps on a client and the watchdog reads: its backend's pid, and its socket. */
function internals(client: pg.Client): { processID: number | null; connection: { stream: Socket } } {
  return client as unknown as { processID: number | null; connection: { stream: Socket } };
}

/**
 * Which backend a pooled connection is (see #checkStalled): its pid and start time, so that a
 * probe reaching another server (a failover, a balancer), where the same pid may be another
 * session, finds nothing there rather than the wrong one. Asked once, before the connection's
 * first BEGIN (outside any transaction: a failure here aborts nothing, and the BEGIN after it
 * finds a broken connection out as usual).
 */
async function identify(client: pg.PoolClient): Promise<void> {
  try {
    const { rows } = await client.query<{ started: string }>('SELECT backend_start::text AS started FROM pg_stat_get_activity(pg_backend_pid())');
    const pid = internals(client).processID;
    if (pid !== null && rows[0]?.started) BACKEND.set(client, { pid, started: rows[0].started });
  } catch {
    // Unnamed: the watchdog leaves this connection alone.
  }
}

function lockKey(label: string): string {
  return createHash('sha256').update(label).digest().readBigInt64BE(0).toString();
}

const INT8 = 20;
const NUMERIC = 1700;
const TIMESTAMPTZ = 1184;
const JSON_OID = 114;
const JSONB = 3802;

function typeParser(oid: number, format?: string): (value: string) => unknown {
  switch (oid) {
    case INT8:
      return Number;
    case NUMERIC:
      return canonicalNumeric;
    case TIMESTAMPTZ:
      return isoFromPg;
    case JSON_OID:
    case JSONB:
      return (text) => text;
    default:
      return pg.types.getTypeParser(oid, format as 'text');
  }
}

/** NUMERIC text without insignificant trailing zeros, so both engines return the same string. */
function canonicalNumeric(text: string): string {
  if (!text.includes('.')) return text;
  const trimmed = text.replace(/\.?0+$/, '');
  return trimmed === '-0' ? '0' : trimmed;
}

const PG_TIME = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))?\+00$/;
/** `2026-11-22 01:02:03.45+00` (TimeZone=UTC, DateStyle=ISO) → `2026-11-22T01:02:03.450Z`. */
function isoFromPg(text: string): string {
  const m = PG_TIME.exec(text);
  if (!m) {
    // infinity, -infinity, a BC date: no ISO time says it. The server's text is returned as it
    // is, for the reader to refuse (a job row is STORAGE_CORRUPT), instead of a RangeError here,
    // inside pg's row parsing, failing every row of the query.
    const ms = Date.parse(text);
    return Number.isNaN(ms) ? text : new Date(ms).toISOString();
  }
  return `${m[1]}T${m[2]}.${(m[3] ?? '').padEnd(3, '0').slice(0, 3)}Z`;
}

/**
 * The caller caught a statement's error in the transaction and went on (botstate's own calls run
 * under savepoints): the caller's SQL, not a failed database, as a 25P02 after it is.
 */
function abortedAtCommit(where: string): ValidationError {
  return new ValidationError('INVALID_ARGUMENT', `${where}: PostgreSQL rolled the transaction back at COMMIT, because a statement in it failed (an error caught inside a transaction still aborts it there); nothing of it was written`, {
    hint: 'run SQL that may fail in a nested store.transaction (a savepoint; none in an atomic one), or let its error end the transaction',
  });
}

/** An error from pg or the network under it, as opposed to one thrown by the caller's code. */
function isDriverError(e: unknown): boolean {
  if (e instanceof pg.DatabaseError) return true;
  const { first } = firstError(e);
  const code = (first as { code?: unknown })?.code;
  if (typeof code === 'string' && (unavailableErrno(first) || /^[0-9A-Z]{5}$/.test(code))) return true;
  return first instanceof Error && CONNECTION_LOST.test(first.message);
}

/** A network errno of a server that cannot be reached (ENOENT and EACCES only from a connect: a caller's own file errors are theirs). */
function unavailableErrno(e: unknown): boolean {
  const { code, syscall } = (e ?? {}) as { code?: unknown; syscall?: unknown };
  if (typeof code !== 'string') return false;
  return UNAVAILABLE_ERRNO.has(code) || (CONNECT_ERRNO.has(code) && syscall === 'connect');
}

/**
 * pg's own messages (no SQLSTATE, no errno) for a connection that never came or is gone: a
 * server that ended the session (pg_terminate_backend, a restart), a client the pool had broken.
 */
const CONNECTION_LOST = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|is not queryable/i;

/** A server that cannot be reached: refused, unknown, unrouted, gone mid-way. */
const UNAVAILABLE_ERRNO = new Set([
  'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'ECONNRESET', 'ECONNABORTED', 'EHOSTUNREACH', 'EHOSTDOWN',
  'ENETUNREACH', 'ENETDOWN', 'EADDRNOTAVAIL', 'EPIPE',
]);

/** From a connect only: a Unix-socket folder (?host=/path) with no server's socket in it, or one not allowed. */
const CONNECT_ERRNO = new Set(['ENOENT', 'EACCES']);

/**
 * What to do about a server that could not be used: one that ended a working connection (an
 * administrator, a restart, a failover) is not a wrong URL; a pool that waited too long for a
 * connection may have had every one busy.
 */
function unavailableHint(code: string, message: string): string {
  // pg's "Connection terminated due to connection timeout": a connect that got no answer, not a session ended.
  if (/due to connection timeout/i.test(message)) {
    return "the server did not answer the connection in time (the URL's connect_timeout, else 5 s): check that it runs and that the host and port reach it (a firewall may drop the packets), or raise connect_timeout";
  }
  if (message.startsWith(LOST_ON_THE_WAY)) {
    return 'the network lost the connection without closing it (a NAT or firewall that forgot it, a failover), so it was given up: retry; if it goes on, look at what lies between here and the server';
  }
  if (code === '57P01' || code === '57P02' || /terminat/i.test(message)) {
    return "the server ended the connection (an administrator's pg_terminate_backend, a restart or a failover): retry; if it goes on, see the server's log";
  }
  if (/timeout exceeded when trying to connect/i.test(message)) {
    return 'no connection came in time: every connection of the pool was in use (transactions waiting on locks, say), or the server did not answer; retry, and look for long waits in pg_stat_activity';
  }
  return CHECK_THE_URL;
}

const CHECK_THE_URL = 'check that the server is running and that the URL, user and database are right';

/**
 * SQLSTATEs of a session the server ended or would not start: admin_shutdown (pg_terminate_backend,
 * a fast shutdown), crash_shutdown, cannot_connect_now (starting up), idle_session_timeout,
 * idle_in_transaction_session_timeout and transaction_timeout.
 */
const SESSION_ENDED_CODES = new Set(['57P01', '57P02', '57P03', '57P05', '25P03', '25P04']);

/** The error that says what happened (the first of an AggregateError: a connect to several addresses), and its text. */
function firstError(e: unknown): { first: unknown; message: string } {
  const first = e instanceof AggregateError && e.errors.length > 0 ? e.errors[0] : e;
  return { first, message: first instanceof Error ? first.message : String(first) };
}

/** pg's refusal of a query on a client whose connection broke or was closed: nothing was sent. */
const NOT_SENT = /is not queryable/;

/**
 * The session was lost before the transaction's COMMIT was sent (`e`: what the connection said
 * first, else the statement's error): the server rolled the transaction back. The URL worked.
 */
function lostBeforeCommit(e: unknown, where: string): StorageError {
  const { first, message } = firstError(e);
  const hint = unavailableHint(String((first as { code?: unknown })?.code ?? ''), message);
  return new StorageError('STORAGE_UNAVAILABLE', `the connection to ${where} was lost during the transaction, before its COMMIT (${message}): nothing of it was written`, {
    hint: hint === CHECK_THE_URL ? "the connection broke: retry (the store opens a new one); if it goes on, see the server's log" : hint,
    cause: e,
  });
}

/**
 * A COMMIT whose answer never came (the connection was lost while committing): the server may
 * have committed the transaction or not, and nothing here can tell. Not retried.
 */
function commitOutcomeUnknown(e: unknown, where: string): StorageError {
  const { message } = firstError(e);
  return new StorageError('STORAGE_UNAVAILABLE', `the connection to ${where} was lost while committing (${message}): the change may have been made or not`, {
    hint: 'look at what it was to change (botstate status, list or trades) before you do it again',
    cause: e,
  });
}

/** Maps pg's errors (SQLSTATE or errno) onto botstate's error codes. */
export function classifyPostgresError(e: unknown, where: string): BotstateError {
  if (e instanceof BotstateError) return e;
  const { first, message } = firstError(e);
  const code = String((first as { code?: unknown })?.code ?? (e as { code?: unknown })?.code ?? '');
  if (code === '55P03') {
    // lock_timeout: "canceling statement due to lock timeout" (said before the /timeout/ test below).
    return new StorageError('STORAGE_BUSY', `${where}: another session held a lock this needed past the lock timeout`, {
      hint: 'another transaction (a daemon, a migration, or a program of yours) holds a row or a table this needed; retry, or look for it in pg_stat_activity (wait_event_type Lock)',
      cause: e,
    });
  }
  if (code === '57014') {
    // query_canceled: a statement_timeout ran out, or another session cancelled it. The server is
    // fine (said before the /timeout/ test below, which is about connections).
    return new StorageError('STORAGE_BUSY', `${where}: a statement was cancelled (${message})`, {
      hint: 'a statement_timeout (in the URL, or the role\'s or server\'s setting) ended it: raise it or remove it; or another session cancelled it',
      cause: e,
    });
  }
  // The statement itself is wrong (a library caller's SQL in a transaction): not a failed database.
  // 42601 syntax error, 42P02 a $n with no value; 08P01 a bind message (before the class 08 test below) with too few or too many values.
  if (code === '42601' || code === '42P02' || (code === '08P01' && /\bbind message\b/.test(message))) {
    return invalidSql(`PostgreSQL refused the statement at ${where}: ${message} [${code}]`, e);
  }
  // Class 22, a value the statement cannot take (a division by zero, 'abc'::numeric, an
  // overflow), and class 42, a statement that breaks SQL's rules (a type mismatch, an ambiguous
  // column, a GROUP BY error, a function or operator that does not exist for its arguments):
  // the caller's SQL too, before the /timeout/ test below (a value's text may say "timeout").
  // Not a missing object (MISSING_CODES: maybe a schema changed outside botstate, below), nor a
  // privilege the role lacks (42501: how the database was set up).
  if ((code.startsWith('22') || code.startsWith('42')) && code.length === 5 && !MISSING_CODES.has(code) && code !== '42501') {
    return invalidSql(`PostgreSQL refused the statement at ${where}: ${message} [${code}]`, e, REFUSED_SQL_HINT);
  }
  // in_failed_sql_transaction: a statement of this transaction failed before (its error caught),
  // and PostgreSQL runs nothing more in it. That statement's error said what went wrong.
  if (code === '25P02') {
    return new ValidationError('INVALID_ARGUMENT', `an earlier statement of this transaction at ${where} failed, and PostgreSQL refuses every statement after it until the transaction ends (${message}) [${code}]`, {
      hint: "run SQL that may fail in a nested store.transaction (a savepoint; none in an atomic one), or let its error end the transaction: a caught error does not undo PostgreSQL's abort",
      cause: e,
    });
  }
  if (
    unavailableErrno(first) ||
    code.startsWith('08') ||
    code.startsWith('28') ||
    code === '3D000' ||
    SESSION_ENDED_CODES.has(code) ||
    // The driver's and the socket's own errors carry no SQLSTATE: their text says what happened. A
    // server error's text is its own (a caller's RAISE 'quote request timeout' is no lost session).
    (code.length !== 5 && (/timeout|terminated/i.test(message) || CONNECTION_LOST.test(message)))
  ) {
    return new StorageError('STORAGE_UNAVAILABLE', `cannot use the PostgreSQL server at ${where}: ${message}`, {
      hint: unavailableHint(code, message),
      cause: e,
    });
  }
  if (RETRYABLE.has(code)) {
    return new StorageError('STORAGE_BUSY', `PostgreSQL kept aborting the transaction (${message}) at ${where}`, {
      hint: 'too many writers contend for the same rows; retry later',
      cause: e,
    });
  }
  // Class 23: integrity constraints; P0001: RAISE EXCEPTION, as the audit log's append-only trigger does.
  if (code.startsWith('23') || code === 'P0001') return constraintViolation(message, code, e);
  if (code.length === 5) {
    const missing = MISSING_CODES.has(code);
    return new StorageError('STORAGE_FAILED', `PostgreSQL failed at ${where}: ${message} [${code}]`, { ...(missing ? { hint: MISSING_HINT } : {}), cause: e });
  }
  // TLS set up by the URL's sslmode: a server without SSL, a certificate refused, a bad mode.
  if (/\bSSL\b|\bTLS\b|certificate|sslmode/i.test(message)) {
    return new StorageError('STORAGE_UNAVAILABLE', `cannot connect to the PostgreSQL server at ${where}: ${message}`, {
      hint: "check the URL's sslmode against the server's SSL settings: every mode but disable needs SSL (see docs/cli.md for what each checks)",
      cause: e,
    });
  }
  return new BotstateError('INTERNAL', `unexpected error at ${where}: ${message}`, { cause: e });
}
