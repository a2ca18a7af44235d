/**
 * The chaos harness: proves the exactly-once promise (issue 3 §5, DESIGN.md §5) with real processes.
 *
 * {@link runChaos} starts the paper exchange and the daemon as child processes (the real
 * `bin/botstate.js`, so `npm run build` must have run), creates jobs through the library, then
 * `kill -9`s the daemon at seeded random moments and restarts it, over and over. At the end it
 * pauses every job, lets one daemon reconcile what is left, stops everything cleanly, and checks
 * the exchange's order log against the ledger ({@link checkInvariants}).
 *
 * The pieces ({@link startExchange}, {@link startDaemon}, {@link createJobs}, {@link drain},
 * {@link checkInvariants}) are exported for the lease test, which runs several daemons at once.
 *
 * Every wait is bounded, every child is killed in a `finally`, and all traffic goes to 127.0.0.1.
 * Amounts are compared exactly (decimal strings and bigints), never as floats.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import type { ExchangeOrder } from '../../src/engine/exchange.ts';
import { isBotstateError } from '../../src/errors.ts';
import type { Job } from '../../src/jobs/job-rows.ts';
import { normalizeAddress } from '../../src/jobs/address.ts';
import type { Trade } from '../../src/ledger/ledger.ts';
import { add, cmp, fromUnits, isZero, sub, toUnits, type Decimal } from '../../src/money/decimal.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import type { RecoveryReport } from '../../src/engine/daemon.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BIN = join(ROOT, 'bin', 'botstate.js');

// ---------------------------------------------------------------------------------------------------
// Randomness: a seeded PRNG, so that a run is reproducible from its seed (timing aside).

export interface Rng {
  /** Uniform in [0, 1). */
  (): number;
  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number;
  pick<T>(items: readonly T[]): T;
}

/** mulberry32, seeded from SHA-256 of the seed. */
export function makeRng(seed: string | number): Rng {
  let a = createHash('sha256').update(`botstate-chaos\0${String(seed)}`).digest().readUInt32BE(0);
  const next = (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng = next as Rng;
  rng.int = (lo, hi) => lo + Math.floor(next() * (hi - lo + 1));
  rng.pick = (items) => {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(next() * items.length)]!;
  };
  return rng;
}

// ---------------------------------------------------------------------------------------------------
// Child processes.

/** A child process whose stdout is read line by line. */
export class Proc {
  readonly name: string;
  readonly child: ChildProcess;
  /** Every stdout line, unless `keep` said otherwise (the chaos run keeps only the interesting ones). */
  readonly lines: string[] = [];
  stderr = '';
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #waiters: Array<{ re: RegExp; resolve: (m: RegExpMatchArray) => void }> = [];
  readonly #keep: (line: string) => boolean;
  readonly #onLine: ((line: string) => void) | undefined;

