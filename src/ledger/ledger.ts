import { BotstateError, InvalidTransitionError, NotFoundError, RuleError, StorageError, ValidationError } from '../errors.ts';
import { jobStream } from '../audit/audit.ts';
import { checkedRow, hasConfig, JOB_COLUMNS, lockJob, requireJob, storedAmount, storedTime, toJob, updateJob, type Job, type JobChange, type JobRef, type JobRow, type JobUpdate } from '../jobs/job-rows.ts';
import type { JobConfig } from '../jobs/config.ts';
import { add, cmp, integerDigits, isNegative, max, MAX_INTEGER_DIGITS, min, mul, parseDecimal, sub, type Decimal } from '../money/decimal.ts';
import type { Executor, SqlParam } from '../store/adapter.ts';
import type { CallOptions, Context, Fence } from '../store/context.ts';
import { uuidv7 } from '../util/ids.ts';
import { storableText } from '../util/text.ts';
import { described, inputObject, shown } from '../util/values.ts';
import { checkNotAhead, checkNotBefore, checkWindow, isIsoTime, notIsoTime, nowIso } from '../util/time.ts';

export const TradeSide = Object.freeze({ BUY: 'BUY', SELL: 'SELL' } as const);
export type TradeSide = (typeof TradeSide)[keyof typeof TradeSide];

export const TradeReason = Object.freeze({
  DCA: 'DCA',
  DIP_BUY: 'DIP_BUY',
  TAKE_PROFIT: 'TAKE_PROFIT',
  REBALANCE: 'REBALANCE',
  SUPPORT_BUY: 'SUPPORT_BUY',
  LIQUIDATE: 'LIQUIDATE',
} as const);
export type TradeReason = (typeof TradeReason)[keyof typeof TradeReason];

export const TradeStatus = Object.freeze({ PENDING: 'PENDING', EXECUTED: 'EXECUTED', FAILED: 'FAILED' } as const);
export type TradeStatus = (typeof TradeStatus)[keyof typeof TradeStatus];

/** One trade of a job. Amounts are exact decimal strings. */
export interface Trade {
  readonly id: string;
  readonly jobId: string;
  readonly side: TradeSide;
  readonly reason: TradeReason;
  /** Token amount; null only while an intent is PENDING or after it FAILED without a fill. */
  readonly baseAmount: Decimal | null;
  readonly quoteAmount: Decimal | null;
  readonly priceUsd: Decimal | null;
  /** Unique across the ledger; the idempotency key shared with the exchange. */
  readonly clientOrderId: string;
  readonly exchangeOrderId: string | null;
  readonly txHash: string | null;
  readonly status: TradeStatus;
  readonly error: string | null;
  readonly createdAt: string;
  readonly executedAt: string | null;
}

/** The amounts of an executed trade. */
export interface Fill {
  readonly baseAmount: string;
  readonly quoteAmount: string;
  readonly priceUsd: string;
  readonly exchangeOrderId?: string;
  readonly txHash?: string;
  /** ISO 8601; default now. */
  readonly executedAt?: string;
}

export interface TradeInput {
  readonly job: JobRef;
  readonly clientOrderId: string;
  readonly side: TradeSide;
  readonly reason: TradeReason;
}

/** An executed trade to record in one step. */
export type RecordTradeInput = TradeInput & Fill;

/**
 * Which of a job's trades `ledger.trades` lists: `status`, only those; `since` (ISO 8601 UTC with
 * milliseconds), only those created at or after it; `limit`, only the last `limit` of them (the
 * most recent). Always oldest first.
 */
export interface TradesFilter {
  readonly status?: TradeStatus;
  readonly since?: string;
  readonly limit?: number;
}

/**
 * An order about to be sent: recorded PENDING before the exchange is called. Amounts are what
 * was asked, one of them as the order carries one: a BUY gives a baseAmount or a quoteAmount, a SELL a baseAmount (the tokens it holds
 * back from other sells until it is settled). Without a clientOrderId, the ledger derives one from the job and its sequence
 * number (`<jobId>-<n>`, n the job's version after the intent), inside the transaction; when a
 * trade holds that id already (one recorded by hand after a restore took the sequence back), n is
 * the next number above every such id of the job.
 */
export type IntentInput = Omit<TradeInput, 'clientOrderId'> & {
  readonly clientOrderId?: string;
  readonly baseAmount?: string;
  readonly quoteAmount?: string;
  readonly priceUsd?: string;
};

/** Options of {@link Ledger.recordIntent}. */
export interface IntentOptions extends CallOptions {
  /**
   * The strategy scratch document to store with the intent, in the same UPDATE of the job (what
   * a separate `jobs.saveScratch` in the same transaction would store). Not stored when the
   * intent was already recorded (a duplicate).
   */
  readonly scratch?: Readonly<Record<string, unknown>>;
  /**
   * The config the order was decided with. If the job's config has changed since (an operator's
   * `config` while the order was being decided), the intent is refused with
   * CONCURRENT_MODIFICATION and nothing is written: decide again under the new config.
   */
  readonly decidedWith?: JobConfig;
}

/** Options of {@link Ledger.settle}. */
export interface SettleOptions extends CallOptions {
  /**
   * The strategy scratch document to store with the settlement, in the same UPDATE of the job
   * (what a separate `jobs.saveScratch` in the same transaction would store, without its second
   * lock and write). Called with the job and the trade as the settlement leaves them (the job's
   * strategyState still the stored one); undefined keeps the stored scratch. Not called when the
   * trade was already settled (a duplicate). For a job run by botstate's Daemon, pass
   * `scratchAfterFill`: its strategies' limits and cash then count this fill.
   */
  readonly scratch?: (settled: { readonly job: Job; readonly trade: Trade }) => Readonly<Record<string, unknown>> | undefined;
}

/** Options of {@link Ledger.recordTrade}: `scratch` as for {@link SettleOptions}. */
export type RecordOptions = SettleOptions;

export type Settlement = ({ readonly status: 'EXECUTED' } & Fill) | { readonly status: 'FAILED'; readonly error: string };

export interface TradeResult {
  readonly trade: Trade;
  readonly job: Job;
  /** True when the clientOrderId was already recorded and nothing changed. */
  readonly duplicate: boolean;
}

export interface TradeRow {
  id: string;
  job_id: string;
  side: TradeSide;
  reason: TradeReason;
  base_amount: string | null;
  quote_amount: string | null;
  price_usd: string | null;
  client_order_id: string;
  exchange_order_id: string | null;
  tx_hash: string | null;
  status: TradeStatus;
  error: string | null;
  created_at: string;
  executed_at: string | null;
}

