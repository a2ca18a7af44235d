/**
 * The strategies, as pure functions: no I/O and no clock (the caller passes `now`). One call of
 * {@link decide} is one tick of one job and yields at most one order; the daemon sends it, records the
 * fill, then calls {@link afterFill} with the scratch that {@link decide} returned alongside the order.
 *
 * All amounts are exact {@link Decimal}s. Comparisons are exact (products of bigint units); sizes are
 * rounded once, always in the safe direction (a buy never spends more than allowed, a sell never sells
 * more than held or more than a cap allows). The rules are documented in docs/strategies.md.
 *
 * @example
 * let scratch = parseScratch(job.strategyState, job);
 * const d = decide({ job, scratch, price: await exchange.getPrice(job.tokenAddress), now: Date.now() });
 * // persist d.state and d.scratch with the intent of d.order (if any), send it, record the fill, then:
 * scratch = afterFill({ job: jobAfterFill, scratch: d.scratch, trade, now: Date.now() });
 */
import { ValidationError } from '../../errors.ts';
import type { Job } from '../../jobs/job-rows.ts';
import type { Trade, TradeReason } from '../../ledger/ledger.ts';
import { add, cmp, div, integerDigits, isDecimal, MAX_INTEGER_DIGITS, min, mul, sub, toUnits, worthNothing, type Decimal } from '../../money/decimal.ts';
import { decideAccumulate } from './accumulate.ts';
import { decideLiquidating } from './liquidating.ts';
import { decideLiquidity } from './liquidity.ts';
import { parseScratch, SCRATCH_VERSION, TRADE_MINUTES_CAP, TRADE_TIMES_CAP, VOLUME_DAYS, type Scratch } from './scratch.ts';

export { emptyScratch, parseScratch, MA_WINDOW, SCRATCH_VERSION, type Scratch } from './scratch.ts';

export interface StrategyInput {
  readonly job: Job;
  readonly scratch: Scratch;
  /** The current price of one token in USD: a canonical Decimal greater than 0. */
  readonly price: Decimal;
  /** Epoch milliseconds. */
  readonly now: number;
}

/** An order to place. A BUY spends `quoteAmount`; a SELL sells `baseAmount`. Amounts are canonical and > 0. */
export interface OrderPlan {
  readonly side: 'BUY' | 'SELL';
  readonly reason: TradeReason;
  readonly baseAmount?: Decimal;
  readonly quoteAmount?: Decimal;
}

/** Audited job fields a decision changes. */
export interface StateChange {
  recentHigh?: Decimal;
  /** ISO 8601. */
  recentHighTime?: string;
  /** ISO 8601. */
  lastRebalanceTime?: string;
}

export interface Decision {
  readonly order: OrderPlan | null;
  /** Audited job fields to change: only recentHigh, recentHighTime (ISO), lastRebalanceTime (ISO). Empty when nothing changes. */
  readonly state: StateChange;
  /**
   * The new scratch document (not audited; persisted with every order and periodically). It is the very
   * input object when nothing changed, so `decision.scratch !== input.scratch` says whether to persist it.
   */
  readonly scratch: Scratch;
  /** A LIQUIDATING job whose balance is zero: the daemon completes the liquidation. */
  readonly completeLiquidation: boolean;
  /**
   * Why no order (for logs/tests): 'not-running', 'max-trades-per-hour', 'dca-not-due', 'ma-warming-up',
   * 'no-signal', 'liquidated', or the limit that cut the triggered order to nothing: 'max-accumulation',
   * 'max-position', 'max-order', 'max-daily-volume', 'no-cash', 'min-trade', 'zero-amount'.
   */
  readonly skipped?: string;
}

/** One tick of one job: dispatches on job.status (LIQUIDATING → liquidating; other than RUNNING → nothing) then job.mode. */
export function decide(input: StrategyInput): Decision {
  checkPrice(input.price);
  checkNow(input.now);
  const { job } = input;
  if (job.status === 'LIQUIDATING') return decideLiquidating(input);
  if (job.status !== 'RUNNING') return finish(input, begin(input), null, 'not-running');
  return job.mode === 'LIQUIDITY' ? decideLiquidity(input) : decideAccumulate(input);
}

export interface AfterFillInput {
  /** The job after the fill was applied. */
  readonly job: Job;
  /** The scratch returned by the decide() that produced the order (the one persisted with its intent). */
  readonly scratch: Scratch;
  /** The trade; only an EXECUTED one changes anything beyond clearing the in-flight marker (and ending a cut order's rest). */
  readonly trade: Trade;
  /** Epoch milliseconds. */
  readonly now: number;
}

