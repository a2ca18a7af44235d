import type { StorageError } from '../errors.ts';
/**
 * The contract between botstate's engine-agnostic core and one database engine.
 *
 * Domain code writes portable SQL with `?` placeholders and calls only what is declared here.
 * Where the engines differ, the difference is a method or a named field of the adapter,
 * never an `if (postgres)` in domain code.
 *
 * Values crossing this boundary are normalised by the adapter, so domain code sees the same
 * shapes on every engine:
 * - exact decimals (NUMERIC on PostgreSQL, TEXT on SQLite) come back as strings;
 * - times come back as ISO 8601 strings in UTC with milliseconds (`2026-11-22T10:00:00.000Z`);
 * - JSON columns come back as their raw text;
 * - integers come back as numbers (all integer columns are within 2^53).
 */

/** A bound parameter. Decimals and times are passed as strings, never as JS numbers. */
export type SqlParam = string | number | null;

/** Runs statements. Inside a transaction every call goes to that transaction. */
export interface Executor {
  /** All rows of a query. */
  all<T extends object>(sql: string, params?: readonly SqlParam[]): Promise<T[]>;
  /** The first row of a query, or undefined. */
  get<T extends object>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined>;
  /** Runs a statement and returns how many rows it changed. */
  run(sql: string, params?: readonly SqlParam[]): Promise<number>;
  /** Runs a script of several statements without parameters (DDL in migrations). */
  exec(sql: string): Promise<void>;
}

/** The SQL spellings that differ between engines. */
export interface Dialect {
  /** Appended to a SELECT that must lock the rows it reads until the transaction ends. */
  readonly forUpdate: string;
  /**
   * Appended to a SELECT that claims rows of `table` (its name or alias in the query) for
   * this transaction, skipping rows another transaction holds. Empty where one writer holds
   * the whole database.
   */
  skipLocked(table: string): string;
  /**
   * A statement may change rows in a WITH clause and insert from what it returned
   * (PostgreSQL's data-modifying CTEs): two writes in one round trip.
   */
  readonly writableCte: boolean;
  /**
   * The FROM of a query for one job's PENDING trades. SQLite, with no statistics, reads them
   * through (job_id, created_at), every trade of the job, to skip a sort of the few pending
   * ones: it is told to use the partial index of pending trades instead.
   */
  readonly pendingTradesFrom: string;
}

export interface Capabilities {
  /** Several processes may write at once (and may run several daemons). */
  readonly concurrentWriters: boolean;
}

export interface TransactionOptions {
  /** A read-only transaction: a consistent snapshot, no write lock. */
  readonly readOnly?: boolean;
  /** Take the strongest lock the engine has (migrations). */
  readonly exclusive?: boolean;
}

export type Engine = 'sqlite' | 'postgres';

/** A durability mode; see docs/durability.md for what each can lose. */
export type Durability = 'process' | 'power';

export interface Adapter {
  readonly engine: Engine;
  readonly dialect: Dialect;
  readonly capabilities: Capabilities;
  readonly durability: Durability;
  /** Where the data lives, without credentials, for messages. */
  readonly location: string;
  /**
   * Opened read-only (the store's `readOnly` option): the connection refuses every write, which
   * is refused with readOnlyStore's error (INVALID_ARGUMENT), and every transaction runs as a read.
   */
  readonly readOnly: boolean;

  /**
   * Runs `fn` in one transaction: committed if it resolves, rolled back if it throws.
   * On engines with concurrent writers, serialisation failures and deadlocks re-run `fn`, and
   * SQLite's group commit re-runs the transactions of a batch before one that throws, so `fn` must
   * have no effects outside the database.
   */
  transaction<T>(fn: (tx: Executor) => Promise<T>, options?: TransactionOptions): Promise<T>;

  /**
   * Called first in every migration transaction (opened with `exclusive: true`): takes the
   * engine's migration lock until that transaction ends, so that two processes migrating the
   * same database take turns, and creates the namespace the tables live in if needed.
   */
  lockForMigration(tx: Executor): Promise<void>;

  /** True if botstate's table `name` exists (in the configured schema, on PostgreSQL). */
  hasTable(tx: Executor, name: string): Promise<boolean>;

  /**
   * Set once this connection can no longer be used (SQLite: an fsync or the writer's checkpoint
   * failed, so what was committed since may not be on disk): every call is refused with it, and
   * the process must reopen the database (a daemon exits; see docs/durability.md).
   */
  readonly failure: StorageError | undefined;

  /** Whether the store is closed (close() was called): every call is then refused (STORAGE_UNAVAILABLE). */
  readonly closed: boolean;

  /**
   * SQLite: writes a consistent copy of the database to `path` (a new file; never one that
   * exists), made durable before it is given its name. Absent on engines backed up by their own
   * tools (PostgreSQL: pg_dump).
   */
  backup?(path: string): Promise<void>;

  close(): Promise<void>;
}
