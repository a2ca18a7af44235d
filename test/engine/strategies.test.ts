/**
 * The strategies on scripted price paths. A small pure simulator feeds prices tick by tick with a
 * simulated clock, fills every order at the tick's price (or fails it on request), applies the fill to a
 * copy of the job as the ledger would, and round-trips the scratch through JSON + parseScratch on every
 * tick, as a restart would. No float touches an amount: prices and sizes are decimal strings or bigints.
 */
import { describe, it } from 'node:test';
import { isBotstateError } from '../../src/errors.ts';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  afterFill, decide, emptyScratch, limitUsage, parseScratch, scratchAfterFill, tradesInLastHour, volumeToday,
  type Decision, type OrderPlan, type Scratch,
} from '../../src/engine/strategies/strategy.ts';
import { rebalanceFor } from '../../src/engine/strategies/liquidity.ts';
import { defaultConfig, resolveConfig } from '../../src/jobs/config.ts';
import type { Job } from '../../src/jobs/job-rows.ts';
import type { Trade } from '../../src/ledger/ledger.ts';
import { add, cmp, div, fromUnits, isDecimal, mul, sub, toUnits } from '../../src/money/decimal.ts';

const T0 = Date.parse('2024-03-01T00:00:00.000Z');
const HOUR = 3_600_000;
const MIN = 60_000;
const ONE = 10n ** 18n;

interface JobInit {
  mode?: Job['mode'];
  status?: Job['status'];
  sets?: string[];
  tokenBalance?: string;
  totalAccumulated?: string;
  recentHigh?: string;
  lastDcaBuyTime?: string | null;
}

function makeJob(init: JobInit = {}): Job {
  return {
    id: 'job-1',
    tokenAddress: '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07',
    tokenSymbol: 'LGI',
    chain: 'base',
    mode: init.mode ?? 'ACCUMULATE',
    status: init.status ?? 'RUNNING',
    statusReason: null,
    lastDcaBuyTime: init.lastDcaBuyTime ?? null,
    recentHigh: init.recentHigh ?? '0',
    recentHighTime: null,
    totalAccumulated: init.totalAccumulated ?? '0',
    tokenBalance: init.tokenBalance ?? '0',
    lastRebalanceTime: null,
    config: resolveConfig(defaultConfig(), undefined, init.sets ?? []),
    strategyState: {},
    createdAt: new Date(T0).toISOString(),
    updatedAt: new Date(T0).toISOString(),
    startedAt: new Date(T0).toISOString(),
    stoppedAt: null,
    version: 1,
  };
}

interface Step {
  readonly now: number;
  readonly price: string;
  readonly before: Job;
  readonly scratch: Scratch;
  readonly decision: Decision;
  readonly trade: Trade | null;
}

/** The job as the ledger leaves it after an executed trade. */
function applyTrade(job: Job, t: Trade): Job {
  const base = t.baseAmount as string;
  const quote = t.quoteAmount as string;
  if (t.side === 'BUY') {
    return {
      ...job,
      tokenBalance: add(job.tokenBalance, base),
      totalAccumulated: add(job.totalAccumulated, quote),
      lastDcaBuyTime: t.reason === 'DCA' ? t.executedAt : job.lastDcaBuyTime,
    };
  }
  const balance = sub(job.tokenBalance, base);
  assert.ok(!balance.startsWith('-'), `sold ${base} holding ${job.tokenBalance}`);
  return { ...job, tokenBalance: balance };
}

class Sim {
  job: Job;
  readonly steps: Step[] = [];
  readonly trades: Trade[] = [];
  #seq = 0;

  constructor(job: Job) {
    this.job = job;
  }

  /** The scratch as a restarted daemon would read it back. */
  get scratch(): Scratch {
    return parseScratch(JSON.parse(JSON.stringify(this.job.strategyState)) as unknown, this.job);
  }

  step(price: string, now: number, opts: { fail?: boolean } = {}): Step {
    const before = this.job;
    const scratch = this.scratch;
    const decision = decide({ job: before, scratch, price, now });
    let job: Job = { ...before, ...decision.state, strategyState: decision.scratch };
    if (decision.completeLiquidation) job = { ...job, status: 'IDLE' };
    let trade: Trade | null = null;
    if (decision.order !== null) {
      trade = this.#fill(decision.order, price, now, opts.fail === true);
      if (trade.status === 'EXECUTED') job = applyTrade(job, trade);
      job = { ...job, strategyState: afterFill({ job, scratch: decision.scratch, trade, now }) };
      this.trades.push(trade);
    }
    this.job = job;
    const s: Step = { now, price, before, scratch, decision, trade };
    this.steps.push(s);
    return s;
  }

  /** Feeds prices[i] at times[i] (or start + i × every). */
  run(prices: readonly string[], start: number, every: number): Step[] {
    return prices.map((p, i) => this.step(p, start + i * every));
  }

  #fill(order: OrderPlan, price: string, now: number, fail: boolean): Trade {
    const base = order.side === 'BUY' ? div(order.quoteAmount as string, price, 'down') : order.baseAmount as string;
    const quote = order.side === 'BUY' ? order.quoteAmount as string : mul(base, price, 'down');
    const failed = fail || base === '0';
    const iso = new Date(now).toISOString();
    return {
      id: `t${this.#seq}`,
      jobId: this.job.id,
      side: order.side,
      reason: order.reason,
      baseAmount: failed ? null : base,
      quoteAmount: failed ? null : quote,
      priceUsd: failed ? null : price,
      clientOrderId: `job-1-${this.#seq++}`,
      exchangeOrderId: null,
      txHash: null,
      status: failed ? 'FAILED' : 'EXECUTED',
      error: failed ? 'simulated failure' : null,
      createdAt: iso,
      executedAt: failed ? null : iso,
    };
  }
}

const orders = (steps: readonly Step[]) => steps.filter((s) => s.decision.order !== null);
const summary = (steps: readonly Step[]) =>
  orders(steps).map((s) => {
    const o = s.decision.order as OrderPlan;
    return [o.reason, o.side === 'BUY' ? o.quoteAmount : o.baseAmount, s.now - T0];
  });

// ---------------------------------------------------------------------------------------------------------

describe('accumulate: DCA', () => {
  it('buys dcaAmount at the first tick and then exactly every interval, not a millisecond before', () => {
    const sim = new Sim(makeJob({ sets: ['accumulate.dcaAmount=12.5', 'accumulate.dcaIntervalHours=1'] }));
    const times = [0, 1, HOUR - 1, HOUR, HOUR + 1, 2 * HOUR - 1, 2 * HOUR, 3 * HOUR + 5];
    for (const t of times) sim.step('2', T0 + t);
    assert.deepEqual(summary(sim.steps), [['DCA', '12.5', 0], ['DCA', '12.5', HOUR], ['DCA', '12.5', 2 * HOUR], ['DCA', '12.5', 3 * HOUR + 5]]);
    assert.equal(sim.steps[1]?.decision.skipped, 'dca-not-due');
    assert.equal(sim.steps[2]?.decision.skipped, 'dca-not-due');
    assert.equal(sim.job.tokenBalance, '25'); // 4 × 12.5 / 2
    assert.equal(sim.job.totalAccumulated, '50');
    assert.equal(sim.job.lastDcaBuyTime, new Date(T0 + 3 * HOUR + 5).toISOString());
  });

  it('converts fractional hours to milliseconds exactly (0.0001 h = 360 ms; 0.000000277777777778 h > 1 ms)', () => {
    const fast = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=0.0001', 'accumulate.maxAccumulationUsd=1000000'] }));
    for (let t = 0; t <= 1000; t += 10) fast.step('1', T0 + t);
    assert.deepEqual(orders(fast.steps).map((s) => s.now - T0), [0, 360, 720]);

    // 0.000000277777777778 h = 1.0000000000008 ms: due after 2 ms, never after 1.
    const hair = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=0.000000277777777778', 'accumulate.maxAccumulationUsd=1000000'] }));
    for (let t = 0; t <= 8; t++) hair.step('1', T0 + t);
    assert.deepEqual(orders(hair.steps).map((s) => s.now - T0), [0, 2, 4, 6, 8]);
  });

  it('a failed DCA order is retried at the next tick (lastDcaBuyTime moves only on a fill)', () => {
    const sim = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=1'] }));
    sim.step('1', T0, { fail: true });
    assert.equal(sim.job.lastDcaBuyTime, null);
    const again = sim.step('1', T0 + 1000);
    assert.equal(again.decision.order?.reason, 'DCA');
    assert.equal(sim.job.lastDcaBuyTime, new Date(T0 + 1000).toISOString());
  });

  it('a job that is not RUNNING or LIQUIDATING does nothing', () => {
    for (const status of ['IDLE', 'PAUSED', 'ERROR'] as const) {
      const d = decide({ job: makeJob({ status }), scratch: emptyScratch(), price: '1', now: T0 });
      assert.equal(d.order, null);
      assert.equal(d.skipped, 'not-running');
      assert.deepEqual(d.state, {});
    }
  });
});

describe('accumulate: dip buys', () => {
  it('fire once per dip, and again only after a new high and a new dip', () => {
    const sim = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=1000', 'accumulate.dipBuyMultiplier=2.5'] }));
    const path = ['100', '96', '95.000000000000000001', '95', '94', '90', '99', '100', '101', '96', '95.95', '95', '80'];
    const steps = sim.run(path, T0, MIN);
    assert.deepEqual(summary(steps), [['DCA', '10', 0], ['DIP_BUY', '25', 3 * MIN], ['DIP_BUY', '25', 10 * MIN]]);
    // recentHigh follows strict new highs only; its time is the tick's.
    assert.equal(sim.job.recentHigh, '101');
    assert.equal(sim.job.recentHighTime, new Date(T0 + 8 * MIN).toISOString());
    assert.deepEqual(steps[7]?.decision.state, {}, '100 is not above 100');
    assert.equal(steps[4]?.decision.skipped, 'dca-not-due');
  });

  it('a failed dip buy is retried while the dip lasts; the flag survives restarts and is cleared by a new high', () => {
    const sim = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=1000'] }));
    sim.step('10', T0);
    const failed = sim.step('9', T0 + MIN, { fail: true });
    assert.equal(failed.decision.order?.reason, 'DIP_BUY');
    assert.equal(failed.decision.scratch.pendingDip, true);
    assert.equal(sim.scratch.dipBought, false);
    assert.equal(sim.scratch.pendingDip, false);
    const retried = sim.step('9.1', T0 + 2 * MIN);
    assert.equal(retried.decision.order?.reason, 'DIP_BUY');
    assert.equal(sim.scratch.dipBought, true); // read back through JSON
    assert.equal(sim.step('8', T0 + 3 * MIN).decision.order, null);
    const high = sim.step('10.5', T0 + 4 * MIN);
    assert.equal(high.decision.scratch.dipBought, false);
    assert.equal(sim.step('9.975', T0 + 5 * MIN).decision.order?.reason, 'DIP_BUY'); // 10.5 × 0.95
  });
});