/**
 * The scratch after a fill: the trade is counted for maxTradesPerHour (at its executedAt), its quote
 * amount for the UTC day's volume and the liquidity cash, a filled dip buy marks the dip as bought, and
 * a filled take-profit sell sets the price the next one must rise takeProfitPercent above.
 * Applying the same trade (same clientOrderId) twice in a row changes nothing the second time (only
 * the last trade's id is kept: one applied again after another counts twice).
 */
export function afterFill(input: AfterFillInput): Scratch {
  const { scratch, trade, now } = input;
  checkNow(now);
  // The in-flight marker is the dip order's: only a buy of a dip order's reason is it (or, for a
  // SUPPORT_BUY, may be). Another trade applied meanwhile (a sale recorded by hand while the dip
  // buy's outcome is not known yet) leaves it for that order's fill, which would otherwise not
  // mark the dip bought, and the dip would be bought again.
  const dipOrder = trade.side === 'BUY' && (trade.reason === 'DIP_BUY' || trade.reason === 'SUPPORT_BUY');
  const cleared: Scratch = scratch.pendingDip && dipOrder ? { ...scratch, pendingDip: false } : scratch;
  if (trade.status !== 'EXECUTED' || trade.baseAmount === null || trade.quoteAmount === null) {
    // A failed part of a cut take profit or dip buy ends it: the next one starts afresh.
    if (trade.reason === 'TAKE_PROFIT' && scratch.takeProfitLeft !== null) return { ...cleared, takeProfitLeft: null, takeProfitFloor: null };
    if (trade.reason === 'DIP_BUY' && scratch.dipLeft !== null) return { ...cleared, dipLeft: null };
    return cleared;
  }
  if (scratch.lastFill === trade.clientOrderId) return cleared;
  const parsed = trade.executedAt === null ? Number.NaN : Date.parse(trade.executedAt);
  const at = Number.isSafeInteger(parsed) && parsed >= 0 ? parsed : now;
  const quote = trade.quoteAmount;
  const day = utcDay(at);
  // Each fill counts on its own day, whatever today is: one dated after today (an exchange's clock
  // ahead of this host's, by up to the 5 minutes the ledger takes) counts on today's volume too
  // until its day comes (volumeToday), and today's volume ends with today.
  const dayVolumes = withVolume(scratch.dayVolumes, day, quote);
  const isBuy = trade.side === 'BUY';
  // A sell other than a take profit's (by hand, a liquidation) ends the rest of a cut take profit.
  const endsRest = !isBuy && trade.reason !== 'TAKE_PROFIT' && scratch.takeProfitLeft !== null;
  return {
    ...cleared,
    ...(endsRest ? { takeProfitLeft: null, takeProfitFloor: null } : {}),
    dipBought: dipOrder && (trade.reason === 'DIP_BUY' || scratch.pendingDip) ? true : scratch.dipBought,
    takeProfitAt: !isBuy && trade.reason === 'TAKE_PROFIT' && trade.priceUsd !== null ? trade.priceUsd : scratch.takeProfitAt,
    quoteFlow: isBuy ? sub(scratch.quoteFlow, quote) : add(scratch.quoteFlow, quote),
    dayVolumes,
    ...asOlderVersionsCount(dayVolumes, utcDay(now)),
    ...recordTradeTime(scratch, at, now),
    lastFill: trade.clientOrderId,
  };
}

/**
 * A job's strategy scratch after a fill settled or recorded outside the daemon (by hand), as the
 * daemon would have left it; undefined when it does not change, or when the job's strategy state
 * is not the daemon's (a document without the daemon's version `v`: another strategy's). Pass it
 * as the `scratch` option of `ledger.settle` or `ledger.recordTrade`: the fill then counts against
 * the job's limits (maxTradesPerHour, maxDailyVolume), its liquidity cash and its dip, as the
 * daemon's own fills do.
 *
 * @example
 * await store.ledger.settle(clientOrderId, fill, { scratch: scratchAfterFill });
 */
export function scratchAfterFill(settled: { readonly job: Job; readonly trade: Trade }, now: number = Date.now()): Scratch | undefined {
  // Strategy state of another kind (a library user's own strategy keeps its own) is not the
  // daemon's to rewrite: left as it is.
  const before = daemonScratch(settled.job);
  if (before === undefined) return undefined;
  const after = afterFill({ job: settled.job, scratch: before, trade: settled.trade, now });
  return after === before ? undefined : after;
}