/** The trades table's columns, in the order of {@link TradeRow}. */
export const TRADE_COLUMNS =
  'id, job_id, side, reason, base_amount, quote_amount, price_usd, client_order_id, exchange_order_id, tx_hash, status, error, created_at, executed_at';
const SELECT_BY_CLIENT_ORDER_ID = `SELECT ${TRADE_COLUMNS} FROM trades WHERE client_order_id = ?`;
const INSERT_TRADE =
  `INSERT INTO trades (${TRADE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ` +
  'ON CONFLICT (client_order_id) DO NOTHING';

export function toTrade(row: TradeRow): Trade {
  return {
    id: row.id,
    jobId: row.job_id,
    side: row.side,
    reason: row.reason,
    baseAmount: row.base_amount,
    quoteAmount: row.quote_amount,
    priceUsd: row.price_usd,
    clientOrderId: row.client_order_id,
    exchangeOrderId: row.exchange_order_id,
    txHash: row.tx_hash,
    status: row.status,
    error: row.error,
    createdAt: row.created_at,
    executedAt: row.executed_at,
  };
}

/**
 * A trade row read to be shown or returned: its amounts and times as botstate writes them, else
 * STORAGE_CORRUPT (a row changed outside botstate), as for a job row. `botstate verify` reports
 * such rows among its problems.
 */
function checkedTrade(row: TradeRow): Trade {
  const id = row.client_order_id;
  if (row.base_amount !== null) storedAmount('trade', id, 'baseAmount', row.base_amount);
  if (row.quote_amount !== null) storedAmount('trade', id, 'quoteAmount', row.quote_amount);
  if (row.price_usd !== null) storedAmount('trade', id, 'priceUsd', row.price_usd);
  storedTime('trade', id, 'createdAt', row.created_at, false);
  storedTime('trade', id, 'executedAt', row.executed_at, true);
  return toTrade(row);
}

const CLIENT_ORDER_ID = /^[A-Za-z0-9._:-]{1,64}$/;
const REFERENCE = /^[\x21-\x7e]{1,128}$/;

/**
 * Whether `value` is an exchangeOrderId or txHash the ledger stores: 1 to 128 visible ASCII
 * characters, no spaces. The daemon checks an exchange's answer against it before settling.
 */
export function isReference(value: string): boolean {
  return REFERENCE.test(value);
}

/**
 * A clientOrderId botstate accepts. A new one (`fresh`) may not be `.` or `..` alone: a URL path
 * cannot carry them (`/orders/..` is `/`), so no REST exchange could be asked about such an
 * order. One stored before that rule can still be looked up and settled.
 */
function checkClientOrderId(clientOrderId: unknown, fresh = false): void {
  if (typeof clientOrderId !== 'string') {
    throw new ValidationError('INVALID_ARGUMENT', `clientOrderId must be a string, got ${described(clientOrderId)}`, {
      hint: 'pass it as text: 1 to 64 letters, digits or . _ : -',
    });
  }
  if (!CLIENT_ORDER_ID.test(clientOrderId) || (fresh && /^\.\.?$/.test(clientOrderId))) {
    throw new ValidationError('INVALID_ARGUMENT', `clientOrderId ${JSON.stringify(shown(clientOrderId))} is not allowed`, {
      hint: 'use 1 to 64 letters, digits or . _ : -, and not . or .. alone',
    });
  }
}

/** Trades read per query by Ledger.tradePages. */
const TRADE_PAGE = 2000;

/** A listing's status filter: an unknown one would match no trade, and [] would read as "none". */
function checkedStatus(filter: { readonly status?: unknown }, fields: readonly string[]): TradeStatus | undefined {
  const status: unknown = inputObject(filter, 'the filter', fields).status;
  if (status !== undefined && (typeof status !== 'string' || !Object.hasOwn(TradeStatus, status))) {
    throw notOneOf('status', status, Object.keys(TradeStatus));
  }
  return status as TradeStatus | undefined;
}

/** A value that is not one of an enum's names: capitals suggested only when they would make it one. */
function notOneOf(field: string, value: unknown, names: readonly string[]): ValidationError {
  const upper = typeof value === 'string' ? value.toUpperCase() : undefined;
  const got = typeof value === 'string' ? JSON.stringify(shown(value)) : `(${described(value)})`;
  return new ValidationError('INVALID_ARGUMENT', `${field} ${got} is not one of ${names.join(', ')}`, {
    hint: upper !== undefined && names.includes(upper) ? `write it in capitals: '${upper}'` : `use one of ${names.map((n) => `'${n}'`).join(', ')}`,
  });
}

/** The fields of a Fill, a TradeInput, recordTrade's input (both) and recordIntent's. */
const FILL_FIELDS = ['baseAmount', 'quoteAmount', 'priceUsd', 'exchangeOrderId', 'txHash', 'executedAt'];
const TRADE_FIELDS = ['job', 'clientOrderId', 'side', 'reason'];
const RECORD_FIELDS = [...TRADE_FIELDS, ...FILL_FIELDS];
const INTENT_FIELDS = [...TRADE_FIELDS, 'baseAmount', 'quoteAmount', 'priceUsd'];

/** `fields`: those the input may have, unless the caller checked them already. */
function checkTradeInput(input: TradeInput, fields?: readonly string[]): void {
  inputObject(input, 'the trade input', fields);
  checkClientOrderId(input.clientOrderId, true);
  // Strings only: Object.hasOwn would take ['BUY'] (or anything whose text is BUY) as the key.
  if (typeof input.side !== 'string' || !Object.hasOwn(TradeSide, input.side)) {
    throw notOneOf('side', input.side, Object.keys(TradeSide));
  }
  if (typeof input.reason !== 'string' || !Object.hasOwn(TradeReason, input.reason)) {
    throw notOneOf('reason', input.reason, Object.keys(TradeReason));
  }
}

/** Throws what {@link Ledger.recordTrade} would refuse in its input alone, without a database (the CLI checks before it opens one); returns the fill checked. */
export function checkRecordInput(input: RecordTradeInput): CheckedFill {
  checkTradeInput(input, RECORD_FIELDS);
  const fill = checkFill(input);
  checkPaid(input.side, fill);
  return fill;
}

/** Throws what {@link Ledger.settle} would refuse in its input alone, without a database (the CLI checks before it opens one). */
export function checkSettlement(clientOrderId: string, settlement: Settlement): void {
  checkClientOrderId(clientOrderId);
  checkSettlementStatus(settlement);
  if (settlement.status === 'EXECUTED') checkFill(settlement);
  else checkFailure(settlement);
}

