/**
 * `npm run bench:breakdown [-- --ops N] [-- --only sqlite|postgres]`: where botstate's time goes
 * compared with the raw driver. Not part of `npm run bench`; run it when a target is missed.
 *
 * 1. Micro-timings of the pieces botstate adds around the SQL (validation, decimal math, JSON,
 *    SHA-256, row conversion, ids, the async layer), each in a tight loop.
 * 2. The commits that run SQLite's automatic WAL checkpoint: pages written per operation, how
 *    often a commit checkpoints, and what that checkpoint costs (the tail of both sides).
 * 3. A CPU profile (V8 sampling profiler through node:inspector) of `recordTrade` and of a
 *    transition on SQLite `process` mode and on PostgreSQL `process` mode, botstate and raw in
 *    alternating blocks, reported as time per operation by category and by function.
 */
import { createHash } from 'node:crypto';
import { Session } from 'node:inspector/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { prepareAudit } from '../src/audit/audit.ts';
import { toJob, type JobRow } from '../src/jobs/job-rows.ts';
import { add, cmp, parseDecimal } from '../src/money/decimal.ts';
import { uuidv7 } from '../src/util/ids.ts';
import { openStore } from '../src/store/store.ts';
import type { EngineSetup } from './engine.ts';
import type { Impl } from './harness.ts';
import { dropSchemas, probePostgres, setupPostgres } from './postgres.ts';
import { setupSqlite } from './sqlite.ts';
import { fmtTime, median, table } from './stats.ts';
import { ACTOR, benchToken, JOB_COLUMNS, tradeAmounts } from './workload.ts';

const { values: args } = parseArgs({
  options: { ops: { type: 'string', default: '20000' }, only: { type: 'string' } },
  strict: true,
});
const OPS = Number(args.ops);
const out = (s = '') => process.stdout.write(`${s}\n`);

// ---------------------------------------------------------------------------------------------
// 1. Micro-timings

/** Median over 7 batches of the time per call of `fn`, in ns. */
function time(fn: (i: number) => unknown, n = 100_000): number {
  let sink: unknown;
  for (let i = 0; i < n / 10; i++) sink = fn(i);
  const per: number[] = [];
  for (let b = 0; b < 7; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) sink = fn(i);
    per.push(Number(process.hrtime.bigint() - t0) / n);
  }
  if (sink === Symbol.for('never')) out('');
  return median(per);
}

async function timeAsync(fn: () => Promise<unknown>, n = 100_000): Promise<number> {
  for (let i = 0; i < n / 10; i++) await fn();
  const per: number[] = [];
  for (let b = 0; b < 7; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) await fn();
    per.push(Number(process.hrtime.bigint() - t0) / n);
  }
  return median(per);
}

