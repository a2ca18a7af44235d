/**
 * `npm run bench [-- --quick] [-- --only sqlite|postgres] [-- --json FILE]`
 *
 * Times `store.ledger.recordTrade` and one lifecycle transition (pause / resume, alternately)
 * through botstate against the raw driver doing the same SQL, in the same run: SQLite in
 * `process` and `power` mode against better-sqlite3, PostgreSQL in both modes against pg.
 * botstate and raw run in alternating blocks (ABBA), so that noise on this 2-core machine hits
 * both alike. Prints Markdown tables (stdout) and progress (stderr).
 *
 * Not a test: nothing here fails a build. The targets are shown as met or missed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, loadavg, release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import Database from 'better-sqlite3';
import { compareSql, compareState, type Durability, type EngineSetup } from './engine.ts';
import { runInterleaved, type CaseResult, type Plan, type SideResult } from './harness.ts';
import { dropSchemas, probePostgres, setupPostgres } from './postgres.ts';
import { setupSqlite } from './sqlite.ts';
import { fmtBytes, fmtInt, fmtRatio, fmtTime, table } from './stats.ts';

const USAGE = `usage: npm run bench [-- --quick] [-- --only sqlite|postgres] [-- --json FILE]

  --quick          a short run (a smoke test of the bench; its figures are not the ones to quote)
  --only ENGINE    only the sqlite or only the postgres cases
  --json FILE      also write every figure to FILE
PostgreSQL: $BOTSTATE_BENCH_PG, default postgres://postgres@127.0.0.1:5432/test (throwaway schemas, dropped at the end).`;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    json: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
if (args.only !== undefined && args.only !== 'sqlite' && args.only !== 'postgres') {
  process.stderr.write(`--only must be sqlite or postgres, got "${args.only}"\n${USAGE}\n`);
  process.exit(2);
}

interface Group {
  readonly engine: 'sqlite' | 'postgres';
  readonly durability: Durability;
  readonly title: string;
  readonly plan: Plan;
}

const FULL: Record<string, Plan> = {
  'sqlite/process': { warmup: 3000, iterations: 30_000, block: 1000 },
  'sqlite/power': { warmup: 300, iterations: 5000, block: 250 },
  'postgres/process': { warmup: 500, iterations: 10_000, block: 500 },
  'postgres/power': { warmup: 300, iterations: 5000, block: 250 },
};
const QUICK: Record<string, Plan> = {
  'sqlite/process': { warmup: 500, iterations: 3000, block: 500 },
  'sqlite/power': { warmup: 50, iterations: 300, block: 100 },
  'postgres/process': { warmup: 50, iterations: 300, block: 100 },
  'postgres/power': { warmup: 50, iterations: 300, block: 100 },
};
const plans = args.quick ? QUICK : FULL;

const ALL_GROUPS: Group[] = [
  { engine: 'sqlite', durability: 'process', title: 'SQLite, `process` mode (WAL, synchronous=NORMAL)', plan: plans['sqlite/process']! },
  { engine: 'sqlite', durability: 'power', title: 'SQLite, `power` mode (WAL, synchronous=FULL)', plan: plans['sqlite/power']! },
  { engine: 'postgres', durability: 'process', title: 'PostgreSQL, `process` mode (synchronous_commit=off)', plan: plans['postgres/process']! },
  { engine: 'postgres', durability: 'power', title: 'PostgreSQL, `power` mode (synchronous_commit=on)', plan: plans['postgres/power']! },
];
const GROUPS = ALL_GROUPS.filter((g) => args.only === undefined || g.engine === args.only);

// ---------------------------------------------------------------------------------------------

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
interface Memory {
  readonly rss: number;
  /** What V8 has reserved for the heap (it keeps what it grew to). */
  readonly heapTotal: number;
  /** Live objects, after a full GC. */
  readonly heap: number;
}
function memory(): Memory {
  gc();
  const m = process.memoryUsage();
  return { rss: m.rss, heapTotal: m.heapTotal, heap: m.heapUsed };
}

const out = (s = '') => process.stdout.write(`${s}\n`);
const progress = (s: string) => process.stderr.write(`  ${s}\n`);

let stop = false;
process.on('SIGINT', () => {
  if (stop) process.exit(130);
  stop = true;
  process.stderr.write('\ninterrupted: cleaning up (Ctrl-C again to quit at once)\n');
});