/** EXECUTED or FAILED, nothing else (anything else was taken for FAILED), and only that status's fields. */
function checkSettlementStatus(settlement: unknown): void {
  const status = (settlement as { status?: unknown } | null | undefined)?.status;
  if (status !== 'EXECUTED' && status !== 'FAILED') {
    throw new ValidationError('INVALID_ARGUMENT', `a settlement's status must be EXECUTED or FAILED, got ${described(status)}`, {
      hint: "pass { status: 'EXECUTED', baseAmount, quoteAmount, priceUsd } or { status: 'FAILED', error }",
    });
  }
  inputObject(settlement, `the ${status} settlement`, status === 'EXECUTED' ? ['status', ...FILL_FIELDS] : ['status', 'error']);
}

function checkFailure(settlement: { error?: unknown }): void {
  if (typeof settlement.error !== 'string' || settlement.error.trim() === '') {
    throw new ValidationError('INVALID_ARGUMENT', 'a FAILED settlement needs an error', { hint: 'say why the order failed' });
  }
}

/**
 * What a refused 0 is told, for the amounts that must be greater than 0 (a price of 0 is a
 * missing price, and would value the position at nothing). The CLI says the same of its flags.
 */
export const POSITIVE_HINTS = Object.freeze({
  baseAmount: 'a trade moves a positive amount of tokens',
  priceUsd: "give the token's USD price at the fill",
  quoteAmount: 'a BUY sized in quote spends a positive amount',
});

function positive(value: string, field: keyof typeof POSITIVE_HINTS): Decimal {
  const d = parseDecimal(value, { field });
  if (cmp(d, '0') <= 0) throw new ValidationError('INVALID_AMOUNT', `${field} must be greater than 0, got ${d}`, { hint: POSITIVE_HINTS[field] });
  return d;
}

interface CheckedFill {
  base: Decimal;
  quote: Decimal;
  price: Decimal;
  exchangeOrderId: string | null;
  txHash: string | null;
  executedAt: string;
}

function checkFill(fill: Fill): CheckedFill {
  const ref = (v: string | undefined, field: string): string | null => {
    if (v === undefined || v === null) return null;
    // A number (an exchange's numeric order id) would be stored as other text than it is returned and audited.
    if (typeof v !== 'string') {
      throw new ValidationError('INVALID_ARGUMENT', `${field} must be a string, got ${described(v)}`, {
        hint: `pass it as text, e.g. String(${field})`,
      });
    }
    if (!isReference(v)) {
      throw new ValidationError('INVALID_ARGUMENT', `${field} ${JSON.stringify(shown(v))} is not allowed`, {
        hint: 'use 1 to 128 visible ASCII characters, no spaces, as the exchange or the chain gives it',
      });
    }
    return v;
  };
  const executedAt = fill.executedAt ?? nowIso();
  if (fill.executedAt !== undefined && !isIsoTime(executedAt)) {
    throw new ValidationError('INVALID_ARGUMENT', notIsoTime('executedAt', executedAt), {
      hint: 'pass new Date().toISOString()',
    });
  }
  // A job's lastDcaBuyTime only moves forward: a fill dated in the future (a typo in the year)
  // would hold its DCA buys back until then. A few minutes ahead is an exchange's clock.
  checkNotAhead('executedAt', executedAt, "give the time the exchange reports for the fill (up to 5 minutes ahead of this host's clock is taken)");
  return {
    base: positive(fill.baseAmount, 'baseAmount'),
    quote: parseDecimal(fill.quoteAmount, { field: 'quoteAmount' }),
    price: positive(fill.priceUsd, 'priceUsd'),
    exchangeOrderId: ref(fill.exchangeOrderId, 'exchangeOrderId'),
    txHash: ref(fill.txHash, 'txHash'),
    executedAt,
  };
}

/**
 * An exchange fills an order for no more than it asked, in the intent's own terms: its
 * baseAmount when it gave one, else its quoteAmount. More would take what the job's other open
 * sells hold back (their fills could then never be recorded) or spend past the job's limits.
 * Undefined when the fill is within what was asked; else the amount compared, asked and got.
 */
export function beyondAsked(
  intent: { readonly baseAmount: Decimal | null; readonly quoteAmount: Decimal | null },
  fill: { readonly baseAmount: Decimal | null; readonly quoteAmount: Decimal | null },
): { field: 'baseAmount' | 'quoteAmount'; asked: Decimal | null; got: Decimal | null } | undefined {
  const field = intent.baseAmount !== null ? 'baseAmount' : 'quoteAmount';
  const asked = intent[field];
  const got = fill[field];
  return asked !== null && got !== null && cmp(got, asked) <= 0 ? undefined : { field, asked, got };
}

/**
 * Why a fill's amounts cannot be one trade: `base` tokens at `price` are worth more than twice the
 * `quote`, or less than half of it (beyond 0.01 USD: a sell of dust may fetch 0 on an exchange
 * that counts in cents, and a fee or a 6-decimal quote token moves a tiny fill by more than half). Fees
 * and rounding move them apart by far less; a price or an amount in the wrong unit or scale (an
 * adapter's bug, a typo of a few digits) moves them by a factor of 10 or more, and would go into
 * the job's balance, its accumulation and its take profit unnoticed. Undefined when they agree.
 */
export function amountsDisagree(base: Decimal, quote: Decimal, price: Decimal): string | undefined {
  const worth = mul(base, price);
  const [lo, hi] = [min(worth, quote), max(worth, quote)];
  if (cmp(sub(hi, lo), FILL_SLACK_USD) <= 0 || cmp(mul(lo, '2'), hi) >= 0) return undefined;
  return `${base} tokens at ${price} are worth ${worth}, not ${quote}`;
}

const FILL_SLACK_USD = '0.01';

/**
 * Refuses a fill given by hand (botstate record and settle) whose amounts disagree (see
 * {@link amountsDisagree}): a typo of a few digits. The ledger itself takes what it is given.
 */
export function checkAmountsAgree(fill: { baseAmount: string; quoteAmount: string; priceUsd: string }): void {
  const why = amountsDisagree(parseDecimal(fill.baseAmount), parseDecimal(fill.quoteAmount), parseDecimal(fill.priceUsd));
  if (why === undefined) return;
  throw new ValidationError('INVALID_AMOUNT', `the fill's amounts disagree: ${why} (they may differ by fees, not by more than a factor of 2)`, {
    hint: 'give --base and --quote as the account received and paid them, and --price as the USD price of one token (about quote / base)',
  });
}

/**
 * A BUY paid nothing for its tokens is no fill (the exchange's answer is wrong, or these tokens
 * came another way): its tokens would count at no cost in the job's balance and accumulation. A
 * SELL may fetch 0 (the last of a worthless token, liquidated).
 */
