import { auditInsertFrom, auditParams, insertAudit, jobStream, prepareAudit, type AuditEntry } from '../audit/audit.ts';
import { BotstateError, NotFoundError, RuleError, StorageError, ValidationError } from '../errors.ts';
import { isDecimal, isNegative, type Decimal } from '../money/decimal.ts';
import type { Dialect, Executor, SqlParam } from '../store/adapter.ts';
import type { CallOptions, Fence } from '../store/context.ts';
import { isStorableText } from '../util/text.ts';
import { described, isRecord, shown } from '../util/values.ts';
import { normalizeAddress } from './address.ts';
import { deserializeConfig, serializeConfig, type JobConfig } from './config.ts';
import type { JobMode, JobStatus } from './lifecycle.ts';

/** A job: one token position on one chain, with its lifecycle status and tracked state. */
export interface Job {
  readonly id: string;
  /** EIP-55 checksummed; unique per chain. */
  readonly tokenAddress: string;
  readonly tokenSymbol: string;
  readonly chain: string;
  readonly mode: JobMode;
  readonly status: JobStatus;
  /** Why the job is in ERROR (kept until it is resumed). */
  readonly statusReason: string | null;
  readonly lastDcaBuyTime: string | null;
  readonly recentHigh: Decimal;
  readonly recentHighTime: string | null;
  /** Quote amount spent on executed buys. */
  readonly totalAccumulated: Decimal;
  /** Executed buys minus executed sells, in base units. */
  readonly tokenBalance: Decimal;
  readonly lastRebalanceTime: string | null;
  readonly config: JobConfig;
  /**
   * The strategy's scratch document (price window, counters…): persisted with every order and
   * periodically, not audited. See docs/strategies.md.
   */
  readonly strategyState: Readonly<Record<string, unknown>>;
  readonly createdAt: string;
  readonly updatedAt: string;
  readonly startedAt: string | null;
  readonly stoppedAt: string | null;
  /** Incremented by every change; equals the number of audit entries of the job. */
  readonly version: number;
}

/** The fields a change may set. */
export type JobChange = Partial<
  Pick<
    Job,
    | 'tokenSymbol'
    | 'mode'
    | 'status'
    | 'statusReason'
    | 'lastDcaBuyTime'
    | 'recentHigh'
    | 'recentHighTime'
    | 'totalAccumulated'
    | 'tokenBalance'
    | 'lastRebalanceTime'
    | 'config'
    | 'startedAt'
    | 'stoppedAt'
  >
>;

export interface JobRow {
  id: string;
  chain: string;
  token_address: string;
  token_symbol: string;
  mode: JobMode;
  status: JobStatus;
  status_reason: string | null;
  last_dca_buy_time: string | null;
  recent_high: string;
  recent_high_time: string | null;
  total_accumulated: string;
  token_balance: string;
  last_rebalance_time: string | null;
  config: string;
  strategy_state: string;
  created_at: string;
  updated_at: string;
  started_at: string | null;
  stopped_at: string | null;
  version: number;
  audit_hash: string;
}

const COLUMN = {
  tokenSymbol: 'token_symbol',
  mode: 'mode',
  status: 'status',
  statusReason: 'status_reason',
  lastDcaBuyTime: 'last_dca_buy_time',
  recentHigh: 'recent_high',
  recentHighTime: 'recent_high_time',
  totalAccumulated: 'total_accumulated',
  tokenBalance: 'token_balance',
  lastRebalanceTime: 'last_rebalance_time',
  config: 'config',
  startedAt: 'started_at',
  stoppedAt: 'stopped_at',
} as const satisfies Record<keyof JobChange, string>;

export const JOB_COLUMNS =
  'id, chain, token_address, token_symbol, mode, status, status_reason, last_dca_buy_time, recent_high, ' +
  'recent_high_time, total_accumulated, token_balance, last_rebalance_time, config, strategy_state, ' +
  'created_at, updated_at, started_at, stopped_at, version, audit_hash';

