/**
 * Property: a refused command leaves the database byte-for-byte unchanged, on both engines.
 *
 * Each run puts a fresh job into a random state (a random balance, a PENDING intent, a random
 * status), takes a logical dump through the raw driver, issues one random refused command, checks
 * its error code, and compares a second dump with the first. An idempotent replay (a duplicate
 * clientOrderId with the same details) must leave the dump unchanged too.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BotstateError } from '../../src/errors.ts';
import { normalizeAddress } from '../../src/jobs/address.ts';
import type { TradeReason, TradeSide } from '../../src/ledger/ledger.ts';
import { fromUnits } from '../../src/money/decimal.ts';
import type { Store } from '../../src/store/store.ts';
import { ENGINES, tokenAddress, type Fixture } from '../helpers/engines.ts';

const STATUSES = ['IDLE', 'RUNNING', 'PAUSED', 'LIQUIDATING', 'ERROR'] as const;
type Status = (typeof STATUSES)[number];
type Action = 'start' | 'pause' | 'resume' | 'liquidate' | 'completeLiquidation' | 'fail';
/** Issue 2's table, restated: the statuses each action may be taken from. */
const FROM: Record<Action, readonly Status[]> = {
  start: ['IDLE'],
  pause: ['RUNNING'],
  resume: ['PAUSED', 'ERROR'],
  liquidate: ['RUNNING', 'PAUSED', 'ERROR'],
  completeLiquidation: ['LIQUIDATING'],
  fail: STATUSES,
};
/** A transition the table refuses from `status`, or completeLiquidation while tokens are held. */
const refusedActions = (s: Status): Action[] =>
  (Object.keys(FROM) as Action[]).filter((a) => !FROM[a].includes(s) || (a === 'completeLiquidation' && s === 'LIQUIDATING'));

const BAD_AMOUNTS = [
  '1e400', '-1', 'NaN', '0.0000000000000000001', '', ' 1', '1 ', '1,000', '0x10', 'Infinity', '-Infinity', '.5', '5.', '+1',
  '1'.repeat(79), `${'9'.repeat(79)}.5`, '1e-5', '--1', '-0.5', 'abc', '1.2.3', '١٢', '1_000',
];
/** Refused for a base amount only (it must be greater than zero). */
const ZERO_AMOUNTS = ['0', '0.000', '-0', '000'];
const BAD_SETS = [
  'accumulate.dcaAmount=-1', 'accumulate.dcaAmount=1e400', 'accumulate.dcaAmount=NaN', 'accumulate.dcaAmount=abc',
  'accumulate.dcaAmount=0', 'accumulate.dcaAmount=0.0000000000000000001', 'accumulate.dcaAmount=', 'accumulate.dcaAmount',
  'accumulate.dcaAmount=null', 'accumulate.nope=1', 'nosuch.key=1', '=5', 'limits.maxTradesPerHour=1.5',
  'limits.maxTradesPerHour=-1', 'accumulate.dipBuyThreshold=100', 'liquidity.targetRatio=2', 'liquidity.spreadPercent=Infinity',
];
const BAD_CONFIGS: unknown[] = [
  { accumulate: { dcaAmount: 1.5 } }, // a JS float is not exact
  { accumulate: { dcaAmount: '10' } }, // a string where a number is due
  { accumulate: { dcaAmount: -1 } },
  { nosuch: {} },
  { accumulate: { nope: 1 } },
  [1],
  'accumulate',
];