function checkPaid(side: TradeSide, fill: CheckedFill): void {
  if (side !== 'BUY' || cmp(fill.quote, '0') > 0) return;
  throw new ValidationError('INVALID_AMOUNT', `quoteAmount ${fill.quote} pays nothing for the ${fill.base} tokens of a BUY: a purchase costs more than 0`, {
    hint: 'give the quote the exchange took for the tokens (settle the intent failed if it bought nothing)',
  });
}

function checkNoMoreThanAsked(intent: TradeRow, fill: CheckedFill): void {
  const beyond = beyondAsked({ baseAmount: intent.base_amount, quoteAmount: intent.quote_amount }, { baseAmount: fill.base, quoteAmount: fill.quote });
  if (beyond === undefined) return;
  const { field, asked, got } = beyond;
  throw new ValidationError('INVALID_AMOUNT', `the fill's ${field} ${got} is more than intent ${intent.client_order_id} asked for, ${asked}`, {
    hint: "an exchange fills no more than asked; if it filled another order under this id, settle this one failed and record that order under a clientOrderId of its own",
    details: { field, asked, got },
  });
}

/** A settle's or recordTrade's `scratch` option: a function (recordIntent's is the document itself). */
function checkScratchHook(options: SettleOptions | undefined): void {
  const hook: unknown = options?.scratch;
  if (hook !== undefined && hook !== null && typeof hook !== 'function') {
    throw new ValidationError('INVALID_ARGUMENT', `the scratch option of settle and recordTrade must be a function that returns the scratch document, got ${described(hook)}`, {
      hint: 'pass ({ job, trade }) => document (scratchAfterFill for a job the Daemon runs); recordIntent is the one given the document itself',
    });
  }
}

/** The caller's `scratch` option as updateJob takes it: given the job as the fill leaves it. */
function scratchAfter(options: SettleOptions | undefined, trade: Trade): Pick<JobUpdate, 'scratch'> {
  const hook = options?.scratch;
  return typeof hook === 'function' ? { scratch: (job: Job) => hook({ job, trade }) } : {};
}

/** The base amount the job's PENDING sells have asked for: not available to another sell. */
async function reservedForSells(tx: Executor, jobId: string, except?: string): Promise<Decimal> {
  const rows = await tx.all<{ id: string; base_amount: string | null }>(
    "SELECT id, base_amount FROM trades WHERE job_id = ? AND status = 'PENDING' AND side = 'SELL'",
    [jobId],
  );
  let reserved: Decimal = '0';
  for (const row of rows) if (row.id !== except && row.base_amount !== null) reserved = add(reserved, row.base_amount);
  return reserved;
}

/** A sell may not take what the job does not hold, nor what its open sells have asked for. */
function checkAvailable(job: JobRow, base: Decimal, reserved: Decimal): void {
  const available = sub(job.token_balance, reserved);
  if (cmp(base, available) > 0) {
    const held = reserved === '0' ? `holds ${job.token_balance}` : `holds ${job.token_balance}, of which ${reserved} is asked for by open sells`;
    throw new RuleError('INSUFFICIENT_BALANCE', `cannot sell ${base}: job ${job.id} ${held}`, {
      hint: 'a job can only sell what its executed trades bought and no open order has asked for',
      details: { tokenBalance: job.token_balance, reserved, baseAmount: base },
    });
  }
}

/** The job's new state after an executed trade; refuses a sell of more than the job holds. */
function applyFill(job: JobRow, side: TradeSide, reason: TradeReason, fill: CheckedFill): JobChange {
  if (side === 'BUY') {
    const change: { tokenBalance: Decimal; totalAccumulated: Decimal; lastDcaBuyTime?: string } = {
      tokenBalance: withinLimit(job, 'tokenBalance', add(job.token_balance, fill.base), 'baseAmount', fill.base),
      totalAccumulated: withinLimit(job, 'totalAccumulated', add(job.total_accumulated, fill.quote), 'quoteAmount', fill.quote),
    };
    // The latest DCA buy, even when fills are recorded out of order.
    if (reason === 'DCA' && (job.last_dca_buy_time === null || fill.executedAt > job.last_dca_buy_time)) {
      change.lastDcaBuyTime = fill.executedAt;
    }
    return change;
  }
  const balance = sub(job.token_balance, fill.base);
  if (isNegative(balance)) {
    throw new RuleError('INSUFFICIENT_BALANCE', `cannot sell ${fill.base}: job ${job.id} holds ${job.token_balance}`, {
      hint: 'a job can only sell what its executed trades bought',
      details: { tokenBalance: job.token_balance, baseAmount: fill.base },
    });
  }
  return { tokenBalance: balance };
}

/**
 * A job's running total after a buy, refused past the digits an amount may have: a balance of 79
 * integer digits could be stored, but no sell of it could be placed, and the job would go to
 * ERROR at its liquidation.
 */
function withinLimit(job: JobRow, total: string, value: Decimal, field: string, amount: Decimal): Decimal {
  const digits = integerDigits(value);
  if (digits <= MAX_INTEGER_DIGITS) return value;
  throw new ValidationError('INVALID_AMOUNT', `${field} ${amount} would take the ${total} of job ${job.id} to ${digits} integer digits; at most ${MAX_INTEGER_DIGITS} are allowed`, {
    hint: `check ${field} for extra digits`,
    details: { field, reason: 'total-magnitude', total },
  });
}

/**
 * An order may be placed for a RUNNING job, or a sell for a LIQUIDATING one.
 */
function checkCanTrade(job: JobRow, side: TradeSide): void {
  if (!(job.status === 'RUNNING' || (job.status === 'LIQUIDATING' && side === 'SELL'))) {
    throw new InvalidTransitionError('INVALID_TRANSITION', `cannot place a ${side} order for job ${job.id}: it is ${job.status}`, {
      hint: job.status === 'LIQUIDATING' ? 'a liquidating job only sells' : 'resume the job first',
      details: { status: job.status, side },
    });
  }
}

/**
 * What differs between a stored trade and an executed fill given for it, each as what, stored,
 * given: the job (by id), a status other than EXECUTED, the side, the reason, the amounts (of an
 * executed trade) and a reference given that is not the one stored (another tx hash is another
 * fill, and one not stored the first time would not be stored by a repeat, which changes nothing).
 * None: the same fill.
 */