// Parsing and validating a config costs far more than the rest of a row; configs change rarely.
// Found by job id, the text compared: every read of a row brings a new copy of the text, and
// hashing it as a key (~420 characters) cost more than comparing it with the one kept. Only on
// a miss is it looked up by its text, which jobs with the same config share.
const configById = new Map<string, { text: string; config: JobConfig }>();
const configByText = new Map<string, JobConfig>();
/** Whether the job of `row` has `config` (the same values, however written). */
export function hasConfig(row: JobRow, config: JobConfig): boolean {
  const current = configOf(row);
  return current === config || serializeConfig(current) === serializeConfig(config);
}

function configOf(row: JobRow): JobConfig {
  const cached = configById.get(row.id);
  if (cached !== undefined && cached.text === row.config) return cached.config;
  let config = configByText.get(row.config);
  if (config === undefined) {
    try {
      config = deserializeConfig(row.config);
    } catch (e) {
      // botstate stores only configs it validated: this one was changed outside botstate.
      throw damaged('job', row.id, 'config', `is not valid: ${e instanceof Error ? e.message : String(e)}`, e);
    }
    if (configByText.size >= 1024) configByText.clear();
    configByText.set(row.config, config);
  }
  if (configById.size >= 16384) configById.clear();
  configById.set(row.id, { text: row.config, config });
  return config;
}

/** A stored field of a job or a trade (`id`: the trade's clientOrderId) that botstate cannot have written. */
export function damaged(entity: 'job' | 'trade', id: string, field: string, what: string, cause?: unknown): StorageError {
  return new StorageError('STORAGE_CORRUPT', `the stored ${field} of ${entity} ${id} ${what}`, {
    hint: 'it was changed outside botstate, or written by a newer botstate; botstate verify reports it, and botstate history shows what the audit log records',
    ...(cause === undefined ? {} : { cause }),
  });
}

export function storedAmount(entity: 'job' | 'trade', id: string, field: string, value: string): void {
  if (!isDecimal(value)) throw damaged(entity, id, field, `is not a canonical decimal: ${JSON.stringify(String(value).slice(0, 60))}`);
  // None of these can go below 0 through botstate (a sell beyond the balance is refused).
  if (isNegative(value)) throw damaged(entity, id, field, `is negative: ${value}`);
}

// A time as botstate writes it, each field in range: Date.parse reads it (the check costs ~90 ns
// where Date.parse costs ~440; a row is checked on every read and write). Anything else is
// given to Date.parse.
const WRITTEN_TIME = /^\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{3}Z$/;

/**
 * A time a strategy can compute with: one Date.parse reads (NaN made a DCA buy due on every
 * tick). Not the exact shape botstate writes today: rows written by earlier versions (a time
 * without milliseconds, given to updateState) stay readable; on PostgreSQL a timestamp the
 * adapter cannot express (infinity, a BC date) arrives as the server's text and is refused here.
 */
export function storedTime(entity: 'job' | 'trade', id: string, field: string, value: string | null, nullable: boolean): void {
  if (value === null ? !nullable : typeof value !== 'string' || (!WRITTEN_TIME.test(value) && Number.isNaN(Date.parse(value)))) {
    throw damaged(entity, id, field, `is not a time: ${JSON.stringify(value === null ? null : String(value).slice(0, 60))}`);
  }
}

function storedState(row: JobRow): Record<string, unknown> {
  try {
    return JSON.parse(row.strategy_state) as Record<string, unknown>;
  } catch (e) {
    throw damaged('job', row.id, 'strategyState', 'is not valid JSON', e);
  }
}