type BaseOp = 'recordTrade' | 'recordIntent' | 'settle';
type Refusal =
  | { readonly kind: 'transition'; readonly action: Action; readonly lowerCase: boolean; readonly withOptions: boolean }
  | { readonly kind: 'unknownToken'; readonly op: 'pause' | 'resume' | 'liquidate' | 'completeLiquidation' | 'fail' | 'configure' | 'updateState' | 'recordTrade' | 'recordIntent' | 'byId' }
  | { readonly kind: 'badAddress'; readonly address: string; readonly op: 'start' | 'pause' | 'recordTrade' | 'configure' }
  | { readonly kind: 'badChecksum'; readonly address: string; readonly op: 'start' | 'pause' | 'recordTrade' }
  | { readonly kind: 'badAmount'; readonly op: BaseOp; readonly field: 'baseAmount' | 'quoteAmount' | 'priceUsd'; readonly value: string | number }
  | { readonly kind: 'badConfig'; readonly op: 'startNew' | 'startExisting' | 'configure'; readonly set: readonly string[]; readonly config: unknown }
  | { readonly kind: 'oversell'; readonly op: 'recordTrade' | 'settle'; readonly extra: bigint }
  | { readonly kind: 'conflict'; readonly op: 'recordTrade' | 'recordPending' | 'recordIntent' | 'settleOther' | 'settleFailed'; readonly change: 'base' | 'side' | 'reason' | 'job' | 'price' }
  | { readonly kind: 'badArgument'; readonly op: 'failBlank' | 'settleBlank' | 'coid' | 'side' | 'reason' | 'executedAt' | 'mode' | 'symbol' | 'chain'; readonly value: string }
  | { readonly kind: 'settleUnknown' }
  | { readonly kind: 'replay'; readonly op: 'recordTrade' | 'recordIntent' | 'settle' };

const hex40 = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => Buffer.from(b).toString('hex'));

/** A mixed-case spelling that fails EIP-55: one letter of the checksummed form with its case flipped. */
const badChecksum = fc
  .tuple(hex40, fc.nat())
  .map(([hex, n]) => {
    const good = normalizeAddress(`0x${hex}`);
    const letters = [...good.slice(2)].map((c, i) => (/[a-fA-F]/.test(c) ? i + 2 : -1)).filter((i) => i >= 0);
    if (letters.length < 2) return undefined;
    const i = letters[n % letters.length] as number;
    const c = good[i] as string;
    const flipped = good.slice(0, i) + (c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase()) + good.slice(i + 1);
    const body = flipped.slice(2);
    return body === body.toLowerCase() || body === body.toUpperCase() ? undefined : flipped;
  })
  .filter((a): a is string => a !== undefined);

const badAddress = fc.oneof(
  hex40.map((h) => `0X${h}`),
  hex40.map((h) => h),
  hex40.map((h) => `0x${h.slice(1)}`),
  hex40.map((h) => `0x${h}0`),
  hex40.map((h) => ` 0x${h}`),
  hex40.map((h) => `0x${h}\n`),
  fc.tuple(hex40, fc.nat({ max: 39 }), fc.constantFrom('g', 'z', ' ', '-', 'é')).map(([h, i, c]) => `0x${h.slice(0, i)}${c}${h.slice(i + 1)}`),
  fc.string({ maxLength: 50 }),
  fc.constantFrom('', '0x', 'base', 'null'),
);