function fillDifferences(row: TradeRow, side: TradeSide, reason: TradeReason, jobId: string, fill: CheckedFill): Array<[what: string, stored: string | null, given: string | null]> {
  const differs: Array<[string, string | null, string | null]> = [];
  const check = (what: string, stored: string | null, given: string | null, same: boolean) => {
    if (!same) differs.push([what, stored, given]);
  };
  const amount = (what: string, stored: string | null, given: Decimal) => check(what, stored, given, stored !== null && cmp(stored, given) === 0);
  check('the job', row.job_id, jobId, row.job_id === jobId);
  check('its status', row.status, 'EXECUTED', row.status === 'EXECUTED');
  check('the side', row.side, side, row.side === side);
  check('the reason', row.reason, reason, row.reason === reason);
  if (row.status === 'EXECUTED') {
    amount('the base amount', row.base_amount, fill.base);
    amount('the quote amount', row.quote_amount, fill.quote);
    amount('the price', row.price_usd, fill.price);
  }
  check('the tx hash', row.tx_hash, fill.txHash, sameRef(row.tx_hash, fill.txHash));
  check('the exchange order id', row.exchange_order_id, fill.exchangeOrderId, sameRef(row.exchange_order_id, fill.exchangeOrderId));
  return differs;
}

function sameFill(row: TradeRow, side: TradeSide, reason: TradeReason, jobId: string, fill: CheckedFill): boolean {
  return fillDifferences(row, side, reason, jobId, fill).length === 0;
}

function sameRef(stored: string | null, given: string | null): boolean {
  return given === null || stored === given;
}

/**
 * The amounts an executed trade's intent asked for, from the intent's audit entry (the trade's
 * row holds the fill's since); undefined for a trade that had no intent (recorded executed).
 */
async function intentAsked(tx: Executor, trade: TradeRow): Promise<Pick<TradeRow, 'base_amount' | 'quote_amount' | 'price_usd'> | undefined> {
  const entry = await tx.get<{ after: string | null }>("SELECT after FROM audit_log WHERE stream = ? AND entity_id = ? AND action = 'intent'", [jobStream(trade.job_id), trade.id]);
  if (!entry) return undefined;
  let asked: Partial<Record<'baseAmount' | 'quoteAmount' | 'priceUsd', string | null>> | undefined;
  try {
    asked = (JSON.parse(entry.after ?? 'null') as { trade?: typeof asked } | null)?.trade;
  } catch {
    asked = undefined;
  }
  if (typeof asked !== 'object' || asked === null) {
    throw new StorageError('STORAGE_CORRUPT', `the audit entry of the intent of trade ${trade.client_order_id} holds no trade`, { hint: 'the database was changed outside botstate; run botstate verify' });
  }
  return { base_amount: asked.baseAmount ?? null, quote_amount: asked.quoteAmount ?? null, price_usd: asked.priceUsd ?? null };
}

/**
 * A record refused because its clientOrderId holds another trade (executed or failed): what
 * differs from the one stored, each with both values, the other job by its symbol and token.
 */
async function otherRecord(tx: Executor, existing: TradeRow, job: JobRow, input: RecordTradeInput, fill: CheckedFill): Promise<BotstateError> {
  type Named = Pick<JobRow, 'token_symbol' | 'token_address' | 'chain'>;
  const name = (j: Named) => `${j.token_symbol} ${j.token_address} on ${j.chain}`;
  const differs: string[] = [];
  for (const [what, stored, given] of fillDifferences(existing, input.side, input.reason, job.id, fill)) {
    if (what !== 'the job') {
      differs.push(`${what} (${stored ?? 'none'}, not ${given ?? 'none'})`);
      continue;
    }
    const other = await tx.get<Named>('SELECT token_symbol, token_address, chain FROM jobs WHERE id = ?', [existing.job_id]);
    differs.push(`the job (${other ? name(other) : existing.job_id}, not ${name(job)})`);
  }
  return new RuleError(
    'DUPLICATE_ORDER',
    `clientOrderId ${existing.client_order_id} is already recorded (${existing.status} ${existing.side}), and this record differs in ${differs.join(', ')}`,
    { hint: 'every order needs its own clientOrderId; a retry must repeat the original exactly', details: { status: existing.status } },
  );
}

/**
 * The trade ledger. Recording an executed trade updates the job's balance, total and DCA time
 * in the same transaction, and is idempotent on clientOrderId.
 *
 * For exactly-once orders: {@link Ledger.recordIntent} before calling the exchange, then
 * {@link Ledger.settle} with what the exchange reports.
 *
 * @example
 * await store.ledger.recordTrade({ job: { id }, clientOrderId: 'j1-1', side: 'BUY', reason: 'DCA',
 *   baseAmount: '1234.000000000000000001', quoteAmount: '10', priceUsd: '0.0081' });
 */