export function toJob(row: JobRow): Job {
  checkedRow(row);
  return {
    id: row.id,
    tokenAddress: row.token_address,
    tokenSymbol: row.token_symbol,
    chain: row.chain,
    mode: row.mode,
    status: row.status,
    statusReason: row.status_reason,
    lastDcaBuyTime: row.last_dca_buy_time,
    recentHigh: row.recent_high,
    recentHighTime: row.recent_high_time,
    totalAccumulated: row.total_accumulated,
    tokenBalance: row.token_balance,
    lastRebalanceTime: row.last_rebalance_time,
    config: configOf(row),
    strategyState: storedState(row),
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    startedAt: row.started_at,
    stoppedAt: row.stopped_at,
    version: row.version,
  };
}

/** Identifies a job: by id, or by token address (any case) and chain (default `base`). */
export type JobRef = { readonly id: string } | { readonly tokenAddress: string; readonly chain?: string };

export const DEFAULT_CHAIN = 'base';
const CHAIN = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** Lower-cases and validates a chain name. */
export function normalizeChain(chain: string | undefined): string {
  const given: unknown = chain ?? DEFAULT_CHAIN;
  const c = typeof given === 'string' ? given.toLowerCase() : '';
  if (!CHAIN.test(c)) {
    throw new ValidationError('INVALID_ARGUMENT', `chain ${typeof given === 'string' ? JSON.stringify(shown(given)) : `(${described(given)})`} is not a chain name`, {
      hint: 'use letters, digits and - (at most 32), for example base or ethereum',
    });
  }
  return c;
}

/** True for a ref by id: one whose id is a string (`{ id: undefined, tokenAddress }` is by token, as its type allows). */
export function isByIdRef(ref: JobRef): ref is { readonly id: string } {
  return typeof (ref as { id?: unknown }).id === 'string';
}

export function describeRef(ref: JobRef): string {
  return isByIdRef(ref) ? `job ${ref.id}` : `token ${ref.tokenAddress} on ${normalizeChain(ref.chain)}`;
}

/** Reads a job, locking its row until the transaction ends when `lock` is set. */
// The same string objects every call: the adapters cache prepared statements by SQL text.
const selectSql = new Map<string, { byId: string; byToken: string; byIdWithLease: string; leaseHeld: string }>();
function selectStatements(suffix: string): { byId: string; byToken: string; byIdWithLease: string; leaseHeld: string } {
  let sql = selectSql.get(suffix);
  if (!sql) {
    sql = {
      byId: `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?${suffix}`,
      byToken: `SELECT ${JOB_COLUMNS} FROM jobs WHERE chain = ? AND token_address = ?${suffix}`,
      // jobs and job_leases share no column name: JOB_COLUMNS needs no qualifier.
      byIdWithLease:
        `SELECT ${JOB_COLUMNS} FROM jobs JOIN job_leases ON job_leases.job_id = jobs.id ` +
        `WHERE jobs.id = ? AND job_leases.owner = ? AND job_leases.epoch = ?${suffix}`,
      leaseHeld: `SELECT 1 AS held FROM job_leases WHERE job_id = ? AND owner = ? AND epoch = ?${suffix}`,
    };
    selectSql.set(suffix, sql);
  }
  return sql;
}

/** A JobRef's shape (a plain string or null is refused as such, not with a TypeError). */
function checkJobRef(ref: unknown): asserts ref is JobRef {
  const r = ref as { id?: unknown; tokenAddress?: unknown } | null;
  if (typeof r !== 'object' || r === null || (typeof r.id !== 'string' && typeof r.tokenAddress !== 'string')) {
    const named = typeof r === 'object' && r !== null && !Array.isArray(r) ? (r.id !== undefined ? ` (its id is ${described(r.id)})` : r.tokenAddress !== undefined ? ` (its tokenAddress is ${described(r.tokenAddress)})` : ' with neither') : '';
    throw new ValidationError('INVALID_ARGUMENT', `a job is named { id } or { tokenAddress, chain? }, each a string, got ${described(ref)}${named}`, {
      hint: "pass { tokenAddress: '0x…' } or { id: job.id }",
    });
  }
}