async function micro(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'botstate-breakdown-'));
  const path = join(dir, 'b.db');
  const store = await openStore(path, { actor: ACTOR });
  const job = await store.jobs.start({ tokenAddress: benchToken(1) });
  for (let i = 0; i < 50; i++) await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: `w-${i}`, side: 'BUY', reason: 'DCA', ...tradeAmounts(i) });
  await store.close();
  const db = new Database(path);
  const row = db.prepare(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`).get(job.id) as JobRow;
  db.close();
  rmSync(dir, { recursive: true, force: true });

  const amounts = Array.from({ length: 1024 }, (_, i) => tradeAmounts(i));
  const at = new Date().toISOString();
  const trade = {
    id: uuidv7(), jobId: row.id, side: 'BUY', reason: 'DCA', baseAmount: amounts[0]!.baseAmount, quoteAmount: amounts[0]!.quoteAmount,
    priceUsd: amounts[0]!.priceUsd, clientOrderId: 'bs-123456', exchangeOrderId: null, txHash: null, status: 'EXECUTED', error: null, createdAt: at, executedAt: at,
  };
  const entry = (i: number) => ({
    stream: `job:${row.id}`, seq: row.version + 1, prevHash: row.audit_hash, at, actor: ACTOR, entity: 'trade', entityId: trade.id, action: 'record',
    before: { tokenBalance: row.token_balance, totalAccumulated: row.total_accumulated, lastDcaBuyTime: row.last_dca_buy_time },
    after: { tokenBalance: amounts[i & 1023]!.baseAmount, totalAccumulated: row.total_accumulated, lastDcaBuyTime: at, trade },
  });
  const canonical = JSON.stringify(['x'.repeat(40), 1, at, ACTOR, 'trade', trade.id, 'record', JSON.stringify(entry(0).before), JSON.stringify(entry(0).after), row.audit_hash]);
  const sqlCache = new Map<string, string>([[`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?`, 'x']]);
  const resolved = Promise.resolve(1);
  async function sixAwaits(): Promise<number> {
    let x = 0;
    for (let k = 0; k < 6; k++) x += await resolved;
    return x;
  }

  const rows: [string, number][] = [
    ['parseDecimal × 3 (base, quote, price)', time((i) => { const a = amounts[i & 1023]!; return [parseDecimal(a.baseAmount), parseDecimal(a.quoteAmount), parseDecimal(a.priceUsd)]; })],
    ['cmp(base, 0) + ISO regex + Date.parse (rest of checkFill)', time((i) => cmp(amounts[i & 1023]!.baseAmount, '0') + (/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/.test(at) ? Date.parse(at) : 0))],
    ['add × 2 (balance, total accumulated)', time((i) => [add(row.token_balance, amounts[i & 1023]!.baseAmount), add(row.total_accumulated, amounts[i & 1023]!.quoteAmount)])],
    ['new Date().toISOString()', time(() => new Date().toISOString())],
    ['uuidv7()', time(() => uuidv7())],
    ['toJob(row) (botstate calls it 3× per recordTrade)', time(() => toJob(row))],
    ['prepareAudit (JSON before/after + SHA-256), trade entry', time((i) => prepareAudit(entry(i)))],
    ['  of which SHA-256 of the canonical text (createHash)', time(() => createHash('sha256').update(canonical).digest('hex'))],
    ['  of which JSON.stringify of before + after', time((i) => { const e = entry(i); return JSON.stringify(e.before) + JSON.stringify(e.after); })],
    ['SELECT text rebuilt + statement-cache lookup', time((i) => sqlCache.get(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = ?${i < 0 ? ' FOR UPDATE' : ''}`))],
  ];
  const asyncRows: [string, number][] = [['6 awaits of resolved promises (the async adapter calls)', await timeAsync(sixAwaits)]];

  out('### 1. Micro-timings (median of 7 batches, per call)');
  out();
  out(table(['piece', 'time'], [...rows, ...asyncRows].map(([k, v]) => [k, fmtTime(v)])));
  out();
}

// ---------------------------------------------------------------------------------------------
// 2. CPU profiles

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function label(n: ProfileNode): string {
  const { functionName, url, lineNumber } = n.callFrame;
  const name = functionName || '(anonymous)';
  if (url === '') return `${name} [native]`;
  const file = url.startsWith('file://') ? relative(process.cwd(), new URL(url).pathname) : url;
  return `${name} ${file}:${lineNumber + 1}`;
}

interface Profiled {
  /** Sampled µs by function label: self time, inclusive time, and self time by category. */
  readonly self: Map<string, number>;
  readonly inclusive: Map<string, number>;
  readonly categories: Map<string, number>;
  ops: number;
  cpuUs: number;
  wallNs: number;
}

function emptyProfiled(): Profiled {
  return { self: new Map(), inclusive: new Map(), categories: new Map(), ops: 0, cpuUs: 0, wallNs: 0 };
}

/** Adds one profile's samples to `into`. */
function accumulate(p: Profile, into: Profiled): void {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const add = (m: Map<string, number>, k: string, us: number) => m.set(k, (m.get(k) ?? 0) + us);
  for (let i = 0; i < p.samples.length; i++) {
    const us = p.timeDeltas[i + 1] ?? 0;
    let node = byId.get(p.samples[i]!)!;
    const own = label(node);
    add(into.self, own, us);
    add(into.categories, category(own), us);
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      node = byId.get(id)!;
      const l = label(node);
      if (seen.has(l)) continue;
      seen.add(l);
      add(into.inclusive, l, us);
    }
  }
}

/**
 * Profiles botstate and raw in alternating blocks of 1000 operations (ABBA), one profile per
 * block, so that outside noise is spread over both sides as in the benchmark.
 */
