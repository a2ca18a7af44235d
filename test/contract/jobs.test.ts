import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { isBotstateError } from '../../src/errors.ts';
import { TRANSITIONS } from '../../src/jobs/lifecycle.ts';
import type { Executor } from '../../src/store/adapter.ts';
import type { Store } from '../../src/store/store.ts';
import { rejectsWith } from '../helpers/assert.ts';
import { ENGINES, TOKEN, tokenAddress, type Fixture } from '../helpers/engines.ts';


for (const engine of ENGINES) {
  describe(`jobs [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    let store: Store;
    beforeEach(async () => {
      fx = await engine.create();
      store = await fx.open({ actor: 'test' });
    });
    afterEach(() => fx.cleanup());

    it('start creates a RUNNING job with the defaults, in canonical form', async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN.toLowerCase(), tokenSymbol: 'LGI' });
      assert.equal(job.tokenAddress, TOKEN);
      assert.equal(job.chain, 'base');
      assert.equal(job.mode, 'ACCUMULATE');
      assert.equal(job.status, 'RUNNING');
      assert.equal(job.tokenBalance, '0');
      assert.equal(job.totalAccumulated, '0');
      assert.equal(job.config.accumulate.dcaAmount, '10');
      assert.equal(job.config.liquidity.targetRatio, '0.5');
      assert.equal(job.config.limits.maxTradesPerHour, null);
      assert.equal(job.version, 1);
      assert.equal(job.startedAt, job.createdAt);
      assert.match(job.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    });

    it('the same address in another case is the same job; another chain is another job', async () => {
      const a = await store.jobs.start({ tokenAddress: TOKEN });
      await store.jobs.pause({ tokenAddress: TOKEN.toLowerCase() });
      const again = await store.jobs.get({ tokenAddress: TOKEN.toUpperCase().replace('0X', '0x') });
      assert.equal(again.id, a.id);
      assert.equal(again.status, 'PAUSED');
      const other = await store.jobs.start({ tokenAddress: TOKEN, chain: 'Ethereum' });
      assert.notEqual(other.id, a.id);
      assert.equal(other.chain, 'ethereum');
      assert.equal((await store.jobs.list()).length, 2);
    });

    it('a ref with an id and a token names the job by its id, and the token must be that job\'s', async () => {
      const a = await store.jobs.start({ tokenAddress: TOKEN });
      const b = await store.jobs.start({ tokenAddress: tokenAddress(2) });
      // A Job is a ref to itself.
      assert.equal((await store.jobs.pause(a)).status, 'PAUSED');
      const before = await fx.dump();
      const mixed = await rejectsWith(store.jobs.resume({ id: a.id, tokenAddress: b.tokenAddress }), 'INVALID_ARGUMENT');
      assert.equal(mixed['message'], `job ${a.id} is the job of ${TOKEN} on base, not of ${b.tokenAddress}, which the same ref names`);
      await rejectsWith(store.jobs.get({ id: a.id, tokenAddress: TOKEN, chain: 'ethereum' }), 'INVALID_ARGUMENT');
      await rejectsWith(store.jobs.get({ id: a.id, tokenAddress: 'nonsense' }), 'INVALID_ADDRESS');
      assert.equal(await fx.dump(), before);
      // Without a chain, the token is compared alone: a job on another chain is named rightly so.
      const c = await store.jobs.start({ tokenAddress: TOKEN, chain: 'ethereum' });
      assert.equal((await store.jobs.get({ id: c.id, tokenAddress: TOKEN })).id, c.id);
    });

    it('walks the whole lifecycle and records each step', async () => {
      const ref = { tokenAddress: TOKEN };
      await store.jobs.start(ref);
      assert.equal((await store.jobs.pause(ref)).status, 'PAUSED');
      assert.equal((await store.jobs.resume(ref)).status, 'RUNNING');
      const failed = await store.jobs.fail(ref, 'exchange unreachable');
      assert.equal(failed.status, 'ERROR');
      assert.equal(failed.statusReason, 'exchange unreachable');
      const resumed = await store.jobs.resume(ref);
      assert.equal(resumed.statusReason, null);
      assert.equal((await store.jobs.liquidate(ref)).status, 'LIQUIDATING');
      const idle = await store.jobs.completeLiquidation(ref);
      assert.equal(idle.status, 'IDLE');
      assert.equal((await store.jobs.start({ tokenAddress: TOKEN, mode: 'LIQUIDITY' })).mode, 'LIQUIDITY');
      const actions = (await store.history(ref)).map((e) => e.action);
      assert.deepEqual(actions, ['create', 'pause', 'resume', 'fail', 'resume', 'liquidate', 'completeLiquidation', 'start']);
      // The lifecycle table the library enforces cannot be changed by a caller.
      assert.throws(() => (TRANSITIONS.start.from as unknown as string[]).push('RUNNING'), TypeError);
      assert.throws(() => Object.assign(TRANSITIONS.start, { to: 'ERROR' }), TypeError);
      await rejectsWith(store.jobs.start(ref), 'INVALID_TRANSITION');
    });

    it('the symbol botstate gave a job started without one can be passed back, as a job\'s own fields can', async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      assert.equal(job.tokenSymbol, `${TOKEN.slice(0, 6)}…${TOKEN.slice(-4)}`);
      await store.jobs.liquidate({ id: job.id });
      await store.jobs.completeLiquidation({ id: job.id });
      const again = await store.jobs.start({ tokenAddress: job.tokenAddress, chain: job.chain, mode: job.mode, tokenSymbol: job.tokenSymbol });
      assert.equal(again.tokenSymbol, job.tokenSymbol);
      // Another symbol of that shape is not a symbol.
      await rejectsWith(store.jobs.start({ tokenAddress: `0x${'e'.repeat(40)}`, tokenSymbol: job.tokenSymbol }), 'INVALID_ARGUMENT');
    });

    it('refuses an invalid transition with the current status and the allowed actions, changing nothing', async () => {
      const ref = { tokenAddress: TOKEN };
      await store.jobs.start(ref);
      await store.jobs.pause(ref);
      const before = await fx.dump();
      const details = await rejectsWith(store.jobs.pause(ref), 'INVALID_TRANSITION');
      assert.equal(details['status'], 'PAUSED');
      assert.deepEqual(details['allowed'], ['resume', 'liquidate', 'fail']);
      assert.match(String(details['message']), /PAUSED/);
      await rejectsWith(store.jobs.start(ref), 'INVALID_TRANSITION');
      await rejectsWith(store.jobs.completeLiquidation(ref), 'INVALID_TRANSITION');
      assert.equal(await fx.dump(), before);
    });

    it('completing a liquidation with tokens left is refused', async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'b1', side: 'BUY', reason: 'DCA', baseAmount: '5', quoteAmount: '10', priceUsd: '2' });
      await store.jobs.liquidate({ id: job.id });
      const details = await rejectsWith(store.jobs.completeLiquidation({ id: job.id }), 'INVALID_TRANSITION');
      assert.equal(details['tokenBalance'], '5');
      // What is wrong is the balance, not the status: the message does not list completeLiquidation as allowed.
      assert.match(String(details['message']), /^cannot completeLiquidation the job for \S+ on \S+ yet: it still holds 5 tokens$/);
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 's1', side: 'SELL', reason: 'LIQUIDATE', baseAmount: '5', quoteAmount: '11', priceUsd: '2.2' });
      const idle = await store.jobs.completeLiquidation({ id: job.id });
      assert.equal(idle.status, 'IDLE');
      assert.equal(idle.tokenBalance, '0');
    });

    it('given a price, a liquidation completes over dust worth less than 10⁻¹⁸ USD at it, and only then', async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'b1', side: 'BUY', reason: 'DCA', baseAmount: '0.000000000000000003', quoteAmount: '1', priceUsd: '2' });
      await store.jobs.liquidate({ id: job.id });
      const before = await fx.dump();
      // 3 units at 0.5 are worth 1.5 × 10⁻¹⁸ USD: an order can still sell them.
      const details = await rejectsWith(store.jobs.completeLiquidation({ id: job.id }, { priceUsd: '0.5' }), 'INVALID_TRANSITION');
      assert.equal(details['tokenBalance'], '0.000000000000000003');
      await rejectsWith(store.jobs.completeLiquidation({ id: job.id }, { priceUsd: '0' }), 'INVALID_AMOUNT');
      assert.equal(await fx.dump(), before);
      const idle = await store.jobs.completeLiquidation({ id: job.id }, { priceUsd: '0.3' });
      assert.equal(idle.status, 'IDLE');
      assert.equal(idle.tokenBalance, '0.000000000000000003');
      const last = (await store.history({ id: job.id })).at(-1)!;
      assert.equal(last.action, 'completeLiquidation');
      assert.equal((last.after as { priceUsd: string }).priceUsd, '0.3');
    });

    it('a job named wrongly (a bare string, null, a number id) or a failure without a reason is a BotstateError, not a TypeError', async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      const before = await fx.dump();
      for (const ref of [TOKEN, null, undefined, { id: 7 }, {}]) {
        await rejectsWith(store.jobs.pause(ref as never), 'INVALID_ARGUMENT');
        await rejectsWith(store.jobs.get(ref as never), 'INVALID_ARGUMENT');
        await rejectsWith(store.ledger.recordIntent({ job: ref as never, side: 'BUY', reason: 'DCA', quoteAmount: '1' }), 'INVALID_ARGUMENT');
      }
      await rejectsWith(store.jobs.fail({ id: job.id }, undefined as never), 'INVALID_ARGUMENT');
      // A chain that is not text is named as such, not a TypeError.
      await rejectsWith(store.jobs.start({ tokenAddress: tokenAddress(2), chain: 5 as never }), 'INVALID_ARGUMENT');
      await rejectsWith(store.jobs.get({ tokenAddress: TOKEN, chain: {} as never }), 'INVALID_ARGUMENT');
      assert.equal(await fx.dump(), before);
      // `{ id: undefined, tokenAddress }` is allowed by JobRef's type: it names the job by its token.
      assert.equal((await store.jobs.get({ id: undefined, tokenAddress: TOKEN } as never)).id, job.id);
    });

    it('completing a liquidation with an order still PENDING is refused: a buy could still fill', async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      const { trade } = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      await store.jobs.liquidate({ id: job.id });
      const before = await fx.dump();
      const details = await rejectsWith(store.jobs.completeLiquidation({ id: job.id }), 'INVALID_TRANSITION');
      assert.equal(details['pending'], 1);
      assert.equal(await fx.dump(), before);
      await store.ledger.settle(trade.clientOrderId, { status: 'FAILED', error: 'not filled' });
      assert.equal((await store.jobs.completeLiquidation({ id: job.id })).status, 'IDLE');
    });

    it('a guarded update loses to a concurrent change instead of overwriting it', async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      const second = await fx.open();
      const results = await Promise.allSettled([store.jobs.pause({ id: job.id }), second.jobs.pause({ id: job.id })]);
      const ok = results.filter((r) => r.status === 'fulfilled');
      assert.equal(ok.length, 1, 'exactly one pause wins');
      const failure = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.ok(isBotstateError(failure.reason, 'INVALID_TRANSITION') || isBotstateError(failure.reason, 'CONCURRENT_MODIFICATION'), String(failure.reason));
      const after = await store.jobs.get({ id: job.id });
      assert.equal(after.version, 2);
    });

    it('config: --set values are exact and validated; a bad value changes nothing', async () => {
      const job = await store.jobs.start({
        tokenAddress: TOKEN,
        set: ['accumulate.dcaAmount=25.123456789012345678', 'accumulate.dcaIntervalHours=0.0001', 'limits.maxTradesPerHour=12'],
      });
      assert.equal(job.config.accumulate.dcaAmount, '25.123456789012345678');
      assert.equal(job.config.accumulate.dcaIntervalHours, '0.0001');
      assert.equal(job.config.limits.maxTradesPerHour, 12);
      const before = await fx.dump();
      for (const bad of ['accumulate.dcaAmount=-5', 'accumulate.dcaAmount=NaN', 'accumulate.dcaAmount=1e400', 'accumulate.nope=1', 'nope.x=1', 'accumulate.dcaAmount']) {
        await rejectsWith(store.jobs.configure({ id: job.id }, { set: [bad] }), 'INVALID_CONFIG');
      }
      for (const bad of [{ dcaAmount: 0.1 }, { dcaAmount: 'lots' }, { dcaAmount: '1e3' }, { dcaAmount: '0.0000000000000000001' }]) {
        await rejectsWith(store.jobs.configure({ id: job.id }, { config: { accumulate: bad } }), 'INVALID_CONFIG');
      }
      assert.equal(await fx.dump(), before);
      const changed = await store.jobs.configure({ id: job.id }, { set: ['liquidity.spreadPercent=3.5'] });
      assert.equal(changed.config.liquidity.spreadPercent, '3.5');
      assert.equal(changed.config.accumulate.dcaAmount, '25.123456789012345678');
      const last = (await store.history({ id: job.id })).at(-1)!;
      assert.equal(last.action, 'configure');
      assert.equal((last.after as { config: { liquidity: { spreadPercent: string } } }).config.liquidity.spreadPercent, '3.5');
    });

    it("a job's config, decimal strings and all, can be given back: to itself (nothing changes) or to another job", async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN, set: ['accumulate.dcaAmount=25.123456789012345678', 'limits.maxOrderUsd=99.5', 'limits.maxTradesPerHour=12'] });
      assert.equal((await store.jobs.configure({ id: job.id }, { config: job.config })).version, job.version);
      const copy = await store.jobs.start({ tokenAddress: tokenAddress(9), config: job.config });
      assert.deepEqual(copy.config, job.config);
      const edited = await store.jobs.configure({ id: copy.id }, { config: { accumulate: { dcaAmount: '30.5' }, limits: { maxOrderUsd: null } } });
      assert.equal(edited.config.accumulate.dcaAmount, '30.5');
      assert.equal(edited.config.limits.maxOrderUsd, null);
    });

    it('a config that changes nothing writes nothing', async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      const same = await store.jobs.configure({ id: job.id }, { set: ['accumulate.dcaAmount=10.0'] });
      assert.equal(same.version, job.version);
    });

    it('unknown tokens, bad addresses and bad checksums are refused before any write', async () => {
      await store.jobs.start({ tokenAddress: TOKEN });
      const before = await fx.dump();
      await rejectsWith(store.jobs.pause({ tokenAddress: tokenAddress(7) }), 'JOB_NOT_FOUND');
      await assert.rejects(store.jobs.pause({ id: 'nope' }), (e: { code?: string; message?: string; hint?: string }) =>
        e.code === 'JOB_NOT_FOUND' && e.message === 'there is no job with id nope' && /store\.jobs\.list\(\)/.test(e.hint ?? ''));
      const long = await rejectsWith(store.jobs.get({ id: 'x'.repeat(100_000) }), 'JOB_NOT_FOUND');
      assert.ok(String(long['message']).length < 100);
      await rejectsWith(store.jobs.pause({ tokenAddress: '0x1234' }), 'INVALID_ADDRESS');
      await rejectsWith(store.jobs.start({ tokenAddress: TOKEN.replace('aDe', 'ADe') }), 'INVALID_CHECKSUM');
      await rejectsWith(store.jobs.start({ tokenAddress: tokenAddress(8), chain: 'no chain!' }), 'INVALID_ARGUMENT');
      await rejectsWith(store.jobs.start({ tokenAddress: tokenAddress(8), tokenSymbol: 'has space' }), 'INVALID_ARGUMENT');
      await assert.rejects(store.jobs.start({ tokenAddress: tokenAddress(8), tokenSymbol: 'ŁGI' }), (e: { code?: string; hint?: string }) =>
        e.code === 'INVALID_ARGUMENT' && /ASCII letters/.test(e.hint ?? ''));
      await rejectsWith(store.jobs.list({ status: 'SLEEPING' as never }), 'INVALID_ARGUMENT');
      // The library's spelling in the hint, not the CLI's lower case that was just refused.
      await assert.rejects(store.jobs.start({ tokenAddress: tokenAddress(8), mode: 'accumulate' as never }), (e: { code?: string; message?: string; hint?: string }) =>
        e.code === 'INVALID_ARGUMENT' && e.message === 'mode "accumulate" is not one of ACCUMULATE, LIQUIDITY' && /^use ACCUMULATE or LIQUIDITY, in capitals/.test(e.hint ?? ''));
      await assert.rejects(store.jobs.list({ status: 'running' as never }), (e: { code?: string; hint?: string }) =>
        e.code === 'INVALID_ARGUMENT' && /in capitals/.test(e.hint ?? ''));
      assert.equal(await fx.dump(), before);
    });

    it('lists by status, oldest first', async () => {
      for (let i = 1; i <= 4; i++) await store.jobs.start({ tokenAddress: tokenAddress(i) });
      await store.jobs.pause({ tokenAddress: tokenAddress(2) });
      await store.jobs.pause({ tokenAddress: tokenAddress(4) });
      const paused = await store.jobs.list({ status: 'PAUSED' });
      assert.deepEqual(paused.map((j) => j.tokenAddress), [tokenAddress(2), tokenAddress(4)]);
      assert.equal((await store.jobs.list({ status: 'RUNNING' })).length, 2);
      assert.equal((await store.jobs.list()).length, 4);
    });

    it('persists audited strategy fields and unaudited scratch state; skips writes that change nothing', async () => {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      const at = '2026-11-22T10:00:00.000Z';
      const updated = await store.jobs.updateState({ id: job.id }, { recentHigh: '0.0123456789', recentHighTime: at });
      assert.equal(updated.recentHigh, '0.0123456789');
      assert.equal(updated.version, 2);
      await store.jobs.saveScratch({ id: job.id }, { window: ['1.5', '1.6'] });
      const reopened = await (await fx.open()).jobs.get({ id: job.id });
      assert.equal(reopened.recentHighTime, at);
      assert.deepEqual(reopened.strategyState, { window: ['1.5', '1.6'] });
      assert.equal(reopened.version, 2, 'scratch state is not versioned');
      assert.equal((await store.history({ id: job.id })).length, 2, 'scratch state is not audited');
      const same = await store.jobs.updateState({ id: job.id }, { recentHigh: '0.0123456789' });
      assert.equal(same.version, updated.version);
      // Values that would break every later comparison of the job are refused, and nothing changes.
      const before = await fx.dump();
      for (const bad of [{ recentHigh: 'abc' }, { recentHigh: '1e3' }, { recentHigh: '-3' }, { lastDcaBuyTime: 'yesterday' },
        { lastDcaBuyTime: '2026-01-01T00:00:00Z' }, { recentHighTime: '2026-02-30T00:00:00.000Z' }, { tokenBalance: '5' }]) {
        await rejectsWith(store.jobs.updateState({ id: job.id }, bad as never), 'recentHigh' in bad ? 'INVALID_AMOUNT' : 'INVALID_ARGUMENT');
      }
      // A Date object is named as one: its own text would look like a valid time.
      const asDate = await rejectsWith(store.jobs.updateState({ id: job.id }, { recentHighTime: new Date() as never }), 'INVALID_ARGUMENT');
      assert.equal(asDate['message'], 'recentHighTime must be an ISO 8601 UTC time string with milliseconds, got a Date object');
      // A typo in the year would hold the DCA buys back until then; minutes ahead are another machine's clock.
      const future = await rejectsWith(store.jobs.updateState({ id: job.id }, { lastDcaBuyTime: '9999-12-31T23:59:59.999Z' }), 'INVALID_ARGUMENT');
      assert.equal(future['message'], 'lastDcaBuyTime 9999-12-31T23:59:59.999Z is in the future');
      assert.equal(await fx.dump(), before);
      assert.equal((await store.jobs.updateState({ id: job.id }, { recentHigh: '0.01234567890' })).version, updated.version, 'a non-canonical equal value is the same value');
      assert.equal((await store.jobs.updateState({ id: job.id }, { lastRebalanceTime: null })).version, updated.version);
      // A key given as undefined is left out, as its optional type allows.
      assert.equal((await store.jobs.updateState({ id: job.id }, { recentHigh: undefined, lastDcaBuyTime: undefined })).version, updated.version);
      const ahead = new Date(Date.now() + 60_000).toISOString();
      assert.equal((await store.jobs.updateState({ id: job.id }, { lastDcaBuyTime: ahead })).lastDcaBuyTime, ahead);
      await assert.rejects(store.jobs.saveScratch({ id: job.id }, { big: 'x'.repeat(70000) }), /64 KiB/);
      // What JSON would keep as {}, silently emptied, is refused instead; the stored scratch stays.
      const kept = await fx.dump();
      await assert.rejects(store.jobs.saveScratch({ id: job.id }, new Map([['a', 1]]) as never), /holds a Map, which JSON keeps as \{\}/);
      await assert.rejects(store.jobs.saveScratch({ id: job.id }, { seen: new Set(['1']) }), /holds a Set/);
      await assert.rejects(store.jobs.saveScratch({ id: job.id }, { later: [Promise.resolve(1)] }), /holds a Promise/);
      await assert.rejects(store.jobs.saveScratch({ id: job.id }, { ref: new WeakRef({ a: 1 }) }), /holds a WeakRef/);
      await assert.rejects(store.jobs.saveScratch({ id: job.id }, { counts: { hour: Number.NaN } }), /holds the number NaN, which JSON writes as null/);
      await assert.rejects(store.jobs.saveScratch({ id: job.id }, { ratio: [1, -Infinity] }), /holds the number -Infinity/);
      assert.equal(await fx.dump(), kept);
      // One whose toJSON writes it out in full is kept, as JSON keeps it.
      const counts = Object.assign(new Map([['10', 3]]), { toJSON: () => ({ '10': 3 }) });
      await store.jobs.saveScratch({ id: job.id }, { counts });
      assert.deepEqual((await store.jobs.get({ id: job.id })).strategyState, { counts: { '10': 3 } });
      assert.deepEqual((await store.verifyAudit()).problems, []);
    });

    it('store.transaction commits several changes together or none', async () => {
      const a = await store.jobs.start({ tokenAddress: tokenAddress(1) });
      const b = await store.jobs.start({ tokenAddress: tokenAddress(2) });
      const before = await fx.dump();
      await assert.rejects(
        store.transaction(async () => {
          await store.jobs.pause({ id: a.id });
          await store.jobs.pause({ id: b.id });
          throw new Error('abort');
        }),
        /abort/,
      );
      assert.equal(await fx.dump(), before);
      await store.transaction(async (tx) => {
        await store.jobs.pause({ id: a.id });
        await store.jobs.pause({ id: b.id }, { tx });
      });
      assert.deepEqual((await store.jobs.list()).map((j) => j.status), ['PAUSED', 'PAUSED']);
    });

    it('free text is stored as hashed: no split surrogate pair, no lone surrogate or NUL; scratch and actors refuse them', async () => {
      const job = await store.jobs.start({ tokenAddress: tokenAddress(1) });
      const failed = await store.jobs.fail({ id: job.id }, `${'a'.repeat(1999)}\u{1F600} down`);
      assert.equal(failed.statusReason, 'a'.repeat(1999), 'cut before the emoji, not inside it');
      const other = await store.jobs.start({ tokenAddress: tokenAddress(2) });
      const odd = await store.jobs.fail({ id: other.id }, 'lone \ud83d and nul \u0000 here');
      assert.equal(odd.statusReason, 'lone \ufffd and nul \ufffd here');
      assert.equal((await store.jobs.get({ id: other.id })).statusReason, odd.statusReason);
      const third = await store.jobs.start({ tokenAddress: tokenAddress(3) });
      const { trade } = await store.ledger.recordIntent({ job: { id: third.id }, side: 'BUY', reason: 'DCA', quoteAmount: '1' });
      const settled = await store.ledger.settle(trade.clientOrderId, { status: 'FAILED', error: 'rejected \udc00' });
      assert.equal(settled.trade.error, 'rejected \ufffd');
      assert.deepEqual((await store.verifyAudit()).problems, []);

      const before = await fx.dump();
      // What is written is checked, not the document given: a toJSON may write what the document does not hold.
      const writes = (s: string) => ({ toJSON: () => ({ note: s }) });
      for (const doc of [{ s: 'nul \u0000' }, { s: 'lone \ud800' }, { ['key \udfff']: 1 }, { deep: [{ s: '\u0000' }] }, { big: 1n }, { w: writes('a\u0000b') }, { w: writes('\ud83d') }]) {
        await rejectsWith(store.jobs.saveScratch({ id: third.id }, doc), 'INVALID_ARGUMENT');
      }
      await rejectsWith(store.ledger.recordIntent({ job: { id: third.id }, side: 'BUY', reason: 'DCA', quoteAmount: '1' }, { scratch: { w: writes('\u0000') } }), 'INVALID_ARGUMENT');
      for (const actor of ['', 'x'.repeat(201), 'ops\u0000', 'ops \ud800']) {
        await rejectsWith(store.jobs.pause({ id: third.id }, { actor }), 'INVALID_ARGUMENT');
      }
      assert.equal(await fx.dump(), before);
      await store.jobs.saveScratch({ id: third.id }, { s: 'ok \u{1F600}' });
      assert.deepEqual((await store.jobs.get({ id: third.id })).strategyState, { s: 'ok \u{1F600}' });
    });

    it('calls made at once inside one transaction take turns: one that fails undoes only its own writes', { timeout: 60_000 }, async () => {
      const a = await store.jobs.start({ tokenAddress: tokenAddress(1) });
      const b = await store.jobs.start({ tokenAddress: tokenAddress(2) });
      const trade = (id: string, clientOrderId: string, side: 'BUY' | 'SELL', baseAmount: string, options?: { tx: Executor }) =>
        store.ledger.recordTrade({ job: { id }, clientOrderId, side, reason: side === 'BUY' ? 'DCA' : 'TAKE_PROFIT', baseAmount, quoteAmount: '1', priceUsd: '0.2' }, options);
      // Interleaved, the refused sell's ROLLBACK TO its savepoint used to undo the buy's writes too.
      const [buy, sell] = await store.transaction(() => Promise.allSettled([trade(a.id, 'a1', 'BUY', '5'), trade(b.id, 'b1', 'SELL', '100')]));
      assert.equal(buy.status, 'fulfilled');
      assert.equal(sell.status, 'rejected');
      assert.equal((await store.jobs.get({ id: a.id })).tokenBalance, '5');
      assert.deepEqual((await store.ledger.trades({ id: a.id })).map((t) => t.clientOrderId), ['a1']);
      assert.deepEqual(await store.ledger.trades({ id: b.id }), []);
      assert.deepEqual((await store.verifyAudit()).problems, []);
      // The same one level down, inside a nested transaction.
      const nested = await store.transaction(() => store.transaction(() => Promise.allSettled([trade(a.id, 'a2', 'BUY', '5'), trade(b.id, 'b2', 'SELL', '100')])));
      assert.deepEqual(nested.map((r) => r.status), ['fulfilled', 'rejected']);
      assert.equal((await store.jobs.get({ id: a.id })).tokenBalance, '10');
      assert.deepEqual((await store.ledger.trades({ id: a.id })).map((t) => t.clientOrderId), ['a1', 'a2']);
      // A call still waiting for its turn when the transaction ends (Promise.all gave up at the
      // first refusal) is refused, not run on its own after the rollback.
      const before = await fx.dump();
      await assert.rejects(store.transaction(() => Promise.all([trade(b.id, 'b3', 'SELL', '100'), trade(a.id, 'a3', 'BUY', '5')])), /b3|balance|sell/i);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(await fx.dump(), before, 'the queued buy did not commit by itself');
      // Inside a nested transaction that fails that way, the outer one committing keeps nothing of it.
      await store.transaction(async () => {
        await assert.rejects(store.transaction(() => Promise.all([trade(b.id, 'b4', 'SELL', '100'), trade(a.id, 'a4', 'BUY', '5')])));
      });
      assert.equal(await fx.dump(), before, 'nothing of the failed nested transaction is left');
      assert.deepEqual((await store.verifyAudit()).problems, []);
      // A call given the tx from code outside the body (a callback set up before it) takes turns too.
      let give!: (tx: Executor) => void;
      const detachedSell = new Promise<Executor>((resolve) => {
        give = resolve;
      }).then((tx) => trade(b.id, 'b5', 'SELL', '100', { tx }));
      const mixed = await store.transaction(async (tx) => {
        give(tx);
        return Promise.allSettled([trade(a.id, 'a5', 'BUY', '5'), detachedSell]);
      });
      assert.deepEqual(mixed.map((r) => r.status), ['fulfilled', 'rejected']);
      assert.deepEqual((await store.ledger.trades({ id: a.id })).map((t) => t.clientOrderId), ['a1', 'a2', 'a5']);
      // A tx whose transaction has ended is refused, not run on its own or inside another one.
      const stale = await store.transaction(async (tx) => tx);
      const beforeStale = await fx.dump();
      await rejectsWith(store.jobs.pause({ id: a.id }, { tx: stale }), 'INVALID_ARGUMENT');
      assert.equal(await fx.dump(), beforeStale);
      // Nor while another transaction is open (on SQLite every transaction runs on one connection).
      let release!: () => void;
      const gate = new Promise<void>((resolve) => {
        release = resolve;
      });
      const other = store.transaction(async () => {
        await store.jobs.configure({ id: a.id }, { set: ['accumulate.dcaAmount=33'] });
        await gate;
        throw new Error('rolled back');
      });
      await new Promise((resolve) => setTimeout(resolve, 20));
      await rejectsWith(store.jobs.pause({ id: a.id }, { tx: stale }), 'INVALID_ARGUMENT');
      release();
      await assert.rejects(other, /rolled back/);
      assert.equal(await fx.dump(), beforeStale);
      // A read that fails inside a transaction and is caught leaves the transaction usable (on
      // PostgreSQL a failed statement would abort it, and COMMIT would roll it back in silence).
      await store.transaction(async () => {
        await trade(a.id, 'a6', 'BUY', '5');
        await store.jobs.find({ id: 'x\u0000' }).catch(() => undefined);
      });
      assert.deepEqual((await store.ledger.trades({ id: a.id })).map((t) => t.clientOrderId), ['a1', 'a2', 'a5', 'a6']);
      assert.deepEqual((await store.verifyAudit()).problems, []);
      // A nested transaction that throws is undone, and the outer one goes on.
      await store.transaction(async () => {
        await assert.rejects(store.transaction(async () => {
          await store.jobs.pause({ id: a.id });
          throw new Error('inner');
        }), /inner/);
        await store.jobs.pause({ id: b.id });
      });
      assert.deepEqual([(await store.jobs.get({ id: a.id })).status, (await store.jobs.get({ id: b.id })).status], ['RUNNING', 'PAUSED']);
    });
  });
}