export class Ledger {
  readonly #ctx: Context;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  /** Records an executed trade. Recording the same clientOrderId again changes nothing. */
  async recordTrade(input: RecordTradeInput, options?: RecordOptions): Promise<TradeResult> {
    const fill = checkRecordInput(input);
    checkScratchHook(options);
    const actor = this.#ctx.actorFor(options);
    return this.#ctx.write(options, async (tx) => {
      const job = await lockJob(tx, this.#ctx.adapter.dialect, input.job, options);
      const existing = await this.#find(tx, input.clientOrderId);
      if (existing) {
        if (sameFill(existing, input.side, input.reason, job.id, fill)) return { trade: toTrade(existing), job: toJob(job), duplicate: true };
        if (existing.status === 'PENDING') throw duplicateOrder(existing, true);
        throw await otherRecord(tx, existing, job, input, fill);
      }
      // Every check before the first write: a refusal leaves nothing behind.
      if (input.side === 'SELL') checkAvailable(job, fill.base, await reservedForSells(tx, job.id));
      const set = applyFill(job, input.side, input.reason, fill);
      const id = uuidv7();
      const inserted = await tx.run(INSERT_TRADE, [
        id, job.id, input.side, input.reason, fill.base, fill.quote, fill.price, input.clientOrderId,
        fill.exchangeOrderId, fill.txHash, 'EXECUTED', null, fill.executedAt, fill.executedAt,
      ]);
      if (inserted !== 1) throw duplicateOrder(await this.#byClientOrderId(tx, input.clientOrderId), true);
      const trade: Trade = {
        id, jobId: job.id, side: input.side, reason: input.reason, baseAmount: fill.base, quoteAmount: fill.quote,
        priceUsd: fill.price, clientOrderId: input.clientOrderId, exchangeOrderId: fill.exchangeOrderId,
        txHash: fill.txHash, status: 'EXECUTED', error: null, createdAt: fill.executedAt, executedAt: fill.executedAt,
      };
      // The audit entry and updatedAt say when this was recorded; the trade keeps its fill time.
      const next = await updateJob(tx, this.#ctx.adapter.dialect, job, {
        set, at: nowIso(), actor, action: 'record', entity: 'trade', entityId: id, detail: { trade }, ...scratchAfter(options, trade),
      });
      return { trade, job: toJob(next), duplicate: false };
    });
  }

  /**
   * Records an order as PENDING before it is sent, so that a crash between sending and
   * recording the fill leaves a trace to reconcile by clientOrderId. Idempotent by clientOrderId:
   * the same intent again under the same clientOrderId returns the existing trade. Without one, the
   * id is derived from the job's version, which the intent itself moves on: to retry, pass the
   * clientOrderId of the trade it returned.
   */
  async recordIntent(input: IntentInput, options?: IntentOptions): Promise<TradeResult> {
    checkTradeInput({ ...inputObject(input, 'the intent input', INTENT_FIELDS), clientOrderId: input.clientOrderId ?? 'derived' });
    const base = input.baseAmount === undefined ? null : positive(input.baseAmount, 'baseAmount');
    // Sized in quote, the quote is what the order spends: 0 would be an order for nothing.
    const quote = input.quoteAmount === undefined ? null : positive(input.quoteAmount, 'quoteAmount');
    const price = input.priceUsd === undefined ? null : positive(input.priceUsd, 'priceUsd');
    if (base === null && quote === null) {
      throw new ValidationError('INVALID_AMOUNT', 'an intent needs a baseAmount or a quoteAmount', { hint: 'say how much to trade' });
    }
    if (base !== null && quote !== null) {
      // The order carries one of them (OrderRequest): the other would be recorded as asked, and
      // ignored by the exchange and by the check of the fill against what was asked.
      throw new ValidationError('INVALID_AMOUNT', `an intent gives a baseAmount or a quoteAmount, not both (got ${base} and ${quote})`, {
        hint: input.side === 'SELL' ? 'a SELL gives the baseAmount it sells' : 'a BUY gives the tokens it buys (baseAmount) or the quote it spends (quoteAmount)',
      });
    }
    if (input.side === 'SELL' && base === null) {
      // An open sell holds back the tokens it may sell: one sized in quote could sell any number
      // of them, and its fill could then not be recorded (nor the sells let in beside it).
      throw new ValidationError('INVALID_AMOUNT', 'a SELL intent needs a baseAmount: how many tokens to sell', {
        hint: 'give baseAmount (the quote it fetches is the exchange\'s answer, recorded when it is settled)',
      });
    }
    const actor = this.#ctx.actorFor(options);
    const decidedWith = options?.decidedWith;
    return this.#ctx.write(options, async (tx) => {
      const job = await lockJob(tx, this.#ctx.adapter.dialect, input.job, options);
      let clientOrderId = input.clientOrderId ?? `${job.id}-${job.version + 1}`;
      const id = uuidv7();
      const at = nowIso();
      // The common case first: a new intent that the job may place is inserted (ON CONFLICT DO
      // NOTHING). A refused intent or a clientOrderId already taken is then looked up: repeating
      // an accepted intent stays a no-op whatever the job's state is now.
      let refused: unknown;
      try {
        // Among the refusals: a repeat of an intent recorded before the config changed is still a repeat.
        if (decidedWith !== undefined && !hasConfig(job, decidedWith)) {
          throw new RuleError('CONCURRENT_MODIFICATION', `the config of job ${job.id} changed after this order was decided; it was not recorded`, {
            hint: 'decide the order again under the new config',
          });
        }
        checkCanTrade(job, input.side);
        if (input.side === 'SELL' && base !== null) checkAvailable(job, base, await reservedForSells(tx, job.id));
      } catch (e) {
        refused = e;
      }
      const insert = async (coid: string) =>
        (await tx.run(INSERT_TRADE, [id, job.id, input.side, input.reason, base, quote, price, coid, null, null, 'PENDING', null, at, null])) === 1;
      let inserted = refused === undefined && (await insert(clientOrderId));
      if (!inserted && refused === undefined && input.clientOrderId === undefined) {
        // The derived id is taken: never by this intent recorded before (recording it moved the
        // job's version past it, so a retry derives another id), but by an order recorded by hand
        // under the id the exchange showed after a restore took the sequence back, or by an intent
        // that an earlier skip put above the version. The next id free of them all is used.
        clientOrderId = await nextFreeDerivedId(tx, job.id, job.version + 1);
        inserted = await insert(clientOrderId);
      }
      if (!inserted) {
        // A derived id is never a repeat (see above): a refused intent is refused, not merged with
        // the trade that happens to hold the id it would have had.
        if (input.clientOrderId === undefined) throw refused ?? new RuleError('CONCURRENT_MODIFICATION', `clientOrderId ${clientOrderId} was taken meanwhile`, { hint: 'retry' });
        const existing = await this.#find(tx, clientOrderId);
        if (!existing) {
          throw refused ?? new BotstateError('INTERNAL', `clientOrderId ${clientOrderId} conflicted but no trade holds it`);
        }
        const same = (a: string | null, b: Decimal | null) => (a === null ? b === null : b !== null && cmp(a, b) === 0);
        // An EXECUTED trade holds its fill's amounts, no longer the intent's, which its audit entry
        // keeps (none for a trade recorded executed, which had no intent); PENDING and FAILED hold the intent's.
        const asked = existing.status === 'EXECUTED' ? await intentAsked(tx, existing) : existing;
        if (
          existing.job_id === job.id &&
          existing.side === input.side &&
          existing.reason === input.reason &&
          (asked === undefined || (same(asked.base_amount, base) && same(asked.quote_amount, quote) && same(asked.price_usd, price)))
        ) {
          return { trade: toTrade(existing), job: toJob(job), duplicate: true };
        }
        throw duplicateOrder(existing);
      }
      const trade = toTrade({
        id, job_id: job.id, side: input.side, reason: input.reason, base_amount: base, quote_amount: quote, price_usd: price,
        client_order_id: clientOrderId, exchange_order_id: null, tx_hash: null, status: 'PENDING', error: null, created_at: at, executed_at: null,
      });
      const scratch = options?.scratch;
      const next = await updateJob(tx, this.#ctx.adapter.dialect, job, {
        set: {}, at, actor, action: 'intent', entity: 'trade', entityId: id, detail: { trade },
        ...(scratch ? { scratch: () => scratch } : {}),
      });
      return { trade, job: toJob(next), duplicate: false };
    });
  }

  /**
   * Settles a PENDING intent with the exchange's answer: EXECUTED with the filled amounts
   * (applied to the job in the same transaction), or FAILED with the reason. Settling an
   * already settled trade the same way changes nothing.
   */
  async settle(clientOrderId: string, settlement: Settlement, options?: SettleOptions): Promise<TradeResult> {
    checkClientOrderId(clientOrderId);
    checkSettlementStatus(settlement);
    const fill = settlement.status === 'EXECUTED' ? checkFill(settlement) : undefined;
    if (settlement.status !== 'EXECUTED') checkFailure(settlement);
    checkScratchHook(options);
    const actor = this.#ctx.actorFor(options);
    return this.#ctx.write(options, async (tx) => {
      const dialect = this.#ctx.adapter.dialect;
      // Where rows are locked (PostgreSQL), one statement reads the trade and locks its job (and
      // the lease, when fenced); only when it finds nothing do the two steps below say why.
      const joined = dialect.forUpdate === '' ? undefined : await lockTradeJob(tx, clientOrderId, options?.fence);
      const current = joined?.trade ?? (await this.#byClientOrderId(tx, clientOrderId));
      const job = joined ? checkedRow(joined.job) : await lockJob(tx, dialect, { id: current.job_id }, options);
      const settledAlready = (row: TradeRow): TradeResult => {
        const same = fill ? sameFill(row, row.side, row.reason, job.id, fill) : row.status === 'FAILED';
        if (same) return { trade: toTrade(row), job: toJob(job), duplicate: true };
        throw new RuleError('DUPLICATE_ORDER', `trade ${clientOrderId} is already ${row.status}`, {
          hint: 'a settled trade cannot be settled differently',
          details: { status: row.status },
        });
      };
      if (current.status !== 'PENDING') return settledAlready(current);
      if (fill) {
        checkPaid(current.side, fill);
        checkNoMoreThanAsked(current, fill);
        checkNotBefore('executedAt', fill.executedAt, current.created_at, `order ${clientOrderId}`, "give the time the exchange reports for the fill (up to 5 minutes before the order was recorded is taken: another host's clock)");
      }
      // With concurrent writers the trade was read before the job's lock was taken, and another
      // settlement may have committed in between: the guarded UPDATE (status still PENDING)
      // finds that out, before anything is written, without reading the trade again first.
      let trade: Trade;
      let changed: number;
      if (fill) {
        trade = {
          ...toTrade(current), baseAmount: fill.base, quoteAmount: fill.quote, priceUsd: fill.price,
          exchangeOrderId: fill.exchangeOrderId, txHash: fill.txHash, status: 'EXECUTED', executedAt: fill.executedAt,
        };
        changed = await tx.run(
          "UPDATE trades SET status = 'EXECUTED', base_amount = ?, quote_amount = ?, price_usd = ?, exchange_order_id = ?, tx_hash = ?, executed_at = ? WHERE id = ? AND status = 'PENDING'",
          [fill.base, fill.quote, fill.price, fill.exchangeOrderId, fill.txHash, fill.executedAt, current.id],
        );
      } else {
        const error = storableText((settlement as { error: string }).error, 2000);
        trade = { ...toTrade(current), status: 'FAILED', error };
        changed = await tx.run("UPDATE trades SET status = 'FAILED', error = ? WHERE id = ? AND status = 'PENDING'", [error, current.id]);
      }
      if (changed !== 1) return settledAlready(await this.#byClientOrderId(tx, clientOrderId));
      // A sell beyond the balance throws here, after the UPDATE: the transaction (or the
      // caller's savepoint) undoes it.
      const set: JobChange = fill ? applyFill(job, current.side, current.reason, fill) : {};
      // When it was recorded, not the fill time (which may be earlier than the job's last entry).
      const next = await updateJob(tx, this.#ctx.adapter.dialect, job, {
        set, at: nowIso(), actor, action: 'settle', entity: 'trade', entityId: current.id, detail: { trade }, ...scratchAfter(options, trade),
      });
      return { trade, job: toJob(next), duplicate: false };
    });
  }

  /** A job's trades, oldest first. The whole list is held at once: for a long one, see tradePages. */
  async trades(ref: JobRef, filter: TradesFilter = {}, options?: CallOptions): Promise<Trade[]> {
    const status = checkedStatus(filter, ['status', 'since', 'limit']);
    const window = checkWindow(filter);
    return this.#ctx.read(options, async (tx) => {
      const job = await requireJob(tx, this.#ctx.adapter.dialect, ref, false);
      const { from, where, params } = this.#tradesOf(job.id, status);
      if (window.since !== undefined) where.push('created_at >= ?'), params.push(window.since);
      const sql = `SELECT ${TRADE_COLUMNS} FROM ${from} WHERE ${where.join(' AND ')}`;
      // The last `limit`: read newest first, returned oldest first.
      const rows =
        window.limit === undefined
          ? await tx.all<TradeRow>(`${sql} ORDER BY created_at, id`, params)
          : (await tx.all<TradeRow>(`${sql} ORDER BY created_at DESC, id DESC LIMIT ?`, [...params, window.limit])).reverse();
      return rows.map(checkedTrade);
    });
  }

  /**
   * A job's trades (of `status`, if given), oldest first (by createdAt, then id), a page of up to
   * 2,000 at a time: for a ledger too long to hold at once. Each page is its own read, so no
   * transaction stays open while the caller works through a page.
   */
  async *tradePages(ref: JobRef, filter: { readonly status?: TradeStatus } = {}): AsyncGenerator<Trade[]> {
    const status = checkedStatus(filter, ['status']);
    const jobId = (await this.#ctx.read(undefined, (tx) => requireJob(tx, this.#ctx.adapter.dialect, ref, false))).id;
    for (let after: Trade | undefined; ; ) {
      const page = await this.#ctx.read(undefined, async (tx) => {
        const { from, where, params } = this.#tradesOf(jobId, status);
        if (after) where.push('(created_at > ? OR (created_at = ? AND id > ?))'), params.push(after.createdAt, after.createdAt, after.id);
        return (await tx.all<TradeRow>(`SELECT ${TRADE_COLUMNS} FROM ${from} WHERE ${where.join(' AND ')} ORDER BY created_at, id LIMIT ${TRADE_PAGE}`, params)).map(checkedTrade);
      });
      if (page.length > 0) yield page;
      if (page.length < TRADE_PAGE) return;
      after = page[page.length - 1];
    }
  }

  /** Where a job's trades (of `status`) are read from, and the conditions that pick them. */
  #tradesOf(jobId: string, status: TradeStatus | undefined): { from: string; where: string[]; params: SqlParam[] } {
    const where = ['job_id = ?'];
    const params: SqlParam[] = [jobId];
    // A job's PENDING trades are read through the partial index of pending trades (see the dialect).
    const from = status === 'PENDING' ? this.#ctx.adapter.dialect.pendingTradesFrom : 'trades';
    if (status === 'PENDING') where.push("status = 'PENDING'");
    else if (status !== undefined) where.push('status = ?'), params.push(status);
    return { from, where, params };
  }

  /** Every PENDING trade of every job: what recovery must reconcile. */
  async pending(options?: CallOptions): Promise<Trade[]> {
    const rows = await this.#ctx.read(options, (tx) =>
      tx.all<TradeRow>(`SELECT ${TRADE_COLUMNS} FROM trades WHERE status = 'PENDING' ORDER BY created_at, id`),
    );
    return rows.map(checkedTrade);
  }

  /**
   * How many PENDING intents each job has, by job id (jobs with none left out): counted, not read,
   * so a damaged trade row does not stop `botstate list` (`pending` refuses one).
   */
  async pendingCounts(options?: CallOptions): Promise<Map<string, number>> {
    const rows = await this.#ctx.read(options, (tx) =>
      tx.all<{ job_id: string; n: number | string }>("SELECT job_id, count(*) AS n FROM trades WHERE status = 'PENDING' GROUP BY job_id"),
    );
    return new Map(rows.map((r) => [r.job_id, Number(r.n)]));
  }

  /** One trade by clientOrderId; throws TRADE_NOT_FOUND. */
  async get(clientOrderId: string, options?: CallOptions): Promise<Trade> {
    checkClientOrderId(clientOrderId);
    return checkedTrade(await this.#ctx.read(options, (tx) => this.#byClientOrderId(tx, clientOrderId)));
  }

  #find(tx: Executor, clientOrderId: string): Promise<TradeRow | undefined> {
    return tx.get<TradeRow>(SELECT_BY_CLIENT_ORDER_ID, [clientOrderId]);
  }

  async #byClientOrderId(tx: Executor, clientOrderId: string): Promise<TradeRow> {
    const row = await this.#find(tx, clientOrderId);
    if (!row) {
      throw new NotFoundError('TRADE_NOT_FOUND', `there is no trade with clientOrderId ${clientOrderId}`, {
        hint: 'check the id, or list the trades with botstate trades <token>',
      });
    }
    return row;
  }
}

