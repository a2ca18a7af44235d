/**
 * `npm run bench:daemon [-- --quick] [-- --only recovery|cpu|group-commit] [-- --engine sqlite|postgres]`
 *
 * The daemon's figures (issue 3):
 * - recovery: a daemon that died holding 10 000 jobs, 100 of them with a PENDING intent, is
 *   replaced; how long the new one's start() takes (register, take the leases, reconcile every
 *   intent with the exchange, audit). Run twice: all 100 intents had reached the exchange, and
 *   only half had (the other half are re-sent).
 * - cpu: one daemon running 1 000 jobs ticking every second; its process's CPU time over wall
 *   time. The exchange runs in another process, as it would in production.
 * - group commit: `power` mode on SQLite, 64 jobs trading at once (intent + fill per trade)
 *   through one writer, with and without group commit; and the raw better-sqlite3 driver doing
 *   the same statements with synchronous=FULL, one COMMIT per transaction and 64 per COMMIT (a
 *   perfect group commit with none of botstate's work), and 64 per COMMIT with synchronous=OFF
 *   (no fsync at all: the ceiling for any group commit), in the same rounds.
 *
 * Not a test: the targets are shown as met or missed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Daemon } from '../src/engine/daemon.ts';
import { Leases } from '../src/engine/leases.ts';
import { HttpExchange } from '../src/engine/exchanges/http-exchange.ts';
import { openStore, type Store } from '../src/store/store.ts';
import { fmtTime, table } from './stats.ts';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    engine: { type: 'string' },
  },
  strict: true,
});
const quick = args.quick === true;
const PG = process.env['BOTSTATE_BENCH_PG'] ?? 'postgres://postgres@127.0.0.1:5432/test';
const dir = mkdtempSync(join(tmpdir(), 'botstate-bench-daemon-'));
const children: ChildProcess[] = [];
const schemas: string[] = [];
const err = (line: string) => process.stderr.write(`${line}\n`);
const out = (line = '') => process.stdout.write(`${line}\n`);

const token = (i: number) => `0x${i.toString(16).padStart(40, '0')}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function startExchange(name: string): Promise<string> {
  const child = spawn(process.execPath, ['bin/botstate.js', 'paper-exchange', '--port', '0', '--data', join(dir, `${name}.db`), '--step-ms', '1000'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const lines = createInterface({ input: child.stdout! });
  for await (const line of lines) {
    const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
    if (m) return m[1]!;
  }
  throw new Error('the paper exchange did not start');
}

async function pgAvailable(): Promise<boolean> {
  const client = new pg.Client({ connectionString: PG, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

async function freshStore(engine: 'sqlite' | 'postgres', name: string, options: Parameters<typeof openStore>[1] = {}): Promise<Store> {
  if (engine === 'sqlite') return openStore(join(dir, `${name}.db`), options);
  const schema = `bench_${name.replace(/\W/g, '_')}_${process.pid}`;
  schemas.push(schema);
  return openStore(`${PG}?schema=${schema}`, options);
}

async function createJobs(store: Store, n: number, set: string[]): Promise<string[]> {
  const ids: string[] = [];
  for (let start = 1; start <= n; start += 500) {
    await store.transaction(async () => {
      for (let i = start; i < Math.min(start + 500, n + 1); i++) ids.push((await store.jobs.start({ tokenAddress: token(i), set })).id);
    });
  }
  return ids;
}

// ---------------------------------------------------------------------------------------------

/**
 * `reached`: how many of the 100 open intents had reached the exchange before the crash. After a
 * real kill -9 nearly all have (the intent is committed just before the exchange call, and the
 * daemon dies waiting for the answer); the ones that had not are re-sent.
 */