const PG_URL = process.env['BOTSTATE_BENCH_PG'] || 'postgres://postgres@127.0.0.1:5432/test';
const schemaPrefix = `bench_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
const dir = mkdtempSync(join(tmpdir(), 'botstate-bench-'));

const require = createRequire(import.meta.url);
const versionOf = (pkg: string) => (require(`${pkg}/package.json`) as { version: string }).version;
const sqliteVersion = (() => {
  const db = new Database(':memory:');
  try {
    return (db.prepare('SELECT sqlite_version() AS v').get() as { v: string }).v;
  } finally {
    db.close();
  }
})();

const pgProbe = GROUPS.some((g) => g.engine === 'postgres') ? await probePostgres(PG_URL) : undefined;
const safePgUrl = (() => {
  const u = new URL(PG_URL);
  u.password = '';
  return u.toString();
})();

out(`## botstate benchmark${args.quick ? ' (--quick: not for quoting)' : ''}`);
out();
out(`- date: ${new Date().toISOString()}`);
out(`- command: npm run bench${process.argv.slice(2).length ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`);
out(`- machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? 'unknown CPU'}), Linux ${release()}`);
out(`- Node ${process.version}; better-sqlite3 ${versionOf('better-sqlite3')} (SQLite ${sqliteVersion}); pg ${versionOf('pg')}`);
if (pgProbe?.ok) out(`- PostgreSQL ${pgProbe.version} at ${safePgUrl}`);
else if (pgProbe) out(`- PostgreSQL at ${safePgUrl} is UNREACHABLE (${pgProbe.reason}): the PostgreSQL cases are SKIPPED`);
out(`- SQLite files in ${dir}`);
out(`- load average at start: ${fmtLoad()} (other work on this machine adds noise; the alternation spreads it over both sides)`);
out();

interface GroupResult {
  readonly group: Group;
  readonly results: CaseResult[];
  readonly memory: { before: Memory; after: Memory };
  readonly problems: string[];
  readonly notes: string[];
}

const groupResults: GroupResult[] = [];
const start = memory();
const startedAt = Date.now();
let failed = false;