export async function selectJob(tx: Executor, dialect: Dialect, ref: JobRef, lock: boolean): Promise<JobRow | undefined> {
  const sql = selectStatements(lock ? dialect.forUpdate : '');
  checkJobRef(ref);
  if (isByIdRef(ref)) {
    // A ref with a token too (a Job itself, or a mistake) names the job by its id: the token must be the job's.
    const token = (ref as { tokenAddress?: unknown }).tokenAddress;
    // Its chain too, when given (not the default chain: the token alone is the job's on its own chain).
    const chain = (ref as { chain?: string }).chain;
    const given = token === undefined ? undefined : { address: normalizeAddress(token as string), chain: chain === undefined ? undefined : normalizeChain(chain) };
    const row = await tx.get<JobRow>(sql.byId, [ref.id]);
    if (row && given && (given.address !== row.token_address || (given.chain !== undefined && given.chain !== row.chain))) {
      throw new ValidationError('INVALID_ARGUMENT', `job ${ref.id} is the job of ${row.token_address} on ${row.chain}, not of ${given.address}${given.chain === undefined ? '' : ` on ${given.chain}`}, which the same ref names`, {
        hint: "name a job by { id } or by { tokenAddress, chain? }, not by both",
      });
    }
    return row;
  }
  const address = normalizeAddress(ref.tokenAddress);
  const chain = normalizeChain(ref.chain);
  return tx.get<JobRow>(sql.byToken, [chain, address]);
}

export async function requireJob(tx: Executor, dialect: Dialect, ref: JobRef, lock: boolean): Promise<JobRow> {
  const row = await selectJob(tx, dialect, ref, lock);
  if (!row) {
    throw new NotFoundError('JOB_NOT_FOUND', isByIdRef(ref) ? `there is no job with id ${shown(ref.id)}` : `there is no job for ${describeRef(ref)}`, {
      hint: isByIdRef(ref) ? 'check the id; store.jobs.list() (botstate list) lists the jobs' : 'check the address and --chain, or list the jobs with botstate list',
    });
  }
  return row;
}

/**
 * The job of `row` as it was at `at`, from its audit entries (oldest first, ending before the first
 * one recorded after `at`; see Store.jobAt): the first entry's job, then each later entry's changes
 * (the job fields in its `after`; the rest is detail, such as the trade). Only the state is kept,
 * so memory does not grow with the history. Entries that do not follow each other (a seq skipped,
 * a prev_hash that is not the entry before's hash) or contradict the state so far (a `before` that
 * disagrees with it) are a log changed outside botstate: STORAGE_CORRUPT, not a wrong answer.
 */
export async function replayJob(entries: AsyncIterable<AuditEntry>, at: string, row: JobRow): Promise<Job> {
  const label = `${row.token_symbol} (${row.token_address} on ${row.chain})`;
  const corrupt = (why: string) => new StorageError('STORAGE_CORRUPT', `the audit log of ${label} ${why}`, { hint: 'the database was changed outside botstate; run botstate verify' });
  let state: Record<string, unknown> | undefined;
  let last: AuditEntry | undefined;
  for await (const entry of entries) {
    if (last === undefined) {
      const created = entry.action === 'create' && isRecord(entry.after) && entry.after['id'] === row.id ? entry.after : undefined;
      if (created === undefined) throw corrupt('does not start with its creation');
      state = { ...created, strategyState: {}, updatedAt: entry.at, version: entry.seq };
      last = entry;
      continue;
    }
    if (entry.seq !== last.seq + 1) throw corrupt(`skips from entry ${last.seq} to ${entry.seq}`);
    if (entry.prevHash !== last.hash) throw corrupt(`breaks its hash chain at entry ${entry.seq} (its prev_hash is not entry ${last.seq}'s hash)`);
    last = entry;
    state = applyEntry(state!, entry, label);
  }
  if (state === undefined) {
    // No entry at or before `at`: the job came later, or its log does not begin with it.
    if (row.created_at > at) {
      throw new NotFoundError('JOB_NOT_FOUND', `${label} did not exist yet then: it was created ${row.created_at}, after ${at}`, {
        hint: 'give a time after its creation',
      });
    }
    throw corrupt('does not start with its creation');
  }
  return state as unknown as Job;
}

