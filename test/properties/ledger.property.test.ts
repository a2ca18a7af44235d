/**
 * Property: random trade sequences with 18-decimal amounts keep the balance invariant exactly, on
 * both engines.
 *
 * Each run replays a random array of ledger commands (executed trades, replays and conflicting
 * reuses of a clientOrderId, intents, settlements) against a pure bigint model and a real store.
 * After every step, for every job of the run:
 *   tokenBalance     === Σ executed BUY base − Σ executed SELL base  (from store.ledger.trades and from the model)
 *   totalAccumulated === Σ executed BUY quote
 *   lastDcaBuyTime   === the latest executedAt of the executed DCA buys
 * and the job's version and every trade (status, amounts, times) match the model. Amounts are
 * generated as bigint units and formatted with fromUnits: no float anywhere.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BotstateError } from '../../src/errors.ts';
import type { Trade, TradeResult } from '../../src/ledger/ledger.ts';
import { fromUnits, toUnits } from '../../src/money/decimal.ts';
import type { Store } from '../../src/store/store.ts';
import { ENGINES, tokenAddress, type Fixture } from '../helpers/engines.ts';

type Side = 'BUY' | 'SELL';
const REASONS = ['DCA', 'DIP_BUY', 'TAKE_PROFIT', 'REBALANCE', 'SUPPORT_BUY', 'LIQUIDATE'] as const;
type Reason = (typeof REASONS)[number];
type Status = 'PENDING' | 'EXECUTED' | 'FAILED';

const JOBS = 2;

/** How much to sell, relative to the balance at the time (the generator cannot know it). */
type Amount =
  | { readonly mode: 'units'; readonly units: bigint }
  | { readonly mode: 'part'; readonly permille: number }
  | { readonly mode: 'over'; readonly extra: bigint };

type Cmd =
  | { readonly kind: 'record'; readonly job: number; readonly side: Side; readonly reason: Reason; readonly base: Amount; readonly quote: bigint; readonly price: bigint; readonly at: string }
  | { readonly kind: 'replay'; readonly pick: number; readonly at: string }
  | { readonly kind: 'conflict'; readonly pick: number; readonly change: 'base' | 'quote' | 'price' | 'side' | 'reason' | 'job' }
  | { readonly kind: 'intent'; readonly job: number; readonly side: Side; readonly reason: Reason; readonly base: bigint | null; readonly quote: bigint | null }
  | { readonly kind: 'intentAgain'; readonly pick: number; readonly change: 'none' | 'amount' | 'side' | 'job' }
  | { readonly kind: 'settle'; readonly pick: number; readonly outcome: { readonly status: 'EXECUTED'; readonly base: Amount; readonly quote: bigint; readonly price: bigint; readonly at: string } | { readonly status: 'FAILED'; readonly error: string } }
  | { readonly kind: 'resettle'; readonly pick: number; readonly as: 'same' | 'otherFill' | 'failed' }
  | { readonly kind: 'settleUnknown' };

const units18 = fc.oneof(
  fc.bigInt({ min: 1n, max: 10n ** 18n }), // below one token: every decimal matters
  fc.bigInt({ min: 1n, max: 10n ** 40n }), // up to 10^22 tokens with 18 decimals
);
const quoteUnits = fc.bigInt({ min: 0n, max: 10n ** 40n });
// A price is never 0 (the ledger refuses it).
const priceUnits = fc.bigInt({ min: 1n, max: 10n ** 30n });
const TIME_MIN = Date.parse('2000-01-01T00:00:00.000Z');
const TIME_MAX = Date.parse('2025-12-31T23:59:59.999Z');
const isoTime = fc.date({ min: new Date(TIME_MIN), max: new Date(TIME_MAX), noInvalidDate: true }).map((d) => d.toISOString());
/**
 * A settle's fill time: `at` (an isoTime) moved, in order, into the 4 minutes before now. A fill
 * is not dated more than 5 minutes before its intent, recorded moments ago; recordTrade takes any past time.
 */
