/**
 * Every error botstate raises is a {@link BotstateError} with a stable string `code`.
 * The CLI maps each code's {@link ErrorCategory} to an exit code (see `exitCodeFor`).
 *
 * @example
 * try { await store.jobs.pause({ tokenAddress }) }
 * catch (e) { if (isBotstateError(e, 'INVALID_TRANSITION')) console.log(e.details.allowed) }
 */

/** Broad classes of failure; each has one documented CLI exit code. */
export const ErrorCategory = Object.freeze({
  /** The caller's input is malformed: fix the command or the value. */
  USAGE: 'usage',
  /** The input is well-formed but a rule forbids it now (state machine, balance, concurrency). */
  RULE: 'rule',
  /** A named thing does not exist. */
  NOT_FOUND: 'not_found',
  /** The database cannot be reached, opened, or used. */
  STORAGE: 'storage',
  /** The database schema does not match this version of botstate. */
  SCHEMA: 'schema',
  /** A bug in botstate. */
  INTERNAL: 'internal',
} as const);
export type ErrorCategory = (typeof ErrorCategory)[keyof typeof ErrorCategory];

const CODES = {
  USAGE: ErrorCategory.USAGE,
  INVALID_ADDRESS: ErrorCategory.USAGE,
  INVALID_CHECKSUM: ErrorCategory.USAGE,
  INVALID_AMOUNT: ErrorCategory.USAGE,
  INVALID_CONFIG: ErrorCategory.USAGE,
  INVALID_ARGUMENT: ErrorCategory.USAGE,
  INVALID_TRANSITION: ErrorCategory.RULE,
  CONCURRENT_MODIFICATION: ErrorCategory.RULE,
  DUPLICATE_ORDER: ErrorCategory.RULE,
  INSUFFICIENT_BALANCE: ErrorCategory.RULE,
  LEASE_LOST: ErrorCategory.RULE,
  DAEMON_RUNNING: ErrorCategory.RULE,
  DATA_LOSS: ErrorCategory.RULE,
  /** The database refused a write for breaking one of the schema's constraints or triggers (raw SQL in a transaction). */
  CONSTRAINT_VIOLATION: ErrorCategory.RULE,
  JOB_NOT_FOUND: ErrorCategory.NOT_FOUND,
  TRADE_NOT_FOUND: ErrorCategory.NOT_FOUND,
  DATABASE_NOT_FOUND: ErrorCategory.NOT_FOUND,
  STORAGE_UNAVAILABLE: ErrorCategory.STORAGE,
  STORAGE_BUSY: ErrorCategory.STORAGE,
  STORAGE_CORRUPT: ErrorCategory.STORAGE,
  STORAGE_FAILED: ErrorCategory.STORAGE,
  SCHEMA_TOO_NEW: ErrorCategory.SCHEMA,
  SCHEMA_OUTDATED: ErrorCategory.SCHEMA,
  MIGRATION_CHECKSUM_MISMATCH: ErrorCategory.SCHEMA,
  MIGRATION_FAILED: ErrorCategory.SCHEMA,
  /** A migration is missing below the highest one applied (two processes migrated and rolled back at once with an older botstate). */
  MIGRATION_GAP: ErrorCategory.SCHEMA,
  INTERNAL: ErrorCategory.INTERNAL,
} as const satisfies Record<string, ErrorCategory>;

/** Stable error codes. Never renamed once released. */
export type ErrorCode = keyof typeof CODES;

export class BotstateError extends Error {
  override readonly name: string = 'BotstateError';
  readonly code: ErrorCode;
  readonly category: ErrorCategory;
  /** Machine-readable context (the current status, the allowed actions, the offending key…). */
  readonly details: Readonly<Record<string, unknown>>;
  /** What the caller should do about it, in one sentence. */
  readonly hint: string | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: { hint?: string; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.category = CODES[code];
    this.details = Object.freeze({ ...options.details });
    this.hint = options.hint;
  }
}

/** Malformed input: a bad address, amount, config value or argument. */
export class ValidationError extends BotstateError {
  override readonly name = 'ValidationError';
}

/**
 * Well-formed input that a rule forbids now: a lifecycle action from the wrong status, a sell
 * beyond the balance, a clientOrderId already used for another order, a concurrent change, a
 * lost lease, a daemon already running, a database constraint.
 */
export class RuleError extends BotstateError {
  override readonly name: string = 'RuleError';
}

/** A job lifecycle action that is not allowed from the job's current status. */
export class InvalidTransitionError extends RuleError {
  override readonly name = 'InvalidTransitionError';
}

