/**
 * End to end: the real `botstate` binary (bin/botstate.js → dist/cli/main.js), spawned as a child
 * process on the pinned Node, against a real SQLite file and a real PostgreSQL schema.
 *
 * dist must be built first: `npm test` does it; alone, run `npm run build` before this file.
 *
 * Every refused command must print exactly one line on stderr (no stack trace), exit with its
 * documented code (2 usage, 3 rule, 4 not found, 5 storage, 6 schema) and leave the database
 * byte-for-byte unchanged (a logical dump before and after, through the raw driver).
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, openSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { after, before, beforeEach, afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import pg from 'pg';
import { ENGINES, PG_URL, TOKEN, type Fixture } from '../helpers/engines.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import type { BotstateError } from '../../src/errors.ts';
import { historyTable, jsonArrayChunks, tradesTable } from '../../src/cli/output.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'botstate.js');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The seed-000 token in lower case: the same job. */
const TOKEN_LOWER = TOKEN.toLowerCase();
/** The seed-000 token with one letter's case flipped: a bad EIP-55 checksum. */
const TOKEN_BAD_CHECKSUM = TOKEN.replace('aDe', 'ade');
/** A valid address that no job uses. */
const UNKNOWN_TOKEN = '0x00000000000000000000000000000000000000a1';
/** A second valid token (all lower case, so no checksum to get wrong). */
const OTHER_TOKEN = '0x00000000000000000000000000000000000000b2';
const SILENT_TOKEN = '0x00000000000000000000000000000000000000b3';
const STALLED_TOKEN = '0x00000000000000000000000000000000000000b4';
/** PostgreSQL on a port where nothing listens. */
const UNREACHABLE_PG = 'postgres://postgres@127.0.0.1:1/x';

/** A scratch directory for the CLI's working directory and for config files; never the repository. */
let scratch: string;

before(() => {
  assert.ok(existsSync(join(ROOT, 'dist', 'cli', 'main.js')), 'dist/cli/main.js is missing: run `npm run build` first (npm test does it)');
  scratch = mkdtempSync(join(tmpdir(), 'botstate-cli-'));
});
after(() => rmSync(scratch, { recursive: true, force: true }));

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly args: readonly string[];
}

interface RunOptions {
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Run under this umask (through /bin/sh). */
  readonly umask?: string;
  /** Run as this user and group (the test runs as root). */
  readonly uid?: number;
  /** Close the reading end of its stdout at once, as `| head` does once it has read enough. */
  readonly closeStdout?: boolean;
  /** Its stdout goes to this file (`> file`), not to a pipe; `stdout` is then ''. */
  readonly stdoutTo?: string;
  /** Its stderr goes to the same file (`> file 2>&1`); `stderr` is then ''. */
  readonly stderrToo?: boolean;
}

/** Runs `botstate ...args` on the pinned Node, with $BOTSTATE_DB unset unless `env` sets it. */
function cli(args: readonly string[], options: RunOptions = {}): Promise<Result> {
  const env: Record<string, string | undefined> = { ...process.env, ...options.env };
  if (!options.env?.['BOTSTATE_DB']) delete env['BOTSTATE_DB'];
  delete env['NODE_TEST_CONTEXT'];
  delete env['BOTSTATE_DEBUG'];
  const [file, argv] =
    options.umask === undefined
      ? [process.execPath, [BIN, ...args]]
      : ['/bin/sh', ['-c', `umask ${options.umask} && exec "$0" "$@"`, process.execPath, BIN, ...args]];
  return new Promise((resolve, reject) => {
    const user = options.uid === undefined ? {} : { uid: options.uid, gid: options.uid };
    const out = options.stdoutTo === undefined ? 'pipe' : openSync(options.stdoutTo, 'w');
    const child = spawn(file, argv, { cwd: options.cwd ?? scratch, env, stdio: ['ignore', out, options.stderrToo && typeof out === 'number' ? out : 'pipe'], ...user });
    if (typeof out === 'number') closeSync(out);
    let stdout = '';
    let stderr = '';
    if (options.closeStdout) child.stdout!.destroy();
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, args }));
  });
}

/** Runs `fn` over `items`, at most `limit` at a time, keeping the order of the results. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function show(r: Result): string {
  return `botstate ${r.args.join(' ')}\nexit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}

/** Exit 0, nothing on stderr. */
function ok(r: Result): Result {
  assert.equal(r.code, 0, show(r));
  assert.equal(r.stderr, '', show(r));
  return r;
}

/** Exactly one JSON document on stdout. */
function parseJson<T = any>(r: Result): T {
  ok(r);
  assert.match(r.stdout, /^[[{][\s\S]*[\]}]\n$/, `one JSON document expected\n${show(r)}`);
  return JSON.parse(r.stdout) as T;
}

/** A refused command: the documented exit code and one `botstate: …` line on stderr, no stack trace. */
function refused(r: Result, exit: number, pattern?: RegExp): void {
  assert.equal(r.code, exit, show(r));
  assert.match(r.stderr, /^botstate: [^\n]+\n$/, `exactly one line on stderr expected\n${show(r)}`);
  assert.doesNotMatch(r.stderr.slice(0, -1), /[\u0000-\u001f\u007f-\u009f]/, `a control character on stderr\n${show(r)}`);
  assert.ok(r.stderr.length < 1000, `a line that can be read: ${r.stderr.length} characters`);
  // A frame: "at fn (file:///…/x.js:1:2)" or "at /…/x.js:1:2" (not "--executed-at 2999-01-01T00:00:00").
  assert.doesNotMatch(r.stderr, /\bat [^\n]*\.[cm]?[jt]s:\d+:\d+|node:internal|Error:/, `stack trace on stderr\n${show(r)}`);
  if (pattern) assert.match(r.stderr, pattern, show(r));
  if (!r.args.includes('--json')) assert.equal(r.stdout, '', show(r));
}

/** Every key of every object, recursively, is camelCase. */
function assertCamelCase(value: unknown, path = '$'): void {
  if (Array.isArray(value)) return value.forEach((v, i) => assertCamelCase(v, `${path}[${i}]`));
  if (value === null || typeof value !== 'object') return;
  for (const [k, v] of Object.entries(value)) {
    assert.match(k, /^[a-z][a-zA-Z0-9]*$/, `${path}.${k} is not camelCase`);
    assertCamelCase(v, `${path}.${k}`);
  }
}

// Exact decimals for expected values: bigint units of 10^-18, never a float.
const ONE = 10n ** 18n;
function units(s: string): bigint {
  const [i, f = ''] = s.split('.');
  return BigInt(i!) * ONE + BigInt(f.padEnd(18, '0'));
}
function fmt(u: bigint): string {
  const frac = (u % ONE).toString().padStart(18, '0').replace(/0+$/, '');
  return frac === '' ? String(u / ONE) : `${u / ONE}.${frac}`;
}

const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const JOB_FIELDS = [
  'id', 'tokenAddress', 'tokenSymbol', 'chain', 'mode', 'status', 'lastDcaBuyTime', 'recentHigh', 'recentHighTime',
  'totalAccumulated', 'tokenBalance', 'lastRebalanceTime', 'config', 'createdAt', 'updatedAt', 'startedAt', 'stoppedAt', 'version',
];
const TRADE_FIELDS = [
  'id', 'jobId', 'side', 'reason', 'baseAmount', 'quoteAmount', 'priceUsd', 'clientOrderId', 'exchangeOrderId', 'txHash',
  'status', 'error', 'createdAt', 'executedAt',
];

// 78-digit-scale amounts with 18 decimals; the sum below cannot be right through a float.
const BUY_1 = '1234567890123456789012345.123456789012345678';
const BUY_2 = '0.000000000000000001';
const SELL_1 = '0.5';
/** BUY_1 × 20.33, rounded down to 18 decimals: a fill's amounts agree with its price. */
const QUOTE_1 = '25098765206209876520620976.359876520620987633';
const QUOTE_2 = '0.000000000000000003';
/** A config value a float would mangle; it must come back as this exact JSON number literal. */
const BIG_CONFIG = '123456789012345678901234567890.123456789012345678';

function recordArgs(token: string, side: string, reason: string, base: string, quote: string, price: string, id: string): string[] {
  return ['record', token, '--side', side, '--reason', reason, '--base', base, '--quote', quote, '--price', price, '--client-order-id', id];
}