describe('accumulate: take profit', () => {
  const tp = (extra: string[] = [], init: JobInit = {}) => new Sim(makeJob({
    tokenBalance: '100', totalAccumulated: '100', lastDcaBuyTime: new Date(T0).toISOString(),
    sets: ['accumulate.dcaIntervalHours=1000', 'accumulate.takeProfitPercent=20', 'accumulate.dipBuyThreshold=99', ...extra],
    ...init,
  }));

  it('sells takeProfitSellPercent of the balance at exactly costBasis × (1 + takeProfitPercent/100)', () => {
    const sim = tp();
    const steps = sim.run(['1.1', '1.199999999999999999', '1.2', '1.2', '1.33', '1.333333333333333334'], T0, MIN);
    // Cost basis 1 → threshold 1.2; after selling 10 of 100 it is 100/90 → threshold 1.3333…
    assert.deepEqual(summary(steps), [['TAKE_PROFIT', '10', 2 * MIN], ['TAKE_PROFIT', '9', 5 * MIN]]);
    assert.equal(sim.job.tokenBalance, '81');
    assert.equal(sim.job.totalAccumulated, '100', 'sells do not change totalAccumulated');
  });

  it('fires once per rise: far above the threshold it waits for takeProfitPercent more, and a fall below re-arms it', () => {
    const sim = tp();
    const steps = sim.run(['2', '2', '2', '2.399999999999999999', '2.4', '2.4', '1.1', '1.5'], T0, MIN);
    // Basis 1 → threshold 1.2: at 2 it sells 10 once (basis 100/90), not again every tick at 2; the
    // next sale needs 2 × 1.2 = 2.4. Then 1.1 is below the threshold (basis 100/81 × 1.2 ≈ 1.48):
    // re-armed, so 1.5 sells again.
    assert.deepEqual(summary(steps), [['TAKE_PROFIT', '10', 0], ['TAKE_PROFIT', '9', 4 * MIN], ['TAKE_PROFIT', '8.1', 7 * MIN]]);
    assert.equal(sim.job.tokenBalance, '72.9');
    assert.equal(sim.scratch.takeProfitAt, '1.5');
    // The new basis 100/72.9 puts the threshold at ≈ 1.65: at 1.5 nothing is sold, and it re-arms.
    assert.equal(sim.step('1.5', T0 + 8 * MIN).decision.order, null);
    assert.equal(sim.scratch.takeProfitAt, null);
    // A tick that may not trade (maxTradesPerHour reached) still re-arms it: after the fall, the first
    // price back above the threshold sells again.
    const limited = tp(['limits.maxTradesPerHour=1']);
    assert.equal(limited.step('2', T0).decision.order?.reason, 'TAKE_PROFIT');
    const blocked = limited.step('1', T0 + 10 * MIN).decision;
    assert.deepEqual([blocked.order, blocked.skipped, limited.scratch.takeProfitAt], [null, 'max-trades-per-hour', null]);
    assert.equal(limited.step('1.5', T0 + 70 * MIN).decision.order?.reason, 'TAKE_PROFIT');
    // A failed take-profit order sets nothing: the next tick tries again.
    const failing = tp();
    failing.step('2', T0, { fail: true });
    assert.equal(failing.scratch.takeProfitAt, null);
    assert.equal(failing.step('2', T0 + MIN).decision.order?.reason, 'TAKE_PROFIT');
  });

  it('takeProfitPercent = 0 turns it off', () => {
    const sim = tp(['accumulate.takeProfitPercent=0']);
    sim.run(['1', '2', '10', '1000', '1000000'], T0, MIN);
    assert.equal(orders(sim.steps).length, 0);
    assert.equal(sim.job.tokenBalance, '100');
  });

  it('rounds the size down to 18 decimals and never fires without a cost basis', () => {
    const tiny = tp(['accumulate.takeProfitSellPercent=10'], { tokenBalance: '0.000000000000000019', totalAccumulated: '0.000000000000000019' });
    assert.deepEqual(summary(tiny.run(['2'], T0, MIN)), [['TAKE_PROFIT', '0.000000000000000001', 0]]);
    const free = tp([], { totalAccumulated: '0' });
    assert.equal(free.run(['1000'], T0, MIN)[0]?.decision.order, null);
  });

  it('has priority over a dip buy and a due DCA; when the limits block it, the next rule trades', () => {
    const sim = tp(['accumulate.dipBuyThreshold=5'], { recentHigh: '3', lastDcaBuyTime: null });
    // 1.5 is 50 % below the high 3 (a dip), the DCA is due, and 1.5 ≥ 1.2 takes profit: the sell wins.
    assert.equal(sim.step('1.5', T0).decision.order?.reason, 'TAKE_PROFIT');
    const blocked = tp(['accumulate.dipBuyThreshold=5', 'limits.minTradeUsd=16'], { recentHigh: '3', lastDcaBuyTime: null });
    // The sell is worth 10 × 1.5 = 15 < 16: the dip buy (20) goes instead.
    assert.deepEqual(summary([blocked.step('1.5', T0)]), [['DIP_BUY', '20', 0]]);
  });
});