const settleTime = (at: string): string => new Date(Date.now() - 240_000 + Math.floor(((Date.parse(at) - TIME_MIN) / (TIME_MAX - TIME_MIN)) * 240_000)).toISOString();
const sellAmount: fc.Arbitrary<Amount> = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 1000 }).map((permille): Amount => ({ mode: 'part', permille })) },
  { weight: 1, arbitrary: fc.constant<Amount>({ mode: 'part', permille: 1000 }) },
  { weight: 1, arbitrary: fc.bigInt({ min: 1n, max: 10n ** 20n }).map((extra): Amount => ({ mode: 'over', extra })) },
  { weight: 1, arbitrary: units18.map((units): Amount => ({ mode: 'units', units })) },
);
const sideArb = fc.constantFrom<Side>('BUY', 'SELL');
const reasonArb = fc.constantFrom<Reason>(...REASONS);
const jobArb = fc.integer({ min: 0, max: JOBS - 1 });
const pickArb = fc.nat({ max: 1000 });

const cmdArb: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({ kind: fc.constant('record' as const), job: jobArb, side: sideArb, reason: reasonArb, quote: quoteUnits, price: priceUnits, at: isoTime })
      .chain((r) => (r.side === 'BUY' ? units18.map((units): Amount => ({ mode: 'units', units })) : sellAmount).map((base) => ({ ...r, base }))),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('replay' as const), pick: pickArb, at: isoTime }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('conflict' as const), pick: pickArb, change: fc.constantFrom('base', 'quote', 'price', 'side', 'reason', 'job') as fc.Arbitrary<'base' | 'quote' | 'price' | 'side' | 'reason' | 'job'> }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('intent' as const), job: jobArb, side: sideArb, reason: reasonArb,
      base: fc.option(units18, { freq: 4 }), quote: fc.option(quoteUnits, { freq: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('intentAgain' as const), pick: pickArb, change: fc.constantFrom('none', 'amount', 'side', 'job') as fc.Arbitrary<'none' | 'amount' | 'side' | 'job'> }) },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('settle' as const),
      pick: pickArb,
      outcome: fc.oneof(
        { weight: 3, arbitrary: fc.record({ status: fc.constant('EXECUTED' as const), base: sellAmount, quote: quoteUnits, price: priceUnits, at: isoTime }) },
        { weight: 1, arbitrary: fc.record({ status: fc.constant('FAILED' as const), error: fc.constantFrom('rejected by the exchange', 'insufficient liquidity', 'timeout') }) },
      ),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('resettle' as const), pick: pickArb, as: fc.constantFrom('same', 'otherFill', 'failed') as fc.Arbitrary<'same' | 'otherFill' | 'failed'> }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'settleUnknown' as const }) },
);

interface MTrade {
  readonly coid: string;
  job: number;
  readonly side: Side;
  readonly reason: Reason;
  status: Status;
  base: bigint | null;
  quote: bigint | null;
  price: bigint | null;
  executedAt: string | null;
  error: string | null;
  /** What its intent asked for (a fill replaces base and quote); null for a trade recorded executed, which had no intent. */
  readonly asked: { readonly base: bigint | null; readonly quote: bigint | null } | null;
}

/** The most units (of 10^-18) an amount or a job's total may hold: 78 nines . 18 nines. */
const MAX_UNITS = 10n ** 96n - 1n;

interface MJob {
  balance: bigint;
  total: bigint;
  lastDca: string | null;
  version: number;
}

const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x));

function resolveAmount(a: Amount, balance: bigint): bigint {
  if (a.mode === 'units') return a.units;
  if (a.mode === 'over') return balance + a.extra;
  const u = (balance * BigInt(a.permille)) / 1000n;
  return u === 0n ? 1n : u; // zero is not a trade: one unit (refused if the balance is empty)
}

async function expectCode(p: Promise<unknown>, code: string, label: string): Promise<BotstateError> {
  let error: unknown;
  try {
    const r = await p;
    assert.fail(`${label}: expected ${code}, got success ${show(r)}`);
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof BotstateError, `${label}: expected ${code}, got ${String(error)}`);
  assert.equal(error.code, code, `${label}: ${error.message}`);
  return error;
}

/** The model and a store, stepped together. */
class Harness {
  readonly trades: MTrade[] = [];
  readonly jobs: MJob[];
  readonly outcomes = new Map<string, number>();
  #next = 0;

  readonly store: Store;
  readonly addresses: readonly string[];
  readonly prefix: string;

  constructor(store: Store, addresses: readonly string[], prefix: string) {
    this.store = store;
    this.addresses = addresses;
    this.prefix = prefix;
    this.jobs = addresses.map(() => ({ balance: 0n, total: 0n, lastDca: null, version: 1 }));
  }

  ref(job: number) {
    return { tokenAddress: this.addresses[job] as string };
  }

  newCoid(): string {
    return `${this.prefix}-${this.#next++}`;
  }

