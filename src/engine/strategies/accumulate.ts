/**
 * ACCUMULATE: DCA buys on a schedule, one larger buy per dip below the recent high, and optional
 * partial take-profit sells. Priority within a tick: take profit, dip buy, DCA; a rule whose order the
 * limits cut to nothing lets the next one try. See docs/strategies.md.
 */
import { add, cmp, min, mul, mulDiv, sub, type Decimal } from '../../money/decimal.ts';
import {
  begin, CAP_RESIDUE_USD, cmpProducts, finish, isDip, sizeBuy, sizeSell, trackHigh, tradeLimitReached,
  type Cap, type Decision, type OrderPlan, type StrategyInput,
} from './strategy.ts';

const MS_PER_HOUR = '3600000';

/** Whether a DCA buy is due: never bought, or at least dcaIntervalHours (exactly, in ms) since the last one. */
export function dcaDue(lastDcaBuyTime: string | null, intervalHours: Decimal, now: number): boolean {
  if (lastDcaBuyTime === null) return true;
  const last = Date.parse(lastDcaBuyTime);
  // Read as "long ago", a time that is not one would make every tick a buy: a failed step instead.
  if (Number.isNaN(last)) throw new Error(`lastDcaBuyTime ${JSON.stringify(lastDcaBuyTime)} is not a time`);
  return cmp(String(now - last), mul(intervalHours, MS_PER_HOUR)) >= 0;
}

/**
 * Whether take profit fires: takeProfitPercent > 0, something held with a known cost, and
 * price ≥ costBasis × (1 + takeProfitPercent/100) with costBasis = totalAccumulated / tokenBalance.
 */
export function takeProfitDue(price: Decimal, tokenBalance: Decimal, totalAccumulated: Decimal, percent: Decimal): boolean {
  if (cmp(percent, '0') <= 0 || cmp(tokenBalance, '0') <= 0 || cmp(totalAccumulated, '0') <= 0) return false;
  // price × balance × 100 ≥ total × (100 + percent), exactly.
  return cmpProducts([price, tokenBalance, '100'], [totalAccumulated, add('100', percent), '1']) >= 0;
}

/** Whether `price` is at least `percent` % above `from`, exactly. */
function risenFrom(price: Decimal, from: Decimal, percent: Decimal): boolean {
  return cmpProducts([price, '100'], [from, add('100', percent)]) >= 0;
}