describe('accumulate: limits', () => {
  it('maxAccumulationUsd clamps the last buy to the remainder, then stops buying', () => {
    const sim = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=1', 'accumulate.maxAccumulationUsd=25'] }));
    const steps = sim.run(['1', '1', '1', '1', '1'], T0, HOUR);
    assert.deepEqual(summary(steps), [['DCA', '10', 0], ['DCA', '10', HOUR], ['DCA', '5', 2 * HOUR]]);
    assert.equal(steps[3]?.decision.skipped, 'max-accumulation');
    assert.equal(sim.job.totalAccumulated, '25');
  });

  it('minTradeUsd skips an order worth less (here the clamped remainder)', () => {
    const sim = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=1', 'accumulate.maxAccumulationUsd=25', 'limits.minTradeUsd=6'] }));
    const steps = sim.run(['1', '1', '1', '1'], T0, HOUR);
    assert.deepEqual(summary(steps), [['DCA', '10', 0], ['DCA', '10', HOUR]]);
    assert.equal(steps[2]?.decision.skipped, 'min-trade');
  });

  it('maxPositionUsd clamps a buy so that balance × price after it is at most the cap', () => {
    const sim = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=1', 'limits.maxPositionUsd=25', 'accumulate.dipBuyThreshold=99'] }));
    const steps = sim.run(['1', '1', '1', '1', '0.5', '3'], T0, HOUR);
    // 10, 10, 5 (25 held), nothing, at 0.5 the 25 tokens are worth 12.5 → 10 more; at 3 they are worth 105.
    assert.deepEqual(summary(steps), [['DCA', '10', 0], ['DCA', '10', HOUR], ['DCA', '5', 2 * HOUR], ['DCA', '10', 4 * HOUR]]);
    assert.equal(steps[3]?.decision.skipped, 'max-position');
    assert.equal(steps[5]?.decision.skipped, 'max-position');
  });

  it('maxPositionUsd rounds the position value up, so the buy rounds down', () => {
    const job = makeJob({ tokenBalance: '0.333333333333333333', sets: ['limits.maxPositionUsd=10', 'accumulate.dcaAmount=100'] });
    const d = decide({ job, scratch: emptyScratch(), price: '3.000000000000000001', now: T0 });
    // value = 0.999999999999999999333… → rounded up to 1 → at most 9 more.
    assert.deepEqual(d.order, { side: 'BUY', reason: 'DCA', quoteAmount: '9' });
  });

  it('a buy the caps leave too small for one token unit at this price, or a mere rounding residue, is skipped (no exchange would fill it)', () => {
    const sets = ['limits.maxPositionUsd=100', 'accumulate.dcaAmount=50'];
    // 10⁻⁹ USD of room: sent.
    const some = decide({ job: makeJob({ tokenBalance: '33.333333333', sets }), scratch: emptyScratch(), price: '3', now: T0 });
    assert.deepEqual(some.order, { side: 'BUY', reason: 'DCA', quoteAmount: '0.000000001' });
    // 4 × 10⁻¹⁸ USD of room buys 1 unit at 3, but is what rounding left: skipped as the cap that left it.
    const residue = decide({ job: makeJob({ tokenBalance: '33.333333333333333332', sets }), scratch: emptyScratch(), price: '3', now: T0 });
    assert.deepEqual([residue.order, residue.skipped], [null, 'max-position']);
    // 10⁻¹⁸ USD of room buys nothing at 3: skipped likewise.
    const none = decide({ job: makeJob({ tokenBalance: '33.333333333333333333', sets }), scratch: emptyScratch(), price: '3', now: T0 });
    assert.deepEqual([none.order, none.skipped], [null, 'max-position']);
  });

  it('what a sell cut to maxDailyVolume leaves of the day (10⁻¹⁸ USD) is the day spent, not a buy of 2 token units', () => {
    // The sell was sized dayLeft / price rounded down, and its quote rounded down again.
    const job = makeJob({ mode: 'LIQUIDITY', tokenBalance: '100', sets: ['liquidity.maxDailyVolume=60'] });
    const scratch = { ...emptyScratch(), dayVolumes: [['2024-03-01', '59.999999999999999999']] as const };
    const d = decide({ job, scratch, price: '0.367546538346', now: T0 + HOUR });
    assert.deepEqual([d.order, d.skipped], [null, 'max-daily-volume']);
    // A sell likewise: 5 × 10⁻¹⁸ USD left of the day sells 5 token units at 1, worth something, but no trade.
    const heavy = makeJob({ mode: 'LIQUIDITY', tokenBalance: '5000', sets: ['liquidity.maxDailyVolume=60'] });
    const sell = decide({ job: heavy, scratch: { ...scratch, dayVolumes: [['2024-03-01', '59.999999999999999995']] as const }, price: '1', now: T0 + HOUR });
    assert.deepEqual([sell.order, sell.skipped], [null, 'max-daily-volume']);
    const room = decide({ job: heavy, scratch: { ...scratch, dayVolumes: [['2024-03-01', '59.999999999']] as const }, price: '1', now: T0 + HOUR });
    assert.deepEqual(room.order, { side: 'SELL', reason: 'REBALANCE', baseAmount: '0.000000001' });
  });

  it('maxOrderUsd clamps buys and sells', () => {
    const buy = decide({ job: makeJob({ sets: ['accumulate.dcaAmount=100', 'limits.maxOrderUsd=30'] }), scratch: emptyScratch(), price: '2', now: T0 });
    assert.deepEqual(buy.order, { side: 'BUY', reason: 'DCA', quoteAmount: '30' });
    const sell = decide({
      job: makeJob({ tokenBalance: '100', totalAccumulated: '100', lastDcaBuyTime: new Date(T0).toISOString(),
        sets: ['accumulate.takeProfitPercent=10', 'accumulate.takeProfitSellPercent=50', 'limits.maxOrderUsd=30'] }),
      scratch: emptyScratch(), price: '3', now: T0,
    });
    assert.deepEqual(sell.order, { side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '10' });
  });

  it('a take profit that maxOrderUsd cuts sells the rest of takeProfitSellPercent in further orders while the price stays up', () => {
    const sim = new Sim(makeJob({
      tokenBalance: '10000', totalAccumulated: '10000', recentHigh: '1', lastDcaBuyTime: new Date(T0).toISOString(),
      sets: ['accumulate.dcaIntervalHours=100000', 'accumulate.takeProfitPercent=20', 'accumulate.takeProfitSellPercent=50', 'limits.maxOrderUsd=100', 'limits.maxTradesPerHour=1000'],
    }));
    for (let i = 0; i < 100; i++) sim.step('1.3', T0 + i * MIN);
    const sells = orders(sim.steps).map((s) => s.decision.order!);
    assert.ok(sells.every((o) => o.side === 'SELL' && o.reason === 'TAKE_PROFIT' && cmp(mul(o.baseAmount!, '1.3'), '100') <= 0), 'each within maxOrderUsd');
    // 65 orders of 100 USD at 1.3 (76.923076923076923076 tokens). The 6×10⁻¹⁷ tokens they leave
    // of the 5,000, worth 7.8×10⁻¹⁷ USD, are rounding's: no order an exchange would take.
    assert.equal(sells.length, 65);
    assert.equal(sim.job.tokenBalance, '5000.00000000000000006');
    assert.equal(sim.scratch.takeProfitLeft, null);
    assert.equal(sim.step('1.3', T0 + 100 * MIN).decision.order, null, 'once per rise: done');

    // Tokens sold by hand meanwhile: the rest shrinks with the balance, never more than
    // takeProfitSellPercent % of what is left (and a sell of another reason ends it).
    const shrunk = new Sim(makeJob({
      tokenBalance: '1000', totalAccumulated: '100', recentHigh: '1', lastDcaBuyTime: new Date(T0).toISOString(),
      sets: ['accumulate.dcaIntervalHours=100000', 'accumulate.takeProfitPercent=50', 'accumulate.takeProfitSellPercent=50', 'limits.maxOrderUsd=20', 'limits.maxTradesPerHour=1000'],
    }));
    assert.deepEqual(summary([shrunk.step('1', T0)]), [['TAKE_PROFIT', '20', 0]]);
    assert.equal(shrunk.scratch.takeProfitLeft, '480');
    shrunk.job = { ...shrunk.job, tokenBalance: '80' }; // 900 sold by a TAKE_PROFIT recorded by hand
    const after = Array.from({ length: 10 }, (_, i) => shrunk.step('1', T0 + (i + 1) * MIN));
    assert.deepEqual(summary(after).map(([, amount]) => amount), ['20', '20'], '50 % of 80 in all');
    assert.equal(shrunk.job.tokenBalance, '40');
    assert.deepEqual(afterFill({ job: shrunk.job, scratch: { ...emptyScratch(), takeProfitLeft: '5', takeProfitFloor: '1.5' }, trade: {
      id: 't', jobId: shrunk.job.id, side: 'SELL', reason: 'LIQUIDATE', baseAmount: '1', quoteAmount: '1', priceUsd: '1', clientOrderId: 'm-1', exchangeOrderId: null,
      txHash: null, status: 'EXECUTED', error: null, createdAt: new Date(T0).toISOString(), executedAt: new Date(T0).toISOString(),
    }, now: T0 }).takeProfitLeft, null, 'another sell ends it');

    // Take profit turned off midway ends it.
    const off = new Sim(makeJob({
      tokenBalance: '10000', totalAccumulated: '10000', recentHigh: '1', lastDcaBuyTime: new Date(T0).toISOString(),
      sets: ['accumulate.dcaIntervalHours=100000', 'accumulate.takeProfitPercent=20', 'accumulate.takeProfitSellPercent=50', 'limits.maxOrderUsd=100', 'limits.maxTradesPerHour=1000'],
    }));
    off.step('1.3', T0);
    assert.ok(off.scratch.takeProfitLeft !== null);
    off.job = { ...off.job, config: resolveConfig(off.job.config, undefined, ['accumulate.takeProfitPercent=0']) };
    assert.equal(off.step('1.3', T0 + MIN).decision.order, null);
    assert.equal(off.scratch.takeProfitLeft, null);

    // The price falls below the threshold midway: the rest is dropped, and the next rise starts afresh.
    const fall = new Sim(makeJob({
      tokenBalance: '10000', totalAccumulated: '10000', recentHigh: '1', lastDcaBuyTime: new Date(T0).toISOString(),
      sets: ['accumulate.dcaIntervalHours=100000', 'accumulate.takeProfitPercent=20', 'accumulate.takeProfitSellPercent=50', 'limits.maxOrderUsd=100', 'limits.maxTradesPerHour=1000', 'accumulate.dipBuyThreshold=99'],
    }));
    fall.run(['1.3', '1.3', '1.1'], T0, MIN);
    assert.equal(orders(fall.steps).length, 2);
    assert.equal(fall.scratch.takeProfitLeft, null);
    assert.equal(fall.step('1.1', T0 + 3 * MIN).decision.order, null);
    const again = fall.step('1.3', T0 + 4 * MIN).decision.order;
    assert.equal(again?.reason, 'TAKE_PROFIT');
    // 50 % of the balance then, cut again to 100 USD.
    assert.ok(cmp(fall.scratch.takeProfitLeft ?? '0', '4800') > 0, String(fall.scratch.takeProfitLeft));
  });

  it('a dip buy that maxOrderUsd cuts buys the rest in further orders while the price stays in the dip; a new high ends it', () => {
    const sim = new Sim(makeJob({
      recentHigh: '1', lastDcaBuyTime: new Date(T0).toISOString(),
      sets: ['accumulate.dcaIntervalHours=100000', 'accumulate.dcaAmount=10', 'accumulate.dipBuyMultiplier=2', 'accumulate.dipBuyThreshold=5', 'limits.maxOrderUsd=12', 'limits.maxTradesPerHour=1000'],
    }));
    const steps = sim.run(['0.9', '0.9', '0.9', '0.85'], T0, MIN);
    assert.deepEqual(summary(steps), [['DIP_BUY', '12', 0], ['DIP_BUY', '8', MIN]], 'dcaAmount × dipBuyMultiplier = 20 in all');
    assert.equal(sim.scratch.dipLeft, null);
    // Cut, then out of the dip before the rest: the rest is dropped.
    const out = new Sim(makeJob({
      recentHigh: '1', lastDcaBuyTime: new Date(T0).toISOString(),
      sets: ['accumulate.dcaIntervalHours=100000', 'accumulate.dcaAmount=10', 'accumulate.dipBuyMultiplier=2', 'accumulate.dipBuyThreshold=5', 'limits.maxOrderUsd=12', 'limits.maxTradesPerHour=1000'],
    }));
    assert.deepEqual(summary(out.run(['0.9', '0.97', '0.9'], T0, MIN)), [['DIP_BUY', '12', 0]], 'the dip was bought: once per dip');
    assert.equal(out.scratch.dipLeft, null);
    // A failed cut order leaves nothing to carry on: the next tick buys the dip afresh.
    const failing = new Sim(makeJob({
      recentHigh: '1', lastDcaBuyTime: new Date(T0).toISOString(),
      sets: ['accumulate.dcaIntervalHours=100000', 'accumulate.dcaAmount=10', 'accumulate.dipBuyMultiplier=2', 'accumulate.dipBuyThreshold=5', 'limits.maxOrderUsd=12', 'limits.maxTradesPerHour=1000'],
    }));
    failing.step('0.9', T0, { fail: true });
    assert.deepEqual(summary([failing.step('0.9', T0 + MIN), failing.step('0.9', T0 + 2 * MIN)]), [['DIP_BUY', '12', MIN], ['DIP_BUY', '8', 2 * MIN]]);
  });

  it('maxTradesPerHour counts executed trades in the last hour; the hour-old one no longer counts', () => {
    const sim = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=0.001', 'limits.maxTradesPerHour=3', 'accumulate.maxAccumulationUsd=100000'] }));
    for (let t = 0; t <= 2 * HOUR; t += 3600) sim.step('1', T0 + t);
    const times = orders(sim.steps).map((s) => s.now - T0);
    assert.deepEqual(times, [0, 3600, 7200, HOUR, HOUR + 3600, HOUR + 7200, 2 * HOUR]);
    assert.equal(sim.steps[3]?.decision.skipped, 'max-trades-per-hour');
    // A failed order is not a trade.
    const failing = new Sim(makeJob({ sets: ['accumulate.dcaIntervalHours=0.001', 'limits.maxTradesPerHour=1'] }));
    failing.step('1', T0, { fail: true });
    assert.equal(failing.step('1', T0 + 1).decision.order?.reason, 'DCA');
    assert.equal(failing.step('1', T0 + 3600).decision.skipped, 'max-trades-per-hour');
  });
});