  note(key: string): void {
    this.outcomes.set(key, (this.outcomes.get(key) ?? 0) + 1);
  }

  /** The base units the job's PENDING sells have asked for: not available to another sell. */
  reserved(job: number): bigint {
    let sum = 0n;
    for (const t of this.trades) if (t.job === job && t.status === 'PENDING' && t.side === 'SELL' && t.base !== null) sum += t.base;
    return sum;
  }

  /** Applies an executed fill to the model, or returns the refusal the store must give. */
  apply(t: MTrade, base: bigint, quote: bigint, price: bigint, at: string): 'INSUFFICIENT_BALANCE' | undefined {
    const j = this.jobs[t.job] as MJob;
    if (t.side === 'SELL' && base > j.balance) return 'INSUFFICIENT_BALANCE';
    if (t.side === 'BUY') {
      j.balance += base;
      j.total += quote;
      if (t.reason === 'DCA' && (j.lastDca === null || at > j.lastDca)) j.lastDca = at; // the latest, even when recorded out of order
    } else {
      j.balance -= base;
    }
    Object.assign(t, { status: 'EXECUTED', base, quote, price, executedAt: at });
    return undefined;
  }

  checkTrade(actual: Trade, t: MTrade, label: string): void {
    assert.deepEqual(
      {
        clientOrderId: actual.clientOrderId, side: actual.side, reason: actual.reason, status: actual.status,
        baseAmount: actual.baseAmount, quoteAmount: actual.quoteAmount, priceUsd: actual.priceUsd,
        executedAt: actual.executedAt, error: actual.error,
      },
      {
        clientOrderId: t.coid, side: t.side, reason: t.reason, status: t.status,
        baseAmount: t.base === null ? null : fromUnits(t.base), quoteAmount: t.quote === null ? null : fromUnits(t.quote),
        priceUsd: t.price === null ? null : fromUnits(t.price), executedAt: t.executedAt, error: t.error,
      },
      `${label}: trade ${t.coid}`,
    );
  }