  constructor(name: string, args: readonly string[], options: { keep?: (line: string) => boolean; onLine?: (line: string) => void } = {}) {
    this.name = name;
    this.#keep = options.keep ?? (() => true);
    this.#onLine = options.onLine;
    this.child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let partial = '';
    this.child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      partial += chunk;
      let nl: number;
      while ((nl = partial.indexOf('\n')) >= 0) {
        const line = partial.slice(0, nl);
        partial = partial.slice(nl + 1);
        this.#line(line);
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      if (this.stderr.length < 20_000) this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (e) => {
        this.stderr += `spawn error: ${e.message}\n`;
      });
      this.child.on('close', (code, signal) => {
        if (partial !== '') this.#line(partial);
        partial = '';
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  #line(line: string): void {
    if (this.#keep(line)) this.lines.push(line);
    this.#onLine?.(line);
    for (let i = this.#waiters.length - 1; i >= 0; i--) {
      const w = this.#waiters[i]!;
      const m = line.match(w.re);
      if (m) {
        this.#waiters.splice(i, 1);
        w.resolve(m);
      }
    }
  }

  /** Resolves with the first stdout line from now on matching `re`, or null after `timeoutMs` or when the process ends. */
  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray | null> {
    if (this.exit) return Promise.resolve(null);
    return new Promise((resolve) => {
      const waiter = {
        re,
        resolve: (m: RegExpMatchArray | null) => {
          clearTimeout(timer);
          resolve(m);
        },
      };
      const timer = setTimeout(() => {
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve(null);
      }, timeoutMs);
      this.#waiters.push(waiter);
      void this.exited.then(() => waiter.resolve(null));
    });
  }

  /** Sends `signal` (if still running) and waits for the exit, at most `timeoutMs`; then SIGKILL. */
  async stop(signal: NodeJS.Signals, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; timedOut: boolean }> {
    if (!this.exit) this.child.kill(signal);
    const result = await Promise.race([this.exited, sleep(timeoutMs, null, { ref: false })]);
    if (result) return { ...result, timedOut: false };
    this.child.kill('SIGKILL');
    const forced = await this.exited;
    return { ...forced, timedOut: true };
  }

  /** kill -9, and wait until the process is gone (reaped). */
  async kill9(): Promise<void> {
    if (!this.exit) this.child.kill('SIGKILL');
    await Promise.race([this.exited, sleep(10_000, null, { ref: false })]);
  }
}

/**
 * The children run the built CLI (dist/) while this process runs src/ directly: a dist older than
 * src would make the two disagree (say, on how audit entries are hashed) and fail for no real reason.
 * @throws when dist is missing or any src/*.ts is newer than its dist/*.js.
 */
export function assertBuildFresh(): void {
  const stale: string[] = [];
  const walk = (dir: string): void => {
    for (const entry of readdirSync(join(ROOT, dir), { withFileTypes: true })) {
      const rel = join(dir, entry.name);
      if (entry.isDirectory()) walk(rel);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) {
        const built = join(ROOT, 'dist', rel.slice('src/'.length).replace(/\.ts$/, '.js'));
        let builtAt: number;
        try {
          builtAt = statSync(built).mtimeMs;
        } catch {
          builtAt = -1;
        }
        if (builtAt < statSync(join(ROOT, rel)).mtimeMs) stale.push(rel);
      }
    }
  };
  walk('src');
  if (stale.length > 0) throw new Error(`dist/ is older than ${stale.slice(0, 3).join(', ')}${stale.length > 3 ? ` and ${stale.length - 3} more` : ''}: run npm run build first`);
}

export interface Faults {
  /** --latency MS */
  readonly latencyMs: number;
  /** --error-rate R: share of requests answered 503. */
  readonly errorRate: number;
  /** --drop-rate R: share of orders executed, then left unanswered. */
  readonly dropRate: number;
  /** --late-rate R: share of new orders answered 503, then executed 50-500 ms later. */
  readonly lateRate?: number;
}

/** The fault settings of the CI runs "with faults". */
export const CI_FAULTS: Faults = Object.freeze({ latencyMs: 5, errorRate: 0.1, dropRate: 0.2, lateRate: 0.05 });

export interface ExchangeChild {
  readonly url: string;
  readonly proc: Proc;
}

/** Starts `botstate paper-exchange` as a child on a free port and parses its URL from its one line. */
export async function startExchange(options: {
  dataFile: string;
  seed: string | number;
  stepMs?: number;
  faults?: Faults | undefined;
  /** USD of the account (a canonical decimal); when it runs out, buys are REJECTED. */
  initialUsd?: Decimal | undefined;
}): Promise<ExchangeChild> {
  assertBuildFresh();
  const args = ['paper-exchange', '--port', '0', '--data', options.dataFile, '--seed', String(options.seed), '--step-ms', String(options.stepMs ?? 100)];
  if (options.initialUsd !== undefined) args.push('--initial-usd', options.initialUsd);
  const f = options.faults;
  if (f) args.push('--latency', String(f.latencyMs), '--error-rate', String(f.errorRate), '--drop-rate', String(f.dropRate), '--late-rate', String(f.lateRate ?? 0));
  const proc = new Proc('paper-exchange', args);
  const m = await proc.waitFor(/^paper exchange listening on (http:\/\/127\.0\.0\.1:\d+)$/, 20_000);
  if (!m) {
    await proc.kill9();
    throw new Error(`the paper exchange did not start: ${proc.stderr.trim() || 'no line within 20 s'}`);
  }
  return { url: m[1]!, proc };
}

/** One `recovered in …` line of a daemon: its RecoveryReport as printed. */
export type Recovery = Omit<RecoveryReport, 'instanceId'>;

export const RECOVERED_RE = /^recovered in ([\d.]+) ms: (\d+) jobs?, (\d+) pending intents? \((\d+) executed, (\d+) failed, (\d+) re-sent, (\d+) open, (\d+) unresolved\)(?:; stopped during recovery: (\d+) left PENDING)?/;
const DAEMON_RE = /^daemon (\S+) on /;

export function parseRecovery(m: RegExpMatchArray): Recovery {
  return {
    ms: Number(m[1]),
    jobs: Number(m[2]),
    pending: Number(m[3]),
    executed: Number(m[4]),
    failed: Number(m[5]),
    resent: Number(m[6]),
    open: Number(m[7]),
    unresolved: Number(m[8]),
    left: Number(m[9] ?? 0),
  };
}

/** What the chaos run tallies from the daemons' stdout. */
export interface DaemonTally {
  trades: number;
  leaseLost: number;
  stepFailed: number;
  toError: number;
  tickFailed: number;
  unknownOutcome: number;
}

export function emptyTally(): DaemonTally {
  return { trades: 0, leaseLost: 0, stepFailed: 0, toError: 0, tickFailed: 0, unknownOutcome: 0 };
}

const TRADE_LINE = /\s(BUY|SELL) \S+ for \S+ @ /;

function tallyLine(tally: DaemonTally, line: string): boolean {
  if (TRADE_LINE.test(line)) {
    tally.trades++;
    return false;
  }
  if (line.includes('lost its lease')) tally.leaseLost++;
  else if (line.includes('step failed')) tally.stepFailed++;
  else if (line.includes('→ ERROR')) tally.toError++;
  else if (line.includes('  tick failed: ')) tally.tickFailed++;
  else if (line.includes('outcome unknown')) {
    tally.unknownOutcome++;
    return false;
  }
  return true;
}

/** A `botstate daemon` child. */
export class DaemonChild {
  readonly proc: Proc;
  /** Parsed from its first line. */
  instanceId: string | undefined;
  recovery: Recovery | undefined;
  readonly startedAt = performance.now();

  constructor(options: { exchangeUrl: string; dbUrl: string; tickMs: number; leaseTtlMs: number; durability?: 'process' | 'power'; tally?: DaemonTally; name?: string }) {
    const tally = options.tally;
    const args = ['daemon', '--exchange', options.exchangeUrl, '--db', options.dbUrl, '--tick', String(options.tickMs), '--lease-ttl', String(options.leaseTtlMs)];
    if (options.durability) args.push('--durability', options.durability);
    this.proc = new Proc(options.name ?? 'daemon', args, {
      // Trade lines are counted, not kept: a 1000-kill run prints hundreds of thousands.
      keep: (line) => (tally ? tallyLine(tally, line) : true),
      onLine: (line) => {
        const d = line.match(DAEMON_RE);
        if (d && this.instanceId === undefined) this.instanceId = d[1]!;
        const r = line.match(RECOVERED_RE);
        if (r && this.recovery === undefined) this.recovery = parseRecovery(r);
      },
    });
  }

  /** Waits for the recovery line (bounded). */
  async recovered(timeoutMs: number): Promise<Recovery | undefined> {
    if (this.recovery) return this.recovery;
    await this.proc.waitFor(RECOVERED_RE, timeoutMs);
    return this.recovery;
  }

  describeExit(): string {
    const e = this.proc.exit;
    const err = this.proc.stderr.trim().split('\n').slice(-3).join(' | ');
    return `${e ? `exit code ${e.code} signal ${e.signal}` : 'still running'}${err ? `; stderr: ${err}` : ''}`;
  }
}

export function startDaemon(options: ConstructorParameters<typeof DaemonChild>[0]): DaemonChild {
  return new DaemonChild(options);
}

// ---------------------------------------------------------------------------------------------------
// Jobs.

/** A distinct, valid token address for job `i` of a run (all digits and lower case: its own EIP-55 form). */
export function chaosToken(i: number): string {
  return `0x${'c4a05'}${i.toString(16).padStart(35, '0')}`;
}

/**
 * Creates `count` RUNNING jobs with fast settings: DCA every 0.36 s (dcaIntervalHours=0.0001), dip buys
 * at 1 %, take profit at 1.5 %, no accumulation cap; the first `liquidity` of them in LIQUIDITY mode with
 * a high daily volume; every other one with limits.maxOrderUsd=40, so that liquidations sell in slices.
 */
export async function createJobs(store: Store, count: number, liquidity: number, rng: Rng): Promise<Job[]> {
  const jobs: Job[] = [];
  for (let i = 0; i < count; i++) {
    const isLiquidity = i < liquidity;
    const set = [
      'accumulate.dcaAmount=' + String(rng.int(5, 25)),
      'accumulate.dcaIntervalHours=0.0001',
      'accumulate.dipBuyThreshold=1',
      'accumulate.dipBuyMultiplier=2',
      'accumulate.takeProfitPercent=1.5',
      'accumulate.takeProfitSellPercent=25',
      'accumulate.maxAccumulationUsd=1000000000',
      'liquidity.maxDailyVolume=1000000000',
      'liquidity.spreadPercent=0.3',
      'liquidity.rebalanceThreshold=5',
      'liquidity.orderSizeUsd=' + String(rng.int(5, 20)),
      'liquidity.capitalUsd=300',
    ];
    if (i % 2 === 0) set.push('limits.maxOrderUsd=40');
    jobs.push(
      await store.jobs.start(
        { tokenAddress: chaosToken(i), tokenSymbol: `${isLiquidity ? 'LQ' : 'AC'}${i}`, mode: isLiquidity ? 'LIQUIDITY' : 'ACCUMULATE', set },
        { actor: 'chaos' },
      ),
    );
  }
  return jobs;
}

/** Retries a library call that may lose a race with the daemon (busy, concurrent modification). */
async function retry<T>(fn: () => Promise<T>, attempts = 20): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i >= attempts || isBotstateError(e, 'INVALID_TRANSITION') || isBotstateError(e, 'JOB_NOT_FOUND')) throw e;
      await sleep(25);
    }
  }
}