describe('liquidating', () => {
  const liq = (balance: string, sets: string[] = [], mode: Job['mode'] = 'ACCUMULATE') =>
    new Sim(makeJob({ status: 'LIQUIDATING', tokenBalance: balance, totalAccumulated: '1', mode, sets }));
  const until = (sim: Sim, price: string, max = 100) => {
    for (let i = 0; i < max && sim.job.status === 'LIQUIDATING'; i++) sim.step(price, T0 + i * MIN);
    return sim;
  };

  it('sells the whole balance in one order without maxOrderUsd, then completes with a zero balance', () => {
    const sim = until(liq('123.456789012345678'), '0.5');
    assert.deepEqual(summary(sim.steps), [['LIQUIDATE', '123.456789012345678', 0]]);
    assert.equal(sim.steps[1]?.decision.completeLiquidation, true);
    assert.equal(sim.steps[1]?.decision.skipped, 'liquidated');
    assert.equal(sim.job.status, 'IDLE');
    assert.equal(sim.job.tokenBalance, '0');
  });

  it('slices by maxOrderUsd', () => {
    const sim = until(liq('350', ['limits.maxOrderUsd=100']), '1');
    assert.deepEqual(summary(sim.steps).map((o) => o[1]), ['100', '100', '100', '50']);
    assert.equal(sim.job.tokenBalance, '0');
    assert.equal(sim.job.status, 'IDLE');
  });

  it('never leaves dust worth less than minTradeUsd: the slice before the end shrinks', () => {
    const sim = until(liq('305', ['limits.maxOrderUsd=100', 'limits.minTradeUsd=10']), '1');
    assert.deepEqual(summary(sim.steps).map((o) => o[1]), ['100', '100', '95', '10']);
    assert.equal(sim.job.status, 'IDLE');
  });

  it('sells all at once when no slice can leave a rest worth minTradeUsd', () => {
    const sim = until(liq('15', ['limits.maxOrderUsd=12', 'limits.minTradeUsd=10']), '1');
    assert.deepEqual(summary(sim.steps).map((o) => o[1]), ['15']);
    assert.equal(sim.job.tokenBalance, '0');
  });

  it('sells a balance worth less than minTradeUsd (dust) rather than staying stuck', () => {
    const sim = until(liq('3', ['limits.minTradeUsd=10', 'limits.maxOrderUsd=100']), '1');
    assert.deepEqual(summary(sim.steps).map((o) => o[1]), ['3']);
    assert.equal(sim.job.status, 'IDLE');
  });

  it('ends at exactly zero when slices do not divide evenly', () => {
    const sim = until(liq('1', ['limits.maxOrderUsd=1']), '3');
    assert.deepEqual(summary(sim.steps).map((o) => o[1]),
      ['0.333333333333333333', '0.333333333333333333', '0.333333333333333333', '0.000000000000000001']);
    assert.equal(sim.job.tokenBalance, '0');
  });

  it('respects maxTradesPerHour and ignores maxAccumulationUsd and maxDailyVolume', () => {
    const sim = liq('350', ['limits.maxOrderUsd=100', 'limits.maxTradesPerHour=2', 'liquidity.maxDailyVolume=1',
      'accumulate.maxAccumulationUsd=1'], 'LIQUIDITY');
    for (let t = 0; t <= 2 * HOUR && sim.job.status === 'LIQUIDATING'; t += 10 * MIN) sim.step('1', T0 + t);
    assert.deepEqual(summary(sim.steps).map((o) => o[2]), [0, 10 * MIN, HOUR, HOUR + 10 * MIN]);
    assert.equal(sim.steps[2]?.decision.skipped, 'max-trades-per-hour');
    assert.equal(sim.job.status, 'IDLE');
  });

  it('skips with max-order when even the smallest amount is worth more than maxOrderUsd', () => {
    const job = makeJob({ status: 'LIQUIDATING', tokenBalance: '1', sets: ['limits.maxOrderUsd=0.000000000000000001'] });
    const d = decide({ job, scratch: emptyScratch(), price: '1.5', now: T0 });
    assert.equal(d.order, null);
    assert.equal(d.skipped, 'max-order');
    assert.equal(d.completeLiquidation, false);
  });

  it('completes, the job keeping the dust, when the balance is worth less than 10⁻¹⁸ USD (no order can sell it)', () => {
    const dust = decide({ job: makeJob({ status: 'LIQUIDATING', tokenBalance: '0.000000000000000001' }), scratch: emptyScratch(), price: '0.5', now: T0 });
    assert.equal(dust.order, null);
    assert.equal(dust.skipped, 'liquidated');
    assert.equal(dust.completeLiquidation, true);
    // 3 units at 0.5 fetch 10⁻¹⁸ USD: sold.
    const sellable = decide({ job: makeJob({ status: 'LIQUIDATING', tokenBalance: '0.000000000000000003' }), scratch: emptyScratch(), price: '0.5', now: T0 });
    assert.deepEqual(sellable.order, { side: 'SELL', reason: 'LIQUIDATE', baseAmount: '0.000000000000000003' });
    assert.equal(sellable.completeLiquidation, false);
  });

  it('a slice leaves a rest that an order can still sell (worth 10⁻¹⁸ USD or more)', () => {
    const job = makeJob({ status: 'LIQUIDATING', tokenBalance: '2.000000000000000001', sets: ['limits.maxOrderUsd=1'] });
    const d = decide({ job, scratch: emptyScratch(), price: '0.5', now: T0 });
    // Selling 2 (worth 1) would leave 10⁻¹⁸ token, worth 5 × 10⁻¹⁹ USD: no order could sell it.
    assert.deepEqual(d.order, { side: 'SELL', reason: 'LIQUIDATE', baseAmount: '1.999999999999999999' });
  });

  it('completes at once with a zero balance', () => {
    const d = decide({ job: makeJob({ status: 'LIQUIDATING' }), scratch: emptyScratch(), price: '1', now: T0 });
    assert.equal(d.order, null);
    assert.equal(d.completeLiquidation, true);
  });
});

