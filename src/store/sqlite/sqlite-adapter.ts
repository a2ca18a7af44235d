import { accessSync, closeSync, realpathSync, constants as fsConstants, existsSync, fchmodSync, fsyncSync, futimesSync, linkSync, lstatSync, openSync, readdirSync, rmSync, statSync, type Stats } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { VERSION_COLUMNS } from '../migrations/migration.ts';
import { BotstateError, closedStore, constraintViolation, invalidSql, MISSING_HINT, NotFoundError, readOnlyStore, REFUSED_SQL_HINT, StorageError, ValidationError } from '../../errors.ts';
import type {
  Adapter,
  Capabilities,
  Dialect,
  Durability,
  Executor,
  SqlParam,
  TransactionOptions,
} from '../adapter.ts';
import { pidExists } from '../instances.ts';
import { checkNotCompanion } from '../location.ts';
import { Mutex } from '../mutex.ts';
import { WalSync } from './wal-sync.ts';

export interface SqliteOptions {
  readonly path: string;
  readonly durability: Durability;
  readonly busyTimeoutMs: number;
  /** Create the file if it does not exist (with mode 0600). */
  readonly create: boolean;
  /** In `power` mode, let concurrent write transactions share one COMMIT and one fsync. */
  readonly groupCommit: boolean;
  /** Replaces the module of the group commit's fsync thread; for tests only (see WalSync). */
  readonly walSyncWorker?: URL;
  /** WAL length, in frames, past which the writer finishes a checkpoint itself; for tests only. */
  readonly longWalFrames?: number;
  /**
   * The caller only reads: the file is opened read-only, as it is (in WAL mode or not: a backup
   * stays out of it), so that SQLite refuses every write; the adapter runs every transaction as a
   * read and refuses a write with readOnlyStore's error. A file this user may not write, or in a
   * folder it may not write (a backup kept read-only, another user's database), is read so too.
   * No file is created (`create` does not apply). An in-memory database is opened with
   * `query_only` instead.
   */
  readonly readOnly?: boolean;
}

const DIALECT: Dialect = Object.freeze({ forUpdate: '', skipLocked: () => '', writableCte: false, pendingTradesFrom: 'trades INDEXED BY trades_pending' });
const CAPABILITIES: Capabilities = Object.freeze({ concurrentWriters: false });

type Statement = Database.Statement<unknown[], unknown>;

interface Queued {
  fn: (tx: Executor) => Promise<unknown>;
  /** When it was queued (performance.now()): one still queued past the busy timeout is refused. */
  readonly queuedAt: number;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Grouped transactions run in one SQLite transaction, with what each returned or threw. */
interface Batch {
  readonly items: Queued[];
  readonly outcomes: Outcome[];
  /** Each transaction under its own SAVEPOINT, after one of the batch has thrown (see #runInBatch). */
  guarded: boolean;
  /** The pump gave callers on their way one turn of the event loop to join (see #pump). */
  waited?: boolean;
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
  readonly readOnly: boolean;

  readonly #db: Database.Database;
  readonly #statements = new Map<string, Statement>();
  readonly #mutex = new Mutex();
  readonly #executor: Executor;
  readonly #busyTimeoutMs: number;
  /** Set in `power` mode with group commit (on a file): then the fsyncs are ours, see WalSync. */
  readonly #walSync: WalSync | undefined;
  readonly #queue: Queued[] = [];
  /** Committed batches waiting for their fsync, oldest first. */
  readonly #syncing: Array<Batch & { readonly commit: bigint }> = [];
  /** #watchSyncs waits for the next fsync to end. */
  #watchingSyncs = false;
  /** Grouped transactions not yet answered: queued, running, or committed and waiting for their fsync. */
  #inFlight = 0;
  #pumping = false;
  /** Refuses grouped transactions queued past the busy timeout (see #watchQueue). */
  #queueTimer: NodeJS.Timeout | undefined;
  /** A batch's BEGIN found the write lock taken by another connection and waits for it. */
  #waitingForLock = false;
  /** When the event loop last had a turn, as far as #turn saw (performance.now()). */
  #lastTurn = performance.now();
  #turnScheduled = false;
  /**
   * Settled once the transaction started before the latest one has queued for the connection:
   * each waits for it before its own turn and hold-back, so that transactions take the connection
   * in the order they were started. (A call that yielded its turn used to be overtaken by the
   * next, which found the turn just taken: a body awaiting something the earlier one does then
   * waited for ever.)
   */
  #entry: Promise<void> = Promise.resolve();
  /** Transactions between their start and their place in the mutex's queue (see #entry). */
  #entering = 0;
  #wake: (() => void) | undefined;
  #closed = false;
  #commits = 0;
  #checkpointer: Worker | undefined;
  /** The checkpoint thread failed or ended on its own: SQLite's automatic checkpoints are back. */
  #checkpointerGone = false;
  readonly #longWalFrames: number;
  /** [0] is set by the checkpoint thread when it found the WAL longer than #longWalFrames. */
  readonly #walLong = new Int32Array(new SharedArrayBuffer(4));
  /** Set when the writer's own checkpoint failed (an I/O error): nothing more is written. */
  #storageFailure: StorageError | undefined;
  /** `<db>-wait`: a process waiting for the write lock says so there (see #letWaitersIn). */
  readonly #waitPath: string | undefined;
  /** This connection's BEGIN found the write lock taken and it announced that it waits. */
  #announced = false;
  #waitersCheckedAt = Number.NEGATIVE_INFINITY;
  /**
   * Set from a BEGIN until this adapter COMMITs or rolls back: while it is set and SQLite has no
   * transaction open, SQLite ended the transaction itself (see #vanished).
   */
  #txOpen = false;
  /** Set when close() begins: no transaction is begun after it. */
  #closeRequested = false;
  /** Transactions of their own (not grouped) begun and not yet ended: close() waits for them. */
  #calls = 0;
  /**
   * Set, while #txOpen, once SQLite is known to have ended the transaction: after a statement
   * threw (a full disk or an I/O error rolls it back) or one that can end a transaction ran (see
   * #mayEndTx). Checked before every statement, instead of asking SQLite each time.
   */
  #txEnded = false;
  /** Prepared statements that can end a transaction without throwing (ROLLBACK, COMMIT, …). */
  readonly #endsTx = new WeakSet<Statement>();