  async step(cmd: Cmd, label: string): Promise<void> {
    const { store } = this;
    const pick = <T>(list: readonly T[], n: number): T | undefined => (list.length === 0 ? undefined : list[n % list.length]);
    switch (cmd.kind) {
      case 'record': {
        const j = this.jobs[cmd.job] as MJob;
        const base = resolveAmount(cmd.base, j.balance);
        const t: MTrade = { coid: this.newCoid(), job: cmd.job, side: cmd.side, reason: cmd.reason, status: 'PENDING', base: null, quote: null, price: null, executedAt: null, error: null, asked: null };
        const call = store.ledger.recordTrade({
          job: this.ref(cmd.job), clientOrderId: t.coid, side: cmd.side, reason: cmd.reason,
          baseAmount: fromUnits(base), quoteAmount: fromUnits(cmd.quote), priceUsd: fromUnits(cmd.price), executedAt: cmd.at,
        });
        // A buy paid nothing for is no fill.
        if (cmd.side === 'BUY' && cmd.quote === 0n) {
          await expectCode(call, 'INVALID_AMOUNT', label);
          this.note('record:UNPAID');
          return;
        }
        // A buy that would take the balance or the total past 78 integer digits is refused: no sell of it could be placed.
        if (cmd.side === 'BUY' && (j.balance + base > MAX_UNITS || j.total + cmd.quote > MAX_UNITS)) {
          await expectCode(call, 'INVALID_AMOUNT', label);
          this.note('record:INVALID_AMOUNT');
          return;
        }
        const refused = cmd.side === 'SELL' && base > j.balance - this.reserved(cmd.job);
        if (refused) {
          const e = await expectCode(call, 'INSUFFICIENT_BALANCE', label);
          assert.equal(e.details['tokenBalance'], fromUnits(j.balance), `${label}: details.tokenBalance`);
          this.note('record:INSUFFICIENT_BALANCE');
          return;
        }
        const r = await call;
        this.apply(t, base, cmd.quote, cmd.price, cmd.at);
        j.version++;
        this.trades.push(t);
        this.checkResult(r, t, false, label);
        this.note(`record:${cmd.side}`);
        return;
      }
      case 'replay': {
        const t = pick(this.trades, cmd.pick);
        if (!t) return;
        // The same order again, as a retry would send it (a later executedAt does not make it different).
        const call = store.ledger.recordTrade({
          job: this.ref(t.job), clientOrderId: t.coid, side: t.side, reason: t.reason,
          baseAmount: fromUnits(t.base ?? 1n), quoteAmount: fromUnits(paid(t.side, t.quote ?? 0n)), priceUsd: fromUnits(t.price ?? 1n), executedAt: cmd.at,
        });
        if (t.status === 'EXECUTED') {
          this.checkResult(await call, t, true, label);
          this.note('replay:duplicate');
        } else {
          await expectCode(call, 'DUPLICATE_ORDER', label); // a PENDING or FAILED intent is not this executed trade
          this.note(`replay:${t.status}:DUPLICATE_ORDER`);
        }
        return;
      }
      case 'conflict': {
        const t = pick(this.trades, cmd.pick);
        if (!t) return;
        const other = <T>(list: readonly T[], v: T): T => list[(list.indexOf(v) + 1) % list.length] as T;
        const c = cmd.change;
        const side = c === 'side' ? other<Side>(['BUY', 'SELL'], t.side) : t.side;
        await expectCode(
          store.ledger.recordTrade({
            job: this.ref(c === 'job' ? (t.job + 1) % JOBS : t.job),
            clientOrderId: t.coid,
            side,
            reason: c === 'reason' ? other(REASONS, t.reason) : t.reason,
            baseAmount: fromUnits((t.base ?? 1n) + (c === 'base' ? 1n : 0n)),
            quoteAmount: fromUnits(paid(side, (t.quote ?? 0n) + (c === 'quote' ? 1n : 0n))),
            priceUsd: fromUnits((t.price ?? 1n) + (c === 'price' ? 1n : 0n)),
          }),
          'DUPLICATE_ORDER',
          label,
        );
        this.note(`conflict:${c}`);
        return;
      }
      case 'intent': {
        const t: MTrade = { coid: this.newCoid(), job: cmd.job, side: cmd.side, reason: cmd.reason, status: 'PENDING', base: cmd.base, quote: cmd.quote, price: null, executedAt: null, error: null, asked: { base: cmd.base, quote: cmd.quote } };
        const call = store.ledger.recordIntent({
          job: this.ref(cmd.job), clientOrderId: t.coid, side: cmd.side, reason: cmd.reason,
          ...(cmd.base === null ? {} : { baseAmount: fromUnits(cmd.base) }),
          ...(cmd.quote === null ? {} : { quoteAmount: fromUnits(cmd.quote) }),
        });
        // No amount at all, both (the order carries one), a SELL sized in quote alone (it would
        // hold no tokens back), or an intent sized in quote alone for 0 (an order for nothing).
        if ((cmd.base === null && (cmd.quote === null || cmd.quote === 0n)) || (cmd.base !== null && cmd.quote !== null) || (cmd.side === 'SELL' && cmd.base === null)) {
          await expectCode(call, 'INVALID_AMOUNT', label);
          this.note('intent:INVALID_AMOUNT');
          return;
        }
        if (cmd.side === 'SELL' && cmd.base !== null && cmd.base > (this.jobs[cmd.job] as MJob).balance - this.reserved(cmd.job)) {
          await expectCode(call, 'INSUFFICIENT_BALANCE', label); // an intent may not ask to sell more than is held
          this.note('intent:INSUFFICIENT_BALANCE');
          return;
        }
        const r = await call;
        (this.jobs[cmd.job] as MJob).version++;
        this.trades.push(t);
        this.checkResult(r, t, false, label);
        this.note('intent');
        return;
      }
      case 'intentAgain': {
        const t = pick(this.trades, cmd.pick);
        if (!t) return;
        const c = cmd.change;
        // The retry asks for what the intent asked (one more unit for 'amount'); for a trade recorded
        // executed, which had no intent, or another side or job, for a base (a sell is sized in base).
        const more = c === 'amount' ? 1n : 0n;
        const amounts =
          t.asked === null || c === 'side' || c === 'job'
            ? { baseAmount: fromUnits((t.base ?? 1n) + more) }
            : {
                ...(t.asked.base === null ? {} : { baseAmount: fromUnits(t.asked.base + more) }),
                ...(t.asked.quote === null ? {} : { quoteAmount: fromUnits(t.asked.quote + (t.asked.base === null ? more : 0n)) }),
              };
        const call = store.ledger.recordIntent({
          job: this.ref(c === 'job' ? (t.job + 1) % JOBS : t.job),
          clientOrderId: t.coid,
          side: c === 'side' ? (t.side === 'BUY' ? 'SELL' : 'BUY') : t.side,
          reason: t.reason,
          ...amounts,
        });
        // A trade is returned as it is to a retry with the same job, side and reason asking for
        // exactly what its intent asked, whatever its status (an EXECUTED one's row holds the fill's
        // amounts, its intent's audit entry what was asked); a trade recorded executed, which had
        // no intent, to a retry with the same job, side and reason.
        const duplicate = c !== 'side' && c !== 'job' && (t.asked === null ? t.status === 'EXECUTED' : c === 'none');
        if (!duplicate) {
          await expectCode(call, 'DUPLICATE_ORDER', label);
          this.note(`intentAgain:${c}:DUPLICATE_ORDER`);
        } else {
          this.checkResult(await call, t, true, label);
          this.note(`intentAgain:${c}:duplicate`);
        }
        return;
      }
      case 'settle': {
        const t = pick(this.trades.filter((x) => x.status === 'PENDING'), cmd.pick);
        if (!t) return;
        const j = this.jobs[t.job] as MJob;
        const o = cmd.outcome;
        if (o.status === 'FAILED') {
          const r = await store.ledger.settle(t.coid, { status: 'FAILED', error: o.error });
          Object.assign(t, { status: 'FAILED', error: o.error });
          j.version++;
          this.checkResult(r, t, false, label);
          this.note('settle:FAILED');
          return;
        }
        const base = resolveAmount(o.base, j.balance);
        // A fill is dated after its intent (up to 5 minutes before is taken): o.at, placed in the 4 minutes before now.
        const at = settleTime(o.at);
        const call = store.ledger.settle(t.coid, { status: 'EXECUTED', baseAmount: fromUnits(base), quoteAmount: fromUnits(o.quote), priceUsd: fromUnits(o.price), executedAt: at });
        // A buy paid nothing for is no fill; nor is one of more than the intent asked for (its base, else its quote).
        if (t.side === 'BUY' && o.quote === 0n) {
          await expectCode(call, 'INVALID_AMOUNT', label);
          this.note('settle:UNPAID');
          return;
        }
        const [asked, got] = t.base !== null ? [t.base, base] : [t.quote, o.quote];
        if (asked !== null && got > asked) {
          await expectCode(call, 'INVALID_AMOUNT', label);
          this.note('settle:MORE_THAN_ASKED');
          return;
        }
        if (t.side === 'SELL' && base > j.balance) {
          await expectCode(call, 'INSUFFICIENT_BALANCE', label);
          this.note('settle:INSUFFICIENT_BALANCE');
          return;
        }
        const r = await call;
        this.apply(t, base, o.quote, o.price, at);
        j.version++;
        this.checkResult(r, t, false, label);
        this.note(`settle:EXECUTED:${t.side}`);
        return;
      }
      case 'resettle': {
        const t = pick(this.trades.filter((x) => x.status !== 'PENDING'), cmd.pick);
        if (!t) return;
        const call =
          cmd.as === 'failed'
            ? store.ledger.settle(t.coid, { status: 'FAILED', error: 'again' })
            : store.ledger.settle(t.coid, {
                status: 'EXECUTED',
                baseAmount: fromUnits((t.base ?? 1n) + (cmd.as === 'otherFill' ? 1n : 0n)),
                quoteAmount: fromUnits(t.quote ?? 0n),
                priceUsd: fromUnits(t.price ?? 1n),
              });
        const same = (cmd.as === 'failed' && t.status === 'FAILED') || (cmd.as === 'same' && t.status === 'EXECUTED');
        if (same) {
          this.checkResult(await call, t, true, label);
          this.note(`resettle:${t.status}:duplicate`);
        } else {
          await expectCode(call, 'DUPLICATE_ORDER', label);
          this.note(`resettle:${t.status}:${cmd.as}:DUPLICATE_ORDER`);
        }
        return;
      }
      case 'settleUnknown': {
        await expectCode(store.ledger.settle(this.newCoid(), { status: 'FAILED', error: 'x' }), 'TRADE_NOT_FOUND', label);
        return;
      }
    }
  }