export function decideAccumulate(input: StrategyInput): Decision {
  const { job, price, now } = input;
  const cfg = job.config.accumulate;
  const draft = begin(input);
  const high = trackHigh(input, draft);
  // Once per rise: after a take profit, the next needs the price takeProfitPercent above that sale's
  // price (selling raises the cost basis too little to stop a price far above it from firing again
  // every tick), until a tick below the threshold re-arms it: any tick, one that may not trade too.
  const profitDue = takeProfitDue(price, job.tokenBalance, job.totalAccumulated, cfg.takeProfitPercent);
  const lastTake = input.scratch.takeProfitAt;
  if (!profitDue && lastTake !== null) draft.patch.takeProfitAt = null;
  // The rest of a take profit or a dip buy the limits cut ends with its rise or its dip. (Not with
  // the threshold of the moment: each sale raises the cost basis, and with it the threshold.)
  const takeLeft = input.scratch.takeProfitLeft;
  const floor = input.scratch.takeProfitFloor;
  // Take profit turned off meanwhile (takeProfitPercent 0) ends it too.
  const rising = takeLeft !== null && floor !== null && cmp(price, floor) >= 0 && cmp(cfg.takeProfitPercent, '0') > 0;
  if (takeLeft !== null && !rising) Object.assign(draft.patch, { takeProfitLeft: null, takeProfitFloor: null });
  const inDip = isDip(price, high, cfg.dipBuyThreshold);
  const dipLeft = input.scratch.dipLeft;
  if (dipLeft !== null && !inDip) draft.patch.dipLeft = null;
  if (tradeLimitReached(input)) return finish(input, draft, null, 'max-trades-per-hour');

  const caps: Cap[] = [['max-accumulation', sub(cfg.maxAccumulationUsd, job.totalAccumulated)]];
  const blocked: string[] = [];
  const attempt = (sized: ReturnType<typeof sizeBuy>): OrderPlan | null => {
    if ('order' in sized) return sized.order;
    blocked.push(sized.skipped);
    return null;
  };

  // What a cut order leaves of `target` (null: nothing left). A rest worth less than
  // CAP_RESIDUE_USD at this price is rounding's, not an order: an exchange refuses such an order,
  // which would fail the step and drop the rest anyway.
  const rest = (target: Decimal, ordered: Decimal | undefined, unit: 'base' | 'quote'): Decimal | null => {
    if (ordered === undefined || cmp(ordered, target) >= 0) return null;
    const left = sub(target, ordered);
    const worth = unit === 'base' ? cmpProducts([left, price], [CAP_RESIDUE_USD, '1']) : cmp(left, CAP_RESIDUE_USD);
    return worth < 0 ? null : left;
  };

  if (rising) {
    // The rest of this rise's take profit (an order that failed would have dropped it), never more
    // than takeProfitSellPercent % of the balance now: tokens sold otherwise meanwhile (by hand)
    // shrink it with the balance. (Sold only through its own parts, it never exceeds that.)
    const due = min(takeLeft, mulDiv(job.tokenBalance, cfg.takeProfitSellPercent, '100', 'down'));
    const order = attempt(sizeSell(input, 'TAKE_PROFIT', due, []));
    const left = order ? rest(due, order.baseAmount, 'base') : null;
    Object.assign(draft.patch, { takeProfitLeft: left, takeProfitFloor: left === null ? null : floor });
    if (order) return finish(input, draft, order, undefined);
  } else if (profitDue && (lastTake === null || risenFrom(price, lastTake, cfg.takeProfitPercent))) {
    // takeProfitSellPercent % of the balance, rounded down once; what the limits cut from this
    // order is sold in the next ones while the price stays at or above this threshold.
    const base = mulDiv(job.tokenBalance, cfg.takeProfitSellPercent, '100', 'down');
    const order = attempt(sizeSell(input, 'TAKE_PROFIT', base, []));
    if (order) {
      const left = rest(base, order.baseAmount, 'base');
      const threshold = mulDiv(job.totalAccumulated, add('100', cfg.takeProfitPercent), mul(job.tokenBalance, '100'), 'up');
      Object.assign(draft.patch, { takeProfitLeft: left, takeProfitFloor: left === null ? null : threshold });
      return finish(input, draft, order, undefined);
    }
  }
  if (inDip && input.scratch.dipBought && dipLeft !== null) {
    // The rest of this dip's buy, the first part bought (its fill set dipBought).
    const order = attempt(sizeBuy(input, 'DIP_BUY', dipLeft, caps));
    draft.patch.dipLeft = order ? rest(dipLeft, order.quoteAmount, 'quote') : null;
    if (order) {
      draft.patch.pendingDip = true;
      return finish(input, draft, order, undefined);
    }
  } else if (inDip && !input.scratch.dipBought) {
    const quote = mul(cfg.dcaAmount, cfg.dipBuyMultiplier, 'down');
    const order = attempt(sizeBuy(input, 'DIP_BUY', quote, caps));
    if (order) {
      draft.patch.pendingDip = true;
      draft.patch.dipLeft = rest(quote, order.quoteAmount, 'quote');
      return finish(input, draft, order, undefined);
    }
  }
  if (dcaDue(job.lastDcaBuyTime, cfg.dcaIntervalHours, now)) {
    const order = attempt(sizeBuy(input, 'DCA', cfg.dcaAmount, caps));
    if (order) return finish(input, draft, order, undefined);
  }
  return finish(input, draft, null, blocked[0] ?? 'dca-not-due');
}
