/**
 * LIQUIDATING: sell the whole balance, in slices of at most limits.maxOrderUsd, never leaving dust
 * worth less than limits.minTradeUsd; when the balance is zero, or worth less than 10⁻¹⁸ USD (dust no
 * order can sell, which the job keeps), the daemon completes the liquidation (LIQUIDATING → IDLE). Respects limits.maxTradesPerHour; ignores the buy-side limits and
 * liquidity.maxDailyVolume. See docs/strategies.md.
 */
import { cmp, div, max, min, sub, UNIT, worthNothing, type Decimal } from '../../money/decimal.ts';
import { begin, finish, tradeLimitReached, type Decision, type StrategyInput } from './strategy.ts';

/**
 * The base amount of the next liquidation sell of `balance` (> 0) at `price`, or null when no amount is
 * worth at most maxOrderUsd (a price above maxOrderUsd × 10^18).
 *
 * - No maxOrderUsd, or the balance is worth at most maxOrderUsd: the whole balance (even if it is worth
 *   less than minTradeUsd: liquidation never leaves dust behind).
 * - Otherwise the largest slice worth at most maxOrderUsd that leaves a rest worth at least minTradeUsd
 *   and is itself worth at least minTradeUsd; when no slice can do both, the whole balance.
 *   (If no amount at this price is worth between minTradeUsd and maxOrderUsd, a rounding matter when the
 *   two are almost equal, maxOrderUsd wins.)
 */
export function liquidationSlice(balance: Decimal, price: Decimal, maxOrderUsd: Decimal | null, minTradeUsd: Decimal | null): Decimal | null {
  if (maxOrderUsd === null) return balance;
  const hi = div(maxOrderUsd, price, 'down'); // the most base worth ≤ maxOrderUsd
  if (cmp(balance, hi) <= 0) return balance;
  if (cmp(hi, '0') <= 0) return null;
  // The least base worth ≥ minTradeUsd, and worth something at all (≥ 10⁻¹⁸ USD): a rest worth
  // less could be sold by no order.
  const sellable = div(UNIT, price, 'up');
  let lo = minTradeUsd === null ? sellable : max(div(minTradeUsd, price, 'up'), sellable);
  if (cmp(lo, hi) > 0) lo = hi;
  const slice = min(hi, sub(balance, lo));
  return cmp(slice, lo) >= 0 && cmp(slice, '0') > 0 ? slice : balance;
}

export function decideLiquidating(input: StrategyInput): Decision {
  const { job, price } = input;
  const draft = begin(input);
  if (cmp(job.tokenBalance, '0') <= 0) return finish(input, draft, null, 'liquidated', true);
  // Worth less than 10⁻¹⁸ USD, the balance fetches nothing: no exchange fills its sell, and the
  // rejections would put the job in ERROR. The liquidation completes; the job keeps the dust.
  if (worthNothing(job.tokenBalance, price)) return finish(input, draft, null, 'liquidated', true);
  if (tradeLimitReached(input)) return finish(input, draft, null, 'max-trades-per-hour');
  const { maxOrderUsd, minTradeUsd } = job.config.limits;
  const base = liquidationSlice(job.tokenBalance, price, maxOrderUsd, minTradeUsd);
  if (base === null) return finish(input, draft, null, 'max-order');
  return finish(input, draft, { side: 'SELL', reason: 'LIQUIDATE', baseAmount: base }, undefined);
}
