/**
 * The measured work, shared by both engines: deterministic 18-decimal amounts, and what a user
 * of the raw driver does to record a trade or move a job through its lifecycle with the same SQL
 * as botstate (src/ledger/ledger.ts recordTrade, src/jobs/jobs.ts #transition,
 * src/jobs/job-rows.ts updateJob, src/audit/audit.ts insertAudit).
 *
 * The raw side is the floor: it runs the same statements with parameters of the same kinds and
 * sizes (a new UUID, ISO times, exact decimal strings, the audit entry's before/after JSON), but
 * skips what botstate adds on top of the SQL: input validation, the SHA-256 audit hash chain (it
 * writes a fixed 64-hex string instead), row-to-domain conversion and the async adapter layer.
 * bench/breakdown.ts measures those parts one by one.
 */
import { randomUUID } from 'node:crypto';

export const ACTOR = 'bench';

/** SQL written with `?` placeholders; {@link toPg} numbers them for pg. */
export const JOB_COLUMNS =
  'id, chain, token_address, token_symbol, mode, status, status_reason, last_dca_buy_time, recent_high, ' +
  'recent_high_time, total_accumulated, token_balance, last_rebalance_time, config, strategy_state, ' +
  'created_at, updated_at, started_at, stopped_at, version, audit_hash';
export const SELECT_JOB = `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`;
/** The idempotency check recordTrade makes before writing (a repeated clientOrderId changes nothing). */
export const SELECT_TRADE_BY_CLIENT_ORDER_ID =
  'SELECT id, job_id, side, reason, base_amount, quote_amount, price_usd, client_order_id, exchange_order_id, tx_hash, status, error, created_at, executed_at FROM trades WHERE client_order_id = ?';
export const INSERT_TRADE =
  'INSERT INTO trades (id, job_id, side, reason, base_amount, quote_amount, price_usd, client_order_id, exchange_order_id, tx_hash, status, error, created_at, executed_at) ' +
  'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (client_order_id) DO NOTHING';
const GUARD = 'updated_at = ?, version = ?, audit_hash = ? WHERE id = ? AND version = ? AND status = ?';
/**
 * The guarded UPDATE of a job that sets `columns` (comma-separated). Like botstate, the raw side
 * writes (and audits) only the fields whose value changes, so, for example, a second trade
 * within the same millisecond leaves out the unchanged last_dca_buy_time. Each variant is
 * prepared once, the first time it is needed.
 */
export function updateJobSql(columns: string): string {
  return `UPDATE jobs SET ${columns.split(',').map((c) => `${c} = ?`).join(', ')}, ${GUARD}`;
}
export const INSERT_AUDIT =
  'INSERT INTO audit_log (stream, seq, at, actor, entity, entity_id, action, before, after, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';