describe('liquidity', () => {
  const noRebalance = ['liquidity.rebalanceThreshold=100'];

  it('makes no MA trade before the window holds 20 prices, then buys below MA × (1 − spread) and sells above MA × (1 + spread)', () => {
    const sim = new Sim(makeJob({ mode: 'LIQUIDITY', tokenBalance: '100', sets: noRebalance }));
    const warm = Array.from({ length: 19 }, (_, i) => (i === 10 ? '0.97' : '1'));
    const steps = sim.run([...warm, '1', '0.97', '1.03', '1.0199'], T0, MIN);
    assert.equal(steps[10]?.decision.skipped, 'ma-warming-up');
    assert.equal(steps[19]?.decision.skipped, 'no-signal'); // MA 0.9985 × 0.98 = 0.97853 < 1
    // tick 20: the window is 18 × 1 + 0.97 + 0.97, MA 0.997 → buy below 0.97706.
    // tick 21: window 17 × 1 + 0.97 + 0.97 + 1.03, MA 0.9985 → sell above 1.01847.
    // tick 22: window 16 × 1 + 0.97 + 0.97 + 1.03 + 1.0199, MA 0.999495 → sell above 1.0194849.
    assert.deepEqual(summary(steps), [
      ['SUPPORT_BUY', '10', 20 * MIN],
      ['TAKE_PROFIT', div('10', '1.03', 'down'), 21 * MIN],
      ['TAKE_PROFIT', div('10', '1.0199', 'down'), 22 * MIN],
    ]);
    assert.equal(sim.scratch.prices.length, 20);
  });

  it('starts the moving-average window over after a stop of more than 10 times the usual time between prices (at least a minute)', () => {
    const sim = new Sim(makeJob({ mode: 'LIQUIDITY', tokenBalance: '100', sets: noRebalance }));
    sim.run(Array.from({ length: 20 }, () => '1'), T0, MIN);
    assert.equal(sim.scratch.prices.length, 20);
    assert.equal(sim.scratch.priceEvery, MIN);
    // Paused for a week; back at a flat 0.5 (a dip: one support buy), no run of spread buys against
    // the old average: the window fills again first.
    const back = T0 + 7 * 24 * HOUR;
    const steps = Array.from({ length: 25 }, (_, i) => sim.step('0.5', back + i * MIN));
    assert.equal(steps[0]?.decision.scratch.prices.length, 1);
    assert.deepEqual(summary(steps).map(([reason]) => reason), ['SUPPORT_BUY'], 'the dip once, then nothing: the new window is flat');
    assert.equal(steps[1]?.decision.skipped, 'ma-warming-up');
    // A gap within 10 usual ones keeps the window.
    const kept = new Sim(makeJob({ mode: 'LIQUIDITY', tokenBalance: '100', sets: noRebalance }));
    kept.run(Array.from({ length: 20 }, () => '1'), T0, MIN);
    kept.step('1', T0 + 29 * MIN);
    assert.equal(kept.scratch.prices.length, 20);
    // Prices that now come further apart for good (a longer tick): the usual time is learnt again,
    // so the window fills at the new pace instead of starting over at every price.
    const slower = new Sim(makeJob({ mode: 'LIQUIDITY', tokenBalance: '100', sets: noRebalance }));
    slower.run(['1', '1', '1'], T0, 1000);
    slower.run(Array.from({ length: 30 }, () => '1'), T0 + 10 * MIN, 2 * MIN);
    assert.equal(slower.scratch.prices.length, 20);
    assert.equal(slower.scratch.priceEvery, 2 * MIN);
    // A scratch from before the time was kept is read without one: its window is kept.
    const old = parseScratch({ v: 1, prices: Array.from({ length: 20 }, () => '1') }, makeJob({ mode: 'LIQUIDITY' }));
    assert.deepEqual([old.prices.length, old.pricesAt, old.priceEvery], [20, null, null]);
  });

  it('support buys orderSizeUsd × supportBuyMultiplier once per dip', () => {
    const sim = new Sim(makeJob({ mode: 'LIQUIDITY', sets: noRebalance }));
    const steps = sim.run(['1', '0.95', '0.94', '0.9', '1.01', '0.96', '0.9595'], T0, MIN);
    assert.deepEqual(summary(steps), [['SUPPORT_BUY', '15', MIN], ['SUPPORT_BUY', '15', 6 * MIN]]);
    assert.equal(steps[2]?.decision.skipped, 'ma-warming-up');
  });

  it('rebalances toward targetRatio and records lastRebalanceTime', () => {
    const sim = new Sim(makeJob({ mode: 'LIQUIDITY', sets: ['liquidity.maxDailyVolume=100000'] }));
    const steps = sim.run(['2', '2', '2.5', '3', '3.1'], T0, MIN);
    // 1000 cash, nothing held: buy 500. At 3 the ratio is 750/1250 = 0.6, a drift of exactly 10 (not more).
    // At 3.1: 775/1275 → sell (775 − 637.5) / 3.1 tokens.
    assert.deepEqual(summary(steps), [['REBALANCE', '500', 0], ['REBALANCE', div('137.5', '3.1', 'down'), 4 * MIN]]);
    assert.equal(steps[0]?.decision.state.lastRebalanceTime, new Date(T0).toISOString());
    assert.equal(steps[4]?.decision.state.lastRebalanceTime, new Date(T0 + 4 * MIN).toISOString());
    assert.equal(steps[3]?.decision.state.lastRebalanceTime, undefined);
    assert.equal(sim.scratch.quoteFlow, sub(mul(div('137.5', '3.1', 'down'), '3.1', 'down'), '500'));
  });

  it('counts cash below 0 as 0: lowering capitalUsd below what was spent sells nothing when (1 − targetRatio) × 100 is within the threshold', () => {
    // targetRatio 0.9: tick 1 buys 900 of the 1000 capital (cash 100).
    const sets = ['liquidity.targetRatio=0.9', 'liquidity.maxDailyVolume=100000'];
    const sim = new Sim(makeJob({ mode: 'LIQUIDITY', sets }));
    assert.deepEqual(summary(sim.run(['1'], T0, MIN)), [['REBALANCE', '900', 0]]);
    // capitalUsd lowered to 500: cash 500 − 900 = −400. The ratio is 1 (not 900/500 = 1.8), a drift of
    // 10 points, not more than the threshold of 10: no rebalance sells.
    sim.job = { ...sim.job, config: resolveConfig(sim.job.config, undefined, ['liquidity.capitalUsd=500']) };
    assert.equal(sim.scratch.quoteFlow, '-900');
    const after = sim.run(['1', '1', '1'], T0 + MIN, MIN);
    assert.deepEqual(summary(after).filter(([reason]) => reason === 'REBALANCE'), []);
    // At target 0.5 the same spent job rebalances at this tick as one with no cash left: half of its
    // value (the old code sold 650 at once; later ticks may sell more, towards the lower capital's target).
    const half = rebalanceFor('900', '1', '-400', '0.5', '10');
    assert.deepEqual(half, { side: 'SELL', base: '450' });
    assert.deepEqual(rebalanceFor('900', '1', '0', '0.5', '10'), half);
    // Nothing held and no cash: nothing to rebalance.
    assert.deepEqual(rebalanceFor('0', '1', '-5', '0.5', '10'), { side: null });
  });

  it('stays within maxDailyVolume per UTC day (clamps, then skips until the next day)', () => {
    const start = Date.parse('2024-03-01T22:00:00.000Z');
    const sim = new Sim(makeJob({ mode: 'LIQUIDITY', sets: ['liquidity.maxDailyVolume=300'] }));
    sim.step('1', start);
    assert.deepEqual(sim.steps[0]?.decision.order, { side: 'BUY', reason: 'REBALANCE', quoteAmount: '300' });
    // Still 30 % short of target, but the day's 300 are used.
    assert.equal(sim.step('1', start + HOUR).decision.skipped, 'max-daily-volume');
    assert.equal(sim.step('1', start + 2 * HOUR - 1).decision.skipped, 'max-daily-volume');
    const nextDay = sim.step('1', start + 2 * HOUR); // 2024-03-02T00:00Z
    assert.deepEqual(nextDay.decision.order, { side: 'BUY', reason: 'REBALANCE', quoteAmount: '200' });
    assert.equal(sim.scratch.day, '2024-03-02');
    assert.equal(sim.scratch.dayVolume, '200');
  });

  it('a sell sized from a USD amount equal to minTradeUsd is not skipped for the rounding down to token units', () => {
    // MA 3 (20 prices), the price 3.3: a spread sell of orderSizeUsd (10) = 3.030303030303030303 tokens,
    // worth 9.9999…99 USD. The mirror buy of 10 USD goes through; so must the sell.
    const window = { ...emptyScratch(), prices: Array<string>(19).fill('3') };
    const at = (sets: string[], balance: string, price: string) =>
      decide({ job: makeJob({ mode: 'LIQUIDITY', tokenBalance: balance, sets: [...noRebalance, ...sets] }), scratch: window, price, now: T0 });
    assert.deepEqual(at(['limits.minTradeUsd=10'], '100', '3.3').order, { side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: div('10', '3.3', 'down') });
    assert.deepEqual(at(['limits.minTradeUsd=10', 'limits.maxOrderUsd=10', 'liquidity.orderSizeUsd=50'], '100', '3.3').order, { side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: div('10', '3.3', 'down') });
    // One token unit fewer than minTradeUsd / price (rounded down) is below the minimum.
    const held = sub(div('10', '3.3', 'down'), '0.000000000000000001');
    assert.equal(at(['limits.minTradeUsd=10'], held, '3.3').skipped, 'min-trade');
  });

  it('never spends more cash than it has', () => {
    const sim = new Sim(makeJob({ mode: 'LIQUIDITY', sets: ['liquidity.targetRatio=1', 'liquidity.capitalUsd=100', 'liquidity.maxDailyVolume=100000'] }));
    const steps = sim.run(['1', '0.5'], T0, MIN);
    assert.deepEqual(summary(steps), [['REBALANCE', '100', 0]]);
    assert.equal(steps[1]?.decision.skipped, 'no-cash'); // the dip wants a support buy, but the cash is spent
  });
});