/** Liquidates one RUNNING job that holds tokens, through the library; returns its id, or null if none. */
export async function liquidateOne(store: Store, rng: Rng, already: ReadonlySet<string>): Promise<string | null> {
  const candidates = (await store.jobs.list({ status: 'RUNNING' })).filter((j) => !isZero(j.tokenBalance) && !already.has(j.id));
  if (candidates.length === 0) return null;
  const job = rng.pick(candidates);
  try {
    await retry(() => store.jobs.liquidate({ id: job.id }, { actor: 'chaos' }));
  } catch (e) {
    if (isBotstateError(e, 'INVALID_TRANSITION')) return null;
    throw e;
  }
  return job.id;
}

/** Pauses every RUNNING job through the library, so that no new intent is made. */
export async function pauseAll(store: Store): Promise<number> {
  let n = 0;
  for (const job of await store.jobs.list({ status: 'RUNNING' })) {
    try {
      await retry(() => store.jobs.pause({ id: job.id }, { actor: 'chaos' }));
      n++;
    } catch (e) {
      if (!isBotstateError(e, 'INVALID_TRANSITION')) throw e;
    }
  }
  return n;
}

/** Polls until nothing is PENDING and no job is LIQUIDATING (bounded); true when it got there. */
export async function waitSettled(store: Store, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const pending = await store.ledger.pending();
    const liquidating = await store.jobs.list({ status: 'LIQUIDATING' });
    if (pending.length === 0 && liquidating.length === 0) return true;
    await sleep(100);
  }
  return false;
}

export interface DrainResult {
  readonly settled: boolean;
  readonly recovery: Recovery | undefined;
  readonly exitCode: number | null;
  readonly violations: string[];
}

/**
 * How long an ACCUMULATE job still RUNNING at the end may go without an order while the final
 * daemon runs. A LIQUIDITY job, which trades when the price leaves its band or its inventory
 * drifts (every few seconds in these runs, not on a schedule), gets twice as long.
 */
export const LIVENESS_MS = 15_000;

/**
 * The last order (any status) of each job, by id: what a job that makes a new one has moved past.
 */
async function lastOrders(store: Store, jobs: readonly Job[]): Promise<Map<string, string | undefined>> {
  const last = new Map<string, string | undefined>();
  for (const job of jobs) last.set(job.id, (await store.ledger.trades({ id: job.id }, { limit: 1 }))[0]?.id);
  return last;
}

/**
 * The end of a run, with no daemon alive: starts one daemon and, once it has recovered, requires
 * every ACCUMULATE job still RUNNING (whose DCA is due every fraction of a second) to make an order
 * within `livenessMs`, and every LIQUIDITY one within twice that: a job the daemons had stopped
 * stepping (or deciding for) would otherwise pass, paused below with the others. Then it pauses every RUNNING job, waits until nothing is PENDING and no job is
 * LIQUIDATING, SIGTERMs the daemon and requires exit code 0.
 */
export async function drain(options: {
  store: Store;
  exchangeUrl: string;
  dbUrl: string;
  tickMs: number;
  leaseTtlMs: number;
  durability?: 'process' | 'power';
  tally?: DaemonTally;
  timeoutMs?: number;
  livenessMs?: number;
}): Promise<DrainResult> {
  const violations: string[] = [];
  const running = await options.store.jobs.list({ status: 'RUNNING' });
  const before = await lastOrders(options.store, running);
  const daemon = startDaemon({
    exchangeUrl: options.exchangeUrl, dbUrl: options.dbUrl, tickMs: options.tickMs, leaseTtlMs: options.leaseTtlMs,
    ...(options.durability ? { durability: options.durability } : {}), ...(options.tally ? { tally: options.tally } : {}), name: 'drain-daemon',
  });
  try {
    const recovery = await daemon.recovered(30_000);
    if (!recovery) violations.push(`the final daemon did not print its recovery line (${daemon.describeExit()})`);
    else {
      // Each pass reads every waiting job: a large run gets more time (20 ms a job).
      const livenessMs = options.livenessMs ?? LIVENESS_MS + 20 * running.length;
      const allowed = (job: Job) => (job.mode === 'LIQUIDITY' ? 2 : 1) * livenessMs;
      const start = performance.now();
      let waiting = running;
      const stuck: Job[] = [];
      for (;;) {
        const now = await lastOrders(options.store, waiting);
        const still: Job[] = [];
        for (const job of waiting) {
          if (now.get(job.id) !== before.get(job.id)) continue;
          if ((await options.store.jobs.get({ id: job.id })).status !== 'RUNNING') continue;
          if (performance.now() - start >= allowed(job)) stuck.push(job);
          else still.push(job);
        }
        waiting = still;
        if (waiting.length === 0) break;
        await sleep(100);
      }
      for (const job of stuck) violations.push(`job ${job.tokenSymbol} (${job.mode}) stayed RUNNING without an order for ${allowed(job)} ms with a daemon running: stuck`);
    }
    await pauseAll(options.store);
    const settled = recovery ? await waitSettled(options.store, options.timeoutMs ?? 60_000) : false;
    if (recovery && !settled) {
      const pending = await options.store.ledger.pending();
      const liquidating = await options.store.jobs.list({ status: 'LIQUIDATING' });
      violations.push(
        `not settled within ${options.timeoutMs ?? 60_000} ms: ${pending.length} PENDING (${pending.slice(0, 5).map((t) => t.clientOrderId).join(', ')}), ` +
          `${liquidating.length} LIQUIDATING (${liquidating.map((j) => `${j.tokenSymbol} holding ${j.tokenBalance}`).join(', ')})`,
      );
    }
    const stopped = await daemon.proc.stop('SIGTERM', 20_000);
    if (stopped.timedOut) violations.push('the final daemon did not exit within 20 s of SIGTERM');
    else if (stopped.code !== 0) violations.push(`the final daemon exited ${stopped.code} (signal ${stopped.signal}) on SIGTERM, not 0: ${daemon.describeExit()}`);
    return { settled, recovery, exitCode: stopped.code, violations };
  } finally {
    await daemon.proc.kill9();
  }
}