/** The job's strategy state read as the daemon's scratch; undefined when it is another strategy's document. */
function daemonScratch(job: Job): Scratch | undefined {
  const stored = job.strategyState;
  return Object.keys(stored).length > 0 && stored['v'] !== SCRATCH_VERSION ? undefined : parseScratch(stored, job);
}

/**
 * Why `room` (USD left under a cap) leaves no order the strategies would send: 'none' under
 * CAP_RESIDUE_USD (the cap spent), 'under-min-trade' under limits.minTradeUsd; undefined when an
 * order fits.
 */
export function capRoom(room: Decimal, minTradeUsd: Decimal | null): 'none' | 'under-min-trade' | undefined {
  if (cmp(room, CAP_RESIDUE_USD) < 0) return 'none';
  return minTradeUsd !== null && cmp(room, minTradeUsd) < 0 ? 'under-min-trade' : undefined;
}

/**
 * What a job has used of the limits its strategy state counts, now: the trades of the last hour
 * (limits.maxTradesPerHour), and by mode the USD accumulated (accumulate.maxAccumulationUsd), or the
 * USD traded today, UTC (liquidity.maxDailyVolume) and the liquidity cash left. A liquidation is
 * held only to the trade count (and maxOrderUsd, per order): for a LIQUIDATING job only that is
 * given. `reached` names the limits that leave no order now: a count at its maximum, or a cap
 * whose room is less than 10⁻⁹ USD or than limits.minTradeUsd (the strategy skips such an order).
 * Undefined when the job's strategy state is not the daemon's (another strategy's document).
 * `botstate status` shows it.
 */
export interface LimitUsage {
  readonly tradesLastHour: number;
  readonly maxTradesPerHour: number | null;
  /** ACCUMULATE. */
  readonly accumulatedUsd?: Decimal;
  readonly maxAccumulationUsd?: Decimal;
  /** LIQUIDITY: the UTC day, what was traded on it, the limit, and the cash (capitalUsd plus net sells, at least 0). */
  readonly day?: string;
  readonly tradedTodayUsd?: Decimal;
  readonly maxDailyVolume?: Decimal;
  readonly cashUsd?: Decimal;
  /** The config keys of the limits reached ('liquidity.capitalUsd' for the cash spent). */
  readonly reached: readonly string[];
}

export function limitUsage(job: Job, now: number = Date.now()): LimitUsage | undefined {
  const scratch = daemonScratch(job);
  if (scratch === undefined) return undefined;
  const { maxTradesPerHour, minTradeUsd } = job.config.limits;
  const tradesLastHour = tradesInLastHour(scratch, now);
  const reached: string[] = [];
  if (maxTradesPerHour !== null && tradesLastHour >= maxTradesPerHour) reached.push('limits.maxTradesPerHour');
  const full = (room: Decimal) => capRoom(room, minTradeUsd) !== undefined;
  const hour = { tradesLastHour, maxTradesPerHour, reached };
  if (job.status === 'LIQUIDATING') return hour;
  if (job.mode === 'ACCUMULATE') {
    const max = job.config.accumulate.maxAccumulationUsd;
    if (full(sub(max, job.totalAccumulated))) reached.push('accumulate.maxAccumulationUsd');
    return { ...hour, accumulatedUsd: job.totalAccumulated, maxAccumulationUsd: max };
  }
  const liquidity = job.config.liquidity;
  const today = volumeToday(scratch, now);
  const flow = add(liquidity.capitalUsd, scratch.quoteFlow);
  const cash = cmp(flow, '0') < 0 ? '0' : flow;
  if (full(sub(liquidity.maxDailyVolume, today))) reached.push('liquidity.maxDailyVolume');
  if (full(cash)) reached.push('liquidity.capitalUsd');
  return { ...hour, day: utcDay(now), tradedTodayUsd: today, maxDailyVolume: liquidity.maxDailyVolume, cashUsd: cash };
}

// ---------------------------------------------------------------------------------------------------------
// Shared by the strategies.

export const HOUR_MS = 3_600_000;
const MINUTE_MS = 60_000;