for (const engine of ENGINES) {
  describe(`botstate CLI end to end [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    let db: string[];
    beforeEach(async () => {
      fx = await engine.create();
      db = ['--db', fx.url];
    });
    afterEach(() => fx.cleanup());

    it(`start → pause → resume → record → config → liquidate → status → list → trades → history → verify → db, human and --json, with ${TOKEN}`, async () => {
      // start (human output)
      const started = ok(await cli(['start', TOKEN, '--symbol', 'LGI', '--set', 'accumulate.dcaAmount=25', ...db]));
      assert.match(started.stdout, /^Started ACCUMULATE job for LGI on base: RUNNING$/m);
      assert.match(started.stdout, new RegExp(`^token\\s+LGI ${TOKEN}$`, 'm'));
      assert.match(started.stdout, /^\s+accumulate\.dcaAmount\s+25$/m);
      assert.match(started.stdout, /^\s+accumulate\.dcaIntervalHours\s+4$/m, 'defaults are filled in');
      if (fx.engine === 'sqlite') {
        assert.equal(statSync(fx.url).mode & 0o777, 0o600, 'the SQLite file is created with mode 0600');
      }

      // pause, addressed in lower case: the same job, stored in EIP-55 form
      const paused = parseJson(await cli(['pause', TOKEN_LOWER, '--json', ...db]));
      assert.equal(paused.tokenAddress, TOKEN);
      assert.equal(paused.status, 'PAUSED');
      assert.equal(paused.version, 2);
      const id = paused.id as string;

      // resume (human)
      const resumed = ok(await cli(['resume', TOKEN, ...db]));
      assert.match(resumed.stdout, /^Resumed job for LGI on base: RUNNING$/m);

      // record: a buy (human), a tiny buy (--json), its idempotent repeat, a sell
      const buy1 = ok(await cli([...recordArgs(TOKEN, 'buy', 'dca', BUY_1, QUOTE_1, '20.33', 'cli-1'), ...db]));
      assert.match(buy1.stdout, new RegExp(`^Recorded BUY ${BUY_1.replace('.', '\\.')} \\(DCA, cli-1\\); tokenBalance ${BUY_1.replace('.', '\\.')}, totalAccumulated ${QUOTE_1.replace('.', '\\.')}$`, 'm'));

      const buy2 = parseJson(await cli([...recordArgs(TOKEN_LOWER, 'buy', 'dip_buy', BUY_2, QUOTE_2, '3', 'cli-2'), '--json', ...db]));
      assertCamelCase(buy2);
      assert.equal(buy2.duplicate, false);
      assert.equal(buy2.trade.baseAmount, BUY_2);
      assert.equal(buy2.trade.reason, 'DIP_BUY');
      assert.equal(buy2.tokenBalance, fmt(units(BUY_1) + units(BUY_2)));

      const beforeRepeat = await fx.dump();
      const again = await cli([...recordArgs(TOKEN, 'buy', 'dip_buy', BUY_2, QUOTE_2, '3', 'cli-2'), ...db]);
      assert.match(ok(again).stdout, /^Already recorded BUY 0\.000000000000000001 \(DIP_BUY, cli-2\)/m);
      const againJson = parseJson(await cli([...recordArgs(TOKEN, 'buy', 'dip_buy', BUY_2, QUOTE_2, '3', 'cli-2'), '--json', ...db]));
      assert.equal(againJson.duplicate, true);
      assert.equal(againJson.trade.id, buy2.trade.id);
      assert.equal(againJson.tokenBalance, buy2.tokenBalance);
      assert.equal(await fx.dump(), beforeRepeat, 'recording the same clientOrderId again changes nothing');

      ok(await cli([...recordArgs(TOKEN, 'sell', 'take_profit', SELL_1, '12', '24', 'cli-3'), ...db]));
      const balance = fmt(units(BUY_1) + units(BUY_2) - units(SELL_1));
      const accumulated = fmt(units(QUOTE_1) + units(QUOTE_2));

      // config --set: the exact value comes back as a JSON number literal
      const configured = await cli(['config', TOKEN, '--set', `accumulate.maxAccumulationUsd=${BIG_CONFIG}`, '--set', 'limits.maxTradesPerHour=12', '--json', ...db]);
      assert.equal(parseJson(configured).config.limits.maxTradesPerHour, 12);
      assert.ok(configured.stdout.includes(`"maxAccumulationUsd": ${BIG_CONFIG}\n`), configured.stdout);
      // The same values again change nothing, and it says so.
      assert.match(ok(await cli(['config', TOKEN, '--set', 'limits.maxTradesPerHour=12', ...db])).stdout, /^Config of \S+ on base unchanged \(it already held these values\):\n/);

      // liquidate
      const liquidating = parseJson(await cli(['liquidate', TOKEN, '--json', ...db]));
      assert.equal(liquidating.id, id);
      assert.equal(liquidating.status, 'LIQUIDATING');
      assert.equal(liquidating.tokenBalance, balance);

      // the read-only views, in parallel
      const [statusH, statusJ, listH, listJ, tradesH, tradesJ, historyH, historyJ, statusUpper] = await Promise.all([
        cli(['status', TOKEN, ...db]),
        cli(['status', TOKEN_LOWER, '--json', ...db]),
        cli(['list', ...db]),
        cli(['list', '--json', ...db]),
        cli(['trades', TOKEN, ...db]),
        cli(['trades', TOKEN, '--json', ...db]),
        cli(['history', TOKEN, ...db]),
        cli(['history', TOKEN_LOWER, '--json', ...db]),
        cli(['status', `0x${TOKEN.slice(2).toUpperCase()}`, '--json', ...db]),
      ]);

      // status, human
      ok(statusH);
      assert.match(statusH.stdout, /^status\s+LIQUIDATING$/m);
      assert.match(statusH.stdout, /^mode\s+ACCUMULATE$/m);
      assert.match(statusH.stdout, new RegExp(`^tokenBalance\\s+${balance.replace('.', '\\.')}$`, 'm'));
      assert.match(statusH.stdout, new RegExp(`^totalAccumulated\\s+${accumulated.replace('.', '\\.')}$`, 'm'));
      assert.match(statusH.stdout, new RegExp(`^\\s+accumulate\\.maxAccumulationUsd\\s+${BIG_CONFIG.replace('.', '\\.')}$`, 'm'));
      assert.match(statusH.stdout, /^\s+limits\.maxPositionUsd\s+off$/m);
      // resume cleared the stop time of the earlier pause: a LIQUIDATING job has not stopped
      assert.match(statusH.stdout, /^stoppedAt\s+-$/m);
      for (const field of ['createdAt', 'updatedAt', 'startedAt', 'lastDcaBuyTime']) {
        const m = new RegExp(`^${field}\\s+(\\S+)$`, 'm').exec(statusH.stdout);
        assert.ok(m, `${field} in status\n${statusH.stdout}`);
        assert.match(m[1]!, ISO, `${field} is ISO 8601`);
      }

      // status, --json: every documented field, amounts as exact strings, config numbers as literals
      const job = parseJson(statusJ);
      assertCamelCase(job);
      for (const f of JOB_FIELDS) assert.ok(Object.hasOwn(job, f), `status --json has ${f}`);
      assert.equal(job.id, id);
      assert.equal(job.tokenAddress, TOKEN);
      assert.equal(job.tokenSymbol, 'LGI');
      assert.equal(job.chain, 'base');
      assert.equal(job.mode, 'ACCUMULATE');
      assert.equal(job.status, 'LIQUIDATING');
      assert.equal(job.tokenBalance, balance);
      assert.equal(job.totalAccumulated, accumulated);
      assert.equal(job.version, 8);
      assert.match(job.lastDcaBuyTime, ISO);
      assert.equal(job.config.accumulate.dcaAmount, 25);
      assert.equal(job.config.limits.maxPositionUsd, null);
      assert.ok(statusJ.stdout.includes(`"maxAccumulationUsd": ${BIG_CONFIG}\n`), statusJ.stdout);
      assert.ok(/"dcaAmount": 25,/.test(statusJ.stdout) && /"targetRatio": 0\.5,/.test(statusJ.stdout), statusJ.stdout);
      assert.deepEqual(parseJson(statusUpper), job, 'an all-upper-case address is the same job');

      // list, human: one aligned row
      ok(listH);
      const [header, row, ...more] = listH.stdout.trimEnd().split('\n');
      assert.deepEqual(more, [], listH.stdout);
      assert.match(header!, /^SYMBOL\s+TOKEN\s+CHAIN\s+MODE\s+STATUS\s+OPEN ORDERS\s+DAEMON\s+TOKEN BALANCE\s+TOTAL ACCUMULATED\s+UPDATED$/);
      assert.match(row!, new RegExp(`^LGI\\s+${TOKEN}\\s+base\\s+ACCUMULATE\\s+LIQUIDATING\\s+0\\s+-\\s+${balance.replace('.', '\\.')}\\s+${accumulated.replace('.', '\\.')}\\s+\\S+$`));
      assert.equal(row!.indexOf('LIQUIDATING'), header!.indexOf('STATUS'), 'columns are aligned');
      assert.equal(row!.indexOf(balance), header!.indexOf('TOKEN BALANCE'), 'columns are aligned');

      // list, --json: an array of the same jobs
      const jobs = parseJson<unknown[]>(listJ);
      assert.ok(Array.isArray(jobs));
      // status gives the job's open orders (none here) and the daemon running it (none); list counts the open orders
      const { openOrders, daemon, limitsUsed, ...asListed } = job;
      assert.deepEqual(openOrders, []);
      assert.equal(daemon, null);
      // What counts against its limits (status only): liquidating, the hour's trades alone.
      assert.deepEqual(limitsUsed, { tradesLastHour: 3, maxTradesPerHour: 12, reached: [] });
      assert.deepEqual(jobs, [{ ...asListed, openOrderCount: 0, daemon: null }]);

      // trades, human: every trade in full precision
      ok(tradesH);
      const tradeLines = tradesH.stdout.trimEnd().split('\n');
      assert.equal(tradeLines.length, 4, tradesH.stdout);
      assert.match(tradeLines[0]!, /^CLIENT ORDER ID\s+SIDE\s+REASON\s+STATUS\s+BASE AMOUNT\s+QUOTE AMOUNT\s+PRICE USD\s+CREATED\s+EXECUTED/);
      assert.match(tradesH.stdout, new RegExp(`^cli-1\\s+BUY\\s+DCA\\s+EXECUTED\\s+${BUY_1.replace('.', '\\.')}\\s+${QUOTE_1.replace('.', '\\.')}\\s+20\\.33\\s+\\S+Z\\s+\\S+Z`, 'm'));
      assert.match(tradesH.stdout, /^cli-2\s+BUY\s+DIP_BUY\s+EXECUTED\s+0\.000000000000000001\s+0\.000000000000000003\s+3\s/m);
      assert.match(tradesH.stdout, /^cli-3\s+SELL\s+TAKE_PROFIT\s+EXECUTED\s+0\.5\s+12\s+24\s/m);

      // trades, --json
      const trades = parseJson<any[]>(tradesJ);
      assert.ok(Array.isArray(trades));
      assertCamelCase(trades);
      assert.deepEqual(trades.map((t) => [t.clientOrderId, t.side, t.reason, t.status, t.baseAmount, t.quoteAmount, t.priceUsd]), [
        ['cli-1', 'BUY', 'DCA', 'EXECUTED', BUY_1, QUOTE_1, '20.33'],
        ['cli-2', 'BUY', 'DIP_BUY', 'EXECUTED', BUY_2, QUOTE_2, '3'],
        ['cli-3', 'SELL', 'TAKE_PROFIT', 'EXECUTED', SELL_1, '12', '24'],
      ]);
      for (const t of trades) {
        for (const f of TRADE_FIELDS) assert.ok(Object.hasOwn(t, f), `trades --json has ${f}`);
        assert.equal(t.jobId, id);
        assert.match(t.createdAt, ISO);
        assert.match(t.executedAt, ISO);
      }

      // history: the audit rows, one per change (the repeated record is not one)
      const history = parseJson<any[]>(historyJ);
      assert.ok(Array.isArray(history));
      assertCamelCase(history.map(({ before: _b, after: _a, ...rest }) => rest));
      assert.deepEqual(history.map((h) => h.action), ['create', 'pause', 'resume', 'record', 'record', 'record', 'configure', 'liquidate']);
      assert.deepEqual(history.map((h) => h.seq), [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.equal(history[1].before.status, 'RUNNING');
      assert.equal(history[1].after.status, 'PAUSED');
      assert.equal(history[7].after.status, 'LIQUIDATING');
      for (const h of history) assert.match(h.actor, /^cli/);
      ok(historyH);
      assert.match(historyH.stdout, /^SEQ\s+AT\s+ACTOR\s+ENTITY\s+ACTION\s+CHANGE$/m);
      assert.match(historyH.stdout, /^2\s+\S+Z\s+cli\S*\s+job\s+pause\s+status: RUNNING → PAUSED/m);
      // A fill says what came in, what went out and at what price, as the daemon's log does.
      assert.match(historyH.stdout, new RegExp(`^4\\s+\\S+Z\\s+cli\\S*\\s+trade\\s+record\\s+EXECUTED BUY DCA ${BUY_1.replace('.', '\\.')} for ${QUOTE_1.replace('.', '\\.')} @ 20\\.33 \\(cli-1\\)`, 'm'));
      assert.match(historyH.stdout, /^8\s+\S+Z\s+cli\S*\s+job\s+liquidate\s+status: RUNNING → LIQUIDATING/m);
      // A config change shows the values that changed, not two whole configs.
      assert.match(historyH.stdout, new RegExp(`^7\\s+\\S+Z\\s+cli\\S*\\s+job\\s+configure\\s+config\\.accumulate\\.maxAccumulationUsd: 1000 → ${BIG_CONFIG.replace('.', '\\.')}; config\\.limits\\.maxTradesPerHour: - → 12 *$`, 'm'));

      // verify
      const [verifyH, verifyJ] = await Promise.all([cli(['verify', ...db]), cli(['verify', '--json', ...db])]);
      assert.match(ok(verifyH).stdout, /^Audit log intact: 8 entries in 1 streams?\.$/m);
      const verified = parseJson(verifyJ) as { heads: Array<{ stream: string; seq: number; hash: string }> };
      assert.deepEqual({ ...verified, heads: verified.heads.map((h) => [h.stream.slice(0, 4), h.seq, /^[0-9a-f]{64}$/.test(h.hash)]) },
        { streams: 1, entries: 8, problems: [], heads: [['job:', 8, true]] });

      // db status / migrate / rollback --to 1 / migrate: the data survives the round trip
      const schema = parseJson(await cli(['db', 'status', '--json', ...db]));
      assertCamelCase(schema);
      assert.ok(schema.latest >= 2, 'there is a migration above 1 to roll back');
      assert.equal(schema.current, schema.latest);
      assert.ok(schema.migrations.every((m: { state: string }) => m.state === 'applied'), JSON.stringify(schema));
      const statusTable = ok(await cli(['db', 'status', ...db])).stdout;
      assert.match(statusTable, /^VERSION\s+NAME\s+STATE\s+APPLIED$/m);
      assert.match(statusTable, new RegExp(`^Schema is at version ${schema.latest}; this botstate expects ${schema.latest}\\.$`, 'm'));
      assert.match(ok(await cli(['db', 'migrate', ...db])).stdout, new RegExp(`^Schema is at version ${schema.latest}\\.\\n$`));
      // A schema every other command refuses is not summed up as all clear: db status says why.
      const [q] = fx.engine === 'sqlite' ? ['?'] : ['$1'];
      const [{ checksum: released }] = (await fx.raw('SELECT checksum FROM schema_migrations WHERE version = 1')) as [{ checksum: string }];
      await fx.raw(`UPDATE schema_migrations SET checksum = ${q} WHERE version = 1`, ['0'.repeat(64)]);
      assert.match(ok(await cli(['db', 'status', ...db])).stdout, new RegExp(`^Schema is at version ${schema.latest}; this botstate expects ${schema.latest}, and refuses it \\(exit 6 for every other command but db backup\\): migration 0001_\\w+ was edited after it was applied to this database`, 'm'));
      assert.equal(parseJson(await cli(['db', 'status', '--json', ...db])).problem.code, 'MIGRATION_CHECKSUM_MISMATCH');
      refused(await cli(['list', ...db]), 6, /0001_/);
      await fx.raw(`UPDATE schema_migrations SET checksum = ${q} WHERE version = 1`, [released]);
      assert.equal(parseJson(await cli(['db', 'status', '--json', ...db])).problem, null);

      // The trades recorded by hand left the job a strategy state (the limits' counts): migration 2's down drops it.
      refused(await cli(['db', 'rollback', '--to', '1', ...db]), 3, /rolling back 0002_job_strategy_state would delete 1 job's strategy state \(back the database up first, then roll back anyway with --force, or force: true in the library\)/);
      const rolledBack = parseJson(await cli(['db', 'rollback', '--to', '1', '--force', '--json', ...db]));
      assertCamelCase(rolledBack);
      assert.equal(rolledBack.version, 1);
      assert.equal(parseJson(await cli(['db', 'status', '--json', ...db])).current, 1);
      refused(await cli(['status', TOKEN, ...db]), 6, /db migrate/);
      // An older schema, which every other command refuses, is said so too.
      assert.equal(parseJson(await cli(['db', 'status', '--json', ...db])).problem.code, 'SCHEMA_OUTDATED');
      assert.match(ok(await cli(['db', 'status', ...db])).stdout, new RegExp(`^Schema is at version 1; this botstate expects ${schema.latest}, and refuses it \\(exit 6 for every other command but db backup and db rollback; daemon and db migrate migrate it\\): the database schema is at version 1; this botstate needs version ${schema.latest} \\(.*run botstate db migrate`, 'm'));
      // Commands that change a job do not migrate either: a typo cannot start a migration.
      const atVersion1 = await fx.dump();
      refused(await cli(['pause', TOKEN, ...db]), 6, /db migrate/);
      refused(await cli(['pause', UNKNOWN_TOKEN, ...db]), 6, /db migrate/);
      refused(await cli([...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'at-v1'), ...db]), 6, /db migrate/);
      refused(await cli([...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'bad id'), ...db]), 2, /--client-order-id "bad id" is not allowed/);
      // Nor does start on an existing database: the start itself may be refused (the job is not
      // IDLE here), and a refused command must not have migrated. It creates new databases only.
      refused(await cli(['start', TOKEN, ...db]), 6, /db migrate/);
      refused(await cli(['start', UNKNOWN_TOKEN, ...db]), 6, /db migrate/);
      assert.equal(await fx.dump(), atVersion1, 'nothing migrated');

      const migrated = parseJson(await cli(['db', '--to', String(schema.latest), 'migrate', '--json', ...db]));
      assertCamelCase(migrated);
      assert.equal(migrated.version, schema.latest);
      const [statusAfter, tradesAfter, historyAfter] = await Promise.all([
        // Flags may come before the command, values included.
        cli(['--chain', 'base', 'status', TOKEN, '--json', ...db]),
        cli(['trades', TOKEN, '--json', ...db]),
        cli(['history', TOKEN, '--json', ...db]),
      ]);
      // All but the strategy state, which the forced rollback dropped (the hour's trades counted in it with it).
      assert.deepEqual(parseJson(statusAfter), { ...job, strategyState: {}, limitsUsed: { tradesLastHour: 0, maxTradesPerHour: 12, reached: [] } });
      assert.deepEqual(parseJson(tradesAfter), trades);
      assert.deepEqual(parseJson(historyAfter), history);

      // verify on an altered log: exit 5, and with --json still one document (the report and the error).
      if (fx.engine === 'sqlite') await fx.raw('DROP TRIGGER audit_log_no_update');
      else await fx.raw('ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_change');
      await fx.raw("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2");
      const [badH, badJ] = await Promise.all([cli(['verify', ...db]), cli(['verify', '--json', ...db])]);
      assert.equal(badH.code, 5, show(badH));
      assert.match(badH.stderr, /^botstate: the audit log has 1 problem\(s\) \(restore [^\n]+\n$/, show(badH));
      assert.match(badH.stdout, /^job:\S+\s+2\s+hash does not match the entry \(it was altered\)$/m, show(badH));
      assert.equal(badJ.code, 5, show(badJ));
      assert.match(badJ.stdout, /^\{[\s\S]*\}\n$/, `one JSON document expected\n${show(badJ)}`);
      const bad = JSON.parse(badJ.stdout) as { problems: unknown[]; error: { code: string } };
      assert.equal(bad.problems.length, 1);
      assert.equal(bad.error.code, 'STORAGE_CORRUPT');

      // A job row whose stored config was edited into something invalid: verify reports it, and
      // every other command says the database is damaged (exit 5), not that the user erred.
      ok(await cli(['start', OTHER_TOKEN, ...db]));
      const config = JSON.stringify({ accumulate: { dcaAmount: 'abc' } });
      const [q1, q2] = fx.engine === 'sqlite' ? ['?', '?'] : ['$1', '$2'];
      await fx.raw(`UPDATE jobs SET config = ${q1} WHERE id = ${q2}`, [config, job.id]);
      const [verifyBad, statusBad, listBad, listBadJ] = await Promise.all([
        cli(['verify', ...db]),
        cli(['status', TOKEN, ...db]),
        cli(['list', ...db]),
        cli(['list', '--json', ...db]),
      ]);
      assert.equal(verifyBad.code, 5, show(verifyBad));
      assert.match(verifyBad.stdout, /the job row cannot be read: the stored config of job \S+ is not valid: accumulate\.dcaAmount/, show(verifyBad));
      assert.equal(statusBad.code, 5, show(statusBad));
      assert.match(statusBad.stderr, /^botstate: the stored config of job \S+ is not valid: [^\n]+\n$/, show(statusBad));
      // One damaged row does not hide the other positions: list shows them, then fails (exit 5) naming it.
      assert.equal(listBad.code, 5, show(listBad));
      assert.match(listBad.stderr, new RegExp(`^botstate: 1 job cannot be read \\(the others are listed\\): the stored config of job ${job.id} is not valid: [^\\n]+\\n$`), show(listBad));
      assert.match(listBad.stdout, new RegExp(OTHER_TOKEN, 'i'), show(listBad));
      assert.doesNotMatch(listBad.stdout, new RegExp(TOKEN, 'i'), show(listBad));
      assert.equal(listBadJ.code, 5, show(listBadJ));
      const listed = JSON.parse(listBadJ.stdout) as { jobs: Array<{ tokenAddress: string }>; damaged: Array<Record<string, string>>; error: { code: string } };
      assert.deepEqual(listed.jobs.map((j) => j.tokenAddress.toLowerCase()), [OTHER_TOKEN.toLowerCase()]);
      assert.deepEqual(
        listed.damaged.map(({ id, status, code }) => ({ id, status, code })),
        [{ id: job.id, status: job.status, code: 'STORAGE_CORRUPT' }],
      );
      assert.equal(listed.error.code, 'STORAGE_CORRUPT');
    });

    it('status shows the open orders, which the balance does not count yet', async () => {
      ok(await cli(['start', TOKEN, '--symbol', 'LGI', ...db]));
      assert.match(ok(await cli(['status', TOKEN, ...db])).stdout, /^openOrders\s+-$/m);
      assert.match(ok(await cli(['status', TOKEN, ...db])).stdout, /^daemon\s+none \(no daemon holds its lease\): a running daemon takes it at its next tick, unless none runs or none has room for it \(botstate daemons\)$/m);
      assert.deepEqual(parseJson(await cli(['status', TOKEN, '--json', ...db])).openOrders, []);
      const store = await fx.open();
      try {
        await store.ledger.recordIntent({ job: { tokenAddress: TOKEN }, clientOrderId: 'open-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      } finally {
        await store.close();
      }
      assert.match(ok(await cli(['status', TOKEN, ...db])).stdout, /^openOrders\s+BUY DCA for 10 quote \(open-1, since \S+Z\)$/m);
      const open = parseJson(await cli(['status', TOKEN, '--json', ...db])).openOrders;
      assert.deepEqual(open.map((t: { clientOrderId: string; status: string }) => [t.clientOrderId, t.status]), [['open-1', 'PENDING']]);
      // As of a time, the job is rebuilt from its history, which has no open orders to show.
      assert.doesNotMatch(ok(await cli(['status', TOKEN, '--as-of', '9999-12-31T23:59Z', ...db])).stdout, /openOrders/);
    });

    it('status shows what counts against the limits now: the hour\'s trades and the accumulation, or a liquidity job\'s day and cash', async () => {
      ok(await cli(['start', TOKEN, '--symbol', 'LGI', '--set', 'limits.maxTradesPerHour=2', '--set', 'accumulate.maxAccumulationUsd=10', ...db]));
      for (const id of ['h-1', 'h-2']) ok(await cli(['record', TOKEN, '--side', 'buy', '--reason', 'dca', '--base', '10', '--quote', '5', '--price', '0.5', '--client-order-id', id, ...db]));
      assert.match(
        ok(await cli(['status', TOKEN, ...db])).stdout,
        /^limitsUsed +2 trades in the last hour, of limits\.maxTradesPerHour 2 \(reached\); 10 USD accumulated, of accumulate\.maxAccumulationUsd 10 \(reached\)$/m,
      );
      assert.deepEqual(parseJson(await cli(['status', TOKEN, '--json', ...db])).limitsUsed, {
        tradesLastHour: 2, maxTradesPerHour: 2, reached: ['limits.maxTradesPerHour', 'accumulate.maxAccumulationUsd'], accumulatedUsd: '10', maxAccumulationUsd: '10',
      });
      ok(await cli(['start', OTHER_TOKEN, '--symbol', 'LIQ', '--mode', 'liquidity', '--set', 'liquidity.capitalUsd=100', ...db]));
      ok(await cli(['record', OTHER_TOKEN, '--side', 'buy', '--reason', 'rebalance', '--base', '80', '--quote', '40', '--price', '0.5', '--client-order-id', 'l-1', ...db]));
      const day = new Date().toISOString().slice(0, 10);
      assert.deepEqual(parseJson(await cli(['status', OTHER_TOKEN, '--json', ...db])).limitsUsed, {
        tradesLastHour: 1, maxTradesPerHour: null, reached: [], day, tradedTodayUsd: '40', maxDailyVolume: '500', cashUsd: '60',
      });
      assert.match(ok(await cli(['status', OTHER_TOKEN, ...db])).stdout, new RegExp(`^limitsUsed +1 trade in the last hour, of limits\\.maxTradesPerHour off; 40 USD traded on ${day} \\(UTC\\), of liquidity\\.maxDailyVolume 500; 60 USD of liquidity cash left$`, 'm'));
      // Room under a cap smaller than limits.minTradeUsd leaves no order: reached. Paused, it trades nothing anyway.
      ok(await cli(['config', OTHER_TOKEN, '--set', 'limits.minTradeUsd=61', '--set', 'liquidity.maxDailyVolume=100', ...db]));
      ok(await cli(['pause', OTHER_TOKEN, ...db]));
      assert.match(ok(await cli(['status', OTHER_TOKEN, ...db])).stdout, new RegExp(`^limitsUsed +1 trade in the last hour, of limits\\.maxTradesPerHour off; 40 USD traded on ${day} \\(UTC\\), of liquidity\\.maxDailyVolume 100 \\(reached: less than limits\\.minTradeUsd left\\); 60 USD of liquidity cash left \\(less than limits\\.minTradeUsd\\) \\(not trading while PAUSED\\)$`, 'm'));
      // A liquidation heeds the trade count only (and maxOrderUsd): only that is given.
      ok(await cli(['liquidate', OTHER_TOKEN, ...db]));
      assert.deepEqual(parseJson(await cli(['status', OTHER_TOKEN, '--json', ...db])).limitsUsed, { tradesLastHour: 1, maxTradesPerHour: null, reached: [] });
      // Not audited: a job as of a time has none.
      assert.doesNotMatch(ok(await cli(['status', TOKEN, '--as-of', '9999-12-31T23:59Z', ...db])).stdout, /limitsUsed/);
    });

    it('list shows each job\'s open orders and the daemon holding it: none, one alive, one silent, one whose lease expired', async () => {
      ok(await cli(['start', TOKEN, '--symbol', 'LGI', ...db]));
      ok(await cli(['start', OTHER_TOKEN, '--symbol', 'OTH', ...db]));
      ok(await cli(['start', SILENT_TOKEN, '--symbol', 'SIL', ...db]));
      ok(await cli(['start', STALLED_TOKEN, '--symbol', 'STL', ...db]));
      const row = (out: string, symbol: string) => out.split('\n').find((l) => l.startsWith(`${symbol} `))!.split(/\s{2,}/);
      const header = ok(await cli(['list', ...db])).stdout.split('\n')[0]!.split(/\s{2,}/);
      // None in a status: said as such, not as an empty database.
      assert.equal(ok(await cli(['list', '--status', 'idle', ...db])).stdout, 'No IDLE jobs.\n');
      assert.deepEqual(header.slice(4, 7), ['STATUS', 'OPEN ORDERS', 'DAEMON']);
      assert.deepEqual(row(ok(await cli(['list', ...db])).stdout, 'LGI').slice(4, 7), ['RUNNING', '0', '-']);
      const store = await fx.open();
      let ids: string[];
      try {
        await store.ledger.recordIntent({ job: { tokenAddress: TOKEN }, clientOrderId: 'open-1', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
        await store.ledger.recordIntent({ job: { tokenAddress: TOKEN }, clientOrderId: 'open-2', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
        ids = await Promise.all([TOKEN, OTHER_TOKEN, SILENT_TOKEN, STALLED_TOKEN].map(async (tokenAddress) => (await store.jobs.get({ tokenAddress })).id));
      } finally {
        await store.close();
      }
      // A daemon alive holding LGI; one that stopped renewing OTH's lease (killed) an hour ago.
      const [a, b, c, d, e] = fx.engine === 'sqlite' ? ['?', '?', '?', '?', '?'] : ['$1', '$2', '$3', '$4', '$5'];
      const soon = new Date(Date.now() + 60_000).toISOString();
      const past = new Date(Date.now() - 3_600_000).toISOString();
      // SIL's daemon was killed (kill -9) on this host a moment ago: its process is gone, its lease
      // runs a minute more. STL's, on another host, has not heartbeated for two minutes (stalled).
      const now = new Date().toISOString();
      const stalled = new Date(Date.now() - 120_000).toISOString();
      for (const [id, host, pid, at] of [['d-alive', 'box', 4242, soon], ['d-dead', 'box', 4343, past], ['d-killed', hostname(), 2 ** 22 + 7, now], ['d-stalled', 'box', 4545, stalled]] as const) {
        await fx.raw(`INSERT INTO daemon_instances (id, host, pid, started_at, heartbeat_at) VALUES (${a}, ${b}, ${c}, ${d}, ${e})`, [id, host, pid, past, at]);
      }
      for (const [i, owner, until] of [[0, 'd-alive', soon], [1, 'd-dead', past], [2, 'd-killed', soon], [3, 'd-stalled', soon]] as const) {
        await fx.raw(`INSERT INTO job_leases (job_id, owner, epoch, expires_at) VALUES (${a}, ${b}, 1, ${c})`, [ids[i]!, owner, until]);
      }
      const listed = ok(await cli(['list', ...db])).stdout;
      assert.deepEqual(row(listed, 'LGI').slice(4, 7), ['RUNNING', '2', 'pid 4242 on box']);
      assert.deepEqual(row(listed, 'OTH').slice(4, 7), ['RUNNING', '0', 'expired']);
      assert.deepEqual(row(listed, 'SIL').slice(4, 7), ['RUNNING', '0', `silent (pid ${2 ** 22 + 7} on ${hostname()})`]);
      assert.deepEqual(row(listed, 'STL').slice(4, 7), ['RUNNING', '0', 'silent (pid 4545 on box)']);
      assert.match(ok(await cli(['status', SILENT_TOKEN, ...db])).stdout, new RegExp(`^daemon +d-killed \\(pid ${2 ** 22 + 7} on ${hostname()}\\), silent \\(killed or stalled, last heartbeat ${now.replace(/\./g, '\\.')}\\): not running it; its lease holds the job until ${soon.replace(/\./g, '\\.')}, unless a daemon that starts takes it over$`, 'm'));
      assert.match(ok(await cli(['status', TOKEN, ...db])).stdout, /^daemon +d-alive \(pid 4242 on box\), lease until /m);
      const json = parseJson<Array<{ tokenSymbol: string; openOrderCount: number; daemon: { instance: string; pid: number; host: string; running: boolean } | null }>>(await cli(['list', '--json', ...db]));
      assert.deepEqual(
        json.map((j) => [j.tokenSymbol, j.openOrderCount, j.daemon?.instance, j.daemon?.pid, j.daemon?.host, j.daemon?.running]),
        [['LGI', 2, 'd-alive', 4242, 'box', true], ['OTH', 0, 'd-dead', 4343, 'box', false], ['SIL', 0, 'd-killed', 2 ** 22 + 7, hostname(), false], ['STL', 0, 'd-stalled', 4545, 'box', false]],
      );
      // The same daemon object as status --json gives.
      assert.deepEqual(json[0]!.daemon, parseJson(await cli(['status', TOKEN, '--json', ...db])).daemon);
      // A lease that ran out: a RUNNING job waits for a daemon to take it over; a PAUSED one with no
      // open order is taken by none, and is not said to wait.
      const expired = `d-dead \\(pid 4343 on box\\), lease expired at ${past.replace(/\./g, '\\.')}`;
      assert.match(ok(await cli(['status', OTHER_TOKEN, ...db])).stdout, new RegExp(`^daemon +${expired}: not running it until a daemon takes it over$`, 'm'));
      ok(await cli(['pause', OTHER_TOKEN, ...db]));
      assert.match(ok(await cli(['status', OTHER_TOKEN, ...db])).stdout, new RegExp(`^daemon +${expired}: no daemon takes a job that is PAUSED with no open order$`, 'm'));
    });

    it('status --as-of shows the job as it was then, from its audit log', async () => {
      ok(await cli(['start', TOKEN, '--symbol', 'LGI', ...db]));
      ok(await cli([...recordArgs(TOKEN, 'buy', 'dca', '10', '25', '2.5', 'at-1'), ...db]));
      ok(await cli(['pause', TOKEN, ...db]));
      const history = parseJson<Array<{ seq: number; at: string }>>(await cli(['history', TOKEN, '--json', ...db]));
      const then = parseJson(await cli(['status', TOKEN, '--as-of', history[1]!.at, '--json', ...db]));
      assert.equal(then.asOf, history[1]!.at);
      assert.deepEqual([then.status, then.tokenBalance, then.version, then.strategyState], ['RUNNING', '10', 2, undefined]);
      const human = ok(await cli(['status', TOKEN, '--as-of', history[1]!.at, ...db])).stdout;
      assert.match(human, new RegExp(`^as of ${history[1]!.at.replace(/\./g, '\\.')} \\(the job's audit log up to version 2\\)\n`));
      assert.match(human, /^status\s+RUNNING$/m);
      // Seconds and milliseconds may be left out; the time is UTC.
      assert.equal(parseJson(await cli(['status', TOKEN, '--as-of', '9999-12-31T23:59Z', '--json', ...db])).status, 'PAUSED');
      refused(await cli(['status', TOKEN, '--as-of', '2000-01-01T00:00:00Z', ...db]), 4, /^botstate: LGI \(\S+ on base\) did not exist yet then: it was created \S+, after 2000-01-01T00:00:00\.000Z \(give a time after its creation\)\n$/);
      for (const bad of ['yesterday', '2026-02-30T12:00Z', '2026-11-26T12:00:00+01:00', '2026-11-26']) {
        refused(await cli(['status', TOKEN, '--as-of', bad, ...db]), 2, /is not a UTC time \(write it as history shows times/);
      }
    });

    it('history, trades and status --as-of of a long job read a page at a time: the same text, in a heap far smaller than the log', { skip: engine.name !== 'sqlite' && 'SQLite: writing 30,000 entries on PostgreSQL takes too long here' }, async () => {
      const store = await openStore(fx.url);
      const { id } = await store.jobs.start({ tokenAddress: TOKEN, tokenSymbol: 'LGI' });
      for (let k = 0; k < 30; k++) {
        await store.transaction(async () => {
          for (let i = 0; i < 1000; i++) await store.ledger.recordTrade({ job: { id }, clientOrderId: `long-${k}-${i}`, side: 'BUY', reason: 'DCA', baseAmount: '1.000000000000000001', quoteAmount: '2.5', priceUsd: '2.499999999999999997' });
        });
      }
      const entries = await store.history({ id });
      const all = await store.ledger.trades({ id });
      await store.close();
      assert.equal(entries.length, 30_001);
      // A 40 MB heap: the whole log, parsed and shown, takes several times that.
      const small = { env: { NODE_OPTIONS: '--max-old-space-size=40' } };
      const json = ok(await cli(['history', TOKEN, '--json', ...db], small)).stdout;
      assert.equal(json, [...jsonArrayChunks(entries)].join(''));
      const text = ok(await cli(['history', TOKEN, ...db], small)).stdout;
      assert.equal(text, [...historyTable(entries)].join(''));
      const asOf = parseJson(await cli(['status', TOKEN, '--as-of', '9999-12-31T23:59Z', '--json', ...db], small));
      assert.deepEqual([asOf.version, asOf.tokenBalance], [30_001, '30000.00000000000003']);
      // trades likewise.
      assert.equal(ok(await cli(['trades', TOKEN, '--json', ...db], small)).stdout, [...jsonArrayChunks(all)].join(''));
      assert.equal(ok(await cli(['trades', TOKEN, '--status', 'executed', ...db], small)).stdout, [...tradesTable(all)].join(''));
      assert.equal(ok(await cli(['trades', TOKEN, '--status', 'pending', '--json', ...db], small)).stdout, '[]\n');
    });

    it("a writer whose clock is a minute behind the job's last entry stamps its entry after it: the log's times never go backwards", async () => {
      // Another host's clock, or an NTP step back: Date.now() a minute (or 10 minutes) behind.
      const behind = (ms: number) => ({
        NODE_OPTIONS: `--import=data:text/javascript,${encodeURIComponent(`const R = Date; globalThis.Date = class extends R { constructor(...a) { if (a.length === 0) super(R.now() - ${ms}); else super(...a); } static now() { return R.now() - ${ms}; } };`)}`,
      });
      ok(await cli(['start', TOKEN, '--symbol', 'LGI', ...db]));
      ok(await cli(['pause', TOKEN, ...db]));
      ok(await cli(['resume', TOKEN, ...db], { env: behind(60_000) }));
      ok(await cli(['pause', TOKEN, ...db]));
      const history = parseJson<Array<{ seq: number; at: string; action: string }>>(await cli(['history', TOKEN, '--json', ...db]));
      assert.deepEqual(history.map((e) => e.action), ['create', 'pause', 'resume', 'pause']);
      assert.equal(history[2]!.at, history[1]!.at, 'stamped with the entry before it');
      assert.equal((history[2] as unknown as { after: { startedAt: string } }).after.startedAt, history[2]!.at, 'and so is the start it records');
      for (let i = 1; i < history.length; i++) assert.ok(history[i]!.at >= history[i - 1]!.at, JSON.stringify(history));
      // Time travel finds the resume at its time (before, it stopped at the pause after it).
      assert.equal(parseJson(await cli(['status', TOKEN, '--as-of', history[2]!.at, '--json', ...db])).status, 'RUNNING');
      // A clock further behind than 5 minutes is not followed: its entry keeps its own time.
      ok(await cli(['resume', TOKEN, ...db], { env: behind(600_000) }));
      const last = parseJson<Array<{ at: string }>>(await cli(['history', TOKEN, '--json', '--limit', '2', ...db]));
      assert.ok(Date.parse(last[0]!.at) - Date.parse(last[1]!.at) > 500_000, JSON.stringify(last));
      ok(await cli(['verify', ...db]));
    });

    it('refuses every bad input with one line, its exit code, and the database unchanged', async () => {
      const full = engine.name === 'sqlite'; // PostgreSQL: a representative few (spawning is slow)
      ok(await cli(['start', TOKEN, '--symbol', 'LGI', ...db]));
      ok(await cli([...recordArgs(TOKEN, 'buy', 'dca', '2.000000000000000001', '10', '5', 'bad-1'), ...db]));
      ok(await cli(['start', OTHER_TOKEN, '--mode', 'liquidity', ...db]));
      ok(await cli(['pause', OTHER_TOKEN, ...db]));

      const files = mkdtempSync(join(scratch, 'config-'));
      const file = (name: string, text: string): string => {
        const path = join(files, name);
        writeFileSync(path, text);
        return path;
      };

      type Case = readonly [args: string[], exit: number, pattern: RegExp];
      // Bad config values, each tried on `start` of a new token (which must not be created) and on `config`.
      const badSets: ReadonlyArray<readonly [string, RegExp]> = [
        ['accumulate.noSuchKey=1', /unknown config key accumulate\.noSuchKey/],
        ['nosection.dcaAmount=1', /unknown config section/],
        ['accumulate.dipBuyThreshold=150', /dipBuyThreshold .*150/],
        ['accumulate.dcaAmount=-5', /dcaAmount .*-5/],
        ['accumulate.dcaAmount=0', /dcaAmount .*greater than 0/],
        ['accumulate.dcaAmount=NaN', /dcaAmount .*NaN/],
        ['accumulate.dcaAmount=1e400', /dcaAmount .*1e400/],
        ['accumulate.dcaAmount=Infinity', /dcaAmount .*Infinity/],
        ['accumulate.dcaAmount=abc', /dcaAmount .*abc/],
        ['accumulate.dcaAmount=', /dcaAmount/],
        ['accumulate.dcaAmount=1.0000000000000000001', /dcaAmount .*decimals/],
        ['limits.maxTradesPerHour=1.5', /maxTradesPerHour .*whole number/],
        ['accumulate.dcaAmount', /--set .*=/],
      ];
      const badFiles: ReadonlyArray<readonly [string, RegExp]> = [
        [file('unknown-key.json', '{"accumulate":{"noSuchKey":1}}'), /unknown config key accumulate\.noSuchKey/],
        [file('unknown-section.json', '{"nosection":{"dcaAmount":1}}'), /unknown config section/],
        [file('out-of-range.json', '{"liquidity":{"targetRatio":1.5}}'), /targetRatio .*1\.5.* \(in config file \S*out-of-range\.json\)/],
        [file('exponent.json', '{"accumulate":{"dcaAmount":1E200}}'), /dcaAmount is the number 1E200 \(in config file \S*exponent\.json\), whose exponent is beyond ±100/],
        [file('negative.json', '{"accumulate":{"dcaAmount":-5}}'), /dcaAmount .*-5/],
        [file('nan.json', '{"accumulate":{"dcaAmount":NaN}}'), /not valid JSON/],
        [file('huge.json', '{"accumulate":{"dcaAmount":1e400}}'), /dcaAmount .*1e400/],
        [file('string.json', '{"accumulate":{"dcaAmount":"twenty-five"}}'), /dcaAmount must be a number or a decimal string, got the string "twenty-five"/],
        [file('not-json.json', 'dcaAmount = 25\n'), /not valid JSON/],
        [file('empty.json', ''), /not valid JSON/],
        [file('array.json', '[1, 2]'), /config/],
        [join(files, 'missing.json'), /cannot read the config file .*missing\.json/],
        [files, /cannot read the config file \S+ \(EISDIR\)/],
        // Longer than any config: refused unread, even a device with no end.
        [file('long.json', `{"accumulate":{"dcaAmount":1}}${' '.repeat(1024 * 1024)}`), /the config file \S*long\.json is longer than 1 MiB: a config is a few hundred bytes/],
        ...(existsSync('/dev/zero') ? [['/dev/zero', /the config file \/dev\/zero is longer than 1 MiB/] as const] : []),
      ];
      const configCases: Case[] = [
        ...badSets.flatMap(([set, pattern]): Case[] => [
          [['start', UNKNOWN_TOKEN, '--set', set, ...db], 2, pattern],
          [['config', TOKEN, '--set', set, ...db], 2, pattern],
        ]),
        ...badFiles.flatMap(([path, pattern]): Case[] => [
          [['start', UNKNOWN_TOKEN, '--config', path, ...db], 2, pattern],
          [['config', TOKEN, '--config', path, ...db], 2, pattern],
        ]),
        // One bad value among good ones changes nothing either.
        [['config', TOKEN, '--set', 'accumulate.dcaAmount=30', '--set', 'accumulate.dipBuyThreshold=100', ...db], 2, /dipBuyThreshold/],
      ];

      const cases: Case[] = [
        // usage (2)
        [['frobnicate', ...db], 2, /unknown command "frobnicate"/],
        [['daemon', '--exchange', 'notaurl', ...db], 2, /--exchange: exchange URL "notaurl" is not a URL/],
        [['daemon', '--exchange', 'ftp://x', ...db], 2, /--exchange: exchange URL "ftp:\/\/x" must be http/],
        [['daemon', '--exchange', 'http://127.0.0.1:6000', ...db], 2, /--exchange: exchange URL "http:\/\/127\.0\.0\.1:6000" uses port 6000, which fetch refuses/],
        [['paper-exchange', '--port', '6666'], 2, /^botstate: --port 6666 is a port that fetch refuses to connect to/],
        [['daemon', '--tick', '0', ...db], 2, /--tick must be a whole number/],
        // Beyond 996, the PostgreSQL pool (at most 1000) could keep no connections for the heartbeat.
        [['daemon', '--concurrency', '997', ...db], 2, /^botstate: --concurrency must be a whole number from 1 to 996, got "997"/],
        [['daemon', '--max-failures', '0', ...db], 2, /^botstate: --max-failures must be a whole number from 1 to 1000, got "0"/],
        [['daemon', '--market-down', '1.5', ...db], 2, /^botstate: --market-down must be a whole number from 1 to 86400000, got "1.5"/],
        [['trades', TOKEN, '--limit', '0', ...db], 2, /^botstate: --limit must be a whole number from 1 to 999999999, got "0"/],
        [['history', TOKEN, '--since', 'yesterday', ...db], 2, /^botstate: --since "yesterday" is not a UTC time/],
        [['paus', TOKEN, ...db], 2, /unknown command "paus".*did you mean pause/],
        [['db', 'frobnicate', ...db], 2, /unknown command "db frobnicate"/],
        [['db', ...db], 2, /db status\|migrate\|rollback/],
        [['start', TOKEN, '--frobnicate', ...db], 2, /--frobnicate/],
        [['status', TOKEN, '--mode', 'liquidity', ...db], 2, /--mode/],
        [['list', '--verbose', ...db], 2, /--verbose/],
        // A flag no command takes, and no command: the flag is named, not a command said missing.
        [['-v', ...db], 2, /^botstate: unknown option '-v', and no command \(see botstate --help for the commands and flags; botstate --version prints the version\)\n$/],
        [['--json', ...db], 2, /^botstate: missing command/],
        [['pause', ...db], 2, /missing <token>/],
        [['pause', TOKEN, OTHER_TOKEN, ...db], 2, /unexpected argument/],
        [['start', '0x123', ...db], 2, /0x123.*not an EVM address/],
        [['pause', 'LGI', ...db], 2, /"LGI".*not an EVM address/],
        [['status', `${TOKEN}00`, ...db], 2, /not an EVM address/],
        [['status', '0xbbd9aDe16525acb4B336b6dAd3b9762901522BZZ', ...db], 2, /not an EVM address/],
        [['start', TOKEN_BAD_CHECKSUM, ...db], 2, /checksum/],
        [['pause', TOKEN_BAD_CHECKSUM, ...db], 2, /checksum/],
        [['start', UNKNOWN_TOKEN, '--mode', 'scalping', ...db], 2, /--mode must be accumulate or liquidity/],
        [['list', '--status', 'sleeping', ...db], 2, /^botstate: --status must be one of idle, running, paused, liquidating, error, got "sleeping" \(see botstate list --help\)/],
        [['trades', TOKEN, '--status', 'done', ...db], 2, /--status must be one of .*\(see botstate trades --help\)/],
        [['record', TOKEN, '--side', 'buy', ...db], 2, /missing --reason/],
        [[...recordArgs(TOKEN, 'hold', 'dca', '1', '1', '1', 'bad-2'), ...db], 2, /--side/],
        [[...recordArgs(TOKEN, 'buy', 'moon', '1', '1', '1', 'bad-2'), ...db], 2, /--reason/],
        [[...recordArgs(TOKEN, 'sell', 'dca', '1', '1', '1', 'bad-2'), ...db], 2, /^botstate: --reason dca is a buy's reason, not a sell's \(buys: dca, dip_buy, support_buy, rebalance; sells: take_profit, liquidate, rebalance\)\n$/],
        [[...recordArgs(TOKEN, 'buy', 'liquidate', '1', '1', '1', 'bad-2'), ...db], 2, /--reason liquidate is a sell's reason, not a buy's/],
        [[...recordArgs(TOKEN, 'buy', 'dca', '1e3', '1', '1', 'bad-2'), ...db], 2, /1e3/],
        [['record', TOKEN, '--side', 'buy', '--reason', 'dca', '--base=-1', '--quote', '1', '--price', '1', '--client-order-id', 'bad-2', ...db], 2, /-1/],
        [[...recordArgs(TOKEN, 'buy', 'dca', '-1', '1', '1', 'bad-2'), ...db], 2, /--base -1: a value starting with "-" is taken for a flag \(amounts and counts cannot be negative; to pass such a value anyway write --base=-1\)/],
        [[...recordArgs(TOKEN, 'buy', 'dca', '0.0000000000000000001', '1', '1', 'bad-2'), ...db], 2, /decimals/],
        [[...recordArgs(TOKEN, 'buy', 'dca', '0', '1', '1', 'bad-2'), ...db], 2, /--base must be greater than 0, got 0 \(a trade moves a positive amount of tokens\)/],
        [[...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '0.00', 'bad-2'), ...db], 2, /--price must be greater than 0, got 0 \(give the token's USD price at the fill\)/],
        [[...recordArgs(TOKEN, 'buy', 'dca', '1', '1,000', '1', 'bad-2'), ...db], 2, /--quote "1,000" is not a plain decimal/],
        [['config', TOKEN, ...db], 2, /nothing to change/],
        // A repeated flag is refused, not resolved to its last value.
        [[...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'bad-2'), '--side', 'sell', ...db], 2, /--side is given twice \("buy" and "sell"\) \(give --side once\)/],
        [['status', TOKEN, '--chain', 'base', '--chain', 'arbitrum', ...db], 2, /--chain is given twice/],
        // Repeated with the second value starting with "-": a repeat too, not a complaint about the first value.
        [[...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'bad-3'), '--quote', '-1', ...db], 2, /^botstate: --quote is given twice \(give --quote once\)\n$/],
        [['trades', TOKEN, '--chain', 'base', ...db, '--chain', '--json'], 2, /^botstate: --chain is given twice \(give --chain once\)\n$/],
        [['trades', TOKEN, ...db, '--chain', '--json'], 2, /^botstate: --chain needs a value \(--json after it is a flag\)/],
        // A flag left without its value, before another flag: not advice to pass the flag as the value.
        [['status', TOKEN, '--chain', '--json', ...db], 2, /^botstate: --chain needs a value \(--json after it is a flag\) \(see botstate status --help\)/],
        // A value that starts with a dash but is no flag of the command keeps the advice to write it with =.
        // Quoted for the shell as it must be typed, and with no word about amounts for free text.
        [['settle', 'o-1', '--status', 'failed', '--error', '-x: refused', ...db], 2, /^botstate: --error -x: refused: a value starting with "-" is taken for a flag \(to pass such a value anyway write --error='-x: refused'\)\n$/],
        [['settle', 'o-1', '--status', 'failed', '--error', "-it's", ...db], 2, /write --error='-it'\\''s'\)\n$/],
        // A newline or a bidirectional override in a value is shown escaped, not as a space or raw.
        [[...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'bad-2'), '--exchange-order-id', 'a\nb', ...db], 2, /--exchange-order-id "a\\nb" is not allowed/],
        [['start', UNKNOWN_TOKEN, '--symbol', 'A\u202eB', ...db], 2, /"A\\u202eB"/],
        // What the line echoes back is shown escaped (no raw ESC reaches the terminal) and, when
        // very long, cut in the middle.
        [['start', UNKNOWN_TOKEN, '--symbol', 'A\x1b[31mRED', ...db], 2, /"A\\u001b\[31mRED"/],
        [['status', TOKEN, '--chain', 'c'.repeat(5000), ...db], 2, /^botstate: chain "c{61}\.\.\." is not a chain name/],
        // The library itself cuts what it echoes of an id.
        [[...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'x'.repeat(5000)), ...db], 2, /^botstate: --client-order-id "x{61}\.\.\." is not allowed/],
        // Named by the flag given, not the library's field.
        [[...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'ok-1'), '--tx-hash', 'x y', ...db], 2, /^botstate: --tx-hash "x y" is not allowed/],
        [[...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'ok-1'), '--exchange-order-id', 'q q', ...db], 2, /^botstate: --exchange-order-id "q q" is not allowed/],
        [['db', 'rollback', '--to', 'one', ...db], 2, /--to/],
        [['list', '--db', 'mysql://localhost/x'], 2, /mysql/],
        [['list', '--db', ''], 2, /empty/],
        // rule (3)
        [['start', TOKEN, ...db], 3, /RUNNING/],
        [['resume', TOKEN, ...db], 3, /cannot resume .*RUNNING/],
        [['pause', OTHER_TOKEN, ...db], 3, /cannot pause .*PAUSED/],
        [['start', OTHER_TOKEN, ...db], 3, /cannot start .*PAUSED/],
        [[...recordArgs(TOKEN, 'sell', 'take_profit', '2.000000000000000002', '2', '1', 'bad-3'), ...db], 3, /2\.000000000000000002/],
        [[...recordArgs(TOKEN, 'buy', 'dca', '3', '10', '5', 'bad-1'), ...db], 3, /bad-1/],
        [['db', 'rollback', '--to', '0', ...db], 3, /rolling back 0002_job_strategy_state and 0001_jobs_trades_audit would delete 1 job's strategy state, 2 jobs, 1 trade and 4 audit entries \(back the database up first, then roll back anyway with --force, or force: true in the library\)/],
        // not found (4)
        [['pause', UNKNOWN_TOKEN, ...db], 4, /no job for token 0x00000000000000000000000000000000000000A1 on base/i],
        [['resume', UNKNOWN_TOKEN, ...db], 4, /no job/],
        [['liquidate', UNKNOWN_TOKEN, ...db], 4, /no job/],
        [['status', UNKNOWN_TOKEN, ...db], 4, /no job/],
        [['status', TOKEN, '--chain', 'arbitrum', ...db], 4, /no job .*arbitrum/],
        [['trades', UNKNOWN_TOKEN, ...db], 4, /no job/],
        [['history', UNKNOWN_TOKEN, ...db], 4, /no job/],
        [['config', UNKNOWN_TOKEN, '--set', 'accumulate.dcaAmount=5', ...db], 4, /no job/],
        [[...recordArgs(UNKNOWN_TOKEN, 'buy', 'dca', '1', '1', '1', 'bad-4'), ...db], 4, /no job/],
        ...configCases,
      ];
      const few = (c: Case): boolean =>
        ['frobnicate', '--frobnicate'].some((a) => c[0].includes(a)) ||
        c[0].includes(TOKEN_BAD_CHECKSUM) ||
        (c[1] === 3 && c[0][0] !== 'record') ||
        (c[1] === 4 && ['pause', 'status'].includes(c[0][0]!)) ||
        c[0].includes('accumulate.dipBuyThreshold=150') ||
        c[0].some((a) => a.endsWith('huge.json') || a.endsWith('string.json') || a.endsWith('not-json.json'));
      const run = full ? cases : cases.filter(few);
      if (!full) assert.ok(run.length >= 10 && run.length < 25, `PostgreSQL runs a few cases, got ${run.length}`);

      const before = await fx.dump();
      const results = await pool(run, 4, ([args]) => cli(args));
      results.forEach((r, i) => refused(r, run[i]![1], run[i]![2]));
      assert.equal(await fx.dump(), before, 'a refused command changes nothing');

      // --json: the error is also one JSON document on stdout
      const jsonError = await cli(['pause', OTHER_TOKEN, '--json', ...db]);
      refused(jsonError, 3, /PAUSED/);
      const doc = JSON.parse(jsonError.stdout) as { error: { code: string; message: string } };
      assert.equal(doc.error.code, 'INVALID_TRANSITION');
      assert.match(doc.error.message, /PAUSED/);
      // What to do instead names CLI commands only, not the library's fail or completeLiquidation.
      assert.equal((doc.error as { hint?: string }).hint, 'use one of: resume, liquidate');
      assert.doesNotMatch(jsonError.stdout + jsonError.stderr, /\bfail\b|completeLiquidation/);
      // A hint the library writes as a sentence reads in --json as on the error line.
      const configError = await cli(['config', TOKEN, '--set', 'accumulate.dcaAmount=0', '--json', ...db]);
      refused(configError, 2, /dcaAmount must be greater than 0/);
      assert.equal((JSON.parse(configError.stdout) as { error: { hint: string } }).error.hint, 'set accumulate.dcaAmount to a number greater than 0');
      assert.match(configError.stderr, /\(set accumulate\.dcaAmount to a number greater than 0\)$/m);
      assert.equal(await fx.dump(), before);
    });

    it('db migrate waits for the locks its DDL needs as long as it takes, whatever the commands\' lock timeout', { skip: engine.name !== 'postgres' && 'PostgreSQL only' }, async () => {
      ok(await cli(['start', TOKEN, ...db]));
      ok(await cli(['db', 'rollback', '--to', '5', ...db]));
      const schema = new URL(fx.url).searchParams.get('schema')!;
      const reader = new pg.Client({ connectionString: PG_URL });
      await reader.connect();
      try {
        // A session reading the table migration 6 alters, for longer than the 5 s.
        await reader.query('BEGIN');
        await reader.query(`SELECT count(*) FROM "${schema}".daemon_instances`);
        const migrating = cli(['db', 'migrate', '--to', '6', ...db]);
        await sleep(6000);
        await reader.query('COMMIT');
        assert.match(ok(await migrating).stdout, /^Applied 0006_daemon_lease_ttl\nSchema is at version 6\.\n$/);
      } finally {
        await reader.end();
      }
    });

    it('the library leaves the server\'s lock_timeout alone unless told (a role\'s setting holds)', { skip: engine.name !== 'postgres' && 'PostgreSQL only' }, async () => {
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      const role = `botstate_lt_${process.pid}`;
      try {
        await admin.query(`CREATE ROLE ${role} LOGIN SUPERUSER`);
        await admin.query(`ALTER ROLE ${role} SET lock_timeout = '2s'`);
        const url = new URL(fx.url);
        url.username = role;
        const byRole = await openStore(url.toString());
        const told = await openStore(url.toString(), { lockTimeoutMs: 1500 });
        try {
          const show = async (s: Store) => s.transaction(async (tx) => (await tx.get<{ lock_timeout: string }>('SHOW lock_timeout'))!.lock_timeout);
          assert.equal(await show(byRole), '2s');
          assert.equal(await show(told), '1500ms');
        } finally {
          await byRole.close();
          await told.close();
        }
      } finally {
        await admin.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
        await admin.end();
      }
    });

    it('a statement cut short by a statement_timeout is STORAGE_BUSY (exit 5), said so, not "cannot use the server"', { skip: engine.name !== 'postgres' && 'PostgreSQL only' }, async () => {
      ok(await cli(['start', TOKEN, ...db]));
      const store = await fx.open();
      try {
        const err = await store.transaction((tx) => tx.exec("SET LOCAL statement_timeout = 20; SELECT pg_sleep(2)")).then(() => undefined, (e: unknown) => e as BotstateError | undefined);
        assert.equal(err?.code, 'STORAGE_BUSY');
        assert.match(err.message, /: a statement was cancelled \(canceling statement due to statement timeout\)$/);
        assert.match(err.hint ?? '', /statement_timeout/);
      } finally {
        await store.close();
      }
    });

    it('a command waits at most 5 s for a job another session holds locked, then exits 5 (STORAGE_BUSY)', async () => {
      ok(await cli(['start', TOKEN, ...db]));
      const holder = await fx.open();
      let release!: () => void;
      const released = new Promise<void>((resolve) => (release = resolve));
      let locked!: () => void;
      const isLocked = new Promise<void>((resolve) => (locked = resolve));
      // A program (a stalled bot) holding the job's row in an open transaction.
      const held = holder.transaction(async () => {
        await holder.jobs.pause({ tokenAddress: TOKEN });
        locked();
        await released;
      });
      try {
        await isLocked;
        const t0 = performance.now();
        const r = await cli(['liquidate', TOKEN, ...db]);
        const waited = performance.now() - t0;
        const pattern = fx.engine === 'postgres' ? /another session held a lock this needed past the lock timeout/ : /stayed locked by another connection past the busy timeout/;
        refused(r, 5, pattern);
        assert.ok(waited >= 4500, `gave up after ${Math.round(waited)} ms`);
      } finally {
        release();
        await held;
        await holder.close();
      }
      assert.equal(parseJson(await cli(['status', TOKEN, '--json', ...db])).status, 'PAUSED');
    });
  });
}