const refusalArb = (status: Status): fc.Arbitrary<Refusal> =>
  fc.oneof(
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('transition' as const), action: fc.constantFrom(...refusedActions(status)), lowerCase: fc.boolean(), withOptions: fc.boolean() }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('unknownToken' as const), op: fc.constantFrom('pause', 'resume', 'liquidate', 'completeLiquidation', 'fail', 'configure', 'updateState', 'recordTrade', 'recordIntent', 'byId') as fc.Arbitrary<Extract<Refusal, { kind: 'unknownToken' }>['op']> }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('badAddress' as const), address: badAddress, op: fc.constantFrom('start', 'pause', 'recordTrade', 'configure') as fc.Arbitrary<'start' | 'pause' | 'recordTrade' | 'configure'> }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('badChecksum' as const), address: badChecksum, op: fc.constantFrom('start', 'pause', 'recordTrade') as fc.Arbitrary<'start' | 'pause' | 'recordTrade'> }) },
    {
      weight: 3,
      arbitrary: fc.oneof(
        fc.record({ kind: fc.constant('badAmount' as const), op: fc.constantFrom<BaseOp>('recordTrade', 'recordIntent', 'settle'), field: fc.constantFrom('baseAmount', 'quoteAmount', 'priceUsd') as fc.Arbitrary<'baseAmount' | 'quoteAmount' | 'priceUsd'>, value: fc.constantFrom<string | number>(...BAD_AMOUNTS, 1.5, 10) }),
        fc.record({ kind: fc.constant('badAmount' as const), op: fc.constantFrom<BaseOp>('recordTrade', 'recordIntent', 'settle'), field: fc.constant('baseAmount' as const), value: fc.constantFrom<string | number>(...ZERO_AMOUNTS) }),
      ),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('badConfig' as const),
        op: fc.constantFrom('startNew', 'startExisting', 'configure') as fc.Arbitrary<'startNew' | 'startExisting' | 'configure'>,
        set: fc.oneof(
          fc.constantFrom(...BAD_SETS).map((s) => [s]),
          fc.constantFrom(...BAD_SETS).map((s) => ['accumulate.dcaAmount=25', s]), // a good value before a bad one is not applied either
        ),
        config: fc.option(fc.constantFrom(...BAD_CONFIGS), { freq: 3 }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('oversell' as const), op: fc.constantFrom('recordTrade', 'settle') as fc.Arbitrary<'recordTrade' | 'settle'>, extra: fc.oneof(fc.constant(1n), fc.bigInt({ min: 1n, max: 10n ** 40n })) }) },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constant('conflict' as const),
        op: fc.constantFrom('recordTrade', 'recordPending', 'recordIntent', 'settleOther', 'settleFailed') as fc.Arbitrary<Extract<Refusal, { kind: 'conflict' }>['op']>,
        change: fc.constantFrom('base', 'side', 'reason', 'job', 'price') as fc.Arbitrary<'base' | 'side' | 'reason' | 'job' | 'price'>,
      }),
    },
    {
      weight: 2,
      arbitrary: fc.oneof(
        fc.record({ kind: fc.constant('badArgument' as const), op: fc.constantFrom('failBlank', 'settleBlank') as fc.Arbitrary<'failBlank' | 'settleBlank'>, value: fc.constantFrom('', ' ', '\t\n') }),
        fc.record({ kind: fc.constant('badArgument' as const), op: fc.constant('coid' as const), value: fc.constantFrom('', 'has space', 'x'.repeat(65), 'é', 'a/b', 'a\nb') }),
        fc.record({ kind: fc.constant('badArgument' as const), op: fc.constant('side' as const), value: fc.constantFrom('HOLD', 'buy', '', 'toString') }),
        fc.record({ kind: fc.constant('badArgument' as const), op: fc.constant('reason' as const), value: fc.constantFrom('FOMO', 'dca', '', 'constructor') }),
        fc.record({ kind: fc.constant('badArgument' as const), op: fc.constant('executedAt' as const), value: fc.constantFrom('2030-01-01', 'yesterday', '2030-01-01T00:00:00Z', '2030-13-01T00:00:00.000Z', '2999-01-01T00:00:00.000Z', '') }),
        fc.record({ kind: fc.constant('badArgument' as const), op: fc.constant('mode' as const), value: fc.constantFrom('HODL', 'accumulate', '') }),
        fc.record({ kind: fc.constant('badArgument' as const), op: fc.constant('symbol' as const), value: fc.constantFrom('', 'has space', 'x'.repeat(33), 'é') }),
        fc.record({ kind: fc.constant('badArgument' as const), op: fc.constant('chain' as const), value: fc.constantFrom('', 'base chain', '-base', 'x'.repeat(40)) }),
      ),
    },
    { weight: 1, arbitrary: fc.constant({ kind: 'settleUnknown' as const }) },
    // An IDLE job's open order is the other job's (see setup): replaying it is not for this job.
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('replay' as const), op: fc.constantFrom(...(status === 'IDLE' ? ['recordTrade', 'settle'] : ['recordTrade', 'recordIntent', 'settle'])) as fc.Arbitrary<'recordTrade' | 'recordIntent' | 'settle'> }) },
  );