async function recovery(engine: 'sqlite' | 'postgres', reached: number): Promise<void> {
  const jobs = quick ? 2_000 : 10_000;
  const rounds = quick ? 3 : 7;
  err(`recovery [${engine}, ${reached} reached]: creating ${jobs} jobs…`);
  const store = await freshStore(engine, `recovery_${reached}`);
  const url = await startExchange(`recovery-${engine}-${reached}`);
  const exchange = new HttpExchange(url);
  await createJobs(store, jobs, ['accumulate.dcaIntervalHours=1000']);
  const all = await store.jobs.list();
  const ids = all.map((j) => j.id);
  // A running daemon prices every job each tick, so the exchange has been quoting these tokens;
  // without this, its first quote of each token (walking the price path from its epoch) would be
  // measured as the daemon's recovery.
  await exchange.getPrices(all.map((j) => j.tokenAddress));
  const times: number[] = [];
  let last: Awaited<ReturnType<Daemon['start']>> | undefined;
  for (let round = 0; round < rounds; round++) {
    // The daemon that will die: registered, holding every job's lease (what a running daemon
    // leaves in the database), with 100 intents open; 50 reached the exchange.
    const dying = new Leases(store, `dying-${round}`, { ttlMs: 15_000 });
    await dying.register();
    const fenceOf = await dying.sync();
    for (let k = 0; k < 100; k++) {
      const jobId = ids[(round * 100 + k * 97) % ids.length]!;
      const { trade, job } = await store.ledger.recordIntent({ job: { id: jobId }, side: 'BUY', reason: 'DCA', quoteAmount: '10' }, { fence: fenceOf.get(jobId)! });
      if (k < reached) await exchange.placeOrder({ clientOrderId: trade.clientOrderId, token: job.tokenAddress, side: 'BUY', quoteAmount: '10' });
    }
    // kill -9: no release, and its process is gone (a pid that cannot exist).
    await store.transaction((tx) => tx.run('UPDATE daemon_instances SET pid = ? WHERE id = ?', [2 ** 22 + 7, dying.instanceId]));
    const next = new Daemon({ store, exchange, tickMs: 3_600_000, log: () => {} });
    last = await next.start();
    times.push(last.ms);
    await next.stop();
    err(`  round ${round + 1}: ${last.ms} ms (${last.executed} executed, ${last.resent} re-sent)`);
  }
  await store.close();
  const target = engine === 'sqlite' ? 100 : 300;
  out(`### Recovery, ${engine}: ${jobs.toLocaleString('en')} jobs, 100 PENDING intents (${reached} at the exchange, ${100 - reached} re-sent)`);
  out();
  out(
    table(
      ['rounds', 'median', 'max', 'last report', 'target', 'met'],
      [[String(rounds), `${median(times)} ms`, `${Math.max(...times)} ms`, `${last!.jobs} jobs, ${last!.pending} pending, ${last!.executed} executed, ${last!.resent} re-sent`, `< ${target} ms`, median(times) < target ? 'yes' : 'NO']],
    ),
  );
}

// ---------------------------------------------------------------------------------------------

async function cpu(engine: 'sqlite' | 'postgres'): Promise<void> {
  const jobs = 1_000;
  const seconds = quick ? 10 : 40;
  err(`cpu [${engine}]: ${jobs} jobs ticking every second for ${seconds} s…`);
  const store = await freshStore(engine, 'cpu');
  const url = await startExchange(`cpu-${engine}`);
  // Mostly quiet jobs (DCA every hour), as a real fleet is; every tick still prices every job,
  // runs its strategy and renews leases.
  await createJobs(store, jobs, ['accumulate.dcaIntervalHours=1']);
  let trades = 0;
  const daemon = new Daemon({ store, exchange: new HttpExchange(url), tickMs: 1000, log: (l) => void (/ BUY | SELL /.test(l) && trades++) });
  await daemon.start();
  await new Promise((r) => setTimeout(r, 3000)); // the first ticks place the first DCA buys
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const trades0 = trades;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const c1 = process.cpuUsage(c0);
  const wall = performance.now() - t0;
  await daemon.stop();
  await store.close();
  const share = (c1.user + c1.system) / 1000 / wall;
  out(`### Daemon CPU, ${engine}: ${jobs} jobs, tick 1 s, ${seconds} s measured`);
  out();
  out(
    table(
      ['user', 'system', 'wall', 'CPU of one core', 'trades meanwhile', 'target', 'met'],
      [[fmtTime(c1.user * 1000), fmtTime(c1.system * 1000), fmtTime(wall * 1e6), `${(share * 100).toFixed(1)} %`, String(trades - trades0), '< 20 %', share < 0.2 ? 'yes' : 'NO']],
    ),
  );
}

// ---------------------------------------------------------------------------------------------

/** Untimed trades per job before a group-commit cycle is timed (each raw cycle likewise). */
const WARM_UP_PER_JOB = 5;