/** A Node older than 24 on this machine's PATH, outside the project (plain `node` here is 20), if any. */
function olderNode(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(':')) {
    if (dir === '' || dir.startsWith(ROOT)) continue;
    const candidate = join(dir, 'node');
    if (!existsSync(candidate)) continue;
    const found = spawnSync(candidate, ['-p', 'process.versions.node'], { encoding: 'utf8' });
    if (found.status === 0 && Number(found.stdout.split('.')[0]) < 24) return candidate;
  }
  return undefined;
}

describe('on a Node older than 24', { skip: olderNode() === undefined && 'no Node older than 24 on PATH' }, () => {
  it('the CLI and the library each say so in one line, before the native driver loads', () => {
    const node = olderNode()!;
    const cliRun = spawnSync(node, [BIN, 'list'], { encoding: 'utf8', cwd: scratch });
    assert.equal(cliRun.status, 1);
    assert.match(cliRun.stderr, /^botstate: needs Node\.js 24 or newer, found v\d+\.\d+\.\d+ \(install Node 24; in botstate's own repository, npm start and npx botstate use the Node it pins\)\n$/);
    assert.equal(cliRun.stdout, '');
    // With --json, the error document too, as for every other error; a --json after `--` is an argument.
    const jsonRun = spawnSync(node, [BIN, 'list', '--json'], { encoding: 'utf8', cwd: scratch });
    assert.deepEqual([jsonRun.status, jsonRun.stderr], [1, cliRun.stderr]);
    assert.deepEqual(JSON.parse(jsonRun.stdout), {
      error: { code: 'NODE_TOO_OLD', message: `needs Node.js 24 or newer, found ${/found (v[\d.]+)/.exec(cliRun.stderr)![1]}`, hint: "install Node 24; in botstate's own repository, npm start and npx botstate use the Node it pins" },
    });
    assert.equal(spawnSync(node, [BIN, 'list', '--', '--json'], { encoding: 'utf8', cwd: scratch }).stdout, '');
    const lib = spawnSync(node, ['--input-type=module', '-e', `import(${JSON.stringify(join(ROOT, 'dist', 'index.js'))}).catch((e) => { console.error(e.message); process.exit(7); })`], { encoding: 'utf8' });
    assert.equal(lib.status, 7, lib.stderr);
    assert.match(lib.stderr, /^botstate needs Node\.js 24 or newer; this is v\d+\.\d+\.\d+\. Install Node 24 \(or newer\) and run with it\.\n$/);
  });
});

describe('botstate CLI without a job database', () => {
  const COMMANDS = ['start', 'pause', 'resume', 'liquidate', 'status', 'list', 'config', 'trades', 'record', 'settle', 'history', 'verify', 'daemons', 'db status', 'db migrate', 'db rollback', 'db backup'];

  it('--help on every command, --help, -h, --version, and no command', async () => {
    const results = await pool(COMMANDS, 4, (c) => cli([...c.split(' '), '--help']));
    results.forEach((r, i) => {
      ok(r);
      assert.ok(r.stdout.startsWith(`Usage: botstate ${COMMANDS[i]}`), show(r));
      assert.match(r.stdout, /--db URL/, 'the global flags are listed');
      assert.match(r.stdout, /Exit codes:/);
    });
    assert.match(results[0]!.stdout, /accumulate\.dcaAmount/, 'start --help lists the config keys');
    assert.match(results[8]!.stdout, /--client-order-id/);
    // The paper exchange uses no database: its --help does not offer --db (nor --json).
    const paperHelp = ok(await cli(['paper-exchange', '--help'])).stdout;
    assert.doesNotMatch(paperHelp, /--db URL|--json  /);
    assert.match(paperHelp, /--data FILE/);
    // The db group lists its commands.
    const db = await cli(['db', '--help']);
    ok(db);
    assert.match(db.stdout, /^Usage: botstate db status\|migrate\|rollback/);
    for (const c of ['db status', 'db migrate', 'db rollback', 'db backup']) assert.ok(db.stdout.includes(`  ${c}`), show(db));
    // --help wins over anything else on the line, and opens no database
    ok(await cli(['start', '0xnot-an-address', '--help', '--db', join(scratch, 'help.db')]));
    assert.equal(existsSync(join(scratch, 'help.db')), false);

    const [help, h, version, none] = await Promise.all([cli(['--help']), cli(['-h']), cli(['--version']), cli([])]);
    assert.match(ok(help).stdout, /^botstate .*\n\nUsage: botstate <command>/);
    for (const c of COMMANDS) assert.match(help.stdout, new RegExp(`^  ${c}\\s+\\S`, 'm'), `--help lists ${c}`);
    assert.equal(ok(h).stdout, help.stdout);
    assert.equal(ok(version).stdout, `${VERSION}\n`);
    assert.deepEqual(parseJson(await cli(['--version', '--json'])), { version: VERSION });
    // An unknown flag beside them is refused, not ignored.
    for (const args of [['--version', '--verbose'], ['--help', '-x']]) {
      refused(await cli(args), 2, new RegExp(`^botstate: unknown option '${args[1]}', and no command \\(see botstate --help`));
    }
    // A flag's value, or a word after --, that begins with a dash is no option.
    for (const args of [['--version', '--since', '-1h'], ['--version', '--', '-x']]) assert.equal(ok(await cli(args)).stdout, `${VERSION}\n`);
    assert.equal(ok(await cli(['--help', '--reason', '-'])).stdout, help.stdout);
    assert.equal(none.code, 2, show(none));
    assert.equal(none.stdout, '');
    assert.equal(none.stderr, 'botstate: missing command (see botstate --help for the commands)\n');
    // A flag with no value and no command: the flag is what is missing something.
    refused(await cli(['--db']), 2, /^botstate: --db needs a value \(see botstate --help\)\n$/);
  });

  it('a database URL refused as malformed creates nothing, not even the demo folder it names', async () => {
    const dir = mkdtempSync(join(scratch, 'malformed-'));
    refused(await cli(['daemon', '--demo', '--db', 'mysql://host/dir/x.db'], { cwd: dir }), 2, /scheme "mysql:" is not supported/);
    refused(await cli(['daemon', '--demo', '--db', 'sqlite:newdir/sub/'], { cwd: dir }), 2, /"newdir\/sub\/" names a directory \(add a file name, e\.g\. newdir\/sub\/botstate\.db\)/);
    refused(await cli(['start', TOKEN, '--db', './x/'], { cwd: dir }), 2, /names a directory/);
    // The driver would open the name trimmed: another file than the one botstate checks and creates 0600.
    refused(await cli(['start', TOKEN, '--db', 'w1.db '], { cwd: dir }), 2, /^botstate: database path "w1\.db " has white space at its start or end \(remove it/);
    refused(await cli(['list', '--db', '\tw1.db'], { cwd: dir }), 2, /white space at its start or end/);
    refused(await cli(['list'], { cwd: dir, env: { BOTSTATE_DB: 'w1.db\n' } }), 2, /white space at its start or end/);
    // SQLite URLs that would name another file than the one meant: /name.db at the root, a file named with ?mode=ro or file:.
    refused(await cli(['start', TOKEN, '--db', 'sqlite://u5.db'], { cwd: dir }), 2, /"sqlite:\/\/u5\.db" is ambiguous/);
    refused(await cli(['start', TOKEN, '--db', 'sqlite:x.db?mode=ro'], { cwd: dir }), 2, /is ambiguous/);
    refused(await cli(['start', TOKEN, '--db', 'file:u8.db'], { cwd: dir }), 2, /file: URIs are not read/);
    refused(await cli(['start', TOKEN, '--db', 'sqlite:file:u8.db'], { cwd: dir }), 2, /is ambiguous/);
    // A PostgreSQL URL without its // would be a SQLite file named postgres:mydb, here.
    refused(await cli(['start', TOKEN, '--db', 'postgres:mydb'], { cwd: dir }), 2, /^botstate: database URL "postgres:mydb" lacks the \/\/ after "postgres:" \(write postgres:\/\/user@host:5432\/database for PostgreSQL; a SQLite file of that name as \.\/postgres:mydb\)\n$/);
    refused(await cli(['list', '--db', 'PostgreSQL:/db'], { cwd: dir }), 2, /lacks the \/\/ after "PostgreSQL:"/);
    // A password in a mistaken URL is not echoed back (to a terminal, a log, a CI transcript).
    for (const url of ['postgres:bob:s3cret@127.0.0.1/test', 'sqlite:postgres://bob:s3cret@127.0.0.1/test']) {
      const r = await cli(['list', '--db', url, '--json'], { cwd: dir });
      refused(r, 2, /:\*\*\*@127\.0\.0\.1/);
      assert.ok(!`${r.stdout}${r.stderr}`.includes('s3cret'), show(r));
    }
    // PostgreSQL URLs whose parameters would send botstate's tables elsewhere (refused before connecting).
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?schema=a&options=-c%20search_path%3Db'], { cwd: dir }), 2, /may not set "options"/);
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?Schema=a'], { cwd: dir }), 2, /"Schema" parameter is misspelt or repeated/);
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?schema=a&schema=b'], { cwd: dir }), 2, /"schema" parameter is misspelt or repeated/);
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?schema=pg_catalog'], { cwd: dir }), 2, /schema name "pg_catalog" is not allowed/);
    // An in-memory database would say "Started" and keep nothing.
    refused(await cli(['start', TOKEN, '--db', 'sqlite::memory:'], { cwd: dir }), 2, /in-memory database \(:memory:\) keeps nothing/);
    refused(await cli(['start', TOKEN], { cwd: dir, env: { BOTSTATE_DB: ':memory:' } }), 2, /in-memory database/);
    // pg would read any unknown sslmode as verify-full, and the last of two as the one.
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?sslmode=requre'], { cwd: dir }), 2, /sslmode "requre" is not one of disable, no-verify, prefer/);
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?sslmode=disable&sslmode=require'], { cwd: dir }), 2, /gives sslmode more than once/);
    // With libpq's meanings there is no no-verify (pg would verify after all), and verify-ca needs a CA.
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?sslmode=no-verify&uselibpqcompat=true'], { cwd: dir }), 2, /sslmode "no-verify" is not one of disable, prefer, require, verify-ca, verify-full \(with uselibpqcompat=true\)/);
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?sslmode=verify-ca&uselibpqcompat=true'], { cwd: dir }), 2, /verify-ca with uselibpqcompat=true needs sslrootcert/);
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?sslmode=verify-ca&uselibpqcompat=true&sslrootcert='], { cwd: dir }), 2, /needs sslrootcert/);
    // pg reads the last of a repeated parameter: which was meant?
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?uselibpqcompat=false&uselibpqcompat=true&sslmode=no-verify'], { cwd: dir }), 2, /gives uselibpqcompat more than once/);
    // pg ignores what it does not know (a misspelt sslmode would connect without SSL); the rest of
    // the parameter checks are in test/contract/location.test.ts.
    refused(await cli(['list', '--db', 'postgres://u@127.0.0.1:1/x?sslmdoe=require'], { cwd: dir }), 2, /parameter "sslmdoe" is not one botstate or node-postgres reads \(check its spelling; docs\/cli\.md lists the parameters taken\)/);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('daemon --demo: a file in the way of its folder is exit 5, and a --db named as the demo exchange file is refused (exit 2); nothing is made', async () => {
    const dir = mkdtempSync(join(scratch, 'demo-folder-'));
    writeFileSync(join(dir, 'c1.json'), '{}');
    refused(await cli(['daemon', '--demo', '--db', 'c1.json/x.db'], { cwd: dir }), 5, /^botstate: cannot create the folder c1\.json for the database: EEXIST \(a file is in the way of that folder: give --db a path in a folder\)\n$/);
    refused(await cli(['daemon', '--demo', '--db', 'c1.json/sub/x.db'], { cwd: dir }), 5, /cannot create the folder c1\.json\/sub for the database: ENOTDIR/);
    refused(await cli(['daemon', '--demo', '--exchange-id', 'x', '--db', 'demo4/x.db'], { cwd: dir }), 2, /^botstate: --demo names its own exchange \(its data file\): drop --exchange-id/);
    for (const id of ['', ' padded', 'a\nb', 'x'.repeat(201), '\u200b', 'a\u200bb', '   ']) {
      refused(await cli(['daemon', '--exchange-id', id, '--db', 'x.db'], { cwd: dir }), 2, /^botstate: --exchange-id must be 1 to 200 visible characters/);
    }
    refused(await cli(['daemon', '--demo', '--db', 'demo2/paper-exchange.db'], { cwd: dir }), 2, /^botstate: --demo keeps its paper exchange's orders in demo2\/paper-exchange\.db, the file given as --db \(name the database otherwise, e\.g\. --db \.\/demo\/botstate\.db\)\n$/);
    // The same for the database $BOTSTATE_DB names, as the store opens it when --db is not given.
    refused(await cli(['daemon', '--demo'], { cwd: dir, env: { BOTSTATE_DB: 'demo3/paper-exchange.db' } }), 2, /^botstate: --demo keeps its paper exchange's orders in demo3\/paper-exchange\.db, the file given as \$BOTSTATE_DB /);
    refused(await cli(['daemon', '--demo'], { cwd: dir, env: { BOTSTATE_DB: 'c1.json/x.db' } }), 5, /^botstate: cannot create the folder c1\.json for the database: EEXIST/);
    assert.deepEqual(readdirSync(dir), ['c1.json']);
  });

  it('on PostgreSQL, commands other than start and db migrate do not create a missing schema (exit 4)', { skip: ENGINES[1]!.skip }, async () => {
    const fx = await ENGINES[1]!.create();
    try {
      // An sslmode the server cannot honour is the server being unusable (exit 5), not a bug (exit 1).
      refused(await cli(['list', '--db', `${fx.url}&sslmode=verify-full`]), 5, /^botstate: cannot connect to the PostgreSQL server at .*SSL/);
      // prefer, require and verify-ca as node-postgres 8 reads them (SSL, verified), without its
      // multi-line warning on stderr: refused() checks that the error is one line.
      for (const mode of ['prefer', 'require', 'verify-ca']) {
        refused(await cli(['list', '--db', `${fx.url}&sslmode=${mode}`]), 5, new RegExp(`^botstate: cannot connect to the PostgreSQL server at .*sslmode=${mode}.*SSL`));
      }
      const schema = new URL(fx.url).searchParams.get('schema');
      const runs: string[][] = [
        ['status', TOKEN], ['list'], ['pause', TOKEN], ['resume', TOKEN], ['liquidate', TOKEN],
        ['config', TOKEN, '--set', 'accumulate.dcaAmount=5'], recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'x'),
        ['db', 'rollback'],
      ];
      const results = await pool(runs, 2, (args) => cli([...args, '--db', fx.url]));
      results.forEach((r) => refused(r, 4, /there is no botstate database at .*schema t_/));
      const found = await fx.raw('SELECT count(*)::int AS n FROM information_schema.schemata WHERE schema_name = $1', [schema]);
      assert.deepEqual(found, [{ n: 0 }], 'the schema was not created');
      // An empty schema is no botstate database either: db rollback does not call it "version 0".
      await fx.raw(`CREATE SCHEMA "${schema}"`);
      refused(await cli(['db', 'rollback', '--db', fx.url]), 4, /there is no botstate database at .*schema t_/);
      const tables = await fx.raw('SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = $1', [schema]);
      assert.deepEqual(tables, [{ n: 0 }], 'nothing was created in it');
    } finally {
      await fx.cleanup();
    }
  });

  it('settle: a PENDING order settled by hand (executed or failed), refused while a daemon holds its job, bad input changing nothing', async () => {
    const dir = mkdtempSync(join(scratch, 'settle-'));
    const path = join(dir, 'jobs.db');
    const db = ['--db', path];
    ok(await cli(['start', TOKEN, ...db]));
    const store = await openStore(path);
    try {
      for (const id of ['o-1', 'o-2']) await store.ledger.recordIntent({ job: { tokenAddress: TOKEN }, clientOrderId: id, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
    } finally {
      await store.close();
    }
    const dump = () => {
      const d = new Database(path, { readonly: true });
      try {
        return JSON.stringify(['jobs', 'trades', 'audit_log'].map((t) => d.prepare(`SELECT * FROM ${t} ORDER BY 1`).all()));
      } finally {
        d.close();
      }
    };
    // The exchange's fill time, a minute ago: the trade's executedAt and the job's lastDcaBuyTime.
    const filledAt = new Date(Date.now() - 60_000).toISOString();
    const executed = ['settle', 'o-1', '--status', 'executed', '--base', '4.000000000000000001', '--quote', '10', '--price', '2.5', '--exchange-order-id', 'ex-1', '--executed-at', filledAt, ...db];
    // While a daemon holds the job's lease it may be settling (or re-sending) the order itself:
    // refused (exit 3) whatever the job's status, and so is bad input (exit 2, 4).
    const raw = new Database(path);
    const jobId = (raw.prepare('SELECT id FROM jobs').pluck().get() as string);
    raw.prepare('INSERT INTO job_leases (job_id, owner, epoch, expires_at) VALUES (?, ?, 1, ?)').run(jobId, 'daemon-1', new Date(Date.now() + 3_600_000).toISOString());
    raw.close();
    ok(await cli(['pause', TOKEN, ...db]));
    const before = dump();
    refused(await cli(executed), 3, /daemon daemon-1 holds the job of order o-1 and may be settling the order itself \(stop every daemon on this database first \(.*\); a daemon that was killed holds the lease until it expires \(\S+\)\)$/m);
    // A trade recorded by hand counts in the strategy state, which the daemon keeps in memory: refused too.
    refused(await cli([...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'r-held'), ...db]), 3, /daemon daemon-1 holds the job of 0x\S+ and keeps its strategy state in memory: it would not count this trade \(pause the job and record once its daemon has let it go/);
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '0', '--quote', '10', '--price', '2', ...db]), 2, /--base must be greater than 0/);
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '1', '--quote', '10', '--price', '0', ...db]), 2, /--price must be greater than 0, got 0 \(give the token's USD price at the fill\)/);
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '1', '--quote', '1.5e3', '--price', '2', ...db]), 2, /--quote/);
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '1', '--price', '2', ...db]), 2, /missing --quote/);
    refused(await cli(['settle', 'o-1', '--status', 'failed', ...db]), 2, /missing --error/);
    refused(await cli(['settle', 'o-1', '--status', 'failed', '--error', 'x', '--base', '1', ...db]), 2, /--base does not go with --status failed/);
    refused(await cli(['settle', 'o-1', '--status', 'pending', ...db]), 2, /--status must be one of executed, failed/);
    refused(await cli(['settle', 'o 1', '--status', 'failed', '--error', 'x', ...db]), 2, /clientOrderId "o 1" is not allowed/);
    refused(await cli(['settle', 'o-9', '--status', 'failed', '--error', 'x', ...db]), 4, /no trade with clientOrderId o-9/);
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '1', '--quote', '1', '--price', '1', '--executed-at', '2026-11-26 16:01', ...db]), 2, /--executed-at "2026-11-26 16:01" is not a UTC time \(write it as history shows times, e\.g\. --executed-at 2026-11-26T12:00:00Z; seconds and milliseconds may be left out\)/);
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '1', '--quote', '1', '--price', '1', '--executed-at', '2999-01-01T00:00:00.000Z', ...db]), 2, /^botstate: --executed-at 2999-01-01T00:00:00\.000Z is in the future/);
    refused(await cli(['settle', 'o-1', '--status', 'failed', '--error', 'x', '--executed-at', filledAt, ...db]), 2, /--executed-at does not go with --status failed/);
    assert.equal(dump(), before, 'nothing changed');

    // The lease expired (its daemon gone, or only stalled): settled, and the lease released with
    // a new epoch, so that a stalled daemon waking up cannot write over the settlement.
    const release = new Database(path);
    release.prepare('UPDATE job_leases SET expires_at = ?').run(new Date(Date.now() - 1000).toISOString());
    release.close();
    // An intent's fill is no more than it asked for (its quote here).
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '5', '--quote', '10.5', '--price', '2', ...db]), 2, /the fill's quoteAmount 10\.5 is more than intent o-1 asked for, 10 \(an exchange fills no more than asked/);
    // A BUY's tokens are paid for: 0 is no fill (a SELL may fetch 0, the last of a worthless token).
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '5', '--quote', '0', '--price', '0.0000000001', ...db]), 2, /^botstate: --quote 0 pays nothing for the 5 tokens of a BUY: a purchase costs more than 0 \(give the quote/);
    // Amounts and price that cannot be one trade (a few digits' typo): 5 tokens at 2 are not bought for 0.1, nor sold for 0.
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '5', '--quote', '0.1', '--price', '2', ...db]), 2, /^botstate: the fill's amounts disagree: 5 tokens at 2 are worth 10, not 0\.1 \(they may differ by fees, not by more than a factor of 2\) \(give --base and --quote as the account received and paid them, and --price as the USD price of one token \(about quote \/ base\)\)\n$/);
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '5', '--quote', '0', '--price', '2', ...db]), 2, /^botstate: the fill's amounts disagree: 5 tokens at 2 are worth 10, not 0 /);
    // A year typo backwards: a fill dated long before its order was recorded.
    refused(await cli(['settle', 'o-1', '--status', 'executed', '--base', '1', '--quote', '1', '--price', '1', '--executed-at', '2020-01-01T00:00:00.000Z', ...db]), 2, /^botstate: --executed-at 2020-01-01T00:00:00\.000Z is before order o-1 was recorded \(20\d\d-/);
    assert.equal(dump(), before, 'nothing changed');
    const first = ok(await cli(executed));
    const lease = new Database(path, { readonly: true });
    try {
      assert.deepEqual(lease.prepare('SELECT owner, epoch FROM job_leases').get(), { owner: '', epoch: 2 });
    } finally {
      lease.close();
    }
    assert.equal(first.stdout, 'Settled o-1: EXECUTED BUY 4.000000000000000001; tokenBalance 4.000000000000000001, totalAccumulated 10\n');
    const filled = new Database(path, { readonly: true });
    try {
      assert.equal(filled.prepare("SELECT executed_at FROM trades WHERE client_order_id = 'o-1'").pluck().get(), filledAt);
      assert.equal(filled.prepare('SELECT last_dca_buy_time FROM jobs').pluck().get(), filledAt);
      // The fill counts in the daemon's strategy state as its own fills do: the day's volume, the cash, the trade times.
      const scratch = JSON.parse(filled.prepare('SELECT strategy_state FROM jobs').pluck().get() as string) as Record<string, unknown>;
      assert.deepEqual([scratch['dayVolume'], scratch['quoteFlow'], scratch['lastFill'], scratch['tradeTimes']], ['10', '-10', 'o-1', [Date.parse(filledAt)]]);
    } finally {
      filled.close();
    }
    const again = ok(await cli(executed));
    assert.match(again.stdout, /^Already settled o-1: /);
    const settled = dump();
    // The same fill at another time is not the same settlement.
    const otherTime = executed.map((a) => (a === filledAt ? new Date(Date.now() - 120_000).toISOString() : a));
    refused(await cli(otherTime), 3, /clientOrderId o-1 is already recorded with executedAt \S+, not \S+ \(a repeat must give the same details; nothing was changed\)/);
    assert.equal(dump(), settled, 'nothing changed');
    refused(await cli(['settle', 'o-1', '--status', 'failed', '--error', 'x', ...db]), 3, /trade o-1 is already EXECUTED/);
    assert.equal(dump(), settled, 'nothing changed');
    const failed = parseJson<{ duplicate: boolean; trade: { status: string; error: string }; tokenBalance: string }>(
      await cli(['settle', 'o-2', '--status', 'failed', '--error', 'never reached the exchange', '--json', ...db]),
    );
    assert.deepEqual([failed.duplicate, failed.trade.status, failed.trade.error, failed.tokenBalance], [false, 'FAILED', 'never reached the exchange', '4.000000000000000001']);
    // Printed on one line, whatever the error text holds; and with no daemon, a RUNNING job's too.
    ok(await cli(['resume', TOKEN, ...db]));
    const recordedBefore = new Date(Date.now() - 20_000).toISOString();
    const forged = await openStore(path);
    try {
      await forged.ledger.recordIntent({ job: { tokenAddress: TOKEN }, clientOrderId: 'o-3', side: 'BUY', reason: 'DCA', quoteAmount: '1' });
    } finally {
      await forged.close();
    }
    const line = ok(await cli(['settle', 'o-3', '--status', 'failed', '--error', 'rejected\nSettled o-4: EXECUTED\u001b[31m', ...db])).stdout;
    assert.equal(line, 'Settled o-3: FAILED (rejected\\x0aSettled o-4: EXECUTED\\x1b[31m); tokenBalance 4.000000000000000001, totalAccumulated 10\n');
    // A trade the library recorded with a reason of the other side (it takes any): the CLI's repeat of it changes nothing.
    const lib = await openStore(path);
    try {
      await lib.ledger.recordTrade({ job: { tokenAddress: TOKEN }, clientOrderId: 'odd-1', side: 'BUY', reason: 'LIQUIDATE', baseAmount: '1', quoteAmount: '1', priceUsd: '1', executedAt: recordedBefore });
    } finally {
      await lib.close();
    }
    const oddRepeat = ok(await cli([...recordArgs(TOKEN, 'buy', 'liquidate', '1', '1', '1', 'odd-1'), '--executed-at', recordedBefore, ...db])).stdout;
    assert.match(oddRepeat, /^Already recorded BUY 1 \(LIQUIDATE, odd-1\)/);
    // record takes the exchange's fill time too.
    const recordedAt = new Date(Date.now() - 30_000).toISOString();
    ok(await cli([...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'r-time'), '--executed-at', recordedAt, ...db]));
    ok(await cli([...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'r-time'), '--executed-at', recordedAt, ...db]));
    // As --since takes times: seconds and milliseconds may be left out (the same instant is the same record).
    const whole = new Date(Math.floor((Date.now() - 60_000) / 60_000) * 60_000).toISOString();
    ok(await cli([...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'r-minute'), '--executed-at', whole.slice(0, 16) + 'Z', ...db]));
    ok(await cli([...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'r-minute'), '--executed-at', whole, ...db]));
    refused(await cli([...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'r-time'), '--executed-at', new Date(Date.now() - 40_000).toISOString(), ...db]), 3, /already recorded with executedAt/);
    // A refusal the ledger makes in its transaction names the flag typed too.
    const nines = '9'.repeat(78);
    refused(await cli([...recordArgs(TOKEN, 'buy', 'dca', '1', nines, nines, 'r-huge'), ...db]), 2, new RegExp(`^botstate: --quote ${nines} would take the totalAccumulated of job \\S+ to 79 integer digits; at most 78 are allowed \\(check --quote for extra digits\\)\n$`));
    const recorded = new Database(path, { readonly: true });
    try {
      assert.equal(recorded.prepare("SELECT executed_at FROM trades WHERE client_order_id = 'r-time'").pluck().get(), recordedAt);
    } finally {
      recorded.close();
    }
    ok(await cli(['verify', ...db]));
  });

  it('start on a new database: several at once all start; one killed part-way through making it is finished by the next', async () => {
    const dir = mkdtempSync(join(scratch, 'new-'));
    const path = join(dir, 'jobs.db');
    // Six starts at once on a file none has made yet: each finishes what another began.
    const tokens = Array.from({ length: 6 }, (_, i) => `0x${(i + 1).toString(16).padStart(40, '0')}`);
    const starts = await Promise.all(tokens.map((t) => cli(['start', t, '--db', path])));
    for (const r of starts) ok(r);
    assert.equal(parseJson<unknown[]>(await cli(['list', '--json', '--db', path])).length, 6);
    // A database left part-way (as by a start killed between two migrations), with no job yet.
    const half = join(dir, 'half.db');
    ok(await cli(['db', 'migrate', '--to', '2', '--db', half]));
    ok(await cli(['start', TOKEN, '--db', half]));
    assert.match(ok(await cli(['db', 'status', '--db', half])).stdout, /^Schema is at version (\d+); this botstate expects \1\.$/m);
    // One in use (it holds a job) is not migrated by a start: db migrate is for that.
    ok(await cli(['db', 'rollback', '--to', '2', '--db', half]));
    refused(await cli(['start', TOKEN, '--db', half]), 6, /db migrate/);
  });

  it('a database this user may not reach is said so (exit 5), not called missing; a reader gone from stdout is no error', async () => {
    const dir = mkdtempSync(join(scratch, 'private-'));
    const path = join(dir, 'jobs.db');
    ok(await cli(['start', TOKEN, '--db', path]));
    const root = process.getuid?.() === 0;
    // Root reads any file: the command runs as nobody instead, for whom the folder is closed.
    if (root) chmodSync(dir, 0o700);
    else chmodSync(dir, 0o000);
    try {
      const denied = await cli(['list', '--db', path], root ? { uid: 65534, cwd: '/' } : {});
      refused(denied, 5, /^botstate: cannot reach \S+jobs\.db: permission denied \(EACCES\) \(run botstate as the user that owns the database, or give this user access to the file and every directory above it\)\n$/);
    } finally {
      chmodSync(dir, 0o700);
    }
    // A database this user may read but not write (a backup kept read-only, another user's):
    // the commands that only read, read it; one that writes is refused; the file is untouched.
    const shelf = mkdtempSync(join(tmpdir(), 'botstate-shelf-')); // not under scratch, which nobody may enter
    const copy = join(shelf, 'copy.db');
    ok(await cli(['db', 'backup', '--to', copy, '--db', path]));
    const live = join(shelf, 'live.db');
    ok(await cli(['start', TOKEN, '--db', live])); // in WAL mode, as botstate leaves its databases
    const asReader = root ? { uid: 65534, cwd: '/' } : {};
    // Its owner, who may write it, reads it as it is too: it stays out of WAL mode, readable by others.
    const made = readFileSync(copy);
    for (const args of [['list'], ['status', TOKEN], ['trades', TOKEN], ['history', TOKEN], ['verify'], ['daemons', '--all'], ['db', 'status'], ['db', 'backup', '--to', join(shelf, 'copy-of-copy.db')]]) {
      ok(await cli([...args, '--db', copy]));
    }
    assert.deepEqual(readFileSync(copy), made);
    rmSync(join(shelf, 'copy-of-copy.db'));
    assert.deepEqual(readdirSync(shelf).filter((f) => f.startsWith('copy')), ['copy.db']);
    chmodSync(copy, 0o644);
    chmodSync(live, 0o644);
    chmodSync(shelf, 0o755);
    if (!root) for (const f of [copy, live, shelf]) chmodSync(f, 0o555);
    try {
      const before = readFileSync(copy);
      for (const args of [['list'], ['status', TOKEN], ['trades', TOKEN], ['history', TOKEN], ['verify'], ['daemons'], ['db', 'status']]) {
        ok(await cli([...args, '--db', copy], asReader));
      }
      refused(await cli(['pause', TOKEN, '--db', copy], asReader), 5, /cannot open \S+copy\.db for writing/);
      assert.deepEqual(readFileSync(copy), before);
      if (root) {
        // A file this user may not read at all is said so, not blamed on a -shm file (it is in rollback mode and has none).
        chmodSync(copy, 0o600);
        refused(await cli(['list', '--db', copy], asReader), 5, /^botstate: cannot read \S+copy\.db: permission denied \(EACCES\) \(run botstate as the user that owns the database, or give this user access to the file and every directory above it\)\n$/);
        chmodSync(copy, 0o644);
      }
      // In WAL mode it is read through a -shm file this user cannot make beside it: said so.
      refused(await cli(['list', '--db', live], asReader), 5, /^botstate: cannot read \S+live\.db as this user: it is in WAL mode, and reading it needs a live\.db-shm file beside it that this user may not make or write \(read it as the user that owns it, or read a copy that user makes/);
    } finally {
      chmodSync(shelf, 0o755);
      rmSync(shelf, { recursive: true, force: true });
    }
    // `botstate list | head`: the reader goes away; the command still ends with its own code.
    const gone = await cli(['list', '--db', path], { closeStdout: true });
    assert.deepEqual([gone.code, gone.stderr], [0, ''], show(gone));
    // A config file saved with a byte-order mark is JSON all the same.
    const bom = join(dir, 'bom.json');
    writeFileSync(bom, '\uFEFF{"accumulate":{"dcaAmount":7}}');
    ok(await cli(['config', TOKEN, '--config', bom, '--db', path]));
    assert.equal(parseJson<{ config: { accumulate: { dcaAmount: number } } }>(await cli(['status', TOKEN, '--json', '--db', path])).config.accumulate.dcaAmount, 7);
    // A repeat that brings a reference the first record did not store is not the same record.
    ok(await cli([...recordArgs(TOKEN, 'buy', 'dca', '10', '10', '1', 'b1'), '--db', path]));
    refused(await cli([...recordArgs(TOKEN, 'buy', 'dca', '10', '10', '1', 'b1'), '--tx-hash', '0xabc', '--db', path]), 3, /clientOrderId b1 is already recorded/);
    assert.match(ok(await cli([...recordArgs(TOKEN, 'buy', 'dca', '10', '10', '1', 'b1'), '--db', path])).stdout, /^Already recorded/);
  });

  it("a database's -wal, -shm, -journal or -wait file given as the database is refused (exit 2), and nothing is written", async () => {
    const dir = mkdtempSync(join(scratch, 'companions-'));
    const path = join(dir, 'jobs.db');
    ok(await cli(['start', TOKEN, '--db', path]));
    const files = () => readdirSync(dir).sort().map((f) => [f, readFileSync(join(dir, f)).toString('base64')]);
    // Made while the database is in use: its WAL is there.
    const store = await openStore(path);
    try {
      writeFileSync(`${path}-journal`, '');
      writeFileSync(`${path}-wait`, '');
      const before = files();
      for (const suffix of ['-wal', '-shm', '-journal', '-wait']) {
        for (const args of [['start', OTHER_TOKEN, '--db', `${path}${suffix}`], ['list', '--db', `sqlite:${path}${suffix}`], ['list']]) {
          const env = args.length === 1 ? { env: { BOTSTATE_DB: `${path}${suffix}` } } : {};
          refused(await cli(args, env), 2, new RegExp(`^botstate: \\S+jobs\\.db${suffix} is the ${suffix} file of the database \\S+jobs\\.db, which SQLite or botstate would delete \\(open the database itself, \\S+jobs\\.db\\)\\n$`));
        }
      }
      assert.deepEqual(files(), before);
    } finally {
      await store.close();
      rmSync(`${path}-journal`, { force: true });
    }
    // A name that only ends so, with no database beside it, is a database of its own; sqlite: in any case.
    ok(await cli(['start', OTHER_TOKEN, '--db', join(dir, 'trading-journal')]));
    ok(await cli(['list', '--db', `SQLite:${join(dir, 'trading-journal')}`]));
    assert.equal(parseJson<unknown[]>(await cli(['list', '--json', '--db', path])).length, 1);
  });

  it('output that cannot be written (a full disk) is said in one line and exits 7; after --, --json is an argument', { skip: !existsSync('/dev/full') && 'no /dev/full' }, async () => {
    const dir = mkdtempSync(join(scratch, 'full-'));
    const path = join(dir, 'jobs.db');
    ok(await cli(['start', TOKEN, '--db', path]));
    for (const args of [['list'], ['list', '--json'], ['status', TOKEN], ['verify', '--json'], ['history', TOKEN, '--json']]) {
      const r = await cli([...args, '--db', path], { stdoutTo: '/dev/full' });
      assert.equal(r.code, 7, show(r));
      assert.match(r.stderr, /^botstate: could not write the output: ENOSPC \((?!ENOSPC)[^\n]*\) \(the output is lost or cut short; a change the command made stays made: look with botstate status or list before running it again, and write the output where there is room\)\n$/, show(r));
    }
    // Help and the version too, printed while the CLI still holds the stop signals it keeps for the
    // daemon (bin/botstate.js): 7, not ended by a SIGTERM of its own (143).
    for (const args of [['--help'], ['-h'], ['--version'], ['db', '--help'], ['daemon', '--help'], ['paper-exchange', '--help']]) {
      const r = await cli(args, { stdoutTo: '/dev/full' });
      assert.equal(r.code, 7, `${args.join(' ')}: ${show(r)}`);
      assert.match(r.stderr, /^botstate: could not write the output: ENOSPC/, show(r));
    }
    // stderr on the same full disk (`> log 2>&1`): still exit 7, no crash.
    const both = await cli(['list', '--db', path], { stdoutTo: '/dev/full', stderrToo: true });
    assert.equal(both.code, 7, show(both));
    // A command that failed keeps its own code: the database was not changed, whatever the output;
    // with its one line on stderr lost on the same full disk too.
    const failed = await cli(['status', OTHER_TOKEN, '--json', '--db', path], { stdoutTo: '/dev/full' });
    assert.equal(failed.code, 4, show(failed));
    const failedBoth = await cli(['status', OTHER_TOKEN, '--db', path], { stdoutTo: '/dev/full', stderrToo: true });
    assert.equal(failedBoth.code, 4, show(failedBoth));
    // A command that wrote to the database did so; only its report is lost.
    const paused = await cli(['pause', TOKEN, '--db', path], { stdoutTo: '/dev/full' });
    assert.equal(paused.code, 7, show(paused));
    assert.equal(parseJson<{ status: string }>(await cli(['status', TOKEN, '--json', '--db', path])).status, 'PAUSED');
    // `--` ends the flags: a --json after it is an argument, and the error is not a JSON document.
    const r = await cli(['list', '--db', path, '--', '--json']);
    refused(r, 2, /unexpected argument "--json"/);
    assert.equal(r.stdout, '');
  });

  it('text from outside (an exchange\'s error) is printed with its control characters escaped', async () => {
    const dir = mkdtempSync(join(scratch, 'controls-'));
    const path = join(dir, 'jobs.db');
    ok(await cli(['start', TOKEN, '--db', path]));
    const store = await openStore(path);
    try {
      const { trade } = await store.ledger.recordIntent({ job: { tokenAddress: TOKEN }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      await store.ledger.settle(trade.clientOrderId, { status: 'FAILED', error: 'no funds\u001b[31mRED\u001b[0m\nINJECTED LINE\rOVERWRITE' });
    } finally {
      await store.close();
    }
    const r = await cli(['trades', TOKEN, '--db', path]);
    ok(r);
    assert.doesNotMatch(r.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/, r.stdout);
    assert.equal(r.stdout.trimEnd().split('\n').length, 2, `a header and one row\n${r.stdout}`);
    assert.ok(r.stdout.includes('no funds\\x1b[31mRED\\x1b[0m\\x0aINJECTED LINE\\x0dOVERWRITE'), r.stdout);
  });

  it('read-only commands on a missing SQLite file exit 4 and do not create it', async () => {
    const dir = mkdtempSync(join(scratch, 'missing-'));
    const path = join(dir, 'nothing.db');
    const runs: string[][] = [
      ['status', TOKEN], ['list'], ['list', '--json'], ['trades', TOKEN], ['history', TOKEN], ['verify'], ['daemons'], ['db', 'status'],
      // writers other than start and db migrate do not create a database either
      ['pause', TOKEN], ['resume', TOKEN], ['liquidate', TOKEN], ['config', TOKEN, '--set', 'accumulate.dcaAmount=5'],
      recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'x'), ['db', 'rollback'], ['db', 'rollback', '--to', '3'],
      // db migrate --to 0 applies nothing: it does not create an empty database on a mistyped path
      ['db', 'migrate', '--to', '0'],
    ];
    const results = await pool(runs, 4, (args) => cli([...args, '--db', path]));
    results.forEach((r) => refused(r, 4, /no database at .*nothing\.db/));
    assert.deepEqual(readdirSync(dir), [], 'no file (nor -wal, -shm, -journal) was created');
    // Nor does a command refused for its input, start included: its input is checked first.
    const badInput: string[][] = [
      ['start', TOKEN, '--set', 'accumulate.noSuchKey=1'], ['start', TOKEN, '--symbol', 'a b'],
      ['start', TOKEN, '--mode', 'scalping'], ['config', TOKEN, '--set', 'accumulate.dcaAmount=-1'],
      recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'bad id'), [...recordArgs(TOKEN, 'buy', 'dca', '1', '1', '1', 'x'), '--tx-hash', ''],
      ['db', 'migrate', '--to', '99'],
    ];
    (await pool(badInput, 4, (args) => cli([...args, '--db', path]))).forEach((r) => refused(r, 2));
    // A long path in the error line is shown whole (the operator may need to copy it).
    const longPath = join(dir, `${'x'.repeat(150)}.db`);
    const long = await cli(['list', '--db', longPath]);
    refused(long, 4);
    assert.ok(long.stderr.includes(longPath), long.stderr);
    // also through sqlite:PATH and $BOTSTATE_DB
    refused(await cli(['list', '--db', `sqlite:${path}`]), 4);
    refused(await cli(['list'], { env: { BOTSTATE_DB: path } }), 4, /nothing\.db/);
    assert.deepEqual(readdirSync(dir), []);
  });

  it('creates the SQLite file with mode 0600 even under umask 000, at ./botstate.db by default, or at $BOTSTATE_DB', async () => {
    const dir = mkdtempSync(join(scratch, 'mode-'));
    const path = join(dir, 'jobs.db');
    ok(await cli(['start', TOKEN, '--db', path], { umask: '000' }));
    assert.equal(statSync(path).mode & 0o777, 0o600);
    // Through a symbolic link to a file not there yet: the target is created 0600 too.
    const target = join(dir, 'target.db');
    symlinkSync(target, join(dir, 'link.db'));
    ok(await cli(['start', TOKEN, '--db', join(dir, 'link.db')], { umask: '000' }));
    assert.equal(statSync(target).mode & 0o777, 0o600);
    for (const side of ['-wal', '-shm']) {
      if (existsSync(path + side)) assert.equal(statSync(path + side).mode & 0o777, 0o600, `${side} is private too`);
    }

    // No --db and no $BOTSTATE_DB: ./botstate.db in the working directory.
    const cwd = mkdtempSync(join(scratch, 'default-'));
    ok(await cli(['start', TOKEN], { cwd }));
    assert.equal(statSync(join(cwd, 'botstate.db')).mode & 0o777, 0o600);
    const listed = parseJson<Array<{ tokenAddress: string }>>(await cli(['list', '--json'], { cwd }));
    assert.deepEqual(listed.map((j) => j.tokenAddress), [TOKEN]);

    // $BOTSTATE_DB names the database; --db overrides it.
    const envDb = join(dir, 'env.db');
    ok(await cli(['start', OTHER_TOKEN], { cwd, env: { BOTSTATE_DB: envDb } }));
    const fromEnv = parseJson<Array<{ tokenAddress: string }>>(await cli(['list', '--json'], { cwd, env: { BOTSTATE_DB: envDb } }));
    assert.deepEqual(fromEnv.map((j) => j.tokenAddress), [OTHER_TOKEN]);
    const overridden = parseJson<Array<{ tokenAddress: string }>>(await cli(['list', '--json', '--db', path], { cwd, env: { BOTSTATE_DB: envDb } }));
    assert.deepEqual(overridden.map((j) => j.tokenAddress), [TOKEN]);
  });

  it('an unreachable or unusable database is a storage failure (exit 5) that changes nothing', async () => {
    const dir = mkdtempSync(join(scratch, 'unusable-'));
    const text = join(dir, 'notes.db');
    const textBytes = 'these are my notes, not a database\n'.repeat(20);
    writeFileSync(text, textBytes);
    const directory = join(dir, 'folder.db');
    mkdirSync(directory);
    const runs: Array<readonly [string[], RegExp]> = [
      [['status', TOKEN, '--db', UNREACHABLE_PG], /127\.0\.0\.1:1/],
      [['start', TOKEN, '--db', UNREACHABLE_PG], /127\.0\.0\.1:1/],
      [['list', '--json', '--db', UNREACHABLE_PG], /127\.0\.0\.1:1/],
      [['db', 'migrate', '--db', UNREACHABLE_PG], /127\.0\.0\.1:1/],
      [['status', TOKEN, '--db', text], /notes\.db/],
      [['start', TOKEN, '--db', text], /notes\.db/],
      [['db', 'migrate', '--db', text], /notes\.db/],
      [['list', '--db', `sqlite:${text}`], /notes\.db/],
      [['status', TOKEN, '--db', directory], /folder\.db/],
      [['start', TOKEN, '--db', directory], /folder\.db/],
    ];
    const results = await pool(runs, 4, ([args]) => cli(args));
    results.forEach((r, i) => refused(r, 5, runs[i]![1]));
    assert.equal(readFileSync(text, 'utf8'), textBytes, 'the text file is untouched');
    assert.deepEqual(readdirSync(directory), [], 'nothing was created in the directory');
    assert.deepEqual(readdirSync(dir).sort(), ['folder.db', 'notes.db'], 'no -wal/-shm/-journal files were left');
  });

  it("a SQLite database of another application is refused (exit 5) and left byte-for-byte as it was", async () => {
    const dir = mkdtempSync(join(scratch, 'foreign-'));
    const foreign = join(dir, 'foreign.db');
    const other = new Database(foreign);
    other.exec(`CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES ('ada'), ('grace');`);
    other.close();
    const foreignBytes = readFileSync(foreign);
    const runs: string[][] = [['start', TOKEN], ['list'], ['status', TOKEN], ['db', 'migrate']];
    const results = await pool(runs, 4, (args) => cli([...args, '--db', foreign]));
    results.forEach((r) => refused(r, 5, /foreign\.db .*another application/));
    assert.deepEqual(readdirSync(dir), ['foreign.db'], 'no -wal/-shm/-journal files were left');
    const bytes = readFileSync(foreign);
    // Header bytes 18-19 are the file format versions: 1 = rollback journal, 2 = WAL.
    assert.deepEqual([bytes[18], bytes[19]], [1, 1], "the other application's database was switched to WAL mode");
    assert.ok(bytes.equals(foreignBytes), "the other application's database is not byte-for-byte as it was");
  });
});