const scenarioArb = fc
  .record({ status: fc.constantFrom(...STATUSES), balance: fc.oneof(fc.bigInt({ min: 1n, max: 10n ** 18n }), fc.bigInt({ min: 1n, max: 10n ** 40n })) })
  .chain((s) => refusalArb(s.status).map((refusal) => ({ ...s, refusal })));

const show = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x));

/** The job a run works on, in the state the scenario asked for. */
interface Setup {
  readonly address: string;
  readonly id: string;
  readonly status: Status;
  /** Its balance in units (0 when IDLE: a liquidation sold everything). */
  readonly balance: bigint;
  /** An EXECUTED BUY of `bought` units. */
  readonly executed: { readonly coid: string; readonly base: bigint; readonly quote: string; readonly price: string; readonly side: TradeSide; readonly reason: TradeReason };
  /** The clientOrderId of a PENDING intent (of the other job when IDLE). */
  readonly pending: string;
  /** What that intent asked for. */
  readonly pendingIntent: typeof PENDING_SELL | typeof PENDING_BUY;
  readonly prefix: string;
}

const PENDING_SELL = { side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '0.000000000000000001' } as const;
const PENDING_BUY = { side: 'BUY', reason: 'DCA', quoteAmount: '1' } as const;

let runCounter = 0;