/** `state` after one entry: its job fields applied, each checked against the entry's `before`. */
function applyEntry(state: Record<string, unknown>, entry: AuditEntry, label: string): Record<string, unknown> {
  const mismatch = beforeMismatch(state, entry);
  if (mismatch !== undefined) {
    throw new StorageError('STORAGE_CORRUPT', `audit entry ${entry.seq} of ${label} says ${mismatch}`, {
      hint: 'the audit log, or the job row before that entry was written, was changed outside botstate; run botstate verify',
    });
  }
  const after = isRecord(entry.after) ? entry.after : {};
  for (const field of CHANGEABLE) if (Object.hasOwn(after, field)) state[field] = after[field];
  state['updatedAt'] = entry.at;
  state['version'] = entry.seq;
  return state;
}

const CHANGEABLE = Object.keys(COLUMN) as ReadonlyArray<keyof JobChange>;

/**
 * Where an entry's `before` disagrees with `state`, the job's fields as the entries before it
 * leave them (a field `state` does not hold yet is not compared): `config.limits.maxOrderUsd was
 * 5, but the entries before it make it 10`, naming the first config key that differs. botstate
 * writes `before` from the job row it changes, so a row edited outside botstate, then changed by
 * botstate, shows here even once the row matches the log again. Undefined when they agree.
 */
export function beforeMismatch(state: Readonly<Record<string, unknown>>, entry: AuditEntry): string | undefined {
  const before = isRecord(entry.before) ? entry.before : {};
  for (const field of CHANGEABLE) {
    if (!Object.hasOwn(before, field) || !Object.hasOwn(state, field)) continue;
    const difference = firstDifference(field, before[field], state[field]);
    if (difference === undefined) continue;
    const [path, said, made] = difference;
    return `${path} was ${JSON.stringify(said)}, but the entries before it make it ${JSON.stringify(made)}`;
  }
  return undefined;
}

/**
 * The first key (depth first) where two JSON values differ, with both values there; undefined
 * when they agree. Objects are compared on the keys both have: a config key a later version added
 * is in a `before` (the row read with it, its default filled in) and not in the entries written
 * before it, and one it removed the other way round; neither is a change.
 */
function firstDifference(path: string, a: unknown, b: unknown): [string, unknown, unknown] | undefined {
  if (!isRecord(a) || !isRecord(b)) return JSON.stringify(a) === JSON.stringify(b) ? undefined : [path, a, b];
  for (const key of Object.keys(a)) {
    if (!Object.hasOwn(b, key)) continue;
    const difference = firstDifference(`${path}.${key}`, a[key], b[key]);
    if (difference !== undefined) return difference;
  }
  return undefined;
}

/**
 * Reads and locks a job for a write, and checks the caller's fence (its lease on the job) in
 * the same transaction, so that a daemon which has lost the job cannot write to it.
 *
 * Where rows are locked (PostgreSQL), every statement is a round trip to the server: a fenced
 * read by id is then one statement, the job joined to its lease with both rows locked (job
 * first, in FROM order, as the two separate reads did), and only when it finds nothing is the
 * job read alone, to tell a missing job from a lost lease. SQLite keeps the two lookups: they
 * take ~4 µs together there, and the join ~25 µs (better-sqlite3 13.2, SQLite 3.54.1). SQLite
 * prepares a statement over two tables with bound parameters again at every run (`perf` shows
 * sqlite3_step → sqlite3Reprepare; with the values inlined the same join takes under 1 µs):
 * better-sqlite3 builds it with STAT4 and no way to turn on its query-planner stability
 * guarantee, so no hot path on SQLite runs such a statement.
 */