describe('afterFill', () => {
  const trade = (over: Partial<Trade> = {}): Trade => ({
    id: 't', jobId: 'job-1', side: 'BUY', reason: 'DCA', baseAmount: '1', quoteAmount: '2', priceUsd: '2',
    clientOrderId: 'c-1', exchangeOrderId: null, txHash: null, status: 'EXECUTED', error: null,
    createdAt: new Date(T0).toISOString(), executedAt: new Date(T0).toISOString(), ...over,
  });
  const job = makeJob();

  it('is idempotent on clientOrderId and ignores failed trades (only clearing the in-flight dip)', () => {
    const once = afterFill({ job, scratch: emptyScratch(), trade: trade(), now: T0 });
    assert.deepEqual([once.quoteFlow, once.dayVolume, once.tradeTimes], ['-2', '2', [T0]]);
    assert.deepEqual(afterFill({ job, scratch: once, trade: trade(), now: T0 + 5 }), once);
    const pending = { ...emptyScratch(), pendingDip: true };
    const failed = afterFill({ job, scratch: pending, trade: trade({ reason: 'SUPPORT_BUY', status: 'FAILED', baseAmount: null, quoteAmount: null }), now: T0 });
    assert.deepEqual(failed, emptyScratch());
    const filled = afterFill({ job, scratch: pending, trade: trade({ reason: 'SUPPORT_BUY' }), now: T0 });
    assert.equal(filled.dipBought, true);
    assert.equal(filled.pendingDip, false);
  });

  it('leaves the in-flight dip marker to the dip order: a sale or a DCA applied meanwhile (by hand) neither clears it nor marks the dip bought', () => {
    // A LIQUIDITY support buy is in flight (its outcome unknown), and the operator records a sale
    // by hand: the support buy's fill, settled afterwards, must still mark the dip bought, or the
    // next tick, still in the dip, buys it again. (Support buys share SUPPORT_BUY with spread buys:
    // only the marker tells them apart.)
    const pending = { ...emptyScratch(), pendingDip: true };
    for (const other of [trade({ side: 'SELL', reason: 'TAKE_PROFIT', clientOrderId: 'hand-1' }), trade({ reason: 'DCA', clientOrderId: 'hand-2' }), trade({ side: 'SELL', reason: 'LIQUIDATE', clientOrderId: 'hand-3', status: 'FAILED', baseAmount: null, quoteAmount: null })]) {
      const after = afterFill({ job, scratch: pending, trade: other, now: T0 });
      assert.deepEqual([after.pendingDip, after.dipBought], [true, false], `${other.side} ${other.reason} ${other.status}`);
      const dip = afterFill({ job, scratch: after, trade: trade({ reason: 'SUPPORT_BUY', clientOrderId: 'dip-1' }), now: T0 });
      assert.deepEqual([dip.pendingDip, dip.dipBought], [false, true], `the support buy after ${other.side} ${other.reason}`);
    }
    // Without the marker, a SUPPORT_BUY is a spread buy: it does not mark a dip bought.
    assert.equal(afterFill({ job, scratch: emptyScratch(), trade: trade({ reason: 'SUPPORT_BUY' }), now: T0 }).dipBought, false);
  });

  it('keeps the trade times bounded and counts overflow per minute, conservatively', () => {
    let s = emptyScratch();
    for (let i = 0; i < 100; i++) {
      const at = T0 + i * 1000;
      s = afterFill({ job, scratch: s, trade: trade({ clientOrderId: `c${i}`, executedAt: new Date(at).toISOString() }), now: at });
    }
    assert.equal(s.tradeTimes.length, 60);
    assert.deepEqual(s.tradeMinutes, [[T0, 40]]);
    assert.equal(tradesInLastHour(s, T0 + 99_000), 100);
    // The first 40 trades were in [T0, T0 + 39 s]; their minute counts until T0 + 1 h + 1 min (never too early).
    assert.equal(tradesInLastHour(s, T0 + HOUR + 39_000), 100);
    assert.equal(tradesInLastHour(s, T0 + HOUR + MIN), 39); // the exact times 61 s … 99 s remain
    assert.equal(tradesInLastHour(s, T0 + HOUR + 99_000), 0);
    assert.ok(JSON.stringify(s).length < 2000);
  });

  it('counts quote per UTC day and ignores a late fill from a finished day', () => {
    const fillAt = (scratch: Scratch, over: Partial<Trade> & { executedAt: string }, now = Date.parse(over.executedAt) + 1000) =>
      afterFill({ job, scratch, trade: trade(over), now });
    const d1 = fillAt(emptyScratch(), { clientOrderId: 'a', executedAt: '2024-03-01T23:59:59.999Z' });
    const d2 = fillAt(d1, { clientOrderId: 'b', executedAt: '2024-03-02T00:00:00.000Z', quoteAmount: '5' });
    const late = fillAt(d2, { clientOrderId: 'c', executedAt: '2024-03-01T12:00:00.000Z', quoteAmount: '7', side: 'SELL' }, Date.parse('2024-03-02T00:10:00.000Z'));
    assert.deepEqual([d1.day, d1.dayVolume, d2.day, d2.dayVolume, late.day, late.dayVolume], ['2024-03-01', '2', '2024-03-02', '5', '2024-03-02', '5']);
    assert.equal(volumeToday(late, Date.parse('2024-03-02T00:10:00.000Z')), '5');
    assert.equal(late.quoteFlow, '0'); // -2 - 5 + 7
  });

  it('a fill dated ahead of the clock (by hand, an exchange ahead) drops nothing from the hour or the day', () => {
    const now = Date.parse('2024-03-01T23:58:00.000Z');
    const early = afterFill({ job, scratch: emptyScratch(), trade: trade({ clientOrderId: 'a', executedAt: new Date(now - 58 * MIN).toISOString(), quoteAmount: '480' }), now: now - 58 * MIN });
    // Stamped 4 minutes ahead: past midnight, and more than an hour after the first fill.
    const ahead = afterFill({ job, scratch: early, trade: trade({ clientOrderId: 'b', executedAt: new Date(now + 4 * MIN).toISOString(), quoteAmount: '10' }), now });
    assert.equal(tradesInLastHour(ahead, now), 2, 'the fill 58 minutes ago still counts in the last hour');
    assert.deepEqual(ahead.dayVolumes, [['2024-03-01', '480'], ['2024-03-02', '10']]);
    assert.equal(volumeToday(ahead, now), '490', "today's 480 still count today, with the fill dated tomorrow");
    assert.equal(volumeToday(ahead, now + 2 * MIN), '10', 'tomorrow, the fill dated tomorrow alone: today\'s volume ends with today');
    // As an older botstate reads it (the latest day, with what counts on it): what it wrote itself.
    assert.deepEqual([ahead.day, ahead.dayVolume], ['2024-03-02', '490']);
    // A fill of today after it adds to today's count, and not to tomorrow's.
    const later = afterFill({ job, scratch: ahead, trade: trade({ clientOrderId: 'c', executedAt: new Date(now + MIN).toISOString(), quoteAmount: '5' }), now: now + MIN });
    assert.equal(volumeToday(later, now + MIN), '495', 'a fill of today while tomorrow is counted adds to the count');
    assert.deepEqual(later.dayVolumes, [['2024-03-01', '485'], ['2024-03-02', '10']]);
    assert.equal(volumeToday(later, now + 3 * MIN), '10');
    // A clock stepped back before midnight counts both days again: nothing was forgotten.
    assert.equal(volumeToday(later, now + MIN + 30_000), '495');
    // Once tomorrow has come, its fills add to the fill counted ahead; a late one of the day before, to that day.
    const next = afterFill({ job, scratch: later, trade: trade({ clientOrderId: 'd', executedAt: new Date(now + 10 * MIN).toISOString(), quoteAmount: '7' }), now: now + 10 * MIN });
    assert.deepEqual(next.dayVolumes, [['2024-03-01', '485'], ['2024-03-02', '17']]);
    assert.equal(volumeToday(next, now + 10 * MIN), '17');
    // A third day drops the first.
    const third = afterFill({ job, scratch: next, trade: trade({ clientOrderId: 'e', executedAt: new Date(now + 10 * MIN + 24 * HOUR).toISOString(), quoteAmount: '3' }), now: now + 10 * MIN + 24 * HOUR });
    assert.deepEqual(third.dayVolumes, [['2024-03-02', '17'], ['2024-03-03', '3']]);
    assert.deepEqual(parseScratch(JSON.parse(JSON.stringify(later)), job), later);
  });

  it('a liquidity job that used its daily volume trades again the next day after a fill dated ahead of midnight', () => {
    const cfg = ['liquidity.maxDailyVolume=500', 'liquidity.capitalUsd=10000', 'liquidity.targetRatio=0.5', 'liquidity.rebalanceThreshold=5'];
    const liq = makeJob({ mode: 'LIQUIDITY', tokenBalance: '0', sets: cfg });
    const evening = Date.parse('2024-03-01T20:00:00.000Z');
    const used = afterFill({ job: liq, scratch: emptyScratch(), trade: trade({ clientOrderId: 'r', side: 'BUY', reason: 'REBALANCE', executedAt: new Date(evening).toISOString(), quoteAmount: '500' }), now: evening });
    const lateNight = Date.parse('2024-03-01T23:58:00.000Z');
    const ahead = afterFill({ job: liq, scratch: used, trade: trade({ clientOrderId: 's', side: 'SELL', reason: 'REBALANCE', executedAt: new Date(lateNight + 4 * MIN).toISOString(), quoteAmount: '1' }), now: lateNight });
    const noon = Date.parse('2024-03-02T12:00:00.000Z');
    assert.equal(volumeToday(ahead, noon), '1', 'on 03-02 only the 1 USD fill dated 03-02 counts');
    const d = decide({ job: liq, scratch: ahead, price: '1', now: noon });
    assert.notEqual(d.skipped, 'max-daily-volume', 'yesterday\'s 500 USD no longer hold the job back');
    assert.ok(d.order, `an order on the new day (${JSON.stringify(d)})`);
  });

  it('property: counts on each day exactly the fills dated on it or later (30 min late to 5 min ahead), and an older botstate never reads less', () => {
    fc.assert(fc.property(
      // The first fill's day (from T0's), and how many minutes before its midnight it comes.
      fc.integer({ min: 1, max: 400 }),
      fc.integer({ min: 0, max: 120 }),
      // Each fill: minutes since the previous one (the clock only moves forward), how far its
      // time is off the clock (30 min late to 5 min ahead, in seconds), its quote.
      fc.array(fc.tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: -1800, max: 300 }), fc.integer({ min: 1, max: 1000 })), { minLength: 1, maxLength: 60 }),
      (day, beforeMidnight, fills) => {
        let now = Date.parse(new Date(T0).toISOString().slice(0, 10)) + day * 24 * HOUR - beforeMidnight * MIN;
        let scratch = emptyScratch();
        const applied: Array<{ at: number; quote: bigint }> = [];
        fills.forEach(([minutes, off, quote], i) => {
          now += minutes * MIN;
          const at = now + off * 1000;
          scratch = afterFill({ job, scratch, trade: trade({ clientOrderId: `f-${i}`, executedAt: new Date(at).toISOString(), quoteAmount: String(quote) }), now });
          applied.push({ at, quote: BigInt(quote) });
          const today = new Date(now).toISOString().slice(0, 10);
          const expected = applied.filter((f) => new Date(f.at).toISOString().slice(0, 10) >= today).reduce((a, f) => a + f.quote, 0n);
          assert.equal(volumeToday(scratch, now), String(expected));
          // As a version before 11-28 reads it: its day's volume if the day is today or later.
          const stored = JSON.parse(JSON.stringify(scratch)) as { day: string | null; dayVolume: string };
          const older = stored.day !== null && stored.day >= today ? BigInt(stored.dayVolume) : 0n;
          assert.ok(older >= expected, `an older version reads ${older}, less than ${expected}`);
        });
      },
    ), { numRuns: 300, seed: 11 });
  });
});

describe('limitUsage (botstate status)', () => {
  it('counts the last hour\'s trades and the mode\'s limits from the daemon\'s scratch; none for another strategy\'s state', () => {
    const day = new Date(T0).toISOString().slice(0, 10);
    const hour = { ...emptyScratch(), tradeTimes: [T0 - 3_600_000, T0 - 1000], dayVolumes: [[day, '30']] as const, quoteFlow: '-1200' };
    const acc = { ...makeJob({ totalAccumulated: '250', sets: ['limits.maxTradesPerHour=4'] }), strategyState: hour };
    assert.deepEqual(limitUsage(acc, T0), { tradesLastHour: 1, maxTradesPerHour: 4, reached: [], accumulatedUsd: '250', maxAccumulationUsd: '1000' });
    // Less than 10⁻⁹ USD of room is no order: reached.
    assert.deepEqual(limitUsage({ ...acc, totalAccumulated: '999.9999999999' }, T0)?.reached, ['accumulate.maxAccumulationUsd']);
    const liq = { ...makeJob({ mode: 'LIQUIDITY' }), strategyState: hour };
    assert.deepEqual(limitUsage(liq, T0), { tradesLastHour: 1, maxTradesPerHour: null, reached: ['liquidity.capitalUsd'], day, tradedTodayUsd: '30', maxDailyVolume: '500', cashUsd: '0' });
    // The next UTC day: nothing traded on it yet.
    assert.equal(limitUsage(liq, T0 + 86_400_000)?.tradedTodayUsd, '0');
    assert.equal(limitUsage({ ...makeJob(), strategyState: { mine: true } }, T0), undefined);
  });
});

describe('scratchAfterFill (a fill entered by hand)', () => {
  const trade = (coid: string): Trade => ({
    id: 't', jobId: 'job-1', side: 'BUY', reason: 'DCA', baseAmount: '5', quoteAmount: '10', priceUsd: '2', clientOrderId: coid,
    exchangeOrderId: null, txHash: null, status: 'EXECUTED', error: null, createdAt: new Date(T0).toISOString(), executedAt: new Date(T0).toISOString(),
  });
  it('counts the fill in the daemon\'s scratch, a new one included, as afterFill does', () => {
    const fresh = scratchAfterFill({ job: makeJob(), trade: trade('h-1') }, T0);
    assert.deepEqual([fresh?.quoteFlow, fresh?.dayVolume, fresh?.lastFill], ['-10', '10', 'h-1']);
    const job = { ...makeJob(), strategyState: JSON.parse(JSON.stringify(fresh)) as Record<string, unknown> };
    assert.deepEqual(scratchAfterFill({ job, trade: trade('h-2') }, T0)?.quoteFlow, '-20');
  });
  it('leaves strategy state of another kind (a library user\'s own strategy) as it is', () => {
    const job = { ...makeJob(), strategyState: { myBot: { gridLevel: 7 } } };
    assert.equal(scratchAfterFill({ job, trade: trade('h-1') }, T0), undefined);
  });
});