for (const [engineIndex, engine] of ENGINES.entries()) {
  describe(`refusal property [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    let store: Store;
    /** A second job, for clientOrderIds reused across jobs. */
    const otherAddress = tokenAddress(3_000_000 * (engineIndex + 1));
    const seen = new Map<string, number>();

    before(async () => {
      fx = await engine.create();
      store = await fx.open({ actor: 'property' });
      await store.jobs.start({ tokenAddress: otherAddress });
    });
    after(() => fx.cleanup());

    async function setup(status: Status, balance: bigint): Promise<Setup> {
      const run = ++runCounter;
      const prefix = `R${engineIndex}-${run}`;
      const address = tokenAddress(3_000_000 * (engineIndex + 1) + run);
      const ref = { tokenAddress: address };
      const job = await store.jobs.start(ref);
      const executed = { coid: `${prefix}-b`, base: balance, quote: '12.5', price: '0.000000001', side: 'BUY' as const, reason: 'DCA' as const };
      await store.ledger.recordTrade({ job: ref, clientOrderId: executed.coid, side: 'BUY', reason: 'DCA', baseAmount: fromUnits(balance), quoteAmount: executed.quote, priceUsd: executed.price, executedAt: '2020-01-01T00:00:00.000Z' });
      // An open order: a sell of the smallest unit. A job that must end IDLE cannot have one (a
      // liquidation completes only once every order is settled), so its open order is a buy of
      // the other job's.
      const pendingIntent = status === 'IDLE' ? PENDING_BUY : PENDING_SELL;
      await store.ledger.recordIntent({ job: status === 'IDLE' ? { tokenAddress: otherAddress } : ref, clientOrderId: `${prefix}-p`, ...pendingIntent });
      let held = balance;
      if (status === 'PAUSED') await store.jobs.pause(ref);
      if (status === 'ERROR') await store.jobs.fail(ref, 'exchange unreachable');
      if (status === 'LIQUIDATING' || status === 'IDLE') await store.jobs.liquidate(ref);
      if (status === 'IDLE') {
        await store.ledger.recordTrade({ job: ref, clientOrderId: `${prefix}-s`, side: 'SELL', reason: 'LIQUIDATE', baseAmount: fromUnits(balance), quoteAmount: '1', priceUsd: '1' });
        await store.jobs.completeLiquidation(ref);
        held = 0n;
      }
      const now = await store.jobs.get(ref);
      assert.equal(now.status, status);
      assert.equal(now.tokenBalance, fromUnits(held));
      return { address, id: job.id, status, balance: held, executed, pending: `${prefix}-p`, pendingIntent, prefix };
    }

    /**
     * The refused call, not yet made, and the expected error code ('duplicate' for an idempotent
     * replay). The call is a thunk so that a synchronous throw can be told apart from a rejection.
     */
    function issue(s: Setup, r: Refusal): { expected: string; call: () => Promise<unknown> } {
      const ref = { tokenAddress: s.address };
      const fill = { baseAmount: '1', quoteAmount: '1', priceUsd: '1' };
      const trade = (job: { tokenAddress: string } | { id: string }, extra: Record<string, unknown> = {}) =>
        store.ledger.recordTrade({ job, clientOrderId: `${s.prefix}-new`, side: 'BUY', reason: 'DIP_BUY', ...fill, ...extra } as never);
      switch (r.kind) {
        case 'transition': {
          const target = { tokenAddress: r.lowerCase ? s.address.toLowerCase() : normalizeAddress(s.address) };
          const action = r.action;
          const call = () =>
            action === 'start'
              ? store.jobs.start(r.withOptions ? { ...target, mode: 'LIQUIDITY', tokenSymbol: 'NEW', set: ['accumulate.dcaAmount=25'] } : target)
              : action === 'fail'
                ? store.jobs.fail(target, 'boom')
                : store.jobs[action](target);
          return { expected: 'INVALID_TRANSITION', call };
        }
        case 'unknownToken': {
          const missing = { tokenAddress: tokenAddress(9_000_000 + engineIndex) };
          const call = {
            pause: () => store.jobs.pause(missing),
            resume: () => store.jobs.resume(missing),
            liquidate: () => store.jobs.liquidate(missing),
            completeLiquidation: () => store.jobs.completeLiquidation(missing),
            fail: () => store.jobs.fail(missing, 'x'),
            configure: () => store.jobs.configure(missing, { set: ['accumulate.dcaAmount=25'] }),
            updateState: () => store.jobs.updateState(missing, { recentHigh: '1' }),
            recordTrade: () => trade(missing),
            recordIntent: () => store.ledger.recordIntent({ job: missing, clientOrderId: `${s.prefix}-new`, side: 'BUY', reason: 'DCA', quoteAmount: '10' }),
            byId: () => store.jobs.pause({ id: '00000000-0000-7000-8000-000000000000' }),
          }[r.op];
          return { expected: 'JOB_NOT_FOUND', call };
        }
        case 'badAddress':
        case 'badChecksum': {
          const bad = { tokenAddress: r.address };
          const call = {
            start: () => store.jobs.start(bad),
            pause: () => store.jobs.pause(bad),
            recordTrade: () => trade(bad),
            configure: () => store.jobs.configure(bad, { set: ['accumulate.dcaAmount=25'] }),
          }[r.op];
          return { expected: r.kind === 'badAddress' ? 'INVALID_ADDRESS' : 'INVALID_CHECKSUM', call };
        }
        case 'badAmount': {
          const amounts = { ...fill, [r.field]: r.value };
          const call = () =>
            r.op === 'recordTrade'
              ? trade(ref, amounts)
              : r.op === 'recordIntent'
                ? store.ledger.recordIntent({ job: ref, clientOrderId: `${s.prefix}-new`, side: 'BUY', reason: 'DCA', ...amounts } as never)
                : store.ledger.settle(s.pending, { status: 'EXECUTED', ...amounts } as never);
          return { expected: 'INVALID_AMOUNT', call };
        }
        case 'badConfig': {
          const input = { set: r.set, ...(r.config === null ? {} : { config: r.config }) };
          const call = () =>
            r.op === 'startNew'
              ? store.jobs.start({ tokenAddress: tokenAddress(9_100_000 + engineIndex), ...input })
              : r.op === 'startExisting'
                ? store.jobs.start({ ...ref, ...input })
                : store.jobs.configure(ref, input);
          return { expected: 'INVALID_CONFIG', call };
        }
        case 'oversell': {
          const base = fromUnits(s.balance + r.extra);
          const call = () =>
            r.op === 'recordTrade'
              ? trade(ref, { side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: base })
              : s.pendingIntent.side === 'SELL'
                ? store.ledger.settle(s.pending, { status: 'EXECUTED', baseAmount: base, quoteAmount: '1', priceUsd: '1' })
                : trade(ref, { side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: base }); // a buy's fill cannot oversell
          // A sell intent held back at most the balance: a fill beyond it is more than it asked for.
          return { expected: r.op === 'settle' && s.pendingIntent.side === 'SELL' ? 'INVALID_AMOUNT' : 'INSUFFICIENT_BALANCE', call };
        }
        case 'conflict': {
          const e = s.executed;
          const c = r.change;
          const detail = {
            job: c === 'job' ? { tokenAddress: otherAddress } : ref,
            side: c === 'side' ? 'SELL' : e.side,
            reason: c === 'reason' ? 'DIP_BUY' : e.reason,
            baseAmount: fromUnits(e.base + (c === 'base' ? 1n : 0n)),
            quoteAmount: e.quote,
            priceUsd: c === 'price' ? '0.000000002' : e.price,
          } as const;
          let call: () => Promise<unknown>;
          switch (r.op) {
            case 'recordTrade':
              call = () => store.ledger.recordTrade({ ...detail, clientOrderId: e.coid });
              break;
            case 'recordPending': // the PENDING intent's id, reported as executed
              call = () => store.ledger.recordTrade({ ...detail, job: ref, side: 'SELL', reason: 'TAKE_PROFIT', clientOrderId: s.pending });
              break;
            case 'recordIntent': // an intent under an id already used for another order
              call = () => store.ledger.recordIntent({ job: c === 'job' ? { tokenAddress: otherAddress } : ref, side: 'SELL', reason: e.reason, baseAmount: '1', clientOrderId: e.coid });
              break;
            case 'settleOther':
              call = () => store.ledger.settle(e.coid, { status: 'EXECUTED', baseAmount: fromUnits(e.base + 1n), quoteAmount: e.quote, priceUsd: e.price });
              break;
            case 'settleFailed':
              call = () => store.ledger.settle(e.coid, { status: 'FAILED', error: 'too late' });
              break;
          }
          return { expected: 'DUPLICATE_ORDER', call };
        }
        case 'badArgument': {
          const v = r.value;
          const call = {
            failBlank: () => store.jobs.fail(ref, v),
            settleBlank: () => store.ledger.settle(s.pending, { status: 'FAILED', error: v }),
            coid: () => store.ledger.recordTrade({ job: ref, clientOrderId: v, side: 'BUY', reason: 'DCA', ...fill }),
            side: () => trade(ref, { side: v }),
            reason: () => trade(ref, { reason: v }),
            executedAt: () => trade(ref, { executedAt: v }),
            mode: () => store.jobs.start({ tokenAddress: tokenAddress(9_200_000 + engineIndex), mode: v as never }),
            symbol: () => store.jobs.start({ tokenAddress: tokenAddress(9_200_000 + engineIndex), tokenSymbol: v }),
            chain: () => store.jobs.start({ tokenAddress: s.address, chain: v }),
          }[r.op];
          return { expected: 'INVALID_ARGUMENT', call };
        }
        case 'settleUnknown':
          return { expected: 'TRADE_NOT_FOUND', call: () => store.ledger.settle(`${s.prefix}-unknown`, { status: 'FAILED', error: 'x' }) };
        case 'replay': {
          const e = s.executed;
          const call = {
            recordTrade: () => store.ledger.recordTrade({ job: ref, clientOrderId: e.coid, side: e.side, reason: e.reason, baseAmount: fromUnits(e.base), quoteAmount: e.quote, priceUsd: e.price }),
            recordIntent: () => store.ledger.recordIntent({ job: ref, clientOrderId: s.pending, ...s.pendingIntent }),
            settle: () => store.ledger.settle(e.coid, { status: 'EXECUTED', baseAmount: fromUnits(e.base), quoteAmount: e.quote, priceUsd: e.price }),
          }[r.op];
          return { expected: 'duplicate', call };
        }
      }
    }

    it('a refused command leaves the dump byte-for-byte unchanged', async () => {
      await fc.assert(
        fc.asyncProperty(scenarioArb, async ({ status, balance, refusal }) => {
          const s = await setup(status, balance);
          const before = await fx.dump();
          const { expected, call } = issue(s, refusal);
          let result: unknown;
          let error: unknown;
          try {
            // A synchronous throw counts as a refusal here; 'refusals reject' below checks the form.
            result = await call();
          } catch (e) {
            error = e;
          }
          const label = `${show(refusal)} on a ${status} job holding ${fromUnits(s.balance)}`;
          if (expected === 'duplicate') {
            assert.equal(error, undefined, `${label}: ${String(error)}`);
            assert.equal((result as { duplicate: boolean }).duplicate, true, `${label}: not reported as a duplicate`);
          } else {
            assert.ok(error instanceof BotstateError, `${label}: expected ${expected}, got ${error === undefined ? `success ${show(result)}` : String(error)}`);
            assert.equal(error.code, expected, `${label}: ${error.message}`);
          }
          seen.set(refusal.kind, (seen.get(refusal.kind) ?? 0) + 1);
          const afterDump = await fx.dump();
          if (afterDump !== before) {
            // Show the first differing line rather than two dumps of the whole database.
            const a = before.split('\n');
            const b = afterDump.split('\n');
            const i = a.findIndex((line, k) => line !== b[k]);
            assert.fail(`${label}: the database changed at dump line ${i}:\n- ${a[i]}\n+ ${b[i]}`);
          }
        }),
        { numRuns: engine.name === 'sqlite' ? 50 : 20 },
      );
      assert.ok(seen.size >= 5, `too few kinds of refusal exercised: ${show([...seen])}`);
    });

    // Every kind of refusal at least once per engine, whatever the random runs drew.
    it('each kind of refusal, once', async () => {
      const kinds: Array<[Status, Refusal]> = [
        ['RUNNING', { kind: 'transition', action: 'start', lowerCase: true, withOptions: true }],
        ['LIQUIDATING', { kind: 'transition', action: 'completeLiquidation', lowerCase: false, withOptions: false }],
        ['IDLE', { kind: 'transition', action: 'pause', lowerCase: false, withOptions: false }],
        ['RUNNING', { kind: 'unknownToken', op: 'recordTrade' }],
        ['RUNNING', { kind: 'badAddress', address: '0xbbd9aDe16525acb4B336b6dAd3b9762901522B0', op: 'start' }],
        ['RUNNING', { kind: 'badChecksum', address: '0xbbd9aDe16525acb4B336b6dAd3b9762901522b07', op: 'start' }],
        ['RUNNING', { kind: 'badAmount', op: 'recordTrade', field: 'baseAmount', value: '1e400' }],
        ['RUNNING', { kind: 'badAmount', op: 'recordTrade', field: 'quoteAmount', value: '-1' }],
        ['RUNNING', { kind: 'badAmount', op: 'settle', field: 'priceUsd', value: 'NaN' }],
        ['RUNNING', { kind: 'badAmount', op: 'recordIntent', field: 'baseAmount', value: '0.0000000000000000001' }],
        ['IDLE', { kind: 'badConfig', op: 'startExisting', set: ['accumulate.dcaAmount=25', 'accumulate.dcaAmount=1e400'], config: null }],
        ['PAUSED', { kind: 'badConfig', op: 'configure', set: [], config: { accumulate: { dcaAmount: 1.5 } } }],
        ['RUNNING', { kind: 'badConfig', op: 'startNew', set: ['accumulate.dcaAmount=NaN'], config: null }],
        ['ERROR', { kind: 'oversell', op: 'recordTrade', extra: 1n }],
        ['RUNNING', { kind: 'oversell', op: 'settle', extra: 10n ** 40n }],
        ['RUNNING', { kind: 'conflict', op: 'recordTrade', change: 'base' }],
        ['RUNNING', { kind: 'conflict', op: 'recordTrade', change: 'job' }],
        ['RUNNING', { kind: 'conflict', op: 'recordPending', change: 'price' }],
        ['RUNNING', { kind: 'conflict', op: 'recordIntent', change: 'side' }],
        ['RUNNING', { kind: 'conflict', op: 'settleOther', change: 'base' }],
        ['RUNNING', { kind: 'conflict', op: 'settleFailed', change: 'base' }],
        ['ERROR', { kind: 'badArgument', op: 'failBlank', value: ' ' }],
        ['RUNNING', { kind: 'badArgument', op: 'coid', value: 'has space' }],
        ['RUNNING', { kind: 'settleUnknown' }],
        ['RUNNING', { kind: 'replay', op: 'recordTrade' }],
        ['RUNNING', { kind: 'replay', op: 'settle' }],
        ['PAUSED', { kind: 'replay', op: 'recordIntent' }],
      ];
      for (const [status, refusal] of kinds) {
        const s = await setup(status, 10n ** 18n + 1n);
        const before = await fx.dump();
        const { expected, call } = issue(s, refusal);
        const label = show(refusal);
        if (expected === 'duplicate') {
          assert.equal(((await call()) as { duplicate: boolean }).duplicate, true, label);
        } else {
          // Promise.resolve().then(call): a synchronous throw is a rejection here too.
          await assert.rejects(Promise.resolve().then(call), (e: unknown) => e instanceof BotstateError && e.code === expected, label);
        }
        assert.equal(await fx.dump(), before, `${label}: the database changed`);
      }
    });

    // A method that returns a promise must report a refusal by rejecting it: a caller writing
    // `store.jobs.fail(ref, reason).catch(handle)` must not get an exception thrown at the call.
    it('refusals reject the returned promise, never throw synchronously', async () => {
      const s = await setup('RUNNING', 1n);
      const cases: Refusal[] = [
        { kind: 'badArgument', op: 'failBlank', value: ' ' },
        { kind: 'badArgument', op: 'settleBlank', value: '' },
        { kind: 'badArgument', op: 'coid', value: 'has space' },
        { kind: 'badAmount', op: 'recordTrade', field: 'baseAmount', value: '1e400' },
        { kind: 'badAmount', op: 'settle', field: 'baseAmount', value: '-1' },
        { kind: 'badConfig', op: 'configure', set: ['accumulate.dcaAmount=NaN'], config: null },
        { kind: 'badConfig', op: 'startNew', set: ['accumulate.dcaAmount=NaN'], config: null },
        { kind: 'badAddress', address: '0x1', op: 'pause' },
        { kind: 'badAddress', address: '0x1', op: 'start' },
        { kind: 'transition', action: 'resume', lowerCase: false, withOptions: false },
      ];
      const synchronous: string[] = [];
      for (const refusal of cases) {
        const { expected, call } = issue(s, refusal);
        let returned: unknown;
        try {
          returned = call();
        } catch (e) {
          synchronous.push(`${show(refusal)} threw ${e instanceof BotstateError ? e.code : String(e)} synchronously`);
          continue;
        }
        assert.ok(returned instanceof Promise, show(refusal));
        await assert.rejects(returned, (e: unknown) => e instanceof BotstateError && e.code === expected, show(refusal));
      }
      assert.deepEqual(synchronous, []);
    });
  });
}
