import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, test } from 'node:test';
import type { Job } from '../../src/jobs/job-rows.ts';
import { amountsDisagree, type RecordTradeInput, type Trade } from '../../src/ledger/ledger.ts';
import { isBotstateError } from '../../src/errors.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { rejectsWith } from '../helpers/assert.ts';
import { ENGINES, TOKEN, tokenAddress, type Fixture } from '../helpers/engines.ts';


const BIG = '123456789012345678901234567890123456789012345678901234567890123456789012345678.123456789012345678';

for (const engine of ENGINES) {
  describe(`ledger [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    let store: Store;
    let job: Job;
    const buy = (clientOrderId: string, baseAmount: string, extra: Partial<RecordTradeInput> = {}): RecordTradeInput => ({
      job: { id: job.id },
      clientOrderId,
      side: 'BUY',
      reason: 'DCA',
      baseAmount,
      quoteAmount: '10',
      priceUsd: '0.0081',
      ...extra,
    });
    beforeEach(async () => {
      fx = await engine.create();
      store = await fx.open({ actor: 'test' });
      job = await store.jobs.start({ tokenAddress: TOKEN });
    });
    afterEach(() => fx.cleanup());

    it('records an executed buy and updates the job in the same transaction', async () => {
      const executedAt = '2026-11-22T09:00:00.123Z';
      const r = await store.ledger.recordTrade(buy('o-1', '1234.000000000000000001', { executedAt, txHash: '0xabc' }));
      assert.equal(r.duplicate, false);
      assert.equal(r.trade.status, 'EXECUTED');
      assert.equal(r.trade.baseAmount, '1234.000000000000000001');
      assert.equal(r.trade.txHash, '0xabc');
      assert.equal(r.job.tokenBalance, '1234.000000000000000001');
      assert.equal(r.job.totalAccumulated, '10');
      assert.equal(r.job.lastDcaBuyTime, executedAt);
      const stored = await store.jobs.get({ id: job.id });
      assert.deepEqual(stored, r.job);
      assert.deepEqual(await store.ledger.trades({ id: job.id }), [r.trade]);
      assert.deepEqual(await store.ledger.get('o-1'), r.trade);
    });

    it('is idempotent on clientOrderId: a repeat changes nothing, a conflicting repeat is refused', async () => {
      await store.ledger.recordTrade(buy('o-1', '5'));
      const other = await store.jobs.start({ tokenAddress: tokenAddress(2), tokenSymbol: 'OTH' });
      const before = await fx.dump();
      const again = await store.ledger.recordTrade(buy('o-1', '5.000'));
      assert.equal(again.duplicate, true);
      assert.equal(again.job.tokenBalance, '5');
      assert.equal(await fx.dump(), before);
      // The refusal says what differs, with both values.
      const said = async (input: RecordTradeInput) => String((await rejectsWith(store.ledger.recordTrade(input), 'DUPLICATE_ORDER'))['message']);
      assert.equal(await said(buy('o-1', '6')), 'clientOrderId o-1 is already recorded (EXECUTED BUY), and this record differs in the base amount (5, not 6)');
      assert.equal(
        await said(buy('o-1', '5', { side: 'SELL', reason: 'TAKE_PROFIT' })),
        'clientOrderId o-1 is already recorded (EXECUTED BUY), and this record differs in the side (BUY, not SELL), the reason (DCA, not TAKE_PROFIT)',
      );
      assert.match(await said(buy('o-1', '5', { job: { id: other.id } })), /^clientOrderId o-1 is already recorded \(EXECUTED BUY\), and this record differs in the job \(\S+ 0x\w+ on base, not OTH 0x\w+ on base\)$/);
      // A transaction hash or exchange order id given both times must match; one given only once is no conflict.
      await store.ledger.recordTrade(buy('o-2', '5', { txHash: '0xaa', exchangeOrderId: 'x-1' }));
      const withRefs = await fx.dump();
      assert.equal((await store.ledger.recordTrade(buy('o-2', '5'))).duplicate, true);
      assert.equal((await store.ledger.recordTrade(buy('o-2', '5', { txHash: '0xaa' }))).duplicate, true);
      await rejectsWith(store.ledger.recordTrade(buy('o-2', '5', { txHash: '0xbb' })), 'DUPLICATE_ORDER');
      await rejectsWith(store.ledger.recordTrade(buy('o-2', '5', { exchangeOrderId: 'x-2' })), 'DUPLICATE_ORDER');
      assert.equal(await fx.dump(), withRefs);
    });

    it('keeps 78-digit amounts with 18 decimals exact', async () => {
      await store.ledger.recordTrade(buy('o-1', BIG, { quoteAmount: BIG }));
      await store.ledger.recordTrade(buy('o-2', '0.000000000000000001', { reason: 'DIP_BUY' }));
      const j = await store.jobs.get({ id: job.id });
      assert.equal(j.tokenBalance, '123456789012345678901234567890123456789012345678901234567890123456789012345678.123456789012345679');
      assert.equal(j.totalAccumulated, '123456789012345678901234567890123456789012345678901234567890123456789012345688.123456789012345678');
      await store.ledger.recordTrade({ ...buy('o-3', BIG), side: 'SELL', reason: 'TAKE_PROFIT' });
      assert.equal((await store.jobs.get({ id: job.id })).tokenBalance, '0.000000000000000001');
      // A buy that would take a total past 78 integer digits is refused: no sell of it could be placed.
      const nines = '9'.repeat(78);
      await store.ledger.recordTrade(buy('o-3b', '1', { reason: 'DIP_BUY' }));
      const before = await fx.dump();
      const balance = await rejectsWith(store.ledger.recordTrade(buy('o-4', nines, { quoteAmount: '1' })), 'INVALID_AMOUNT');
      assert.equal(balance['message'], `baseAmount ${nines} would take the tokenBalance of job ${job.id} to 79 integer digits; at most 78 are allowed`);
      const total = await rejectsWith(store.ledger.recordTrade(buy('o-5', '1', { quoteAmount: nines })), 'INVALID_AMOUNT');
      assert.equal(total['message'], `quoteAmount ${nines} would take the totalAccumulated of job ${job.id} to 79 integer digits; at most 78 are allowed`);
      assert.equal(await fx.dump(), before);
      const { trade } = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '1' });
      const pending = await fx.dump();
      await rejectsWith(store.ledger.settle(trade.clientOrderId, { status: 'EXECUTED', baseAmount: nines, quoteAmount: '1', priceUsd: '1' }), 'INVALID_AMOUNT');
      assert.equal(await fx.dump(), pending);
    });

    it('tradePages gives the trades a page at a time, oldest first, of a status if asked', async () => {
      await store.transaction(async () => {
        for (let i = 0; i < 2100; i++) await store.ledger.recordTrade(buy(`p-${i}`, '1'));
      });
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'p-open', side: 'BUY', reason: 'DCA', quoteAmount: '1' });
      const all = await store.ledger.trades({ id: job.id });
      const pages: Trade[][] = [];
      for await (const page of store.ledger.tradePages({ id: job.id })) pages.push(page);
      assert.deepEqual(pages.map((p) => p.length), [2000, 101]);
      assert.deepEqual(pages.flat(), all);
      const pending: Trade[] = [];
      for await (const page of store.ledger.tradePages({ id: job.id }, { status: 'PENDING' })) pending.push(...page);
      assert.deepEqual(pending.map((t) => t.clientOrderId), ['p-open']);
      await assert.rejects(store.ledger.tradePages({ id: job.id }, { status: 'pending' as never }).next(), (e: { code?: string; hint?: string }) => e.code === 'INVALID_ARGUMENT' && e.hint === "write it in capitals: 'PENDING'");
      await assert.rejects(store.ledger.tradePages({ id: 'nope' }).next(), (e: { code?: string }) => e.code === 'JOB_NOT_FOUND');
    });

    it('refuses a sell beyond the balance and bad amounts, changing nothing', async () => {
      await store.ledger.recordTrade(buy('o-1', '5'));
      const before = await fx.dump();
      await rejectsWith(store.ledger.recordTrade({ ...buy('s-1', '5.000000000000000001'), side: 'SELL', reason: 'TAKE_PROFIT' }), 'INSUFFICIENT_BALANCE');
      for (const bad of ['1e400', '-1', 'NaN', '0.0000000000000000001', '', ' 1', '0', '1,5']) {
        await rejectsWith(store.ledger.recordTrade(buy('b-1', bad)), 'INVALID_AMOUNT');
      }
      await rejectsWith(store.ledger.recordTrade(buy('b-2', '1', { priceUsd: '1e3' })), 'INVALID_AMOUNT');
      // A price of 0 is a missing price (it would value the position at nothing).
      const noPrice = await rejectsWith(store.ledger.recordTrade(buy('b-2', '1', { priceUsd: '0.000' })), 'INVALID_AMOUNT');
      assert.equal(noPrice['message'], 'priceUsd must be greater than 0, got 0');
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'i-1', side: 'BUY', reason: 'DCA', quoteAmount: '10', priceUsd: '0' }), 'INVALID_AMOUNT');
      // Sized in quote alone, an intent for 0 is an order for nothing.
      const nothing = await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'i-2', side: 'BUY', reason: 'DCA', quoteAmount: '0' }), 'INVALID_AMOUNT');
      assert.equal(nothing['message'], 'quoteAmount must be greater than 0, got 0');
      await rejectsWith(store.ledger.recordTrade(buy('has space', '1')), 'INVALID_ARGUMENT');
      // A URL path cannot carry `.` or `..` (`/orders/..` is `/`): no exchange could be asked about them.
      for (const dots of ['.', '..']) {
        await assert.rejects(store.ledger.recordTrade(buy(dots, '1')), (e: { code?: string; hint?: string }) => e.code === 'INVALID_ARGUMENT' && /not \. or \.\. alone/.test(e.hint ?? ''));
        await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: dots, side: 'BUY', reason: 'DCA', quoteAmount: '10' }), 'INVALID_ARGUMENT');
      }
      await rejectsWith(store.ledger.recordTrade(buy('b-3', '1', { side: 'HOLD' as never })), 'INVALID_ARGUMENT');
      await rejectsWith(store.ledger.recordTrade(buy('b-4', '1', { executedAt: 'yesterday' })), 'INVALID_ARGUMENT');
      // Date.parse rolls these over; PostgreSQL would store another instant than the one hashed, or refuse it.
      for (const executedAt of ['2026-01-01T24:00:00.000Z', '2026-02-30T00:00:00.000Z', '2026-01-01T00:00:60.000Z']) {
        await rejectsWith(store.ledger.recordTrade(buy('b-4', '1', { executedAt })), 'INVALID_ARGUMENT');
      }
      await rejectsWith(store.ledger.recordTrade(buy('b-5', '1', { job: { id: 'nope' } })), 'JOB_NOT_FOUND');
      // A fill dated in the future (a typo in the year) would hold the job's DCA buys back until then.
      const future = await rejectsWith(store.ledger.recordTrade(buy('b-6', '1', { executedAt: '2999-01-01T00:00:00.000Z' })), 'INVALID_ARGUMENT');
      assert.equal(future['message'], 'executedAt 2999-01-01T00:00:00.000Z is in the future');
      const asDate = await rejectsWith(store.ledger.recordTrade(buy('b-7', '1', { executedAt: new Date() as never })), 'INVALID_ARGUMENT');
      assert.equal(asDate['message'], 'executedAt must be an ISO 8601 UTC time string with milliseconds, got a Date object');
      // Values of other types whose text would pass (from callers without types): refused, not
      // stored as other text than returned and audited.
      const numeric = await rejectsWith(store.ledger.recordTrade(buy('b-9', '1', { exchangeOrderId: 8389765904 as never })), 'INVALID_ARGUMENT');
      assert.equal(numeric['message'], 'exchangeOrderId must be a string, got the number 8389765904');
      await rejectsWith(store.ledger.recordTrade(buy('b-9', '1', { txHash: 42 as never })), 'INVALID_ARGUMENT');
      await rejectsWith(store.ledger.recordTrade(buy('b-9', '1', { side: ['BUY'] as never })), 'INVALID_ARGUMENT');
      await rejectsWith(store.ledger.recordTrade(buy('b-9', '1', { reason: { toString: () => 'DCA' } as never })), 'INVALID_ARGUMENT');
      await rejectsWith(store.jobs.start({ tokenAddress: '0x00000000000000000000000000000000000000b9', tokenSymbol: 5 as never }), 'INVALID_ARGUMENT');
      // What was wrong is named with its type: 42 is not "42", and an object is not [object Object].
      const numericId = await rejectsWith(store.ledger.recordTrade(buy(42 as never, '1')), 'INVALID_ARGUMENT');
      assert.equal(numericId['message'], 'clientOrderId must be a string, got the number 42');
      const unnamed = await rejectsWith(store.ledger.recordTrade(buy('b-9', '1', { job: { id: 5 } as never })), 'INVALID_ARGUMENT');
      assert.equal(unnamed['message'], 'a job is named { id } or { tokenAddress, chain? }, each a string, got an object (its id is the number 5)');
      // Capitals are suggested only where they would help.
      await assert.rejects(store.ledger.recordTrade(buy('b-9', '1', { reason: 'dca' as never })), (e: { hint?: string }) => e.hint === "write it in capitals: 'DCA'");
      await assert.rejects(store.ledger.recordTrade(buy('b-9', '1', { reason: 'MANUAL' as never })), (e: { hint?: string }) => /^use one of 'DCA', 'DIP_BUY'/.test(e.hint ?? ''));
      // settle's and recordTrade's scratch is a function of the fill (recordIntent's is the document).
      const notHook = await rejectsWith(store.ledger.recordTrade(buy('b-9', '1'), { scratch: { window: [] } as never }), 'INVALID_ARGUMENT');
      assert.match(String(notHook['message']), /^the scratch option of settle and recordTrade must be a function that returns the scratch document, got an object$/);
      await rejectsWith(store.ledger.settle('o-1', { status: 'FAILED', error: 'x' }, { scratch: 'doc' as never }), 'INVALID_ARGUMENT');
      const notBody = await rejectsWith(store.transaction(null as never), 'INVALID_ARGUMENT');
      assert.equal(notBody['message'], 'store.transaction takes a function, got null');
      // A huge id is not echoed whole.
      const huge = await rejectsWith(store.ledger.recordTrade(buy('x'.repeat(5_000_000), '1')), 'INVALID_ARGUMENT');
      assert.ok(String(huge['message']).length < 200, `${String(huge['message']).length} characters`);
      assert.equal(await fx.dump(), before);
      // A minute ahead is another machine's clock, not a typo.
      const ahead = new Date(Date.now() + 60_000).toISOString();
      assert.equal((await store.ledger.recordTrade(buy('b-8', '1', { executedAt: ahead }))).trade.executedAt, ahead);
      // Three dots are a path segment like any other.
      assert.equal((await store.ledger.recordTrade(buy('...', '1'))).trade.clientOrderId, '...');
    });

    it('every refusal of bad input carries a hint', async () => {
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['lowercase side', () => store.ledger.recordTrade(buy('h-1', '1', { side: 'buy' as never }))],
        ['lowercase reason', () => store.ledger.recordTrade(buy('h-2', '1', { reason: 'dca' as never }))],
        ['lowercase status', () => store.ledger.trades({ id: job.id }, { status: 'pending' as never })],
        ['no input object', () => store.ledger.recordTrade(null as never)],
        ['no state patch', () => store.jobs.updateState({ id: job.id }, null as never)],
        ['unknown job id', () => store.jobs.get({ id: 'nope' })],
      ];
      for (const [what, call] of calls) {
        await assert.rejects(call(), (e: { hint?: string }) => typeof e.hint === 'string' && e.hint.length > 0, what);
      }
    });

    it('an intent stored under "." or ".." before they were refused can still be found and settled', async () => {
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'dots-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      await fx.raw(`UPDATE trades SET client_order_id = '..' WHERE client_order_id = 'dots-1'`);
      assert.deepEqual((await store.ledger.pending()).map((t) => t.clientOrderId), ['..']);
      const settled = await store.ledger.settle('..', { status: 'FAILED', error: 'never sent' });
      assert.equal(settled.trade.status, 'FAILED');
      assert.deepEqual(await store.ledger.pending(), []);
    });

    it('intent then fill: PENDING before the exchange, EXECUTED with the job update after', async () => {
      const intent = await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'job1-000001', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      assert.equal(intent.trade.status, 'PENDING');
      assert.equal(intent.trade.baseAmount, null);
      assert.equal(intent.job.tokenBalance, '0');
      assert.deepEqual((await store.ledger.pending()).map((t) => t.clientOrderId), ['job1-000001']);
      const repeat = await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'job1-000001', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      assert.equal(repeat.duplicate, true);
      // Recorded as a trade while it is open: told to settle it, not to "repeat the original".
      const open = await fx.dump();
      await assert.rejects(
        store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'job1-000001', side: 'BUY', reason: 'DCA', baseAmount: '1234.5', quoteAmount: '9.99', priceUsd: '0.008092' }),
        (e: { code?: string; message?: string; hint?: string }) =>
          e.code === 'DUPLICATE_ORDER' &&
          e.message === `clientOrderId job1-000001 is an open order (a PENDING BUY of job ${job.id}), not an executed trade` &&
          /^settle it with what the exchange filled \(botstate settle job1-000001 --status executed --base N --quote N --price N, or store\.ledger\.settle\)/.test(e.hint ?? ''),
      );
      assert.equal(await fx.dump(), open);
      const filled = await store.ledger.settle('job1-000001', { status: 'EXECUTED', baseAmount: '1234.5', quoteAmount: '9.99', priceUsd: '0.008092', exchangeOrderId: 'X-1' });
      assert.equal(filled.trade.status, 'EXECUTED');
      assert.equal(filled.trade.exchangeOrderId, 'X-1');
      assert.equal(filled.job.tokenBalance, '1234.5');
      assert.equal(filled.job.totalAccumulated, '9.99');
      assert.deepEqual(await store.ledger.pending(), []);
      const before = await fx.dump();
      const again = await store.ledger.settle('job1-000001', { status: 'EXECUTED', baseAmount: '1234.5', quoteAmount: '9.99', priceUsd: '0.008092', exchangeOrderId: 'X-1' });
      assert.equal(again.duplicate, true);
      await rejectsWith(store.ledger.settle('job1-000001', { status: 'FAILED', error: 'rejected' }), 'DUPLICATE_ORDER');
      await rejectsWith(store.ledger.settle('nope', { status: 'FAILED', error: 'x' }), 'TRADE_NOT_FOUND');
      assert.equal(await fx.dump(), before);
      const actions = (await store.history({ id: job.id })).map((e) => `${e.entity}:${e.action}`);
      assert.deepEqual(actions, ['job:create', 'trade:intent', 'trade:settle']);
    });

    it('settle stores the scratch it is given with the fill, from the job and trade as settled', async () => {
      const intent = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const seen: Array<{ balance: string; status: string; version: number }> = [];
      const fill = { status: 'EXECUTED', baseAmount: '4', quoteAmount: '10', priceUsd: '2.5' } as const;
      const settled = await store.ledger.settle(intent.trade.clientOrderId, fill, {
        scratch: ({ job: after, trade }) => {
          seen.push({ balance: after.tokenBalance, status: trade.status, version: after.version });
          return { lastFill: trade.clientOrderId, balance: after.tokenBalance };
        },
      });
      assert.deepEqual(seen, [{ balance: '4', status: 'EXECUTED', version: 3 }]);
      assert.equal(settled.job.version, 3);
      const stored = await store.jobs.get({ id: job.id });
      assert.deepEqual(stored.strategyState, { lastFill: intent.trade.clientOrderId, balance: '4' });
      assert.equal(stored.version, 3, 'the scratch is not a change of its own');
      // A duplicate settlement does not call it; undefined keeps the stored scratch.
      const before = await fx.dump();
      const again = await store.ledger.settle(intent.trade.clientOrderId, fill, { scratch: () => assert.fail('called for a duplicate') });
      assert.equal(again.duplicate, true);
      const second = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      await store.ledger.settle(second.trade.clientOrderId, fill, { scratch: () => undefined });
      assert.deepEqual((await store.jobs.get({ id: job.id })).strategyState, { lastFill: intent.trade.clientOrderId, balance: '4' });
      // A scratch that is not a JSON object is refused, and the settlement with it.
      const third = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const beforeBad = await fx.dump();
      await rejectsWith(store.ledger.settle(third.trade.clientOrderId, fill, { scratch: () => [] as unknown as Record<string, unknown> }), 'INVALID_ARGUMENT');
      assert.equal(await fx.dump(), beforeBad);
      assert.notEqual(before, beforeBad);
    });

    it('recordIntent stores the scratch it is given with the intent, and not for a duplicate', async () => {
      const first = await store.ledger.recordIntent(
        { job: { id: job.id }, clientOrderId: 'i-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' },
        { scratch: { window: ['1.5'] } },
      );
      assert.equal(first.job.version, 2, 'the scratch is not a change of its own');
      assert.deepEqual((await store.jobs.get({ id: job.id })).strategyState, { window: ['1.5'] });
      const again = await store.ledger.recordIntent(
        { job: { id: job.id }, clientOrderId: 'i-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' },
        { scratch: { window: ['9'] } },
      );
      assert.equal(again.duplicate, true);
      assert.deepEqual((await store.jobs.get({ id: job.id })).strategyState, { window: ['1.5'] });
      // A refused intent stores nothing, its scratch included.
      const before = await fx.dump();
      await rejectsWith(
        store.ledger.recordIntent({ job: { id: job.id }, side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '1' }, { scratch: { window: ['2'] } }),
        'INSUFFICIENT_BALANCE',
      );
      await rejectsWith(
        store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }, { scratch: { big: 'x'.repeat(70_000) } }),
        'INVALID_ARGUMENT',
      );
      assert.equal(await fx.dump(), before);
    });

    it('derives a deterministic clientOrderId from the job and its sequence number', async () => {
      const first = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      assert.equal(first.trade.clientOrderId, `${job.id}-2`);
      assert.equal(first.job.version, 2);
      await store.ledger.settle(first.trade.clientOrderId, { status: 'EXECUTED', baseAmount: '4', quoteAmount: '10', priceUsd: '2.5' });
      const second = await store.ledger.recordIntent({ job: { id: job.id }, side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '1' });
      assert.equal(second.trade.clientOrderId, `${job.id}-4`);
    });

    it('refuses an order for a job that is not trading, and a sell beyond the balance, changing nothing', async () => {
      await store.ledger.recordTrade(buy('o-1', '5'));
      const before = await fx.dump();
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '5.1' }), 'INSUFFICIENT_BALANCE');
      await store.jobs.pause({ id: job.id });
      const paused = await fx.dump();
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }), 'INVALID_TRANSITION');
      await store.jobs.liquidate({ id: job.id });
      const liquidating = await fx.dump();
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }), 'INVALID_TRANSITION');
      assert.equal(await fx.dump(), liquidating);
      const sell = await store.ledger.recordIntent({ job: { id: job.id }, side: 'SELL', reason: 'LIQUIDATE', baseAmount: '5' });
      assert.equal(sell.trade.status, 'PENDING');
      assert.notEqual(before, paused);
    });

    it('a settlement is EXECUTED or FAILED: any other status is refused, changing nothing', async () => {
      const { trade } = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const before = await fx.dump();
      for (const status of ['JUNK', 'executed', undefined]) {
        const refusal = await rejectsWith(store.ledger.settle(trade.clientOrderId, { status, error: 'x', baseAmount: '1', quoteAmount: '10', priceUsd: '10' } as never), 'INVALID_ARGUMENT');
        assert.match(String(refusal['message']), /^a settlement's status must be EXECUTED or FAILED, got /);
      }
      await rejectsWith(store.ledger.settle({} as never, { status: 'FAILED', error: 'x' }), 'INVALID_ARGUMENT');
      await rejectsWith(store.ledger.get({} as never), 'INVALID_ARGUMENT');
      // A filter for a status no trade can have is a mistake, not "no trades".
      await rejectsWith(store.ledger.trades({ id: job.id }, { status: 'JUNK' as never }), 'INVALID_ARGUMENT');
      assert.equal((await store.ledger.trades({ id: job.id }, { status: 'PENDING' })).length, 1);
      // The scratch state is a JSON object, not whatever a toJSON makes of it.
      await rejectsWith(store.jobs.saveScratch({ id: job.id }, new Date(0) as never), 'INVALID_ARGUMENT');
      await rejectsWith(store.jobs.saveScratch({ id: job.id }, { toJSON: () => [1, 2] } as never), 'INVALID_ARGUMENT');
      assert.equal(await fx.dump(), before);
    });

    it('an intent decided under a config that has changed since is refused (decidedWith), changing nothing', async () => {
      const decided = job.config;
      await store.jobs.configure({ id: job.id }, { set: ['accumulate.dcaAmount=1'] });
      const before = await fx.dump();
      const refusal = await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }, { decidedWith: decided }), 'CONCURRENT_MODIFICATION');
      assert.match(String(refusal['message']), /config of job \S+ changed after this order was decided/);
      assert.equal(await fx.dump(), before);
      const current = (await store.jobs.get({ id: job.id })).config;
      assert.equal((await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '1' }, { decidedWith: current })).trade.status, 'PENDING');
    });

    it('input of the wrong shape from a caller without types is INVALID_ARGUMENT, never a TypeError', async () => {
      const before = await fx.dump();
      const calls: Array<[string, () => Promise<unknown>]> = [
        ['recordTrade(null)', () => store.ledger.recordTrade(null as never)],
        ['recordIntent(null)', () => store.ledger.recordIntent(null as never)],
        ['settle(id, null)', () => store.ledger.settle('o-1', null as never)],
        ['trades(ref, null)', () => store.ledger.trades({ id: job.id }, null as never)],
        ['jobs.start(null)', () => store.jobs.start(null as never)],
        ['jobs.start("0x…")', () => store.jobs.start(TOKEN as never)],
        ['jobs.configure(ref, null)', () => store.jobs.configure({ id: job.id }, null as never)],
        ['jobs.list(null)', () => store.jobs.list(null as never)],
        ['openStore(5)', () => openStore(5 as never)],
        ['openStore(url, null)', () => openStore(fx.url, null as never)],
      ];
      for (const [what, call] of calls) {
        const refusal = await rejectsWith(call(), 'INVALID_ARGUMENT').catch((e: Error) => assert.fail(`${what}: ${e.message}`));
        assert.ok(String(refusal['message']).length > 0, what);
      }
      assert.equal(await fx.dump(), before);
    });

    it('trades and history take a window: since a time, and only the last N, oldest first; a bad one is refused', async () => {
      const times: string[] = [];
      for (let i = 1; i <= 5; i++) {
        const { trade } = await store.ledger.recordTrade(buy(`win-${i}`, String(i)));
        times.push(trade.createdAt);
        while (new Date().toISOString() === trade.createdAt) await new Promise((r) => setTimeout(r, 1));
      }
      const ids = (ts: Array<{ clientOrderId: string }>) => ts.map((t) => t.clientOrderId);
      assert.deepEqual(ids(await store.ledger.trades({ id: job.id }, { limit: 2 })), ['win-4', 'win-5']);
      assert.deepEqual(ids(await store.ledger.trades({ id: job.id }, { since: times[2]! })), ['win-3', 'win-4', 'win-5']);
      assert.deepEqual(ids(await store.ledger.trades({ id: job.id }, { since: times[1]!, limit: 1, status: 'EXECUTED' })), ['win-5']);
      assert.deepEqual(ids(await store.ledger.trades({ id: job.id }, { limit: 100 })), ['win-1', 'win-2', 'win-3', 'win-4', 'win-5']);
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'win-open', side: 'BUY', reason: 'DCA', quoteAmount: '1' });
      assert.deepEqual(ids(await store.ledger.trades({ id: job.id }, { status: 'PENDING', limit: 1 })), ['win-open']);
      const all = await store.history({ id: job.id });
      const last = await store.history({ id: job.id }, { limit: 2 });
      assert.deepEqual(last, all.slice(-2));
      assert.deepEqual(await store.history({ id: job.id }, { since: all[3]!.at }), all.filter((e) => e.at >= all[3]!.at));
      const before = await fx.dump();
      for (const bad of [{ limit: 0 }, { limit: 1.5 }, { limit: '5' }, { since: 'yesterday' }, { since: new Date() }]) {
        await rejectsWith(store.ledger.trades({ id: job.id }, bad as never), 'INVALID_ARGUMENT');
        await rejectsWith(store.history({ id: job.id }, bad as never), 'INVALID_ARGUMENT');
      }
      assert.equal(await fx.dump(), before);
    });

    it('refuses a field it does not know in an input, filter or options object, naming the one meant; nothing is written', async () => {
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'u-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const before = await fx.dump();
      const fill = { baseAmount: '5', quoteAmount: '10', priceUsd: '2' };
      const calls: Array<[string, () => Promise<unknown>, RegExp]> = [
        ['recordTrade', () => store.ledger.recordTrade({ ...buy('u-2', '5'), executedat: '2026-11-01T00:00:00.000Z' } as never), /^there is no field "executedat" in the trade input \(write it executedAt\)$/],
        ['recordIntent', () => store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10', executedAt: 'x' } as never), /^there is no field "executedAt" in the intent input \(its fields are job, clientOrderId, side, reason, baseAmount, quoteAmount, priceUsd\)$/],
        ['settle', () => store.ledger.settle('u-1', { status: 'EXECUTED', ...fill, exchangeOrderID: 'e-1' } as never), /^there is no field "exchangeOrderID" in the EXECUTED settlement \(write it exchangeOrderId\)$/],
        ['settle FAILED', () => store.ledger.settle('u-1', { status: 'FAILED', error: 'x', ...fill } as never), /^there is no field "baseAmount" in the FAILED settlement \(its fields are status, error\)$/],
        ['trades', () => store.ledger.trades({ id: job.id }, { limt: 1 } as never), /^there is no field "limt" in the filter \(its fields are status, since, limit\)$/],
        ['jobs.list', () => store.jobs.list({ stauts: 'RUNNING' } as never), /^there is no field "stauts" in the filter/],
        ['jobs.start', () => store.jobs.start({ tokenAddress: TOKEN, sett: ['accumulate.dcaAmount=25'] } as never), /^there is no field "sett" in the start input/],
        ['jobs.configure', () => store.jobs.configure({ id: job.id }, { Set: ['accumulate.dcaAmount=25'] } as never), /^there is no field "Set" in the configure input \(write it set\)$/],
        ['options', () => store.jobs.pause({ id: job.id }, { acter: 'me' } as never), /^there is no field "acter" in the options/],
        ['history', () => store.history({ id: job.id }, { sinse: '2026-11-01T00:00:00.000Z' } as never), /^there is no field "sinse" in the options/],
        // Refused as a rejection, like every other refusal of a method that returns a promise.
        ['migrate', () => store.migrate({ tO: 1 } as never), /^there is no field "tO" in the options \(write it to\)$/],
        ['rollback', () => store.rollback({ forse: true } as never), /^there is no field "forse" in the options/],
      ];
      for (const [name, call, message] of calls) {
        const e = await call().then(() => undefined, (x: unknown) => x);
        assert.ok(isBotstateError(e, 'INVALID_ARGUMENT'), `${name}: ${String(e)}`);
        assert.match(`${e.message} (${e.hint})`, message, name);
      }
      assert.equal(await fx.dump(), before);
      // null options are no options, as ever.
      assert.equal((await store.jobs.get({ id: job.id }, null as never)).id, job.id);
    });

    it('a retried intent must ask for the same amounts', async () => {
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'i-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const before = await fx.dump();
      assert.equal((await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'i-1', side: 'BUY', reason: 'DCA', quoteAmount: '10.0' })).duplicate, true);
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'i-1', side: 'BUY', reason: 'DCA', quoteAmount: '11' }), 'DUPLICATE_ORDER');
      assert.equal(await fx.dump(), before);
    });

    it('a refused intent with a derived clientOrderId is refused, never merged with the trade that holds the id it would have had', async () => {
      await store.ledger.recordTrade(buy('manual-1', '10'));
      const v = (await store.jobs.get({ id: job.id })).version;
      // Recorded by hand under the id the next intent derives: that intent skips to the one after.
      await store.ledger.recordTrade(buy(`${job.id}-${v + 2}`, '1', { reason: 'TAKE_PROFIT', side: 'BUY' }));
      const a = await store.ledger.recordIntent({ job: { id: job.id }, side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '11' });
      assert.equal(a.duplicate, false);
      const before = await fx.dump();
      // Every token is reserved by A: the same sell again, and a smaller one, are refused for the balance.
      for (const baseAmount of ['11', '1']) {
        await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, side: 'SELL', reason: 'TAKE_PROFIT', baseAmount }), 'INSUFFICIENT_BALANCE');
      }
      // A job that may not buy: refused as such, not answered with a trade that holds the derived id.
      await store.jobs.liquidate({ id: job.id });
      const liquidating = await fx.dump();
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '1' }), 'INVALID_TRANSITION');
      assert.equal(await fx.dump(), liquidating);
      assert.notEqual(before, liquidating);
    });

    it('a repeat of a recorded intent is a repeat even when the config changed since (decidedWith): not refused as undecided', async () => {
      const intent = { job: { id: job.id }, clientOrderId: 'ord-1', side: 'BUY', reason: 'DCA', quoteAmount: '25' } as const;
      await store.ledger.recordIntent(intent, { decidedWith: job.config });
      await store.jobs.configure({ id: job.id }, { set: ['accumulate.dcaAmount=31'] });
      const before = await fx.dump();
      const again = await store.ledger.recordIntent(intent, { decidedWith: job.config });
      assert.equal(again.duplicate, true);
      assert.equal(again.trade.clientOrderId, 'ord-1');
      // A new intent decided under the old config is refused, and said to be unrecorded.
      await rejectsWith(store.ledger.recordIntent({ ...intent, clientOrderId: 'ord-2' }, { decidedWith: job.config }), 'CONCURRENT_MODIFICATION');
      assert.equal(await fx.dump(), before);
    });

    it('a repeat of an intent settled EXECUTED must still ask for the same amounts, which its audit entry keeps', async () => {
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'e-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      // Filled for less than asked: the row holds the fill's amounts, not the intent's.
      await store.ledger.settle('e-1', { status: 'EXECUTED', baseAmount: '4.9', quoteAmount: '9.8', priceUsd: '2' });
      const before = await fx.dump();
      assert.equal((await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'e-1', side: 'BUY', reason: 'DCA', quoteAmount: '10.00' })).duplicate, true);
      for (const other of [{ quoteAmount: '1000' }, { quoteAmount: '9.8' }, { baseAmount: '4.9' }]) {
        await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'e-1', side: 'BUY', reason: 'DCA', ...other }), 'DUPLICATE_ORDER');
      }
      // A trade recorded executed had no intent: an intent under its id repeats it as before.
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'r-1', side: 'BUY', reason: 'DCA', baseAmount: '1', quoteAmount: '2', priceUsd: '2' });
      const recorded = await fx.dump();
      assert.equal((await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'r-1', side: 'BUY', reason: 'DCA', quoteAmount: '5' })).duplicate, true);
      assert.notEqual(recorded, before);
      assert.equal(await fx.dump(), recorded);
    });

    it('a repeat of an intent settled FAILED must still ask for the same amounts', async () => {
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'f-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      await store.ledger.settle('f-1', { status: 'FAILED', error: 'rejected' });
      const before = await fx.dump();
      assert.equal((await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'f-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' })).duplicate, true);
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'f-1', side: 'BUY', reason: 'DCA', quoteAmount: '999' }), 'DUPLICATE_ORDER');
      assert.equal(await fx.dump(), before);
    });

    it('a job row damaged outside botstate is STORAGE_CORRUPT to settle, and pending() refuses a damaged open trade: nothing is written over them', async () => {
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'd-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const p = (n: number) => (engine.name === 'postgres' ? `$${n}` : '?');
      await fx.raw(`UPDATE jobs SET token_balance = '-5' WHERE id = ${p(1)}`, [job.id]);
      const before = await fx.dump();
      await rejectsWith(store.ledger.settle('d-1', { status: 'EXECUTED', baseAmount: '10', quoteAmount: '10', priceUsd: '1' }), 'STORAGE_CORRUPT');
      assert.equal(await fx.dump(), before);
      await fx.raw(`UPDATE jobs SET token_balance = '0' WHERE id = ${p(1)}`, [job.id]);
      await fx.raw(`UPDATE trades SET quote_amount = '-25' WHERE client_order_id = 'd-1'`);
      await rejectsWith(store.ledger.pending(), 'STORAGE_CORRUPT');
    });

    it('the audit log refuses REPLACE as it refuses UPDATE and DELETE', async () => {
      const before = await fx.dump();
      const [row] = (await fx.raw('SELECT id, stream, seq FROM audit_log ORDER BY id LIMIT 1')) as Array<{ id: number; stream: string; seq: number }>;
      const statements =
        engine.name === 'sqlite'
          ? [
              `INSERT OR REPLACE INTO audit_log (id, stream, seq, at, actor, entity, entity_id, action, prev_hash, hash) VALUES (${row!.id}, 'x', 1, 'now', 'mallory', 'job', 'x', 'x', 'x', 'x')`,
              `REPLACE INTO audit_log (stream, seq, at, actor, entity, entity_id, action, prev_hash, hash) VALUES ('${row!.stream}', ${row!.seq}, 'now', 'mallory', 'job', 'x', 'x', 'x', 'x')`,
            ]
          : [
              `INSERT INTO audit_log (stream, seq, at, actor, entity, entity_id, action, prev_hash, hash) VALUES ('${row!.stream}', ${row!.seq}, now(), 'mallory', 'job', 'x', 'x', 'x', 'x') ON CONFLICT (stream, seq) DO UPDATE SET actor = 'mallory'`,
            ];
      for (const sql of statements) {
        await rejectsWith(store.transaction((tx) => tx.run(sql)), 'CONSTRAINT_VIOLATION');
      }
      assert.equal(await fx.dump(), before);
    });

    it('a derived clientOrderId already taken (a trade recorded by hand after a restore, an open intent a skip put above the version) moves on to the next free one', async () => {
      // A restore took the job's sequence back; the orders placed since were recorded by hand
      // under the ids the exchange shows, which are ids the job derives again.
      const v = (await store.jobs.get({ id: job.id })).version;
      const ids = [v + 2, v + 4, v + 6].map((n) => `${job.id}-${n}`);
      for (const [i, coid] of ids.entries()) await store.ledger.recordTrade(buy(coid, String(i + 1)));
      // Version v + 3 now: the next derived id, v + 4, is an EXECUTED trade's. Another job holds v + 7.
      const other = await store.jobs.start({ tokenAddress: `0x${'e'.repeat(40)}` });
      await store.ledger.recordTrade({ ...buy(`${job.id}-${v + 7}`, '1'), job: { id: other.id } });
      const { trade, duplicate } = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      assert.equal(duplicate, false);
      assert.equal(trade.status, 'PENDING');
      assert.equal(trade.clientOrderId, `${job.id}-${v + 8}`, 'above every id of the job, and free');
      await store.ledger.settle(trade.clientOrderId, { status: 'EXECUTED', baseAmount: '4', quoteAmount: '10', priceUsd: '2.5' });
      // Version v + 5: v + 6 is taken too, and the next is above every id of the job again.
      const next = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      assert.equal(next.trade.clientOrderId, `${job.id}-${v + 9}`);
      await store.ledger.settle(next.trade.clientOrderId, { status: 'FAILED', error: 'x' });
      // Open intents side by side: one put above the version by a skip is never merged with a later
      // one once the version catches up (each is a decision of its own).
      const third = await store.jobs.start({ tokenAddress: `0x${'d'.repeat(40)}` });
      await store.ledger.recordTrade({ ...buy(`${third.id}-${third.version + 2}`, '1'), job: { id: third.id } });
      const open = () => store.ledger.recordIntent({ job: { id: third.id }, side: 'BUY', reason: 'DCA', quoteAmount: '5' });
      const a = await open();
      const b = await open();
      const c = await store.ledger.recordIntent({ job: { id: third.id }, side: 'BUY', reason: 'DCA', quoteAmount: '7' });
      assert.deepEqual([a.duplicate, b.duplicate, c.duplicate], [false, false, false]);
      assert.equal(new Set([a.trade.id, b.trade.id, c.trade.id]).size, 3);
      assert.equal(new Set([a, b, c].map((x) => x.trade.clientOrderId)).size, 3);
      for (const x of [a, b, c]) await store.ledger.settle(x.trade.clientOrderId, { status: 'FAILED', error: 'x' });
      // An id given by the caller is never changed.
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: ids[0]!, side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '1' }), 'DUPLICATE_ORDER');
      assert.deepEqual((await store.verifyAudit()).problems, []);
    });

    it('a refused call inside a caller\'s transaction leaves nothing behind, even when the caller commits', async () => {
      await store.ledger.recordTrade(buy('o-1', '5'));
      const before = await fx.dump();
      await store.transaction(async () => {
        await rejectsWith(store.ledger.recordTrade({ ...buy('s-1', '6'), side: 'SELL', reason: 'TAKE_PROFIT' }), 'INSUFFICIENT_BALANCE');
        await rejectsWith(store.ledger.recordTrade(buy('o-1', '7')), 'DUPLICATE_ORDER');
        await rejectsWith(store.jobs.pause({ id: 'no-such-job' }), 'JOB_NOT_FOUND');
      });
      assert.equal(await fx.dump(), before);
      await store.jobs.pause({ id: job.id });
      const paused = await fx.dump();
      await store.transaction(async () => {
        await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }), 'INVALID_TRANSITION');
      });
      assert.equal(await fx.dump(), paused);
    });

    it('an open sell reserves its amount: another sell cannot take it', async () => {
      await store.ledger.recordTrade(buy('o-1', '5'));
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'sell-all', side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '5' });
      const before = await fx.dump();
      await rejectsWith(store.ledger.recordTrade({ ...buy('manual', '1'), side: 'SELL', reason: 'TAKE_PROFIT' }), 'INSUFFICIENT_BALANCE');
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '0.000000000000000001' }), 'INSUFFICIENT_BALANCE');
      assert.equal(await fx.dump(), before);
      const filled = await store.ledger.settle('sell-all', { status: 'EXECUTED', baseAmount: '5', quoteAmount: '12', priceUsd: '2.4' });
      assert.equal(filled.job.tokenBalance, '0');
    });

    it('a settled fill is dated no more than 5 minutes before its intent was recorded (a year typo backwards), changing nothing', async () => {
      const { trade } = await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'early-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const before = await fx.dump();
      const year = new Date(Date.parse(trade.createdAt) - 365 * 86_400_000).toISOString();
      const early = await rejectsWith(store.ledger.settle('early-1', { status: 'EXECUTED', baseAmount: '5', quoteAmount: '10', priceUsd: '2', executedAt: year }), 'INVALID_ARGUMENT');
      assert.equal(early['message'], `executedAt ${year} is before order early-1 was recorded (${trade.createdAt})`);
      const sixMinutes = new Date(Date.parse(trade.createdAt) - 6 * 60_000).toISOString();
      await rejectsWith(store.ledger.settle('early-1', { status: 'EXECUTED', baseAmount: '5', quoteAmount: '10', priceUsd: '2', executedAt: sixMinutes }), 'INVALID_ARGUMENT');
      assert.equal(await fx.dump(), before);
      // Another host's clock a few minutes behind is taken, as one ahead is.
      const fourMinutes = new Date(Date.parse(trade.createdAt) - 4 * 60_000).toISOString();
      const settled = await store.ledger.settle('early-1', { status: 'EXECUTED', baseAmount: '5', quoteAmount: '10', priceUsd: '2', executedAt: fourMinutes });
      assert.equal(settled.trade.executedAt, fourMinutes);
      // recordTrade has no intent: a trade recorded after the fact keeps the time it was made.
      const old = '2020-01-01T00:00:00.000Z';
      assert.equal((await store.ledger.recordTrade(buy('late-entry', '1', { executedAt: old }))).trade.executedAt, old);
    });

    it('a settle fills no more than its intent asked for, in the intent\'s own terms', async () => {
      await store.ledger.recordTrade(buy('o-1', '100'));
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 's-1', side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '60' });
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 's-2', side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '40' });
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'b-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const before = await fx.dump();
      // 100 would take the 40 that s-2 holds back: its fill could then never be recorded.
      const more = await rejectsWith(store.ledger.settle('s-1', { status: 'EXECUTED', baseAmount: '100', quoteAmount: '100', priceUsd: '1' }), 'INVALID_AMOUNT');
      assert.equal(more['message'], "the fill's baseAmount 100 is more than intent s-1 asked for, 60");
      // A buy sized in quote: its quote is what it may spend.
      await rejectsWith(store.ledger.settle('b-1', { status: 'EXECUTED', baseAmount: '1000', quoteAmount: '10.000000000000000001', priceUsd: '0.01' }), 'INVALID_AMOUNT');
      // A buy's tokens are paid for: for nothing is no fill, settled or recorded in one step.
      const free = await rejectsWith(store.ledger.settle('b-1', { status: 'EXECUTED', baseAmount: '1000000', quoteAmount: '0', priceUsd: '1' }), 'INVALID_AMOUNT');
      assert.equal(free['message'], 'quoteAmount 0 pays nothing for the 1000000 tokens of a BUY: a purchase costs more than 0');
      await rejectsWith(store.ledger.recordTrade({ ...buy('free', '5'), quoteAmount: '0' }), 'INVALID_AMOUNT');
      assert.equal(await fx.dump(), before);
      // Less than asked (lot sizes) and exactly what was asked are fills.
      await store.ledger.settle('s-1', { status: 'EXECUTED', baseAmount: '59.5', quoteAmount: '59.5', priceUsd: '1' });
      await store.ledger.settle('s-2', { status: 'EXECUTED', baseAmount: '40', quoteAmount: '40', priceUsd: '1' });
      const filled = await store.ledger.settle('b-1', { status: 'EXECUTED', baseAmount: '1000', quoteAmount: '10', priceUsd: '0.01' });
      assert.equal(filled.job.tokenBalance, '1000.5');
    });

    it('a sell intent sized in quote alone is refused: it could sell any number of tokens, and reserve none', async () => {
      await store.ledger.recordTrade(buy('o-1', '10'));
      const before = await fx.dump();
      const refusal = await rejectsWith(
        store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'q-1', side: 'SELL', reason: 'TAKE_PROFIT', quoteAmount: '8' }),
        'INVALID_AMOUNT',
      );
      assert.match(String(refusal['message']), /a SELL intent needs a baseAmount: how many tokens to sell/);
      assert.equal(await fx.dump(), before);
      // With its baseAmount it is taken, and holds the tokens back.
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'q-2', side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '8' });
      await rejectsWith(store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'q-3', side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '3' }), 'INSUFFICIENT_BALANCE');
    });

    it('an intent with both a baseAmount and a quoteAmount is refused: the order carries one, the other would be ignored', async () => {
      await store.ledger.recordTrade(buy('o-1', '10'));
      const before = await fx.dump();
      for (const side of ['BUY', 'SELL'] as const) {
        const refusal = await rejectsWith(
          store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: `both-${side}`, side, reason: side === 'BUY' ? 'DCA' : 'TAKE_PROFIT', baseAmount: '1', quoteAmount: '10' }),
          'INVALID_AMOUNT',
        );
        assert.equal(refusal['message'], 'an intent gives a baseAmount or a quoteAmount, not both (got 1 and 10)');
      }
      assert.equal(await fx.dump(), before);
    });

    it('a callback scheduled inside a transaction does not run in it after it ended', async () => {
      let later: Promise<unknown> | undefined;
      await store.transaction(async () => {
        await store.jobs.configure({ id: job.id }, { set: ['accumulate.dcaAmount=11'] });
        later = new Promise((resolve, reject) => setTimeout(() => store.jobs.pause({ id: job.id }).then(resolve, reject), 20));
      });
      await later;
      const stored = await (await fx.open()).jobs.get({ id: job.id });
      assert.equal(stored.status, 'PAUSED');
      assert.equal(stored.config.accumulate.dcaAmount, '11');
    });

    it('a failed intent keeps the job unchanged', async () => {
      await store.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'i-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const failed = await store.ledger.settle('i-1', { status: 'FAILED', error: 'insufficient funds' });
      assert.equal(failed.trade.status, 'FAILED');
      assert.equal(failed.trade.error, 'insufficient funds');
      assert.equal(failed.job.tokenBalance, '0');
      assert.deepEqual((await store.ledger.trades({ id: job.id }, { status: 'FAILED' })).map((t) => t.clientOrderId), ['i-1']);
    });

    it('a trade and a transition commit together in store.transaction', async () => {
      await store.ledger.recordTrade(buy('o-1', '5'));
      await store.jobs.liquidate({ id: job.id });
      await store.transaction(async () => {
        await store.ledger.recordTrade({ ...buy('s-1', '5'), side: 'SELL', reason: 'LIQUIDATE' });
        await store.jobs.completeLiquidation({ id: job.id });
      });
      const j = await store.jobs.get({ id: job.id });
      assert.equal(j.status, 'IDLE');
      assert.equal(j.tokenBalance, '0');
    });

    it('concurrent trades on one job from two stores all land, exactly', async () => {
      const other = await fx.open();
      const n = 30;
      await Promise.all(
        Array.from({ length: n }, (_, i) => (i % 2 ? store : other).ledger.recordTrade(buy(`c-${i}`, `0.${String(i + 1).padStart(18, '0')}`))),
      );
      const j = await store.jobs.get({ id: job.id });
      const expected = BigInt((n * (n + 1)) / 2);
      assert.equal(j.tokenBalance, `0.${expected.toString().padStart(18, '0')}`.replace(/0+$/, ''));
      assert.equal(j.version, 1 + n);
      assert.deepEqual((await store.verifyAudit()).problems, []);
    });

    it('a settlement that waited for the job while another committed is answered as settled', { skip: engine.name !== 'postgres' && 'rows are locked only on PostgreSQL' }, async () => {
      // PostgreSQL reads the trade before the job's lock is granted: here it reads it PENDING, waits
      // for the job held by a transaction that then settles the trade, and must not settle again.
      const other = await fx.open();
      const watcher = await fx.open();
      const { trade } = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const fill = { status: 'EXECUTED', baseAmount: '2', quoteAmount: '10', priceUsd: '5' } as const;
      let release!: () => void;
      const held = new Promise<void>((resolve) => (release = resolve));
      let locked!: () => void;
      const isLocked = new Promise<void>((resolve) => (locked = resolve));
      const first = store.transaction(async (tx) => {
        await tx.get('SELECT id FROM jobs WHERE id = ? FOR UPDATE', [job.id]);
        locked();
        await held;
        return store.ledger.settle(trade.clientOrderId, fill);
      });
      await isLocked;
      const second = other.ledger.settle(trade.clientOrderId, fill);
      // Until the second settlement is blocked on the job's row lock.
      const waiting = async () =>
        Number((await watcher.transaction((tx) => tx.get<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")))!.n);
      for (let i = 0; i < 200 && (await waiting()) === 0; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(await waiting(), 1, 'the second settlement never waited for the lock');
      release();
      const [a, b] = await Promise.all([first, second]);
      assert.deepEqual([a.duplicate, b.duplicate], [false, true]);
      assert.equal(b.trade.status, 'EXECUTED');
      assert.equal((await store.jobs.get({ id: job.id })).tokenBalance, '2');
      assert.deepEqual((await store.verifyAudit()).problems, []);
    });

    it('one intent settled from two stores at once is applied once; a different settlement is refused', async () => {
      const other = await fx.open();
      const fill = { status: 'EXECUTED', baseAmount: '2', quoteAmount: '10', priceUsd: '5' } as const;
      for (let round = 0; round < 10; round++) {
        const { trade } = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
        // Both read the PENDING trade before either takes the job's lock (on PostgreSQL, as far as
        // the timing allows): the second must see the first's settlement, not apply its own.
        const same = await Promise.allSettled([store.ledger.settle(trade.clientOrderId, fill), other.ledger.settle(trade.clientOrderId, fill)]);
        assert.deepEqual(same.map((r) => r.status), ['fulfilled', 'fulfilled']);
        const duplicates = same.map((r) => (r as PromiseFulfilledResult<{ duplicate: boolean }>).value.duplicate).sort();
        assert.deepEqual(duplicates, [false, true]);

        const next = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
        const differ = await Promise.allSettled([
          store.ledger.settle(next.trade.clientOrderId, fill),
          other.ledger.settle(next.trade.clientOrderId, { status: 'FAILED', error: 'rejected' }),
        ]);
        assert.equal(differ.filter((r) => r.status === 'fulfilled').length, 1);
        const refused = differ.find((r) => r.status === 'rejected') as PromiseRejectedResult;
        assert.equal((refused.reason as { code?: string }).code, 'DUPLICATE_ORDER');
      }
      const trades = await store.ledger.trades({ id: job.id });
      const executed = trades.filter((t) => t.status === 'EXECUTED').length;
      assert.equal((await store.jobs.get({ id: job.id })).tokenBalance, String(2 * executed));
      assert.equal(trades.filter((t) => t.status === 'PENDING').length, 0);
      assert.deepEqual((await store.verifyAudit()).problems, []);
    });
  });
}

test('amountsDisagree: fees, rounding and dust agree; a unit or scale wrong by more than a factor of 2 does not', () => {
  // A fee of 1 %, in tokens or in quote; rounding at 18 decimals.
  assert.equal(amountsDisagree('3.3', '10', '3.0303'), undefined);
  assert.equal(amountsDisagree('3.333333333333333333', '10', '3'), undefined);
  // Dust: a sell worth half a cent that fetches 0 (an exchange that counts in cents); a 6-decimal quote token.
  assert.equal(amountsDisagree('0.5', '0', '0.01'), undefined);
  assert.equal(amountsDisagree('0.0000025', '0.000001', '1'), undefined);
  // Both ways: a price 10 times too high, a base 10⁹ times too large, a sell that fetched nothing.
  assert.equal(amountsDisagree('1', '10', '100'), '1 tokens at 100 are worth 100, not 10');
  assert.equal(amountsDisagree('5000000000', '10', '2'), '5000000000 tokens at 2 are worth 10000000000, not 10');
  assert.equal(amountsDisagree('500', '0', '1'), '500 tokens at 1 are worth 500, not 0');
  // Exactly a factor of 2 is the edge: taken.
  assert.equal(amountsDisagree('1', '5', '10'), undefined);
});
