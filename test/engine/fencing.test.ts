/**
 * Fencing (DESIGN.md §7): a daemon whose lease on a job expired and was taken over can no longer
 * write to that job, whatever it still believes; the new holder, at epoch + 1, can. On both engines,
 * with two Leases instances on one store and a fake clock (so the expiry is chosen, not waited for).
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { leaseHolder, Leases, shareOf } from '../../src/engine/leases.ts';
import { isBotstateError } from '../../src/errors.ts';
import type { Job } from '../../src/jobs/job-rows.ts';
import type { Executor } from '../../src/store/adapter.ts';
import type { Fence } from '../../src/store/context.ts';
import type { Store } from '../../src/store/store.ts';
import pg from 'pg';
import { ENGINES, lockTable, PG_URL, TOKEN, tokenAddress, type Fixture } from '../helpers/engines.ts';

const T0 = Date.parse('2026-11-22T00:00:00.000Z');
const TTL = 1000;
const leaseLost = (e: unknown) => isBotstateError(e, 'LEASE_LOST');

/** A daemon's Leases on `store`, registered, with lease times read from `now`. */
async function registered(store: Store, id: string, now: () => number): Promise<Leases> {
  const leases = new Leases(store, id, { ttlMs: TTL, now });
  await leases.register();
  return leases;
}

/** Starts `n` jobs (tokens 0x…1 to 0x…n), and returns their ids in that order. */
async function startJobs(store: Store, n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 1; i <= n; i++) ids.push((await store.jobs.start({ tokenAddress: `0x${i.toString(16).padStart(40, '0')}` })).id);
  return ids;
}