export async function lockJob(tx: Executor, dialect: Dialect, ref: JobRef, options: CallOptions | undefined): Promise<JobRow> {
  checkJobRef(ref);
  const fence = options?.fence;
  if (fence && isByIdRef(ref) && dialect.forUpdate !== '') {
    const row = await tx.get<JobRow>(selectStatements(dialect.forUpdate).byIdWithLease, [ref.id, fence.owner, fence.epoch]);
    if (row) return checkedRow(row);
    throw leaseLost((await requireJob(tx, dialect, ref, true)).id, fence);
  }
  const row = await requireJob(tx, dialect, ref, true);
  if (fence) {
    const held = await tx.get(selectStatements(dialect.forUpdate).leaseHeld, [row.id, fence.owner, fence.epoch]);
    if (!held) throw leaseLost(row.id, fence);
  }
  return checkedRow(row);
}

/**
 * Checks a row's amounts and times, before anything computes with them (toJob, and the raw row a
 * write locks): one botstate did not write (not canonical, negative, not a time) is damage
 * (STORAGE_CORRUPT), not the caller's bad input.
 */
export function checkedRow(row: JobRow): JobRow {
  storedAmount('job', row.id, 'recentHigh', row.recent_high);
  storedAmount('job', row.id, 'totalAccumulated', row.total_accumulated);
  storedAmount('job', row.id, 'tokenBalance', row.token_balance);
  // A strategy decides from these (a DCA buy is due when lastDcaBuyTime is old enough): one it
  // cannot read must stop the job, not read as "long ago" and buy on every tick.
  storedTime('job', row.id, 'lastDcaBuyTime', row.last_dca_buy_time, true);
  storedTime('job', row.id, 'recentHighTime', row.recent_high_time, true);
  storedTime('job', row.id, 'lastRebalanceTime', row.last_rebalance_time, true);
  storedTime('job', row.id, 'createdAt', row.created_at, false);
  storedTime('job', row.id, 'updatedAt', row.updated_at, false);
  storedTime('job', row.id, 'startedAt', row.started_at, true);
  storedTime('job', row.id, 'stoppedAt', row.stopped_at, true);
  return row;
}

function leaseLost(jobId: string, fence: Fence): BotstateError {
  return new RuleError('LEASE_LOST', `${fence.owner} no longer holds the lease on job ${jobId} (epoch ${fence.epoch})`, {
    hint: 'another daemon has taken the job over; this runner must stop',
    details: { jobId, ...fence },
  });
}

/** One audited change to a job row. */
export interface JobUpdate {
  readonly set: JobChange;
  readonly at: string;
  readonly actor: string;
  readonly action: string;
  /** The audited entity; `job` unless the change is about one of its trades. */
  readonly entity?: string;
  readonly entityId?: string;
  /** Extra content for the audit entry's `after` (for example the trade that caused the change). */
  readonly detail?: Record<string, unknown>;
  /**
   * The strategy scratch document to store in the same UPDATE (not audited, as with saveScratch),
   * given the job as this change leaves it; undefined keeps the stored one.
   */
  readonly scratch?: (job: Job) => Readonly<Record<string, unknown>> | undefined;
}