  checkResult(r: TradeResult, t: MTrade, duplicate: boolean, label: string): void {
    assert.equal(r.duplicate, duplicate, `${label}: duplicate`);
    this.checkTrade(r.trade, t, label);
    const j = this.jobs[t.job] as MJob;
    assert.equal(r.job.tokenBalance, fromUnits(j.balance), `${label}: returned tokenBalance`);
    assert.equal(r.job.version, j.version, `${label}: returned version`);
  }

  /** The invariants, from the store's own trades and from the model. */
  async check(label: string): Promise<void> {
    for (let k = 0; k < JOBS; k++) {
      const ref = this.ref(k);
      const job = await this.store.jobs.get(ref);
      const trades = await this.store.ledger.trades(ref);
      const m = this.jobs[k] as MJob;
      let bought = 0n;
      let sold = 0n;
      let spent = 0n;
      const dcaTimes = new Set<string>();
      for (const t of trades) {
        if (t.status !== 'EXECUTED') continue;
        const base = toUnits(t.baseAmount as string);
        if (t.side === 'BUY') {
          bought += base;
          spent += toUnits(t.quoteAmount as string);
          if (t.reason === 'DCA') dcaTimes.add(t.executedAt as string);
        } else {
          sold += base;
        }
      }
      const at = `${label}, job ${k}`;
      assert.equal(job.tokenBalance, fromUnits(bought - sold), `${at}: tokenBalance vs the ledger`);
      assert.equal(job.tokenBalance, fromUnits(m.balance), `${at}: tokenBalance vs the model`);
      assert.ok(m.balance >= 0n, `${at}: negative balance in the model`);
      assert.equal(job.totalAccumulated, fromUnits(spent), `${at}: totalAccumulated vs the ledger`);
      assert.equal(job.totalAccumulated, fromUnits(m.total), `${at}: totalAccumulated vs the model`);
      assert.equal(job.lastDcaBuyTime, m.lastDca, `${at}: lastDcaBuyTime`);
      if (m.lastDca !== null) assert.ok(dcaTimes.has(m.lastDca), `${at}: lastDcaBuyTime is an executed DCA buy's time`);
      assert.equal(job.version, m.version, `${at}: version`);
      const expected = this.trades.filter((t) => t.job === k);
      assert.equal(trades.length, expected.length, `${at}: number of trades`);
      const byCoid = new Map(trades.map((t) => [t.clientOrderId, t]));
      for (const t of expected) {
        const actual = byCoid.get(t.coid);
        assert.ok(actual, `${at}: trade ${t.coid} missing`);
        assert.equal(actual.jobId, job.id, `${at}: trade ${t.coid} belongs to the job`);
        this.checkTrade(actual, t, at);
      }
    }
  }
}