async function groupCommit(): Promise<void> {
  const jobs = 64;
  const rounds = quick ? 1 : 5;
  const cycle = async (groupCommitOn: boolean, perJob: number): Promise<number> => {
    const name = `gc-${groupCommitOn}-${Math.random().toString(36).slice(2, 6)}`;
    const store = await freshStore('sqlite', name, { durability: 'power', groupCommit: groupCommitOn });
    const ids = await createJobs(store, jobs, []);
    const trade = (n: number) =>
      Promise.all(
        ids.map(async (id) => {
          for (let k = 0; k < n; k++) {
            const { trade } = await store.ledger.recordIntent({ job: { id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
            await store.ledger.settle(trade.clientOrderId, { status: 'EXECUTED', baseAmount: '3.333333333333333333', quoteAmount: '10', priceUsd: '3' });
          }
        }),
      );
    // Steady state, not start-up: a few untimed trades first, in both modes. With group commit
    // they start the fsync thread, which a store starts at its first contended write and which
    // takes 40-80 ms to come up; its commits fsync inline on the writer meanwhile.
    await trade(WARM_UP_PER_JOB);
    quietDisk();
    const t0 = performance.now();
    await trade(perJob);
    const rate = (jobs * perJob) / ((performance.now() - t0) / 1000);
    await store.close();
    removeDb(name);
    return rate;
  };
  err(`group commit: 64 jobs trading at once, power mode, ${rounds} rounds…`);
  const on: number[] = [];
  const off: number[] = [];
  const rawOne: number[] = [];
  const rawBatched: number[] = [];
  const rawNoSync: number[] = [];
  for (let r = 0; r < rounds; r++) {
    on.push(await cycle(true, quick ? 20 : 60));
    off.push(await cycle(false, quick ? 8 : 20));
    rawOne.push(await rawCycle(1, quick ? 8 : 20));
    rawBatched.push(await rawCycle(jobs, quick ? 20 : 60));
    rawNoSync.push(await rawCycle(jobs, quick ? 20 : 60, 'OFF'));
  }
  const ratios = on.map((x, i) => x / off[i]!);
  const rawRatios = rawBatched.map((x, i) => x / rawOne[i]!);
  const ceilings = rawNoSync.map((x, i) => x / rawOne[i]!);
  const m = (xs: number[]) => median(xs);
  const list = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(', ');
  out('### Group commit: SQLite `power` mode, 64 jobs trading at once (one trade = intent + fill, two transactions)');
  out();
  out(
    table(
      ['', 'trades/s (median)', 'ratio (median of the rounds)', 'ratio, each round'],
      [
        ['botstate, group commit off (SQLite fsyncs in every COMMIT)', m(off).toFixed(0), '1.0×', ''],
        ['botstate, group commit on', m(on).toFixed(0), `${m(ratios).toFixed(1)}×`, list(ratios)],
        ['raw better-sqlite3, one COMMIT (FULL) per transaction', m(rawOne).toFixed(0), '1.0×', ''],
        ['raw better-sqlite3, 64 transactions per COMMIT (FULL)', m(rawBatched).toFixed(0), `${m(rawRatios).toFixed(1)}×`, list(rawRatios)],
        ['raw better-sqlite3, 64 per COMMIT, no fsync at all (OFF): the ceiling', m(rawNoSync).toFixed(0), `${m(ceilings).toFixed(1)}×`, list(ceilings)],
      ],
    ),
  );
  out(`Target: at least 7× — ${m(ratios) >= 7 ? 'met' : 'NOT met'}. botstate on / raw batched: ${(m(on) / m(rawBatched)).toFixed(2)}×; botstate on / ceiling: ${(m(on) / m(rawNoSync)).toFixed(2)}×.`);
  out('The ceiling is the raw driver with every fsync removed: what a group commit that hid the fsync completely would reach with none of botstate\'s work. Its ratio is the most any group commit can show on this machine.');
}

/**
 * The raw driver doing the same work per trade as botstate's intent and fill (the same
 * statements on the same schema, the audit entries' sizes alike, no hashing or checks), one
 * writer walking the 64 jobs in turn: `perCommit` transactions per COMMIT, synchronous=FULL,
 * SQLite's own checkpoints. 1 is the plain way to write it; 64 is a perfect group commit
 * (every job's transaction in one COMMIT) without any of botstate's machinery. With
 * synchronous=OFF nothing is ever fsynced: the CPU cost alone, the ceiling for any group commit.
 */
async function rawCycle(perCommit: number, perJob: number, synchronous: 'FULL' | 'OFF' = 'FULL'): Promise<number> {
  const name = `raw-${perCommit}-${synchronous}-${Math.random().toString(36).slice(2, 6)}`;
  const store = await freshStore('sqlite', name);
  const ids = await createJobs(store, 64, []);
  await store.close();
  const db = new Database(join(dir, `${name}.db`));
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${synchronous}`);
  db.pragma('foreign_keys = ON');
  const cols = 'id, job_id, side, reason, base_amount, quote_amount, price_usd, client_order_id, exchange_order_id, tx_hash, status, error, created_at, executed_at';
  const job = db.prepare('SELECT * FROM jobs WHERE id = ?');
  const find = db.prepare(`SELECT ${cols} FROM trades WHERE client_order_id = ?`);
  const insert = db.prepare(`INSERT INTO trades (${cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (client_order_id) DO NOTHING`);
  const touch = db.prepare('UPDATE jobs SET updated_at = ?, version = ?, audit_hash = ? WHERE id = ? AND version = ? AND status = ?');
  const fill = db.prepare("UPDATE trades SET status = 'EXECUTED', base_amount = ?, quote_amount = ?, price_usd = ?, executed_at = ? WHERE id = ? AND status = 'PENDING'");
  const balance = db.prepare('UPDATE jobs SET token_balance = ?, total_accumulated = ?, last_dca_buy_time = ?, updated_at = ?, version = ?, audit_hash = ? WHERE id = ? AND version = ? AND status = ?');
  const audit = db.prepare('INSERT INTO audit_log (stream, seq, at, actor, entity, entity_id, action, before, after, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const hash = 'f'.repeat(64);
  const detail = (tradeId: string, coid: string) =>
    JSON.stringify({ trade: { id: tradeId, jobId: coid.slice(0, 36), side: 'BUY', reason: 'DCA', baseAmount: '3.333333333333333333', quoteAmount: '10', priceUsd: '3', clientOrderId: coid, status: 'EXECUTED', createdAt: new Date().toISOString() } });
  let n = 0;
  let k = 0;
  const run = (trades: number) => {
    for (const end = k + trades; k < end; k++) {
      for (const settle of [false, true]) {
        for (let j = 0; j < ids.length; j++) {
          if (j % perCommit === 0) begin.run();
          const id = ids[j]!;
          const row = job.get(id) as { version: number; status: string };
          const at = new Date().toISOString();
          const v = row.version;
          if (!settle) {
            const coid = `${id}-${v + 1}`;
            const tradeId = `${Date.now().toString(16).padStart(12, '0')}-${(n++).toString(16).padStart(8, '0')}-${id.slice(0, 8)}`;
            find.get(coid);
            insert.run(tradeId, id, 'BUY', 'DCA', null, '10', null, coid, null, null, 'PENDING', null, at, null);
            touch.run(at, v + 1, hash, id, v, row.status);
            audit.run(`job:${id}`, v + 1, at, 'daemon', 'trade', tradeId, 'intent', null, detail(tradeId, coid), hash, hash);
          } else {
            const coid = `${id}-${v}`;
            const trade = find.get(coid) as { id: string };
            fill.run('3.333333333333333333', '10', '3', at, trade.id);
            balance.run(String(k + 1), String(k + 1), at, at, v + 1, hash, id, v, row.status);
            audit.run(`job:${id}`, v + 1, at, 'daemon', 'trade', trade.id, 'settle', '{"tokenBalance":"0"}', detail(trade.id, coid), hash, hash);
          }
          if (j % perCommit === perCommit - 1 || j === ids.length - 1) commit.run();
        }
      }
    }
  };
  run(WARM_UP_PER_JOB);
  quietDisk();
  const t0 = performance.now();
  run(perJob);
  const rate = (ids.length * perJob) / ((performance.now() - t0) / 1000);
  db.close();
  removeDb(name);
  return rate;
}

/**
 * Before a timed cycle: every file written so far is flushed, so that the kernel's writeback of
 * earlier cycles (tens of MB each) does not share the disk with this cycle's fsyncs. Without it the
 * baselines, made of fsyncs, slowed down round after round and the ratios grew with them.
 */
function quietDisk(): void {
  execFileSync('sync');
}

/** A finished cycle's database goes, so that later cycles do not share the disk with its writeback. */
function removeDb(name: string): void {
  for (const suffix of ['', '-wal', '-shm']) rmSync(join(dir, `${name}.db${suffix}`), { force: true });
}

// ---------------------------------------------------------------------------------------------

try {
  const engines = (args.engine ? [args.engine] : ['sqlite', 'postgres']) as Array<'sqlite' | 'postgres'>;
  const withPg = engines.includes('postgres') && (await pgAvailable());
  if (engines.includes('postgres') && !withPg) err(`PostgreSQL at ${PG} is unreachable: skipping its cases`);
  const run = engines.filter((e) => e === 'sqlite' || withPg);
  out(`# Daemon benchmarks (${new Date().toISOString().slice(0, 10)}, Node ${process.version}${quick ? ', --quick' : ''})`);
  out();
  if (!args.only || args.only === 'recovery') {
    for (const e of run) {
      await recovery(e, 100);
      await recovery(e, 50);
    }
  }
  if (!args.only || args.only === 'cpu') for (const e of run) await cpu(e);
  if (!args.only || args.only === 'group-commit') await groupCommit();
} finally {
  for (const c of children) c.kill('SIGTERM');
  if (schemas.length > 0) {
    const client = new pg.Client({ connectionString: PG });
    await client.connect().catch(() => {});
    for (const s of schemas) await client.query(`DROP SCHEMA IF EXISTS "${s}" CASCADE`).catch(() => {});
    await client.end().catch(() => {});
  }
  rmSync(dir, { recursive: true, force: true });
}
