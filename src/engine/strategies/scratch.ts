/**
 * The scratch document: what a strategy keeps between ticks besides the audited job fields
 * (recentHigh, recentHighTime, lastDcaBuyTime, lastRebalanceTime). It is stored as the job's
 * `strategyState`, is plain JSON (decimals as canonical strings, times as epoch milliseconds) and
 * stays small: every array is bounded.
 *
 * {@link parseScratch} reads whatever is stored (nothing, junk, or a document from an older or newer
 * version) and never throws: a field that is missing or malformed takes its default, the others are kept.
 *
 * @example
 * const scratch = parseScratch(job.strategyState, job);
 * const decision = decide({ job, scratch, price, now: Date.now() });
 */
import type { Job } from '../../jobs/job-rows.ts';
import { cmp, isDecimal, isNegative, type Decimal } from '../../money/decimal.ts';

/** The version written by this code. */
export const SCRATCH_VERSION = 1;
/** Prices kept for the liquidity moving average. */
export const MA_WINDOW = 20;
/** Exact trade times kept; older trades of the last hour are kept as per-minute counts. */
export const TRADE_TIMES_CAP = 60;
/** Per-minute counts kept (one hour plus the minute in progress). */
export const TRADE_MINUTES_CAP = 61;
/** UTC days whose traded volume is kept: today's, and the next day's for a fill dated ahead of the clock. */
export const VOLUME_DAYS = 2;

/**
 * A `type`, not an `interface`, so that it is assignable to `Job['strategyState']`.
 * Never mutated: every function returns a new document.
 */
export type Scratch = {
  readonly v: typeof SCRATCH_VERSION;
  /** The dip below the current recentHigh has been bought (DIP_BUY or liquidity support buy); cleared by a new high. */
  readonly dipBought: boolean;
  /** The order decided by the last tick (in flight until its fill) is a dip buy; read by afterFill. */
  readonly pendingDip: boolean;
  /**
   * Accumulate: the price of the last take-profit fill, while the price has stayed at or above the
   * take-profit threshold since; the next take profit needs a price takeProfitPercent above it.
   * Cleared (re-armed) by a tick below the threshold.
   */
  readonly takeProfitAt: Decimal | null;
  /**
   * Accumulate: tokens of the take profit in progress still to sell, when the limits cut its order
   * (maxOrderUsd): sold in further orders while the price stays at or above takeProfitFloor; dropped
   * when it falls below, when that order fails, or when the rest cannot be sold (below minTradeUsd).
   */
  readonly takeProfitLeft: Decimal | null;
  /** The take-profit threshold price when the take profit in progress began: its rest is sold while the price stays at or above it. */
  readonly takeProfitFloor: Decimal | null;
  /**
   * Accumulate: quote of the dip buy in progress still to spend, when the limits cut its order:
   * bought in further orders while the price stays in the dip; dropped when it leaves it, when that
   * order fails, or when the rest cannot be bought.
   */
  readonly dipLeft: Decimal | null;
  /** Liquidity: the last {@link MA_WINDOW} prices, oldest first. */
  readonly prices: readonly Decimal[];
  /** Liquidity: when the last price of `prices` was taken (epoch ms), null if unknown (an older scratch). */
  readonly pricesAt: number | null;
  /** Liquidity: the usual time between two prices (ms), a running average; null before the second. */
  readonly priceEvery: number | null;
  /** Quote received by executed sells minus quote spent by executed buys; liquidity cash = capitalUsd + quoteFlow. */
  readonly quoteFlow: Decimal;
  /**
   * USD (quote) traded by executed trades on each of the last {@link VOLUME_DAYS} UTC days
   * (YYYY-MM-DD) with a fill, oldest first: each fill on its own day, one dated after the day it
   * was applied on (an exchange's clock a few minutes ahead, just before midnight) included.
   */
  readonly dayVolumes: ReadonlyArray<readonly [string, Decimal]>;
  /**
   * `dayVolumes` as botstate before 11-28 kept it, and reads it (several versions may run on one
   * database): the latest day, and what counts on it, the day before's volume too while that day
   * had not come when it was written. Only read when `dayVolumes` is missing (a scratch written by
   * such a version).
   */
  readonly day: string | null;
  readonly dayVolume: Decimal;
  /** Epoch ms of the most recent executed trades of the last hour, oldest first, at most {@link TRADE_TIMES_CAP}. */
  readonly tradeTimes: readonly number[];
  /** Older executed trades of the last hour, as [minute start (epoch ms), count], oldest first. */
  readonly tradeMinutes: ReadonlyArray<readonly [number, number]>;
  /** clientOrderId of the last trade applied by afterFill, so that applying it twice changes nothing. */
  readonly lastFill: string | null;
};