/** A scratch document as stored: a JSON object of at most 64 KiB. */
export function scratchText(doc: Readonly<Record<string, unknown>>): string {
  const refused = () => new ValidationError('INVALID_ARGUMENT', 'strategy scratch state must be a JSON object of at most 64 KiB', { hint: 'keep only what the strategy needs to resume (counters, recent prices), as plain JSON' });
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw refused();
  let text: string;
  // JSON.stringify writes a Map, a Set, a Promise or a WeakRef as {}: what it holds would be gone
  // at the next read. The replacer sees each value as it is written (after its toJSON, which may
  // convert it).
  let lost: 'Map' | 'Set' | 'Promise' | 'WeakRef' | undefined;
  // And a number that is not finite as null: a counter that became NaN would come back null.
  let nonFinite: number | undefined;
  const spot = (_key: string, value: unknown): unknown => {
    if (nonFinite === undefined && typeof value === 'number' && !Number.isFinite(value)) nonFinite = value;
    if (lost === undefined && typeof value === 'object' && value !== null) {
      if (value instanceof Map || value instanceof WeakMap) lost = 'Map';
      else if (value instanceof Set || value instanceof WeakSet) lost = 'Set';
      else if (value instanceof Promise) lost = 'Promise';
      else if (value instanceof WeakRef) lost = 'WeakRef';
    }
    return value;
  };
  try {
    text = JSON.stringify(doc, spot);
  } catch {
    throw refused(); // a BigInt, a cycle (also one behind a toJSON)
  }
  // A Date, or anything whose toJSON gives other than an object, is not stored as an object.
  if (text === undefined || !text.startsWith('{') || text.length > 65536) throw refused();
  if (nonFinite !== undefined) {
    throw new ValidationError('INVALID_ARGUMENT', `strategy scratch state holds the number ${String(nonFinite)}, which JSON writes as null`, {
      hint: 'store only finite numbers (check the computation that gave it), or null for none',
    });
  }
  if (lost !== undefined) {
    throw new ValidationError('INVALID_ARGUMENT', `strategy scratch state holds a ${lost}, which JSON keeps as {} (its content would be lost)`, {
      hint: lost === 'Promise' ? 'give the document itself, not a promise of it (a scratch function is not async)' : 'use plain objects and arrays',
    });
  }
  // What is written, not the document given: a toJSON() may put into the text what the document
  // does not hold. JSON.stringify writes a NUL and a lone surrogate as \u escapes, so a text
  // without one holds neither, and only a text with one is read back to be checked.
  if (text.includes('\\u') && !storableJson(JSON.parse(text))) {
    // PostgreSQL's jsonb refuses both; SQLite would keep them: the engines must agree.
    throw new ValidationError('INVALID_ARGUMENT', 'strategy scratch state holds a NUL character or a lone UTF-16 surrogate', {
      hint: 'keep only well-formed text in the scratch state',
    });
  }
  return text;
}

function storableJson(value: unknown): boolean {
  if (typeof value === 'string') return isStorableText(value);
  if (typeof value !== 'object' || value === null) return true;
  if (Array.isArray(value)) return value.every(storableJson);
  return Object.entries(value).every(([k, v]) => isStorableText(k) && storableJson(v));
}

const updateSql = new Map<string, string>();

/** How far behind a job's last entry a writer's clock may be and still be stamped after it. */
export const CLOCK_SKEW_MS = 5 * 60_000;

/**
 * The time an entry is stamped with: the writer's clock, unless that is behind the job's last
 * entry (another host's clock a little ahead, an NTP step back) by at most CLOCK_SKEW_MS: then the
 * last entry's time, so that a stream's times never go backwards and readers that walk it by time
 * (time travel, history --since) see it in order. A clock further behind is stamped as it is
 * (following a far-ahead clock would date every later entry wrongly): docs/durability.md.
 */
export function stampAfter(last: string, now: string): string {
  if (now >= last) return now;
  return Date.parse(last) - Date.parse(now) <= CLOCK_SKEW_MS ? last : now;
}

/**
 * Applies `update` to the locked `row` with a guarded UPDATE (same version, same status) and
 * appends the audit entry in the same transaction (on PostgreSQL in the same statement). The
 * job's version is the audit sequence number of its stream, and its audit_hash the head of
 * the chain.
 */