async function profileBoth(bs: Impl, raw: Impl, ops: number): Promise<{ bs: Profiled; raw: Profiled }> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 25 });
  const result = { bs: emptyProfiled(), raw: emptyProfiled() };
  let next = 1_000_000;
  for (const impl of [bs, raw]) {
    impl.prepare(next, 2000);
    for (let i = 0; i < 2000; i++) await impl.run(next + i);
  }
  next += 2000;
  for (let b = 0, round = 0; b < ops; b += 1000, round++) {
    const n = Math.min(1000, ops - b);
    for (const [impl, into] of round % 2 === 0 ? ([[bs, result.bs], [raw, result.raw]] as const) : ([[raw, result.raw], [bs, result.bs]] as const)) {
      impl.prepare(next, n);
      await session.post('Profiler.start');
      const cpu = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) await impl.run(next + i);
      into.wallNs += Number(process.hrtime.bigint() - t0);
      const used = process.cpuUsage(cpu);
      into.cpuUs += used.user + used.system;
      const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: Profile };
      accumulate(profile, into);
      into.ops += n;
    }
    next += n;
  }
  session.disconnect();
  return result;
}

interface Analysis {
  /** Inclusive time per operation of botstate's own functions (and of native calls), largest first. */
  inclusive: [string, number][];
  /** Self time per operation, largest first. */
  self: [string, number][];
  /** Self time per operation grouped by what it is for. */
  categories: [string, number][];
}

/** What a function's self time is spent on, from its file (builtins such as JSON.stringify count for their caller). */
function category(l: string): string {
  if (l.startsWith('(garbage collector)')) return 'garbage collection';
  if (l.includes('node:inspector') || l.includes('bench/')) return 'bench harness and profiler (both sides)';
  if (l.startsWith('(program)') || l.startsWith('(idle)') || l.startsWith('(root)')) return 'V8 / event loop (program, idle)';
  if (l.includes('crypto') || /^(Hash|update|digest) \[native\]/.test(l)) return 'SHA-256 (node:crypto)';
  if (/^(runMicrotasks|processTicksAndRejections|emit) /.test(l)) return 'other node internals (promises, timers…)';
  if (/^(writev|writeBuffer|writeUtf8String|utf8Slice|latin1Slice|readableAddChunk) /.test(l)) return 'driver: pg + sockets';
  if (l.includes('node_modules/pg') || l.includes('node:net') || l.includes('stream') || l.includes('node:internal/net')) return 'driver: pg + sockets';
  if (l.includes('[native]') || l.includes('node_modules/better-sqlite3')) return 'native: SQLite in better-sqlite3 (and other C++)';
  const src = /src\/([a-z-]+)\//.exec(l);
  if (src) return `src/${src[1]}/ (self, including the builtins it calls)`;
  return 'other node internals (promises, timers…)';
}

function analyse(p: Profiled, top: number): Analysis {
  const perOp = (m: Map<string, number>) =>
    [...m.entries()].map(([k, v]): [string, number] => [k, (v * 1000) / p.ops]).sort((a, b) => b[1] - a[1]);
  return {
    inclusive: perOp(p.inclusive).filter(([k]) => k.includes('src/')).slice(0, top),
    self: perOp(p.self).slice(0, top),
    categories: perOp(p.categories),
  };
}

async function profiled(name: string, setup: EngineSetup, ops: number): Promise<void> {
  for (const c of setup.cases) {
    const both = await profileBoth(c.botstate, c.raw, ops);
    const a = analyse(both.bs, 30);
    const r = analyse(both.raw, 12);
    const wall = (p: Profiled) => p.wallNs / p.ops;
    const cpu = (p: Profiled) => (p.cpuUs * 1000) / p.ops;
    out(`#### ${name}: ${c.op}`);
    out();
    out(`${ops} operations per side under the profiler, in alternating blocks of 1000 (sampling every 25 µs, which itself slows both sides).`);
    out();
    out(
      table(
        ['', 'wall / op', 'CPU / op'],
        [
          ['botstate', fmtTime(wall(both.bs)), fmtTime(cpu(both.bs))],
          [c.raw.label, fmtTime(wall(both.raw)), fmtTime(cpu(both.raw))],
          ['difference', fmtTime(wall(both.bs) - wall(both.raw)), fmtTime(cpu(both.bs) - cpu(both.raw))],
        ],
      ),
    );
    out();
    out('Sampled time per operation by category (self time of each function, grouped):');
    out();
    const cats = [...new Set([...a.categories, ...r.categories].map(([k]) => k))];
    const get = (x: Analysis, k: string) => x.categories.find(([c]) => c === k)?.[1] ?? 0;
    out(
      table(
        ['category', 'botstate', c.raw.label, 'difference'],
        cats
          .map((k) => [k, get(a, k), get(r, k)] as const)
          .sort((x, y) => y[1] - x[1])
          .map(([k, x, y]) => [k, fmtTime(x), fmtTime(y), fmtTime(x - y)]),
      ),
    );
    out();
    out('botstate, inclusive time per operation of its functions (each with everything it calls, SQL included):');
    out();
    out(table(['function', 'per op'], a.inclusive.map(([k, v]) => [k, fmtTime(v)])));
    out();
    out('botstate, largest self times per operation:');
    out();
    out(table(['function', 'per op'], a.self.slice(0, 15).map(([k, v]) => [k, fmtTime(v)])));
    out();
  }
}