describe('parseScratch', () => {
  const job = makeJob({ recentHigh: '5' });

  it('survives junk: every bad part is reset, the good parts are kept, unknown fields are dropped', () => {
    for (const junk of [undefined, null, 42, 'x', [], [1, 2], true, {}, { v: 99 }, { prices: 'x' }, { tradeMinutes: [[1, 2, 3]] }]) {
      const s = parseScratch(junk, job);
      assert.deepEqual(s, emptyScratch(), JSON.stringify(junk));
    }
    const valid = Array.from({ length: 25 }, (_, i) => String(i + 1));
    const s = parseScratch({
      dipBought: true, pendingDip: 'yes', prices: valid, quoteFlow: '-12.5', day: '2024-03-01', dayVolume: '7.25', dayVolumes: [['2024-03-01', '7'], ['2024-03-02', '1.5']],
      tradeTimes: [T0 + 5, 'x', -1, 1.5, T0 + 3, Number.NaN], tradeMinutes: [[T0, 3], [T0 + 1, 2], [T0, -1], 'x'],
      lastFill: 'c-9', takeProfitAt: '2.5', takeProfitLeft: '12.5', takeProfitFloor: '1.2', dipLeft: 0.5, extra: { big: 'x'.repeat(1000) },
    }, job);
    assert.deepEqual(s, {
      v: 1, dipBought: true, pendingDip: false, takeProfitAt: '2.5', takeProfitLeft: '12.5', takeProfitFloor: '1.2', dipLeft: null, prices: valid.slice(5), pricesAt: null, priceEvery: null, quoteFlow: '-12.5', day: '2024-03-01',
      dayVolume: '7.25', dayVolumes: [['2024-03-01', '7'], ['2024-03-02', '1.5']], tradeTimes: [T0 + 3, T0 + 5], tradeMinutes: [[T0, 3]], lastFill: 'c-9',
    });
    const bad = parseScratch({ prices: ['1', '0'], quoteFlow: 1.5, day: '2024-13-45', dayVolume: '5', dipBought: true, takeProfitAt: '0' }, makeJob());
    assert.deepEqual([bad.prices, bad.quoteFlow, bad.day, bad.dayVolume, bad.dipBought, bad.takeProfitAt], [[], '0', null, '0', false, null]);
    assert.deepEqual(parseScratch({ day: '2024-03-01', dayVolume: '-1' }, job).day, null);
    // Written by an older botstate (no dayVolumes): its day and volume; junk or days out of order: the same.
    for (const dayVolumes of [undefined, 'x', [['2024-03-02', '1'], ['2024-03-01', '1']], [['2024-03-01', '1'], ['2024-03-01', '1']], [['x', '1']], [['2024-03-01', '-1']], [['2024-03-01', '1'], ['2024-03-02', '1'], ['2024-03-03', '1']]]) {
      assert.deepEqual(parseScratch({ day: '2024-03-02', dayVolume: '9', dayVolumes }, job).dayVolumes, [['2024-03-02', '9']], JSON.stringify(dayVolumes));
    }
    assert.deepEqual(parseScratch({ dayVolumes: 'x' }, job).dayVolumes, []);
    assert.deepEqual(parseScratch({ prices: ['1.0'] }, job).prices, [], 'non-canonical decimals are junk');
    const half = parseScratch({ takeProfitLeft: '12.5' }, job);
    assert.deepEqual([half.takeProfitLeft, half.takeProfitFloor], [null, null], 'the rest of a take profit needs its floor');
  });

  it('a document with a hostile prototype is plain data', () => {
    const doc = JSON.parse('{"__proto__": {"dipBought": true}, "quoteFlow": "3"}') as unknown;
    const s = parseScratch(doc, job);
    assert.equal(s.dipBought, false);
    assert.equal(s.quoteFlow, '3');
  });

  it('a parsed junk scratch drives decide without error', () => {
    const s = parseScratch({ prices: [1, 2], tradeTimes: 'x' }, job);
    const d = decide({ job: makeJob({ mode: 'LIQUIDITY', recentHigh: '5' }), scratch: s, price: '4', now: T0 });
    assert.equal(d.order?.reason, 'REBALANCE');
  });

  it('decide refuses a price that is not a positive canonical decimal, and a bad clock', () => {
    for (const price of ['0', '-1', '1.0', '1e3', '', 'NaN']) {
      assert.throws(() => decide({ job, scratch: emptyScratch(), price, now: T0 }), /price .* must be a canonical decimal greater than 0/);
    }
    // A price no store keeps (it would become the job's recentHigh, and every write fail): refused before
    // anything is decided from it. 78 integer digits are taken.
    assert.throws(() => decide({ job, scratch: emptyScratch(), price: `1${'0'.repeat(90)}`, now: T0 }), {
      code: 'INVALID_AMOUNT',
      message: `price 10000000000000000000… has 91 integer digits; at most 78 are allowed`,
    });
    assert.equal(decide({ job, scratch: emptyScratch(), price: '9'.repeat(78), now: T0 }).state.recentHigh, '9'.repeat(78));
    // An adapter's JS number is named as such (it used to read "price 2 must be a canonical decimal").
    assert.throws(() => decide({ job, scratch: emptyScratch(), price: 2 as unknown as string, now: T0 }), {
      code: 'INVALID_AMOUNT',
      message: 'price must be given as a decimal string, got number 2',
    });
    assert.throws(() => decide({ job, scratch: emptyScratch(), price: '1', now: 1.5 }), /now must be an integer/);
    // Past the last time a Date holds: refused as such, not a RangeError from toISOString.
    assert.throws(() => decide({ job, scratch: emptyScratch(), price: '1', now: 9e15 }), (e: unknown) => isBotstateError(e, 'INVALID_ARGUMENT') && /now must be an integer/.test(e.message));
  });

  it('returns the very scratch object when nothing in it changes', () => {
    const scratch = emptyScratch();
    const d = decide({ job: makeJob({ recentHigh: '5', lastDcaBuyTime: new Date(T0).toISOString() }), scratch, price: '5', now: T0 + 1 });
    assert.equal(d.scratch, scratch);
    assert.deepEqual(d.state, {});
  });
});

// ---------------------------------------------------------------------------------------------------------
// Property: random price paths and random configs. Every order is checked against limits computed here,
// independently, from the job before the tick and the simulator's own trade log.

const units = (lo: bigint, hi: bigint) => fc.bigInt({ min: lo, max: hi }).map(fromUnits);
const U = (d: string) => toUnits(d);
const E = (n: number) => 10n ** BigInt(n);

const configArb = fc.record({
  dcaAmount: units(E(16), E(21)),
  dcaIntervalHours: units(E(14), 2n * E(18)),
  dipBuyThreshold: units(E(17), 50n * E(18)),
  dipBuyMultiplier: units(E(17), 5n * E(18)),
  takeProfitPercent: fc.oneof(fc.constant('0'), units(E(18), 50n * E(18))),
  takeProfitSellPercent: units(E(18), 100n * E(18)),
  maxAccumulationUsd: units(E(19), 5000n * E(18)),
  targetRatio: units(0n, E(18)),
  rebalanceThreshold: units(E(18), 100n * E(18)),
  supportBuyMultiplier: units(E(17), 3n * E(18)),
  maxDailyVolume: units(E(19), 2000n * E(18)),
  spreadPercent: units(0n, 10n * E(18)),
  capitalUsd: units(E(20), 5000n * E(18)),
  orderSizeUsd: units(E(18), 200n * E(18)),
  maxPositionUsd: fc.option(units(E(19), 5000n * E(18)), { freq: 2 }),
  minTradeUsd: fc.option(units(0n, 50n * E(18)), { freq: 2 }),
  maxTradesPerHour: fc.option(fc.integer({ min: 1, max: 20 }), { freq: 2 }),
  maxOrderUsd: fc.option(units(E(18), 500n * E(18)), { freq: 2 }),
});
type ConfigDraw = typeof configArb extends fc.Arbitrary<infer T> ? T : never;

function setsOf(c: ConfigDraw): string[] {
  const sections: Record<string, string> = {
    maxPositionUsd: 'limits', minTradeUsd: 'limits', maxTradesPerHour: 'limits', maxOrderUsd: 'limits',
    targetRatio: 'liquidity', rebalanceThreshold: 'liquidity', supportBuyMultiplier: 'liquidity', maxDailyVolume: 'liquidity',
    spreadPercent: 'liquidity', capitalUsd: 'liquidity', orderSizeUsd: 'liquidity',
  };
  let minTrade = c.minTradeUsd;
  // The config refuses minTradeUsd above maxPositionUsd or maxOrderUsd: keep the draw valid.
  for (const cap of [c.maxPositionUsd, c.maxOrderUsd]) if (minTrade !== null && cap !== null && U(minTrade) > U(cap)) minTrade = cap;
  const values = { ...c, minTradeUsd: minTrade };
  return Object.entries(values).map(([k, v]) => `${sections[k] ?? 'accumulate'}.${k}=${v === null ? 'null' : String(v)}`);
}

const tickArb = fc.record({
  dt: fc.oneof(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 2 * HOUR })),
  move: fc.integer({ min: -250, max: 250 }), // per mille
  fail: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
  liquidate: fc.integer({ min: 0, max: 60 }).map((n) => n === 0),
});

const ceilDiv = (a: bigint, b: bigint) => (a + b - 1n) / b;