export async function updateJob(tx: Executor, dialect: Dialect, row: JobRow, given: JobUpdate): Promise<JobRow> {
  const at = stampAfter(row.updated_at, given.at);
  // The lifecycle times a transition sets to its own time move with it (a resume is not dated
  // before the pause it follows); other times (a fill's) are what they are.
  const set = at === given.at ? given.set : Object.fromEntries(Object.entries(given.set).map(([k, v]) => [k, (k === 'startedAt' || k === 'stoppedAt') && v === given.at ? at : v])) as JobChange;
  const update = at === given.at ? given : { ...given, at, set };
  // Read from the row as it is: a whole Job (parsing its config and strategy state) is not needed.
  const fields = changedFrom((f) => fieldOf(row, f), update.set);
  const before: Record<string, unknown> = {};
  const after: Record<string, unknown> = {};
  const params: SqlParam[] = [];
  for (const f of fields) {
    before[f] = fieldOf(row, f);
    after[f] = update.set[f];
    params.push(columnValue(f, update.set[f]));
  }
  const version = row.version + 1;
  const next: JobRow = { ...row, updated_at: update.at, version };
  for (const f of fields) (next as unknown as Record<string, SqlParam>)[COLUMN[f]] = columnValue(f, update.set[f]);
  const doc = update.scratch?.(toJob(next));
  const scratch = doc === undefined ? undefined : scratchText(doc);
  const withScratch = scratch !== undefined && scratch !== row.strategy_state;
  if (withScratch) next.strategy_state = scratch;
  const prepared = prepareAudit({
    stream: jobStream(row.id),
    seq: version,
    prevHash: row.audit_hash,
    at: update.at,
    actor: update.actor,
    entity: update.entity ?? 'job',
    entityId: update.entityId ?? row.id,
    action: update.action,
    before: fields.length > 0 ? before : null,
    after: update.detail ? { ...after, ...update.detail } : after,
  });
  const key = `${fields.join(',')}${withScratch ? ';scratch' : ''}${dialect.writableCte ? ';cte' : ''}`;
  let sql = updateSql.get(key);
  if (sql === undefined) {
    const sets = [...fields.map((f) => `${COLUMN[f]} = ?`), ...(withScratch ? ['strategy_state = ?'] : [])].join(', ');
    sql = `UPDATE jobs SET ${sets}${sets ? ', ' : ''}updated_at = ?, version = ?, audit_hash = ? WHERE id = ? AND version = ? AND status = ?`;
    // One round trip where the engine allows it: the entry is inserted only if the UPDATE matched.
    if (dialect.writableCte) sql = `WITH changed AS (${sql} RETURNING 1) ${auditInsertFrom('changed')}`;
    updateSql.set(key, sql);
  }
  if (withScratch) params.push(scratch);
  params.push(update.at, version, prepared.hash, row.id, row.version, row.status);
  if (dialect.writableCte) params.push(...auditParams(prepared));
  const changed = await tx.run(sql, params);
  if (changed !== 1) {
    throw new RuleError('CONCURRENT_MODIFICATION', `job ${row.id} was changed by someone else meanwhile`, {
      hint: 'read the job again and retry',
    });
  }
  if (!dialect.writableCte) await insertAudit(tx, prepared);
  next.audit_hash = prepared.hash;
  return next;
}

/** The fields of `set` whose value differs from the job's: only those are written and audited. */
export function changedFields(job: Job, set: JobChange): Array<keyof JobChange> {
  return changedFrom((f) => job[f], set);
}

function changedFrom(current: (field: keyof JobChange) => unknown, set: JobChange): Array<keyof JobChange> {
  return (Object.keys(set) as Array<keyof JobChange>).filter((f) => columnValue(f, set[f]) !== columnValue(f, current(f)));
}

/** A job's field, read from its row: what toJob(row)[field] would be. */
function fieldOf(row: JobRow, field: keyof JobChange): unknown {
  return field === 'config' ? configOf(row) : row[COLUMN[field]];
}

function columnValue(field: keyof JobChange, value: unknown): SqlParam {
  if (field === 'config') return serializeConfig(value as JobConfig);
  return value as SqlParam;
}
