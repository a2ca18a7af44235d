import { mkdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { DEFAULT_MARKET_DOWN_MS, DEFAULT_MAX_FAILURES, Daemon, MIN_LEASE_TTL_MS } from '../../engine/daemon.ts';
import type { Exchange, ExchangeOrder, OrderRequest } from '../../engine/exchange.ts';
import type { Decimal } from '../../money/decimal.ts';
import { HttpExchange } from '../../engine/exchanges/http-exchange.ts';
import { startPaperExchange, type PaperExchangeHandle } from '../../engine/exchanges/paper-server.ts';
import { coerceError, exitCodeFor, StorageError, ValidationError } from '../../errors.ts';
import type { Store } from '../../store/store.ts';
import { parseLocation } from '../../store/location.ts';
import { DEFAULT_LEASE_TTL_MS } from '../../store/instances.ts';
import type { Command, CommandContext } from '../command.ts';
import { escapeControls } from '../../util/text.ts';
import { shown } from '../../util/values.ts';
import { exitOnSignal, signalsDelivered, watchSignals, type SignalWatch } from '../signals.ts';

/** The demo's jobs: fast settings so that trades happen within seconds. */
const DEMO_JOBS = [
  {
    tokenAddress: '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07',
    tokenSymbol: 'LGI',
    mode: 'ACCUMULATE' as const,
    set: ['accumulate.dcaAmount=25', 'accumulate.dcaIntervalHours=0.002', 'accumulate.dipBuyThreshold=2', 'accumulate.takeProfitPercent=3'],
  },
  {
    tokenAddress: '0x00000000000000000000000000000000000d3e30',
    tokenSymbol: 'DEMO',
    mode: 'LIQUIDITY' as const,
    set: ['liquidity.spreadPercent=0.5', 'liquidity.orderSizeUsd=20'],
  },
];

function integer(ctx: CommandContext, flag: string, fallback: number, min: number, max: number): number {
  const v = ctx.values[flag];
  if (v === undefined) return fallback;
  if (typeof v !== 'string' || !/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    throw new ValidationError('USAGE', `--${flag} must be a whole number from ${min} to ${max}, got "${String(v)}"`, { hint: 'see botstate daemon --help' });
  }
  return Number(v);
}

/** Before anything is opened: the exchange URL must be an http(s) URL. */
function checkExchangeUrl(url: string): void {
  try {
    new HttpExchange(url);
  } catch (e) {
    throw new ValidationError('USAGE', `--exchange: ${(e as Error).message}`, { hint: (e as { hint?: string }).hint ?? 'see botstate daemon --help' });
  }
}

/** Starts the demo jobs that do not exist yet; leaves existing ones as they are. */
async function ensureDemoJobs(store: Store, log: (line: string) => void): Promise<void> {
  for (const demo of DEMO_JOBS) {
    if (await store.jobs.find({ tokenAddress: demo.tokenAddress })) continue;
    const job = await store.jobs.start(demo);
    log(`demo: started ${job.mode} job ${job.tokenSymbol} (${job.tokenAddress})`);
  }
}

/** The demo's exchange, for a daemon built before the paper exchange it will use has started. */
class LateExchange implements Exchange {
  #target: HttpExchange | undefined;
  readonly #started = Promise.withResolvers<HttpExchange>();

  /** The paper exchange has started: calls go to it, and the probe sent as the daemon registered is answered. */
  start(target: HttpExchange): void {
    this.#target = target;
    this.#started.resolve(target);
  }

  get id(): string | undefined {
    return this.#target?.id;
  }

  #to(): HttpExchange {
    if (!this.#target) throw new Error('the demo exchange has not started yet');
    return this.#target;
  }

  placeOrder(order: OrderRequest): Promise<ExchangeOrder> {
    return this.#to().placeOrder(order);
  }

  getOrder(clientOrderId: string): Promise<ExchangeOrder | null> {
    return this.#to().getOrder(clientOrderId);
  }

  getPrice(token: string, chain?: string): Promise<Decimal> {
    return this.#to().getPrice(token, chain);
  }

  getBalances(): Promise<Readonly<Record<string, Decimal>>> {
    // Asked as the daemon registers (whether the exchange answers at all): answered once it has started.
    return this.#target ? this.#target.getBalances() : this.#started.promise.then((target) => target.getBalances());
  }

  getPrices(tokens: readonly string[], chain?: string): Promise<ReadonlyMap<string, Decimal>> {
    return this.#to().getPrices(tokens, chain);
  }

  getOrders(clientOrderIds: readonly string[]): Promise<ReadonlyMap<string, ExchangeOrder>> {
    return this.#to().getOrders(clientOrderIds);
  }
}

/** What a start-up step resolves to when a stop signal came first (see unlessStopped). */
const STOPPED: unique symbol = Symbol('stopped');

/** `step`'s value, or STOPPED if a stop signal comes first (the step goes on: see stopStarting). */
function unlessStopped<T>(step: Promise<T>, signals: SignalWatch): Promise<T | typeof STOPPED> {
  return Promise.race<T | typeof STOPPED>([step, signals.signal.then((): typeof STOPPED => STOPPED)]);
}

/**
 * How long a start-up step under way when a stop signal came (opening or migrating the database,
 * registering) is waited for: on PostgreSQL one may wait for a lock another session holds for as
 * long as that session keeps it.
 */
const STARTUP_GRACE_MS = 1000;

/**
 * A stop signal came while the daemon started, before it ran: `undo` (closing the store, marking
 * a registration stopped once it has ended) is given STARTUP_GRACE_MS, then the daemon says so
 * in one line and the command ends (exit 0). A step still waiting then (for a lock) is left: the
 * process ends at once without it, and its transaction, never committed, is rolled back (by the
 * server as the connection closes, by SQLite with the process), so that no registration is left
 * behind. A second signal meanwhile ends the process at once, as while a running daemon stops.
 */
async function stopStarting(ctx: CommandContext, signal: NodeJS.Signals, log: (line: string) => void, undo?: Promise<unknown>): Promise<void> {
  const undone = undo === undefined || (await Promise.race([undo.then(() => true, () => true), sleep(STARTUP_GRACE_MS, false, { ref: false })]));
  log(`${signal} during start-up: stopped before the daemon started`);
  if (!undone) {
    await ctx.io.drained?.();
    process.exit(0);
  }
}

/** Letters, marks, digits, punctuation and symbols, with spaces inside only: no control, format (zero-width) or blank-only name. */
const VISIBLE_NAME = /^[\p{L}\p{M}\p{N}\p{P}\p{S}](?:[\p{L}\p{M}\p{N}\p{P}\p{S} ]*[\p{L}\p{M}\p{N}\p{P}\p{S}])?$/u;

/** PostgreSQL connections kept beyond --concurrency: a tick's reads, the heartbeat, a stop's writes. */
const RESERVED_CONNECTIONS = 4;
/** The largest pool a store takes (its poolSize option). */
const MAX_POOL = 1000;

export const daemonCommand: Command = {
  name: 'daemon',
  summary: 'run every RUNNING and LIQUIDATING job against an exchange',
  usage: '[--exchange URL [--exchange-id ID] | --demo] [--tick MS] [--lease-ttl MS] [--concurrency N] [--max-jobs N] [--max-failures N] [--market-down MS] [--durability process|power]',
  details:
    'Each tick, every job takes one step of its strategy; an order goes through the exactly-once protocol\n' +
    '(durable PENDING intent, exchange call with its clientOrderId, fill and balance in one transaction).\n' +
    'On start it reconciles every PENDING intent with the exchange and prints how long recovery took.\n' +
    'It prints each trade on one line (ending "(recovered)" when it did not record the intent: recovery,\n' +
    'a job taken over), notices jobs started, paused or liquidated from the CLI within a tick, and on\n' +
    'SIGINT, SIGTERM or SIGHUP (its terminal closed) says so at once, starts no exchange call, finishes\n' +
    'the step in flight (a hung exchange call: at most its 5 s timeout), records it and exits 0; during\n' +
    'recovery, the intents not looked up yet stay PENDING for the next start. It exits 5 if the database\n' +
    'fails for good (a failed fsync or checkpoint), or is still unusable a minute into recovery (it\n' +
    'retries until then), and 3 if another daemon took its SQLite file over while it was stalled past\n' +
    'its lease TTL.\n' +
    'On SQLite one daemon runs per database file; on PostgreSQL several share the jobs through leases.\n\n' +
    '--demo starts a paper exchange in this process (its data in paper-exchange.db next to a SQLite\n' +
    'database, in the current folder with PostgreSQL) and two demo jobs,\n' +
    'so one command shows trading; run it again after Ctrl-C to see it recover and carry on.',
  options: {
    exchange: { type: 'string', value: 'URL', help: 'the exchange (default http://127.0.0.1:8790, the paper exchange)' },
    'exchange-id': {
      type: 'string',
      value: 'ID',
      help: 'the name of the exchange account it trades on, the same for every daemon of the database (default: the --exchange URL); an intent is never sent again by a daemon of another',
    },
    demo: { type: 'boolean', help: 'start a paper exchange and demo jobs too' },
    tick: { type: 'string', value: 'MS', help: 'milliseconds between steps of each job (default 1000)' },
    'lease-ttl': { type: 'string', value: 'MS', help: 'lease time-to-live; a dead daemon\'s jobs move within it plus one tick (default 15000)' },
    concurrency: { type: 'string', value: 'N', help: 'jobs stepped at once, 1 to 996 (default 16)' },
    'max-jobs': { type: 'string', value: 'N', help: 'the most jobs this daemon takes (default: its fair share); active jobs no daemon has room for are said' },
    'max-failures': { type: 'string', value: 'N', help: 'failed steps in a row after which a job goes to ERROR with the reason, 1 to 1000 (default 5)' },
    'market-down': {
      type: 'string',
      value: 'MS',
      help: 'how long a market\'s price must also have gone unanswered (5xx, 429, timeout) while the exchange answers other calls before its job goes to ERROR, 1 to 86400000 (default 60000)',
    },
    durability: { type: 'string', value: 'D', help: 'process (default) or power; see docs/durability.md' },
  },
  positionals: [0, 0],
  async run(ctx) {
    // Listening before anything slow starts (bin/botstate.js kept a signal that came while the
    // CLI loaded): a stop signal while the daemon starts (opening, migrating and registering may
    // wait for locks on PostgreSQL) stops it cleanly, instead of ending the process at once.
    const signals = watchSignals();
    try {
      await runDaemon(ctx, signals);
    } finally {
      signals.close();
    }
  },
};

async function runDaemon(ctx: CommandContext, signals: SignalWatch): Promise<void> {
  const tickMs = integer(ctx, 'tick', 1000, 10, 3_600_000);
  const leaseTtlMs = integer(ctx, 'lease-ttl', DEFAULT_LEASE_TTL_MS, MIN_LEASE_TTL_MS, 3_600_000);
  // At most the largest pool less the connections kept for the ticks and the heartbeat (below).
  const concurrency = integer(ctx, 'concurrency', 16, 1, MAX_POOL - RESERVED_CONNECTIONS);
  const maxJobs = ctx.values['max-jobs'] === undefined ? undefined : integer(ctx, 'max-jobs', 0, 1, 10_000_000);
  const maxFailures = integer(ctx, 'max-failures', DEFAULT_MAX_FAILURES, 1, 1000);
  const marketDownMs = integer(ctx, 'market-down', DEFAULT_MARKET_DOWN_MS, 1, 86_400_000);
  const durability = ctx.values['durability'] ?? 'process';
  if (durability !== 'process' && durability !== 'power') {
    throw new ValidationError('USAGE', `--durability must be process or power, got "${String(durability)}"`, { hint: 'see docs/durability.md' });
  }
  const demo = ctx.values['demo'] === true;
  if (demo && ctx.values['exchange'] !== undefined) throw new ValidationError('USAGE', '--demo starts its own exchange: drop --exchange', { hint: 'botstate daemon --demo, or botstate daemon --exchange URL without --demo' });
  // One line per event, whatever an exchange put in its error text.
  const log = (line: string) => ctx.io.out(`${escapeControls(line)}\n`);
  const exchangeUrl = typeof ctx.values['exchange'] === 'string' ? ctx.values['exchange'] : 'http://127.0.0.1:8790';
  if (!demo) checkExchangeUrl(exchangeUrl);
  const exchangeId = ctx.values['exchange-id'];
  if (typeof exchangeId === 'string') {
    if (demo) throw new ValidationError('USAGE', '--demo names its own exchange (its data file): drop --exchange-id', { hint: 'botstate daemon --demo, or --exchange URL --exchange-id ID without --demo' });
    if (exchangeId.length > 200 || !VISIBLE_NAME.test(exchangeId)) {
      throw new ValidationError('USAGE', `--exchange-id must be 1 to 200 visible characters, without control characters or surrounding blanks, got ${JSON.stringify(shown(exchangeId))}`, {
        hint: 'name the exchange account, e.g. --exchange-id binance-main',
      });
    }
  }
  // The database as the store will open it: --db, else $BOTSTATE_DB (else ./botstate.db, whose folder is there).
  const given = typeof ctx.values['db'] === 'string' ? '--db' : process.env['BOTSTATE_DB'] ? '$BOTSTATE_DB' : undefined;
  const location = given === undefined ? undefined : parseLocation(given === '--db' ? (ctx.values['db'] as string) : process.env['BOTSTATE_DB']!);
  if (demo && location?.engine === 'sqlite' && location.path !== ':memory:') {
    // The demo's exchange keeps its file beside the database: it must not be the database.
    if (basename(location.path) === 'paper-exchange.db') {
      throw new ValidationError('USAGE', `--demo keeps its paper exchange's orders in ${location.path}, the file given as ${given}`, {
        hint: 'name the database otherwise, e.g. --db ./demo/botstate.db',
      });
    }
    // The demo may make the folder its database lives in (npm start uses ./demo/).
    const folder = dirname(location.path);
    try {
      mkdirSync(folder, { recursive: true });
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new StorageError('STORAGE_UNAVAILABLE', `cannot create the folder ${folder} for the database: ${code ?? String(e)}`, {
        hint: code === 'EEXIST' || code === 'ENOTDIR' ? 'a file is in the way of that folder: give --db a path in a folder' : 'check that the folder above it exists and is writable',
        cause: e,
      });
    }
  }
  // A daemon frozen mid-transaction (a paused VM) must not keep the row locks another
  // daemon needs to take its jobs over: PostgreSQL ends such a session after half the TTL.
  // Its ticks wait for locks as long as it takes (a CLI command's are bounded; see main).
  // PostgreSQL: a pool larger than the steps run at once, so that steps all waiting on locked
  // rows leave connections for the ticks' reads and the heartbeat (with the pool's default of
  // 10 and 16 steps, they took every one, and the leases ran out).
  const poolSize = concurrency + RESERVED_CONNECTIONS;
  // A signal that came while the CLI loaded stops it here, before anything is opened.
  await signalsDelivered();
  if (signals.received !== undefined) return stopStarting(ctx, signals.received, log);
  // An upgrade's migration of a large database takes a while: said, not waited for in silence.
  let migrating: { to: number; since: number } | undefined;
  const onMigrate = (from: number, to: number): void => {
    migrating = { to, since: performance.now() };
    log(`migrating the database from schema version ${from} to ${to}…`);
  };
  const opening = ctx.open({ durability, actor: 'daemon', lockTimeoutMs: 0, idleTransactionTimeoutMs: Math.max(500, Math.floor(leaseTtlMs / 2)), poolSize, onMigrate });
  const store = await unlessStopped(opening, signals);
  if (store === STOPPED) return stopStarting(ctx, signals.received!, log, opening.then((s) => s.close()));
  if (migrating !== undefined) log(`migrated to schema version ${migrating.to} in ${(performance.now() - migrating.since).toFixed(1)} ms`);
  let paper: PaperExchangeHandle | undefined;
  try {
    // The demo's paper exchange starts only once the daemon has registered (a refused demo must
    // not touch its data file, which a running demo may be using): until then the daemon is
    // given an exchange that is not reachable yet (the probe sent as the daemon registers is
    // answered once it has started).
    const exchange = demo ? new LateExchange() : new HttpExchange(exchangeUrl, typeof exchangeId === 'string' ? { id: exchangeId } : {});
    const daemon = new Daemon({ store, exchange, tickMs, leaseTtlMs, concurrency, maxFailures, marketDownMs, log, ...(maxJobs ? { maxJobs } : {}) });
    // Said once, as soon as the signal comes (during recovery too), or not at all after a failure's line.
    let said = false;
    const finishing = (signal: NodeJS.Signals): void => {
      if (said) return;
      said = true;
      // A second signal gets Node's default: the process ends at once, as after kill -9 (exit 128 + the signal's number).
      log(`${signal}: finishing the step in flight… (a second signal stops it at once, as kill -9 would)`);
    };
    // Refused here while another daemon runs on this SQLite file: nothing is printed or
    // written before (no demo job, no paper exchange data file).
    if ((await unlessStopped(daemon.register(), signals)) === STOPPED) {
      // stop() waits for the registration to end, then marks it stopped.
      return await stopStarting(ctx, signals.received!, log, daemon.stop());
    }
    try {
      let url = exchangeUrl;
      if (exchange instanceof LateExchange) {
        const dataFile = store.engine === 'sqlite' ? join(dirname(store.location), 'paper-exchange.db') : './paper-exchange.db';
        paper = await startPaperExchange({ port: 0, dataFile, stepMs: 1000, volatility: '0.01' });
        url = paper.url;
        // Named by its data file: the demo's port changes at every start, its orders do not.
        exchange.start(new HttpExchange(url, { id: `paper-exchange:${resolve(dataFile)}` }));
        log(`demo: paper exchange at ${url} (data ${dataFile})`);
      }
      // A PostgreSQL location ends with its schema in brackets: the engine and mode join them.
      const where = store.engine === 'postgres' && store.location.endsWith(')') ? `${store.location.slice(0, -1)}; ${store.engine}, ${durability})` : `${store.location} (${store.engine}, ${durability})`;
      // The failure settings only when given otherwise than their defaults, so the usual line stays short.
      const failures = `${maxFailures === DEFAULT_MAX_FAILURES ? '' : `, max failures ${maxFailures}`}${marketDownMs === DEFAULT_MARKET_DOWN_MS ? '' : `, market down ${marketDownMs} ms`}`;
      log(`daemon ${daemon.instanceId} on ${where}, exchange ${url}${typeof exchangeId === 'string' ? ` (id ${exchangeId})` : ''}, tick ${tickMs} ms${failures}`);
      if (demo) await ensureDemoJobs(store, log);
      // A signal that came since it registered: it does not start, and stops below.
      if (signals.received === undefined) {
        // A signal stops the daemon, even while it starts (its recovery may be waiting for the
        // exchange or the database), and says so at once; stop() is one stop however often
        // called, and the one below says what failed.
        void signals.signal.then((signal) => (finishing(signal), daemon.stop())).catch(() => {});
        await daemon.start();
      }
    } catch (e) {
      await daemon.stop();
      exitOnSignal(exitCodeFor(coerceError(e)));
      throw e;
    }
    const outcome = await Promise.race([signals.signal, daemon.failed]);
    if (typeof outcome !== 'string') {
      // The database can no longer be written (a disk error: exit 5, so that a supervisor
      // restarts the daemon; its recovery reconciles what was in flight), or another daemon
      // took this SQLite file over while this one was stalled (exit 3).
      said = true;
      log(`${outcome.message}: stopping`);
      await daemon.stop();
      exitOnSignal(exitCodeFor(outcome));
      throw outcome;
    }
    finishing(outcome);
    await daemon.stop();
    exitOnSignal(store.failure ? exitCodeFor(store.failure) : 0);
    if (store.failure) throw store.failure; // the disk failed meanwhile: not a clean stop
    // Every step was recorded; only the hand-over waits for the leases to expire.
    const left = daemon.leftPending ?? 0;
    const inError = daemon.leftInError ?? 0;
    // Clean all the same: each is recorded PENDING, and the next start settles it from the exchange,
    // but for one on a job in ERROR whose reason asks an operator to (said so, not "not known yet").
    const orders = (n: number) => `${n} order${n === 1 ? '' : 's'}`;
    const pending =
      left === 0
        ? ''
        : inError === 0
          ? `; ${orders(left)} left PENDING (outcome not known yet), looked up at the exchange again at the next start`
          : `; ${orders(left)} left PENDING, looked up at the exchange again at the next start; ` +
            (inError === 1
              ? `${left === 1 ? 'it' : '1'} is of a job in ERROR, whose reason may ask an operator to settle it`
              : `${inError} are of jobs in ERROR, whose reasons may ask an operator to settle them`) +
            ' (botstate list --status error)';
    log(`${daemon.leasesKept ? 'stopped, every step recorded; its leases were not handed back (said above)' : 'stopped cleanly'}${pending}`);
  } finally {
    await paper?.close();
    await store.close();
  }
}