// ---------------------------------------------------------------------------------------------------
// The invariants.

/** GET a JSON document from the exchange, retrying injected 503s and dropped connections (bounded). */
export async function exchangeGet<T>(url: string, path: string): Promise<T> {
  let last = '';
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      if (res.status === 200) return JSON.parse(text) as T;
      last = `HTTP ${res.status}: ${text.slice(0, 200)}`;
      if (res.status < 500) break;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(20);
  }
  throw new Error(`GET ${path} from the exchange failed: ${last}`);
}

/** POST an order to the exchange as the harness, retrying its injected faults under the same clientOrderId (bounded). */
export async function exchangePost(url: string, body: Record<string, string>): Promise<ExchangeOrder> {
  let last = '';
  for (let attempt = 0; attempt < 100; attempt++) {
    try {
      const res = await fetch(`${url}/orders`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      if (res.status === 200) return JSON.parse(text) as ExchangeOrder;
      last = `HTTP ${res.status}: ${text.slice(0, 200)}`;
      if (res.status < 500) break;
    } catch (e) {
      last = (e as Error).message;
    }
    await sleep(20);
  }
  throw new Error(`POST /orders ${body['clientOrderId']} to the exchange failed: ${last}`);
}

/** The token of the harness's own orders: no job trades it. */
export const SINK_TOKEN = normalizeAddress(`0x${'5eed'.padStart(40, '0')}`);

export interface ExchangeState {
  readonly orders: readonly ExchangeOrder[];
  readonly balances: Readonly<Record<string, Decimal>>;
  /**
   * The amounts each rejected order would have filled, by clientOrderId, read from the paper
   * exchange's own file (its answers give a rejection amounts 0, what it executed): the one its
   * request asked for is among them, compared with its intent's.
   */
  readonly rejectedAsked?: ReadonlyMap<string, { readonly baseAmount: Decimal; readonly quoteAmount: Decimal }>;
}

/** The exchange's orders and balances, by its HTTP API; with its data file, what its rejections asked for too. */
export async function readExchange(url: string, dataFile?: string): Promise<ExchangeState> {
  const state = { orders: await exchangeGet<ExchangeOrder[]>(url, '/orders'), balances: await exchangeGet<Record<string, Decimal>>(url, '/balances') };
  if (dataFile === undefined) return state;
  const db = new Database(dataFile, { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare("SELECT client_order_id, base_amount, quote_amount FROM orders WHERE status = 'REJECTED'").all() as Array<{ client_order_id: string; base_amount: string; quote_amount: string }>;
    return { ...state, rejectedAsked: new Map(rows.map((r) => [r.client_order_id, { baseAmount: r.base_amount, quoteAmount: r.quote_amount }])) };
  } finally {
    db.close();
  }
}

export interface InvariantCounts {
  readonly jobs: number;
  readonly jobsByStatus: Readonly<Record<string, number>>;
  readonly trades: number;
  readonly executed: number;
  readonly failed: number;
  /**
   * FAILED trades the exchange never received: allowed only when the exchange refused the request
   * itself (an answer 4xx, "refused by the exchange"); any other is a violation, an intent given up
   * without being placed, whose order a new intent (a new clientOrderId) could then place again.
   */
  readonly failedUnsent: number;
  readonly orders: number;
  readonly filled: number;
  readonly rejected: number;
  /** Jobs in ERROR (allowed only for the cash squeeze's rejections), with their reason. */
  readonly errorJobs: readonly string[];
}

/** The sequence number n of a clientOrderId `<jobId>-<n>`, or null when it is not of that form. */
export function sequenceOf(clientOrderId: string, jobId: string): number | null {
  if (!clientOrderId.startsWith(`${jobId}-`)) return null;
  const rest = clientOrderId.slice(jobId.length + 1);
  return /^[1-9]\d*$/.test(rest) ? Number(rest) : null;
}

const same = (a: Decimal | null, b: Decimal): boolean => a !== null && cmp(a, b) === 0;

/**
 * Checks, with every daemon stopped, the exchange's orders against the database:
 *
 * - every FILLED order is exactly one EXECUTED trade with equal base, quote, price and exchange id;
 *   every REJECTED order is a FAILED trade; no EXECUTED trade lacks a FILLED order;
 * - every order's clientOrderId is a committed intent of the job of its token, asking for what the
 *   order asked (from the intent's audit entry), and of the form `<jobId>-<n>`; per job, the
 *   orders in placement order have strictly increasing n; no clientOrderId or exchange id appears twice;
 * - per job, the audit stream never has two intents open at once (so no intent was replaced by
 *   another one while its outcome was unknown), and every intent is settled once;
 * - every job's tokenBalance equals Σ FILLED BUY base − Σ FILLED SELL base of its token on the exchange
 *   (and the exchange's own balance of that token), and totalAccumulated equals Σ EXECUTED BUY quote;
 * - nothing is PENDING; no job is LIQUIDATING; no job is in ERROR unless `allowError` accepts its
 *   reason; every job traded at least once; no FAILED trade was given up unsent (but for a request
 *   the exchange refused, 4xx); the audit log verifies.
 */
export async function checkInvariants(
  store: Store,
  exchange: ExchangeState,
  options: {
    /** Whether a job may end in ERROR: never, always, or for the reasons this accepts. */
    allowError: boolean | ((reason: string) => boolean);
    foreign?: ReadonlySet<string>;
  },
): Promise<{ violations: string[]; counts: InvariantCounts }> {
  const errorAllowed = (reason: string): boolean => (typeof options.allowError === 'function' ? options.allowError(reason) : options.allowError);
  const violations: string[] = [];
  const v = (s: string) => {
    if (violations.length < 200) violations.push(s);
  };
  const jobs = await store.jobs.list();
  const byId = new Map(jobs.map((j) => [j.id, j]));
  const byToken = new Map(jobs.map((j) => [normalizeAddress(j.tokenAddress), j]));
  const trades = new Map<string, Trade>();
  const tradesByJob = new Map<string, Trade[]>();
  for (const job of jobs) {
    const list = await store.ledger.trades({ id: job.id });
    tradesByJob.set(job.id, list);
    for (const t of list) {
      if (trades.has(t.clientOrderId)) v(`clientOrderId ${t.clientOrderId} is in the ledger twice`);
      trades.set(t.clientOrderId, t);
    }
  }

  // Orders → ledger.
  const orderIds = new Set<string>();
  const exchangeIds = new Set<string>();
  const lastSeq = new Map<string, number>();
  const filledBase = new Map<string, bigint>(); // per job: Σ BUY base − Σ SELL base, in 10^-18 units
  const ordersByCoid = new Map<string, ExchangeOrder>();
  let filled = 0;
  let rejected = 0;
  for (const order of exchange.orders) {
    if (options.foreign?.has(order.clientOrderId)) {
      // The harness's own order (the cash squeeze), on a token no job trades.
      if (byToken.has(normalizeAddress(order.token))) v(`the harness's order ${order.clientOrderId} is for a job's token`);
      continue;
    }
    if (orderIds.has(order.clientOrderId)) v(`the exchange has clientOrderId ${order.clientOrderId} twice`);
    orderIds.add(order.clientOrderId);
    if (exchangeIds.has(order.exchangeOrderId)) v(`the exchange has exchangeOrderId ${order.exchangeOrderId} twice`);
    exchangeIds.add(order.exchangeOrderId);
    ordersByCoid.set(order.clientOrderId, order);
    if (order.status === 'FILLED') filled++;
    else rejected++;
    const trade = trades.get(order.clientOrderId);
    if (!trade) {
      v(`exchange order ${order.clientOrderId} (${order.status} ${order.side}) has no trade in the ledger: sent without a committed intent`);
      continue;
    }
    const job = byId.get(trade.jobId)!;
    if (normalizeAddress(order.token) !== normalizeAddress(job.tokenAddress)) v(`order ${order.clientOrderId} is for token ${order.token}, but its trade's job ${job.tokenSymbol} trades ${job.tokenAddress}`);
    if (order.side !== trade.side) v(`order ${order.clientOrderId} is a ${order.side}, its trade a ${trade.side}`);
    const n = sequenceOf(order.clientOrderId, job.id);
    if (n === null) v(`order ${order.clientOrderId} is not of the form <jobId>-<n> for job ${job.id}`);
    else {
      const prev = lastSeq.get(job.id);
      if (prev !== undefined && n <= prev) v(`job ${job.tokenSymbol}: exchange order ${order.clientOrderId} (n=${n}) was placed after n=${prev}: sequence numbers not strictly increasing`);
      lastSeq.set(job.id, n);
    }
    if (order.status === 'FILLED') {
      if (trade.status !== 'EXECUTED') v(`FILLED order ${order.clientOrderId} is ${trade.status} in the ledger`);
      else {
        if (!same(trade.baseAmount, order.baseAmount)) v(`order ${order.clientOrderId}: base ${order.baseAmount} on the exchange, ${trade.baseAmount} in the ledger`);
        if (!same(trade.quoteAmount, order.quoteAmount)) v(`order ${order.clientOrderId}: quote ${order.quoteAmount} on the exchange, ${trade.quoteAmount} in the ledger`);
        if (!same(trade.priceUsd, order.price)) v(`order ${order.clientOrderId}: price ${order.price} on the exchange, ${trade.priceUsd} in the ledger`);
        if (trade.exchangeOrderId !== order.exchangeOrderId) v(`order ${order.clientOrderId}: exchange id ${order.exchangeOrderId}, ledger says ${trade.exchangeOrderId}`);
      }
      const delta = toUnits(order.baseAmount) * (order.side === 'BUY' ? 1n : -1n);
      filledBase.set(job.id, (filledBase.get(job.id) ?? 0n) + delta);
    } else if (trade.status !== 'FAILED') {
      v(`REJECTED order ${order.clientOrderId} is ${trade.status} in the ledger`);
    }
  }

  // Ledger → orders, and per-job state.
  let executed = 0;
  let failed = 0;
  let failedUnsent = 0;
  const byStatus: Record<string, number> = {};
  const errorJobs: string[] = [];
  for (const job of jobs) {
    byStatus[job.status] = (byStatus[job.status] ?? 0) + 1;
    const list = tradesByJob.get(job.id)!;
    let buyQuote = '0';
    for (const t of list) {
      const order = ordersByCoid.get(t.clientOrderId);
      if (t.status === 'PENDING') v(`trade ${t.clientOrderId} of ${job.tokenSymbol} is still PENDING`);
      else if (t.status === 'EXECUTED') {
        executed++;
        if (!order || order.status !== 'FILLED') v(`EXECUTED trade ${t.clientOrderId} of ${job.tokenSymbol} was never filled by the exchange (${order ? order.status : 'unknown there'})`);
        if (t.side === 'BUY') buyQuote = add(buyQuote, t.quoteAmount!);
      } else {
        failed++;
        if (!order) {
          failedUnsent++;
          if (!(t.error ?? '').startsWith('refused by the exchange')) v(`FAILED trade ${t.clientOrderId} of ${job.tokenSymbol} was never sent to the exchange (${t.error ?? ''}): an intent given up without being placed`);
        }
      }
      if (sequenceOf(t.clientOrderId, job.id) === null) v(`trade ${t.clientOrderId} is not of the form <jobId>-<n>`);
    }
    const expected = fromUnits(filledBase.get(job.id) ?? 0n);
    if (cmp(job.tokenBalance, expected) !== 0) v(`job ${job.tokenSymbol}: tokenBalance ${job.tokenBalance}, but the exchange filled a net ${expected}`);
    const held = exchange.balances[normalizeAddress(job.tokenAddress)] ?? exchange.balances[job.tokenAddress] ?? '0';
    if (cmp(job.tokenBalance, held) !== 0) v(`job ${job.tokenSymbol}: tokenBalance ${job.tokenBalance}, but the exchange's account holds ${held}`);
    if (cmp(job.totalAccumulated, buyQuote) !== 0) v(`job ${job.tokenSymbol}: totalAccumulated ${job.totalAccumulated}, but its executed buys spent ${buyQuote}`);
    if (list.filter((t) => t.status === 'EXECUTED').length === 0) v(`job ${job.tokenSymbol} (${job.mode}, ${job.status}) never traded`);
    if (job.status === 'LIQUIDATING') v(`job ${job.tokenSymbol} is stuck LIQUIDATING with a balance of ${job.tokenBalance}`);
    if (job.status === 'ERROR') {
      errorJobs.push(`${job.tokenSymbol}: ${job.statusReason ?? ''}`);
      if (!errorAllowed(job.statusReason ?? '')) v(`job ${job.tokenSymbol} is in ERROR: ${job.statusReason ?? ''}`);
    }
    if (job.status === 'IDLE' && !isZero(job.tokenBalance)) v(`job ${job.tokenSymbol} is IDLE with a balance of ${job.tokenBalance}`);
    if (job.status === 'RUNNING') v(`job ${job.tokenSymbol} is still RUNNING after every job was paused`);

    // The audit stream: intents and settlements alternate; each order asked what its intent asked.
    const open = new Map<string, Trade>();
    const settled = new Set<string>();
    for (const entry of await store.history({ id: job.id })) {
      if (entry.entity !== 'trade') continue;
      const t = (entry.after as { trade?: Trade } | null)?.trade;
      if (!t) continue;
      if (entry.action === 'intent') {
        if (open.size > 0) v(`job ${job.tokenSymbol}: intent ${t.clientOrderId} made while ${[...open.keys()].join(', ')} was still open`);
        if (sequenceOf(t.clientOrderId, job.id) !== entry.seq) v(`job ${job.tokenSymbol}: intent ${t.clientOrderId} at audit seq ${entry.seq}`);
        open.set(t.clientOrderId, t);
        const order = ordersByCoid.get(t.clientOrderId);
        // A fill shows what its order asked; a rejection (answered with amounts 0, what it executed)
        // shows it in the exchange's file, when the state was read with it.
        const placed = order?.status === 'FILLED' ? order : order?.status === 'REJECTED' ? exchange.rejectedAsked?.get(t.clientOrderId) : undefined;
        if (placed) {
          const asked = t.quoteAmount !== null && t.baseAmount === null ? ['quote', t.quoteAmount, placed.quoteAmount] : ['base', t.baseAmount, placed.baseAmount];
          if (asked[1] === null || cmp(asked[1]!, asked[2]!) !== 0) v(`order ${t.clientOrderId} placed ${asked[0]} ${asked[2]}, its intent asked for ${String(asked[1])}`);
        }
      } else if (entry.action === 'settle') {
        if (!open.has(t.clientOrderId)) v(`job ${job.tokenSymbol}: ${t.clientOrderId} settled ${settled.has(t.clientOrderId) ? 'twice' : 'without an open intent'}`);
        open.delete(t.clientOrderId);
        settled.add(t.clientOrderId);
      }
    }
  }
  const report = await store.verifyAudit();
  for (const p of report.problems.slice(0, 20)) v(`audit: ${p.stream} #${p.seq}: ${p.problem}`);

  return {
    violations,
    counts: {
      jobs: jobs.length,
      jobsByStatus: byStatus,
      trades: trades.size,
      executed,
      failed,
      failedUnsent,
      orders: filled + rejected,
      filled,
      rejected,
      errorJobs,
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// The chaos run.

export interface ChaosOptions {
  /** The database: a SQLite path or a PostgreSQL URL (with ?schema=…), empty. */
  readonly dbUrl: string;
  readonly kills: number;
  readonly seed: string | number;
  readonly jobs?: number;
  readonly liquidityJobs?: number;
  /** Jobs liquidated mid-run through the library (default 2). */
  readonly liquidations?: number;
  readonly faults?: Faults | undefined;
  /** How long a daemon lives after its recovery line before kill -9 (default 80–700 ms). */
  readonly uptimeMs?: readonly [number, number];
  /** The share of kills made at a random moment after spawn, possibly before recovery (default 0.15). */
  readonly earlyKillRate?: number;
  /** Window of an early kill, ms after spawn (default 0–350). */
  readonly earlyKillMs?: readonly [number, number];
  readonly tickMs?: number;
  readonly leaseTtlMs?: number;
  /** The daemons' --durability (default process); `power` on SQLite runs group commit. */
  readonly durability?: 'process' | 'power';
  /** Progress lines (default none). */
  readonly log?: (line: string) => void;
  /**
   * Squeeze the account's cash mid-run (default true): after half the kills, the harness itself buys
   * the exchange account's USD (all but 50) into a token no job trades, so that the jobs' buys are
   * REJECTED and settle FAILED, across kills, and the daemon puts the jobs in ERROR after five in a
   * row; a tenth of the kills later (or, if no buy has been rejected by then, once one has, or three
   * kills before the end) it sells that back and resumes the ERROR jobs through the library, as an
   * operator would. These two orders are the harness's own, and the only orders the checker
   * accepts without an intent.
   */
  readonly squeezeCash?: boolean;
  /** Where the exchange's data file goes (default a new temp directory, removed at the end). */
  readonly workDir?: string;
  /**
   * The last daemon lives on until the daemons have printed this many trades in all (at most 60 s
   * more; default 0): on a slow machine, short lives spend most of their time starting and trade
   * little, and a run that traded little proves little.
   */
  readonly minTrades?: number;
}

export interface ChaosReport {
  readonly seed: string;
  readonly faults: Faults | null;
  readonly kills: number;
  /** Kills made before the daemon printed its recovery line. */
  readonly killsBeforeRecovery: number;
  /** Kills after which the next daemon found PENDING intents to reconcile. */
  readonly killsLeavingPending: number;
  /** Σ pending intents reconciled by recoveries after a kill. */
  readonly pendingReconciled: number;
  readonly resent: number;
  readonly maxRecoveryMs: number;
  readonly medianRecoveryMs: number;
  readonly p99RecoveryMs: number;
  /** Every daemon's recovery line, in order (the first one follows no kill). */
  readonly recoveries: readonly Recovery[];
  readonly liquidated: number;
  /** Liquidations the run planned (fewer than asked when kills are too few to space them). */
  readonly liquidationsPlanned: number;
  /** Jobs the cash squeeze had put in ERROR, resumed through the library. */
  readonly resumed: number;
  /** Trades the daemons printed as they happened. */
  readonly tradeLines: number;
  readonly tally: DaemonTally;
  readonly counts: InvariantCounts | null;
  readonly durationMs: number;
  readonly violations: readonly string[];
}

/**
 * What a run must also have done to prove anything, beyond holding its invariants: kills that left
 * orders in flight, at least `minFills` fills, a rejection (the FAILED path), its liquidations, and
 * with faults an order whose outcome was unknown. Each one missing is a line; none, an empty list.
 */
export function unexercised(r: ChaosReport, minFills: number): string[] {
  const c = r.counts;
  if (c === null) return ['the run ended before its ledger was checked'];
  const missing: string[] = [];
  if (r.killsLeavingPending === 0) missing.push('no kill left an intent PENDING: the run proved nothing');
  if (c.filled < minFills) missing.push(`only ${c.filled} fills, fewer than ${minFills}`);
  if (c.rejected === 0) missing.push('no order was rejected: the FAILED path was not exercised');
  if (r.liquidated < r.liquidationsPlanned) missing.push(`${r.liquidated} of the ${r.liquidationsPlanned} liquidations planned ended`);
  if (r.faults !== null && r.tally.unknownOutcome === 0) missing.push('no order outcome was unknown: the faults did not bite');
  return missing;
}

/** The ERROR reason of a job whose buys the cash squeeze had the exchange reject, maxFailures times in a row. */
export const SQUEEZED = /^\d+ steps failed in a row; last: order \S+ was rejected: insufficient USD balance: /;

export function formatReport(r: ChaosReport): string {
  const c = r.counts;
  return (
    `seed ${r.seed}${r.faults ? ` faults latency ${r.faults.latencyMs} ms, error ${r.faults.errorRate}, drop ${r.faults.dropRate}, late ${r.faults.lateRate ?? 0}` : ''}: ` +
    `${r.kills} kills (${r.killsBeforeRecovery} before recovery, ${r.killsLeavingPending} left ${r.pendingReconciled} intents pending, ${r.resent} re-sent), ` +
    `recovery median ${r.medianRecoveryMs} ms, p99 ${r.p99RecoveryMs}, max ${r.maxRecoveryMs}, ${r.liquidated} liquidated, ${r.resumed} resumed from ERROR; ` +
    (c
      ? `${c.trades} trades (${c.executed} executed, ${c.failed} failed, ${c.failedUnsent} never sent), ${c.orders} orders (${c.filled} filled, ${c.rejected} rejected), ` +
        `jobs ${JSON.stringify(c.jobsByStatus)}${c.errorJobs.length ? ` ERROR: ${c.errorJobs.join('; ')}` : ''}; `
      : '') +
    `daemon lines: ${r.tally.trades} trades, ${r.tally.unknownOutcome} unknown outcomes, ${r.tally.stepFailed} failed steps, ${r.tally.leaseLost} lost leases; ` +
    `${(r.durationMs / 1000).toFixed(1)} s; ${r.violations.length} violations`
  );
}

/**
 * The chaos run (see the file comment). Returns the report; `violations` is empty when every
 * invariant held. Throws only when the harness itself cannot run (e.g. the exchange does not start).
 */
export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const t0 = performance.now();
  const seed = String(options.seed);
  const rng = makeRng(seed);
  const tickMs = options.tickMs ?? 50;
  const leaseTtlMs = options.leaseTtlMs ?? 2000;
  const [upLo, upHi] = options.uptimeMs ?? [80, 700];
  const [earlyLo, earlyHi] = options.earlyKillMs ?? [0, 350];
  const earlyRate = options.earlyKillRate ?? 0.15;
  const jobCount = options.jobs ?? 24;
  const liquidityJobs = options.liquidityJobs ?? Math.max(1, Math.floor(jobCount / 4));
  const log = options.log ?? (() => {});
  const ownDir = options.workDir === undefined ? mkdtempSync(join(tmpdir(), 'botstate-chaos-')) : undefined;
  const dir = options.workDir ?? ownDir!;
  const violations: string[] = [];
  const tally = emptyTally();
  const recoveries: Recovery[] = [];
  let killsBeforeRecovery = 0;
  let killsLeavingPending = 0;
  let pendingReconciled = 0;
  let resent = 0;
  const liquidated = new Set<string>();
  // Kill cycles at which a job is liquidated mid-run.
  const liquidations = options.liquidations ?? 2;
  const liquidateAt = new Set(Array.from({ length: liquidations }, (_, i) => Math.floor((options.kills * (i + 1)) / (liquidations + 3))));
  const exchangeFile = join(dir, 'paper-exchange.db');

  let liquidationsDue = 0;
  let resumed = 0;
  const foreign = new Set<string>();
  let exchange: ExchangeChild | undefined;
  let daemon: DaemonChild | undefined;
  let store: Store | undefined;
  let counts: InvariantCounts | null = null;
  try {
    exchange = await startExchange({ dataFile: exchangeFile, seed, stepMs: 100, faults: options.faults });
    log(`exchange ${exchange.url}`);
    store = await openStore(options.dbUrl, { actor: 'chaos' });
    await createJobs(store, jobCount, liquidityJobs, rng);
    const durability = options.durability ?? 'process';
    const spawn = (): DaemonChild => startDaemon({ exchangeUrl: exchange!.url, dbUrl: options.dbUrl, tickMs, leaseTtlMs, durability, tally });
    const noteRecovery = (r: Recovery | undefined, afterKill: boolean) => {
      if (!r) return;
      recoveries.push(r);
      if (afterKill) {
        if (r.pending > 0) killsLeavingPending++;
        pendingReconciled += r.pending;
        resent += r.resent;
      }
    };

    const squeeze = options.squeezeCash ?? true;
    let released = false;
    for (let k = 0; k < options.kills; k++) {
      if (squeeze && k === Math.floor(options.kills / 2)) {
        const usd = (await exchangeGet<Record<string, Decimal>>(exchange.url, '/balances'))['USD'] ?? '0';
        if (cmp(usd, '50') > 0) {
          const order = await exchangePost(exchange.url, { clientOrderId: 'chaos-squeeze', token: SINK_TOKEN, side: 'BUY', quoteAmount: sub(usd, '50') });
          foreign.add(order.clientOrderId);
          log(`squeezed the account's cash: ${order.status} BUY of ${order.quoteAmount} USD`);
        }
      }
      if (
        squeeze &&
        k >= Math.floor(options.kills / 2) + Math.max(2, Math.floor(options.kills / 10)) &&
        foreign.has('chaos-squeeze') &&
        !released &&
        // On a slow or loaded machine the daemon may not have bought past the 50 USD left within
        // those cycles: the squeeze then lasts until a buy has been rejected (or the run nears its end).
        (k >= options.kills - 3 || (await exchangeGet<ExchangeOrder[]>(exchange.url, '/orders')).some((o) => o.status === 'REJECTED'))
      ) {
        released = true;
        const held = (await exchangeGet<Record<string, Decimal>>(exchange.url, '/balances'))[SINK_TOKEN] ?? '0';
        if (cmp(held, '0') > 0) {
          const order = await exchangePost(exchange.url, { clientOrderId: 'chaos-release', token: SINK_TOKEN, side: 'SELL', baseAmount: held });
          foreign.add(order.clientOrderId);
          log(`gave the cash back: ${order.status} SELL for ${order.quoteAmount} USD`);
        }
        // Only the jobs the squeeze put there: any other ERROR stays, for the checker to judge.
        for (const job of await store.jobs.list({ status: 'ERROR' })) {
          if (!SQUEEZED.test(job.statusReason ?? '')) continue;
          await retry(() => store!.jobs.resume({ id: job.id }, { actor: 'chaos' }));
          resumed++;
        }
        log(`resumed ${resumed} jobs the squeeze had put in ERROR`);
      }
      daemon = spawn();
      // A planned liquidation happens in the next cycle that lives past its recovery.
      if (liquidateAt.has(k)) liquidationsDue++;
      const last = k === options.kills - 1;
      // The last life is never an early kill when it must make up trades (minTrades).
      const early = rng() < earlyRate && !(last && (options.minTrades ?? 0) > 0);
      if (early) {
        await Promise.race([sleep(rng.int(earlyLo, earlyHi)), daemon.proc.exited]);
      } else {
        const r = await daemon.recovered(30_000);
        if (!r) {
          violations.push(`kill ${k}: the daemon printed no recovery line within 30 s (${daemon.describeExit()})`);
          break;
        }
        const uptime = rng.int(upLo, upHi);
        if (liquidationsDue > 0) {
          liquidationsDue--;
          await sleep(Math.floor(uptime / 2));
          const id = await liquidateOne(store, rng, liquidated);
          // No RUNNING job with a balance just now (a slow start): liquidate at the next cycle instead.
          if (id) liquidated.add(id);
          else liquidationsDue++;
          await sleep(uptime - Math.floor(uptime / 2));
        } else {
          await Promise.race([sleep(uptime), daemon.proc.exited]);
        }
      }
      if (last && tally.trades < (options.minTrades ?? 0) && !daemon.proc.exit) {
        const from = tally.trades;
        const t0 = performance.now();
        while (tally.trades < options.minTrades! && performance.now() - t0 < 60_000 && !daemon.proc.exit) await sleep(100);
        log(`the last daemon lived ${Math.round(performance.now() - t0)} ms more, to ${tally.trades} trades (from ${from}; at least ${options.minTrades} asked)`);
      }
      if (daemon.proc.exit) {
        violations.push(`kill ${k}: the daemon exited by itself (${daemon.describeExit()})`);
        break;
      }
      if (!daemon.recovery) killsBeforeRecovery++;
      await daemon.proc.kill9();
      noteRecovery(daemon.recovery, k > 0);
      daemon = undefined;
      if ((k + 1) % 25 === 0) log(`${k + 1}/${options.kills} kills, ${tally.trades} trades so far`);
    }

    const end = await drain({ store, exchangeUrl: exchange.url, dbUrl: options.dbUrl, tickMs, leaseTtlMs, durability, tally });
    noteRecovery(end.recovery, true);
    violations.push(...end.violations);

    const state = await readExchange(exchange.url, exchangeFile);
    const ex = await exchange.proc.stop('SIGTERM', 10_000);
    if (ex.timedOut || ex.code !== 0) violations.push(`the paper exchange exited ${ex.code} (signal ${ex.signal}${ex.timedOut ? ', timed out' : ''}) on SIGTERM, not 0`);
    // Not for the injected 503s either: a market's price unanswered goes to ERROR only after
    // marketDownMs (60 s) of them in a row, which an error rate below 1 does not make.
    const checked = await checkInvariants(store, state, { allowError: (reason) => SQUEEZED.test(reason), foreign });
    violations.push(...checked.violations);
    counts = checked.counts;
  } finally {
    await daemon?.proc.kill9();
    await exchange?.proc.kill9();
    await store?.close().catch(() => {});
    if (ownDir) rmSync(ownDir, { recursive: true, force: true });
  }
  const ms = recoveries.map((r) => r.ms).sort((a, b) => a - b);
  return {
    seed,
    faults: options.faults ?? null,
    kills: options.kills,
    killsBeforeRecovery,
    killsLeavingPending,
    pendingReconciled,
    resent,
    maxRecoveryMs: ms.at(-1) ?? 0,
    medianRecoveryMs: ms[Math.floor(ms.length / 2)] ?? 0,
    p99RecoveryMs: ms[Math.min(ms.length - 1, Math.floor(ms.length * 0.99))] ?? 0,
    recoveries,
    liquidated: liquidated.size,
    liquidationsPlanned: liquidateAt.size,
    resumed,
    tradeLines: tally.trades,
    tally,
    counts,
    durationMs: Math.round(performance.now() - t0),
    violations,
  };
}
