/**
 * LIQUIDITY: keeps inventory around a target share of the job's value and trades around a 20-price
 * moving average. Priority within a tick: rebalance, support buy (once per dip), spread buy, spread
 * sell; a rule whose order the limits cut to nothing lets the next one try. Every order stays within
 * liquidity.maxDailyVolume and the job's cash. See docs/strategies.md.
 */
import { add, cmp, fromUnits, mul, div, sub, toUnits, type Decimal } from '../../money/decimal.ts';
import { MA_WINDOW } from './scratch.ts';
import {
  begin, cmpProducts, finish, isDip, sizeBuy, sizeSell, trackHigh, tradeLimitReached, volumeToday,
  type Cap, type Decision, type OrderPlan, type Sized, type StrategyInput,
} from './strategy.ts';

const ONE = 10n ** 18n;

/** What a rebalance would do: nothing, buy `quote` USD, or sell `base` tokens, to bring the ratio to target. */
export type Rebalance = { readonly side: null } | { readonly side: 'BUY'; readonly quote: Decimal } | { readonly side: 'SELL'; readonly base: Decimal };

/** A gap between two prices this many times the usual one starts the moving-average window over. */
export const STALE_GAPS = 10;
/** …but never a gap shorter than this (ms). */
export const STALE_MIN_MS = 60_000;

/**
 * The rebalance due at `price`: with V = tokenBalance × price and W = V + cash, fires when
 * |V/W − targetRatio| × 100 > rebalanceThreshold (W > 0), sized so that V becomes targetRatio × W
 * (a buy rounds its quote down, a sell its base down). Exact. Cash below 0 (capitalUsd lowered
 * below what the job has spent, or a buy recorded by hand) counts as 0, so that the ratio stays
 * between 0 and 1: with (1 − targetRatio) × 100 within the threshold no rebalance sells, and
 * otherwise a tick sells at most what a job with no cash left would (later ticks may sell more,
 * towards the lower capital's target).
 */
export function rebalanceFor(tokenBalance: Decimal, price: Decimal, cash: Decimal, targetRatio: Decimal, thresholdPercent: Decimal): Rebalance {
  const v36 = toUnits(tokenBalance) * toUnits(price);
  const cashUnits = toUnits(cash);
  const w36 = v36 + (cashUnits < 0n ? 0n : cashUnits) * ONE;
  if (w36 <= 0n) return { side: null };
  const diff54 = v36 * ONE - toUnits(targetRatio) * w36; // V − r·W, at 54 decimals
  const absDiff = diff54 < 0n ? -diff54 : diff54;
  if (absDiff * 100n <= toUnits(thresholdPercent) * w36) return { side: null };
  if (diff54 < 0n) return { side: 'BUY', quote: fromUnits(absDiff / (ONE * ONE)) };
  return { side: 'SELL', base: fromUnits(diff54 / (toUnits(price) * ONE)) };
}

export function decideLiquidity(input: StrategyInput): Decision {
  const { job, price, now, scratch } = input;
  const cfg = job.config.liquidity;
  const draft = begin(input);
  const high = trackHigh(input, draft);
  // Prices from before a long stop (a pause, a daemon down, an outage) are not this market's
  // average any more: traded against, they would set off a run of spread orders at once. A gap of
  // more than STALE_GAPS times the usual time between prices (at least STALE_MIN_MS) starts the
  // window over.
  const gap = scratch.pricesAt === null ? null : now - scratch.pricesAt;
  const stale = gap !== null && scratch.priceEvery !== null && gap > Math.max(STALE_MIN_MS, STALE_GAPS * scratch.priceEvery);
  const window = stale ? [price] : [...scratch.prices, price].slice(-MA_WINDOW);
  draft.patch.prices = window;
  draft.patch.pricesAt = now;
  if (stale) {
    // The usual time is learnt again too: prices that now come further apart (a longer tick) must
    // not count as stale one after the other, or the window would never fill.
    draft.patch.priceEvery = null;
  } else if (gap !== null && gap > 0) {
    draft.patch.priceEvery = scratch.priceEvery === null ? gap : Math.round((scratch.priceEvery * 3 + gap) / 4);
  }
  if (tradeLimitReached(input)) return finish(input, draft, null, 'max-trades-per-hour');

  const cash = add(cfg.capitalUsd, scratch.quoteFlow);
  const dayLeft = sub(cfg.maxDailyVolume, volumeToday(scratch, now));
  const buyCaps: Cap[] = [['no-cash', cash], ['max-daily-volume', dayLeft]];
  const sellCaps: Cap[] = [['max-daily-volume', dayLeft]];
  const blocked: string[] = [];
  const attempt = (sized: Sized): OrderPlan | null => {
    if ('order' in sized) return sized.order;
    blocked.push(sized.skipped);
    return null;
  };

  const rebalance = rebalanceFor(job.tokenBalance, price, cash, cfg.targetRatio, cfg.rebalanceThreshold);
  if (rebalance.side !== null) {
    const order = attempt(rebalance.side === 'BUY'
      ? sizeBuy(input, 'REBALANCE', rebalance.quote, buyCaps)
      : sizeSell(input, 'REBALANCE', rebalance.base, sellCaps));
    if (order) {
      draft.state.lastRebalanceTime = new Date(now).toISOString();
      return finish(input, draft, order, undefined);
    }
  }
  if (!scratch.dipBought && isDip(price, high, job.config.accumulate.dipBuyThreshold)) {
    const order = attempt(sizeBuy(input, 'SUPPORT_BUY', mul(cfg.orderSizeUsd, cfg.supportBuyMultiplier, 'down'), buyCaps));
    if (order) {
      draft.patch.pendingDip = true;
      return finish(input, draft, order, undefined);
    }
  }
  if (window.length === MA_WINDOW) {
    const sum = window.reduce((a, b) => add(a, b), '0');
    const n = String(MA_WINDOW);
    // price < MA × (1 − spread/100)  ⇔  price × 100 × n < sum × (100 − spread)
    if (cmpProducts([price, '100', n], [sum, sub('100', cfg.spreadPercent), '1']) < 0) {
      const order = attempt(sizeBuy(input, 'SUPPORT_BUY', cfg.orderSizeUsd, buyCaps));
      if (order) return finish(input, draft, order, undefined);
    } else if (cmp(job.tokenBalance, '0') > 0
      && cmpProducts([price, '100', n], [sum, add('100', cfg.spreadPercent), '1']) > 0) {
      const order = attempt(sizeSell(input, 'TAKE_PROFIT', div(cfg.orderSizeUsd, price, 'down'), sellCaps));
      if (order) return finish(input, draft, order, undefined);
    }
  }
  return finish(input, draft, null, blocked[0] ?? (window.length < MA_WINDOW ? 'ma-warming-up' : 'no-signal'));
}