try {
  for (const group of GROUPS) {
    if (stop) break;
    const name = `${group.engine}/${group.durability}`;
    if (group.engine === 'postgres' && !pgProbe?.ok) continue;
    process.stderr.write(`[${name}] set-up\n`);
    const before = memory();
    const setup: EngineSetup =
      group.engine === 'sqlite'
        ? await setupSqlite(dir, group.durability)
        : await setupPostgres({ url: PG_URL, schemaPrefix }, group.durability);
    const problems: string[] = [];
    const notes: string[] = [];
    let results: CaseResult[] = [];
    try {
      for (const log of await setup.verifySql()) {
        const sql = compareSql(log);
        problems.push(...sql.problems.map((p) => `SQL differs: ${p}`));
        notes.push(...sql.notes);
      }
      results = await runInterleaved(setup.cases, group.plan, (s) => progress(`[${name}] ${s}`), () => stop);
      const ops = 2 + group.plan.warmup + group.plan.iterations;
      for (const check of await setup.checkState()) problems.push(...compareState(check, ops, ops));
    } finally {
      await setup.close();
    }
    groupResults.push({ group, results, memory: { before, after: memory() }, problems, notes });
    report(groupResults.at(-1)!);
  }
} catch (e) {
  failed = true;
  process.stderr.write(`bench failed: ${(e as Error).stack ?? String(e)}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
  if (pgProbe?.ok) {
    try {
      await dropSchemas(PG_URL, schemaPrefix);
    } catch (e) {
      process.stderr.write(`could not drop the schemas ${schemaPrefix}_*: ${(e as Error).message}\n`);
    }
  }
}

if (groupResults.length > 0) summary();
const end = memory();
out('### Memory');
out();
out(
  table(
    ['', 'RSS', 'V8 heap reserved', 'heap used (live, after GC)'],
    [
      ['start', fmtMiB(start.rss), fmtMiB(start.heapTotal), fmtMiB(start.heap)],
      ['end', fmtMiB(end.rss), fmtMiB(end.heapTotal), fmtMiB(end.heap)],
      ['growth over the run', fmtBytes(end.rss - start.rss), fmtBytes(end.heapTotal - start.heapTotal), fmtBytes(end.heap - start.heap)],
      ['peak RSS', fmtMiB(process.resourceUsage().maxRSS * 1024), '', ''],
      ...groupResults.map((g) => [
        `growth during ${g.group.engine}/${g.group.durability}`,
        fmtBytes(g.memory.after.rss - g.memory.before.rss),
        fmtBytes(g.memory.after.heapTotal - g.memory.before.heapTotal),
        fmtBytes(g.memory.after.heap - g.memory.before.heap),
      ]),
    ],
  ),
);
out();
out(`Total time ${((Date.now() - startedAt) / 1000).toFixed(0)} s; load average at the end: ${fmtLoad()}.`);

if (args.json) {
  writeFileSync(
    args.json,
    `${JSON.stringify(
      groupResults.map((g) => ({
        group: `${g.group.engine}/${g.group.durability}`,
        plan: g.group.plan,
        problems: g.problems,
        cases: g.results.map((r) => ({ id: r.case.id, botstate: r.botstate, raw: r.raw, roundRatioP50: r.roundRatioP50, roundRatioP99: r.roundRatioP99 })),
      })),
      null,
      2,
    )}\n`,
  );
}
process.exitCode = failed || stop ? 1 : 0;

// ---------------------------------------------------------------------------------------------

function fmtLoad(): string {
  return loadavg().map((l) => l.toFixed(2)).join(' / ');
}

function fmtMiB(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function row(label: string, side: SideResult): string[] {
  const s = side.summary;
  return [label, fmtInt(s.n), fmtTime(s.p50), fmtTime(s.p99), fmtTime(s.p999), fmtTime(s.mean), fmtInt(s.opsPerSec), fmtTime(side.cpuPerOp)];
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined ? '—' : fmtRatio(a / b);
}

function report(g: GroupResult): void {
  out(`### ${g.group.title}`);
  out();
  out(`${fmtInt(g.group.plan.warmup)} warm-up operations per side, then ${fmtInt(g.group.plan.iterations)} measured, in blocks of ${fmtInt(g.group.plan.block)} alternating botstate and raw.`);
  for (const r of g.results) {
    const b = r.botstate.summary;
    const w = r.raw.summary;
    out();
    out(`**${r.case.op === 'recordTrade' ? 'store.ledger.recordTrade' : 'lifecycle transition (pause / resume)'}**`);
    out();
    out(
      table(
        ['', 'n', 'p50', 'p99', 'p99.9', 'mean', 'ops/s', 'CPU/op'],
        [
          row('botstate', r.botstate),
          row(r.case.raw.label, r.raw),
          ['botstate / raw', '', ratio(b.p50, w.p50), ratio(b.p99, w.p99), ratio(b.p999, w.p999), ratio(b.mean, w.mean), '', ratio(r.botstate.cpuPerOp, r.raw.cpuPerOp)],
        ],
      ),
    );
    out();
    out(
      `Per-round ratios (botstate / raw within the same round), median over ${r.botstate.roundP50.length} rounds: ` +
        `p50 ${fmtRatio(r.roundRatioP50)}, p99 ${fmtRatio(r.roundRatioP99)} (${fmtInt(r.botstate.summary.n / r.botstate.roundP50.length)} operations per side per round).`,
    );
  }
  out();
  if (g.problems.length === 0) {
    out('Checked: both sides ran the same statements with the same kinds of parameters, ended with the same trade count and the exact same balance, and botstate\'s audit chain verifies.');
    for (const n of g.notes) out(`Note: ${n}.`);
  } else {
    out('**PROBLEMS (the figures above are not comparable):**');
    for (const p of g.problems) out(`- ${p}`);
  }
  out();
}

function summary(): void {
  const rows: string[][] = [];
  const verdict = (ok: boolean) => (ok ? 'met' : '**MISSED**');
  for (const g of groupResults) {
    for (const r of g.results) {
      const b = r.botstate.summary;
      const w = r.raw.summary;
      const where = `${r.case.engine} ${r.case.durability}, ${r.case.op}`;
      if (r.case.engine === 'sqlite' && r.case.durability === 'process') {
        rows.push(['p99 ≤ 100 µs', where, fmtTime(b.p99), verdict(b.p99 <= 100_000)]);
        rows.push(['p99 ≤ 1.3× raw', where, fmtRatio(b.p99 / w.p99), verdict(b.p99 / w.p99 <= 1.3)]);
        rows.push(['p50 ≤ 1.3× raw', where, fmtRatio(b.p50 / w.p50), verdict(b.p50 / w.p50 <= 1.3)]);
      }
      if (r.case.engine === 'postgres') {
        rows.push(['p99 ≤ 1.2× raw', where, fmtRatio(b.p99 / w.p99), verdict(b.p99 / w.p99 <= 1.2)]);
        rows.push(['p50 ≤ 1.2× raw', where, fmtRatio(b.p50 / w.p50), verdict(b.p50 / w.p50 <= 1.2)]);
      }
    }
  }
  out('### Targets');
  out();
  out(table(['target', 'case', 'measured', 'result'], rows));
  out();
}