export class NotFoundError extends BotstateError {
  override readonly name = 'NotFoundError';
}

/** The database could not be reached or used; `cause` carries the driver's error. */
export class StorageError extends BotstateError {
  override readonly name = 'StorageError';
}

export class SchemaError extends BotstateError {
  override readonly name = 'SchemaError';
}

export function isBotstateError(e: unknown, code?: ErrorCode): e is BotstateError {
  return e instanceof BotstateError && (code === undefined || e.code === code);
}

/**
 * The CLI's exit codes, one per category. Documented in docs/cli.md; never renumbered.
 */
export const EXIT_CODES: Readonly<Record<ErrorCategory, number>> = Object.freeze({
  internal: 1,
  usage: 2,
  rule: 3,
  not_found: 4,
  storage: 5,
  schema: 6,
});

export function exitCodeFor(e: unknown): number {
  return e instanceof BotstateError ? EXIT_CODES[e.category] : EXIT_CODES.internal;
}

/**
 * A write the database refused for breaking a constraint or trigger of botstate's schema: a
 * foreign key, a CHECK, a unique key, the audit log's append-only rule. botstate's own calls keep
 * them; this comes from SQL run directly in a `store.transaction`. Not a storage failure: the
 * database is fine, and nothing of the statement was written.
 */
export function constraintViolation(message: string, engineCode: string, cause: unknown): BotstateError {
  return new RuleError('CONSTRAINT_VIOLATION', `the database refused the write: ${message} [${engineCode}]`, {
    hint: "the schema's constraints forbid it; change the SQL (botstate's own calls keep them)",
    details: { engineCode },
    cause,
  });
}

/**
 * A statement the database refused as written (a syntax error, too few or too many values, a
 * value it cannot take, a type that does not match, an ambiguous name, an unknown function): SQL
 * run directly in a `store.transaction`, since botstate's own statements are fixed and give the
 * database only values they have checked. The caller's mistake (INVALID_ARGUMENT, exit 2), not a
 * failed database; nothing of the statement ran. `message` keeps the database's own words.
 */
export function invalidSql(message: string, cause: unknown, hint = 'correct the SQL, or the values given with it (one per ? or $n)'): BotstateError {
  return new ValidationError('INVALID_ARGUMENT', message, { hint, cause });
}

/** The hint for SQL the database refused for what it says or the values it was given, not for its syntax. */
export const REFUSED_SQL_HINT = "correct the SQL, or the values given with it: the database's message says what it could not take";

/** The hint for a table, column, index or function the database does not have. */
export const MISSING_HINT =
  "if the SQL is yours, check its names against botstate's schema; otherwise the schema was changed outside botstate (botstate db status shows its version)";

/** Wrap anything thrown into a BotstateError, keeping the original as `cause`. */
export function coerceError(e: unknown): BotstateError {
  if (e instanceof BotstateError) return e;
  return new BotstateError('INTERNAL', `unexpected error: ${errorText(e)}`, { cause: e });
}

/**
 * What anything thrown says, without ever throwing itself: its `message` when that is a string (an
 * Error's, or a plain object's such as `{ code, message }`, which String() would make "[object
 * Object]"), else String() of it. A value that cannot be made a string (an object without a
 * prototype, a toString or a message getter that throws) is named by its type, so that whoever
 * reports or counts the failure (the daemon's failed step) is not stopped by it.
 */
export function errorText(e: unknown): string {
  try {
    if (typeof e === 'object' && e !== null) {
      const message = (e as { message?: unknown }).message;
      if (typeof message === 'string') return message;
    }
    return String(e);
  } catch {
    try {
      return `${Object.prototype.toString.call(e)} that cannot be read as text`;
    } catch {
      return 'a value that cannot be read as text';
    }
  }
}

/** What a call on a closed store is told. */
export function closedStore(location: string): StorageError {
  return new StorageError('STORAGE_UNAVAILABLE', `the store at ${location} is closed`, {
    hint: 'a closed store cannot be used again: open another with openStore',
  });
}

/**
 * What a write through a store opened with `readOnly: true` gets: a call that writes, a migration,
 * or SQL that writes run in a store.transaction (the connection itself is read-only, so the
 * database refuses it too). Never transient: the store stays read-only.
 */
export function readOnlyStore(location: string, cause?: unknown): ValidationError {
  return new ValidationError('INVALID_ARGUMENT', `the store at ${location} was opened read-only (readOnly: true): it refuses every write`, {
    hint: 'open another store without readOnly to change the database; a read-only one only reads (and backs up)',
    ...(cause === undefined ? {} : { cause }),
  });
}