/** The scratch of a job that has never ticked. */
export function emptyScratch(): Scratch {
  return {
    v: SCRATCH_VERSION,
    dipBought: false,
    pendingDip: false,
    takeProfitAt: null,
    takeProfitLeft: null,
    takeProfitFloor: null,
    dipLeft: null,
    prices: [],
    pricesAt: null,
    priceEvery: null,
    quoteFlow: '0',
    dayVolumes: [],
    day: null,
    dayVolume: '0',
    tradeTimes: [],
    tradeMinutes: [],
    lastFill: null,
  };
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;
const MINUTE_MS = 60_000;

function isTime(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A stored UTC day and the volume counted on it, or none. */
function dayCount(day: unknown, volume: unknown): [string, Decimal] | [null, '0'] {
  const dayOk = typeof day === 'string' && DAY.test(day) && !Number.isNaN(Date.parse(`${day}T00:00:00Z`));
  return dayOk && isDecimal(volume) && !isNegative(volume) ? [day, volume] : [null, '0'];
}

function isPositive(v: unknown): v is Decimal {
  return isDecimal(v) && cmp(v, '0') > 0;
}

/**
 * The scratch stored in `doc` (normally `job.strategyState`), validated. Never throws: each field that is
 * missing or malformed is reset to its default on its own (a price window with one bad price is reset
 * whole, since a partial window would misstate the average); unknown fields are dropped.
 *
 * `job` is the job the document belongs to; a dip flag without a recent high to measure it from is reset.
 */
export function parseScratch(doc: unknown, job: Job): Scratch {
  const base = emptyScratch();
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return base;
  const d = doc as Record<string, unknown>;
  const own = (k: string): unknown => (Object.hasOwn(d, k) ? d[k] : undefined);

  const dipRaw = own('dipBought');
  const hasHigh = isPositive(job.recentHigh);
  const dipBought = typeof dipRaw === 'boolean' && hasHigh ? dipRaw : false;
  const pendingRaw = own('pendingDip');
  const pendingDip = typeof pendingRaw === 'boolean' ? pendingRaw : false;

  const takeRaw = own('takeProfitAt');
  const takeProfitAt = isPositive(takeRaw) ? takeRaw : null;

  const tpLeftRaw = own('takeProfitLeft');
  const tpFloorRaw = own('takeProfitFloor');
  // The rest and its floor only mean something together.
  const tpOk = isPositive(tpLeftRaw) && isPositive(tpFloorRaw);
  const takeProfitLeft = tpOk ? (tpLeftRaw as Decimal) : null;
  const takeProfitFloor = tpOk ? (tpFloorRaw as Decimal) : null;
  const dipLeftRaw = own('dipLeft');
  const dipLeft = isPositive(dipLeftRaw) ? dipLeftRaw : null;

  const pricesRaw = own('prices');
  const prices = Array.isArray(pricesRaw) && pricesRaw.every(isPositive)
    ? (pricesRaw as Decimal[]).slice(-MA_WINDOW)
    : [];

  const atRaw = own('pricesAt');
  const pricesAt = isTime(atRaw) && prices.length > 0 ? atRaw : null;
  const everyRaw = own('priceEvery');
  const priceEvery = isTime(everyRaw) && pricesAt !== null ? everyRaw : null;

  const flowRaw = own('quoteFlow');
  const quoteFlow = isDecimal(flowRaw) ? flowRaw : '0';

  // A day and its volume only mean something together.
  const [day, dayVolume] = dayCount(own('day'), own('dayVolume'));
  const volumesRaw = own('dayVolumes');
  const volumes = Array.isArray(volumesRaw) ? volumesRaw.map((v) => (Array.isArray(v) && v.length === 2 ? dayCount(v[0], v[1]) : [null, '0'] as const)) : [];
  // Written by this version: each day once, oldest first, at most VOLUME_DAYS; else the older versions' pair.
  const volumesOk = volumes.length > 0 && volumes.length <= VOLUME_DAYS && volumes.every(([d], i) => d !== null && (i === 0 || d > volumes[i - 1]![0]!));
  const dayVolumes = volumesOk ? (volumes as Array<[string, Decimal]>) : day === null ? [] : [[day, dayVolume] as [string, Decimal]];

  const timesRaw = own('tradeTimes');
  const tradeTimes = Array.isArray(timesRaw)
    ? timesRaw.filter(isTime).sort((a, b) => a - b).slice(-TRADE_TIMES_CAP)
    : [];

  const minutesRaw = own('tradeMinutes');
  const tradeMinutes: Array<readonly [number, number]> = [];
  if (Array.isArray(minutesRaw)) {
    for (const m of minutesRaw) {
      if (Array.isArray(m) && m.length === 2 && isTime(m[0]) && m[0] % MINUTE_MS === 0
        && typeof m[1] === 'number' && Number.isSafeInteger(m[1]) && m[1] > 0) {
        tradeMinutes.push([m[0], m[1]]);
      }
    }
    tradeMinutes.sort((a, b) => a[0] - b[0]);
  }

  const lastRaw = own('lastFill');
  const lastFill = typeof lastRaw === 'string' && lastRaw.length > 0 && lastRaw.length <= 200 ? lastRaw : null;

  return {
    ...base,
    dipBought,
    pendingDip,
    takeProfitAt,
    takeProfitLeft,
    takeProfitFloor,
    dipLeft,
    prices,
    pricesAt,
    priceEvery,
    quoteFlow,
    dayVolumes,
    day,
    dayVolume,
    tradeTimes,
    tradeMinutes: tradeMinutes.slice(-TRADE_MINUTES_CAP),
    lastFill,
  };
}