/** The UTC day of an epoch-ms time, as YYYY-MM-DD. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function checkPrice(price: unknown): void {
  // An exchange adapter that answers a JS number (a float) is told so, not only that it is not canonical.
  if (typeof price !== 'string') {
    const shown = ['number', 'bigint', 'boolean'].includes(typeof price) ? `${typeof price} ${String(price)}` : price === null ? 'null' : typeof price;
    throw new ValidationError('INVALID_AMOUNT', `price must be given as a decimal string, got ${shown}`, {
      hint: 'give the price as text such as "12.5" (an exchange adapter\'s getPrice and getPrices return strings): JS numbers are floats and are not accepted for amounts',
      details: { price: typeof price, reason: 'type' },
    });
  }
  if (!isDecimal(price) || cmp(price, '0') <= 0) {
    throw new ValidationError('INVALID_AMOUNT', `price ${JSON.stringify(price)} must be a canonical decimal greater than 0`, {
      hint: 'pass the exchange price through parseDecimal and do not decide on a zero price',
      details: { price: typeof price === 'string' ? price.slice(0, 100) : typeof price },
    });
  }
  // Decided on, it would become the job's recentHigh, which no store keeps: every write of the job
  // failed from then on, whatever the prices after it (the job went to ERROR for one bad answer).
  if (integerDigits(price) > MAX_INTEGER_DIGITS) {
    throw new ValidationError('INVALID_AMOUNT', `price ${price.slice(0, 20)}… has ${integerDigits(price)} integer digits; at most ${MAX_INTEGER_DIGITS} are allowed`, {
      hint: "the exchange's price is not a price: check the adapter",
      details: { price: price.slice(0, 100), reason: 'digits' },
    });
  }
}

function checkNow(now: unknown): void {
  // Up to the last time a Date can hold: a time is written from it.
  if (typeof now !== 'number' || !Number.isSafeInteger(now) || now < 0 || now > 8.64e15) {
    throw new ValidationError('INVALID_ARGUMENT', `now must be an integer epoch time in milliseconds, got ${String(now)}`, { hint: 'pass Date.now()' });
  }
}

/** A decision being built: the scratch fields that change and the audited state that changes. */
export interface Draft {
  readonly patch: { -readonly [K in keyof Scratch]?: Scratch[K] };
  readonly state: StateChange;
}

/** Starts a decision; a tick always starts with no order in flight, so the in-flight dip marker is cleared. */
export function begin(input: StrategyInput): Draft {
  const draft: Draft = { patch: {}, state: {} };
  if (input.scratch.pendingDip) draft.patch.pendingDip = false;
  return draft;
}

/** The Decision for `draft`; the input scratch object itself when nothing in it changed. */
export function finish(input: StrategyInput, draft: Draft, order: OrderPlan | null, skipped: string | undefined,
  completeLiquidation = false): Decision {
  const scratch = Object.keys(draft.patch).length === 0 ? input.scratch : { ...input.scratch, ...draft.patch };
  const decision: Decision = { order, state: draft.state, scratch, completeLiquidation };
  return order === null && skipped !== undefined ? { ...decision, skipped } : decision;
}

/**
 * Updates the recent high: a price above job.recentHigh is the new high (time = now) and clears the dip
 * flag. Returns the high in force for this tick.
 */
export function trackHigh(input: StrategyInput, draft: Draft): Decimal {
  const { job, price } = input;
  if (cmp(price, job.recentHigh) <= 0) return job.recentHigh;
  draft.state.recentHigh = price;
  draft.state.recentHighTime = new Date(input.now).toISOString();
  if (input.scratch.dipBought) draft.patch.dipBought = false;
  return price;
}

/** Whether `price` is at least `thresholdPercent` % below `high` (and the high is known). */
export function isDip(price: Decimal, high: Decimal, thresholdPercent: Decimal): boolean {
  if (cmp(high, '0') <= 0) return false;
  return cmpProducts([price, '100'], [high, sub('100', thresholdPercent)]) <= 0;
}

/** Executed trades counted in the last hour, i.e. with a time in (now − 1 h, …]; per-minute counts conservatively. */
export function tradesInLastHour(scratch: Scratch, now: number): number {
  const since = now - HOUR_MS;
  let n = 0;
  for (const t of scratch.tradeTimes) if (t > since) n++;
  for (const [minute, count] of scratch.tradeMinutes) if (minute + MINUTE_MS > since) n += count;
  return n;
}

