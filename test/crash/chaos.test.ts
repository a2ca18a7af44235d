/**
 * The crash test, CI-sized (issue 3, "How it is checked"): the paper exchange and the daemon run as
 * real child processes; the daemon is kill -9'd at random moments and restarted at least 50 times,
 * on SQLite and on PostgreSQL, with and without the exchange's fault injection; then every
 * invariant of the exactly-once protocol must hold (test/crash/harness.ts, checkInvariants).
 *
 * Runs the built CLI (`npm test` builds it first). The full run is `npm run chaos -- --kills 1000`.
 * A failing run prints its seed; BOTSTATE_CHAOS_SEED=S reruns the same kill schedule and prices.
 *
 * The first describe proves that the checker itself can fail: a ledger and an exchange log written
 * through the library, consistent, then each tampered with in one way the protocol must never allow.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import type { ExchangeOrder } from '../../src/engine/exchange.ts';
import { normalizeAddress } from '../../src/jobs/address.ts';
import { add, sub, type Decimal } from '../../src/money/decimal.ts';
import type { Store } from '../../src/store/store.ts';
import { ENGINES, tokenAddress } from '../helpers/engines.ts';
import { checkInvariants, CI_FAULTS, drain, formatReport, runChaos, SQUEEZED, startExchange, unexercised, type ExchangeState, type Faults } from './harness.ts';

const KILLS = 50;
/** Trades the daemons print before the last kill, at least: its life goes on until then (see the fill count below). */
const MIN_TRADES = 150;
const BASE_SEED = process.env['BOTSTATE_CHAOS_SEED'] ?? '20261122';

const sqlite = ENGINES.find((e) => e.name === 'sqlite')!;