/** A quote a trade given again may carry: a BUY for 0 is refused before the clientOrderId is looked at (an intent sized in base has no quote). */
function paid(side: Side, quote: bigint): bigint {
  return side === 'BUY' && quote === 0n ? 1n : quote;
}

/** A fixed walk through every outcome, run before the random ones so the coverage check never depends on luck. */
const EXAMPLE: Cmd[] = [
  { kind: 'record', job: 0, side: 'BUY', reason: 'DCA', base: { mode: 'units', units: 10n ** 30n + 7n }, quote: 25n * 10n ** 18n, price: 3n, at: '2020-01-01T00:00:00.000Z' },
  { kind: 'record', job: 0, side: 'SELL', reason: 'TAKE_PROFIT', base: { mode: 'part', permille: 333 }, quote: 1n, price: 1n, at: '2020-01-01T00:00:01.000Z' },
  { kind: 'record', job: 0, side: 'SELL', reason: 'LIQUIDATE', base: { mode: 'over', extra: 1n }, quote: 1n, price: 1n, at: '2020-01-01T00:00:02.000Z' },
  { kind: 'replay', pick: 0, at: '2020-01-02T00:00:00.000Z' },
  { kind: 'conflict', pick: 0, change: 'base' },
  { kind: 'conflict', pick: 1, change: 'side' },
  { kind: 'conflict', pick: 1, change: 'job' },
  { kind: 'intent', job: 1, side: 'BUY', reason: 'DCA', base: 5n, quote: null },
  { kind: 'intent', job: 0, side: 'SELL', reason: 'TAKE_PROFIT', base: 1n, quote: null },
  { kind: 'intentAgain', pick: 2, change: 'side' },
  { kind: 'intentAgain', pick: 2, change: 'amount' },
  { kind: 'intentAgain', pick: 0, change: 'none' },
  { kind: 'settle', pick: 0, outcome: { status: 'EXECUTED', base: { mode: 'units', units: 6n }, quote: 9n, price: 2n, at: '2019-12-31T00:00:00.000Z' } },
  { kind: 'settle', pick: 0, outcome: { status: 'EXECUTED', base: { mode: 'over', extra: 1n }, quote: 9n, price: 2n, at: '2020-01-03T00:00:00.000Z' } },
  { kind: 'settle', pick: 0, outcome: { status: 'FAILED', error: 'rejected by the exchange' } },
  { kind: 'resettle', pick: 0, as: 'same' },
  { kind: 'resettle', pick: 3, as: 'failed' },
  { kind: 'resettle', pick: 3, as: 'otherFill' },
  { kind: 'replay', pick: 3, at: '2020-01-04T00:00:00.000Z' },
  { kind: 'settleUnknown' },
  { kind: 'intent', job: 1, side: 'BUY', reason: 'DCA', base: 5n, quote: 7n },
  { kind: 'record', job: 1, side: 'BUY', reason: 'DCA', base: { mode: 'units', units: 5n }, quote: 0n, price: 1n, at: '2020-01-05T00:00:00.000Z' },
];