/** Whether limits.maxTradesPerHour forbids another order now. */
export function tradeLimitReached(input: StrategyInput): boolean {
  const max = input.job.config.limits.maxTradesPerHour;
  return max !== null && tradesInLastHour(input.scratch, input.now) >= max;
}

/**
 * The scratch's trade-time fields with a trade at `at` added and what is more than an hour old at
 * `now` dropped: at `now`, not at a later `at` (a fill dated ahead of this host's clock), which
 * would drop trades still in the last hour.
 */
function recordTradeTime(scratch: Scratch, at: number, now: number): Pick<Scratch, 'tradeTimes' | 'tradeMinutes'> {
  const since = now - HOUR_MS;
  const times = scratch.tradeTimes.filter((t) => t > since);
  let i = times.length;
  while (i > 0 && (times[i - 1] as number) > at) i--;
  times.splice(i, 0, at);
  const minutes = new Map<number, number>();
  for (const [m, c] of scratch.tradeMinutes) if (m + MINUTE_MS > since) minutes.set(m, (minutes.get(m) ?? 0) + c);
  while (times.length > TRADE_TIMES_CAP) {
    const t = times.shift() as number;
    const m = t - (t % MINUTE_MS);
    minutes.set(m, (minutes.get(m) ?? 0) + 1);
  }
  let list = [...minutes].sort((a, b) => a[0] - b[0]);
  while (list.length > TRADE_MINUTES_CAP) {
    // Only reachable with trade times in the future: fold the oldest count into the next, which keeps
    // it counted at least as long (conservative).
    const [first, second] = list as [[number, number], [number, number], ...Array<[number, number]>];
    list = [[second[0], first[1] + second[1]], ...list.slice(2)];
  }
  return { tradeTimes: times, tradeMinutes: list };
}

