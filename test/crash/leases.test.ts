/**
 * The lease test (issue 3, "How it is checked"; DESIGN.md §7), PostgreSQL only: three `botstate
 * daemon` children share 24 jobs on one schema, each with --lease-ttl 1500 --tick 50. Repeatedly, one
 * daemon that holds jobs is kill -9'd and NOT restarted at once: every job it held must get a new
 * owner in job_leases within TTL + one tick (+ a slack for this noisy 2-core machine), measured by
 * polling every 50 ms. Then a replacement starts. In between, a daemon is sometimes frozen (SIGSTOP)
 * past its TTL and woken up again, so that fencing has something to refuse.
 *
 * That no two daemons ever ran the same job is checked from the exchange's order log (per job,
 * orders map onto committed intents with strictly increasing sequence numbers; no clientOrderId was
 * filled twice; the audit stream never has two intents open) and from the daemons' own lines, which
 * show the fencing rejections ("lost its lease") where a daemon lost a job it still ran. It ends with
 * the chaos harness's drain and invariants.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import type { Store } from '../../src/store/store.ts';
import { ENGINES, type Fixture } from '../helpers/engines.ts';
import {
  checkInvariants, createJobs, drain, emptyTally, makeRng, readExchange, startDaemon, startExchange,
  type DaemonChild, type DaemonTally, type ExchangeChild, type Rng,
} from './harness.ts';

const TTL = 1500;
const TICK = 50;
const SLACK = 1500;
const JOBS = 24;
const KILLS = 7;
/** Extra rounds where a daemon is frozen (SIGSTOP) past its TTL and then woken: fencing at work. */
const STALLS = 3;
const SEED = process.env['BOTSTATE_CHAOS_SEED'] ?? 'leases-20261122';

const pg = ENGINES.find((e) => e.name === 'postgres')!;

interface Cluster {
  readonly fx: Fixture;
  readonly store: Store;
  readonly exchange: ExchangeChild;
  readonly rng: Rng;
  readonly tally: DaemonTally;
  /** The live daemons. */
  readonly daemons: DaemonChild[];
  readonly dead: DaemonChild[];
  spawn(): Promise<DaemonChild>;
  leases(): Promise<Array<{ job_id: string; owner: string }>>;
  /** Polls job_leases every 50 ms until none of `held` is `victim`'s or nobody's: ms since t0, or -1 after `limitMs`. */
  takeover(victim: DaemonChild, held: readonly string[], t0: number, limitMs: number): Promise<number>;
  /** A random live daemon that holds at least one job, and the jobs it holds. */
  victim(): Promise<DaemonChild>;
}

/**
 * An exchange, 24 jobs and three daemons that have claimed them all; everything killed afterwards.
 * `latencyMs`: the exchange answers every call that much later, so that a daemon spends most of an
 * order's step waiting for it, outside any transaction (where fencing, not a lock, must stop it).
 */