/**
 * What a COMMIT costs when SQLite's automatic checkpoint runs inside it: the raw side's
 * connection with wal_autocheckpoint off, WAL pages written per operation, and how long a
 * PASSIVE checkpoint of ~1000 pages (what wal_autocheckpoint=1000 runs inline) takes.
 */
async function checkpoints(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'botstate-breakdown-'));
  const setup = await setupSqlite(dir, 'process');
  try {
    const db = setup.rawDb;
    db.pragma('wal_autocheckpoint = 0');
    const walFrames = () => (db.pragma('wal_checkpoint(PASSIVE)') as Array<{ log: number }>)[0]!.log;
    const rows: string[][] = [];
    for (const c of setup.cases) {
      db.pragma('wal_checkpoint(TRUNCATE)');
      let next = 3_000_000 + rows.length * 1_000_000;
      c.raw.prepare(next, 1000);
      for (let i = 0; i < 1000; i++) c.raw.run(next + i);
      next += 1000;
      const perOp = walFrames() / 1000;
      db.pragma('wal_checkpoint(TRUNCATE)');
      const durations: number[] = [];
      for (let k = 0; k < 20; k++) {
        const n = Math.ceil(1000 / perOp);
        c.raw.prepare(next, n);
        for (let i = 0; i < n; i++) c.raw.run(next + i);
        next += n;
        const t0 = process.hrtime.bigint();
        db.pragma('wal_checkpoint(PASSIVE)');
        durations.push(Number(process.hrtime.bigint() - t0));
      }
      rows.push([c.op, perOp.toFixed(1), `1 in ${Math.round(1000 / perOp)}`, fmtTime(median(durations)), fmtTime(Math.max(...durations))]);
    }
    out('### 2. Commits that checkpoint (SQLite `process` mode)');
    out();
    out('With the default wal_autocheckpoint=1000, the COMMIT that takes the WAL past 1000 pages also copies them into the database file and syncs it (synchronous=NORMAL syncs at checkpoints). The same statements write the same pages on both sides, so this hits botstate and raw alike:');
    out();
    out(table(['operation', 'WAL pages per transaction', 'commits that checkpoint', 'checkpoint of ~1000 pages, median', 'max (20)'], rows));
    out();
  } finally {
    await setup.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await micro();
if (args.only !== 'postgres') await checkpoints();
out('### 3. CPU profiles');
out();
if (args.only !== 'postgres') {
  const dir = mkdtempSync(join(tmpdir(), 'botstate-breakdown-'));
  const setup = await setupSqlite(dir, 'process');
  try {
    await profiled('SQLite process', setup, OPS);
  } finally {
    await setup.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
if (args.only !== 'sqlite') {
  const url = process.env['BOTSTATE_BENCH_PG'] || 'postgres://postgres@127.0.0.1:5432/test';
  const probe = await probePostgres(url);
  if (!probe.ok) {
    out(`PostgreSQL at ${url} is unreachable (${probe.reason}): skipped.`);
  } else {
    const prefix = `bench_${process.pid}_bd`;
    try {
      const setup = await setupPostgres({ url, schemaPrefix: prefix }, 'process');
      try {
        await profiled('PostgreSQL process', setup, Math.min(OPS, 5000));
      } finally {
        await setup.close();
      }
    } finally {
      await dropSchemas(url, prefix);
    }
  }
}