/** Exact comparison of two products with the same number of factors. */
export function cmpProducts(a: readonly Decimal[], b: readonly Decimal[]): -1 | 0 | 1 {
  if (a.length !== b.length) throw new Error('cmpProducts needs the same number of factors on both sides');
  let x = 1n;
  let y = 1n;
  for (const d of a) x *= toUnits(d);
  for (const d of b) y *= toUnits(d);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** The outcome of sizing an order under the limits. */
export type Sized = { readonly order: OrderPlan } | { readonly skipped: string };

/** A strategy-specific cap on an order's USD value, named by the skip reason used when it leaves nothing. */
export type Cap = readonly [name: string, usd: Decimal];

/**
 * Less than this left by a cap (maxPositionUsd, maxDailyVolume, maxAccumulationUsd, the cash, …)
 * is that cap spent, not an order: 10⁻⁹ USD, far above what rounding to 18 decimals leaves
 * (at most about price × 10⁻¹⁸ USD) and far below any order an exchange takes.
 */
export const CAP_RESIDUE_USD = '0.000000001';

/**
 * A buy of `quote` USD under the limits: clamped to limits.maxOrderUsd, to what keeps
 * tokenBalance × price + quote ≤ limits.maxPositionUsd, and to each of `caps`; skipped when that leaves
 * nothing, less than one token unit (10⁻¹⁸) at this price, a cap's residue (CAP_RESIDUE_USD), or less than
 * limits.minTradeUsd.
 */
export function sizeBuy(input: StrategyInput, reason: TradeReason, quote: Decimal, caps: readonly Cap[]): Sized {
  const { maxOrderUsd, maxPositionUsd, minTradeUsd } = input.job.config.limits;
  let q = quote;
  let why = 'zero-amount';
  const clamp = (name: string, cap: Decimal): void => {
    if (cmp(cap, q) < 0) { q = cap; why = name; }
  };
  if (maxOrderUsd !== null) clamp('max-order', maxOrderUsd);
  // The position is valued rounding up, so what is left for the buy rounds down.
  if (maxPositionUsd !== null) clamp('max-position', sub(maxPositionUsd, mul(input.job.tokenBalance, input.price, 'up')));
  for (const [name, usd] of caps) clamp(name, usd);
  // What a cap leaves after rounding (10⁻¹⁸ USD under maxPositionUsd, say) may buy no token unit
  // at all at this price: no exchange fills that, and its rejections would put the job in ERROR.
  // Nor may a cap's rounding residue (10⁻¹⁸ USD left of maxDailyVolume by a sell cut to it) that
  // buys a few units at a low price: an order of it is no trade anyone asked for.
  if (cmp(q, '0') <= 0 || cmp(div(q, input.price, 'down'), '0') <= 0) return { skipped: why };
  if (why !== 'zero-amount' && cmp(q, CAP_RESIDUE_USD) < 0) return { skipped: why };
  if (minTradeUsd !== null && cmp(q, minTradeUsd) < 0) return { skipped: 'min-trade' };
  return { order: { side: 'BUY', reason, quoteAmount: q } };
}

/**
 * A sell of `base` tokens under the limits: at most tokenBalance, worth at most limits.maxOrderUsd and
 * each of `caps` at this price (base amounts round down); skipped when that leaves nothing, is worth less
 * than 10⁻¹⁸ USD (it would fetch nothing), is a cap's residue, or less than limits.minTradeUsd (fewer tokens than
 * minTradeUsd / price rounded down).
 */
export function sizeSell(input: StrategyInput, reason: TradeReason, base: Decimal, caps: readonly Cap[]): Sized {
  const { job, price } = input;
  const { maxOrderUsd, minTradeUsd } = job.config.limits;
  let b = min(base, job.tokenBalance);
  let why = 'zero-amount';
  const clamp = (name: string, usd: Decimal): void => {
    const cap = cmp(usd, '0') <= 0 ? '0' : div(usd, price, 'down');
    if (cmp(cap, b) < 0) { b = cap; why = name; }
  };
  if (maxOrderUsd !== null) clamp('max-order', maxOrderUsd);
  for (const [name, usd] of caps) clamp(name, usd);
  // Tokens worth less than 10⁻¹⁸ USD at this price fetch nothing: no exchange fills such a sell.
  if (cmp(b, '0') <= 0 || worthNothing(b, price)) return { skipped: why };
  // A cap's rounding residue, as for a buy (the balance itself is no cap: a liquidation sells it all).
  if (why !== 'zero-amount' && cmpProducts([b, price], [CAP_RESIDUE_USD, '1']) < 0) return { skipped: why };
  // Worth less than minTradeUsd by more than the rounding down of a USD amount to token units: a
  // sell sized from orderSizeUsd or capped at maxOrderUsd equal to minTradeUsd is worth a hair
  // under it at most prices (10 USD at 3.3 is 3.030303030303030303 tokens, worth 9.999…9),
  // and skipping it let such a job buy but never sell.
  if (minTradeUsd !== null && cmpProducts([b, price], [minTradeUsd, '1']) < 0 && cmp(b, div(minTradeUsd, price, 'down')) < 0) return { skipped: 'min-trade' };
  return { order: { side: 'SELL', reason, baseAmount: b } };
}

/**
 * USD traded today (UTC) according to the scratch: the volume of today and of any later day (a
 * fill dated ahead of the clock, or a clock that went back).
 */
export function volumeToday(scratch: Scratch, now: number): Decimal {
  return volumeFrom(scratch.dayVolumes, utcDay(now));
}

/** The volume of `from` and of every later day. */
function volumeFrom(volumes: Scratch['dayVolumes'], from: string): Decimal {
  return volumes.reduce<Decimal>((sum, [day, volume]) => (day >= from ? add(sum, volume) : sum), '0');
}

/**
 * The days' volumes with `quote` added on `day`: to its day's, or as a new day, the oldest of
 * VOLUME_DAYS dropped (a day that is over); a fill dated before every day kept belongs to one.
 */
function withVolume(volumes: Scratch['dayVolumes'], day: string, quote: Decimal): Scratch['dayVolumes'] {
  if (volumes.some(([d]) => d === day)) return volumes.map(([d, v]) => [d, d === day ? add(v, quote) : v] as const);
  if (volumes.length >= VOLUME_DAYS && day < volumes[0]![0]) return volumes;
  return [...volumes, [day, quote] as const].sort(([a], [b]) => (a < b ? -1 : 1)).slice(-VOLUME_DAYS);
}

/**
 * `day` and `dayVolume` as botstate before 11-28 wrote them, for such a version reading the
 * scratch (it drops `dayVolumes`): the latest day, counted with every day from today on, as it
 * counted a fill dated ahead (its reading is then what it was, never less than this version's).
 */
function asOlderVersionsCount(volumes: Scratch['dayVolumes'], today: string): Pick<Scratch, 'day' | 'dayVolume'> {
  const last = volumes.at(-1);
  if (last === undefined) return { day: null, dayVolume: '0' };
  return { day: last[0], dayVolume: last[0] >= today ? volumeFrom(volumes, today) : last[1] };
}