for (const engine of ENGINES) {
  describe(`fencing [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    beforeEach(async () => {
      fx = await engine.create();
    });
    afterEach(() => fx.cleanup());

    it("a taken-over lease fences the old holder's writes out; the new holder writes at epoch + 1", async () => {
      const store = await fx.open();
      const job = await store.jobs.start({ tokenAddress: TOKEN, tokenSymbol: 'LGI' });
      let now = T0;
      const a = new Leases(store, 'daemon-A', { ttlMs: TTL, now: () => now });
      const b = new Leases(store, 'daemon-B', { ttlMs: TTL, now: () => now });
      await a.register();

      const heldA = await a.sync();
      assert.deepEqual(heldA.get(job.id), { owner: 'daemon-A', epoch: 1 });
      const fenceA: Fence = heldA.get(job.id)!;

      // While A's lease runs, B cannot take the job, and A writes.
      now = T0 + TTL - 1;
      assert.equal((await b.sync()).size, 0);
      const stateByA = await store.jobs.updateState({ id: job.id }, { recentHigh: '1.5' }, { fence: fenceA });
      assert.equal(stateByA.recentHigh, '1.5');
      const intentByA = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }, { fence: fenceA });
      const fillOfA = { status: 'EXECUTED', baseAmount: '4', quoteAmount: '10', priceUsd: '2.5' } as const;

      // A stops renewing (a stalled or killed daemon); once the lease has expired, B takes it over.
      now = T0 + TTL + 1;
      const heldB = await b.sync();
      assert.deepEqual(heldB.get(job.id), { owner: 'daemon-B', epoch: 2 });
      const fenceB: Fence = heldB.get(job.id)!;

      // Every fenced write of A is refused with LEASE_LOST and changes nothing.
      const before = await fx.dump();
      const versionBefore = (await store.jobs.get({ id: job.id })).version;
      await assert.rejects(store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }, { fence: fenceA }), leaseLost);
      await assert.rejects(store.jobs.updateState({ id: job.id }, { recentHigh: '2' }, { fence: fenceA }), leaseLost);
      await assert.rejects(store.jobs.saveScratch({ id: job.id }, { a: 1 }, { fence: fenceA }), leaseLost);
      await assert.rejects(store.jobs.fail({ id: job.id }, 'A thinks it failed', { fence: fenceA }), leaseLost);
      await assert.rejects(store.ledger.settle(intentByA.trade.clientOrderId, fillOfA, { fence: fenceA }), leaseLost);
      // Inside a caller's transaction too: the whole transaction rolls back.
      await assert.rejects(
        store.transaction(async () => {
          await store.jobs.saveScratch({ id: job.id }, { b: 2 }, { fence: fenceB }); // allowed, but rolled back with the rest
          await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }, { fence: fenceA });
        }),
        leaseLost,
      );
      // The right owner at a stale epoch is fenced out as well, and by token address as by id.
      await assert.rejects(store.jobs.updateState({ id: job.id }, { recentHigh: '3' }, { fence: { owner: 'daemon-B', epoch: 1 } }), leaseLost);
      await assert.rejects(store.jobs.updateState({ tokenAddress: TOKEN }, { recentHigh: '3' }, { fence: fenceA }), leaseLost);
      // A job that does not exist is reported as such, not as a lost lease.
      await assert.rejects(
        store.jobs.updateState({ id: '00000000-0000-7000-8000-000000000000' }, { recentHigh: '3' }, { fence: fenceB }),
        (e: unknown) => isBotstateError(e, 'JOB_NOT_FOUND'),
      );
      assert.equal(await fx.dump(), before, 'a refused fenced write changed the database');

      // A's next sync does not get the job back: B's lease is valid.
      assert.equal((await a.sync()).has(job.id), false);

      // B's fenced write succeeds, with the clientOrderId derived from the job and its sequence.
      const { trade, job: after } = await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }, { fence: fenceB });
      assert.equal(trade.status, 'PENDING');
      assert.equal(trade.clientOrderId, `${job.id}-${versionBefore + 1}`);
      assert.equal(after.version, versionBefore + 1);
      const settled = await store.ledger.settle(
        trade.clientOrderId,
        { status: 'EXECUTED', baseAmount: '8.000000000000000001', quoteAmount: '10', priceUsd: '1.25', executedAt: trade.createdAt },
        { fence: fenceB },
      );
      assert.equal(settled.job.tokenBalance, '8.000000000000000001');
      // The intent A left open is B's to settle now.
      assert.equal((await store.ledger.settle(intentByA.trade.clientOrderId, fillOfA, { fence: fenceB })).job.tokenBalance, '12.000000000000000001');
    });

    it('a job that stops needing a daemon while a sync runs is not counted as held: no job still needed is shed for it', { skip: engine.name !== 'postgres' && 'PostgreSQL only: there each statement of a sync sees the commits made before it began' }, async () => {
      const store = await fx.open();
      // The liquidating job first: the needed one has the higher id, which a shed would pick first.
      const liquidating = await store.jobs.start({ tokenAddress: tokenAddress(0xb2), tokenSymbol: 'OTH' });
      await store.jobs.liquidate({ id: liquidating.id });
      const needed = await store.jobs.start({ tokenAddress: TOKEN, tokenSymbol: 'LGI' });
      assert.ok(needed.id > liquidating.id);
      const a = new Leases(store, 'daemon-A', { ttlMs: TTL, now: () => T0 });
      await a.register();
      assert.equal((await a.sync()).size, 2);
      // The sync's second UPDATE of job_leases (the hand-back of jobs no longer active) holds on
      // after it has run, and meanwhile another session completes the liquidation.
      await fx.raw(`CREATE TABLE pause_at (n int);
        INSERT INTO pause_at VALUES (2);
        CREATE FUNCTION pause_sync() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN UPDATE pause_at SET n = n - 1; IF (SELECT n FROM pause_at) = 0 THEN PERFORM pg_sleep(0.5); END IF; RETURN NULL; END $$;
        CREATE TRIGGER pause_sync AFTER UPDATE ON job_leases FOR EACH STATEMENT EXECUTE FUNCTION pause_sync();`);
      const syncing = a.sync();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const other = await fx.open();
      try {
        await other.jobs.completeLiquidation({ id: liquidating.id });
      } finally {
        await other.close();
      }
      const held = await syncing;
      assert.ok(Number((await fx.raw('SELECT n FROM pause_at'))[0]!['n']) <= 0, 'the sync waited where the test meant it to');
      assert.ok(held.has(needed.id), 'the job still RUNNING stays held');
      assert.equal(held.get(needed.id)!.epoch, 1, 'and keeps its epoch');
      await fx.raw('DROP TRIGGER pause_sync ON job_leases');
      // The next sync hands back the job gone IDLE.
      assert.deepEqual([...(await a.sync()).keys()], [needed.id]);
    });

    it('a daemon that renews between another\'s judging it dead and marking it so is left running, with its leases', { skip: engine.name !== 'postgres' && 'PostgreSQL only: there each statement of a registration sees the commits made before it began' }, async () => {
      const store = await fx.open();
      const job = await store.jobs.start({ tokenAddress: TOKEN, tokenSymbol: 'LGI' });
      let now = T0;
      const b = new Leases(store, 'daemon-B', { ttlMs: TTL, now: () => now });
      await b.register();
      assert.deepEqual((await b.sync()).get(job.id), { owner: 'daemon-B', epoch: 1 });
      // B stalls past its TTL; A registers and reads B's row as dead; B wakes and renews (its own
      // session, committed) before A's writes.
      now = T0 + TTL + 500;
      const storeB = await fx.open();
      const bAwake = new Leases(storeB, 'daemon-B', { ttlMs: TTL, now: () => now });
      let wake: (() => Promise<unknown>) | undefined = () => bAwake.renew();
      const afterRead = (tx: Executor): Executor => ({
        all: async (sql, params) => {
          const rows = await tx.all(sql, params);
          if (wake && sql.startsWith('SELECT id, host, pid, heartbeat_at')) {
            const w = wake;
            wake = undefined;
            await w();
          }
          return rows as never;
        },
        get: (sql, params) => tx.get(sql, params),
        run: (sql, params) => tx.run(sql, params),
        exec: (sql) => tx.exec(sql),
      });
      const watched = new Proxy(store, {
        get(target, key) {
          if (key === 'transaction') return (fn: (tx: Executor) => Promise<unknown>) => target.transaction((tx) => fn(afterRead(tx)));
          const value = Reflect.get(target, key, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      });
      try {
        const a = new Leases(watched, 'daemon-A', { ttlMs: TTL, now: () => now });
        await a.register();
        assert.equal(wake, undefined, 'B renewed where the test meant it to');
        const rows = await fx.raw(`SELECT id, stopped_at FROM daemon_instances ORDER BY id`);
        assert.deepEqual(rows.map((r) => [r['id'], r['stopped_at']]), [['daemon-A', null], ['daemon-B', null]]);
        assert.deepEqual((await b.sync()).get(job.id), { owner: 'daemon-B', epoch: 1 }, 'B keeps its lease, at its epoch');
      } finally {
        await storeB.close();
      }
    });

    it('a lease released by a graceful stop is taken at a new epoch at once, and the old fence stays dead', async () => {
      const store = await fx.open();
      const job = await store.jobs.start({ tokenAddress: TOKEN, tokenSymbol: 'LGI' });
      const now = T0;
      const a = new Leases(store, 'daemon-A', { ttlMs: TTL, now: () => now });
      const b = new Leases(store, 'daemon-B', { ttlMs: TTL, now: () => now });
      const fenceA = (await a.sync()).get(job.id)!;
      assert.equal(fenceA.epoch, 1);
      await a.release();
      const fenceB = (await b.sync()).get(job.id)!;
      assert.deepEqual(fenceB, { owner: 'daemon-B', epoch: 2 });
      await assert.rejects(store.jobs.updateState({ id: job.id }, { recentHigh: '2' }, { fence: fenceA }), leaseLost);
      assert.equal((await store.jobs.updateState({ id: job.id }, { recentHigh: '2' }, { fence: fenceB })).recentHigh, '2');
    });

    it(
      engine.name === 'postgres'
        ? 'a daemon another one took for dead counts again for the fair share once it heartbeats'
        : 'a daemon another one took for dead (stalled past its TTL) learns it at its next heartbeat and must stop: one daemon per SQLite file',
      async () => {
        const store = await fx.open();
        let now = T0;
        const a = new Leases(store, 'daemon-A', { ttlMs: TTL, now: () => now });
        await a.register();
        const sql = (text: string): string => (fx.engine === 'sqlite' ? text : text.replace(/\?/g, (_, i: number) => `$${text.slice(0, i).split('?').length}`));
        const stopped = async () => (await fx.raw(sql('SELECT stopped_at FROM daemon_instances WHERE id = ?'), ['daemon-A']))[0]!['stopped_at'];
        // A stalls past its TTL; B registers, takes A for dead and marks it stopped.
        now = T0 + TTL + 1;
        const b = new Leases(store, 'daemon-B', { ttlMs: TTL, now: () => now });
        await b.register();
        assert.notEqual(await stopped(), null);
        if (fx.engine === 'postgres') {
          await a.renew();
          assert.equal(await stopped(), null);
          await fx.raw(sql('UPDATE daemon_instances SET stopped_at = ? WHERE id = ?'), [new Date(now).toISOString(), 'daemon-A']);
          await a.sync();
          assert.equal(await stopped(), null);
        } else {
          const before = await fx.dump();
          const tookOver = (e: unknown) => isBotstateError(e, 'DAEMON_RUNNING') && /took .* over while this one was stalled/.test(e.message) && e.message.includes(`pid ${process.pid}`);
          await assert.rejects(a.renew(), tookOver);
          await assert.rejects(a.sync(), tookOver);
          assert.equal(await fx.dump(), before, 'A wrote nothing');
        }
      },
    );

    it("each daemon is judged by its own lease TTL: a newcomer with a shorter one takes no live daemon's jobs, idle or not", async () => {
      const store = await fx.open();
      const jobs: Job[] = [];
      for (let i = 1; i <= 2; i++) jobs.push(await store.jobs.start({ tokenAddress: `0x${i.toString(16).padStart(40, '0')}` }));
      let now = T0;
      // A runs with a long TTL, so it heartbeats seldom: 3 s after its last heartbeat it is live.
      const a = new Leases(store, 'daemon-A', { ttlMs: 60_000, now: () => now });
      await a.register();
      assert.equal((await a.sync()).size, 2);
      now = T0 + 3000;
      const b = new Leases(store, 'daemon-B', { ttlMs: 1000, now: () => now });
      if (engine.name === 'sqlite') {
        // One daemon per file: the newcomer is refused, not handed the live one's file.
        await assert.rejects(b.register(), (e: unknown) => isBotstateError(e, 'DAEMON_RUNNING'));
      } else {
        await b.register();
        // B's share counts A (1 of 2); both of A's leases are live, so B takes none.
        assert.equal((await b.sync()).size, 0);
        // A then sheds its surplus (its share is 1 of 2), which B takes: one each.
        assert.equal((await a.sync()).size, 1);
        assert.equal((await b.sync()).size, 1);
      }
      const instances = await fx.raw('SELECT id, stopped_at FROM daemon_instances ORDER BY id');
      assert.deepEqual(instances.find((r) => r['id'] === 'daemon-A')!['stopped_at'], null, 'A is not marked stopped');
      const [lease] = await fx.raw("SELECT max(epoch) AS e FROM job_leases WHERE owner = 'daemon-A'");
      assert.equal(Number(lease!['e']), 1, "A's remaining lease was never taken from it");

      // Idle (every job paused, no lease held), A is still live for a newcomer with a short TTL.
      for (const j of jobs) await store.jobs.pause({ id: j.id });
      now = T0 + 6000;
      await a.sync();
      now = T0 + 9000;
      const c = new Leases(store, 'daemon-C', { ttlMs: 1000, now: () => now });
      if (engine.name === 'sqlite') await assert.rejects(c.register(), (e: unknown) => isBotstateError(e, 'DAEMON_RUNNING'));
      else await c.register();
      const [idle] = await fx.raw("SELECT stopped_at FROM daemon_instances WHERE id = 'daemon-A'");
      assert.equal(idle!['stopped_at'], null, 'the idle A is not taken for dead');
    });

    it("a daemon of an older version (no TTL on its row) still holding leases is not taken for dead by a newcomer with a shorter TTL", async () => {
      const store = await fx.open();
      for (let i = 1; i <= 2; i++) await store.jobs.start({ tokenAddress: `0x${i.toString(16).padStart(40, '0')}` });
      let now = T0;
      const a = new Leases(store, 'daemon-A', { ttlMs: 60_000, now: () => now });
      await a.register();
      assert.equal((await a.sync()).size, 2);
      // As an older botstate on another host leaves its row after the upgrade: no lease_ttl_ms.
      await fx.raw("UPDATE daemon_instances SET lease_ttl_ms = NULL, host = 'another-host' WHERE id = 'daemon-A'");
      now = T0 + 10_000;
      const b = new Leases(store, 'daemon-B', { ttlMs: 5000, now: () => now });
      if (engine.name === 'sqlite') await assert.rejects(b.register(), (e: unknown) => isBotstateError(e, 'DAEMON_RUNNING'));
      else await b.register();
      const [row] = await fx.raw("SELECT stopped_at FROM daemon_instances WHERE id = 'daemon-A'");
      assert.equal(row!['stopped_at'], null);
      const leases = await fx.raw("SELECT DISTINCT owner, epoch FROM job_leases");
      assert.deepEqual(leases.map((r) => [r['owner'], Number(r['epoch'])]), [['daemon-A', 1]]);
    });

    it("a survivor with a long lease TTL takes a dead short-TTL daemon's jobs once that daemon's own TTL has passed", { skip: engine.name === 'sqlite' && 'one daemon per SQLite file' }, async () => {
      const store = await fx.open();
      for (let i = 1; i <= 4; i++) await store.jobs.start({ tokenAddress: `0x${i.toString(16).padStart(40, '0')}` });
      let now = T0;
      const short = new Leases(store, 'daemon-S', { ttlMs: 1000, now: () => now });
      const long = new Leases(store, 'daemon-L', { ttlMs: 60_000, now: () => now });
      await short.register();
      await long.register();
      for (let round = 0; round < 2; round++) await Promise.all([short.sync(), long.sync()].map((p) => p.catch(() => undefined)));
      assert.equal((await short.sync()).size + (await long.sync()).size, 4);
      // S dies on another host (no pid to check), just after its last heartbeat.
      await fx.raw("UPDATE daemon_instances SET host = 'another-host' WHERE id = 'daemon-S'");
      short.forget();
      // 1.5 s later, well inside L's TTL but past S's own: L no longer counts S, and takes all four.
      now = T0 + 1500;
      assert.equal((await long.sync()).size, 4);
    });

    it('a daemon with --max-jobs below an even split takes its maximum and the others share the rest: no job is left without a daemon', { skip: engine.name === 'sqlite' && 'one daemon per SQLite file' }, async () => {
      const store = await fx.open();
      for (let i = 1; i <= 9; i++) await store.jobs.start({ tokenAddress: `0x${i.toString(16).padStart(40, '0')}` });
      const now = T0;
      const capped = new Leases(store, 'daemon-A', { ttlMs: TTL, now: () => now, maxJobs: 1 });
      const b = new Leases(store, 'daemon-B', { ttlMs: TTL, now: () => now });
      const c = new Leases(store, 'daemon-C', { ttlMs: TTL, now: () => now });
      for (const d of [capped, b, c]) await d.register();
      let held: number[] = [];
      for (let round = 0; round < 3; round++) held = [(await capped.sync()).size, (await b.sync()).size, (await c.sync()).size];
      assert.deepEqual(held, [1, 4, 4]);
      const unowned = await fx.raw("SELECT count(*) AS n FROM job_leases WHERE owner = ''");
      assert.equal(Number(unowned[0]!['n']), 0);
    });

    it("renew({ check }) counts the leases it was given that are no longer at their epoch, not the jobs the daemon let go", async () => {
      const store = await fx.open();
      const ids = await startJobs(store, 3);
      let now = T0;
      const a = await registered(store, 'daemon-A', () => now);
      // A start-up's sync reads only how many it holds: compared by number.
      assert.equal((await a.syncForRecovery()).held, 3);
      const atStart = a.known;
      assert.deepEqual(await a.renew({ check: atStart }), { had: 3, lost: 0 });
      assert.equal(await a.renew(), undefined);
      assert.equal((await a.sync()).size, 3);
      const synced = a.known;
      // A job paused and let go by a later sync is no loss: its lease kept its epoch; nor, resumed
      // and taken again by a sync of its own (at a new epoch).
      await store.jobs.pause({ id: ids[0]! });
      assert.equal((await a.sync()).size, 2);
      assert.deepEqual(await a.renew({ check: synced }), { had: 3, lost: 0 });
      await store.jobs.resume({ id: ids[0]! });
      assert.equal((await a.sync()).size, 3);
      assert.deepEqual(await a.renew({ check: synced }), { had: 3, lost: 0 });
      await store.jobs.pause({ id: ids[0]! });
      assert.equal((await a.sync()).size, 2);
      // The leases run out; another daemon takes one (at a new epoch): that one is lost, the
      // other, taken by no one, is renewed at its epoch.
      now = T0 + TTL + 1;
      await fx.raw(`UPDATE job_leases SET owner = 'daemon-B', epoch = epoch + 1 WHERE job_id = '${ids[1]}'`);
      assert.deepEqual(await a.renew({ check: synced }), { had: 3, lost: 1 });
      // The same job back at another epoch is no more its own.
      await fx.raw(`UPDATE job_leases SET owner = 'daemon-A' WHERE job_id = '${ids[1]}'`);
      assert.deepEqual(await a.renew({ check: synced }), { had: 3, lost: 1 });
      // By number after a start-up: one lease fewer than it held.
      assert.deepEqual(await a.renew({ check: atStart }), { had: 3, lost: 1 });
      if (engine.name === 'sqlite') return; // one daemon per SQLite file
      // A job shed to a daemon that joins (handed back by a sync of its own, then claimed) is no loss either.
      now = T0;
      await a.renew();
      assert.equal((await a.sync()).size, 2);
      const before = a.known;
      const b = new Leases(store, 'daemon-B', { ttlMs: TTL, now: () => now });
      await b.register();
      assert.equal((await a.sync()).size, 1);
      assert.equal((await b.sync()).size, 1);
      assert.deepEqual(await a.renew({ check: before }), { had: 2, lost: 0 });
    });

    it('a daemon at its --max-jobs takes the jobs with an open intent first: their orders are reconciled, whatever waits', async () => {
      const store = await fx.open();
      const ids = await startJobs(store, 5);
      // The last two jobs created (the highest ids, the last by id) have an order whose outcome is unknown.
      for (const id of ids.slice(3)) await store.ledger.recordIntent({ job: { id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const capped = new Leases(store, 'daemon-A', { ttlMs: TTL, now: () => T0, maxJobs: 2 });
      await capped.register();
      assert.deepEqual([...(await capped.sync()).keys()].sort(), ids.slice(3).sort());
    });

    it('a daemon sheds its surplus, but never a job whose step it is running (it may be committing an intent)', { skip: engine.name === 'sqlite' && 'one daemon per SQLite file' }, async () => {
      const store = await fx.open();
      const ids = await startJobs(store, 4);
      const now = T0;
      const a = new Leases(store, 'daemon-A', { ttlMs: TTL, now: () => now });
      const b = new Leases(store, 'daemon-B', { ttlMs: TTL, now: () => now });
      await a.register();
      assert.equal((await a.sync()).size, 4);
      await b.register();
      // A's share is now 2. It sheds from the highest job id down; the two highest are busy.
      const sorted = [...ids].sort();
      const busy = new Set(sorted.slice(2));
      const held = await a.sync(busy);
      assert.deepEqual([...held.keys()].sort(), sorted.slice(2));
      // Once they are no longer busy, nothing more is shed: A holds its share.
      assert.deepEqual([...(await a.sync()).keys()].sort(), sorted.slice(2));
      assert.deepEqual([...(await b.sync()).keys()].sort(), sorted.slice(0, 2));
    });

    it('sync hands paused and shed jobs back only after `leaving` has had them, still held: a fenced write there succeeds', async () => {
      const store = await fx.open();
      const ids = await startJobs(store, 4);
      const now = T0;
      const a = await registered(store, 'daemon-A', () => now);
      const held = await a.sync();
      const calls: string[][] = [];
      const leaving = async (jobIds: readonly string[]) => {
        calls.push([...jobIds].sort());
        for (const id of jobIds) await store.jobs.updateState({ id }, { recentHigh: '7' }, { fence: held.get(id)!, actor: 'daemon-A' });
      };
      // Nothing to hand back: not called.
      await a.sync(undefined, leaving);
      assert.equal(calls.length, 0);
      const [paused] = ids;
      await store.jobs.pause({ id: paused! });
      const after = await a.sync(undefined, leaving);
      assert.deepEqual(calls, [[paused]]);
      assert.equal(after.has(paused!), false);
      assert.equal((await store.jobs.get({ id: paused! })).recentHigh, '7');
      if (engine.name === 'postgres') {
        // A second daemon: A's share is 2 of the 3 active jobs; the one it sheds passes through `leaving` too.
        const b = new Leases(store, 'daemon-B', { ttlMs: TTL, now: () => now });
        await b.register();
        const kept = await a.sync(undefined, leaving);
        assert.equal(kept.size, 2);
        const shed = ids.slice(1).filter((id) => !kept.has(id));
        assert.deepEqual(calls.at(-1), shed);
        assert.equal((await store.jobs.get({ id: shed[0]! })).recentHigh, '7');
      }
      if (engine.name === 'postgres') {
        // A job row another session holds locked: the sync hands the job back without waiting for
        // the row (it holds this daemon's instance row: renew() would wait behind it), unwritten.
        const [held] = [...(await a.sync()).keys()];
        await store.jobs.pause({ id: held! });
        const locker = new pg.Client({ connectionString: PG_URL });
        await locker.connect();
        try {
          await locker.query('BEGIN');
          await locker.query(`SELECT id FROM "${new URL(fx.url).searchParams.get('schema')}".jobs WHERE id = $1 FOR UPDATE`, [held]);
          const before = calls.length;
          const synced = await Promise.race([a.sync(undefined, leaving), new Promise<'stuck'>((resolve) => setTimeout(() => resolve('stuck'), 3000))]);
          assert.notEqual(synced, 'stuck', 'the sync waited for the locked job row');
          assert.equal((synced as Map<string, unknown>).has(held!), false);
          assert.equal(calls.length, before, '`leaving` was not called for the locked job');
        } finally {
          await locker.query('ROLLBACK');
          await locker.end();
        }
      }
      // A failure in `leaving` fails the sync: nothing is handed back.
      const [target] = [...(await a.sync()).keys()];
      await store.jobs.pause({ id: target! });
      await assert.rejects(
        a.sync(undefined, async () => {
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.deepEqual(await fx.raw(`SELECT owner FROM job_leases WHERE job_id = ${engine.name === 'postgres' ? '$1' : '?'}`, [target!]), [{ owner: 'daemon-A' }]);
    });

    it('syncForRecovery claims as sync does, and returns the fences of the held jobs with open intents', async () => {
      const store = await fx.open();
      const jobs: Job[] = [];
      for (let i = 1; i <= 5; i++) jobs.push(await store.jobs.start({ tokenAddress: `0x${i.toString(16).padStart(40, '0')}` }));
      const outside = await store.jobs.start({ tokenAddress: `0x${'f'.repeat(40)}` });
      await store.jobs.pause({ id: outside.id });
      let now = T0;
      const a = new Leases(store, 'daemon-A', { ttlMs: TTL, now: () => now });
      const b = new Leases(store, 'daemon-B', { ttlMs: TTL, now: () => now });
      const heldA = await a.sync();
      assert.equal(heldA.size, 5);
      // A leaves two intents open (one job of them paused meanwhile: an open intent keeps it
      // needing a daemon), and settles a third.
      for (const j of [jobs[1]!, jobs[3]!, jobs[4]!]) {
        await store.ledger.recordIntent({ job: { id: j.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }, { fence: heldA.get(j.id)! });
      }
      const settled = (await store.ledger.pending()).find((t) => t.jobId === jobs[4]!.id)!;
      await store.ledger.settle(settled.clientOrderId, { status: 'FAILED', error: 'rejected' }, { fence: heldA.get(jobs[4]!.id)! });
      await store.jobs.pause({ id: jobs[3]!.id });

      // A stalls; once its leases have expired, B's start-up sync takes all five at epoch 2 and
      // answers with the fences of the two jobs with an open intent.
      now = T0 + TTL + 1;
      const { fences, held } = await b.syncForRecovery();
      assert.equal(held, 5);
      assert.deepEqual(
        [...fences].sort(([x], [y]) => x.localeCompare(y)),
        [jobs[1]!.id, jobs[3]!.id].sort().map((id) => [id, { owner: 'daemon-B', epoch: 2 }]),
      );
      // What sync reports now is the same lease set, at the same epochs.
      const heldB = await b.sync();
      assert.equal(heldB.size, 5);
      for (const job of jobs) assert.deepEqual(heldB.get(job.id), { owner: 'daemon-B', epoch: 2 });
      // From here on A cannot settle what it left open: B reconciles it alone.
      const open = (await store.ledger.pending()).find((t) => t.jobId === jobs[1]!.id)!;
      await assert.rejects(store.ledger.settle(open.clientOrderId, { status: 'FAILED', error: 'x' }, { fence: heldA.get(jobs[1]!.id)! }), leaseLost);
    });

    it('a settle by hand of a job no daemon has leased yet holds off a daemon starting on it until the settle is done', async () => {
      const daemonStore = await fx.open();
      const job = await daemonStore.jobs.start({ tokenAddress: TOKEN });
      const { trade } = await daemonStore.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      assert.deepEqual(await fx.raw('SELECT job_id FROM job_leases'), [], 'no daemon has leased the job');
      const operator = await fx.open();
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      let release!: () => void;
      const gate = new Promise<void>((resolve) => (release = resolve));
      // What `botstate settle` does: the lease checked, then the trade settled, in one transaction.
      const settle = operator.transaction(async (tx) => {
        assert.equal(await leaseHolder(operator, tx, job.id), undefined);
        entered();
        await gate;
        return operator.ledger.settle(trade.clientOrderId, { status: 'FAILED', error: 'never reached the exchange' });
      });
      await inside;
      // A daemon starting meanwhile would lease the job and reconcile (maybe re-send) the intent
      // that is being settled by hand: it waits for the settle instead.
      let synced = false;
      const sync = new Leases(daemonStore, 'daemon-B', { ttlMs: 60_000 }).sync().finally(() => (synced = true));
      await new Promise((resolve) => setTimeout(resolve, 300));
      const waited = !synced;
      release();
      assert.equal(waited, true, "the daemon's sync waits for the settle's transaction");
      assert.equal((await settle).trade.status, 'FAILED');
      assert.deepEqual((await sync).get(job.id), { owner: 'daemon-B', epoch: 1 });
      assert.deepEqual(await daemonStore.ledger.pending(), [], 'the daemon finds nothing left to reconcile');
    });
  });
}

/**
 * Daemons on several hosts: lease times come from the PostgreSQL server's clock, not from each
 * host's. A host clock set an hour ahead or behind (Date.now replaced while that daemon's calls
 * run) neither takes a live daemon for dead nor has its own leases taken for expired, and a
 * stalled daemon's jobs still move after the TTL, measured on the server.
 */
const postgres = ENGINES.find((e) => e.name === 'postgres')!;
describe('lease times on PostgreSQL come from the server, whatever the hosts\' clocks say', { skip: postgres.skip }, () => {
  let fx: Fixture;
  beforeEach(async () => {
    fx = await postgres.create();
  });
  afterEach(() => fx.cleanup());

  const HOUR = 3_600_000;
  const realNow = Date.now;
  /** Runs `fn` on a host whose clock is `skewMs` off. */
  const onHost = async <T>(skewMs: number, fn: () => Promise<T>): Promise<T> => {
    Date.now = () => realNow() + skewMs;
    try {
      return await fn();
    } finally {
      Date.now = realNow;
    }
  };

  it('a host an hour ahead neither takes a live daemon for dead nor steals its leases; a stalled one it takes over after the TTL', async () => {
    const store = await fx.open();
    const job = await store.jobs.start({ tokenAddress: TOKEN, tokenSymbol: 'LGI' });
    const ttl = 1500;
    const a = new Leases(store, 'daemon-A', { ttlMs: ttl });
    const b = new Leases(store, 'daemon-B', { ttlMs: ttl });
    await a.register();
    assert.deepEqual((await a.sync()).get(job.id), { owner: 'daemon-A', epoch: 1 });

    await onHost(HOUR, () => b.register());
    assert.equal((await onHost(HOUR, () => b.sync())).size, 0);
    const instances = await fx.raw('SELECT id, stopped_at FROM daemon_instances ORDER BY id');
    assert.deepEqual(instances, [{ id: 'daemon-A', stopped_at: null }, { id: 'daemon-B', stopped_at: null }]);
    assert.deepEqual((await a.sync()).get(job.id), { owner: 'daemon-A', epoch: 1 });

    // A stalls (it stops heartbeating): after the TTL by the server's clock, B takes the job.
    await new Promise((r) => setTimeout(r, ttl + 200));
    assert.deepEqual((await onHost(HOUR, () => b.sync())).get(job.id), { owner: 'daemon-B', epoch: 2 });
  });

  it("a host an hour behind holds its leases: the others do not take them for expired", async () => {
    const store = await fx.open();
    const job = await store.jobs.start({ tokenAddress: TOKEN, tokenSymbol: 'LGI' });
    const a = new Leases(store, 'daemon-A', { ttlMs: TTL * 10 });
    const c = new Leases(store, 'daemon-C', { ttlMs: TTL * 10 });
    await onHost(-HOUR, () => c.register());
    assert.deepEqual((await onHost(-HOUR, () => c.sync())).get(job.id), { owner: 'daemon-C', epoch: 1 });
    await a.register();
    assert.equal((await a.sync()).size, 0);
    assert.deepEqual((await onHost(-HOUR, () => c.sync())).get(job.id), { owner: 'daemon-C', epoch: 1 });
    // C renews between ticks too, on the server's clock.
    await onHost(-HOUR, () => c.renew());
    const [lease] = await fx.raw('SELECT expires_at > now() AS valid FROM job_leases');
    assert.equal(lease!['valid'], true);
  });
});

describe('shareOf: a daemon\'s share of the active jobs', () => {
  it('splits evenly, rounded up; daemons capped below the split take their maximum and the others share the rest', () => {
    const none = Infinity;
    assert.equal(shareOf(33, [none, none, none], none), 11);
    assert.equal(shareOf(33, [5, none, none], none), 14);
    assert.equal(shareOf(33, [5, none, none], 5), 5);
    assert.equal(shareOf(33, [none, none, none, none], none), 9);
    assert.equal(shareOf(10, [20, none], 20), 5, 'a maximum above the split changes nothing');
    assert.equal(shareOf(33, [5, 5], 5), 5, 'all capped: each takes its maximum');
    assert.equal(shareOf(0, [none], none), 0);
    assert.equal(shareOf(7, [], none), 7);
  });
});

describe('a lock held on the jobs table (PostgreSQL)', { skip: postgres.skip }, () => {
  let fx: Fixture;
  beforeEach(async () => {
    fx = await postgres.create();
  });
  afterEach(() => fx.cleanup());

  it('a sync and a renew() never wait for each other in a cycle: both lock the instance row before the leases', async () => {
    const store = await fx.open();
    const job = await store.jobs.start({ tokenAddress: TOKEN });
    const a = new Leases(store, 'daemon-A', { ttlMs: 10_000 });
    await a.register();
    await a.sync();
    // A lease due for renewal whose job no longer needs a daemon: renew() renews it, the sync hands it back.
    await store.jobs.pause({ id: job.id });
    await fx.raw(`UPDATE job_leases SET expires_at = clock_timestamp() + interval '1 second' WHERE job_id = $1`, [job.id]);
    // Each transaction body counted: PostgreSQL breaks a deadlock by aborting one, which runs again.
    let bodies = 0;
    const transaction = store.transaction.bind(store);
    store.transaction = ((fn: Parameters<typeof transaction>[0]) => transaction((tx) => (bodies++, fn(tx)))) as typeof store.transaction;
    const schema = new URL(fx.url).searchParams.get('schema')!;
    const holder = new pg.Client({ connectionString: PG_URL });
    await holder.connect();
    try {
      // The instance row held for a moment (a slow heartbeat would do): renew() queues on it first.
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM "${schema}".daemon_instances WHERE id = 'daemon-A' FOR UPDATE`);
      const renewing = a.renew();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const syncing = a.sync();
      await new Promise((resolve) => setTimeout(resolve, 300));
      await holder.query('COMMIT');
      await Promise.all([renewing, syncing]);
    } finally {
      await holder.query('ROLLBACK').catch(() => {});
      await holder.end();
      store.transaction = transaction;
    }
    assert.equal(bodies, 2, 'a transaction was aborted (a deadlock) and ran again');
  });

  it("holds a lease sync up, not the heartbeat: renew() between ticks goes on, and the sync's renewal is not already old", async () => {
    const store = await fx.open({ lockTimeoutMs: 0 });
    const job = await store.jobs.start({ tokenAddress: TOKEN });
    const a = new Leases(store, 'daemon-A', { ttlMs: 60_000 });
    await a.register();
    await a.sync();
    const schema = new URL(fx.url).searchParams.get('schema')!;
    const release = await lockTable(fx, 'jobs');
    try {
      let synced = false;
      const syncing = a.sync().finally(() => (synced = true));
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(synced, false, 'the sync waits for the lock');
      // The heartbeat between ticks is not held up behind the waiting sync (it used to be: the
      // sync had locked the instance row and the leases first).
      const renewed = await Promise.race([a.renew().then(() => true), new Promise((resolve) => setTimeout(() => resolve(false), 3000))]);
      assert.equal(renewed, true, 'renew() finished while the sync waited');
      await new Promise((resolve) => setTimeout(resolve, 700));
      await release();
      assert.deepEqual((await syncing).get(job.id), { owner: 'daemon-A', epoch: 1 });
      // The heartbeat the sync wrote is the time after its wait, not before it.
      const [row] = await fx.raw(`SELECT extract(epoch FROM clock_timestamp() - heartbeat_at) AS age FROM "${schema}".daemon_instances WHERE id = 'daemon-A'`);
      assert.ok(Number(row!['age']) < 0.5, `the heartbeat is ${String(row!['age'])} s old`);
    } finally {
      await release();
    }
  });
});
