import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { GENESIS_HASH, insertAudit, prepareAudit, type AuditEntry } from '../../src/audit/audit.ts';
import { isBotstateError } from '../../src/errors.ts';
import { beforeMismatch, requireJob, updateJob } from '../../src/jobs/job-rows.ts';
import { serializeConfig } from '../../src/jobs/config.ts';
import type { Store } from '../../src/store/store.ts';
import { rejectsWith } from '../helpers/assert.ts';
import { ENGINES, TOKEN, type Fixture } from '../helpers/engines.ts';

for (const engine of ENGINES) {
  describe(`audit log [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    let store: Store;
    const p = (n: number) => (engine.name === 'postgres' ? `$${n}` : '?');
    beforeEach(async () => {
      fx = await engine.create();
      store = await fx.open({ actor: 'tester' });
      const job = await store.jobs.start({ tokenAddress: TOKEN, set: ['accumulate.dcaAmount=25'] });
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'o-1', side: 'BUY', reason: 'DCA', baseAmount: '7.5', quoteAmount: '25', priceUsd: '3.3333' });
      await store.jobs.pause({ id: job.id }, { actor: 'operator' });
      await store.jobs.configure({ id: job.id }, { set: ['accumulate.dcaAmount=30'] });
    });
    afterEach(() => fx.cleanup());

    it('keeps one chained entry per change, with actor, before and after', async () => {
      const entries = await store.history({ tokenAddress: TOKEN });
      assert.deepEqual(entries.map((e) => [e.seq, e.entity, e.action, e.actor]), [
        [1, 'job', 'create', 'tester'],
        [2, 'trade', 'record', 'tester'],
        [3, 'job', 'pause', 'operator'],
        [4, 'job', 'configure', 'tester'],
      ]);
      assert.equal(entries[0]!.prevHash, GENESIS_HASH);
      for (let i = 1; i < entries.length; i++) assert.equal(entries[i]!.prevHash, entries[i - 1]!.hash);
      assert.deepEqual(entries[2]!.before, { status: 'RUNNING', stoppedAt: null });
      assert.equal((entries[2]!.after as { status: string }).status, 'PAUSED');
      const trade = entries[1]!.after as { tokenBalance: string; trade: { clientOrderId: string; baseAmount: string } };
      assert.equal(trade.tokenBalance, '7.5');
      assert.equal(trade.trade.clientOrderId, 'o-1');
      assert.equal(trade.trade.baseAmount, '7.5');
      const config = entries[3]! as { before: { config: { accumulate: { dcaAmount: string } } }; after: { config: { accumulate: { dcaAmount: string } } } };
      assert.equal(config.before.config.accumulate.dcaAmount, '25');
      assert.equal(config.after.config.accumulate.dcaAmount, '30');
      const job = await store.jobs.get({ tokenAddress: TOKEN });
      assert.deepEqual(await store.verifyAudit(), {
        streams: 1, entries: 4, problems: [], heads: [{ stream: `job:${job.id}`, seq: 4, hash: entries[3]!.hash }],
      });
    });

    it('a job change guarded by a stale version writes neither the job nor its audit entry', async () => {
      // What updateJob does when the row it was given is no longer the stored one (on PostgreSQL
      // the UPDATE and the entry are one statement: the entry must not go in without the UPDATE).
      const before = await fx.dump();
      await assert.rejects(
        store.transaction(async (tx) => {
          const row = await requireJob(tx, store.dialect, { tokenAddress: TOKEN }, true);
          const stale = { ...row, version: row.version - 1 };
          await updateJob(tx, store.dialect, stale, { set: { recentHigh: '9' }, at: new Date().toISOString(), actor: 'tester', action: 'state' });
        }),
        (e: unknown) => isBotstateError(e, 'CONCURRENT_MODIFICATION'),
      );
      assert.equal(await fx.dump(), before);
      // The same call with the stored row goes through, the entry chained after the last one.
      await store.transaction(async (tx) => {
        const row = await requireJob(tx, store.dialect, { tokenAddress: TOKEN }, true);
        await updateJob(tx, store.dialect, row, { set: { recentHigh: '9' }, at: new Date().toISOString(), actor: 'tester', action: 'state' });
      });
      const entries = await store.history({ tokenAddress: TOKEN });
      assert.deepEqual(entries.at(-1)!.after, { recentHigh: '9' });
      assert.equal(entries.at(-1)!.seq, 5);
      assert.deepEqual((await store.verifyAudit()).problems, []);
    });

    it('a job row changed outside botstate, then changed by botstate, is found: its next entry\'s before disagrees with the log', async () => {
      const job = await store.jobs.get({ tokenAddress: TOKEN });
      // Someone raises a limit in the row itself: verify sees the row differ from the log.
      const config = { ...job.config, accumulate: { ...job.config.accumulate, maxAccumulationUsd: '99999999' } };
      await fx.raw(`UPDATE jobs SET config = ${p(1)}${engine.name === 'postgres' ? '::jsonb' : ''} WHERE id = ${p(2)}`, [serializeConfig(config), job.id]);
      assert.deepEqual((await store.verifyAudit()).problems.map((x) => x.problem), ["the job's config differs from what its audit log records"]);
      // Then botstate changes the job: its entry takes before from the row, and after carries the
      // raised limit on, so the row matches the log again. The entry's before gives it away.
      await store.jobs.configure({ tokenAddress: TOKEN }, { set: ['accumulate.dcaAmount=11'] });
      const configured = (await store.history({ tokenAddress: TOKEN })).at(-1)!;
      assert.deepEqual((await store.verifyAudit()).problems, [
        {
          stream: configured.stream,
          seq: configured.seq,
          problem: 'this entry says config.accumulate.maxAccumulationUsd was "99999999", but the entries before it make it "1000" (the job row was changed outside botstate before this entry was written, or the entry was)',
        },
      ]);
      // Time travel says the same, naming the key that differs.
      const corrupt = await rejectsWith(store.jobAt({ tokenAddress: TOKEN }, '9999-12-31T23:59:59.999Z'), 'STORAGE_CORRUPT');
      assert.match(String(corrupt['message']), new RegExp(`^audit entry ${configured.seq} of .* says config\\.accumulate\\.maxAccumulationUsd was "99999999", but the entries before it make it "1000"$`));
    });

    it('an entry whose before has a config key a later version added (its default filled in) agrees with the entries before it', () => {
      const state = { status: 'RUNNING', config: { limits: { maxOrderUsd: null }, accumulate: { dcaAmount: '10' } } };
      const entry = (before: Record<string, unknown>) => ({ before }) as unknown as AuditEntry;
      // Added by the version that wrote this entry: not in the entries before it.
      assert.equal(beforeMismatch(state, entry({ config: { limits: { maxOrderUsd: null, fooUsd: null }, accumulate: { dcaAmount: '10' }, extra: {} } })), undefined);
      // Removed since (in the entries, not in before): not a change either.
      assert.equal(beforeMismatch(state, entry({ config: { limits: {}, accumulate: { dcaAmount: '10' } } })), undefined);
      // A value both have that differs is one.
      assert.equal(beforeMismatch(state, entry({ config: { limits: { maxOrderUsd: '5' } } })), 'config.limits.maxOrderUsd was "5", but the entries before it make it null');
      assert.equal(beforeMismatch(state, entry({ status: 'PAUSED' })), 'status was "PAUSED", but the entries before it make it "RUNNING"');
    });

    it('the table refuses UPDATE, DELETE and (PostgreSQL) TRUNCATE', async () => {
      await assert.rejects(fx.raw(`UPDATE audit_log SET actor = 'mallory'`), /append-only/);
      await assert.rejects(fx.raw(`DELETE FROM audit_log`), /append-only/);
      // PostgreSQL's TRUNCATE fires no row trigger: a statement trigger refuses it (SQLite has none).
      if (engine.name === 'postgres') await assert.rejects(fx.raw(`TRUNCATE audit_log`), /append-only/);
      assert.equal((await store.verifyAudit()).problems.length, 0);
    });

    it('jobAt rebuilds the job at every point of its history from the audit log alone', async () => {
      // More kinds of change: an intent and its fill, a sell, a resume, an ERROR, a liquidation.
      const { id } = await store.jobs.get({ tokenAddress: TOKEN });
      const snapshots = new Map<number, unknown>();
      const snap = async () => {
        const { strategyState: _, ...job } = await store.jobs.get({ id });
        snapshots.set(job.version, job);
      };
      await snap();
      await store.jobs.resume({ id });
      await snap();
      const { trade } = await store.ledger.recordIntent({ job: { id }, side: 'BUY', reason: 'DIP_BUY', quoteAmount: '10' });
      await snap();
      await store.ledger.settle(trade.clientOrderId, { status: 'EXECUTED', baseAmount: '4', quoteAmount: '10', priceUsd: '2.5' });
      await snap();
      await store.ledger.recordTrade({ job: { id }, clientOrderId: 'o-2', side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '1.5', quoteAmount: '6', priceUsd: '4' });
      await snap();
      await store.jobs.fail({ id }, 'exchange refused the order');
      await snap();
      await store.jobs.liquidate({ id });
      await snap();
      const entries = await store.history({ id });
      assert.equal(entries.length, 10);
      for (const entry of entries) {
        // The state after the last entry recorded at or before this one's time (several may share a millisecond).
        const last = entries.filter((e) => e.at <= entry.at).at(-1)!;
        const { strategyState, ...rebuilt } = await store.jobAt({ id }, entry.at);
        assert.deepEqual(strategyState, {});
        if (snapshots.has(last.seq)) assert.deepEqual(rebuilt, snapshots.get(last.seq), `at ${entry.at} (entry ${entry.seq})`);
        assert.equal(rebuilt.version, last.seq);
      }
      assert.deepEqual((({ strategyState: _, ...j }) => j)(await store.jobAt({ id }, '9999-12-31T23:59:59.999Z')), snapshots.get(10));
      // Before it existed; not a time; an entry that disagrees with the ones before it.
      const before = new Date(Date.parse(entries[0]!.at) - 1).toISOString();
      await rejectsWith(store.jobAt({ id }, before), 'JOB_NOT_FOUND');
      await rejectsWith(store.jobAt({ id }, '2026-11-26T12:00:00Z'), 'INVALID_ARGUMENT');
      await rejectsWith(store.jobAt({ id }, '2026-02-30T12:00:00.000Z'), 'INVALID_ARGUMENT');
      if (engine.name === 'sqlite') await fx.raw('DROP TRIGGER audit_log_no_update');
      else await fx.raw('ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change');
      await fx.raw(`UPDATE audit_log SET before = ${p(1)} WHERE seq = ${p(2)}`, [JSON.stringify({ status: 'RUNNING', stoppedAt: '2026-01-01T00:00:00.000Z' }), 3]);
      const corrupt = await rejectsWith(store.jobAt({ id }, '9999-12-31T23:59:59.999Z'), 'STORAGE_CORRUPT');
      assert.match(String(corrupt['message']), /^audit entry 3 of .* says stoppedAt was "2026-01-01T00:00:00.000Z", but the entries before it make it null$/);
      // An entry after the time asked for is not read: its damage does not matter to an earlier time
      // (when one exists: entries written within a millisecond share their time).
      const beforeDamage = new Date(Date.parse(entries[2]!.at) - 1).toISOString();
      if (beforeDamage >= entries[0]!.at) assert.ok((await store.jobAt({ id }, beforeDamage)).version < 3);
      // A link taken out of the chain, or an entry removed, is found too, not replayed past.
      await fx.raw(`UPDATE audit_log SET before = ${p(1)}, prev_hash = ${p(2)} WHERE seq = ${p(3)}`, [entries[2]!.before === null ? null : JSON.stringify(entries[2]!.before), 'f'.repeat(64), 3]);
      const unlinked = await rejectsWith(store.jobAt({ id }, '9999-12-31T23:59:59.999Z'), 'STORAGE_CORRUPT');
      assert.match(String(unlinked['message']), /^the audit log of .* breaks its hash chain at entry 3 \(its prev_hash is not entry 2's hash\)$/);
      await fx.raw(`UPDATE audit_log SET prev_hash = ${p(1)} WHERE seq = ${p(2)}`, [entries[2]!.prevHash, 3]);
      if (engine.name === 'sqlite') await fx.raw('DROP TRIGGER audit_log_no_delete');
      await fx.raw(`DELETE FROM audit_log WHERE seq = ${p(1)}`, [4]);
      const skipped = await rejectsWith(store.jobAt({ id }, '9999-12-31T23:59:59.999Z'), 'STORAGE_CORRUPT');
      assert.match(String(skipped['message']), /^the audit log of .* skips from entry 3 to 5$/);
    });

    it('historyPages gives the history a page at a time, up to a seq if asked; a bad upTo is refused', async () => {
      const { id } = await store.jobs.get({ tokenAddress: TOKEN });
      await store.transaction(async () => {
        for (let i = 0; i < 2100; i++) await store.jobs.updateState({ id }, { recentHigh: String(i + 1) });
      });
      const whole = await store.history({ id });
      const pages: number[][] = [];
      for await (const page of store.historyPages({ id })) pages.push(page.map((e) => e.seq));
      assert.deepEqual(pages.map((p) => p.length), [2000, whole.length - 2000]);
      assert.deepEqual(pages.flat(), whole.map((e) => e.seq));
      const upTo: AuditEntry[] = [];
      for await (const page of store.historyPages({ id }, { upTo: 2001 })) upTo.push(...page);
      assert.deepEqual(upTo, whole.slice(0, 2001));
      await assert.rejects(store.historyPages({ id }, { upTo: -1 }).next(), (e: { code?: string }) => e.code === 'INVALID_ARGUMENT');
      await assert.rejects(store.historyPages({ id: 'nope' }).next(), (e: { code?: string }) => e.code === 'JOB_NOT_FOUND');
    });

    it('verify finds an altered entry', async () => {
      // Someone with raw access drops the guard and rewrites history.
      if (engine.name === 'sqlite') await fx.raw('DROP TRIGGER audit_log_no_update');
      else await fx.raw('ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change');
      await fx.raw(`UPDATE audit_log SET actor = 'mallory' WHERE seq = ${p(1)}`, [3]);
      const report = await store.verifyAudit();
      assert.deepEqual(report.problems.map((x) => [x.seq, x.problem.split(' ')[0]]), [[3, 'hash']]);
    });

    it('verify finds a removed tail entry and a job row changed behind its back', async () => {
      if (engine.name === 'sqlite') await fx.raw('DROP TRIGGER audit_log_no_delete');
      else await fx.raw('ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change');
      await fx.raw(`DELETE FROM audit_log WHERE seq = ${p(1)}`, [4]);
      const report = await store.verifyAudit();
      assert.equal(report.problems.length, 1);
      assert.match(report.problems[0]!.problem, /job row does not match/);
    });

    it('verify finds a job deleted with its trades (its stream has no job any more)', async () => {
      await fx.raw('DELETE FROM trades');
      await fx.raw('DELETE FROM jobs');
      const report = await store.verifyAudit();
      assert.deepEqual(report.problems.map((x) => x.problem.replace(/^trade \S+/, 'trade')), [
        'the job of this stream is gone (its row was deleted)',
        'trade (o-1), recorded in the audit log, is gone (its row was deleted)',
      ]);
    });

    it('verify finds an open intent whose amount was raised in its row, then sent and settled as it stood', async () => {
      await store.jobs.resume({ tokenAddress: TOKEN });
      const { trade } = await store.ledger.recordIntent({ job: { tokenAddress: TOKEN }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      assert.deepEqual((await store.verifyAudit()).problems, []);
      // The row says 5000 now; the intent's entry, 10. A restarted daemon sends what the row says.
      await fx.raw(`UPDATE trades SET quote_amount = ${p(1)} WHERE id = ${p(2)}`, ['5000', trade.id]);
      await store.ledger.settle(trade.clientOrderId, { status: 'EXECUTED', baseAmount: '2000', quoteAmount: '5000', priceUsd: '2.5' });
      const settled = (await store.history({ tokenAddress: TOKEN })).at(-1)!;
      assert.deepEqual((await store.verifyAudit()).problems, [
        {
          stream: settled.stream,
          seq: settled.seq,
          problem: `trade ${trade.id} was filled for quoteAmount 5000, more than its intent recorded asking for, 10 (the order sent was not the one its intent recorded)`,
        },
      ]);
    });

    it('verify finds a settled trade whose side, reason or clientOrderId is not its intent\'s', async () => {
      await store.jobs.resume({ tokenAddress: TOKEN });
      const { trade } = await store.ledger.recordIntent({ job: { tokenAddress: TOKEN }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      await fx.raw(`UPDATE trades SET reason = 'DIP_BUY' WHERE id = ${p(1)}`, [trade.id]);
      await store.ledger.settle(trade.clientOrderId, { status: 'FAILED', error: 'no' });
      const problems = (await store.verifyAudit()).problems.map((x) => x.problem);
      assert.deepEqual(problems, [`trade ${trade.id} was settled with reason "DIP_BUY", but its intent recorded "DCA"`]);
    });

    it('verify finds a trade edited, deleted or added outside botstate, which the jobs alone do not show', async () => {
      const job = await store.jobs.get({ tokenAddress: TOKEN });
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'o-2', side: 'SELL', reason: 'TAKE_PROFIT', baseAmount: '2.5', quoteAmount: '10', priceUsd: '4' });
      await store.jobs.resume({ id: job.id });
      const { trade: pending } = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '5' });
      await store.ledger.settle(pending.clientOrderId, { status: 'FAILED', error: 'rejected' });
      assert.deepEqual((await store.verifyAudit()).problems, []);
      const before = await fx.dump();
      await fx.raw(`UPDATE trades SET quote_amount = ${p(1)}, price_usd = ${p(2)} WHERE client_order_id = 'o-2'`, ['2000', '800']);
      await fx.raw(`UPDATE trades SET error = ${p(1)} WHERE client_order_id = ${p(2)}`, ['timeout', pending.clientOrderId]);
      await fx.raw(`DELETE FROM trades WHERE client_order_id = 'o-1'`);
      await fx.raw(
        `INSERT INTO trades (id, job_id, side, reason, base_amount, quote_amount, price_usd, client_order_id, status, created_at, executed_at) ` +
        `VALUES ('forged', ${p(1)}, 'BUY', 'DCA', '1000000', '1', '0.000001', 'o-3', 'EXECUTED', ${p(2)}, ${p(3)})`,
        [job.id, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z'],
      );
      const problems = (await store.verifyAudit()).problems.map((x) => x.problem.replace(/^trade [^ ]+ /, 'trade '));
      assert.deepEqual(problems.sort(), [
        // The trades no longer add up to the job's balances either.
        "the job's tokenBalance 5 is not its executed buys less its executed sells (999997.5)",
        "the job's totalAccumulated 25 is not the quote its executed buys paid (1)",
        'trade (o-1), recorded in the audit log, is gone (its row was deleted)',
        'trade (o-2): its quoteAmount, priceUsd differ from what the audit log records',
        'trade (o-3) has no audit entry (it was added outside botstate)',
        `trade (${pending.clientOrderId}): its error differs from what the audit log records`,
      ].sort());
      assert.notEqual(await fx.dump(), before, 'the edits were made');
    });

    it('verify tells trades apart by id, not by their amounts alone: two trades with their amounts swapped are both reported', async () => {
      const job = await store.jobs.get({ tokenAddress: TOKEN });
      await store.jobs.resume({ id: job.id });
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'o-2', side: 'BUY', reason: 'DCA', baseAmount: '2', quoteAmount: '6', priceUsd: '3' });
      const { trade: open } = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '5' });
      assert.deepEqual((await store.verifyAudit()).problems, [], 'an open intent is what its entry records');
      // The same amounts, the same sums: only the trades they belong to changed.
      await fx.raw(`UPDATE trades SET base_amount = ${p(1)}, quote_amount = ${p(2)} WHERE client_order_id = 'o-1'`, ['2', '6']);
      await fx.raw(`UPDATE trades SET base_amount = ${p(1)}, quote_amount = ${p(2)} WHERE client_order_id = 'o-2'`, ['7.5', '25']);
      const problems = (await store.verifyAudit()).problems.map((x) => x.problem.replace(/^trade [^ ]+ /, 'trade '));
      assert.deepEqual(problems.sort(), [
        'trade (o-1): its baseAmount, quoteAmount differ from what the audit log records',
        'trade (o-2): its baseAmount, quoteAmount differ from what the audit log records',
      ]);
      assert.equal((await store.ledger.get(open.clientOrderId)).status, 'PENDING');
    });

    it("verify takes a trade's last entry for it, even after a settled one (which botstate never writes)", async () => {
      const job = await store.jobs.get({ tokenAddress: TOKEN });
      const [trade] = await store.ledger.trades({ id: job.id });
      // A second, properly chained entry for the settled trade, with the job row's head moved to
      // it: the chain and the job agree, and the trade's row is what the last entry records.
      const changed = { ...trade!, exchangeOrderId: 'X-9' };
      await store.transaction(async (tx) => {
        const head = (await tx.get<{ version: number; audit_hash: string }>(`SELECT version, audit_hash FROM jobs WHERE id = ${p(1)}`, [job.id]))!;
        const entry = prepareAudit({
          stream: `job:${job.id}`, seq: Number(head.version) + 1, prevHash: head.audit_hash,
          at: job.updatedAt, actor: 'tester', entity: 'trade', entityId: trade!.id, action: 'settle', before: null, after: { trade: changed },
        });
        await insertAudit(tx, entry);
        await tx.run(`UPDATE jobs SET version = ${p(1)}, audit_hash = ${p(2)} WHERE id = ${p(3)}`, [Number(head.version) + 1, entry.hash, job.id]);
      });
      const report = await store.verifyAudit();
      const problems = report.problems.map((x) => x.problem.replace(/^trade [^ ]+ /, 'trade '));
      assert.deepEqual(problems, ['trade (o-1): its exchangeOrderId differs from what the audit log records']);
      await fx.raw(`UPDATE trades SET exchange_order_id = 'X-9' WHERE client_order_id = 'o-1'`);
      assert.deepEqual((await store.verifyAudit()).problems, []);
    });

    it('verify takes a trade only from its own job\'s stream: an entry in a new stream (no secret needed) does not vouch for a forged trade', async () => {
      const job = await store.jobs.get({ tokenAddress: TOKEN });
      const [original] = await store.ledger.trades({ id: job.id });
      const forged = { ...original!, baseAmount: '0.000001', quoteAmount: '999999' };
      const ghost = { ...original!, id: 'ghost-1', clientOrderId: 'ghost-1', side: 'SELL' as const, baseAmount: '5', quoteAmount: '50000' };
      await store.transaction(async (tx) => {
        for (const [seq, trade] of [forged, ghost].entries()) {
          await insertAudit(tx, prepareAudit({
            stream: 'ops:reconcile', seq: seq + 1, prevHash: seq === 0 ? GENESIS_HASH : (await tx.get<{ hash: string }>(`SELECT hash FROM audit_log WHERE stream = 'ops:reconcile'`))!.hash,
            at: new Date().toISOString(), actor: 'mallory', entity: 'trade', entityId: trade.id, action: 'settle', before: null, after: { trade },
          }));
        }
      });
      await fx.raw(`UPDATE trades SET base_amount = ${p(1)}, quote_amount = ${p(2)} WHERE id = ${p(3)}`, [forged.baseAmount, forged.quoteAmount, forged.id]);
      await fx.raw(
        `INSERT INTO trades (id, job_id, side, reason, base_amount, quote_amount, price_usd, client_order_id, status, created_at, executed_at) ` +
        `VALUES ('ghost-1', ${p(1)}, 'SELL', ${p(2)}, '5', '50000', ${p(3)}, 'ghost-1', 'EXECUTED', ${p(4)}, ${p(5)})`,
        [job.id, original!.reason, original!.priceUsd, original!.createdAt, original!.executedAt],
      );
      const problems = (await store.verifyAudit()).problems.map((x) => `${x.stream.split(':')[0]} ${x.problem.replace(/^trade [^ ]+ /, 'trade ')}`);
      assert.deepEqual(problems.sort(), [
        "job the job's tokenBalance 7.5 is not its executed buys less its executed sells (-4.999999)",
        "job the job's totalAccumulated 25 is not the quote its executed buys paid (999999)",
        'job trade (ghost-1) has no audit entry (it was added outside botstate)',
        'job trade (o-1): its baseAmount, quoteAmount differ from what the audit log records',
        `ops an entry of trade ${original!.id} outside its job's stream, or with an action (settle) that does not record a trade`,
        "ops an entry of trade ghost-1 outside its job's stream, or with an action (settle) that does not record a trade",
      ].sort());
    });

    it('verify reports a trade row whose amount cannot be read, instead of failing; the other jobs are still checked', { skip: engine.name === 'postgres' && 'NUMERIC holds no malformed amount' }, async () => {
      const job = await store.jobs.get({ tokenAddress: TOKEN });
      const other = await store.jobs.start({ tokenAddress: `0x${'e'.repeat(40)}` });
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'u-1', side: 'BUY', reason: 'DCA', baseAmount: '20.5', quoteAmount: '10', priceUsd: '0.487804878048780487' });
      await store.ledger.recordTrade({ job: { id: other.id }, clientOrderId: 'u-2', side: 'BUY', reason: 'DCA', baseAmount: '2', quoteAmount: '10', priceUsd: '5' });
      await fx.raw(`UPDATE jobs SET token_balance = '3' WHERE id = ?`, [other.id]);
      for (const value of ['20.50', 'abc']) {
        await fx.raw(`UPDATE trades SET base_amount = ? WHERE client_order_id = 'u-1'`, [value]);
        const problems = (await store.verifyAudit()).problems.map((x) => x.problem.replace(/^trade \S+ /, 'trade '));
        assert.deepEqual(problems.sort(), [
          "the job's tokenBalance differs from what its audit log records",
          `the job's tokenBalance 3 is not its executed buys less its executed sells (2)`,
          `trade (u-1) cannot be read: its base_amount "${value}" is not a canonical decimal amount`,
        ].sort());
        // Read to be shown or returned, such a row is a damaged database, as a job row is: not printed as it is.
        // Each read is started only when awaited: a second promise made up front rejects unhandled while the first is awaited.
        for (const read of [() => store.ledger.trades({ id: job.id }), () => store.ledger.get('u-1')]) {
          assert.equal((await rejectsWith(read(), 'STORAGE_CORRUPT'))['message'], `the stored baseAmount of trade u-1 is not a canonical decimal: "${value}"`);
        }
      }
      await fx.raw(`UPDATE trades SET base_amount = '-5' WHERE client_order_id = 'u-1'`);
      assert.equal((await rejectsWith(store.ledger.trades({ id: job.id }), 'STORAGE_CORRUPT'))['message'], 'the stored baseAmount of trade u-1 is negative: -5');
      await fx.raw(`UPDATE trades SET base_amount = '20.5', executed_at = 'later' WHERE client_order_id = 'u-1'`);
      assert.equal((await rejectsWith(store.ledger.get('u-1'), 'STORAGE_CORRUPT'))['message'], 'the stored executedAt of trade u-1 is not a time: "later"');
      assert.equal((await store.ledger.trades({ id: other.id })).length, 1);
    });

    it('verify reports an unreadable entry or job row instead of failing, and a job row whose times were edited', async () => {
      if (engine.name === 'sqlite') await fx.raw('DROP TRIGGER audit_log_no_update');
      else await fx.raw('ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change');
      const [{ config }] = (await fx.raw('SELECT config FROM jobs')) as [{ config: unknown }];
      const stored = typeof config === 'string' ? config : JSON.stringify(config);
      const [{ after }] = (await fx.raw(`SELECT after FROM audit_log WHERE seq = 3`)) as [{ after: unknown }];
      if (engine.name === 'sqlite') {
        await fx.raw(`UPDATE audit_log SET after = ? WHERE seq = 3`, ['{']);
        await fx.raw(`UPDATE jobs SET config = ?`, [stored.replace('"dcaAmount":30', '"dcaAmount":"abc"')]);
      } else {
        // PostgreSQL keeps JSON in jsonb: it cannot hold invalid JSON. A config value of the wrong type, then.
        await fx.raw(`UPDATE jobs SET config = jsonb_set(config, '{accumulate,dcaAmount}', '"abc"')`);
      }
      let report = await store.verifyAudit();
      const expected = [
        ...(engine.name === 'sqlite' ? ['hash does not match the entry (it was altered)', 'its before or after is not valid JSON (it was altered)'] : []),
        'the job row cannot be read',
      ];
      assert.deepEqual(report.problems.map((x) => (x.problem.startsWith('the job row cannot be read: the stored config of job') ? 'the job row cannot be read' : x.problem)), expected);
      // Any other reader of such a row says the database is damaged (exit 5), not that the caller erred.
      await rejectsWith(store.jobs.get({ tokenAddress: TOKEN }), 'STORAGE_CORRUPT');
      await rejectsWith(store.jobs.list(), 'STORAGE_CORRUPT');
      // scan lists around it: the damaged job named, with what is wrong.
      const scanned = await store.jobs.scan();
      assert.deepEqual(scanned.jobs, []);
      assert.deepEqual(scanned.damaged.map((d) => [d.tokenAddress, d.error.code]), [[TOKEN, 'STORAGE_CORRUPT']]);
      assert.match(scanned.damaged[0]!.error.message, /^the stored config of job \S+ is not valid: accumulate\.dcaAmount/);
      await fx.raw(`UPDATE jobs SET config = ${p(1)}`, [stored]);
      if (engine.name === 'sqlite') {
        const error = await rejectsWith(store.history({ tokenAddress: TOKEN }), 'STORAGE_CORRUPT');
        assert.match(String(error['message']), /^audit entry 3 of job:\S+ is not valid JSON$/);
        await fx.raw(`UPDATE audit_log SET after = ? WHERE seq = 3`, [after]);
        // Amounts and the strategy state as botstate never writes them (SQLite keeps them as text).
        for (const [column, value, said] of [
          ['token_balance', '7.50', /the stored tokenBalance of job \S+ is not a canonical decimal: "7\.50"$/],
          ['token_balance', '-5', /the stored tokenBalance of job \S+ is negative: -5$/],
          ['strategy_state', '{', /the stored strategyState of job \S+ is not valid JSON$/],
          // A strategy reading "unknown" as long ago would buy on every tick.
          ['last_dca_buy_time', 'unknown', /the stored lastDcaBuyTime of job \S+ is not a time: "unknown"$/],
          ['updated_at', '2026-13-01T00:00:00.000Z', /the stored updatedAt of job \S+ is not a time: "2026-13-01T00:00:00\.000Z"$/],
        ] as const) {
          const [row] = (await fx.raw(`SELECT ${column} AS was FROM jobs`)) as [{ was: string | null }];
          const was = row.was;
          await fx.raw(`UPDATE jobs SET ${column} = ?`, [value]);
          assert.match(String((await rejectsWith(store.jobs.get({ tokenAddress: TOKEN }), 'STORAGE_CORRUPT'))['message']), said);
          if (column === 'token_balance') {
            // A write computes from the row: the damage is said before any arithmetic, nothing written.
            const before = await fx.dump();
            const job = { id: (await store.history({ tokenAddress: TOKEN }))[0]!.entityId };
            for (const side of ['BUY', 'SELL'] as const) {
              const recorded = store.ledger.recordTrade({ job, clientOrderId: `o-${side}`, side, reason: 'DCA', baseAmount: '1', quoteAmount: '1', priceUsd: '1' });
              assert.match(String((await rejectsWith(recorded, 'STORAGE_CORRUPT'))['message']), said);
            }
            assert.equal(await fx.dump(), before);
          }
          const problems = (await store.verifyAudit()).problems.map((x) => x.problem);
          assert.equal(problems.length, 1, problems.join('\n'));
          assert.match(problems[0]!, new RegExp(`^the job row cannot be read: ${said.source}`));
          await fx.raw(`UPDATE jobs SET ${column} = ?`, [was]);
        }
      }
      await fx.raw(`UPDATE jobs SET created_at = ${p(1)}, updated_at = ${p(2)}`, ['2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z']);
      report = await store.verifyAudit();
      assert.deepEqual(report.problems.map((x) => x.problem), [
        "the job's createdAt differs from what its audit log records",
        "the job's updatedAt is not the time of its last audit entry",
      ]);
    });

    it('a job time no reader can compute with (month 13; infinity on PostgreSQL) is damage, listed around by scan', async () => {
      const [bad, column] = engine.name === 'sqlite' ? ['2026-13-01T00:00:00.000Z', 'last_dca_buy_time'] : ['infinity', 'stopped_at'];
      await fx.raw(`UPDATE jobs SET ${column} = ${p(1)}`, [bad]);
      const error = await rejectsWith(store.jobs.get({ tokenAddress: TOKEN }), 'STORAGE_CORRUPT');
      assert.match(String(error['message']), new RegExp(`is not a time: "${bad.replace(/\./g, '\\.')}"$`));
      const scanned = await store.jobs.scan();
      assert.deepEqual([scanned.jobs.length, scanned.damaged.map((d) => d.error.code)], [0, ['STORAGE_CORRUPT']]);
      // A time earlier versions wrote (no milliseconds) is still a time.
      await fx.raw(`UPDATE jobs SET ${column} = ${p(1)}`, ['2026-11-26T03:00:00Z']);
      await store.jobs.get({ tokenAddress: TOKEN });
    });

    it('verify finds a job balance edited without an audit entry', async () => {
      await fx.raw(`UPDATE jobs SET token_balance = ${p(1)}`, ['1000000']);
      const report = await store.verifyAudit();
      assert.deepEqual(report.problems.map((x) => x.problem), [
        "the job's tokenBalance differs from what its audit log records",
        "the job's tokenBalance 1000000 is not its executed buys less its executed sells (7.5)",
      ]);
    });

    it('verify finds balances that do not add up to the executed trades even when every write was audited (a bug, or a history rewritten with its hashes)', async () => {
      // A balance written through botstate's own audited path, wrong: the chain is intact and the
      // replay agrees with the row; only the arithmetic of the trades shows it.
      await store.transaction(async (tx) => {
        const row = await requireJob(tx, store.dialect, { tokenAddress: TOKEN }, true);
        await updateJob(tx, store.dialect, row, { set: { tokenBalance: '8', totalAccumulated: '24' }, at: new Date().toISOString(), actor: 'bug', action: 'update' });
      });
      const problems = (await store.verifyAudit()).problems.map((x) => x.problem);
      assert.deepEqual(problems, [
        "the job's tokenBalance 8 is not its executed buys less its executed sells (7.5)",
        "the job's totalAccumulated 24 is not the quote its executed buys paid (25)",
      ]);
    });

    it('verify finds a job status edited without an audit entry', async () => {
      await fx.raw(`UPDATE jobs SET status = 'RUNNING'`);
      const report = await store.verifyAudit();
      assert.deepEqual(report.problems.map((x) => x.problem), ["the job's status differs from what its audit log records"]);
    });

    it('entries are stamped when written: a trade filled in the past does not move the log or updatedAt back', async () => {
      const job = await store.jobs.get({ tokenAddress: TOKEN });
      const old = '2020-01-02T03:04:05.006Z';
      const { trade } = await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'o-past', side: 'BUY', reason: 'DIP_BUY', baseAmount: '1', quoteAmount: '2', priceUsd: '2', executedAt: old });
      assert.equal(trade.executedAt, old);
      const entries = await store.history({ id: job.id });
      for (let i = 1; i < entries.length; i++) assert.ok(entries[i]!.at >= entries[i - 1]!.at, `seq ${entries[i]!.seq} is not before seq ${entries[i - 1]!.seq}`);
      // Not moved back to the fill time (two writes may share a millisecond: not earlier, not necessarily later).
      assert.ok((await store.jobs.get({ id: job.id })).updatedAt >= job.updatedAt);
    });

    it('verify reads one snapshot: changes committed while it runs are not reported as tampering', async () => {
      const writer = await fx.open();
      const jobs = [];
      for (let i = 1; i <= 4; i++) jobs.push(await writer.jobs.start({ tokenAddress: `0x${(0xa0 + i).toString(16).padStart(40, '0')}` }));
      let writing = true;
      let writes = 0;
      const writes$ = Promise.all(
        jobs.map(async (job) => {
          for (let k = 1; writing; k++, writes++) await writer.jobs.updateState({ id: job.id }, { recentHigh: String(k) });
        }),
      );
      const reports = [];
      try {
        // 25 reads at least, and on until the writers have committed 10 changes meanwhile: on a
        // loaded machine 25 reads once saw only 9 (the writers share the CPU with them).
        for (let i = 0; i < 25 || (writes < 10 && i < 1000); i++) reports.push(await store.verifyAudit());
      } finally {
        writing = false;
        await writes$;
      }
      assert.ok(writes >= 10, `the writers kept writing (${writes} changes)`);
      assert.deepEqual(reports.flatMap((r) => r.problems), []);
    });
  });
}