  private constructor(db: Database.Database, options: SqliteOptions) {
    this.#db = db;
    this.durability = options.durability;
    this.location = options.path;
    this.readOnly = options.readOnly === true;
    this.#busyTimeoutMs = options.busyTimeoutMs;
    this.#longWalFrames = options.longWalFrames ?? LONG_WAL_FRAMES;
    // Beside the file itself, as SQLite keeps its -wal and -shm: a process that names it through a
    // symbolic link must see the same announcement as one that names it directly.
    this.#waitPath = options.path === ':memory:' ? undefined : `${realPath(options.path)}-wait`;
    this.#walSync = ownsFsync(options) ? new WalSync(options.path, options.walSyncWorker) : undefined;
    this.#executor = {
      all: (sql, params) => this.#call(sql, (stmt) => stmt.all(...bind(params)) as never),
      get: (sql, params) => this.#call(sql, (stmt) => stmt.get(...bind(params)) as never),
      run: (sql, params) => this.#call(sql, (stmt) => stmt.run(...bind(params)).changes),
      exec: (sql) => this.#call(undefined, () => void this.#db.exec(sql)),
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
        await backoff(attempt);
      }
    }
  }

  static #openOnce(options: SqliteOptions): SqliteAdapter {
    const { path } = options;
    // A reader leaves the file as it is, whether it may write it or not, in WAL mode or not (a
    // backup, which another user can read only while it stays out of WAL mode): opened read-only,
    // SQLite refuses every write on it. It creates none either.
    const readOnly = options.readOnly === true && path !== ':memory:';
    if (path !== ':memory:') prepareFile(path, options.create && !readOnly);
    let db: Database.Database | undefined;
    try {
      db = new Database(path, { timeout: options.busyTimeoutMs, ...(readOnly ? { readonly: true, fileMustExist: true } : {}) });
      // Before anything writes (switching to WAL rewrites the header): refuse another
      // application's database.
      if (isForeign(db)) {
        throw new StorageError('STORAGE_UNAVAILABLE', `${path} holds another application's tables, not botstate's`, {
          hint: 'point --db at a new file or at a botstate database',
        });
      }
      if (readOnly) {
        // Read as it is (in WAL mode or not): nothing here may write, the journal mode included.
        db.pragma('foreign_keys = ON');
        db.pragma('busy_timeout = 0');
        return new SqliteAdapter(db, { ...options, groupCommit: false });
      }
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      if (mode !== 'wal' && path !== ':memory:') {
        throw new StorageError('STORAGE_FAILED', `${path} could not be switched to WAL mode (got ${String(mode)})`, {
          hint: 'put the database on a local file system that supports shared memory',
        });
      }
      // `power` without group commit: SQLite fsyncs the WAL in every COMMIT. With group commit
      // that fsync is WalSync's, shared by the commits made before it.
      db.pragma(`synchronous = ${options.durability === 'power' && !ownsFsync(options) ? 'FULL' : 'NORMAL'}`);
      db.pragma('foreign_keys = ON');
      // REPLACE deletes the row it replaces: with this on, the audit log's delete trigger sees it.
      db.pragma('recursive_triggers = ON');
      db.pragma('busy_timeout = 0');
      // Savepoint and statement journals in memory: by default SQLite writes every page a
      // transaction changes under a savepoint to a temporary file first (once past 64 KiB),
      // which for a group-commit batch is as many writes as the WAL itself.
      db.pragma('temp_store = MEMORY');
      // When the WAL starts over, its file is cut back to this size (it keeps its largest size otherwise).
      db.pragma(`journal_size_limit = ${WAL_SIZE_LIMIT}`);
      // A read-only in-memory database (it can only be empty): SQLite cannot open one read-only.
      if (options.readOnly === true) db.pragma('query_only = ON');
      return new SqliteAdapter(db, options);
    } catch (e) {
      db?.close();
      const code = String((e as { code?: unknown }).code ?? '');
      if (readOnly && code === 'SQLITE_READONLY_ROLLBACK') {
        // A file in rollback mode that a writer left part-way (a crash): reading it needs its
        // journal rolled back first, which is a write.
        throw new StorageError('STORAGE_UNAVAILABLE', `cannot read ${path} without writing it: a writer stopped part-way through a change to it, and its ${basename(path)}-journal must be rolled back first`, {
          hint: 'open it once with a program that may write it (sqlite3, or a botstate command that writes), which rolls the change back, or read a copy made before',
          cause: e,
        });
      }
      if (readOnly && (code.startsWith('SQLITE_READONLY') || code.startsWith('SQLITE_CANTOPEN'))) {
        // The file itself may not be read (another user's, mode 0600): that, not its -shm file.
        if (!readable(path)) {
          throw new StorageError('STORAGE_UNAVAILABLE', `cannot read ${path}: permission denied (EACCES)`, { hint: DENIED_HINT, cause: e });
        }
        // A database in WAL mode is read through its -shm file, which SQLite must be able to
        // make or write beside it; a copy in rollback mode (db backup's) needs none.
        throw new StorageError('STORAGE_UNAVAILABLE', `cannot read ${path} as this user: it is in WAL mode, and reading it needs a ${basename(path)}-shm file beside it that this user may not make or write`, {
          hint: 'read it as the user that owns it, or read a copy that user makes (botstate db backup --to FILE)',
          cause: e,
        });
      }
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
    if (this.#closeRequested) throw closedStore(this.location);
    if (this.readOnly) {
      // Migrations: refused before anything runs. Any other runs as a read (BEGIN DEFERRED, no
      // write lock, no -wait file): a write in it is refused by SQLite, and said so (see #classify).
      if (options.exclusive) throw readOnlyStore(this.location);
      if (!options.readOnly) options = { readOnly: true };
    }
    if (this.#walSync && !options.readOnly && !options.exclusive) return this.#grouped(fn);
    // Counted until it ends: close() waits for it (it may be yielding a turn, or backing off for
    // another process's lock, before it takes the connection).
    this.#calls++;
    try {
      return await this.#ownTransaction(fn, options);
    } finally {
      this.#calls--;
    }
  }

  async #ownTransaction<T>(fn: (tx: Executor) => Promise<T>, options: TransactionOptions): Promise<T> {
    const deadline = performance.now() + this.#busyTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await this.#attempt(fn, options);
        this.#stopWaiting();
        // With group commit, what this transaction wrote or read may not be on disk yet.
        if (this.#walSync) await this.#walSync.durable(this.#walSync.requested);
        return result;
      } catch (e) {
        if (isBusy(e) && performance.now() < deadline) {
          // A read waits for recovery or a closing connection, not for the write lock: it does not announce.
          if (options.readOnly) await backoff(attempt);
          else await this.#waitForLock(attempt);
          continue;
        }
        this.#stopWaiting();
        // SQLite's errors become botstate's; the caller's own errors pass through as they are.
        throw isSqliteError(e) ? this.#classify(e) : e;
      }
    }
  }

  /**
   * Group commit for `power` mode, where every durable commit costs an fsync. Write
   * transactions go into a queue that one pump drains: it runs them back to back inside one
   * SQLite transaction (one that throws is rolled back alone, see #runInBatch), and commits
   * when the disk is free, that is when no fsync is in flight, and the batch holds at least
   * half of the transactions waiting (so that callers settle into two cohorts: one runs while
   * the other's fsync does) or nothing else is queued. While an fsync runs (on another
   * thread, see WalSync), the pump goes on executing the next transactions into the next
   * commit, so the fsync costs the writer no time. A caller is answered only
   * once an fsync covering its commit has returned, so every answered transaction is on disk,
   * as without batching. A lone transaction is committed and synced at once.
   */
  #grouped<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#inFlight++;
      this.#queue.push({
        // The pump runs it: bound, it runs in its own caller's async context (AsyncLocalStorage:
        // a request id, a tracing span), not in that of whichever caller started the pump.
        fn: inCallerContext(fn),
        queuedAt: performance.now(),
        resolve: (value) => {
          this.#inFlight--;
          resolve(value as T);
        },
        reject: (error) => {
          this.#inFlight--;
          reject(error);
        },
      });
      this.#watchQueue();
      if (this.#pumping) {
        this.#wake?.();
      } else {
        this.#pumping = true;
        // Started after the current microtasks: callers answered together by one fsync come
        // back together, and their next transactions share one commit instead of the first
        // going alone.
        setImmediate(() => void this.#pump());
      }
    });
  }

  /**
   * A grouped transaction waits in the queue while the pump runs the one before it. A body that
   * awaits a store call made outside any transaction waits for a call queued behind itself: it
   * would wait for ever. So, as a write waits for another process's lock, a queued transaction
   * waits for this process's own at most the busy timeout, then is refused with STORAGE_BUSY (the
   * body awaiting it then fails, and the pump goes on). One timer for the whole queue, re-armed for
   * its oldest transaction; ref'd, so that a caller waiting keeps the process alive.
   */
  #watchQueue(): void {
    if (this.#queueTimer !== undefined || this.#queue.length === 0) return;
    const wait = Math.max(0, this.#queue[0]!.queuedAt + this.#busyTimeoutMs - performance.now());
    this.#queueTimer = setTimeout(() => {
      this.#queueTimer = undefined;
      if (this.#waitingForLock) {
        // The pump waits for another process's write lock, not for a transaction of this one:
        // its BEGIN gives up at its own deadline and refuses the queue saying so (STORAGE_BUSY,
        // another connection). The queue is looked at again a busy timeout from now.
        this.#queueTimer = setTimeout(() => {
          this.#queueTimer = undefined;
          this.#watchQueue();
        }, this.#busyTimeoutMs);
        return;
      }
      const limit = performance.now() - this.#busyTimeoutMs;
      while (this.#queue.length > 0 && this.#queue[0]!.queuedAt <= limit) this.#queue.shift()!.reject(this.#ownTransactionTooLong());
      this.#watchQueue();
    }, wait + 1);
  }

  #unwatchQueue(): void {
    clearTimeout(this.#queueTimer);
    this.#queueTimer = undefined;
  }

  /** A transaction of this process held the connection past the busy timeout while another waited. */
  #ownTransactionTooLong(): StorageError {
    return new StorageError('STORAGE_BUSY', `${this.location}: waited ${this.#busyTimeoutMs} ms for another transaction of this process to end`, {
      hint: 'a store call made outside a transaction and awaited inside one waits for that transaction for ever: make the call inside it; otherwise a transaction of this process holds the database that long (a library caller can raise the busyTimeoutMs option, 5000 ms by default)',
    });
  }

  async #pump(): Promise<void> {
    const sync = this.#walSync!;
    let open: Batch | undefined;
    try {
      for (;;) {
        this.#deliver();
        const failure = sync.failure;
        if (failure !== undefined) {
          // An fsync failed: nothing after it can be promised durable. Refuse everyone.
          if (open !== undefined) this.#abandon(open, failure);
          open = undefined;
          this.#unwatchQueue();
          for (const item of this.#queue.splice(0)) item.reject(failure);
          return;
        }
        if (this.#queue.length > 0) {
          // Callers are waiting on each other: worth a thread, so that fsyncs stop blocking.
          if (this.#queue.length > 1 || open !== undefined) sync.startThread();
          open ??= await this.#beginBatch();
          if (open === undefined) continue;
          // The queue may have been emptied while the batch began (its callers refused after the busy timeout).
          const next = this.#queue.shift();
          if (next === undefined) continue;
          // Nothing left waiting: no timer keeps the process alive.
          if (this.#queue.length === 0) this.#unwatchQueue();
          await this.#runInBatch(open, next);
          if (this.#queue.length === 0 ? sync.idle : sync.threaded && sync.idle && open.items.length * 2 >= this.#inFlight) {
            open = this.#commitBatch(open);
          }
        } else if (open !== undefined) {
          if (sync.idle || open.waited) {
            open = this.#commitBatch(open);
          } else {
            // Nothing is queued, so every caller in flight is in this batch or waits for the fsync
            // in flight: none of them can join it before that fsync returns. Callers just answered
            // may still be on their way (a few promise turns): one turn of the event loop lets them
            // in. Then the batch commits, while the fsync runs, instead of the writer idling until
            // it returns; the thread syncs it next (an fsync covers only the commits made before it
            // began, so nobody is answered sooner).
            open.waited = true;
            await new Promise<void>((resolve) => setImmediate(resolve));
          }
        } else if (this.#syncing.length > 0) {
          await this.#sleepUntilWoken(sync.changed());
        } else {
          return;
        }
      }
    } catch (e) {
      // Not a transaction's own error (those are its outcome): the batch could not be run.
      if (open !== undefined) this.#abandon(open, e);
    } finally {
      this.#pumping = false;
      this.#wake = undefined;
      if (this.#queue.length > 0 || this.#syncing.length > 0) {
        this.#pumping = true;
        setImmediate(() => void this.#pump());
      }
    }
  }

  /** Waits for `event`, or for a transaction to be queued meanwhile. */
  #sleepUntilWoken(event: Promise<void>): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#wake = resolve;
      void event.then(resolve);
    }).finally(() => {
      this.#wake = undefined;
    });
  }

  /** BEGIN IMMEDIATE for a batch (under the mutex); on failure every queued caller is refused. */
  async #beginBatch(): Promise<Batch | undefined> {
    // Before the mutex: this process's own reads are not held up while it lets another process in.
    const holding = this.#letWaitersIn();
    if (holding) await holding;
    const wait = this.#mutex.acquire();
    if (wait) await wait;
    try {
      this.#usable();
      await this.#beginImmediate(true);
      return { items: [], outcomes: [], guarded: false };
    } catch (e) {
      this.#mutex.release();
      this.#unwatchQueue();
      for (const item of this.#queue.splice(0)) item.reject(e);
      return undefined;
    }
  }

  /**
   * BEGIN IMMEDIATE, retried with a backoff while another process holds the write lock, until the
   * busy timeout. `yieldConnection` (a batch's first BEGIN, taken under the mutex): the mutex is
   * let go during each backoff, so that this process's reads are not held up by another
   * process's write lock meanwhile, and taken again before the next try.
   */
  async #beginImmediate(yieldConnection = false): Promise<void> {
    const deadline = performance.now() + this.#busyTimeoutMs;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          this.#prepare('BEGIN IMMEDIATE').run();
          this.#opened();
          this.#stopWaiting();
          return;
        } catch (e) {
          if (!isBusy(e) || performance.now() >= deadline) {
            this.#stopWaiting();
            throw classifySqliteError(e, this.location);
          }
          this.#waitingForLock = true;
          if (yieldConnection) this.#mutex.release();
          await this.#waitForLock(attempt);
          // Waiting for the connection again is waiting for this process (the queue's watchdog
          // then speaks for it), not for another process's lock.
          this.#waitingForLock = false;
          if (yieldConnection) {
            const wait = this.#mutex.acquire();
            if (wait) await wait;
          }
        }
      }
    } finally {
      this.#waitingForLock = false;
    }
  }

  /**
   * Runs one queued transaction in the batch. A batch starts optimistic: its transactions run
   * back to back with no savepoint at all, since nearly all of them succeed (a savepoint around
   * the batch made SQLite copy every page the batch changed into its savepoint journal first:
   * ~6 % of the writer's time in statements). When one throws, its partial writes cannot be
   * undone alone: the batch's SQLite transaction is rolled back and begun again, and the
   * transactions before it are run again, this time each under its own SAVEPOINT (a
   * transaction function may be re-run, as on a PostgreSQL serialisation failure). The one that
   * threw is not: it is refused at once with what it threw, as it would have been alone. Nothing
   * of the batch was committed. Another process may take the write lock in between: the batch then
   * waits for it as any BEGIN does, and if it does not come back within the busy timeout its
   * callers are refused with STORAGE_BUSY. If SQLite itself ended the transaction (see #vanished),
   * the batch is refused instead of run again.
   */
  async #runInBatch(batch: Batch, item: Queued): Promise<void> {
    let running = [item];
    try {
      if (batch.guarded) {
        batch.outcomes.push(await this.#runGuarded(item, batch));
        batch.items.push(item);
        return;
      }
      let value: unknown;
      try {
        value = await this.#runBody(item, batch);
      } catch (thrown) {
        if (this.#ended()) {
          // SQLite rolled the whole transaction back itself: the batch's writes are gone. The
          // batch is refused, not run again (see #vanished).
          running = [];
          item.reject(thrown);
          throw this.#vanished();
        }
        const earlier = [...batch.items];
        running = [...earlier, item];
        this.#prepare('ROLLBACK').run();
        this.#txOpen = false;
        // The one that threw is not run again, and is answered now with what it threw, as it would
        // have been alone: nothing of it is left, whatever becomes of the others.
        item.reject(isBusy(thrown) ? classifySqliteError(thrown, this.location) : thrown);
        running = earlier;
        await this.#beginImmediate();
        batch.items.length = 0;
        batch.outcomes.length = 0;
        batch.guarded = true;
        for (const again of earlier) {
          batch.outcomes.push(await this.#runGuarded(again, batch));
          batch.items.push(again);
        }
        return;
      }
      if (this.#ended()) throw this.#vanished();
      batch.outcomes.push({ ok: true, value });
      batch.items.push(item);
    } catch (e) {
      // A savepoint statement, or the batch's ROLLBACK or BEGIN again, failed: the batch cannot
      // go on. The callers not yet back in the batch are refused here; the pump abandons the rest.
      const error = classifySqliteError(e, this.location);
      for (const r of running) if (!batch.items.includes(r)) r.reject(error);
      throw e;
    }
  }

  async #runGuarded(item: Queued, batch: Batch): Promise<Outcome> {
    this.#prepare('SAVEPOINT grouped').run();
    try {
      const value = await this.#runBody(item, batch);
      if (this.#ended()) throw this.#vanished();
      this.#prepare('RELEASE grouped').run();
      return { ok: true, value };
    } catch (e) {
      if (this.#ended()) throw this.#vanished();
      this.#prepare('ROLLBACK TO grouped').run();
      this.#prepare('RELEASE grouped').run();
      return { ok: false, error: isBusy(e) ? classifySqliteError(e, this.location) : e };
    }
  }

  /**
   * Runs a queued transaction's function in the batch. Behind transactions that have run already
   * it may not take longer than the busy timeout: they wait for the batch's COMMIT, and one that
   * held them for ever (a body awaiting something that never comes, or waiting for one of them:
   * `await` of a transaction queued just before it, whose answer needs this batch's COMMIT)
   * would hold their answers, and every later write of this process, for ever. Past it, it is
   * refused with STORAGE_BUSY, as a throw (its batch rolled back, the ones before it run again)
   * and its statements from then on are refused, never run in another batch.
   */
  #runBody(item: Queued, batch: Batch): Promise<unknown> {
    if (batch.items.length === 0) return item.fn(this.#executor);
    let refused: StorageError | undefined;
    const executor = this.#executor;
    const revocable: Executor = {
      all: (sql, params) => (refused ? Promise.reject(refused) : executor.all(sql, params)),
      get: (sql, params) => (refused ? Promise.reject(refused) : executor.get(sql, params)),
      run: (sql, params) => (refused ? Promise.reject(refused) : executor.run(sql, params)),
      exec: (sql) => (refused ? Promise.reject(refused) : executor.exec(sql)),
    };
    return new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => {
        refused = this.#heldBatch();
        reject(refused);
      }, this.#busyTimeoutMs);
      item.fn(revocable).then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (e: unknown) => {
          clearTimeout(timer);
          reject(e);
        },
      );
    });
  }

  /** A grouped transaction ran past the busy timeout while others waited for its batch. */
  #heldBatch(): StorageError {
    return new StorageError('STORAGE_BUSY', `${this.location}: a transaction of this process ran for more than ${this.#busyTimeoutMs} ms while the transactions committed with it waited; it was refused and rolled back, the others go on`, {
      hint: 'keep network calls and other waits out of store.transaction (a body that awaits a transaction started outside it waits for its own batch); a library caller can raise the busyTimeoutMs option, 5000 ms by default',
    });
  }

  /** COMMITs the batch (frames written, not yet synced), asks for its fsync and frees the connection. */
  #commitBatch(batch: Batch): undefined {
    try {
      this.#prepare('COMMIT').run();
      this.#txOpen = false;
    } catch (e) {
      this.#abandon(batch, e);
      return undefined;
    }
    this.#committed();
    this.#mutex.release();
    try {
      this.#syncing.push({ ...batch, commit: this.#walSync!.request() });
      this.#watchSyncs();
    } catch (e) {
      // An inline fsync failed: the commit is in the WAL but not known to be on disk.
      for (const item of batch.items) item.reject(e);
    }
    return undefined;
  }

  /**
   * Answers committed batches as soon as an fsync covers them, whatever the pump is doing. The pump
   * also answers them at each turn of its loop, but it may be awaiting a transaction function of
   * the next batch meanwhile, and that one may be waiting for one of these answers (a body that
   * awaits a transaction queued just before it, committed in the batch before its own): answered
   * only by the pump, it would wait for ever.
   */
  #watchSyncs(): void {
    if (this.#watchingSyncs || this.#syncing.length === 0) return;
    this.#watchingSyncs = true;
    void this.#walSync!.changed().then(() => {
      this.#watchingSyncs = false;
      this.#deliver();
      this.#watchSyncs();
    });
  }

  /** Rolls back a batch that cannot commit and refuses its callers. */
  #abandon(batch: Batch, e: unknown): void {
    try {
      if (this.#db.inTransaction) this.#prepare('ROLLBACK').run();
    } catch {
      // The connection is broken; the error below says why.
    } finally {
      this.#txOpen = false;
      this.#mutex.release();
    }
    const error = classifySqliteError(e, this.location);
    for (const item of batch.items) item.reject(error);
  }

  /** Answers the callers of every commit that is now durable (or refuses them all if an fsync failed). */
  #deliver(): void {
    if (this.#syncing.length === 0) return;
    const failure = this.#walSync!.failure;
    const done = this.#walSync!.done;
    while (this.#syncing.length > 0 && (failure !== undefined || this.#syncing[0]!.commit <= done)) {
      const batch = this.#syncing.shift()!;
      batch.items.forEach((item, i) => {
        const outcome = batch.outcomes[i]!;
        if (failure) item.reject(failure);
        else if (outcome.ok) item.resolve(outcome.value);
        else item.reject(outcome.error);
      });
    }
  }

  /** Throws if the store is closed, or unusable after a failed fsync. */
  #usable(): void {
    if (this.#closed) throw closedStore(this.location);
    const failure = this.#storageFailure ?? this.#walSync?.failure;
    if (failure) throw failure;
  }

  /**
   * Gives the event loop a turn once TURN_EVERY_MS have passed without one. better-sqlite3 answers
   * at once and the mutex is free at once, so callers writing back to back on a connection of
   * their own (`process` mode, or reads) would run on microtasks alone: this process's timers and
   * I/O never ran meanwhile, among them the retry of a write that found another process holding
   * the lock, which then gave up at its deadline after a few tries (STORAGE_BUSY) while the other
   * process held the lock a millisecond at a time.
   */
  #turn(): Promise<void> | undefined {
    const now = performance.now();
    if (!this.#turnScheduled) {
      this.#turnScheduled = true;
      setImmediate(() => {
        this.#turnScheduled = false;
        this.#lastTurn = performance.now();
      });
    }
    if (now - this.#lastTurn < TURN_EVERY_MS) return undefined;
    this.#lastTurn = now;
    return new Promise<void>((resolve) => setImmediate(resolve));
  }

  async #attempt<T>(fn: (tx: Executor) => Promise<T>, options: TransactionOptions): Promise<T> {
    // Without an await when no transaction started before this one is still on its way.
    const before = this.#entering > 0 ? this.#entry : undefined;
    let queued!: () => void;
    this.#entry = new Promise<void>((resolve) => (queued = resolve));
    this.#entering++;
    let wait: Promise<void> | undefined;
    try {
      if (before) await before;
      const turn = this.#turn();
      if (turn) await turn;
      // Before the mutex: a write lets another process in first (a read does not hold back, but
      // keeps its place behind writes started before it).
      const holding = options.readOnly ? undefined : this.#letWaitersIn();
      if (holding) await holding;
      // Bounded, as the queue of grouped transactions is (see #watchQueue).
      wait = this.#mutex.acquire(this.#busyTimeoutMs, () => this.#ownTransactionTooLong());
    } finally {
      this.#entering--;
      queued();
    }
    if (wait) await wait;
    try {
      this.#usable();
      this.#prepare(options.readOnly ? 'BEGIN DEFERRED' : options.exclusive ? 'BEGIN EXCLUSIVE' : 'BEGIN IMMEDIATE').run();
      this.#opened();
      let result: T;
      try {
        result = await fn(this.#executor);
      } catch (e) {
        if (this.#db.inTransaction) this.#prepare('ROLLBACK').run();
        throw e;
      }
      if (this.#ended()) throw this.#vanished();
      this.#prepare('COMMIT').run();
      this.#committed();
      if (this.#walSync && !options.readOnly) this.#walSync.request();
      return result;
    } catch (e) {
      if (this.#db.inTransaction) this.#prepare('ROLLBACK').run();
      throw e;
    } finally {
      this.#txOpen = false;
      this.#mutex.release();
    }
  }

  /**
   * Fairness between processes. A writer that never pauses (a busy daemon) takes the write lock
   * again microseconds after each COMMIT, and another process polling for it (a CLI command)
   * almost never lands in that gap: it waited seconds, or gave up with STORAGE_BUSY. So a process
   * whose BEGIN finds the lock taken announces it in `<db>-wait` (the file's time refreshed at
   * every try) and tries again every millisecond or two; a writer about to take the lock checks
   * that file (at most once a millisecond: one stat) and, while it is fresh, holds back — at most
   * YIELD_MAX_MS at a time, so that a waiter that cannot get in (a third process holds the lock)
   * only slows it down. The waiter removes the file once it has the lock or gives up; one left by
   * a process that died is stale after WAIT_FRESH_MS and removed by the next writer that sees it.
   */
  #letWaitersIn(): Promise<void> | undefined {
    // Without an await in the common case (no file, or looked at less than a millisecond ago):
    // this runs before every write transaction.
    if (this.#waitPath === undefined || this.#announced) return undefined;
    const start = performance.now();
    if (start - this.#waitersCheckedAt < 1) return undefined;
    this.#waitersCheckedAt = start;
    return statSync(this.#waitPath, { throwIfNoEntry: false }) ? this.#holdBack(start) : undefined;
  }

  /** While a fresh `-wait` file says another process waits for the write lock (at most YIELD_MAX_MS). */
  async #holdBack(start: number): Promise<void> {
    while (performance.now() - start < YIELD_MAX_MS) {
      const marker = statSync(this.#waitPath!, { throwIfNoEntry: false });
      if (marker === undefined) return;
      const age = Date.now() - marker.mtimeMs;
      // Not refreshed for a while, or dated ahead of the clock (a clock stepped back, a copied file): stale.
      if (age > WAIT_FRESH_MS || age < -WAIT_FRESH_MS) {
        try {
          rmSync(this.#waitPath!, { force: true });
        } catch {
          // Another user's file in a sticky directory, a read-only directory: it is ignored, not obeyed.
        }
        return;
      }
      await sleep(1);
    }
  }

  /** After a BEGIN that found the lock taken: says this process waits (see #letWaitersIn), then waits a little. */
  async #waitForLock(attempt: number): Promise<void> {
    if (this.#waitPath === undefined) {
      await backoff(attempt);
      return;
    }
    try {
      // Created, or its time refreshed; never through a symbolic link, and nothing is truncated.
      const fd = openSync(this.#waitPath, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW, 0o600);
      try {
        const now = Date.now() / 1000;
        futimesSync(fd, now, now);
      } finally {
        closeSync(fd);
      }
      this.#announced = true;
    } catch {
      // A read-only directory: wait as before, unannounced.
      await backoff(attempt);
      return;
    }
    await sleep(1 + Math.random());
  }

  #stopWaiting(): void {
    if (!this.#announced) return;
    this.#announced = false;
    try {
      rmSync(this.#waitPath!, { force: true });
    } catch {
      // Gone already, or the directory is read-only now: it goes stale.
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
   *
   * The thread's checkpoints alone cannot keep the WAL short under sustained writes: SQLite
   * starts the WAL over only when a write transaction begins with every frame checkpointed,
   * and a writer that never pauses has always appended more frames by the time the thread's
   * checkpoint ends (the WAL grew by ~2 frames per transaction, without bound: 430 MB after 32 000
   * transactions). So when the thread reports a long WAL, the writer, holding the write lock
   * after a COMMIT, checkpoints the few frames written since; its next transaction then starts
   * the WAL over.
   */
  #committed(): void {
    if (this.#walLong[0] === 1) {
      try {
        // A busy checkpoint (the thread's is running) returns busy = 1 rather than throwing, and
        // costs next to nothing: the flag stays up and the next COMMIT tries again.
        const result = this.#prepare('PRAGMA wal_checkpoint(PASSIVE)').get() as { busy: number } | undefined;
        if (result?.busy === 0) Atomics.store(this.#walLong, 0, 0);
      } catch (e) {
        Atomics.store(this.#walLong, 0, 0);
        // An I/O error syncing the WAL or the database: what was committed since the last good
        // fsync may not be on disk. As after a failed fsync, nothing is answered or written again.
        const cause = classifySqliteError(e, this.location);
        this.#storageFailure ??= new StorageError('STORAGE_FAILED', `checkpoint of ${this.location} failed: ${cause.message}`, {
          hint: 'check the disk, then restart the process; the database is consistent but may have lost the latest commits',
          cause,
        });
        this.#walSync?.fail(this.#storageFailure);
      }
    }
    if (this.#checkpointer !== undefined || this.#checkpointerGone || ++this.#commits < CHECKPOINT_AFTER || this.location === ':memory:') return;
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    try {
      this.#checkpointer = new Worker(new URL(`./sqlite-checkpoint-worker${ext}`, import.meta.url), {
        workerData: { path: this.location, intervalMs: CHECKPOINT_INTERVAL_MS, longWalFrames: this.#longWalFrames, walLong: this.#walLong.buffer },
      });
    } catch {
      this.#commits = 0; // could not start: SQLite's automatic checkpoints go on; try again later
      return;
    }
    const worker = this.#checkpointer;
    worker.unref();
    // A thread that fails or ends on its own (it could not open the database, say): SQLite's own
    // automatic checkpoints take over again, for the rest of this connection, and close() does
    // not wait for an answer from a thread that is gone (it used to, for ever).
    const gone = () => {
      if (this.#checkpointer !== worker) return;
      this.#checkpointer = undefined;
      this.#checkpointerGone = true;
      if (!this.#closed) this.#db.pragma('wal_autocheckpoint = 1000');
    };
    worker.on('error', gone);
    worker.on('exit', gone);
    this.#db.pragma('wal_autocheckpoint = 0');
  }

  async #stopCheckpointer(): Promise<void> {
    const worker = this.#checkpointer;
    if (!worker) return;
    this.#checkpointer = undefined;
    // Kept alive meanwhile: it is unref'd, and may be the only thing left to wait for.
    worker.ref();
    await new Promise<void>((resolve) => {
      const done = () => resolve();
      worker.once('message', done);
      worker.once('exit', done);
      worker.once('error', done);
      worker.postMessage('stop');
    });
    await worker.terminate();
  }

  get failure(): StorageError | undefined {
    return this.#storageFailure ?? this.#walSync?.failure;
  }

  /** From the moment close() is called (calls are refused from then on), as on PostgreSQL. */
  get closed(): boolean {
    return this.#closeRequested || this.#closed;
  }

  /**
   * VACUUM INTO a temporary name beside `path`: one read transaction, a consistent snapshot that
   * writers (a running daemon) do not disturb; then fsynced and given its name with link(), which
   * refuses an existing file, and the directory fsynced. A crash leaves no file under `path`.
   */
  async backup(path: string): Promise<void> {
    // Bounded, as a transaction's wait is: a backup awaited by a transaction of this process
    // (from a callback set up outside it) would otherwise wait for it for ever.
    const wait = this.#mutex.acquire(this.#busyTimeoutMs, () =>
      new StorageError('STORAGE_BUSY', `${this.location}: the backup waited ${this.#busyTimeoutMs} ms for a transaction of this process to end`, {
        hint: 'back up once the transaction has returned (a backup started outside a transaction and awaited inside one waits for it); a library caller can raise the busyTimeoutMs option, 5000 ms by default',
      }),
    );
    if (wait) await wait;
    // Short (a long FILE stays a valid name), and its own (another process, in another pid
    // namespace, may share the pid).
    const tmp = join(dirname(path), `${PARTIAL_PREFIX}${process.pid}-${randomBytes(4).toString('hex')}${PARTIAL_SUFFIX}`);
    try {
      this.#usable();
      checkBackupTarget(path, this.location);
      removeAbandonedPartials(dirname(path));
      try {
        // Made here, empty, with the database's own mode (0600 as botstate creates it; VACUUM
        // INTO would take the umask's, and the ledger would be readable by anyone).
        const fd = openSync(tmp, 'wx', 0o600);
        try {
          // An in-memory database has no file: 0600, as botstate creates its files.
          fchmodSync(fd, this.location === ':memory:' ? 0o600 : statSync(this.location).mode & 0o777);
        } finally {
          closeSync(fd);
        }
      } catch (e) {
        throw new StorageError('STORAGE_UNAVAILABLE', `cannot write the backup ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, {
          hint: 'check that the folder exists and that this user may write there',
          cause: e,
        });
      }
      try {
        this.#db.prepare('VACUUM INTO ?').run(tmp);
        releaseRegistrations(tmp);
      } catch (e) {
        throw classifySqliteError(e, path);
      }
      try {
        fsyncPath(tmp);
        linkSync(tmp, path);
        fsyncPath(dirname(path));
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') throw backupExists(path);
        throw new StorageError('STORAGE_FAILED', `cannot write the backup ${path}: ${code ?? String(e)}`, { hint: 'check the folder, its permissions and free space', cause: e });
      }
    } finally {
      try {
        // The copy, once linked under its name, and SQLite's journal of it (kept after a failure).
        for (const file of [tmp, `${tmp}-journal`]) rmSync(file, { force: true });
      } catch {
        // Left for the next backup into this folder to remove.
      } finally {
        this.#mutex.release();
      }
    }
  }

  async close(): Promise<void> {
    // Refused from here on (as on PostgreSQL); transactions queued for a group commit before close() still commit.
    this.#closeRequested = true;
    while (this.#pumping || this.#queue.length > 0 || this.#calls > 0) await sleep(1);
    const wait = this.#mutex.acquire();
    if (wait) await wait;
    try {
      if (this.#closed) return;
      this.#closed = true;
      this.#stopWaiting();
      await this.#walSync?.close();
      await this.#stopCheckpointer();
      this.#db.close();
    } finally {
      this.#mutex.release();
    }
  }

  /**
   * SQLite ended the open transaction itself: after a full disk or an I/O error it rolls the whole
   * transaction back, and a ROLLBACK run through the executor does the same. Whatever the
   * transaction (or the batch it was in) wrote is gone; no statement may run as if it were still
   * open, and none of its callers may be told it committed.
   */
  #vanished(): StorageError {
    return new StorageError('STORAGE_FAILED', `SQLite ended the transaction on ${this.location} before it was committed: nothing of it was written`, {
      hint: 'a full disk or an I/O error does this (check the disk, then retry), and so does a BEGIN, COMMIT or ROLLBACK run inside store.transaction (do not)',
    });
  }

  #prepare(sql: string): Statement {
    let stmt = this.#statements.get(sql);
    if (stmt === undefined) {
      stmt = this.#db.prepare(sql);
      if (mayEndTx(sql)) this.#endsTx.add(stmt);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  /** SQLite no longer has this adapter's transaction open (see #vanished). */
  #ended(): boolean {
    return this.#txEnded || !this.#db.inTransaction;
  }

  /** A BEGIN succeeded: this adapter's transaction is open. */
  #opened(): void {
    this.#txOpen = true;
    this.#txEnded = false;
  }

  /** A caller's statement (`sql`), or a script (`exec`, no `sql`), run through the executor. */
  #call<T>(sql: string | undefined, f: (stmt: Statement) => T): Promise<T> {
    // Run as it is, a statement would be committed on its own (autocommit), outside the
    // transaction its caller believes it is in.
    if (this.#txOpen && this.#txEnded) return Promise.reject(this.#vanished());
    let stmt: Statement | undefined;
    try {
      stmt = sql === undefined ? undefined : this.#prepare(sql);
      const value = f(stmt!);
      if (this.#txOpen && (stmt === undefined || this.#endsTx.has(stmt)) && !this.#db.inTransaction) this.#txEnded = true;
      return Promise.resolve(value);
    } catch (e) {
      if (this.#txOpen && !this.#db.inTransaction) this.#txEnded = true;
      // SQLITE_BUSY stays raw so that transaction() can tell it apart and retry.
      return Promise.reject(isBusy(e) ? e : this.#classify(e));
    }
  }

  /** A SQLite error as botstate's: on a read-only store, a refused write says why it was refused. */
  #classify(e: unknown): BotstateError {
    // Only the plain code: its extended ones (a hot journal or WAL recovery this connection may
    // not write, a file moved) are about reading the file, not about a write of the caller's.
    if (this.readOnly && (e as { code?: unknown }).code === 'SQLITE_READONLY') return readOnlyStore(this.location, e);
    return classifySqliteError(e, this.location);
  }
}

/**
 * False only for a query or a data change (SELECT, INSERT, UPDATE, DELETE, REPLACE, WITH or
 * VALUES first, after blanks and comments): such a statement ends the open transaction only by
 * failing (SQLite rolls back after a full disk or an I/O error, or on a ROLLBACK conflict
 * clause), which #call sees. Anything else (COMMIT, ROLLBACK, END, a statement after a `;`,
 * whatever this cannot read) may end it, and SQLite is asked after it.
 */
export function mayEndTx(sql: string): boolean {
  // A scan, not one regular expression: blanks and comments as a repeated group backtrack
  // exponentially over a long run of blanks before anything else (a statement indented in a
  // template literal), and this runs on every statement a caller prepares.
  let i = 0;
  for (;;) {
    if (/\s/.test(sql[i] ?? '')) i++;
    else if (sql.startsWith('--', i)) {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? sql.length : end + 1;
    } else if (sql.startsWith('/*', i)) {
      const end = sql.indexOf('*/', i + 2);
      if (end === -1) return true;
      i = end + 2;
    } else break;
  }
  return !/^(?:SELECT|INSERT|UPDATE|DELETE|REPLACE|WITH|VALUES)\b/i.test(sql.slice(i, i + 8));
}

function isSqliteError(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_');
}

function isBusy(e: unknown): boolean {
  const code = (e as { code?: unknown })?.code;
  return typeof code === 'string' && (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED');
}

/**
 * True if the database has tables and none of them is botstate's schema_migrations (by its
 * columns too: Rails, Ecto and golang-migrate name a table so as well).
 */
function isForeign(db: Database.Database): boolean {
  const tables = db
    .prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'`)
    .pluck()
    .all() as string[];
  if (tables.length === 0) return false;
  if (!tables.includes('schema_migrations')) return true;
  const columns = new Set(db.prepare(`SELECT name FROM pragma_table_info('schema_migrations')`).pluck().all() as string[]);
  return !VERSION_COLUMNS.every((c) => columns.has(c));
}

/** `power` mode with group commit on a file: the connection runs synchronous=NORMAL and WalSync fsyncs. */
function ownsFsync(options: SqliteOptions): boolean {
  return options.durability === 'power' && options.groupCommit && options.path !== ':memory:';
}

/**
 * `fn`, run whenever the returned function is called but always in the async context of the
 * caller of this function (its AsyncLocalStorage stores: a request id, a tracing span), wherever
 * it is called from. The runs happen in an async function started here, which resumes in this
 * context after each await: a fraction of what AsyncResource.bind costs per transaction
 * (~0.8 µs against ~3 µs, measured on this machine kind).
 */
function inCallerContext<T>(fn: (tx: Executor) => Promise<T>): (tx: Executor) => Promise<T> {
  const requests: Array<{ tx: Executor; resolve: (value: T) => void; reject: (error: unknown) => void }> = [];
  let wake: (() => void) | undefined;
  void (async () => {
    for (;;) {
      if (requests.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      const request = requests.shift()!;
      try {
        request.resolve(await fn(request.tx));
      } catch (e) {
        request.reject(e);
      }
    }
  })();
  return (tx) =>
    new Promise<T>((resolve, reject) => {
      requests.push({ tx, resolve, reject });
      const w = wake;
      wake = undefined;
      w?.();
    });
}

/** The file itself, through any symbolic link, as SQLite opens it; the name given if it cannot be resolved. */
function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** A busy retry's wait: doubling from 1 ms up to 50 ms, jittered so that processes do not retry in step. */
function backoff(attempt: number): Promise<void> {
  return sleep(Math.min(50, 2 ** attempt) * (0.5 + Math.random()));
}

/** How long a writer holds back at a time for a process waiting for the write lock. */
const YIELD_MAX_MS = 100;
/** A `-wait` file not refreshed for this long was left by a process that no longer waits. */
const WAIT_FRESH_MS = 250;

/** Commits after which a connection's checkpoints move to a worker thread. */
const CHECKPOINT_AFTER = 64;
/** The longest a run of transactions goes without giving the event loop a turn (see #turn). */
const TURN_EVERY_MS = 10;
const CHECKPOINT_INTERVAL_MS = 200;
/** Bytes the WAL file is cut back to when it starts over. */
export const WAL_SIZE_LIMIT = 64 * 1024 * 1024;
/**
 * WAL length (frames) past which the writer finishes a checkpoint itself: half the size limit
 * in 4 KiB pages, so that the WAL usually starts over before its file needs cutting back. Each
 * time costs the writer two fsyncs (the WAL's and the database's), so not much more often.
 */
const LONG_WAL_FRAMES = WAL_SIZE_LIMIT / 4096 / 2;

const NO_PARAMS: readonly SqlParam[] = [];
function bind(params: readonly SqlParam[] | undefined): SqlParam[] {
  return (params ?? NO_PARAMS) as SqlParam[];
}

/** The file or link itself, or undefined when there is none (or it cannot be looked at). */
function lstatOrNone(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** The file's stat; undefined when there is none. A path this user may not reach is said so. */
function statOrNone(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    // Nothing there (ENOTDIR: a file where a directory should be). Anything else, EACCES first,
    // is a database that may well exist: not "no database", and never one to create.
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    const denied = code === 'EACCES' || code === 'EPERM';
    throw new StorageError('STORAGE_UNAVAILABLE', `cannot reach ${path}: ${denied ? 'permission denied' : (e as Error).message} (${code ?? 'unknown error'})`, {
      hint: denied ? DENIED_HINT : 'check the path and the disk',
      cause: e,
    });
  }
}

/** fsync of a file, or of a folder's entries, by its path. */
function fsyncPath(path: string): void {
  const fd = openSync(path, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

const DENIED_HINT = 'run botstate as the user that owns the database, or give this user access to the file and every directory above it';

/** Whether this user may read the file. */
function readable(path: string): boolean {
  try {
    accessSync(path, fsConstants.R_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * A backup's name must be new, and none of the files SQLite or botstate keep beside the database:
 * SQLite takes a `-journal` for a hot journal and deletes it, botstate's writers remove a stale
 * `-wait`. Compared by real folder, so that another spelling of the same path is caught.
 */
function checkBackupTarget(path: string, database: string): void {
  const existing = statOrNone(path);
  if (path.endsWith('/') || existing?.isDirectory()) {
    throw new ValidationError('INVALID_ARGUMENT', `${path} is a folder: a backup is written to a file`, { hint: 'give the backup file a name, e.g. FOLDER/botstate-backup.db' });
  }
  if (existing) throw backupExists(path);
  // Not a name with an earlier database's -wal or -journal still beside it: SQLite would replay
  // it into the backup when it is opened, and the copy would be damaged.
  for (const suffix of ['-wal', '-journal', '-shm']) {
    if (lstatOrNone(`${path}${suffix}`) !== undefined) {
      throw new ValidationError('INVALID_ARGUMENT', `${path}${suffix} is there, left by an earlier database of that name: SQLite would apply it to the backup`, {
        hint: `move ${path}${suffix} away (or delete it, if that earlier database is gone for good), or give the backup another name`,
      });
    }
  }
  const real = (p: string) => {
    try {
      return join(realpathSync(dirname(p)), basename(p));
    } catch {
      return p; // a folder that does not exist: the copy fails there, saying so
    }
  };
  const target = real(path);
  // The database by the name given, and as SQLite opens it: through a symbolic link, its
  // -journal is beside the real file.
  const names = [real(database), realPath(database)];
  for (const suffix of ['', '-journal', '-wal', '-shm', '-wait']) {
    if (names.some((db) => target === `${db}${suffix}`)) {
      throw new ValidationError('INVALID_ARGUMENT', `${path} is ${suffix === '' ? 'the database itself' : `the database's ${suffix} file, which SQLite or botstate would delete`}: a backup needs a name of its own`, {
        hint: 'give the backup a new name, e.g. botstate-backup.db',
      });
    }
  }
  // Nor a file SQLite keeps beside another database there (x.db-wal while x.db exists): the next
  // connection to that database would delete the backup.
  checkNotCompanion(path, () => 'give the backup a name of its own, e.g. botstate-backup.db', 'INVALID_ARGUMENT');
}

/**
 * In the copy: no daemon runs on it, whatever ran on the database it was made from. Every
 * daemon registered there is marked stopped and every job lease is handed back at a new epoch,
 * so that commands on the copy, or on the database restored from it, are not refused for a
 * daemon that runs elsewhere.
 */
function releaseRegistrations(copy: string): void {
  const db = new Database(copy);
  try {
    const has = (table: string) => db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(table) !== undefined;
    const now = new Date().toISOString();
    db.transaction(() => {
      if (has('daemon_instances')) db.prepare('UPDATE daemon_instances SET stopped_at = ? WHERE stopped_at IS NULL').run(now);
      if (has('job_leases')) db.prepare("UPDATE job_leases SET owner = '', epoch = epoch + 1 WHERE owner <> ''").run();
    })();
  } finally {
    db.close();
  }
}

function backupExists(path: string): BotstateError {
  return new ValidationError('INVALID_ARGUMENT', `${path} exists already: a backup never replaces a file`, { hint: 'give the backup a new name' });
}

/** A backup's copy before it is named: `.botstate-backup-<pid>-<8 hex>.partial` beside it. */
const PARTIAL_PREFIX = '.botstate-backup-';
const PARTIAL_SUFFIX = '.partial';
const PARTIAL = /^\.botstate-backup-([1-9]\d{0,9})-[0-9a-f]{8}\.partial(?:-journal)?$/;
/** A copy not written to for this long is not being made: a live VACUUM INTO keeps writing. */
const PARTIAL_STALE_MS = 10 * 60_000;

/**
 * Copies of backups that were abandoned (their process crashed, or was killed, before naming
 * them), in `dir`: removed before a new backup there. Only files of that exact name, whose
 * process is gone from this host and which have not been written to for 10 minutes (a process
 * of another pid namespace may be making one), never this process's own.
 */
function removeAbandonedPartials(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // the folder's own error comes with the backup's first write
  }
  for (const name of names) {
    const pid = Number(PARTIAL.exec(name)?.[1] ?? NaN);
    if (!Number.isSafeInteger(pid) || pid === process.pid || pidExists(pid)) continue;
    try {
      const file = join(dir, name);
      if (Date.now() - statSync(file).mtimeMs < PARTIAL_STALE_MS) continue;
      rmSync(file, { force: true });
    } catch {
      // Gone meanwhile, or not ours to remove: left.
    }
  }
}

function prepareFile(path: string, create: boolean): void {
  const stat = statOrNone(path);
  if (stat !== undefined) {
    if (stat.isDirectory()) {
      throw new StorageError('STORAGE_UNAVAILABLE', `${path} is a directory, not a database file`, {
        hint: 'pass the path of a file, for example --db ./botstate.db',
      });
    }
    // A device (/dev/null), a named pipe or a socket: SQLite would fail on it with a misleading
    // I/O error, or take a pipe for an empty file, and leave a -journal beside it.
    if (!stat.isFile()) {
      throw new StorageError('STORAGE_UNAVAILABLE', `${path} is not a regular file (a device, a pipe or a socket), so it cannot hold a database`, {
        hint: 'pass the path of a file, for example --db ./botstate.db',
      });
    }
    // An empty file holds no database; opening it would make it one (in WAL mode), which a command
    // that does not create databases must not do.
    if (!create && stat.size === 0 && !existsSync(`${path}-wal`)) {
      throw new NotFoundError('DATABASE_NOT_FOUND', `there is no botstate database at ${path} (the file is empty)`, {
        hint: 'start a job first (botstate start <token>) or pass --db with the right path',
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
    try {
      closeSync(openSync(path, 'wx', 0o600));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // A symbolic link to a file that does not exist (existsSync follows it): SQLite would create
      // the target with the umask's mode. Created here through the link, 0600, never truncated.
      if (lstatSync(path).isSymbolicLink()) closeSync(openSync(path, fsConstants.O_WRONLY | fsConstants.O_CREAT, 0o600));
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return;
    throw new StorageError('STORAGE_UNAVAILABLE', `cannot create the database file ${path}: ${code ?? String(e)}`, {
      hint: 'check that the directory exists and is writable',
      cause: e,
    });
  }
}

/** Codes besides SQLITE_ERROR for a statement or its values at fault, not the database. */
const SQL_FAULTS = new Set(['SQLITE_ERROR_MISSING_COLLSEQ', 'SQLITE_MISMATCH', 'SQLITE_RANGE', 'SQLITE_TOOBIG']);

/**
 * SQLITE_ERRORs about the database or the connection's transactions, which botstate's own
 * statements may meet (a file of a newer SQLite, a transaction SQLite ended itself), and SQLite's
 * bare "SQL logic error", which says nothing of the statement: not put on the statement. A tx
 * refuses BEGIN, COMMIT and ROLLBACK, and botstate's savepoints are its own. (A statement that
 * may not run in a transaction at all, `cannot VACUUM from within a transaction`, is the caller's.)
 */
const CONNECTION_STATE = /^unsupported file format|no transaction is active|^cannot start a transaction within a transaction|^no such savepoint: (?:grouped|botstate_call)$|^SQL logic error$/;

/** Maps better-sqlite3's SqliteError codes onto botstate's error codes. */
export function classifySqliteError(e: unknown, where: string): BotstateError {
  if (e instanceof BotstateError) return e;
  const code = typeof (e as { code?: unknown }).code === 'string' ? (e as { code: string }).code : '';
  const message = e instanceof Error ? e.message : String(e);
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY_') || code === 'SQLITE_LOCKED') {
    return new StorageError('STORAGE_BUSY', `${where} stayed locked by another connection past the busy timeout`, {
      hint: 'another connection (another process, or another store open on this file in this one) holds a long write transaction; retry (a library caller can raise the busyTimeoutMs option, 5000 ms by default)',
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
  if (code.startsWith('SQLITE_CONSTRAINT')) return constraintViolation(message, code, e);
  if (code === 'SQLITE_FULL') {
    // SQLite rolls the transaction back: nothing of it was written.
    return new StorageError('STORAGE_FAILED', `SQLite failed on ${where}: ${message} [${code}]`, {
      hint: `free disk space where ${where} is, then retry (nothing of the failed change was written)`,
      cause: e,
    });
  }
  if (code.startsWith('SQLITE_IOERR')) {
    // A full disk is the usual cause (growing the shared-memory file is SQLITE_IOERR_SHMSIZE). Of
    // a COMMIT whose fsync failed, what was written may or may not come back: no claim here.
    return new StorageError('STORAGE_FAILED', `SQLite failed on ${where}: ${message} [${code}]`, {
      hint: `check the disk where ${where} is (free space first, then errors), then retry`,
      cause: e,
    });
  }
  // The statement itself is wrong (a library caller's SQL in a transaction): not a failed database.
  if (code === 'SQLITE_ERROR' && /syntax error|incomplete input|unrecognized token/.test(message)) {
    return invalidSql(`SQLite refused the statement on ${where}: ${message}`, e);
  }
  // A table or column that is not there: a schema changed outside botstate, or a name of the caller's.
  // (An index, function or collation too: what botstate's own statements and triggers use, gone
  // when the schema was changed outside botstate.)
  const missing = code === 'SQLITE_ERROR' && /^no such (table|column|index|function|collation)\b|has no column named/.test(message);
  // Any other error of a statement is the statement's (malformed JSON, an integer overflow, a
  // UNION's sides of other widths, a function that does not exist), or its values' (a datatype
  // mismatch, a value too big), but for what SQLite says of the connection's own state.
  if (((code === 'SQLITE_ERROR' && !missing) || SQL_FAULTS.has(code)) && !CONNECTION_STATE.test(message)) {
    return invalidSql(`SQLite refused the statement on ${where}: ${message} [${code}]`, e, REFUSED_SQL_HINT);
  }
  if (code.startsWith('SQLITE_')) {
    return new StorageError('STORAGE_FAILED', `SQLite failed on ${where}: ${message} [${code}]`, { ...(missing ? { hint: MISSING_HINT } : {}), cause: e });
  }
  // better-sqlite3 checks the values bound before SQLite sees the statement.
  if (e instanceof RangeError || (e instanceof TypeError && /bind|parameter/i.test(message))) {
    return invalidSql(`SQLite refused the statement's values on ${where}: ${message}`, e);
  }
  return new BotstateError('INTERNAL', `unexpected error on ${where}: ${message}`, { cause: e });
}