let runCounter = 0;

for (const [engineIndex, engine] of ENGINES.entries()) {
  describe(`ledger property [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    let store: Store;
    const sqlite = engine.name === 'sqlite';
    const outcomes = new Map<string, number>();

    before(async () => {
      fx = await engine.create();
      store = await fx.open({ actor: 'property' });
    });
    after(() => fx.cleanup());

    /** Starts the run's jobs on fresh tokens (the database is shared by all runs). */
    async function harness(): Promise<Harness> {
      const run = ++runCounter;
      const addresses = Array.from({ length: JOBS }, (_, k) => tokenAddress(2_000_000 * (engineIndex + 1) + run * JOBS + k));
      for (const a of addresses) await store.jobs.start({ tokenAddress: a });
      return new Harness(store, addresses, `L${engineIndex}-${run}`);
    }

    it('random trade sequences keep tokenBalance, totalAccumulated and lastDcaBuyTime exact', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(cmdArb, { minLength: 5, maxLength: 40, size: 'max' }), async (cmds) => {
          const h = await harness();
          for (const [n, cmd] of cmds.entries()) {
            const label = `step #${n} ${show(cmd)}`;
            await h.step(cmd, label);
            await h.check(label);
          }
          for (const [k, v] of h.outcomes) outcomes.set(k, (outcomes.get(k) ?? 0) + v);
        }),
        { numRuns: sqlite ? 40 : 15, examples: [[EXAMPLE]] },
      );
      const report = await store.verifyAudit();
      assert.deepEqual(report.problems, [], 'the audit log verifies');
      // The generator reached the interesting outcomes.
      const must = [
        'record:BUY', 'record:SELL', 'record:INSUFFICIENT_BALANCE', 'replay:duplicate', 'replay:FAILED:DUPLICATE_ORDER', 'conflict:base',
        'conflict:side', 'conflict:job', 'intent', 'intentAgain:side:DUPLICATE_ORDER', 'intentAgain:amount:DUPLICATE_ORDER', 'intentAgain:none:duplicate', 'settle:EXECUTED:BUY',
        'settle:MORE_THAN_ASKED', 'settle:FAILED', 'intent:INVALID_AMOUNT', 'record:UNPAID', 'resettle:EXECUTED:duplicate', 'resettle:FAILED:duplicate', 'resettle:FAILED:otherFill:DUPLICATE_ORDER',
      ];
      for (const k of must) assert.ok((outcomes.get(k) ?? 0) > 0, `never exercised ${k}: ${show([...outcomes])}`);
      if (process.env['PROPERTY_STATS']) process.stderr.write(`ledger outcomes [${engine.name}]: ${show([...outcomes].sort())}\n`);
      const conflicts = [...outcomes.keys()].filter((k) => k.startsWith('conflict:') || k.endsWith('DUPLICATE_ORDER'));
      assert.ok(conflicts.length >= 3, `too few DUPLICATE_ORDER cases: ${show([...outcomes])}`);
    });

    it('78 integer digits with 18 decimals stay exact', async () => {
      const LOW = 10n ** 95n; // 1 followed by 77 zeros, then 18 decimals: 78 integer digits
      const HIGH = 10n ** 96n - 1n; // 78 nines . 18 nines
      const big = fc.bigInt({ min: LOW, max: HIGH });
      const step = fc.oneof(
        big.map((units) => ({ side: 'BUY' as const, units })),
        fc.integer({ min: 1, max: 1000 }).map((permille) => ({ side: 'SELL' as const, permille })),
      );
      await fc.assert(
        fc.asyncProperty(fc.array(step, { minLength: 2, maxLength: 12 }), async (steps) => {
          const h = await harness();
          for (const [n, s] of steps.entries()) {
            const j = h.jobs[0] as MJob;
            // Keep every amount and the balance within 78 integer digits: a buy that would overflow sells instead.
            let side: Side;
            let units: bigint;
            if (s.side === 'BUY' && j.balance + s.units <= HIGH) {
              side = 'BUY';
              units = s.units;
            } else {
              side = 'SELL';
              const permille = 'permille' in s ? s.permille : 1000;
              units = (j.balance * BigInt(permille)) / 1000n;
              if (units === 0n) {
                side = 'BUY';
                units = 'units' in s ? s.units : LOW + BigInt(n);
              }
            }
            const cmd: Cmd = { kind: 'record', job: 0, side, reason: side === 'BUY' ? 'DCA' : 'TAKE_PROFIT', base: { mode: 'units', units }, quote: units, price: HIGH, at: new Date(Date.UTC(2020, 0, 1, 0, 0, n)).toISOString() };
            const label = `step #${n} ${show(cmd)}`;
            await h.step(cmd, label);
            await h.check(label);
          }
          // Selling one unit more than everything is refused, selling exactly everything leaves 0.
          const all = (h.jobs[0] as MJob).balance;
          await h.step({ kind: 'record', job: 0, side: 'SELL', reason: 'LIQUIDATE', base: { mode: 'over', extra: 1n }, quote: 0n, price: 1n, at: '2021-01-01T00:00:00.000Z' }, 'oversell');
          if (all > 0n) await h.step({ kind: 'record', job: 0, side: 'SELL', reason: 'LIQUIDATE', base: { mode: 'units', units: all }, quote: 0n, price: 1n, at: '2021-01-01T00:00:00.001Z' }, 'sell all');
          await h.check('end');
          assert.equal((await store.jobs.get(h.ref(0))).tokenBalance, '0');
        }),
        { numRuns: sqlite ? 25 : 10 },
      );
    });

    it('the largest amounts: 78 nines . 18 nines, one unit at a time', async () => {
      const h = await harness();
      const max = `${'9'.repeat(78)}.${'9'.repeat(18)}`;
      const r = await store.ledger.recordTrade({ job: h.ref(0), clientOrderId: h.newCoid(), side: 'BUY', reason: 'DCA', baseAmount: max, quoteAmount: max, priceUsd: max, executedAt: '2020-01-01T00:00:00.000Z' });
      assert.equal(r.job.tokenBalance, max);
      assert.equal(r.job.totalAccumulated, max);
      const s = await store.ledger.recordTrade({ job: h.ref(0), clientOrderId: h.newCoid(), side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '0.000000000000000001', quoteAmount: '0', priceUsd: '1', executedAt: '2020-01-01T00:00:00.001Z' });
      assert.equal(s.job.tokenBalance, `${'9'.repeat(78)}.${'9'.repeat(17)}8`);
      const stored = await store.jobs.get(h.ref(0));
      assert.equal(stored.tokenBalance, `${'9'.repeat(78)}.${'9'.repeat(17)}8`);
      assert.equal(stored.totalAccumulated, max);
      const trades = await store.ledger.trades(h.ref(0));
      assert.deepEqual(trades.map((t) => [t.side, t.baseAmount, t.quoteAmount, t.priceUsd]), [
        ['BUY', max, max, max],
        ['SELL', '0.000000000000000001', '0', '1'],
      ]);
      await expectCode(
        store.ledger.recordTrade({ job: h.ref(0), clientOrderId: h.newCoid(), side: 'SELL', reason: 'LIQUIDATE', baseAmount: max, quoteAmount: '0', priceUsd: '1' }),
        'INSUFFICIENT_BALANCE',
        'sell one unit more than held',
      );
      const rest = await store.ledger.recordTrade({ job: h.ref(0), clientOrderId: h.newCoid(), side: 'SELL', reason: 'LIQUIDATE', baseAmount: `${'9'.repeat(78)}.${'9'.repeat(17)}8`, quoteAmount: max, priceUsd: '1' });
      assert.equal(rest.job.tokenBalance, '0');
      assert.equal(rest.job.totalAccumulated, max, 'sells do not change totalAccumulated');
    });
  });
}