/** `?` → `$1, $2, …`, once at set-up, as a pg user would have written it. */
export function toPg(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** What the raw side writes in the audit log's hash column (botstate computes a SHA-256 there). */
export const RAW_HASH = 'ab'.repeat(32);

export type Param = string | number | null;

// ---------------------------------------------------------------------------------------------
// Amounts: deterministic, 18 significant decimals, never a float.

function mix(x: number): number {
  let h = Math.imul(x ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** An amount with up to `intDigits` integer digits and exactly 18 decimals (the last one non-zero). */
function amount(i: number, salt: number, intDigits: number): string {
  const whole = intDigits === 0 ? 0 : mix(i * 7 + salt) % 10 ** intDigits;
  const hi = String(mix(i * 7 + salt + 1) % 1_000_000_000).padStart(9, '0');
  const lo = String((mix(i * 7 + salt + 2) % 100_000_000) * 10 + 1 + (mix(i * 7 + salt + 3) % 9)).padStart(9, '0');
  return `${whole}.${hi}${lo}`;
}

export interface TradeAmounts {
  readonly baseAmount: string;
  readonly quoteAmount: string;
  readonly priceUsd: string;
}

/** The amounts of operation `i`: the same on every side, so both ledgers end with the same balance. */
export function tradeAmounts(i: number): TradeAmounts {
  return { baseAmount: amount(i, 11, 5), quoteAmount: amount(i, 23, 2), priceUsd: amount(i, 37, 0) };
}

// ---------------------------------------------------------------------------------------------
// Exact fixed-point, as a raw user would write it for positive amounts.

const E18 = 10n ** 18n;

export function toUnits(s: string): bigint {
  const dot = s.indexOf('.');
  if (dot < 0) return BigInt(s) * E18;
  return BigInt(s.slice(0, dot)) * E18 + BigInt(s.slice(dot + 1).padEnd(18, '0'));
}

export function fromUnits(u: bigint): string {
  const whole = u / E18;
  const frac = u % E18;
  if (frac === 0n) return whole.toString();
  return `${whole}.${frac.toString().padStart(18, '0').replace(/0+$/, '')}`;
}

// ---------------------------------------------------------------------------------------------
// The raw side's parameters, built from the job row it just read.

/** The columns of the job row the raw side uses (pg returns version as text with identity parsers). */
export interface RawJobRow {
  id: string;
  status: string;
  version: number | string;
  token_balance: string;
  total_accumulated: string;
  last_dca_buy_time: string | null;
  started_at: string | null;
  stopped_at: string | null;
  audit_hash: string;
}

export interface RawTradeInput extends TradeAmounts {
  readonly clientOrderId: string;
}

/** One field a change may set: column, name in the audit entry, new value, current value. */
type Change = readonly [column: string, field: string, next: string | null, current: string | null];

/** The changes that really change something, as botstate keeps them (times compared as instants). */
function effective(changes: readonly Change[]): { columns: string; values: Param[]; before: Record<string, unknown>; after: Record<string, unknown> } {
  const kept = changes.filter(([, , next, current]) => !(next === current || (next !== null && sameTime(current, next))));
  const before: Record<string, unknown> = {};
  const after: Record<string, unknown> = {};
  for (const [, field, next, current] of kept) {
    before[field] = current;
    after[field] = next;
  }
  return { columns: kept.map((c) => c[0]).join(','), values: kept.map((c) => c[2]), before, after };
}

export interface RawTradeParams {
  readonly insert: Param[];
  /** The job update (its changed columns and parameters) and the audit entry, built once the insert has succeeded. */
  readonly rest: () => { columns: string; update: Param[]; audit: Param[] };
}

/**
 * A UUID version 7 (time-ordered, like botstate's ids): a random UUID with the time in front.
 * The kind of id matters: random (v4) keys would scatter the inserts over the primary-key index.
 */
export function uuid7(): string {
  const r = randomUUID();
  const ms = Date.now().toString(16).padStart(12, '0');
  return `${ms.slice(0, 8)}-${ms.slice(8)}-7${r.slice(15)}`;
}

export function rawTradeParams(row: RawJobRow, t: RawTradeInput): RawTradeParams {
  const id = uuid7();
  const at = new Date().toISOString();
  const insert: Param[] = [id, row.id, 'BUY', 'DCA', t.baseAmount, t.quoteAmount, t.priceUsd, t.clientOrderId, null, null, 'EXECUTED', null, at, at];
  return {
    insert,
    rest: () => {
      const version = Number(row.version);
      const c = effective([
        ['token_balance', 'tokenBalance', fromUnits(toUnits(row.token_balance) + toUnits(t.baseAmount)), row.token_balance],
        ['total_accumulated', 'totalAccumulated', fromUnits(toUnits(row.total_accumulated) + toUnits(t.quoteAmount)), row.total_accumulated],
        ['last_dca_buy_time', 'lastDcaBuyTime', at, row.last_dca_buy_time],
      ]);
      const trade = {
        id, jobId: row.id, side: 'BUY', reason: 'DCA', baseAmount: t.baseAmount, quoteAmount: t.quoteAmount, priceUsd: t.priceUsd,
        clientOrderId: t.clientOrderId, exchangeOrderId: null, txHash: null, status: 'EXECUTED', error: null, createdAt: at, executedAt: at,
      };
      return {
        columns: c.columns,
        update: [...c.values, at, version + 1, RAW_HASH, row.id, version, row.status],
        audit: [`job:${row.id}`, version + 1, at, ACTOR, 'trade', id, 'record', JSON.stringify(c.before), JSON.stringify({ ...c.after, trade }), row.audit_hash, RAW_HASH],
      };
    },
  };
}

export interface RawTransition {
  readonly columns: string;
  readonly update: Param[];
  readonly audit: Param[];
}

/**
 * Pause if RUNNING (status, stopped_at = now), resume if PAUSED (status, started_at = now,
 * stopped_at = null; status_reason is already null), as src/jobs/jobs.ts does.
 */
export function rawTransitionParams(row: RawJobRow): RawTransition {
  const at = new Date().toISOString();
  const version = Number(row.version);
  let action: 'pause' | 'resume';
  let changes: Change[];
  if (row.status === 'RUNNING') {
    action = 'pause';
    changes = [['status', 'status', 'PAUSED', row.status], ['stopped_at', 'stoppedAt', at, row.stopped_at]];
  } else if (row.status === 'PAUSED') {
    action = 'resume';
    changes = [['status', 'status', 'RUNNING', row.status], ['started_at', 'startedAt', at, row.started_at], ['stopped_at', 'stoppedAt', null, row.stopped_at]];
  } else {
    throw new Error(`raw transition: job ${row.id} is ${row.status}`);
  }
  const c = effective(changes);
  return {
    columns: c.columns,
    update: [...c.values, at, version + 1, RAW_HASH, row.id, version, row.status],
    audit: [`job:${row.id}`, version + 1, at, ACTOR, 'job', row.id, action, JSON.stringify(c.before), JSON.stringify(c.after), row.audit_hash, RAW_HASH],
  };
}

const PG_TIME = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(?:\.(\d+))?\+00$/;

/**
 * Whether a stored time equals `iso`. SQLite stores botstate's ISO text; pg (identity type
 * parsers, TimeZone=UTC) returns `2026-11-22 10:00:00.12+00`.
 */
function sameTime(stored: string | null, iso: string): boolean {
  if (stored === null) return false;
  if (stored === iso) return true;
  const m = PG_TIME.exec(stored);
  return m !== null && `${m[1]}T${m[2]}.${(m[3] ?? '').padEnd(3, '0')}Z` === iso;
}

/** Token address of the bench's job `n`. */
export function benchToken(n: number): string {
  return `0x${n.toString(16).padStart(40, '0')}`;
}
