import { closeSync, existsSync, openSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { BotstateError, NotFoundError, StorageError } from '../../errors.ts';
import type {
  Adapter,
  Capabilities,
  Dialect,
  Durability,
  Executor,
  SqlParam,
  TransactionOptions,
} from '../adapter.ts';
import { Mutex } from '../mutex.ts';

export interface SqliteOptions {
  readonly path: string;
  readonly durability: Durability;
  readonly busyTimeoutMs: number;
  /** Create the file if it does not exist (with mode 0600). */
  readonly create: boolean;
  /** In `power` mode, let concurrent write transactions share one COMMIT. */
  readonly groupCommit: boolean;
}

const DIALECT: Dialect = Object.freeze({ forUpdate: '', skipLocked: () => '' });
const CAPABILITIES: Capabilities = Object.freeze({ concurrentWriters: false });

type Statement = Database.Statement<unknown[], unknown>;

interface Queued {
  fn: (tx: Executor) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * SQLite through better-sqlite3: one connection, WAL, `BEGIN IMMEDIATE` for writes.
 *
 * better-sqlite3 is synchronous, so a transaction's statements run back to back with no I/O
 * wait; the async surface exists only so that the same domain code runs on PostgreSQL.
 * A mutex keeps one transaction on the connection at a time, so concurrent callers in this
 * process queue instead of seeing each other's uncommitted rows.
 */
export class SqliteAdapter implements Adapter {
  readonly engine = 'sqlite' as const;
  readonly dialect = DIALECT;
  readonly capabilities = CAPABILITIES;
  readonly durability: Durability;
  readonly location: string;

  readonly #db: Database.Database;
  readonly #statements = new Map<string, Statement>();
  readonly #mutex = new Mutex();
  readonly #executor: Executor;
  readonly #busyTimeoutMs: number;
  readonly #groupCommit: boolean;
  readonly #queue: Queued[] = [];
  #leading = false;
  #closed = false;
  #commits = 0;
  #checkpointer: Worker | undefined;

  private constructor(db: Database.Database, options: SqliteOptions) {
    this.#db = db;
    this.durability = options.durability;
    this.location = options.path;
    this.#busyTimeoutMs = options.busyTimeoutMs;
    this.#groupCommit = options.durability === 'power' && options.groupCommit;
    this.#executor = {
      all: (sql, params) => this.#call(() => this.#prepare(sql).all(...bind(params)) as never),
      get: (sql, params) => this.#call(() => this.#prepare(sql).get(...bind(params)) as never),
      run: (sql, params) => this.#call(() => this.#prepare(sql).run(...bind(params)).changes),
      exec: (sql) => this.#call(() => void this.#db.exec(sql)),
    };
  }

  /**
   * Opens the database. Several processes opening a new file at once contend for the locks that
   * switching it to WAL takes (SQLite may answer SQLITE_BUSY at once there rather than wait): the
   * whole open is then retried after a short async backoff, until `busyTimeoutMs`.
   */
  static async open(options: SqliteOptions): Promise<SqliteAdapter> {
    const deadline = performance.now() + options.busyTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return SqliteAdapter.#openOnce(options);
      } catch (e) {
        if (!(e instanceof BotstateError && e.code === 'STORAGE_BUSY') || performance.now() >= deadline) throw e;
        await sleep(Math.min(50, 2 ** attempt) * (0.5 + Math.random()));
      }
    }
  }

  static #openOnce(options: SqliteOptions): SqliteAdapter {
    const { path } = options;
    if (path !== ':memory:') prepareFile(path, options.create);
    let db: Database.Database | undefined;
    try {
      db = new Database(path, { timeout: options.busyTimeoutMs });
      // Before anything writes (switching to WAL rewrites the header): refuse another
      // application's database.
      if (isForeign(db)) {
        throw new StorageError('STORAGE_UNAVAILABLE', `${path} holds another application's tables, not botstate's`, {
          hint: 'point --db at a new file or at a botstate database',
        });
      }
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal' && path !== ':memory:') {
        throw new StorageError('STORAGE_FAILED', `${path} could not be switched to WAL mode (got ${String(mode)})`, {
          hint: 'put the database on a local file system that supports shared memory',
        });
      }
      db.pragma(`synchronous = ${options.durability === 'power' ? 'FULL' : 'NORMAL'}`);
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 0');
      return new SqliteAdapter(db, options);
    } catch (e) {
      db?.close();
      throw classifySqliteError(e, path);
    }
  }

  /**
   * Another process holding the write lock makes BEGIN fail at once with SQLITE_BUSY (the
   * connection's busy_timeout is 0); the transaction is then retried after an async backoff
   * until `busyTimeoutMs` has passed. Waiting asynchronously keeps this process's event loop
   * free, where SQLite's own busy handler would block it.
   */
  async transaction<T>(fn: (tx: Executor) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    if (this.#groupCommit && !options.readOnly && !options.exclusive) return this.#grouped(fn);
    const deadline = performance.now() + this.#busyTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#attempt(fn, options);
      } catch (e) {
        if (isBusy(e) && performance.now() < deadline) {
          await sleep(Math.min(50, 2 ** attempt) * (0.5 + Math.random()));
          continue;
        }
        // SQLite's errors become botstate's; the caller's own errors pass through as they are.
        throw isSqliteError(e) ? classifySqliteError(e, this.location) : e;
      }
    }
  }

  /**
   * Group commit for `power` mode, where every COMMIT costs an fsync: write transactions that
   * arrive while one is running are queued, then run back to back inside one SQLite
   * transaction, each under its own SAVEPOINT (so one that throws is rolled back alone), and
   * made durable by a single COMMIT. No caller is answered before that COMMIT returns, so
   * every answered transaction is on disk, as without batching; a lone transaction is not
   * delayed.
   */
  #grouped<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      if (this.#queue.length === 1 && !this.#leading) void this.#lead();
    });
  }

  async #lead(): Promise<void> {
    this.#leading = true;
    try {
      while (this.#queue.length > 0) {
        const wait = this.#mutex.acquire();
        if (wait) await wait;
        const batch = this.#queue.splice(0);
        try {
          await this.#commitBatch(batch);
        } finally {
          this.#mutex.release();
        }
      }
    } finally {
      this.#leading = false;
    }
  }

  async #commitBatch(batch: Queued[]): Promise<void> {
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      if (this.#closed) throw new StorageError('STORAGE_UNAVAILABLE', `the store at ${this.location} is closed`);
      const deadline = performance.now() + this.#busyTimeoutMs;
      for (let attempt = 0; ; attempt++) {
        try {
          this.#prepare('BEGIN IMMEDIATE').run();
          break;
        } catch (e) {
          if (!isBusy(e) || performance.now() >= deadline) throw classifySqliteError(e, this.location);
          await sleep(Math.min(50, 2 ** attempt) * (0.5 + Math.random()));
        }
      }
      for (const item of batch) {
        this.#prepare('SAVEPOINT grouped').run();
        try {
          outcomes.push({ ok: true, value: await item.fn(this.#executor) });
          this.#prepare('RELEASE grouped').run();
        } catch (e) {
          this.#prepare('ROLLBACK TO grouped').run();
          this.#prepare('RELEASE grouped').run();
          outcomes.push({ ok: false, error: isBusy(e) ? classifySqliteError(e, this.location) : e });
        }
      }
      this.#prepare('COMMIT').run();
      this.#committed();
    } catch (e) {
      if (this.#db.inTransaction) this.#prepare('ROLLBACK').run();
      const error = classifySqliteError(e, this.location);
      for (const item of batch) item.reject(error);
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }

  async #attempt<T>(fn: (tx: Executor) => Promise<T>, options: TransactionOptions): Promise<T> {
    const wait = this.#mutex.acquire();
    if (wait) await wait;
    try {
      if (this.#closed) throw new StorageError('STORAGE_UNAVAILABLE', `the store at ${this.location} is closed`);
      this.#prepare(options.readOnly ? 'BEGIN DEFERRED' : options.exclusive ? 'BEGIN EXCLUSIVE' : 'BEGIN IMMEDIATE').run();
      let result: T;
      try {
        result = await fn(this.#executor);
      } catch (e) {
        if (this.#db.inTransaction) this.#prepare('ROLLBACK').run();
        throw e;
      }
      this.#prepare('COMMIT').run();
      this.#committed();
      return result;
    } catch (e) {
      if (this.#db.inTransaction) this.#prepare('ROLLBACK').run();
      throw e;
    } finally {
      this.#mutex.release();
    }
  }

  async lockForMigration(_tx: Executor): Promise<void> {
    // Migration transactions are BEGIN EXCLUSIVE: that is the lock on SQLite.
  }

  async hasTable(tx: Executor, name: string): Promise<boolean> {
    return (await tx.get(`SELECT 1 AS present FROM sqlite_master WHERE type = 'table' AND name = ?`, [name])) !== undefined;
  }

  /**
   * A connection that keeps writing gets its checkpoints moved to a worker thread (after
   * CHECKPOINT_AFTER commits, so that a short-lived CLI command does not start a thread).
   */
  #committed(): void {
    if (this.#checkpointer !== undefined || ++this.#commits < CHECKPOINT_AFTER || this.location === ':memory:') return;
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    this.#checkpointer = new Worker(new URL(`./sqlite-checkpoint-worker${ext}`, import.meta.url), {
      workerData: { path: this.location, intervalMs: CHECKPOINT_INTERVAL_MS },
    });
    this.#checkpointer.unref();
    this.#checkpointer.on('error', () => {
      // Without the worker, SQLite's own automatic checkpoints take over again.
      this.#db.pragma('wal_autocheckpoint = 1000');
    });
    this.#db.pragma('wal_autocheckpoint = 0');
  }

  async #stopCheckpointer(): Promise<void> {
    const worker = this.#checkpointer;
    if (!worker) return;
    this.#checkpointer = undefined;
    await new Promise<void>((resolve) => {
      const done = () => resolve();
      worker.once('message', done);
      worker.once('exit', done);
      worker.once('error', done);
      worker.postMessage('stop');
    });
    await worker.terminate();
  }

  async close(): Promise<void> {
    // Transactions queued for a group commit before close() still commit.
    while (this.#leading || this.#queue.length > 0) await sleep(1);
    const wait = this.#mutex.acquire();
    if (wait) await wait;
    try {
      if (this.#closed) return;
      this.#closed = true;
      await this.#stopCheckpointer();
      this.#db.close();
    } finally {
      this.#mutex.release();
    }
  }

  #prepare(sql: string): Statement {
    let stmt = this.#statements.get(sql);
    if (stmt === undefined) {
      stmt = this.#db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  #call<T>(f: () => T): Promise<T> {
    try {
      return Promise.resolve(f());
    } catch (e) {
      // SQLITE_BUSY stays raw so that transaction() can tell it apart and retry.
      return Promise.reject(isBusy(e) ? e : classifySqliteError(e, this.location));
    }
  }
}

function isSqliteError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_');
}

function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED');
}

/** True if the database has tables and none of them is botstate's schema_migrations. */
function isForeign(db: Database.Database): boolean {
  const tables = db
    .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'`)
    .pluck()
    .all() as string[];
  return tables.length > 0 && !tables.includes('schema_migrations');
}

/** Commits after which a connection's checkpoints move to a worker thread. */
const CHECKPOINT_AFTER = 64;
const CHECKPOINT_INTERVAL_MS = 200;

const NO_PARAMS: readonly SqlParam[] = [];
function bind(params: readonly SqlParam[] | undefined): SqlParam[] {
  return (params ?? NO_PARAMS) as SqlParam[];
}

/** Creates the database file with mode 0600 so that other users cannot read the ledger. */
function prepareFile(path: string, create: boolean): void {
  if (existsSync(path)) {
    if (statSync(path).isDirectory()) {
      throw new StorageError('STORAGE_UNAVAILABLE', `${path} is a directory, not a database file`, {
        hint: 'pass the path of a file, for example --db ./botstate.db',
      });
    }
    return;
  }
  if (!create) {
    throw new NotFoundError('DATABASE_NOT_FOUND', `there is no database at ${path}`, {
      hint: 'start a job first (botstate start <token>) or pass --db with the right path',
    });
  }
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    throw new StorageError('STORAGE_UNAVAILABLE', `cannot create the database file ${path}: ${code ?? String(e)}`, {
      hint: 'check that the directory exists and is writable',
      cause: e,
    });
  }
}

