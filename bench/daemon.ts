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
 *   through one writer, with and without group commit, and a raw better-sqlite3 writer
 *   committing the same two transactions per trade with synchronous=FULL.
 *
 * Not a test: the targets are shown as met or missed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
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

async function groupCommit(): Promise<void> {
  const jobs = 64;
  const perJob = quick ? 20 : 60;
  const cycle = async (groupCommitOn: boolean): Promise<number> => {
    const store = await freshStore('sqlite', `gc-${groupCommitOn}-${Math.random().toString(36).slice(2, 6)}`, { durability: 'power', groupCommit: groupCommitOn });
    const ids = await createJobs(store, jobs, []);
    const t0 = performance.now();
    await Promise.all(
      ids.map(async (id) => {
        for (let k = 0; k < perJob; k++) {
          const { trade } = await store.ledger.recordIntent({ job: { id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
          await store.ledger.settle(trade.clientOrderId, { status: 'EXECUTED', baseAmount: '3.333333333333333333', quoteAmount: '10', priceUsd: '3' });
        }
      }),
    );
    const rate = (jobs * perJob) / ((performance.now() - t0) / 1000);
    await store.close();
    return rate;
  };
  err('group commit: 64 jobs trading at once, power mode…');
  const on: number[] = [];
  const off: number[] = [];
  for (let r = 0; r < (quick ? 1 : 3); r++) {
    on.push(await cycle(true));
    off.push(await cycle(false));
  }
  const m = (xs: number[]) => median(xs);
  out('### Group commit: SQLite `power` mode, 64 jobs trading at once (one trade = intent + fill, two transactions)');
  out();
  out(
    table(
      ['', 'trades/s (median)', 'ratio'],
      [
        ['group commit off (one fsync per transaction)', m(off).toFixed(0), '1.0×'],
        ['group commit on', m(on).toFixed(0), `${(m(on) / m(off)).toFixed(1)}×`],
      ],
    ),
  );
  out(`Target: at least 7× — ${m(on) / m(off) >= 7 ? 'met' : 'NOT met'}.`);
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