const TRADE_COLUMN_LIST = TRADE_COLUMNS.split(', ');
const JOB_COLUMN_LIST = JOB_COLUMNS.split(', ');
const JOINED_TRADE_COLUMNS = TRADE_COLUMN_LIST.map((c) => `t.${c} AS t_${c}`).join(', ');
const JOINED_JOB_COLUMNS = JOB_COLUMN_LIST.map((c) => `j.${c}`).join(', ');
const TRADE_WITH_JOB = `SELECT ${JOINED_TRADE_COLUMNS}, ${JOINED_JOB_COLUMNS} FROM trades t JOIN jobs j ON j.id = t.job_id`;
const LOCK_TRADE_JOB = `${TRADE_WITH_JOB} WHERE t.client_order_id = ? FOR UPDATE OF j`;
const LOCK_TRADE_JOB_LEASE =
  `${TRADE_WITH_JOB} JOIN job_leases l ON l.job_id = j.id AND l.owner = ? AND l.epoch = ? ` +
  'WHERE t.client_order_id = ? FOR UPDATE OF j, l';

/**
 * The trade and its job, the job locked (and its lease, held at the fence's epoch), in one
 * statement; undefined when any of them is missing. PostgreSQL only: the trade itself is not
 * locked, and a settlement committed meanwhile shows in the guarded UPDATE of settle.
 */