/** Maps better-sqlite3's SqliteError codes onto botstate's error codes. */
export function classifySqliteError(e: unknown, where: string): BotstateError {
  if (e instanceof BotstateError) return e;
  const code = typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : '';
  const message = e instanceof Error ? e.message : String(e);
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED') {
    return new StorageError('STORAGE_BUSY', `${where} stayed locked by another connection past the busy timeout`, {
      hint: 'another process holds a long write transaction; retry, or raise --busy-timeout',
      cause: e,
    });
  }
  if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT' || code.startsWith('SQLITE_CORRUPT_')) {
    return new StorageError('STORAGE_CORRUPT', `${where} is not a usable SQLite database (${message})`, {
      hint: 'check the --db path; restore the file from a backup if it was damaged',
      cause: e,
    });
  }
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_PERM')) {
    return new StorageError('STORAGE_UNAVAILABLE', `cannot open ${where} for writing (${message})`, {
      hint: 'check the path and its permissions',
      cause: e,
    });
  }
  if (code.startsWith('SQLITE_')) {
    return new StorageError('STORAGE_FAILED', `SQLite failed on ${where}: ${message} [${code}]`, { cause: e });
  }
  return new BotstateError('INTERNAL', `unexpected error on ${where}: ${message}`, { cause: e });
}