function checkOrder(step: Step, log: readonly Trade[], cfgSets: ConfigDraw): void {
  const { before: job, price, now, decision } = step;
  const o = decision.order;
  if (o === null) return;
  const lim = job.config.limits;
  const p = U(price);
  const B = U(job.tokenBalance);
  const where = JSON.stringify({ order: o, price, balance: job.tokenBalance, total: job.totalAccumulated, status: job.status, mode: job.mode, cfgSets });
  // Shape and canonical amounts.
  if (o.side === 'BUY') {
    assert.ok(isDecimal(o.quoteAmount) && U(o.quoteAmount) > 0n && o.baseAmount === undefined, where);
  } else {
    assert.ok(isDecimal(o.baseAmount) && U(o.baseAmount) > 0n && o.quoteAmount === undefined, where);
    assert.ok(U(o.baseAmount) <= B, `sold more than held: ${where}`);
  }
  const allowed = job.status === 'LIQUIDATING' ? ['LIQUIDATE']
    : job.mode === 'ACCUMULATE' ? ['DCA', 'DIP_BUY', 'TAKE_PROFIT'] : ['REBALANCE', 'SUPPORT_BUY', 'TAKE_PROFIT'];
  assert.ok(allowed.includes(o.reason), where);
  // Trades per hour, from the simulator's log.
  const executed = log.filter((t) => t.status === 'EXECUTED');
  if (lim.maxTradesPerHour !== null) {
    const recent = executed.filter((t) => Date.parse(t.executedAt as string) > now - HOUR).length;
    assert.ok(recent < lim.maxTradesPerHour, `trades per hour: ${recent} ${where}`);
  }
  // Value of the order at the decision price, at 36 decimals.
  const value36 = o.side === 'BUY' ? U(o.quoteAmount as string) * ONE : U(o.baseAmount as string) * p;
  const usd36 = (d: string) => U(d) * ONE;
  if (o.reason === 'LIQUIDATE') {
    const b = U(o.baseAmount as string);
    if (b === B) {
      if (lim.maxOrderUsd !== null && value36 > usd36(lim.maxOrderUsd)) {
        // Only when no slice could leave a rest worth minTradeUsd: the balance is under twice that rest.
        assert.ok(lim.minTradeUsd !== null, where);
        const hi = U(lim.maxOrderUsd) * ONE / p;
        const lo = ceilDiv(U(lim.minTradeUsd) * ONE, p);
        assert.ok(B < 2n * (lo < hi ? lo : hi), `all-in slice too big: ${where}`);
      }
    } else {
      assert.ok(lim.maxOrderUsd !== null && value36 <= usd36(lim.maxOrderUsd), where);
      if (lim.minTradeUsd !== null) {
        const feasible = ceilDiv(U(lim.minTradeUsd) * ONE, p) <= U(lim.maxOrderUsd) * ONE / p;
        if (feasible) {
          assert.ok(value36 >= usd36(lim.minTradeUsd), `slice under minTradeUsd: ${where}`);
          assert.ok((B - b) * p >= usd36(lim.minTradeUsd), `dust left: ${where}`);
        }
      }
    }
    return;
  }
  if (lim.maxOrderUsd !== null) assert.ok(value36 <= usd36(lim.maxOrderUsd), `maxOrderUsd: ${where}`);
  if (lim.minTradeUsd !== null) {
    // A sell may fall short by its rounding down to token units: it holds at least minTradeUsd / price, rounded down.
    const enough = value36 >= usd36(lim.minTradeUsd) || (o.side === 'SELL' && U(o.baseAmount as string) >= (U(lim.minTradeUsd) * ONE) / p);
    assert.ok(enough, `minTradeUsd: ${where}`);
  }
  if (o.side === 'BUY') {
    const q = U(o.quoteAmount as string);
    if (lim.maxPositionUsd !== null) assert.ok(B * p + q * ONE <= usd36(lim.maxPositionUsd), `maxPositionUsd: ${where}`);
    if (job.mode === 'ACCUMULATE') {
      assert.ok(U(job.totalAccumulated) + q <= U(job.config.accumulate.maxAccumulationUsd), `maxAccumulationUsd: ${where}`);
    }
  }
  if (job.mode === 'LIQUIDITY') {
    const liq = job.config.liquidity;
    const today = new Date(now).toISOString().slice(0, 10);
    const dayVol = executed.filter((t) => (t.executedAt as string).slice(0, 10) === today).reduce((a, t) => a + U(t.quoteAmount as string), 0n);
    assert.ok(dayVol * ONE + value36 <= usd36(liq.maxDailyVolume), `maxDailyVolume: ${where}`);
    if (o.side === 'BUY') {
      const flow = executed.reduce((a, t) => a + (t.side === 'SELL' ? 1n : -1n) * U(t.quoteAmount as string), 0n);
      assert.ok(U(o.quoteAmount as string) <= U(liq.capitalUsd) + flow, `cash: ${where}`);
    }
  }
}

describe('property: random price paths and configs', () => {
  it('no order violates a limit, sells never exceed the balance, amounts are canonical and positive', () => {
    let ordersSeen = 0;
    const seen = new Map<string, number>();
    fc.assert(fc.property(
      configArb,
      fc.constantFrom<Job['mode']>('ACCUMULATE', 'LIQUIDITY'),
      fc.constantFrom<Job['status']>('RUNNING', 'RUNNING', 'RUNNING', 'LIQUIDATING'),
      fc.bigInt({ min: E(12), max: E(24) }), // the first price, 1e-6 … 1e6
      fc.option(fc.bigInt({ min: 1n, max: 1000n * E(18) })), // an initial balance
      fc.array(tickArb, { minLength: 20, maxLength: 80 }),
      fc.integer({ min: 0, max: 400 * 24 }),
      (cfg, mode, status, firstPrice, balance, ticks, startHours) => {
        const init: JobInit = { mode, status, sets: setsOf(cfg) };
        if (balance !== null) {
          init.tokenBalance = fromUnits(balance);
          init.totalAccumulated = fromUnits(balance * firstPrice / ONE + 1n);
        }
        const sim = new Sim(makeJob(init));
        let price = firstPrice;
        let now = T0 + startHours * HOUR;
        for (const t of ticks) {
          // The operator liquidates now and then, and starts the job again once it is IDLE.
          if (t.liquidate && sim.job.status === 'RUNNING') sim.job = { ...sim.job, status: 'LIQUIDATING' };
          else if (sim.job.status === 'IDLE') sim.job = { ...sim.job, status: 'RUNNING' };
          const log = [...sim.trades];
          const step = sim.step(fromUnits(price), now, { fail: t.fail });
          checkOrder(step, log, cfg);
          const keys = Object.keys(step.decision.state);
          assert.ok(keys.every((k) => ['recentHigh', 'recentHighTime', 'lastRebalanceTime'].includes(k)), keys.join());
          const s = step.decision.scratch;
          assert.deepEqual(parseScratch(JSON.parse(JSON.stringify(s)) as unknown, sim.job), { ...s, dipBought: s.dipBought && U(sim.job.recentHigh) > 0n });
          assert.ok(s.prices.length <= 20 && s.tradeTimes.length <= 60 && s.tradeMinutes.length <= 61);
          assert.ok(!sim.job.tokenBalance.startsWith('-'));
          if (step.decision.order) {
            ordersSeen++;
            seen.set(step.decision.order.reason, (seen.get(step.decision.order.reason) ?? 0) + 1);
          } else {
            seen.set(`skip:${step.decision.skipped}`, (seen.get(`skip:${step.decision.skipped}`) ?? 0) + 1);
          }
          price = price * BigInt(1000 + t.move) / 1000n;
          if (price < E(6)) price = E(6);
          now += t.dt;
        }
      }), { numRuns: 300, seed: 20240301, interruptAfterTimeLimit: 30_000 });
    // Guard against a vacuous property: many orders of every kind, and the limits actually binding.
    assert.ok(ordersSeen > 2000, `only ${ordersSeen} orders`);
    for (const k of ['DCA', 'DIP_BUY', 'TAKE_PROFIT', 'REBALANCE', 'SUPPORT_BUY', 'LIQUIDATE',
      'skip:max-trades-per-hour', 'skip:min-trade', 'skip:max-accumulation', 'skip:max-daily-volume', 'skip:max-position']) {
      assert.ok((seen.get(k) ?? 0) >= 20, `saw ${k} ${seen.get(k) ?? 0} times: ${JSON.stringify([...seen])}`);
    }
  });

  it('liquidation always ends with a zero balance, or dust worth less than 10⁻¹⁸ USD (no trade limit)', () => {
    fc.assert(fc.property(
      fc.bigInt({ min: 1n, max: 10_000n * E(18) }),
      fc.bigInt({ min: E(15), max: E(21) }),
      fc.option(fc.record({ slices: fc.integer({ min: 1, max: 40 }), jitter: fc.bigInt({ min: 0n, max: E(18) }) })),
      fc.option(fc.integer({ min: 0, max: 1000 })), // minTradeUsd in per mille of maxOrderUsd (or of 50 USD)
      (balance, price, sliced, minPermille) => {
        const value = balance * price / ONE;
        // At least 0.01 USD, so that some amount is worth at most maxOrderUsd (see the test of 'max-order').
        const maxOrder = sliced === null ? null : fromUnits(value / BigInt(sliced.slices) + sliced.jitter + E(16));
        const minTrade = minPermille === null ? null : fromUnits((maxOrder === null ? 50n * E(18) : U(maxOrder)) * BigInt(minPermille) / 1000n);
        const sim = new Sim(makeJob({
          status: 'LIQUIDATING', tokenBalance: fromUnits(balance),
          sets: [`limits.maxOrderUsd=${maxOrder ?? 'null'}`, `limits.minTradeUsd=${minTrade ?? 'null'}`],
        }));
        const bound = (sliced?.slices ?? 1) + 3;
        for (let i = 0; i <= bound && sim.job.status === 'LIQUIDATING'; i++) sim.step(fromUnits(price), T0 + i * 1000);
        const what = `${fromUnits(balance)} at ${fromUnits(price)} max ${maxOrder} min ${minTrade}`;
        assert.equal(sim.job.status, 'IDLE', what);
        assert.equal(mul(sim.job.tokenBalance, fromUnits(price), 'down'), '0', what);
        if (balance * price >= ONE) assert.equal(sim.job.tokenBalance, '0', what);
        assert.ok(sim.trades.every((t) => t.reason === 'LIQUIDATE' && t.side === 'SELL'));
      }), { numRuns: 300, seed: 7, interruptAfterTimeLimit: 30_000 });
  });
});