async function lockTradeJob(tx: Executor, clientOrderId: string, fence: Fence | undefined): Promise<{ trade: TradeRow; job: JobRow } | undefined> {
  const row = fence
    ? await tx.get<Record<string, unknown>>(LOCK_TRADE_JOB_LEASE, [fence.owner, fence.epoch, clientOrderId])
    : await tx.get<Record<string, unknown>>(LOCK_TRADE_JOB, [clientOrderId]);
  if (!row) return undefined;
  const trade: Record<string, unknown> = {};
  for (const c of TRADE_COLUMN_LIST) trade[c] = row[`t_${c}`];
  const job: Record<string, unknown> = {};
  for (const c of JOB_COLUMN_LIST) job[c] = row[c];
  return { trade: trade as unknown as TradeRow, job: job as unknown as JobRow };
}

function duplicateOrder(existing: TradeRow, recording = false): BotstateError {
  if (recording && existing.status === 'PENDING') {
    // An open order is never "repeated" by a record: what it needs is its fill.
    return new RuleError(
      'DUPLICATE_ORDER',
      `clientOrderId ${existing.client_order_id} is an open order (a PENDING ${existing.side} of job ${existing.job_id}), not an executed trade`,
      {
        hint: `settle it with what the exchange filled (botstate settle ${existing.client_order_id} --status executed --base N --quote N --price N, or store.ledger.settle); a trade of its own needs its own clientOrderId`,
        details: { status: existing.status },
      },
    );
  }
  return new RuleError(
    'DUPLICATE_ORDER',
    `clientOrderId ${existing.client_order_id} is already recorded (${existing.status} ${existing.side} of job ${existing.job_id}) with different details`,
    { hint: 'every order needs its own clientOrderId; a retry must repeat the original exactly', details: { status: existing.status } },
  );
}

/**
 * The sequence number of a clientOrderId derived from the job (`<jobId>-<n>`, see
 * Ledger.recordIntent), or undefined for any other id.
 */
export function derivedSequence(jobId: string, clientOrderId: string): number | undefined {
  const prefix = `${jobId}-`;
  if (!clientOrderId.startsWith(prefix)) return undefined;
  const suffix = clientOrderId.slice(prefix.length);
  return /^[1-9][0-9]{0,14}$/.test(suffix) ? Number(suffix) : undefined;
}

/**
 * The first derived clientOrderId of the job (`<jobId>-<n>`, n ≥ `from`) above every one its
 * trades hold and not taken by any trade.
 */
async function nextFreeDerivedId(tx: Executor, jobId: string, from: number): Promise<string> {
  const prefix = `${jobId}-`;
  const rows = await tx.all<{ client_order_id: string }>('SELECT client_order_id FROM trades WHERE job_id = ? AND substr(client_order_id, 1, ?) = ?', [
    jobId,
    prefix.length,
    prefix,
  ]);
  let n = from;
  for (const { client_order_id: coid } of rows) {
    const seq = derivedSequence(jobId, coid);
    if (seq !== undefined) n = Math.max(n, seq + 1);
  }
  // Another job's trade may hold one too (an id recorded by hand): the first free one.
  while (await tx.get('SELECT 1 AS taken FROM trades WHERE client_order_id = ?', [`${prefix}${n}`])) n++;
  return `${prefix}${n}`;
}