describe('the invariant checker fails on what the protocol must never allow [sqlite]', () => {
  /** One PAUSED job with a filled buy, a filled sell and a rejected buy, and the matching exchange log. */
  async function scenario(store: Store): Promise<{ jobId: string; token: string; state: ExchangeState; orders: ExchangeOrder[] }> {
    const token = normalizeAddress(tokenAddress(0xabc)); // the exchange answers in EIP-55 form
    const job = await store.jobs.start({ tokenAddress: token, tokenSymbol: 'CHK' });
    const orders: ExchangeOrder[] = [];
    const place = async (side: 'BUY' | 'SELL', ask: { quoteAmount?: Decimal; baseAmount?: Decimal }, fill: { base: Decimal; quote: Decimal; price: Decimal } | null) => {
      const { trade } = await store.ledger.recordIntent({ job: { id: job.id }, side, reason: side === 'BUY' ? 'DCA' : 'TAKE_PROFIT', ...ask });
      const time = new Date().toISOString();
      const exchangeOrderId = `paper-${orders.length + 1}`;
      if (fill) {
        await store.ledger.settle(trade.clientOrderId, { status: 'EXECUTED', baseAmount: fill.base, quoteAmount: fill.quote, priceUsd: fill.price, exchangeOrderId, executedAt: time });
      } else {
        await store.ledger.settle(trade.clientOrderId, { status: 'FAILED', error: 'insufficient USD' });
      }
      orders.push({
        clientOrderId: trade.clientOrderId, exchangeOrderId, token, side, status: fill ? 'FILLED' : 'REJECTED',
        // A rejection executed nothing: amounts 0.
        baseAmount: fill?.base ?? '0', quoteAmount: fill?.quote ?? '0', price: fill?.price ?? '1.25', error: fill ? null : 'insufficient USD', time,
      });
    };
    await place('BUY', { quoteAmount: '10' }, { base: '8.000000000000000001', quote: '10', price: '1.249999999999999999' });
    await place('SELL', { baseAmount: '2.5' }, { base: '2.5', quote: '3.1', price: '1.24' });
    await place('BUY', { quoteAmount: '10' }, null);
    await store.jobs.pause({ id: job.id });
    const state: ExchangeState = { orders, balances: { USD: '993.1', [token]: sub('8.000000000000000001', '2.5') } };
    return { jobId: job.id, token, state, orders };
  }

  const tampered = async (mutate: (s: { store: Store; jobId: string; token: string; orders: ExchangeOrder[]; state: ExchangeState }) => Promise<ExchangeState>, expect: RegExp) => {
    const fx = await sqlite.create();
    try {
      const store = await fx.open();
      const s = await scenario(store);
      const clean = await checkInvariants(store, s.state, { allowError: false });
      assert.deepEqual(clean.violations, [], 'the untampered scenario is consistent');
      assert.equal(clean.counts.filled, 2);
      assert.equal(clean.counts.rejected, 1);
      const state = await mutate({ store, ...s });
      const { violations } = await checkInvariants(store, state, { allowError: false });
      assert.ok(violations.some((v) => expect.test(v)), `expected a violation matching ${expect}, got ${JSON.stringify(violations)}`);
    } finally {
      await fx.cleanup();
    }
  };

  it('an order filled twice under one clientOrderId', () =>
    tampered(async ({ state, orders }) => ({ ...state, orders: [...orders, { ...orders[0]!, exchangeOrderId: 'paper-9' }] }), /clientOrderId .* twice/));

  it('a filled order the ledger never committed as an intent', () =>
    tampered(
      async ({ state, orders, jobId, token }) => ({
        ...state,
        orders: [...orders, { ...orders[0]!, clientOrderId: `${jobId}-999`, exchangeOrderId: 'paper-4', token }],
      }),
      /has no trade in the ledger/,
    ));

  it('a fill recorded with other amounts than the exchange filled', () =>
    tampered(async ({ state, orders }) => ({ ...state, orders: [{ ...orders[0]!, baseAmount: '8.000000000000000002' }, ...orders.slice(1)] }), /base 8\.000000000000000002 on the exchange/));

  it('an EXECUTED trade the exchange never filled', () =>
    tampered(async ({ state, orders }) => ({ ...state, orders: orders.slice(1) }), /was never filled by the exchange/));

  it('a rejected order recorded as executed', () =>
    tampered(async ({ state, orders }) => ({ ...state, orders: [{ ...orders[0]!, status: 'REJECTED' }, ...orders.slice(1)] }), /REJECTED order .* is EXECUTED/));

  it('a rejected order that asked for other amounts than its intent (what it asked, from the exchange\'s file)', () =>
    tampered(
      async ({ state, orders }) => ({ ...state, rejectedAsked: new Map([[orders[2]!.clientOrderId, { baseAmount: '8', quoteAmount: '11' }]]) }),
      /placed quote 11, its intent asked for 10/,
    ));

  it('a filled order that asked for other amounts than its intent', () =>
    // The intent asked for 10 of quote; the exchange's order says 12.
    tampered(async ({ state, orders }) => ({ ...state, orders: [{ ...orders[0]!, quoteAmount: '12' }, ...orders.slice(1)] }), /placed quote 12, its intent asked for 10/));

  it('orders of a job placed out of sequence', () =>
    tampered(async ({ state, orders }) => ({ ...state, orders: [orders[1]!, orders[0]!, orders[2]!] }), /not strictly increasing/));

  it("a balance that differs from the exchange's account by 10^-18", () =>
    tampered(async ({ state, token }) => ({ ...state, balances: { ...state.balances, [token]: add(state.balances[token]!, '0.000000000000000001') } }), /the exchange's account holds/));

  it('an intent left PENDING, and a second intent made while it was open', () =>
    tampered(async ({ store, state, jobId }) => {
      await store.jobs.resume({ id: jobId });
      await store.ledger.recordIntent({ job: { id: jobId }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      await store.ledger.recordIntent({ job: { id: jobId }, side: 'BUY', reason: 'DIP_BUY', quoteAmount: '20' });
      await store.jobs.pause({ id: jobId });
      return state;
    }, /made while .* was still open/));

  it('a job in ERROR when no fault was injected', () =>
    tampered(async ({ store, state, jobId }) => {
      await store.jobs.fail({ id: jobId }, 'exchange down');
      return state;
    }, /is in ERROR: exchange down/));

  it('an intent given up FAILED without ever reaching the exchange', () =>
    // The rejected buy, as if the exchange had never heard of it: a new intent could place it again.
    tampered(async ({ state, orders }) => ({ ...state, orders: orders.filter((o) => o.status !== 'REJECTED') }), /was never sent to the exchange \(insufficient USD\)/));

  it('a job in ERROR for a reason the squeeze does not explain, an injected 503 too', async () => {
    const fx = await sqlite.create();
    try {
      const store = await fx.open();
      const s = await scenario(store);
      const allowError = (reason: string) => SQUEEZED.test(reason);
      const injected = '5 steps failed in a row; last: exchange at http://127.0.0.1:1 failed GET /price/0x1 (HTTP 503): injected fault: service unavailable (--error-rate)';
      for (const reason of ['5 steps failed in a row; last: order x-1: outcome unknown', injected]) {
        await store.jobs.fail({ id: s.jobId }, reason);
        const { violations } = await checkInvariants(store, s.state, { allowError });
        assert.deepEqual(violations, [`job CHK is in ERROR: ${reason}`]);
        await store.jobs.resume({ id: s.jobId });
      }
      const squeezed = '5 steps failed in a row; last: order x-1 was rejected: insufficient USD balance: 1 < 2';
      assert.ok(SQUEEZED.test(squeezed));
      await store.jobs.fail({ id: s.jobId }, squeezed);
      assert.deepEqual((await checkInvariants(store, s.state, { allowError })).violations, []);
    } finally {
      await fx.cleanup();
    }
  });

  it('a RUNNING job (ACCUMULATE or LIQUIDITY) that makes no order while the final daemon runs', { timeout: 60_000 }, async () => {
    const fx = await sqlite.create();
    const dir = mkdtempSync(join(tmpdir(), 'botstate-stuck-'));
    const exchange = await startExchange({ dataFile: join(dir, 'paper-exchange.db'), seed: 'stuck' });
    try {
      const store = await fx.open();
      // A DCA job that has bought at 1 USD: its next buy is due in 1,000 hours and it buys no dip short
      // of 99 % (the exchange starts near 0.5), so the daemon steps it without an order.
      const job = await store.jobs.start({ tokenAddress: tokenAddress(0x5c), tokenSymbol: 'STK', set: ['accumulate.dcaIntervalHours=1000', 'accumulate.dipBuyThreshold=99'] });
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: `${job.id}-1`, side: 'BUY', reason: 'DCA', baseAmount: '1', quoteAmount: '1', priceUsd: '1' });
      // A LIQUIDITY job that holds nothing, never rebalances (targetRatio × 100 within the threshold),
      // buys no dip short of 99 % and no spread short of 50 %: stepped without an order either.
      const quiet = await store.jobs.start({
        tokenAddress: tokenAddress(0x5d), tokenSymbol: 'LQS', mode: 'LIQUIDITY',
        set: ['liquidity.targetRatio=0.05', 'liquidity.spreadPercent=50', 'accumulate.dipBuyThreshold=99'],
      });
      const end = await drain({ store, exchangeUrl: exchange.url, dbUrl: fx.url, tickMs: 50, leaseTtlMs: 2000, livenessMs: 1500 });
      assert.deepEqual(end.violations, [
        'job STK (ACCUMULATE) stayed RUNNING without an order for 1500 ms with a daemon running: stuck',
        'job LQS (LIQUIDITY) stayed RUNNING without an order for 3000 ms with a daemon running: stuck',
      ]);
      assert.equal((await store.jobs.get({ id: job.id })).status, 'PAUSED', 'then paused and drained as usual');
      assert.equal((await store.jobs.get({ id: quiet.id })).status, 'PAUSED');
    } finally {
      await exchange.proc.kill9();
      await fx.cleanup();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

interface Run {
  readonly engine: (typeof ENGINES)[number];
  readonly faults: Faults | undefined;
  readonly seed: string;
  readonly durability?: 'power';
}

const RUNS: readonly Run[] = [
  ...ENGINES.flatMap((engine, e) => [
    { engine, faults: undefined, seed: `${BASE_SEED}-${e * 2}` },
    { engine, faults: CI_FAULTS, seed: `${BASE_SEED}-${e * 2 + 1}` },
  ]),
  // Group commit: the daemon's writes share commits and an fsync thread.
  { engine: sqlite, faults: undefined, seed: `${BASE_SEED}-power`, durability: 'power' },
];

describe('crash test: kill -9 the daemon, restart it, and check exactly-once', () => {
  for (const run of RUNS) {
    const name = `${run.engine.name}${run.durability ? `, ${run.durability} mode` : ''}${run.faults ? ' with faults (latency 5 ms, error rate 0.1, drop rate 0.2, late rate 0.05)' : ''}`;
    it(`${KILLS} kills [${name}]`, { skip: run.engine.skip, timeout: 240_000 }, async (t) => {
      const fx = await run.engine.create();
      try {
        const report = await runChaos({ dbUrl: fx.url, kills: KILLS, seed: run.seed, faults: run.faults, minTrades: MIN_TRADES, ...(run.durability ? { durability: run.durability } : {}) });
        t.diagnostic(formatReport(report));
        assert.deepEqual(report.violations, [], `seed ${run.seed}: ${report.violations.length} violations`);
        const c = report.counts!;
        assert.equal(report.kills, KILLS);
        assert.ok(c.jobs >= 20, `${c.jobs} jobs`);
        // The run must have done what it is meant to prove: kills that left orders in flight, fills,
        // rejections, both liquidations, unknown outcomes with faults (as npm run chaos requires).
        // At least 100 fills: a daemon that trades between kills at all makes several hundred (the PostgreSQL
        // run made 298-579 alone or beside another test file, 105-177 inside a full suite on a slow
        // phase of this machine, where each of its 50 lives spends most of its 1.4 s starting). So
        // the last life goes on until MIN_TRADES trades have been printed (runChaos's minTrades).
        assert.deepEqual(unexercised(report, 100), []);
      } finally {
        await fx.cleanup();
      }
    });
  }
});