async function withCluster(seed: string, fn: (c: Cluster) => Promise<void>, latencyMs = 0): Promise<void> {
  const fx = await pg.create();
  const dir = mkdtempSync(join(tmpdir(), 'botstate-leases-'));
  const daemons: DaemonChild[] = [];
  const dead: DaemonChild[] = [];
  let exchange: ExchangeChild | undefined;
  try {
    const faults = latencyMs > 0 ? { latencyMs, errorRate: 0, dropRate: 0, lateRate: 0 } : undefined;
    exchange = await startExchange({ dataFile: join(dir, 'paper-exchange.db'), seed, stepMs: 100, faults });
    const store = await fx.open({ actor: 'lease-test' });
    const rng = makeRng(seed);
    const tally = emptyTally();
    await createJobs(store, JOBS, 6, rng);
    const leases = async () => (await fx.raw('SELECT job_id, owner FROM job_leases')) as Array<{ job_id: string; owner: string }>;
    const c: Cluster = {
      fx, store, exchange, rng, tally, daemons, dead, leases,
      async spawn() {
        const d = startDaemon({ exchangeUrl: exchange!.url, dbUrl: fx.url, tickMs: TICK, leaseTtlMs: TTL, tally, name: `daemon-${daemons.length + dead.length}` });
        daemons.push(d);
        assert.ok(await d.recovered(30_000), `a daemon did not start: ${d.describeExit()}`);
        assert.ok(d.instanceId, 'the daemon did not print its instance id');
        return d;
      },
      async takeover(victim, held, t0, limitMs) {
        while (performance.now() - t0 < limitMs) {
          const owners = new Map((await leases()).map((r) => [r.job_id, r.owner]));
          if (held.every((id) => owners.get(id) !== victim.instanceId && owners.get(id) !== '')) return performance.now() - t0;
          await sleep(50);
        }
        return -1;
      },
      async victim() {
        const rows = await leases();
        const holders = daemons.filter((d) => rows.some((r) => r.owner === d.instanceId));
        assert.ok(holders.length > 0, 'no live daemon holds a job');
        return rng.pick(holders);
      },
    };
    for (let i = 0; i < 3; i++) await c.spawn();
    const deadline = performance.now() + 15_000;
    for (;;) {
      const rows = await leases();
      const live = new Set(daemons.map((d) => d.instanceId));
      if (rows.length === JOBS && rows.every((r) => live.has(r.owner))) break;
      assert.ok(performance.now() < deadline, `not every job was claimed within 15 s: ${JSON.stringify(rows.map((r) => r.owner))}`);
      await sleep(50);
    }
    await fn(c);
  } finally {
    for (const d of [...daemons, ...dead]) {
      d.proc.child.kill('SIGCONT');
      await d.proc.kill9();
    }
    await exchange?.proc.kill9();
    await fx.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}

interface InFlight {
  readonly jobId: string;
  readonly symbol: string;
  readonly clientOrderId: string;
}

/** `victim`'s open intents on the jobs it holds: orders it has committed and not settled yet. */
async function openIntents(c: Cluster, victim: DaemonChild): Promise<InFlight[]> {
  const rows = (await c.fx.raw(
    "SELECT t.job_id, j.token_symbol, t.client_order_id FROM trades t JOIN jobs j ON j.id = t.job_id JOIN job_leases l ON l.job_id = t.job_id WHERE t.status = 'PENDING' AND l.owner = $1",
    [victim.instanceId],
  )) as Array<{ job_id: string; token_symbol: string; client_order_id: string }>;
  return rows.map((r) => ({ jobId: r.job_id, symbol: r.token_symbol, clientOrderId: r.client_order_id }));
}

/**
 * Freezes `victim` (SIGSTOP) until its jobs have moved or `limitMs` passed, then wakes it; the takeover
 * time or -1. With `midOrder`, it is frozen while it has an order in flight (its intent committed,
 * its fill not yet): `inFlight` are those orders, read once it is frozen (they cannot change then).
 */
async function freeze(c: Cluster, victim: DaemonChild, limitMs: number, midOrder = false): Promise<{ held: string[]; took: number; inFlight: InFlight[]; wokeAt: number }> {
  let inFlight: InFlight[] = [];
  for (let attempt = 0; midOrder && attempt < 200; attempt++) {
    if ((await openIntents(c, victim)).length === 0) {
      await sleep(5);
      continue;
    }
    victim.proc.child.kill('SIGSTOP');
    // A COMMIT it sent just before it stopped still lands: read once that is over.
    await sleep(100);
    inFlight = await openIntents(c, victim);
    if (inFlight.length > 0) break;
    victim.proc.child.kill('SIGCONT');
  }
  assert.ok(!midOrder || inFlight.length > 0, `${victim.instanceId} was never caught with an order in flight`);
  const t0 = performance.now();
  victim.proc.child.kill('SIGSTOP');
  try {
    const held = (await c.leases()).filter((r) => r.owner === victim.instanceId).map((r) => r.job_id);
    return { held, took: await c.takeover(victim, held, t0, limitMs), inFlight, wokeAt: victim.proc.lines.length };
  } finally {
    victim.proc.child.kill('SIGCONT');
  }
}

describe('leases: 3 daemons on one PostgreSQL schema [postgres]', { skip: pg.skip }, () => {
  it(`the jobs of a kill -9'd daemon move within TTL + one tick; no job ever runs on two daemons (${KILLS} kills, ${STALLS} stalls)`, { timeout: 180_000 }, (t) =>
    withCluster(SEED, async (c) => {
      const takeovers: number[] = [];
      let stalls = 0;
      /** Orders in flight when a daemon froze, whose fills fencing refused once it woke. */
      let fenced = 0;
      for (let round = 0; round < KILLS + STALLS; round++) {
        await sleep(c.rng.int(300, 1200));
        const victim = await c.victim();
        if (round % 3 === 2 && stalls < STALLS) {
          // A stall, not a death: its jobs move once its leases expire (or, see the todo test below,
          // once it wakes up); when it wakes, its fenced writes are refused ("lost its lease").
          stalls++;
          const { held, took, inFlight, wokeAt } = await freeze(c, victim, TTL + TICK + SLACK, true);
          if (took >= 0) {
            // Each order it had in flight on a job that moved is refused once it wakes. Fencing: the
            // exchange's answer comes, and the fill's write, checked against the lease's epoch, is
            // refused ("lost its lease"). Or, frozen inside the fill's transaction, the server ended
            // its session (idle in a transaction past half the TTL), which freed the job's rows for
            // the takeover: nothing of it was written.
            const after = (f: InFlight, what: string) => victim.proc.lines.slice(wokeAt).some((l) => l.includes(`  ${f.symbol}  ${what}`));
            const wasFenced = (f: InFlight) => after(f, 'lost its lease (');
            // (Said as the server ending the transaction, or as the connection lost before its COMMIT:
            // which one comes first depends on when the daemon woke.)
            const wasEnded = (f: InFlight) =>
              victim.proc.lines.slice(wokeAt).some((l) => l.includes(`  ${f.symbol}  step failed (storage, not counted): `) && l.endsWith('nothing of it was written'));
            const refused = (f: InFlight) => wasFenced(f) || wasEnded(f);
            const moved = inFlight.filter((f) => held.includes(f.jobId));
            const t1 = performance.now();
            while (!moved.every(refused) && performance.now() - t1 < 10_000) await sleep(50);
            assert.deepEqual(
              moved.filter((f) => !refused(f)).map((f) => f.clientOrderId),
              [],
              `round ${round}: ${victim.instanceId} woke with these orders in flight on jobs another daemon took, and did not report its write refused:\n${victim.proc.lines.slice(wokeAt).join('\n')}`,
            );
            // And it says it did not run for a while, so that its jobs let go are no riddle: once its
            // lease renewer runs (the answers it woke to may be handled first).
            const saidStall = () => victim.proc.lines.slice(wokeAt).some((l) => / {2}this daemon did not run for a while \(.*\): its lease renewer, due every 500 ms, last ran (\d+ ms|\d+(\.\d)? s) ago, half its lease TTL of 1\.5 s or more/.test(l));
            const t2 = performance.now();
            while (!saidStall() && performance.now() - t2 < 5000) await sleep(50);
            assert.ok(saidStall(), `round ${round}: the woken daemon did not say it had stalled:\n${victim.proc.lines.slice(wokeAt).join('\n')}`);
            const byFence = moved.filter(wasFenced).length;
            fenced += byFence;
            t.diagnostic(
              `round ${round}: froze ${victim.instanceId} holding ${held.length} jobs, ${inFlight.length} orders in flight; they moved after ${Math.round(took)} ms; ` +
                `woken, the fills of the ${moved.length} on jobs that moved were refused: ${byFence} by fencing, ${moved.length - byFence} with its ended session`,
            );
          } else {
            // Its jobs did not move while it was frozen (see the todo test below). Once it is awake, it
            // may keep them (it renews its leases) or lose them; either way each must have a live owner.
            const live = new Set(c.daemons.map((d) => d.instanceId));
            const owned = async () => {
              const now = new Date().toISOString();
              const rows = (await c.fx.raw('SELECT job_id, owner, expires_at FROM job_leases')) as Array<{ job_id: string; owner: string; expires_at: Date }>;
              const byJob = new Map(rows.map((r) => [r.job_id, r]));
              return held.every((id) => live.has(byJob.get(id)?.owner) && new Date(byJob.get(id)!.expires_at).toISOString() > now);
            };
            const t1 = performance.now();
            while (!(await owned()) && performance.now() - t1 < TTL + TICK + SLACK) await sleep(50);
            const ok = await owned();
            const owners = new Set((await c.leases()).filter((r) => held.includes(r.job_id)).map((r) => (r.owner === victim.instanceId ? 'itself' : r.owner)));
            t.diagnostic(`round ${round}: froze ${victim.instanceId} holding ${held.length} jobs; they had not moved after ${TTL + TICK + SLACK} ms; once it woke they were held by ${[...owners].join(', ')}`);
            assert.ok(ok, `round ${round}: after the frozen daemon woke up, some of its jobs had no live owner with a valid lease`);
          }
          await sleep(500);
          continue;
        }
        const t0 = performance.now();
        await victim.proc.kill9();
        c.daemons.splice(c.daemons.indexOf(victim), 1);
        c.dead.push(victim);
        // What it held when it died: its leases stay in its name until taken over.
        const held = (await c.leases()).filter((r) => r.owner === victim.instanceId).map((r) => r.job_id);
        const took = await c.takeover(victim, held, t0, TTL + TICK + SLACK + 5000);
        assert.ok(took >= 0, `round ${round}: ${held.length} jobs of the killed daemon were not taken over within ${TTL + TICK + SLACK + 5000} ms`);
        const owners = new Map((await c.leases()).map((r) => [r.job_id, r.owner]));
        const live = new Set(c.daemons.map((d) => d.instanceId));
        assert.ok(held.every((id) => live.has(owners.get(id))), `round ${round}: a job moved to a daemon that is not alive`);
        takeovers.push(Math.round(took));
        t.diagnostic(`round ${round}: killed ${victim.instanceId} holding ${held.length} jobs; all taken over after ${Math.round(took)} ms`);
        for (const d of c.daemons) assert.equal(d.proc.exit, undefined, `${d.proc.name} exited by itself: ${d.describeExit()}`);
        await c.spawn();
      }
      assert.equal(takeovers.length, KILLS);
      const maxTakeover = Math.max(...takeovers);
      t.diagnostic(`takeover after kill -9: max ${maxTakeover} ms (TTL ${TTL} + tick ${TICK} + slack ${SLACK} = ${TTL + TICK + SLACK}); all: ${takeovers.join(', ')} ms`);
      assert.ok(maxTakeover <= TTL + TICK + SLACK, `a takeover took ${maxTakeover} ms, more than TTL + tick + ${SLACK} ms slack`);
      // Nor earlier than the lease's life allows: the killed daemon had renewed a tick or so before.
      assert.ok(Math.min(...takeovers) >= TTL / 2, `a takeover after ${Math.min(...takeovers)} ms: before the lease could have expired`);

      // Stop the survivors gracefully (exit 0), then drain and check as the chaos harness does.
      for (const d of c.daemons.splice(0)) {
        const stopped = await d.proc.stop('SIGTERM', 20_000);
        assert.equal(stopped.code, 0, `${d.proc.name} exited ${stopped.code} on SIGTERM: ${d.describeExit()}`);
        c.dead.push(d);
      }
      const end = await drain({ store: c.store, exchangeUrl: c.exchange.url, dbUrl: c.fx.url, tickMs: TICK, leaseTtlMs: TTL, tally: c.tally });
      assert.deepEqual(end.violations, []);
      const state = await readExchange(c.exchange.url);
      const ex = await c.exchange.proc.stop('SIGTERM', 10_000);
      assert.equal(ex.code, 0, 'the paper exchange did not exit 0 on SIGTERM');
      const { violations, counts } = await checkInvariants(c.store, state, { allowError: false });
      t.diagnostic(
        `${counts.trades} trades, ${counts.orders} orders (${counts.filled} filled, ${counts.rejected} rejected), jobs ${JSON.stringify(counts.jobsByStatus)}; ` +
          `fencing: ${c.tally.leaseLost} "lost its lease" lines, ${fenced} of them for orders in flight as their daemon froze`,
      );
      assert.ok(fenced > 0, 'no frozen daemon had a fill refused: fencing was not put to the test');
      assert.deepEqual(violations, []);
      assert.ok(counts.filled >= JOBS, `only ${counts.filled} fills`);
    }, 30));

  it(
    'the jobs of a frozen daemon (SIGSTOP: a paused VM, a long GC pause) also move within TTL + one tick',
    // A daemon frozen inside a transaction would keep its row locks (claims skip locked rows): the
    // daemon's PostgreSQL sessions end after half the TTL idle in a transaction, which frees them.
    { timeout: 120_000 },
    (t) =>
      withCluster(`${SEED}-frozen`, async (c) => {
        const results: string[] = [];
        let late = 0;
        for (let round = 0; round < 6; round++) {
          await sleep(c.rng.int(300, 900));
          const { held, took } = await freeze(c, await c.victim(), TTL + TICK + SLACK);
          results.push(took >= 0 ? `${held.length} jobs in ${Math.round(took)} ms` : `${held.length} jobs NOT moved within ${TTL + TICK + SLACK} ms`);
          if (took < 0) late++;
          await sleep(1000);
        }
        t.diagnostic(`frozen daemons: ${results.join('; ')}`);
        assert.equal(late, 0, `${late} of 6 frozen daemons kept their jobs past TTL + tick + slack: ${results.join('; ')}`);
      }),
  );
});
