/**
 * The full crash test: `npm run chaos -- --kills 1000 [--engine sqlite|postgres] [--faults] [--power] [--seed S]`.
 *
 * Runs test/crash/harness.ts's runChaos: the paper exchange and the daemon as real child processes,
 * the daemon kill -9'd at random moments and restarted `--kills` times, then every invariant of the
 * exactly-once protocol checked against the exchange's order log. Prints a summary and exits 1 on
 * any violation, or when the run did not exercise what it must (a kill that left an order in
 * flight, 100 fills, a rejection, both liquidations, with faults an unknown outcome: see
 * harness.ts's unexercised), and 2 on bad usage. It runs the built CLI: `npm run build` first.
 *
 * Options: --power (the daemons run in `power` durability: group commit on SQLite), --jobs N (default 24), --uptime LO-HI (ms a daemon lives after recovering, default 80-700),
 * --keep (keep the SQLite database and the exchange's file, and print where they are).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { CI_FAULTS, formatReport, ROOT, runChaos, unexercised } from '../test/crash/harness.ts';

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\nusage: npm run chaos -- --kills N [--engine sqlite|postgres] [--faults] [--power] [--seed S] [--jobs N] [--uptime LO-HI] [--keep]\n`);
  process.exit(2);
}

let values;
try {
  ({ values } = parseArgs({
    options: {
      kills: { type: 'string', default: '1000' },
      engine: { type: 'string', default: 'sqlite' },
      faults: { type: 'boolean', default: false },
      power: { type: 'boolean', default: false },
      seed: { type: 'string' },
      jobs: { type: 'string', default: '24' },
      uptime: { type: 'string', default: '80-700' },
      keep: { type: 'boolean', default: false },
    },
    strict: true,
    allowPositionals: false,
  }));
} catch (e) {
  usage((e as Error).message);
}
const whole = (name: string, v: string, lo: number, hi: number): number => {
  if (!/^\d+$/.test(v) || Number(v) < lo || Number(v) > hi) usage(`--${name} must be a whole number from ${lo} to ${hi}, got "${v}"`);
  return Number(v);
};
// Fewer kills cannot space the run's mid-run events (the cash squeeze and its release, two liquidations).
const kills = whole('kills', values.kills, 5, 1_000_000);
const jobs = whole('jobs', values.jobs, 20, 10_000);
const engine = values.engine;
if (engine !== 'sqlite' && engine !== 'postgres') usage(`--engine must be sqlite or postgres, got "${engine}"`);
const uptime = /^(\d+)-(\d+)$/.exec(values.uptime);
if (!uptime || Number(uptime[1]) > Number(uptime[2])) usage(`--uptime must be LO-HI in ms, e.g. 80-700, got "${values.uptime}"`);
const seed = values.seed ?? String(Date.now());
if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) usage('the CLI is not built: run npm run build first');

const dir = mkdtempSync(join(tmpdir(), 'botstate-chaos-'));
let dbUrl: string;
let cleanup = async (): Promise<void> => {};
if (engine === 'sqlite') {
  dbUrl = join(dir, 'chaos.db');
} else {
  // A fresh schema on the test server (BOTSTATE_TEST_PG, default postgres://postgres@127.0.0.1:5432/test).
  const { ENGINES } = await import('../test/helpers/engines.ts');
  const pg = ENGINES.find((e) => e.name === 'postgres')!;
  if (pg.skip) {
    process.stderr.write(`chaos: ${pg.skip}\n`);
    process.exit(1);
  }
  const fx = await pg.create();
  dbUrl = fx.url;
  cleanup = () => (values.keep ? Promise.resolve() : fx.cleanup());
}

/** Fills a run must show (the suite's runs ask as many). */
const MIN_FILLS = 100;

process.stdout.write(`chaos: ${kills} kills on ${engine}${values.power ? ' in power mode' : ''}${values.faults ? ' with faults' : ''}, seed ${seed}, ${jobs} jobs, database ${dbUrl}\n`);
let failed = true;
try {
  const report = await runChaos({
    dbUrl,
    kills,
    seed,
    jobs,
    faults: values.faults ? CI_FAULTS : undefined,
    durability: values.power ? 'power' : 'process',
    uptimeMs: [Number(uptime[1]), Number(uptime[2])],
    // The last daemon trades until there are as many fills as a run must show (see below).
    minTrades: MIN_FILLS,
    workDir: dir,
    log: (line) => process.stdout.write(`  ${line}\n`),
  });
  process.stdout.write(`${formatReport(report)}\n`);
  for (const v of report.violations) process.stdout.write(`VIOLATION: ${v}\n`);
  // A run that held every invariant but exercised nothing (no kill left an order in flight, no
  // rejection, …) proves nothing: it fails too, as the suite's runs do.
  const missing = unexercised(report, MIN_FILLS);
  for (const m of missing) process.stdout.write(`NOT EXERCISED: ${m}\n`);
  failed = report.violations.length > 0 || missing.length > 0;
  process.stdout.write(
    report.violations.length > 0
      ? `FAILED: ${report.violations.length} violations (seed ${seed})\n`
      : missing.length > 0
        ? `FAILED: every invariant held, but the run did not exercise what it must (seed ${seed}; more --kills, or a longer --uptime)\n`
        : 'PASSED: every invariant held\n',
  );
} finally {
  await cleanup();
  if (values.keep) process.stdout.write(`kept ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
