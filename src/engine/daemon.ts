import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { insertAudit, jobStream, prepareAudit, GENESIS_HASH } from '../audit/audit.ts';
import { BotstateError, coerceError, errorText, isBotstateError, RuleError, StorageError, ValidationError } from '../errors.ts';
import { cmp, isDecimal, parseDecimal } from '../money/decimal.ts';
import { DEFAULT_CHAIN, JOB_COLUMNS, toJob, type Job, type JobRow } from '../jobs/job-rows.ts';
import { amountsDisagree, beyondAsked, derivedSequence, type IntentInput, type Settlement, type Trade } from '../ledger/ledger.ts';
import { MAX_ACTOR_LENGTH, type CallOptions, type Fence } from '../store/context.ts';
import type { Executor } from '../store/adapter.ts';
import type { Store } from '../store/store.ts';
import { ACTIVE_STATUSES } from '../jobs/lifecycle.ts';
import { DEFAULT_LEASE_TTL_MS } from '../store/instances.ts';
import { ExchangeInvalidAnswerError, ExchangeRejectedError, ExchangeUnavailableError, type Exchange, type ExchangeOrder, type OrderRequest } from './exchange.ts';
import { parseExchangeOrder } from './exchanges/http-exchange.ts';
import { Leases, type KnownLeases, type LeasesKept } from './leases.ts';
import { paddedChunks } from '../util/chunks.ts';
import { isStorableText } from '../util/text.ts';
import { described, isRecord, jsonMember, shown } from '../util/values.ts';
import { afterFill, decide, parseScratch, type Decision, type Scratch, type StateChange } from './strategies/strategy.ts';

export interface DaemonOptions {
  readonly store: Store;
  readonly exchange: Exchange;
  /** How often every job takes a step (default 1000 ms). */
  readonly tickMs?: number;
  /** Lease time-to-live: a killed daemon's jobs move to another within this (default 15000 ms, at least 100). */
  readonly leaseTtlMs?: number;
  /** Jobs stepped at once (default 16). */
  readonly concurrency?: number;
  /** Failed steps in a row after which a job goes to ERROR (default 5). */
  readonly maxFailures?: number;
  /**
   * How long a market's price must have gone unanswered (getPrice's ExchangeUnavailableError: a
   * 5xx, a 429, a timeout, while the exchange answers other calls) before its job goes to ERROR
   * for it: its failed steps in a row must also be `maxFailures` or more (default 60000 ms). A
   * price that fails now and then, or for a few seconds, is a market's passing trouble, not an
   * operator's: the job waits for it, trading nothing meanwhile.
   */
  readonly marketDownMs?: number;
  /** How often un-ordered strategy state is written (default 10000 ms); it is always written with an order. */
  readonly flushMs?: number;
  /** The most jobs this daemon runs. */
  readonly maxJobs?: number;
  /**
   * How long any one exchange call may take (default 5000 ms, HttpExchange's own timeout). One that
   * takes longer counts as unanswered (an order's outcome is then unknown, and reconciled at the
   * next tick). A job's step may outlast a tick: the other jobs go on ticking meanwhile, and that
   * job skips the ticks that come while its step runs. Once a stop is asked for no exchange call
   * starts (but the order of an intent being committed then), and the stop waits for the calls in
   * flight: a hung adapter holds it up for at most this long, plus the database work of recording
   * what those calls did. It is also how long an exchange is given to list an order it refused to
   * take again (see the Exchange contract): an intent sent again and refused is settled FAILED
   * only if the exchange still does not know it this long after.
   */
  readonly exchangeTimeoutMs?: number;
  /** Where lines go: each trade, recovery, failures (default stdout). */
  readonly log?: (line: string) => void;
  readonly instanceId?: string;
}

/** What recovery found and did on start-up. */
export interface RecoveryReport {
  readonly instanceId: string;
  /** RUNNING and LIQUIDATING jobs (and jobs with an open intent) this daemon took. */
  readonly jobs: number;
  /** PENDING intents found: each is then executed, failed, open, unresolved or left. */
  readonly pending: number;
  readonly executed: number;
  readonly failed: number;
  /** Intents the exchange had never received, sent again under their own clientOrderId (then counted by their outcome too). */
  readonly resent: number;
  /**
   * Intents whose order the exchange has accepted but not finished (status OPEN): left PENDING,
   * their jobs resume with them, and they are asked about again every tick until filled or rejected.
   */
  readonly open: number;
  /**
   * Intents left PENDING otherwise: the exchange could not be asked, or its answer could not be
   * read or settled (retried every tick).
   */
  readonly unresolved: number;
  /**
   * Intents left PENDING because stop() was called during recovery: once it is, no exchange call
   * starts, so the rest are not looked up (or not sent again), for the next start to reconcile.
   */
  readonly left: number;
  readonly ms: number;
}

interface Runner {
  fence: Fence;
  scratch: Scratch;
  /** Audited strategy fields not written yet (written with the next order, or at the next flush). */
  state: StateChange;
  scratchDirty: boolean;
  lastFlush: number;
  failures: number;
  /** When the first of the failures in a row happened (since the last outage). */
  failingSince?: number;
  /** The daemon's time in ticks an outage skipped at the first of them (see #skipped): left out of how long they lasted. */
  skippedMsBefore?: number;
  /** When a market's price unanswered past maxFailures was last said waiting for marketDownMs (see #failed). */
  saidWaiting?: number;
  /**
   * A write of the job failed with a storage error: it may have been committed all the same (a
   * COMMIT whose answer was lost), so scratch and state may not be what is stored any more. The
   * next step starts again from the job's row, keeping only the count of failures.
   */
  stale?: boolean;
  /** The last failure logged while the job is in ERROR (its open intent is retried every tick). */
  failingInError?: string;
  /** Why the exchange rejected the last order. */
  rejection?: string;
  /**
   * The open order last said to be open, and how many whole OPEN_REMINDER_MS after its intent's
   * recording it was said (once, then again as each one passes: not every tick).
   */
  saidOpen?: { clientOrderId: string; periods: number };
  /** An intent sent again and refused, which the exchange did not list when asked again: since when, and why (see #refusedResend). */
  refusedResend?: { clientOrderId: string; since: number; refusal: string };
  /** Why a liquidation waits (the strategy's `skipped`), once said (said again when it changes). */
  liquidationWaits?: string;
  /** The limit last said holding a running job's due order back, until it next decides an order (see #sayHeldBack). */
  heldBack?: string;
  /** When each limit was last said holding it back. */
  heldBackSaid?: Map<string, number>;
  /**
   * Its open intent's lookups that got no answer, in a row (see #lookupFailed): how many, the
   * daemon's count of exchange answers (#answersSeen) at the last, and when the order was last said stuck.
   */
  lookupFailing?: { clientOrderId: string; attempts: number; answers: number; saidAt: number | undefined };
  /** Its open intent sent again with no answer, in a row (see #resendUnanswered): how many, and when last said. */
  resendFailing?: { clientOrderId: string; attempts: number; saidAt: number };
}

/** How long a change in the number of active jobs no daemon may run lasts before it is said (see #sayUnrun). */
const UNRUN_SAID_AFTER_MS = 2000;

/**
 * Milliseconds since the machine booted, suspended time included (Linux's /proc/uptime, to 10 ms);
 * undefined where there is no such file.
 */
function bootMs(): number | undefined {
  if (!hasUptime) return undefined;
  try {
    return Number.parseFloat(readFileSync('/proc/uptime', 'latin1')) * 1000;
  } catch {
    hasUptime = false; // not Linux: not asked again
    return undefined;
  }
}
let hasUptime = true;

/** A duration as the log says it: milliseconds under a second, else seconds (whole, or with one decimal). */
function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${(ms / 1000).toFixed(1)} s`;
}

/** A running job's due order held back by a limit is said again for the same limit only this long after. */
const HELD_BACK_SAID_EVERY_MS = 10 * 60_000;

/**
 * What holds a running job's due order back, as the operator reads it (Decision.skipped of a
 * RUNNING job: the limit that cut the order the strategy decided to nothing); undefined for a
 * reason that is no limit (no signal, a DCA not due, the MA window warming up).
 */
function heldBack(job: Job, skipped: string | undefined, price: string): string | undefined {
  const limits = job.config.limits;
  switch (skipped) {
    case 'max-trades-per-hour':
      return `limits.maxTradesPerHour (${limits.maxTradesPerHour}) is reached: it is placed when the last hour's trades allow`;
    case 'max-accumulation':
      return `accumulate.maxAccumulationUsd (${job.config.accumulate.maxAccumulationUsd}) is reached (totalAccumulated ${job.totalAccumulated}): no more buys until it is raised (botstate config)`;
    case 'max-position':
      return `limits.maxPositionUsd (${limits.maxPositionUsd}) leaves no room at ${price} (tokenBalance ${job.tokenBalance}): no more buys until the price falls or it is raised`;
    case 'max-order':
      return `limits.maxOrderUsd (${limits.maxOrderUsd}) leaves nothing of it at ${price}`;
    case 'max-daily-volume':
      return `liquidity.maxDailyVolume (${job.config.liquidity.maxDailyVolume}) is traded for today (UTC): it trades again tomorrow, or once it is raised`;
    case 'no-cash':
      return `the liquidity cash is spent (liquidity.capitalUsd ${job.config.liquidity.capitalUsd}, less what it bought net): it buys again once it has sold`;
    case 'min-trade':
      return `what the limits leave of it is worth less than limits.minTradeUsd (${limits.minTradeUsd}) at ${price}`;
    default:
      return undefined;
  }
}

/** What holds a liquidation back, as the operator reads it (Decision.skipped of a LIQUIDATING job). */
function liquidationWait(job: Job, skipped: string | undefined, price: string): string | undefined {
  if (skipped === 'max-trades-per-hour') {
    return `limits.maxTradesPerHour (${job.config.limits.maxTradesPerHour}) reached; the next slice is sold when the last hour's trades allow`;
  }
  if (skipped === 'max-order') return `no slice of the balance is worth at most limits.maxOrderUsd (${job.config.limits.maxOrderUsd}) at ${price}; raise it with botstate config`;
  return undefined;
}

/** What became of an intent: settled (executed, failed), open at the exchange, or unknown (left PENDING alike). */
type Outcome = 'executed' | 'failed' | 'open' | 'unknown';

const ACTIVE: ReadonlySet<string> = new Set(ACTIVE_STATUSES);
/** Storage errors that a later attempt may not meet (not a failed disk or a damaged file). */
const TRANSIENT: ReadonlySet<string> = new Set(['STORAGE_UNAVAILABLE', 'STORAGE_BUSY']);
/** A tick's wait for the database after which the daemon says it is waiting. */
const SLOW_DATABASE_MS = 3000;
/** How often an order whose lookup alone keeps failing is said again (see #lookupFailed). */
const STUCK_SAID_AGAIN_MS = 10 * 60_000;
/** How often a changed cause of an outage under way is said at most (see #exchangeUnavailable). */
const OUTAGE_CAUSE_SAID_EVERY_MS = 60_000;
/** An outage this many lease TTLs long has the daemon hand its jobs over to the others (see #publishReach). */
const HAND_OVER_AFTER_TTLS = 2;
/**
 * A daemon of several whose exchange answered no call for a lease TTL divided by this probes it
 * (see Daemon.#probeIfQuiet): an outage is found well before another daemon's jobs would come to it.
 */
const QUIET_PROBES_PER_TTL = 3;

/**
 * What an outage's error says of its cause, without what was asked: an adapter's message names
 * the call, the token or the order (`gave no answer to the price of 0xbB…: connect ECONNREFUSED`),
 * and two jobs failing alike are not a change of cause. The text after the last ": ", with
 * addresses, ids, numbers and the contract's call names taken out.
 */
function causeOf(message: string): string {
  const last = message.lastIndexOf(': ');
  return (last < 0 ? message : message.slice(last + 2))
    .replace(/0x[0-9a-f]+/gi, '')
    .replace(/\b(?:getPrices?|getOrders?|getBalances|placeOrder)\b/g, '')
    .replace(/[0-9a-f]{8}-[0-9a-f-]{4,}/gi, '')
    .replace(/\d+/g, '#');
}
/** How long the jobs are priced one by one after the batch price request failed, before it is tried again. */
const BATCH_RETRY_MS = 60_000;
/**
 * A batch price request that fails again within this of the last time its failure was said is not
 * said again, nor its answering again, unless it fails again when tried again: under an exchange
 * that drops a request now and then, a batch that fails and answers at its next try was said
 * failing and answering by turns, several times a minute.
 */
const BATCH_SAID_EVERY_MS = 10 * 60_000;
/** How long start() tries recovery again after a transient storage error before it gives up. */
const RECOVERY_RETRY_MS = 60_000;
/**
 * Errors after which a job cannot go on at all, whatever its count of failed steps: the ledger
 * and the exchange disagree about an order (see #settle). The job goes to ERROR at once.
 */
const STOPS_THE_JOB = new WeakSet<Error>();
/** Among those, the errors that leave the intent PENDING (for an operator), not settled otherwise. */
const LEAVES_IT_PENDING = new WeakSet<Error>();

/**
 * When a fill happened, by this daemon's clock: the exchange's time, but no earlier than the
 * intent was committed and no later than now. The fill time becomes lastDcaBuyTime and the
 * trade's time for maxTradesPerHour, which are compared with this daemon's clock: an exchange
 * clock two hours behind made every tick's DCA due again.
 */
function fillTime(reported: string, intentAt: string, now: number): string {
  const ms = Math.min(Math.max(Date.parse(reported), Date.parse(intentAt)), now);
  return new Date(ms).toISOString();
}

/** Whether the runner holds strategy state not written yet (audited fields or scratch). */
const unwritten = (runner: Runner): boolean => runner.scratchDirty || Object.keys(runner.state).length > 0;

/**
 * A storage error after which a write may have been committed all the same: a lost connection (a
 * COMMIT whose answer never came) or a failed disk. STORAGE_BUSY (a lock not had, a transaction
 * the engine aborted) wrote nothing.
 */
function mayHaveCommitted(error: BotstateError): boolean {
  return error.code !== 'STORAGE_BUSY';
}

/**
 * After a storage error in a write of the job: what the runner holds may be older than what is
 * stored (the write may have been committed, its answer lost), so none of it is written (a flush
 * would put an old scratch back over the fill's), and the next step starts from the job's row.
 */
function forget(runner: Runner): void {
  runner.stale = true;
  runner.state = {};
  runner.scratchDirty = false;
}

/** A LIQUIDATING job with nothing left to sell: it completes without a price. */
const liquidated = (job: Job): boolean => job.status === 'LIQUIDATING' && cmp(job.tokenBalance, '0') <= 0;

/**
 * Runs every RUNNING and LIQUIDATING job: each tick, a job's strategy decides at most one order,
 * which goes through the exactly-once protocol (docs/daemon.md):
 *
 * 1. the intent is committed PENDING, with a clientOrderId derived from the job and its
 *    sequence number, together with the strategy state that led to it;
 * 2. the exchange is called with that clientOrderId;
 * 3. the fill and the job's new balance are committed in one transaction.
 *
 * A job with a PENDING intent does nothing else until it is reconciled: the exchange is asked
 * for the order by clientOrderId, and if it never received it, the same order is sent again
 * under the same clientOrderId (the exchange's idempotency makes that safe). A new
 * clientOrderId is never made for an old intent. Every write carries the daemon's lease epoch
 * for the job (fencing), so a daemon that lost a job cannot write to it.
 */
export class Daemon {
  readonly instanceId: string;
  readonly #store: Store;
  readonly #exchange: Exchange;
  /**
   * placeOrder bounded by the timeout like the rest, but sent even once a stop is asked for: for
   * the order of an intent its step has just committed, which a stop must not leave unsent.
   */
  readonly #placeNow: Exchange['placeOrder'];
  readonly #leases: Leases;
  readonly #tickMs: number;
  readonly #concurrency: number;
  readonly #maxFailures: number;
  readonly #marketDownMs: number;
  readonly #flushMs: number;
  readonly #log: (line: string) => void;
  readonly #runners = new Map<string, Runner>();
  /**
   * Per job, the intent this daemon recorded last: its clientOrderId or, when the answer to its
   * COMMIT was lost, the job's version it was decided from (committed, its derived id is numbered
   * above it). A trade this daemon settles that is not one of these ends its line with
   * `(recovered)`: another daemon's, whose job it took over, or one a library call recorded. Kept
   * here, not in the runner, which is made anew after an ERROR, a lost lease or a new epoch.
   */
  readonly #recorded = new Map<string, { readonly clientOrderId: string } | { readonly above: number }>();
  /** Why the last renewal of the leases failed, until one succeeds. */
  #renewFailing: string | undefined;
  /** While renewals fail: the leases this daemon held as they began to (see #sayRenewedAgain). */
  #renewBaseline: KnownLeases | undefined;
  /** Jobs whose step is running or waiting for one of the `concurrency` slots. */
  readonly #inFlight = new Map<string, Promise<void>>();
  /** Jobs whose row cannot be read (changed outside botstate), with the reason last logged. */
  readonly #unreadable = new Map<string, string>();
  readonly #slots: Slots;
  #timer: NodeJS.Timeout | undefined;
  #ticking: Promise<void> = Promise.resolve();
  /** No new tick or step starts: set by stop(), and when the daemon gives up (see {@link failed}). */
  #stopping = false;
  #stopCall: Promise<void> | undefined;
  #leasesKept = false;
  #leftPending: number | undefined;
  #leftInError: number | undefined;
  /** Since when the ticks' reads have waited for the database, once that was said (see #saidIfSlow). */
  #databaseWaitSince: number | undefined;
  #started = false;
  /** stop() was called: the daemon may not start or register (again). */
  #stopped = false;
  /** The start() and register() calls under way (see #entered). */
  readonly #entering = new Set<Promise<unknown>>();
  /** The registration under way: register() called again meanwhile waits for it. */
  #registering: Promise<void> | undefined;
  readonly #failure = Promise.withResolvers<BotstateError>();
  /** How long the registration took, once done. */
  #registeredMs: number | undefined;
  /**
   * Since when the exchange has been unreachable, which kind of call found it so, in which tick,
   * and the cause last said (undefined until said: see #exchangeUnavailable).
   */
  #outage: { since: number; kind: 'prices' | 'orders'; tick: number; said?: { cause: string; at: number; changes: number } } | undefined;
  /**
   * How long, in all, ticks that an outage kept from stepping their jobs lasted (each counted from
   * its start to the next tick's), and when the last tick started and whether it was one: a job's
   * failures in a row are timed without them (see #failed).
   */
  #skipped = { ms: 0, lastAt: 0, last: false };
  /** Ticks begun, counted: an outage is said once it outlasts the tick that found it. */
  #ticks = 0;
  /**
   * Exchange calls that answered (lookups, prices, orders placed), counted: tells an order whose
   * lookup alone fails from an outage (see #lookupFailed).
   */
  #answersSeen = 0;
  /** This tick's (or the registration's) answer to "does the exchange answer at all?" (see #answers). */
  #probe: Promise<boolean> | undefined;
  /**
   * The batch price request failed while the exchange answered: each job is priced alone until
   * retryAt (see #prices). `priced`: a job's price has answered since.
   */
  #batchFailing: { retryAt: number; priced: boolean; said: boolean } | undefined;
  /** When the batch's failure was last said, by chain ('' for the whole batch): see BATCH_SAID_EVERY_MS. */
  readonly #batchSaidAt = new Map<string, number>();
  /**
   * Chains whose batch price request failed while another chain's answered (a chain the exchange
   * does not trade on, or one whose markets hang): until when their jobs are priced alone, left out
   * of the batch so that they hold up no other chain's jobs (see #prices).
   */
  readonly #chainsFailing = new Map<string, { retryAt: number; said: boolean }>();
  /** This tick found the exchange answering no price: its steps that have not asked for theirs yet do not. */
  #noPrices = false;
  /** Tokens whose price, asked alone, got no answer while the batch fails: their jobs are stepped last. */
  readonly #slowPrices = new Set<string>();
  /** The error the last ticks failed with, since when, and how many ticks (said once). */
  #tickFailure: { message: string; since: number; count: number } | undefined;
  /** The jobs held at the last tick (see #sayLeaseChanges); undefined before the first. */
  #held: Set<string> | undefined;
  /** How many jobs recovery said this daemon held (see #sayLeaseChanges). */
  #recoveredJobs: number | undefined;
  /** Active jobs no daemon may run, as last said (see #sayUnrun), and since when another count has been seen. */
  #unrun = 0;
  #unrunSince: number | undefined;
  /** Whether this daemon last said it hands its jobs over (see #sayHandOver). */
  #saidHandingOver = false;
  /**
   * Since when the exchange has answered no call: set when a probe (see #answers) gets no answer,
   * cleared by any answer. Published on the instance row (see #publishReach).
   */
  #unreachableSince: number | undefined;
  /**
   * Probes in a row that got no answer (one sent before the last counted one failed, as the
   * registration's and the first tick's may be, counts once), when the last counted one failed,
   * and why.
   */
  #probesUnanswered = 0;
  #probeFailedAt = 0;
  #probeFailure = '';
  /** When a call to the exchange last answered (performance.now()), or -Infinity if none has since this daemon started. */
  #answeredAt = Number.NEGATIVE_INFINITY;
  /** getBalances probes sent and not answered yet, and when the last one was sent (see #answers). */
  #probesInFlight = 0;
  #probeSentAt = Number.NEGATIVE_INFINITY;
  /** This daemon's --max-jobs, if it has one. */
  readonly #maxJobs: number | undefined;
  /** Set once, by #giveUp. */
  #givingUp = false;
  #renewer: NodeJS.Timeout | undefined;
  #renewing: Promise<void> | undefined;
  readonly #leaseTtlMs: number;
  readonly #exchangeTimeoutMs: number;
  /** Aborted when a stop is asked for (stop() or giving up): waits that a stop should cut short listen to it. */
  readonly #stopAsked = new AbortController();

  constructor(options: DaemonOptions) {
    checkDaemonOptions(options);
    this.#store = options.store;
    this.#exchangeTimeoutMs = options.exchangeTimeoutMs ?? 5000;
    this.#exchange = timed(options.exchange, this.#exchangeTimeoutMs, () => this.#stopping);
    this.#placeNow = timed(options.exchange, this.#exchangeTimeoutMs, () => false).placeOrder;
    this.#tickMs = options.tickMs ?? 1000;
    this.#concurrency = options.concurrency ?? 16;
    this.#slots = new Slots(this.#concurrency);
    this.#maxFailures = options.maxFailures ?? DEFAULT_MAX_FAILURES;
    this.#marketDownMs = options.marketDownMs ?? DEFAULT_MARKET_DOWN_MS;
    this.#flushMs = options.flushMs ?? 10_000;
    this.#log = options.log ?? ((line) => void process.stdout.write(`${line}\n`));
    this.instanceId = options.instanceId ?? `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
    this.#leaseTtlMs = options.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
    this.#maxJobs = options.maxJobs;
    this.#leases = new Leases(this.#store, this.instanceId, {
      ttlMs: this.#leaseTtlMs,
      ...(options.maxJobs === undefined ? {} : { maxJobs: options.maxJobs }),
    });
  }

  get #actor(): string {
    return `daemon:${this.instanceId}`;
  }

  /**
   * Registers the daemon, takes its jobs, reconciles every PENDING intent among them, writes
   * what it did to the audit log, and starts ticking.
   *
   * A Daemon starts once: a second start(), or a start() after {@link stop}, is refused with
   * INVALID_ARGUMENT and changes nothing stored; create a new Daemon (with the same `instanceId`
   * to continue its audit stream) to run again.
   */
  async start(): Promise<RecoveryReport> {
    if (this.#started) throw startedOnce('this daemon was already started');
    this.#refuseIfStopped('start');
    this.#started = true;
    return this.#entered(async () => {
      const registeredIn = this.#registeredMs;
      const t0 = performance.now();
      if (registeredIn === undefined) await this.register();
      try {
        // Recovery's time counts the registration, whenever it was done.
        const from = registeredIn === undefined ? t0 : t0 - registeredIn;
        // A database that fails for a moment (a dropped connection, a failover, a lock held
        // past the timeout) is waited for, as a tick waits for it, up to RECOVERY_RETRY_MS.
        // Each attempt starts over from what is stored: an intent an earlier one settled (each
        // in a transaction of its own) is no longer pending.
        for (let attempt = 1; ; attempt++) {
          try {
            return await this.#recover(from);
          } catch (e) {
            const error = coerceError(e);
            const wait = Math.min(5000, 250 * 2 ** (attempt - 1));
            if (!TRANSIENT.has(error.code) || this.#stopping || performance.now() + wait - t0 > RECOVERY_RETRY_MS) throw e;
            this.#log(`recovery failed (${error.message}); trying again in ${wait} ms`);
            // Cut short by a stop: it ends the retries at once, not after the wait.
            await sleep(wait, undefined, { signal: this.#stopAsked.signal }).catch(() => {});
            if (this.#stopping) throw e;
          }
        }
      } catch (e) {
        clearInterval(this.#renewer);
        throw e;
      }
    });
  }

  /**
   * Runs a start() or register(): a stop() called meanwhile waits for it (recovery starts no
   * exchange call once stop() is called: it records what the calls in flight answer and leaves the
   * other intents PENDING), then stops the daemon as it stops a running one.
   */
  #entered<T>(fn: () => Promise<T>): Promise<T> {
    const running = fn();
    this.#entering.add(running);
    const forget = () => void this.#entering.delete(running);
    running.then(forget, forget);
    return running;
  }

  /**
   * Registers this daemon — refused with DAEMON_RUNNING while another daemon runs on the same
   * SQLite file — and starts heartbeating. {@link start} does it first unless it was done: a
   * caller with work that must wait until the daemon is allowed to run (the CLI's demo jobs)
   * registers, does it, then starts. On PostgreSQL it also sends the exchange a `getBalances`
   * probe, not waited for: an exchange that does not answer it yet (one the caller starts after
   * registering) counts towards handing the jobs over (see #publishReach), so such an adapter
   * should hold the call until it can answer, as the CLI's demo exchange does.
   */
  async register(): Promise<void> {
    this.#refuseIfStopped('register');
    if (this.#registeredMs !== undefined) return;
    // Once, however many calls are made at once (start() and register() together): a second
    // registration would start a second renewer that stop() never clears.
    this.#registering ??= this.#entered(async () => {
      const t0 = performance.now();
      // Whether the exchange answers at all, asked beside the registration and not waited for
      // where several daemons may run (PostgreSQL): a daemon whose exchange refuses it (a wrong
      // URL) knows by its recovery's lease sync, and takes no job from daemons that can trade
      // them (see #publishReach). Alone on a SQLite file it would hand nothing to anyone.
      if (this.#store.capabilities.concurrentWriters) this.#answers().catch(() => {});
      await this.#leases.register();
      this.#registeredMs = performance.now() - t0;
      // Heartbeats and renewals from now on: a recovery slowed by the exchange (a hung exchange,
      // timeouts) must not let the leases lapse, nor make this daemon look dead to another.
      this.#startRenewer();
    }).finally(() => {
      this.#registering = undefined;
    });
    await this.#registering;
  }

  /**
   * A daemon that was stopped never registers: started, it would heartbeat without ever ticking,
   * and on SQLite keep every other daemon off the file (DAEMON_RUNNING) while its process lives.
   */
  #refuseIfStopped(action: 'start' | 'register'): void {
    if (this.#stopped) throw startedOnce(`this daemon was stopped: it cannot ${action}`);
  }

  #startRenewer(): void {
    const every = Math.max(50, Math.floor(this.#leaseTtlMs / 3));
    let last = { mono: performance.now(), boot: bootMs() };
    let saidAt = Number.NEGATIVE_INFINITY;
    this.#renewer = setInterval(() => {
      // Half a lease TTL or more since this timer last ran (it runs every third of it; half a
      // TTL, and at least half an interval late): the process did not run meanwhile (a paused VM
      // or process, a long GC pause, a swap storm), and a lease is renewed only once less than
      // half its TTL is left. Its leases may have run out and its jobs moved to other daemons,
      // which the next sync shows as jobs let go: said, or that would be a riddle. The monotonic
      // clock may not count a suspended machine's sleep: the boot clock (Linux) does, and neither
      // steps as the wall clock may (NTP). At most once a minute (an event loop that lags under
      // a tiny TTL), but for a whole TTL.
      const now = { mono: performance.now(), boot: bootMs() };
      const since = Math.max(now.mono - last.mono, now.boot !== undefined && last.boot !== undefined ? now.boot - last.boot : 0);
      last = now;
      if (since >= Math.max(this.#leaseTtlMs / 2, every * 1.5) && (since >= this.#leaseTtlMs || now.mono - saidAt >= 60_000)) {
        saidAt = now.mono;
        this.#log(
          `${stamp()}  this daemon did not run for a while (the process or its machine was paused or starved): its lease renewer, due every ${duration(every)}, ` +
            `last ran ${duration(since)} ago, half its lease TTL of ${duration(this.#leaseTtlMs)} or more, so its leases may have run out and other daemons taken its jobs over; ` +
            'what it was writing then is refused (fencing)',
        );
      }
      this.#probeIfQuiet();
      if (this.#renewing !== undefined) return; // the last one is still running
      const baseline = this.#renewBaseline;
      this.#renewing = this.#leases
        .renew(baseline === undefined ? {} : { check: baseline })
        .then((kept) => {
          if (kept !== undefined) this.#sayRenewedAgain(kept);
          this.#renewFailing = undefined;
          this.#renewBaseline = undefined;
        })
        .catch((e) => {
          if (this.#store.closed) return void this.#storeClosed();
          // Said once, and again when the reason changes, not every third of the TTL of an outage.
          const message = coerceError(e).message;
          if (message !== this.#renewFailing) this.#log(`${stamp()}  could not renew the leases: ${message}`);
          // The leases as they were when renewals began to fail: what is said of them as they succeed again.
          this.#renewBaseline ??= this.#leases.known;
          this.#renewFailing = message;
        })
        .finally(() => {
          this.#renewing = undefined;
        });
    }, every);
    this.#renewer.unref();
  }

  /**
   * Where several daemons share the jobs, one whose exchange answered no call for a third of a
   * lease TTL (a spare daemon, with no job, makes none; nor does one whose tick is longer) probes
   * it, one probe at a time, between ticks: it would otherwise count as reaching its exchange
   * through an outage every daemon sees, and be handed the others' jobs. What a probe finds is
   * published with the next heartbeat (see Leases.renew), long before the two TTLs after which a
   * daemon hands its jobs over; in an outage, its end too, when the ticks (which probe) are far apart.
   */
  #probeIfQuiet(): void {
    if (this.#stopping || !this.#store.capabilities.concurrentWriters || this.#probesInFlight > 0) return;
    const quiet = this.#leaseTtlMs / QUIET_PROBES_PER_TTL;
    if (performance.now() - this.#answeredAt < quiet || performance.now() - this.#probeSentAt < quiet) return;
    this.#probe = undefined; // a probe of a tick long ago is not this one
    this.#answers().then(
      () => this.#publishReach(),
      () => {},
    );
  }

  async #recover(t0: number): Promise<RecoveryReport> {
    // Only the fences of the jobs with an open intent are needed now; the first tick reads the
    // rest. The intents are read once the claims have committed: another daemon that held one of
    // these jobs is fenced out by then, so none of them can be settled behind this one's back.
    this.#publishReach();
    const { fences: held, held: heldCount } = await this.#leases.syncForRecovery();
    this.#sayHandOver(heldCount > 0);
    const pending = (await this.#store.ledger.pending()).filter((t) => held.has(t.jobId));
    // Only the jobs with an open intent are needed now; the rest resume at the first tick.
    const jobs = await this.#loadJobs([...new Set(pending.map((t) => t.jobId))]);
    const counts = { executed: 0, failed: 0, open: 0, resent: 0, unknown: 0, left: 0 };
    const known = await this.#lookup(pending);
    await forEach(pending, this.#concurrency, async (trade) => {
      const job = jobs.get(trade.jobId);
      if (!job) {
        counts.unknown++; // its job's row cannot be read (logged): the intent stays open
        return;
      }
      const runner = this.#runner(job, held.get(job.id)!);
      try {
        const { outcome, resent } = await this.#reconcile(job, trade, runner, 'recovery', known);
        counts[outcome === 'unknown' ? 'unknown' : outcome]++;
        if (resent) counts.resent++;
      } catch (e) {
        const error = coerceError(e);
        // A stop came: the intent was not looked up (or not sent again), and waits for the next start.
        if (e instanceof StopAsked) {
          counts.left++;
          this.#leftForStop(job, e);
        } else if (STOPS_THE_JOB.has(error)) {
          // The ledger and the exchange disagree about the order: the job stops now, as in a tick.
          // Its trade was settled otherwise (no tick would look at it again), or, for a fill another
          // trade already records, is left PENDING for an operator (unresolved).
          counts[LEAVES_IT_PENDING.has(error) ? 'unknown' : 'failed']++;
          await this.#failed(job, runner, error);
        } else {
          counts.unknown++;
          if (mayHaveCommitted(error)) forget(runner);
          this.#log(`${stamp()}  ${job.tokenSymbol}  ${trade.clientOrderId}: not reconciled yet (${messageOf(e)}); retrying every tick`);
        }
      }
    });
    const report: RecoveryReport = {
      instanceId: this.instanceId,
      jobs: heldCount,
      pending: pending.length,
      executed: counts.executed,
      failed: counts.failed,
      resent: counts.resent,
      open: counts.open,
      unresolved: counts.unknown,
      left: counts.left,
      ms: Math.round((performance.now() - t0) * 10) / 10,
    };
    this.#recoveredJobs = report.jobs;
    await this.#auditRecovery(report);
    this.#log(
      `recovered in ${report.ms} ms: ${report.jobs} job${report.jobs === 1 ? '' : 's'}, ${report.pending} pending intent${report.pending === 1 ? '' : 's'} ` +
        `(${report.executed} executed, ${report.failed} failed, ${report.resent} re-sent, ${report.open} open, ${report.unresolved} unresolved)` +
        (report.left > 0 ? `; stopped during recovery: ${report.left} left PENDING for the next start` : ''),
    );
    await this.#sayOtherExchanges();
    this.#schedule(0);
    return report;
  }

  /**
   * Says, once at start, which running daemons of this database trade on an exchange named
   * otherwise than this one's: none sends again an intent another recorded (checkBeforeResend),
   * so a job taken over from one of them stops in ERROR at its first open intent. Two names of one
   * exchange account (127.0.0.1 and localhost) are the usual cause. Only said: a reading that fails
   * is not worth failing the start for.
   */
  async #sayOtherExchanges(): Promise<void> {
    const mine = this.#exchange.id;
    if (mine === undefined || !this.#store.capabilities.concurrentWriters) return;
    try {
      const others = (await this.#store.daemonInstances()).filter((d) => d.instance !== this.instanceId && d.running && d.exchange !== null && d.exchange !== mine);
      for (const d of others) {
        this.#log(
          `warning: daemon ${d.instance} (pid ${d.pid} on ${d.host}) trades on exchange ${shown(d.exchange!, 200)}, this one on ${shown(mine, 200)}: ` +
            `an intent one recorded that the exchange does not have is never sent by the other (its job stops in ERROR); ` +
            `if they are one account, give every daemon the same exchange id (--exchange-id)`,
        );
      }
    } catch {
      // Said nothing: the ticks find the database's trouble, if it lasts.
    }
  }

  /**
   * Finishes the steps in flight (recording them), hands the leases back, and stops. From the
   * moment it is called no exchange call starts: a step waits only for the call it has under way
   * (at most `exchangeTimeoutMs`) and decides no order from a price that comes after it. One whose
   * intent was committing when stop() came still sends that order (one call), so that no decided
   * order is left unsent; an order to be sent again (the exchange did not have it) stays PENDING,
   * for the next start's recovery to send under its clientOrderId. Called before {@link start} (or {@link register}), it only marks the
   * daemon stopped: nothing is written, and a later start() or register() is refused. Called while
   * one of them runs, it waits for it to end (recovery looks no more intents up: see
   * RecoveryReport.left), then stops the daemon as it stops a running one. On a store closed under the daemon
   * it writes nothing either: the leases lapse after their TTL, as after a crash. Called again,
   * it returns the first call's promise: one stop, however many callers.
   */
  stop(): Promise<void> {
    this.#stopCall ??= this.#stop();
    return this.#stopCall;
  }

  async #stop(): Promise<void> {
    this.#stopped = true;
    this.#stopping = true;
    this.#stopAsked.abort();
    // A start() or register() under way ends first (it registered, and may be reconciling):
    // then everything it set going is stopped below, and its leases handed back.
    while (this.#entering.size > 0) await Promise.allSettled([...this.#entering]);
    clearTimeout(this.#timer);
    clearInterval(this.#renewer);
    await this.#renewing;
    await this.#ticking;
    // The steps in flight finish and are recorded; those still waiting for a slot do not start.
    await Promise.all(this.#inFlight.values());
    if (this.#registeredMs === undefined) return; // it never registered: nothing is held
    if (this.#store.closed) {
      // Nothing can be written: the leases lapse after their TTL, as after a crash.
      this.#leases.forget();
      return;
    }
    // The strategy state observed since the last order or flush (new highs, the price window), in
    // one transaction: each job's write is its own savepoint, so a lost lease skips only that job.
    // Marked written only once committed: the transaction may run its body again (a retry).
    await this.#store
      .transaction(async () => {
        const written: Runner[] = [];
        for (const [id, runner] of this.#runners) if (await this.#flushBeforeLeaving(id, runner, `job ${id}`)) written.push(runner);
        return written;
      })
      .then((written) => written.forEach((runner) => this.#flushed(runner, Date.now())))
      .catch((e) => this.#log(`could not save the strategy state: ${coerceError(e).message}`));
    // Handed back, so that other daemons take the jobs over at once (and settle and record are
    // allowed again), tried a few times: a connection the server ended is replaced meanwhile.
    for (let attempt = 1; ; attempt++) {
      try {
        // What the next start reconciles, for the one who stops it to hear.
        ({ pending: this.#leftPending, inError: this.#leftInError } = await this.#leases.release());
        return;
      } catch (e) {
        const error = coerceError(e);
        if (attempt < 3 && TRANSIENT.has(error.code)) {
          await sleep(200 * attempt);
          continue;
        }
        this.#leasesKept = true;
        this.#log(`could not hand the leases back (${error.message}): they expire within ${this.#leaseTtlMs / 1000} s, and other daemons then take the jobs over`);
        return;
      }
    }
  }

  /**
   * Set once stop() could not hand this daemon's leases back (the database failed it): its jobs
   * are held, by nobody, until the leases expire (within the lease TTL). Not set when the store
   * was closed under the daemon (see `failed`), where nothing is written at all.
   */
  get leasesKept(): boolean {
    return this.#leasesKept;
  }

  /**
   * After stop(): the intents of the jobs it held that it left PENDING (an order whose outcome the
   * exchange did not answer, one a stop kept from being sent again): the next start (this
   * daemon's or another's) reconciles them at the exchange. Counted as the leases are handed
   * back: undefined before stop(), and when they were not (see leasesKept).
   */
  get leftPending(): number | undefined {
    return this.#leftPending;
  }

  /**
   * After stop(): how many of {@link leftPending} are of jobs in ERROR, whose reason may ask an
   * operator to settle them (an order at the exchange under the intent's clientOrderId that is not
   * this intent); the next start looks them up again all the same. Undefined as leftPending is.
   */
  get leftInError(): number | undefined {
    return this.#leftInError;
  }

  /**
   * One tick: heartbeat and leases, then a step of every job this daemon holds, `concurrency` at
   * a time. Resolves once every step has started; the steps go on without holding up the next
   * tick, so a slow exchange call (up to `exchangeTimeoutMs`) delays only its own job. A job whose
   * step from an earlier tick is still in flight sits this tick out: what the tick read of it may
   * not show that step's writes yet.
   */
  async tick(): Promise<void> {
    this.#ticks++;
    this.#probe = undefined;
    this.#noPrices = false;
    const at = Date.now();
    if (this.#skipped.last) this.#skipped.ms += at - this.#skipped.lastAt;
    this.#skipped.lastAt = at;
    this.#skipped.last = false;
    // Taken before anything is read: a job busy now may write after the reads below.
    const busy = new Set(this.#inFlight.keys());
    // In an outage, whether the exchange answers at all, asked once a tick: what the next sync
    // publishes (see #publishReach). Lookups that fail for one order while the exchange answers
    // this are that order's trouble, not a reason to hand the jobs over.
    // Waited for (as long as the exchange timeout, in an outage only): a sync that published what
    // the last tick found would hand the jobs over just as the exchange answers again.
    const outage = this.#outage !== undefined || this.#unreachableSince !== undefined;
    const answering = outage && (await this.#answers().catch(() => false));
    if (outage && this.#stopping) return; // the stop hands the leases back: no claim just before it
    // Nothing can be counted in a tick whose probe finds the exchange down: left out of how long a
    // job's failures have lasted, as is a tick the outage skips below (its steps, still waiting
    // for a call the outage hangs, end in a later tick).
    if (outage && !answering) this.#skipped.last = true;
    this.#publishReach();
    const read = await this.#saidIfSlow(this.#read(busy));
    if (read === undefined) {
      // With no job left to ask about, only the probe can tell that the outage is over.
      if (answering && this.#outage !== undefined) this.#exchangeAnswered(this.#outage.kind);
      return;
    }
    const { held, jobs, pending } = read;
    // An outage found by lookups, with no intent left to look up (settled beside the daemon, its job
    // let go): nothing would ever say it over, nor say the next one. The next answer of any kind ends it.
    if (this.#outage?.kind === 'orders' && pending.size === 0) this.#outage = { ...this.#outage, kind: 'prices' };
    const prices = await this.#prices(jobs.filter((j) => ACTIVE.has(j.status) && !pending.has(j.id) && !liquidated(j)));
    if (prices === 'outage') return void (this.#skipped.last = true);
    // Jobs of a market whose price hung last go last: the other markets' prices are asked first,
    // so that a hung market cannot pass for an outage by taking every slot first.
    const ordered = this.#slowPrices.size === 0 ? jobs : [...jobs.filter((j) => !this.#slowPrices.has(market(j))), ...jobs.filter((j) => this.#slowPrices.has(market(j)))];
    for (const job of ordered) {
      if (this.#stopping) return;
      if (this.#inFlight.has(job.id)) continue;
      const step = this.#slots
        .run(() => (this.#stopping ? Promise.resolve() : this.#step(job, pending.get(job.id), held.get(job.id)!, prices.get(market(job)))))
        // A step handles its own failures; this is for a bug, which must not go unhandled.
        .catch((e) => this.#log(`${stamp()}  ${job.tokenSymbol}  step failed: ${messageOf(e)}`))
        .finally(() => this.#inFlight.delete(job.id));
      this.#inFlight.set(job.id, step);
    }
  }

  /** A tick's reads: the leases (synced), the jobs held and their open intents; undefined when none is held. */
  async #read(busy: ReadonlySet<string>): Promise<{ held: Map<string, Fence>; jobs: Job[]; pending: Map<string, Trade> } | undefined> {
    const held = await this.#leases.sync(busy, (ids) => this.#saveLeaving(ids, busy));
    this.#sayHandOver((this.#held?.size ?? 0) > 0 || held.size > 0);
    this.#sayLeaseChanges(held);
    this.#sayUnrun(this.#leases.unrun);
    for (const [id, runner] of this.#runners) {
      if (held.has(id)) continue;
      // A job no longer held whose step is still running keeps its runner until that step ends.
      const step = this.#inFlight.get(id);
      if (step === undefined) this.#runners.delete(id);
      else void step.then(() => this.#runners.get(id) === runner && this.#runners.delete(id));
    }
    if (held.size === 0) return undefined;
    // The open intents before the jobs, in two reads: an intent settled by someone else between
    // them is then seen open with the job row as the fill left it, and its step finds it settled
    // ("settled meanwhile"). The other way round, the step saw the row from before the fill and
    // no intent open, and could decide the same buy again.
    const pending = new Map<string, Trade>();
    for (const t of await this.#store.ledger.pending()) if (held.has(t.jobId) && !pending.has(t.jobId)) pending.set(t.jobId, t);
    const jobs = [...(await this.#loadJobs()).values()].filter((j) => !busy.has(j.id));
    return { held, jobs, pending };
  }

  /**
   * A tick's reads, said while they wait: a lock another session holds on the jobs (a
   * migration, a long transaction) holds every tick up, and the daemon used to say nothing for as
   * long as it lasted. Once past SLOW_DATABASE_MS, one line, and one more when it answers.
   */
  async #saidIfSlow<T>(waiting: Promise<T>): Promise<T> {
    const t0 = Date.now();
    // Said once for the whole wait, however many ticks it spans (each may give up and fail).
    const timer = setTimeout(() => {
      if (this.#databaseWaitSince !== undefined) return;
      this.#databaseWaitSince = t0;
      this.#log(`${stamp()}  waiting for the database for ${SLOW_DATABASE_MS / 1000} s (a lock another session holds, or a server that does not answer; PostgreSQL: see pg_stat_activity)`);
    }, SLOW_DATABASE_MS);
    try {
      const value = await waiting;
      const since = this.#databaseWaitSince;
      this.#databaseWaitSince = undefined;
      if (since !== undefined) this.#log(`${stamp()}  the database answered after ${((Date.now() - since) / 1000).toFixed(1)} s`);
      return value;
    } finally {
      clearTimeout(timer); // a failure is the tick's to say
    }
  }

  /**
   * What the next lease sync publishes of this daemon's exchange (see Leases.exchangeUnreachable):
   * since when it answers no call, and whether to hand the jobs over. A daemon that cannot reach
   * its exchange (a wrong URL, a network only it is cut off from) would otherwise hold its share
   * of the jobs, none of them trading, while other daemons could run them. It hands them over
   * once unreachable for HAND_OVER_AFTER_TTLS lease TTLs, not on a blip; or, never having reached
   * it since it started (a wrong URL: it holds at most the jobs of a dead daemon it took over),
   * after half a TTL, so that a daemon restarted during a refusal of a second does not send its
   * jobs away. Either way after two probes in a row without an answer.
   */
  #publishReach(): void {
    const since = this.#unreachableSince;
    this.#leases.exchangeUnreachable =
      since === undefined
        ? undefined
        : {
            since: new Date(since).toISOString(),
            handOver: Date.now() - since >= (this.#everAnswered() ? HAND_OVER_AFTER_TTLS * this.#leaseTtlMs : this.#leaseTtlMs / 2) && this.#probesUnanswered >= 2,
          };
  }

  /** Whether any call to the exchange has answered since this daemon started. */
  #everAnswered(): boolean {
    return this.#answeredAt > Number.NEGATIVE_INFINITY;
  }

  /** An exchange call answered: the exchange is reachable. */
  #reached(): void {
    this.#answeredAt = performance.now();
    this.#unreachableSince = undefined;
    this.#probesUnanswered = 0;
    this.#probeFailedAt = 0;
  }

  /**
   * Said as the leases are renewed again after renewals failed (the database unreachable): with
   * how many of the jobs it held as they began to fail this daemon still holds, when some ran out
   * meanwhile and were taken over (its next tick lets them go: "now running …"; a job it let go
   * itself meanwhile, paused, is no loss).
   */
  #sayRenewedAgain({ had, lost }: LeasesKept): void {
    if (lost === 0) return void this.#log(`${stamp()}  renewed the leases again`);
    this.#log(
      `${stamp()}  renewed the leases again, of ${had - lost} of the ${had} jobs it ran: ${lost === 1 ? 'the other lease' : `the other ${lost} leases`} ran out while it could not renew them, ` +
        'and another daemon (or an operator\'s command) took the job' + (lost === 1 ? '' : 's') + ' over; what it was writing of them is refused (fencing)',
    );
  }

  /**
   * Says when this daemon starts handing its jobs over (see #publishReach), and when it takes
   * jobs again. It hands them over only to a daemon that reaches its exchange (see
   * Leases.exchangeUnreachable): alone, or with every other daemon cut off too, it keeps them.
   * `hadJobs`: whether it held any before this sync (a spare daemon has none to hand over).
   */
  #sayHandOver(hadJobs: boolean): void {
    const now = this.#leases.handingOver;
    if (now === this.#saidHandingOver) return;
    this.#saidHandingOver = now;
    if (now) {
      // What this sync published: a probe may have answered since.
      const since = Date.parse(this.#leases.exchangeUnreachable?.since ?? new Date().toISOString());
      const unavailable = this.#everAnswered() ? `exchange unavailable for ${Math.round((Date.now() - since) / 1000)} s` : 'exchange unavailable since this daemon started';
      this.#log(
        hadJobs
          ? `${stamp()}  ${unavailable} (${this.#probeFailure}): handing this daemon's jobs over to the daemons that reach theirs (it takes none until its exchange answers)`
          : `${stamp()}  ${unavailable} (${this.#probeFailure}): taking no job until it answers (the daemons that reach theirs run them)`,
      );
    } else if (this.#unreachableSince === undefined) {
      this.#log(`${stamp()}  taking jobs again: the exchange answers`);
    } else {
      this.#log(`${stamp()}  taking jobs again though its exchange is still unavailable: no other daemon is left to run them`);
    }
  }

  /**
   * Active jobs that no daemon may run, every live daemon being at its `--max-jobs`: said when
   * their number changes, and once when there are none again. Otherwise a job started while the
   * daemons are full would wait without a word.
   */
  #sayUnrun(unrun: number): void {
    if (unrun === this.#unrun) return void (this.#unrunSince = undefined);
    // Jobs without a daemon are said once they have been so for UNRUN_SAID_AFTER_MS (or a lease
    // TTL, if shorter): daemons started together see each other only once each has registered,
    // and one with a --max-jobs said, half a second before the other's first sync, that jobs had
    // no daemon, then that they all had one again.
    const now = performance.now();
    this.#unrunSince ??= now;
    if (now - this.#unrunSince < Math.min(UNRUN_SAID_AFTER_MS, this.#leaseTtlMs)) return;
    this.#unrunSince = undefined;
    const before = this.#unrun;
    this.#unrun = unrun;
    if (unrun === 0) {
      this.#log(`${stamp()}  every active job has a daemon again`);
      return;
    }
    const jobs = `${unrun} active job${unrun === 1 ? '' : 's'}`;
    this.#log(
      `${stamp()}  ${jobs} ${unrun === 1 ? 'has' : 'have'} no daemon to run ${unrun === 1 ? 'it' : 'them'}: every daemon on this database is at its --max-jobs` +
        `${this.#leases.handingOver ? ' (this one hands its jobs over: its exchange is unavailable)' : this.#maxJobs === undefined ? '' : ` (this one's: ${this.#maxJobs})`}; raise it, start another daemon (PostgreSQL), or pause jobs` +
        (before > 0 ? ` (${before} before)` : ''),
    );
  }

  /**
   * Says, in one line, when the jobs this daemon runs change between ticks: jobs taken (started
   * from the CLI, or taken over from a daemon that died or left) and jobs let go (paused or
   * finished, handed back to balance the daemons, or lost to another daemon). The first tick's
   * are compared with what recovery said it held.
   */
  #sayLeaseChanges(held: ReadonlyMap<string, Fence>): void {
    const before = this.#held;
    this.#held = new Set(held.keys());
    if (before === undefined) {
      // Recovery said how many jobs it held; the first tick's sync may take more (another daemon's
      // share handed back, new jobs) or fewer: said, or the log would say it runs jobs it does not.
      const recovered = this.#recoveredJobs ?? 0;
      const n = this.#held.size;
      if (n !== recovered) {
        const change = n > recovered ? `${n - recovered} taken` : `${recovered - n} let go`;
        this.#log(`${stamp()}  now running ${n} job${n === 1 ? '' : 's'} (${change})`);
      }
      return;
    }
    let taken = 0;
    for (const id of this.#held) if (!before.has(id)) taken++;
    const gone = before.size - (this.#held.size - taken);
    if (taken === 0 && gone === 0) return;
    const change = [taken > 0 ? `${taken} taken` : '', gone > 0 ? `${gone} let go` : ''].filter(Boolean).join(', ');
    this.#log(`${stamp()}  now running ${this.#held.size} job${this.#held.size === 1 ? '' : 's'} (${change})`);
  }

  /**
   * Every job's price in one round trip when the exchange can (getPrices); otherwise each step
   * asks for its own (getPrice). A batch that fails while the exchange answers otherwise (one
   * market that hangs makes the whole request time out) is said once, and each job is priced alone
   * for BATCH_RETRY_MS, each call bounded by the timeout: a hung market holds up its own jobs only,
   * not every tick. The batch is tried again after that (and at every tick of an outage).
   */
  async #prices(jobs: readonly Job[]): Promise<ReadonlyMap<string, string> | 'outage'> {
    if (!this.#exchange.getPrices || jobs.length === 0) return new Map();
    if (this.#batchFailing !== undefined && this.#outage?.kind !== 'prices' && Date.now() < this.#batchFailing.retryAt) return new Map();
    try {
      // One request per chain (almost always one), at once. A chain whose request fails while
      // another's answers is left out of the batch for BATCH_RETRY_MS, said once: its jobs ask
      // getPrice alone (and fail their own steps), and its requests hold up no other chain's jobs.
      const now = Date.now();
      // A chain none of whose jobs asked for a whole retry period (paused, let go) starts afresh.
      for (const [chain, { retryAt }] of this.#chainsFailing) if (now > retryAt + BATCH_RETRY_MS) this.#chainsFailing.delete(chain);
      const tokens = new Map<string, Set<string>>();
      for (const job of jobs) {
        if ((this.#chainsFailing.get(job.chain)?.retryAt ?? 0) > now && this.#outage?.kind !== 'prices') continue;
        tokens.set(job.chain, (tokens.get(job.chain) ?? new Set()).add(job.tokenAddress));
      }
      if (tokens.size === 0) return new Map();
      const chains = [...tokens.keys()];
      const settled = await Promise.allSettled(chains.map((chain) => this.#exchange.getPrices!([...tokens.get(chain)!], chain)));
      const answers: Array<{ chain: string; answer: ReadonlyMap<string, string> }> = [];
      const failed: Array<{ chain: string; reason: unknown }> = [];
      settled.forEach((r, i) => (r.status === 'fulfilled' ? answers.push({ chain: chains[i]!, answer: r.value }) : failed.push({ chain: chains[i]!, reason: r.reason })));
      if (answers.length === 0) {
        // What the outage check below reads: a stop, then an exchange that gave no answer, before a refusal.
        const reasons = failed.map((f) => f.reason);
        throw reasons.find((r) => r instanceof StopAsked) ?? reasons.find((r) => r instanceof ExchangeUnavailableError) ?? reasons[0];
      }
      for (const { chain, reason } of failed) {
        if (reason instanceof StopAsked) continue;
        const before = this.#chainsFailing.get(chain);
        const said = before?.said || this.#sayBatchFailing(chain, before !== undefined);
        if (said && !before?.said) {
          this.#log(`${stamp()}  the batch price request for chain ${chain} failed (${messageOf(reason)}) while the other chains' answer: pricing its jobs alone, trying its batch again every ${BATCH_RETRY_MS / 1000} s`);
        }
        this.#chainsFailing.set(chain, { retryAt: Date.now() + BATCH_RETRY_MS, said });
      }
      for (const { chain } of answers) {
        if (this.#chainsFailing.get(chain)?.said) this.#log(`${stamp()}  the batch price request for chain ${chain} answers again`);
        this.#chainsFailing.delete(chain);
      }
      // Not the contract's Map (an adapter's plain object): each step asks getPrice instead.
      if (answers.some(({ answer }) => !(answer instanceof Map))) return new Map();
      const prices = new Map<string, string>();
      for (const { chain, answer } of answers) for (const [token, price] of answer) prices.set(marketKey(chain, token), price);
      this.#exchangeAnswered('prices');
      if (this.#batchFailing?.said) this.#log(`${stamp()}  the batch price request answers again: pricing the jobs in one request`);
      this.#batchFailing = undefined;
      this.#slowPrices.clear();
      return prices;
    } catch (e) {
      // The whole exchange is unreachable (getBalances gets no answer either): skip the tick
      // rather than count a failure against every job (which would put them all in ERROR during
      // an outage). Open intents are reconciled once it answers again.
      if (e instanceof ExchangeUnavailableError && !(await this.#answers().catch(() => true))) {
        this.#exchangeUnavailable(e, 'prices', jobs.length === 1 ? `the price of ${jobs[0]!.tokenSymbol} for job ${jobs[0]!.id}` : `the prices of ${jobs.length} jobs at once`);
        return 'outage';
      }
      if (this.#stopping) return new Map(); // the tick starts no step
      const before = this.#batchFailing;
      const said = before?.said || this.#sayBatchFailing('', before !== undefined);
      if (said && !before?.said) {
        this.#log(`${stamp()}  the batch price request failed (${messageOf(e)}) while the exchange answers: pricing each job alone, trying the batch again every ${BATCH_RETRY_MS / 1000} s`);
      }
      this.#batchFailing = { retryAt: Date.now() + BATCH_RETRY_MS, priced: before?.priced ?? false, said };
      return new Map();
    }
  }

  /**
   * Whether a batch's failure is said now (chain '' for the whole batch): one that starts within
   * BATCH_SAID_EVERY_MS of the last one said is not, unless it fails again as it is tried again
   * (`again`): that is no request lost now and then.
   */
  #sayBatchFailing(chain: string, again: boolean): boolean {
    const now = Date.now();
    const last = this.#batchSaidAt.get(chain);
    if (!again && last !== undefined && now - last < BATCH_SAID_EVERY_MS) return false;
    this.#batchSaidAt.set(chain, now);
    return true;
  }

  /**
   * A running job whose due order a limit holds back (a trade count, a day's volume, a position
   * cap reached) trades nothing, which looks like a job stuck: said once as it starts, and again
   * when another limit holds it, but no limit again within HELD_BACK_SAID_EVERY_MS of the last time
   * it was said (a price that wobbles about a position cap, the cap and minTradeUsd by turns, says
   * each once; the one that then stays is said again once that time is up, so the last line names
   * it). An order decided starts afresh. The trade count is checked before the strategy looks for a
   * signal: it is said only when an order would be due without it (the strategy asked again from
   * the scratch this tick's decision started from, `before`, its answer thrown away).
   */
  #sayHeldBack(job: Job, runner: Runner, d: Decision, before: Scratch, price: string, now: number): void {
    if (d.order) return void (runner.heldBack = undefined);
    let why = heldBack(job, d.skipped, price);
    if (why !== undefined && d.skipped === 'max-trades-per-hour') {
      const free: Scratch = { ...before, tradeTimes: [], tradeMinutes: [] };
      if (decide({ job, scratch: free, price, now }).order === null) why = undefined;
    }
    const reason = d.skipped;
    if (why === undefined || reason === undefined || reason === runner.heldBack) return;
    const said = (runner.heldBackSaid ??= new Map());
    const at = said.get(reason);
    if (at !== undefined && now - at < HELD_BACK_SAID_EVERY_MS) return;
    this.#log(`${stamp()}  ${job.tokenSymbol}  holds back an order that is due: ${why}`);
    said.set(reason, now);
    runner.heldBack = reason;
  }

  /**
   * The exchange cannot be reached, by `kind` of call: prices, or an open intent's lookup, naming
   * what was `asked` for. The daemon waits for it from the first tick that finds it so, but says
   * so only once a later tick finds it so too, with the cause of then: an exchange that drops a
   * few requests in a hundred fails a tick's price and probe together now and then, and answers
   * the next tick (that was said as the exchange down and back again, several times a minute). A
   * cause that changes while it lasts (refused connections, then timeouts) is said again: the first
   * change at once, later ones (a cause that flaps) at most once every OUTAGE_CAUSE_SAID_EVERY_MS.
   * Only the kind of call that found the outage says when it is over: with prices answering and
   * lookups failing (a partial outage), the two would otherwise take turns every tick.
   */
  #exchangeUnavailable(e: ExchangeUnavailableError, kind: 'prices' | 'orders', asked: string): void {
    const outage = (this.#outage ??= { since: Date.now(), kind, tick: this.#ticks });
    if (outage.tick === this.#ticks) return;
    const now = Date.now();
    const said = outage.said;
    const cause = causeOf(e.message);
    if (said === undefined) {
      this.#log(`${stamp()}  exchange unavailable (asked for ${asked}: ${e.message}); waiting for it`);
    } else if (cause !== said.cause && (said.changes === 0 || now - said.at >= OUTAGE_CAUSE_SAID_EVERY_MS)) {
      this.#log(`${stamp()}  exchange still unavailable after ${Math.round((now - outage.since) / 1000)} s, now: ${e.message} (asked for ${asked})`);
    } else return;
    outage.said = { cause, at: now, changes: said === undefined ? 0 : said.changes + 1 };
  }

  /**
   * An open intent's lookup got no answer. Every job with an open intent asks this, not for a
   * price: an order's lookups that fail one after another, with no call of any kind answered in
   * between, are then the only sign of an outage, said once (above). A lookup that fails while the exchange answers
   * other calls is that order's trouble: once (a request lost now and then) it is not said at all,
   * and asked again at the next tick; failing again (an order archived, a shard of the exchange
   * down) it is said of the order, with the attempts so far, and again every STUCK_SAID_AGAIN_MS,
   * not as the exchange going down and coming back by turns. It stays PENDING meanwhile.
   */
  #lookupFailed(job: Job, trade: Trade, runner: Runner, e: ExchangeUnavailableError): void {
    const last = runner.lookupFailing?.clientOrderId === trade.clientOrderId ? runner.lookupFailing : undefined;
    const failing = { clientOrderId: trade.clientOrderId, attempts: (last?.attempts ?? 0) + 1, answers: this.#answersSeen, saidAt: last?.saidAt };
    runner.lookupFailing = failing;
    // Nothing answered since this order's last lookup failed: an outage (every order alike, tick after tick).
    const quiet = last !== undefined && last.answers === this.#answersSeen;
    if (quiet && failing.saidAt === undefined) return this.#exchangeUnavailable(e, 'orders', `${job.tokenSymbol}'s order ${trade.clientOrderId}`);
    if (failing.attempts < 2) return;
    const now = Date.now();
    if (failing.saidAt !== undefined && now - failing.saidAt < STUCK_SAID_AGAIN_MS) return;
    failing.saidAt = now;
    this.#log(
      `${stamp()}  ${job.tokenSymbol}  order ${trade.clientOrderId}: its lookup failed ${failing.attempts} times in a row (${e.message}) while the exchange ` +
        `answers other calls; it stays PENDING, asked about every tick (said again every ${STUCK_SAID_AGAIN_MS / 60_000} min while it fails)`,
    );
  }

  /**
   * Whether the exchange answers a call about no market (getBalances), asked once per tick: when a
   * price asked alone got no answer, this tells an exchange that is down from one market that is.
   * Asked as the daemon registers too, and every tick of an outage: what it finds is what the
   * lease syncs publish (see #publishReach).
   */
  #answers(): Promise<boolean> {
    if (this.#probe !== undefined) return this.#probe;
    const sent = Date.now();
    this.#probesInFlight++;
    this.#probeSentAt = performance.now();
    this.#probe = this.#exchange.getBalances().finally(() => this.#probesInFlight--).then(
      () => (this.#reached(), true),
      (e: unknown) => {
        if (e instanceof StopAsked) throw e; // not asked: the step ends, and nothing is counted
        if (!(e instanceof ExchangeUnavailableError)) return this.#reached(), true;
        this.#unreachableSince ??= Date.now();
        if (sent >= this.#probeFailedAt) {
          this.#probesUnanswered++;
          this.#probeFailedAt = Date.now();
        }
        this.#probeFailure = e.message;
        this.#publishReach(); // for a registration under way too
        return false;
      },
    );
    return this.#probe;
  }

  /** Says once that the exchange answers again (a call of the kind that found it unavailable). */
  #exchangeAnswered(kind: 'prices' | 'orders'): void {
    if (kind === 'prices' && this.#batchFailing !== undefined) this.#batchFailing.priced = true;
    this.#answersSeen++;
    this.#reached();
    if (this.#outage?.kind !== kind) return;
    // Not said if the outage was not (it lasted one tick).
    if (this.#outage.said !== undefined) this.#log(`${stamp()}  exchange reachable again after ${Math.round((Date.now() - this.#outage.since) / 1000)} s`);
    this.#outage = undefined;
  }

  /** What the exchange has of these intents, in one round trip when it can (getOrders). */
  async #lookup(trades: readonly Trade[]): Promise<ReadonlyMap<string, ExchangeOrder> | undefined> {
    if (!this.#exchange.getOrders || trades.length === 0) return undefined;
    try {
      const ids = trades.map((t) => t.clientOrderId);
      const found = await this.#exchange.getOrders(ids);
      this.#exchangeAnswered('orders');
      if (!(found instanceof Map)) return undefined; // each intent is looked up alone
      // Keyed otherwise than by the ids asked for (the exchange's own, ids an adapter did not map
      // back): every intent would read as never received, and be sent again. Looked up alone.
      const asked = new Set(ids);
      for (const key of found.keys()) {
        if (typeof key === 'string' && asked.has(key)) continue;
        this.#log(`${stamp()}  the exchange's getOrders answered with ${typeof key === 'string' ? JSON.stringify(key.slice(0, 80)) : `the key ${String(key).slice(0, 80)}`}, not a clientOrderId asked for: its answer is ignored, and each intent is asked about with getOrder (an adapter keys getOrders' answer by the clientOrderIds it is given)`);
        return undefined;
      }
      return found;
    } catch {
      return undefined;
    }
  }

  #schedule(delay: number): void {
    if (this.#stopping) return;
    this.#timer = setTimeout(() => {
      const t0 = performance.now();
      this.#ticking = this.tick()
        .then(() => {
          const failed = this.#tickFailure;
          if (failed === undefined) return;
          this.#tickFailure = undefined;
          const s = Math.round((Date.now() - failed.since) / 1000);
          this.#log(`${stamp()}  ticks succeed again after ${s} s (${failed.count} failed)`);
        })
        .catch((e) => {
          // Closed by its owner: said in one line, not as a failed tick.
          if (this.#store.closed) return this.#storeClosed();
          const error = coerceError(e);
          // The store is unusable for good (a failed fsync or checkpoint), or another daemon took
          // this SQLite file over while this one was stalled: ticking on would only fail again,
          // or run beside it. The daemon stops ticking and says so.
          const failure = this.#store.failure ?? (error.code === 'DAEMON_RUNNING' ? error : undefined);
          // Said once while the same error repeats (a full disk fails every tick), and its end.
          if (this.#tickFailure?.message === error.message) this.#tickFailure.count++;
          else {
            this.#tickFailure = { message: error.message, since: this.#tickFailure?.since ?? Date.now(), count: (this.#tickFailure?.count ?? 0) + 1 };
            this.#log(`${stamp()}  tick failed: ${error.message}${failure === undefined ? '; trying again every tick, said again when it changes' : ''}`);
          }
          if (failure !== undefined) return this.#giveUp(failure);
        })
        .finally(() => this.#schedule(Math.max(0, this.#tickMs - (performance.now() - t0))));
    }, delay);
  }

  /**
   * Resolves when the daemon cannot go on, and has stopped ticking: with the store's failure
   * (STORAGE_FAILED: on SQLite, a failed fsync or checkpoint, so commits since may not be on
   * disk; restart the process once the disk is fixed, its recovery reconciles what was in
   * flight), with DAEMON_RUNNING (on SQLite, another daemon took the file over while this one
   * was stalled past its lease TTL), or with STORAGE_UNAVAILABLE (the store was closed under the
   * daemon: an order in flight then stays PENDING, for the next daemon to reconcile). Call
   * {@link stop} then. Never resolves otherwise.
   */
  get failed(): Promise<BotstateError> {
    return this.#failure.promise;
  }

  /**
   * Stops ticking and heartbeating for good, and resolves {@link failed} once the steps in flight
   * have ended: nothing of this daemon runs after that, and in this process it no longer counts
   * as running (a daemon started here next takes its jobs at once).
   */
  #giveUp(failure: BotstateError): Promise<void> | undefined {
    if (this.#givingUp) return undefined;
    this.#givingUp = true;
    this.#stopping = true;
    this.#stopAsked.abort();
    clearTimeout(this.#timer);
    clearInterval(this.#renewer);
    // A start() under way (its recovery's orders are not steps) ends first too.
    return Promise.allSettled([...this.#inFlight.values(), this.#renewing, ...this.#entering]).then(() => {
      this.#leases.forget();
      this.#failure.resolve(failure);
    });
  }

  /** The store was closed under the daemon (by its owner, without stop()): it gives up, in one line. */
  #storeClosed(): Promise<void> | undefined {
    if (this.#givingUp) return undefined;
    const failure = new StorageError(
      'STORAGE_UNAVAILABLE',
      `the store at ${this.#store.location} was closed under the daemon: it stops (an order in flight stays PENDING, for the next daemon to reconcile)`,
      { hint: 'await daemon.stop() before closing its store' },
    );
    this.#log(`${stamp()}  ${failure.message}`);
    return this.#giveUp(failure);
  }

  /** The jobs this daemon holds, or only those of `ids`. */
  async #loadJobs(ids?: readonly string[]): Promise<Map<string, Job>> {
    const rows = await this.#store.transaction(async (tx) => {
      if (ids === undefined) {
        return tx.all<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs JOIN job_leases ON job_leases.job_id = jobs.id WHERE job_leases.owner = ?`, [this.instanceId]);
      }
      const out: JobRow[] = [];
      for (const chunk of paddedChunks(ids, LOAD_CHUNK)) out.push(...(await tx.all<JobRow>(LOAD_BY_IDS, chunk)));
      return out;
    });
    // One damaged row (a config edited outside botstate: STORAGE_CORRUPT) stops its own job, not
    // every job: it is skipped, and said once (again if the reason changes, and when it reads again).
    const jobs = new Map<string, Job>();
    for (const row of rows) {
      try {
        jobs.set(row.id, toJob(row));
        if (this.#unreadable.delete(row.id)) this.#log(`${stamp()}  job ${row.id} can be read again: running it`);
      } catch (e) {
        const reason = coerceError(e).message;
        if (this.#unreadable.get(row.id) === reason) continue;
        this.#unreadable.set(row.id, reason);
        this.#log(`${stamp()}  job ${row.id} skipped, its row cannot be read: ${reason}`);
      }
    }
    // Jobs no longer held are forgotten (said again should this daemon hold them again).
    if (ids === undefined && this.#unreadable.size > 0) {
      const held = new Set(rows.map((row) => row.id));
      for (const id of this.#unreadable.keys()) if (!held.has(id)) this.#unreadable.delete(id);
    }
    return jobs;
  }

  #runner(job: Job, fence: Fence): Runner {
    let runner = this.#runners.get(job.id);
    // A new epoch means the job was someone else's meanwhile: what this daemon remembered of
    // it (strategy scratch, unwritten state) is stale; start again from the database.
    if (!runner || runner.fence.epoch !== fence.epoch || runner.stale) {
      const kept = runner?.stale && runner.fence.epoch === fence.epoch ? runner : undefined;
      runner = { fence, scratch: parseScratch(job.strategyState, job), state: {}, scratchDirty: false, lastFlush: Date.now(), failures: kept?.failures ?? 0, failingSince: kept?.failingSince, skippedMsBefore: kept?.skippedMsBefore };
      this.#runners.set(job.id, runner);
    }
    runner.fence = fence;
    return runner;
  }

  #options(runner: Runner, actor = this.#actor): CallOptions {
    return { fence: runner.fence, actor };
  }

  async #step(stored: Job, pending: Trade | undefined, fence: Fence, knownPrice?: string): Promise<void> {
    const runner = this.#runner(stored, fence);
    try {
      if (pending) {
        const { outcome } = await this.#reconcile(stored, pending, runner, 'tick');
        await this.#counted(stored, runner, outcome, pending);
        return;
      }
      if (!ACTIVE.has(stored.status)) {
        // Paused (or finished) since the lease sync: its lease is still held, so what the runner
        // observed (new highs, the price window) is written now, not lost.
        if (!runner.stale) await this.#flushBeforeLeaving(stored.id, runner, stored.tokenSymbol);
        this.#runners.delete(stored.id);
        return;
      }
      const job: Job = { ...stored, ...runner.state };
      // Nothing left to sell needs no price: a delisted token, which has none, still ends IDLE.
      if (liquidated(job)) {
        await this.#completeLiquidation(job, runner);
        return;
      }
      let quoted: string;
      if (knownPrice !== undefined) quoted = knownPrice;
      else if (this.#noPrices) return; // its price would fail alike, see below
      else {
        try {
          quoted = await this.#exchange.getPrice(job.tokenAddress, job.chain);
        } catch (e) {
          if (!(e instanceof ExchangeUnavailableError)) throw e;
          // Asked alone (an exchange without getPrices, or whose batch failed): a market that gives
          // no answer is this job's failure, but an exchange that answers nothing at all is an
          // outage, counted against no job (as when getPrices fails so, see #prices); so is one
          // that has priced no job since its batch failed. The tick's other steps then ask nothing.
          const answering = await this.#answers();
          if (answering && this.#batchFailing?.priced !== false) throw e;
          if (answering && !this.#slowPrices.has(market(job))) {
            // No market priced alone yet: this one may be the market that hangs the batch. Stepped
            // last from now on, nothing said or counted; only another failing alike (or this one
            // again) is an outage.
            this.#slowPrices.add(market(job));
            return;
          }
          this.#noPrices = true;
          this.#skipped.last = true;
          if (this.#batchFailing !== undefined) this.#slowPrices.add(market(job));
          return this.#exchangeUnavailable(e, 'prices', `the price of ${job.tokenSymbol} for job ${job.id}`);
        }
        this.#exchangeAnswered('prices');
      }
      const price = exactPrice(quoted);
      // A stop asked for while the price was on its way: nothing is decided, no intent recorded.
      if (this.#stopping) return;
      const now = Date.now();
      const d = decide({ job, scratch: runner.scratch, price, now });
      // What the runner held before this decision: put back if its intent is refused (the job
      // paused or reconfigured meanwhile), so that a decision never made (a rebalance time, a dip
      // marked bought) is neither written nor decided from later.
      const prior = { scratch: runner.scratch, state: runner.state, scratchDirty: runner.scratchDirty };
      if (d.scratch !== runner.scratch) runner.scratchDirty = true;
      runner.scratch = d.scratch;
      runner.state = { ...runner.state, ...d.state };
      if (job.status === 'LIQUIDATING') {
        // A liquidation held back by a limit is said once, and again when the reason changes (not
        // when the price in its text moves), not left silent.
        const waits = d.order ? undefined : liquidationWait(job, d.skipped, price);
        if (waits !== undefined && d.skipped !== runner.liquidationWaits) this.#log(`${stamp()}  ${job.tokenSymbol}  liquidation waits: ${waits}`);
        runner.liquidationWaits = waits === undefined ? undefined : d.skipped;
      } else if (job.status === 'RUNNING') {
        this.#sayHeldBack(job, runner, d, prior.scratch, price, now);
      }
      if (d.completeLiquidation) {
        await this.#completeLiquidation(job, runner, price);
      } else if (d.order) {
        const order = d.order;
        const intent: IntentInput = {
          job: { id: job.id },
          side: order.side,
          reason: order.reason,
          priceUsd: price,
          ...(order.baseAmount === undefined ? {} : { baseAmount: order.baseAmount }),
          ...(order.quoteAmount === undefined ? {} : { quoteAmount: order.quoteAmount }),
        };
        // The intent with the strategy state that led to it: the scratch in the intent's own
        // UPDATE of the job, the audited fields (when they changed) in the same transaction.
        // Under the config it was decided with: one an operator changed meanwhile (the price fetch
        // may take seconds) refuses the intent (CONCURRENT_MODIFICATION, not counted), and the
        // next tick decides again.
        const options = { ...this.#options(runner), decidedWith: job.config, ...(runner.scratchDirty ? { scratch: runner.scratch } : {}) };
        const { trade, duplicate } = await (Object.keys(runner.state).length > 0
          ? this.#store.transaction(async () => {
              await this.#store.jobs.updateState({ id: job.id }, runner.state, this.#options(runner));
              return this.#store.ledger.recordIntent(intent, options);
            }, ATOMIC)
          : this.#store.ledger.recordIntent(intent, options)
        ).catch((e: unknown) => {
          Object.assign(runner, prior);
          const error = coerceError(e);
          if (error.category === 'storage' && mayHaveCommitted(error)) this.#recorded.set(job.id, { above: job.version });
          throw e;
        });
        this.#recorded.set(job.id, { clientOrderId: trade.clientOrderId });
        // An intent recorded before (only after a restore can the derived clientOrderId already
        // exist) took no scratch with it.
        if (duplicate && runner.scratchDirty) await this.#store.jobs.saveScratch({ id: job.id }, runner.scratch, this.#options(runner));
        this.#flushed(runner, now);
        if (trade.status !== 'PENDING') {
          // The derived id belongs to a trade already settled (one recorded by hand under it, or
          // a restored backup): sending it would place an order that could never be recorded.
          throw new RuleError('DUPLICATE_ORDER', `clientOrderId ${trade.clientOrderId} is already taken by an ${trade.status} trade; the order was not sent`, {
            hint: 'resume the job once it is in ERROR: that moves it to a new sequence number',
          });
        }
        await this.#counted(job, runner, await this.#execute(job, trade, runner, 'tick', 'decided'), trade);
        return;
      } else if (now - runner.lastFlush >= this.#flushMs && unwritten(runner)) {
        await this.#store.transaction(() => this.#flush(job.id, runner), ATOMIC);
        this.#flushed(runner, now);
      }
      runner.failures = 0;
    } catch (e) {
      await this.#failed(stored, runner, e);
    }
  }

  /** `price`: the tick's, under which what is left may be dust worth less than 10⁻¹⁸ USD. */
  async #completeLiquidation(job: Job, runner: Runner, price?: string): Promise<void> {
    const done = await this.#store.transaction(async () => {
      await this.#flush(job.id, runner);
      return this.#store.jobs.completeLiquidation({ id: job.id }, { ...this.#options(runner), ...(price !== undefined ? { priceUsd: price } : {}) });
    }, ATOMIC);
    const left = cmp(done.tokenBalance, '0') === 0 ? 'with a zero balance' : `keeping ${done.tokenBalance} tokens, worth less than 10⁻¹⁸ USD at ${price}: no order can sell them`;
    this.#log(`${stamp()}  ${job.tokenSymbol}  liquidation complete: IDLE ${left}`);
  }

  /**
   * In the lease sync's transaction, for the jobs it is about to hand back (paused or finished
   * from the CLI, or shed to another daemon) while their leases are still held: writes what their
   * runners observed and have not written yet, each in a savepoint (a failure is said, and loses
   * only that). Not marked written: the sync may run again (a retry), and its runners go anyway.
   * A job whose step is running is its step's to write; a stale runner holds nothing sure.
   */
  async #saveLeaving(ids: readonly string[], busy: ReadonlySet<string>): Promise<void> {
    for (const id of ids) {
      const runner = this.#runners.get(id);
      if (runner === undefined || busy.has(id) || runner.stale) continue;
      await this.#flushBeforeLeaving(id, runner, `job ${id}`);
    }
  }

  /** Writes the strategy state held in memory (audited fields and scratch), in the caller's transaction. */
  async #flush(jobId: string, runner: Runner): Promise<void> {
    if (Object.keys(runner.state).length > 0) await this.#store.jobs.updateState({ id: jobId }, runner.state, this.#options(runner));
    if (runner.scratchDirty) await this.#store.jobs.saveScratch({ id: jobId }, runner.scratch, this.#options(runner));
  }

  /**
   * Writes what a runner holds that is not written yet, in its own transaction (or savepoint),
   * before the daemon lets the job go (a stop, a pause, the job going to ERROR); says whether it wrote
   * anything. A failure is logged, not thrown: what it loses is at most one flush interval of
   * observed prices.
   */
  async #flushBeforeLeaving(jobId: string, runner: Runner, symbol: string): Promise<boolean> {
    if (!unwritten(runner)) return false;
    try {
      await this.#store.transaction(() => this.#flush(jobId, runner));
      return true;
    } catch (e) {
      this.#log(`${stamp()}  ${symbol}  could not save the strategy state: ${coerceError(e).message}`);
      return false;
    }
  }

  #flushed(runner: Runner, now: number): void {
    runner.state = {};
    runner.scratchDirty = false;
    runner.lastFlush = now;
  }

  /**
   * Sends a committed intent; an unknown outcome leaves it PENDING for the next tick to reconcile.
   * `send`: 'resend' when the exchange said it did not have the order (getOrder) and it is sent
   * again; 'decided' for the order of the intent its step has just committed, sent even if a stop
   * was asked for while that intent committed (the step decided before it: the stop waits for this
   * one call, as it would have for the price, and leaves no intent unsent behind it).
   */
  async #execute(job: Job, trade: Trade, runner: Runner, phase: 'tick' | 'recovery', send: 'resend' | 'decided'): Promise<Outcome> {
    if (send === 'resend') await this.#store.transaction((tx) => checkBeforeResend(tx, job, trade, this.#exchange.id));
    let order: ExchangeOrder;
    try {
      const placed = await (send === 'decided' ? this.#placeNow : this.#exchange.placeOrder)(orderRequest(job, trade));
      this.#answersSeen++;
      this.#reached();
      runner.resendFailing = undefined;
      order = answered(placed, trade);
    } catch (e) {
      if (e instanceof ExchangeUnavailableError) {
        if (send === 'resend') this.#resendUnanswered(job, trade, runner, e);
        else this.#log(`${stamp()}  ${job.tokenSymbol}  ${trade.clientOrderId}: outcome unknown (${e.message}); reconciling next tick`);
        return 'unknown';
      }
      if (!(e instanceof ExchangeRejectedError)) throw e;
      if (send === 'resend') return this.#refusedResend(job, trade, runner, phase, e.message);
      // The exchange answered and refused the order: it does not exist there.
      order = refused(job, trade, `refused by the exchange: ${e.message}`);
    }
    return this.#answer(job, trade, order, runner, phase);
  }

  /**
   * An intent sent again got no answer: said the first time, then at most every
   * STUCK_SAID_AGAIN_MS with the count, not at every tick (an exchange whose order entry is down
   * while its lookups answer, in maintenance, made one line per job per tick).
   */
  #resendUnanswered(job: Job, trade: Trade, runner: Runner, e: ExchangeUnavailableError): void {
    const last = runner.resendFailing?.clientOrderId === trade.clientOrderId ? runner.resendFailing : undefined;
    const attempts = (last?.attempts ?? 0) + 1;
    const now = Date.now();
    if (last !== undefined && now - last.saidAt < STUCK_SAID_AGAIN_MS) {
      runner.resendFailing = { ...last, attempts };
      return;
    }
    runner.resendFailing = { clientOrderId: trade.clientOrderId, attempts, saidAt: now };
    const times = attempts === 1 ? '' : `, ${attempts} times in a row`;
    this.#log(
      `${stamp()}  ${job.tokenSymbol}  ${trade.clientOrderId}: sent again, as the exchange did not have it, and the outcome is unknown${times} (${e.message}); ` +
        `reconciled every tick (said again every ${STUCK_SAID_AGAIN_MS / 60_000} min while it lasts)`,
    );
  }

  /**
   * The exchange refused an intent sent again after it had said it did not have it. An exchange
   * whose order lookup lags behind its matching engine does that to an order it has ("Duplicate
   * order sent"), and the order's fill would be lost if the refusal were taken as final. So the
   * order is asked for again at once, and then at every tick (not sent again): found, it is
   * settled from the exchange's order; still unknown to the exchange `exchangeTimeoutMs` after
   * the refusal, it is settled FAILED, saying both. Meanwhile the intent stays PENDING, and no
   * failure is counted.
   */
  async #refusedResend(job: Job, trade: Trade, runner: Runner, phase: 'tick' | 'recovery', refusal: string): Promise<Outcome> {
    runner.refusedResend = { clientOrderId: trade.clientOrderId, since: Date.now(), refusal };
    let found: ExchangeOrder | null;
    try {
      found = await this.#exchange.getOrder(trade.clientOrderId);
    } catch (e) {
      if (!(e instanceof ExchangeUnavailableError)) throw e;
      found = null; // asked again at the next tick
    }
    if (found) {
      runner.refusedResend = undefined;
      return this.#answer(job, trade, answered(found, trade), runner, phase);
    }
    this.#log(
      `${stamp()}  ${job.tokenSymbol}  ${trade.clientOrderId}: sent again, as the exchange did not have it, and refused (${refusal}); ` +
        `asking for it every tick, settled FAILED if the exchange still does not have it in ${this.#exchangeTimeoutMs} ms`,
    );
    return 'unknown';
  }

  /** An intent whose re-send was refused, which the exchange did not list again: FAILED once its time is up (see #refusedResend). */
  async #stillRefused(job: Job, trade: Trade, runner: Runner, phase: 'tick' | 'recovery', since: number, refusal: string): Promise<Outcome> {
    if (Date.now() - since < this.#exchangeTimeoutMs) return 'unknown';
    const why = `refused by the exchange when sent again, and still unknown to it ${this.#exchangeTimeoutMs} ms later: ${refusal}`;
    return this.#answer(job, trade, refused(job, trade, why), runner, phase);
  }

  /** Settles a PENDING intent from what the exchange knows of it, sending it again if it never arrived. */
  async #reconcile(
    job: Job,
    trade: Trade,
    runner: Runner,
    phase: 'tick' | 'recovery',
    known?: ReadonlyMap<string, ExchangeOrder>,
  ): Promise<{ outcome: Outcome; resent: boolean }> {
    let order: ExchangeOrder | null;
    try {
      // A batch lookup that did not list the order is as good as getOrder's "not found".
      order = known ? (known.get(trade.clientOrderId) ?? null) : await this.#exchange.getOrder(trade.clientOrderId);
    } catch (e) {
      if (e instanceof ExchangeUnavailableError) {
        this.#lookupFailed(job, trade, runner, e);
        return { outcome: 'unknown', resent: false };
      }
      throw e;
    }
    if (!known) this.#exchangeAnswered('orders');
    // Its lookup answered (whatever the step does next): the failures in a row end here.
    const stuck = runner.lookupFailing;
    runner.lookupFailing = undefined;
    if (stuck?.saidAt !== undefined && stuck.clientOrderId === trade.clientOrderId) {
      this.#log(`${stamp()}  ${job.tokenSymbol}  order ${stuck.clientOrderId}: its lookup answered after ${stuck.attempts} failed`);
    }
    // Seen at the exchange: a refusal of an earlier re-send no longer counts (a later "not found" is sent again).
    if (order && runner.refusedResend?.clientOrderId === trade.clientOrderId) runner.refusedResend = undefined;
    if (order) return { outcome: await this.#answer(job, trade, answered(order, trade), runner, phase), resent: false };
    // Sent again and refused already: not sent a third time (see #refusedResend).
    const refusal = runner.refusedResend;
    if (refusal?.clientOrderId === trade.clientOrderId) return { outcome: await this.#stillRefused(job, trade, runner, phase, refusal.since, refusal.refusal), resent: false };
    return { outcome: await this.#execute(job, trade, runner, phase, 'resend'), resent: true };
  }

  /**
   * Settles the intent from the exchange's order, or, while the order is OPEN (accepted, not
   * final yet), leaves it PENDING: said once, not a failure, asked about again at the next tick.
   */
  async #answer(job: Job, trade: Trade, order: ExchangeOrder, runner: Runner, phase: 'tick' | 'recovery'): Promise<Outcome> {
    checkSameOrder(job, trade, order);
    if (order.status !== 'OPEN') return this.#settle(job, trade, order, runner, phase);
    // Said when first found open, and again every OPEN_REMINDER_MS it stays so (from its intent's
    // recording): an order that never fills (one resting on a book, a transaction never mined)
    // holds its job's trading back for as long, and an operator reading the log must see it.
    const age = Date.now() - Date.parse(trade.createdAt);
    const periods = Math.max(0, Math.floor(age / OPEN_REMINDER_MS));
    if (runner.saidOpen?.clientOrderId !== trade.clientOrderId) {
      this.#log(`${stamp()}  ${job.tokenSymbol}  ${trade.clientOrderId}: open at the exchange, not final yet; asking again every tick until it is filled or rejected`);
      runner.saidOpen = { clientOrderId: trade.clientOrderId, periods };
    } else if (periods > runner.saidOpen.periods) {
      this.#log(
        `${stamp()}  ${job.tokenSymbol}  ${trade.clientOrderId}: still open at the exchange ${Math.floor(age / 60_000)} min after it was recorded; ` +
          'the job places no other order until it is filled or rejected (look at it there: an order resting on the book, a transaction not mined)',
      );
      runner.saidOpen = { clientOrderId: trade.clientOrderId, periods };
    }
    return 'open';
  }

  /** Whether this daemon recorded the intent `clientOrderId` of the job (see #recorded). */
  #recordedHere(jobId: string, clientOrderId: string): boolean {
    const recorded = this.#recorded.get(jobId);
    if (recorded === undefined) return false;
    if ('clientOrderId' in recorded) return recorded.clientOrderId === clientOrderId;
    return (derivedSequence(jobId, clientOrderId) ?? 0) > recorded.above;
  }

  async #settle(job: Job, trade: Trade, order: ExchangeOrder, runner: Runner, phase: 'tick' | 'recovery'): Promise<Outcome> {
    const actor = phase === 'recovery' ? `${this.#actor}:recovery` : this.#actor;
    const options = this.#options(runner, actor);
    const before = runner.scratch;
    const now = Date.now();
    // The fill, the job's new state and the strategy's scratch after it: one transaction, one
    // UPDATE of the job.
    const after = (settled: { job: Job; trade: Trade }) => afterFill({ job: settled.job, scratch: before, trade: settled.trade, now });
    let scratch = before;
    const settlement: Settlement =
      order.status === 'FILLED'
        ? {
            status: 'EXECUTED',
            baseAmount: order.baseAmount,
            quoteAmount: order.quoteAmount,
            priceUsd: order.price,
            exchangeOrderId: order.exchangeOrderId,
            executedAt: fillTime(order.time, trade.createdAt, now),
          }
        : { status: 'FAILED', error: order.error ?? 'rejected by the exchange' };
    const settle = () =>
      this.#store.ledger.settle(trade.clientOrderId, settlement, {
        ...options,
        scratch: (settled) => {
          scratch = after(settled);
          return scratch === before ? undefined : scratch;
        },
      });
    // A fill is first compared with the job's other trades, in the settlement's transaction.
    const settled = await (order.status === 'FILLED'
      ? this.#store.transaction(async (tx) => {
          await checkOwnFill(tx, job, trade, order);
          return settle();
        }, ATOMIC)
      : settle()
    )
      .catch(async (e: unknown) => {
        if (STOPS_THE_JOB.has(e as Error)) throw e; // checkOwnFill's: the intent stays PENDING
        if (isBotstateError(e, 'LEASE_LOST')) {
          await this.#settledWhileAway(job, trade, order);
          throw e;
        }
        if (!isBotstateError(e, 'DUPLICATE_ORDER')) throw e;
        // Settled meanwhile by someone else: with this very fill (a settle by hand that left out
        // the exchange's order id, say), the ledger is right and this is a repeat; otherwise the
        // ledger and the exchange disagree.
        const current = await this.#store.ledger.get(trade.clientOrderId, options);
        if (order.status === 'FILLED' && current.status === 'EXECUTED' && sameAmounts(current, order)) {
          return { trade: current, job: await this.#store.jobs.get({ id: job.id }, options), duplicate: true };
        }
        throw diverged(trade, order, e.message, e);
      });
    if (settled.duplicate) {
      // Settled before (a retry after a lost answer): the scratch may not have followed it.
      scratch = after(settled);
      if (scratch !== before) await this.#store.jobs.saveScratch({ id: job.id }, scratch, options);
    }
    runner.scratch = scratch;
    const t = settled.trade;
    const recovered = phase === 'recovery' || !this.#recordedHere(job.id, t.clientOrderId) ? '  (recovered)' : '';
    this.#recorded.delete(job.id);
    if (t.status === 'EXECUTED') {
      this.#log(`${stamp()}  ${job.tokenSymbol}  ${t.side} ${t.baseAmount} for ${t.quoteAmount} @ ${t.priceUsd}  ${t.reason}  ${t.clientOrderId}${recovered}`);
      return 'executed';
    }
    this.#log(`${stamp()}  ${job.tokenSymbol}  ${t.side} ${t.reason} FAILED: ${t.error}  ${t.clientOrderId}${recovered}`);
    runner.rejection = t.error ?? 'rejected by the exchange';
    return 'failed';
  }

  /**
   * The exchange's answer to an order could not be recorded because this daemon's lease on the
   * job ran out (the daemon stalled: a pause, a swap storm, a lost connection). If another settled
   * the trade meanwhile otherwise than the exchange answered (an operator's `botstate settle`
   * after the lease expired, guessing), the ledger and the exchange disagree, and only this
   * daemon knows it: the job goes to ERROR now, with why. Not fenced (this daemon no longer holds
   * the job): it writes the job's status alone, as an operator's command would, and a daemon
   * that holds the job finds it in ERROR at its next write. The check itself failing (the
   * database unreachable) is said too: the divergence may then be there, unchecked.
   */
  async #settledWhileAway(job: Job, trade: Trade, order: ExchangeOrder): Promise<void> {
    try {
      const current = await this.#store.ledger.get(trade.clientOrderId);
      if (current.status === 'PENDING') return;
      const agrees = order.status === 'FILLED' ? current.status === 'EXECUTED' && sameAmounts(current, order) : current.status === 'FAILED';
      if (agrees) return;
      const error = diverged(trade, order, `it is ${current.status}, settled by another while this daemon's lease on the job had run out`);
      this.#log(`${stamp()}  ${job.tokenSymbol}  ${error.message}`);
      await this.#store.jobs.fail({ id: job.id }, error.message, { actor: this.#actor });
      this.#log(`${stamp()}  ${job.tokenSymbol}  → ERROR: the ledger no longer matches the exchange (above)`);
    } catch (e) {
      this.#log(`${stamp()}  ${job.tokenSymbol}  the exchange answered order ${trade.clientOrderId} (${order.status}) after this daemon's lease on the job had run out, and it could not check the ledger against it: ${coerceError(e).message}; compare botstate trades with the exchange`);
    }
  }

  /**
   * An order the exchange rejected counts as a failed step (a job that cannot get its orders
   * through must end in ERROR, not retry forever); a fill resets the count. An order still open,
   * or of unknown outcome, counts neither way.
   */
  async #counted(job: Job, runner: Runner, outcome: Outcome, trade: Trade): Promise<void> {
    if (outcome === 'executed') runner.failures = 0;
    // In ERROR there is nothing left to count: the rejected order is settled (FAILED, said above),
    // not an intent that "still cannot be settled".
    else if (outcome === 'failed' && job.status !== 'ERROR') await this.#failed(job, runner, new Error(`order ${trade.clientOrderId} was rejected: ${runner.rejection}`));
  }

  async #failed(job: Job, runner: Runner, e: unknown): Promise<void> {
    // A store closed under the daemon: nothing can be written, and the daemon says it once as it gives up.
    if (this.#store.closed) return;
    if (e instanceof StopAsked) return this.#leftForStop(job, e);
    const error = coerceError(e);
    if (error.code === 'LEASE_LOST') {
      this.#runners.delete(job.id);
      // This daemon's own sync may have let the job go (paused or finished while its step waited
      // for a slot): the tick said so ("let go"), and no other daemon took anything over.
      if (!this.#held?.has(job.id) && !(await this.#leases.heldByAnother(job.id).catch(() => true))) return;
      this.#log(`${stamp()}  ${job.tokenSymbol}  lost its lease (it ran out, and another daemon or an operator's command took the job)`);
      return;
    }
    // The job was paused, liquidated or changed from the CLI meanwhile: next tick sees it.
    if (error.code === 'INVALID_TRANSITION' || error.code === 'CONCURRENT_MODIFICATION') return;
    const message = messageOf(e);
    if (error.category === 'storage' && !STOPS_THE_JOB.has(error)) {
      // The database, not the job: nothing to count against it (a burst of lost connections
      // must not add up, with the next exchange error, to an ERROR). The step is retried, from
      // the job's row when what failed may have been committed all the same.
      if (mayHaveCommitted(error)) forget(runner);
      this.#log(`${stamp()}  ${job.tokenSymbol}  step failed (storage, not counted): ${message}`);
      return;
    }
    if (job.status === 'ERROR') {
      // Its open intent is reconciled again every tick; the same failure is said once.
      if (runner.failingInError !== message) this.#log(`${stamp()}  ${job.tokenSymbol}  in ERROR, its open intent still cannot be settled (retried every tick): ${message}`);
      runner.failingInError = message;
      return;
    }
    const stops = STOPS_THE_JOB.has(error);
    if (!stops) {
      const now = Date.now();
      runner.failures++;
      if (runner.failures === 1) {
        runner.failingSince = now;
        runner.skippedMsBefore = this.#skipped.ms;
      }
      // A market whose price got no answer (the only failure of unknown outcome a step counts:
      // see #step) waits for it to last marketDownMs too: a 503 now and then must not add up,
      // over maxFailures quick ticks, to an ERROR that needs an operator. The time is the wall
      // clock's (a stalled database's too) less the ticks an outage skipped, which counted nothing.
      const lasted = now - runner.failingSince! - (this.#skipped.ms - runner.skippedMsBefore!);
      const waits = e instanceof ExchangeUnavailableError && lasted < this.#marketDownMs;
      const count = runner.failures <= this.#maxFailures ? `${runner.failures}/${this.#maxFailures}` : `${runner.failures} in a row over ${Math.round(lasted / 1000)} s`;
      if (runner.failures < this.#maxFailures || !waits) this.#log(`${stamp()}  ${job.tokenSymbol}  step failed (${count}): ${message}`);
      else if (runner.failures === this.#maxFailures || now - (runner.saidWaiting ?? 0) >= this.#marketDownMs / 4) {
        // Said as the count is reached, then a few times until the market has been down long enough.
        runner.saidWaiting = now;
        this.#log(`${stamp()}  ${job.tokenSymbol}  step failed (${count}): ${message}; to ERROR only once its price has gone unanswered for ${duration(this.#marketDownMs)} (outages left out)`);
      }
      if (runner.failures < this.#maxFailures || waits) return;
    }
    try {
      // resume puts a job in ERROR back to RUNNING, whatever it was doing: the reason says it was liquidating.
      const reason = `${job.status === 'LIQUIDATING' ? 'while liquidating, ' : ''}${stops ? message : `${runner.failures} steps failed in a row; last: ${message}`}`;
      const failed = await this.#store.transaction(async () => {
        if (!stops) {
          // Read under the row lock and the lease: a job paused or liquidated from the CLI while
          // this step ran (it decided from the job as it was) is not put in ERROR for the step's
          // failures. (A ledger that disagrees with the exchange stops the job whatever its status.)
          const current = await this.#store.jobs.updateState({ id: job.id }, {}, this.#options(runner));
          if (current.status !== job.status) return false;
        }
        await this.#flushBeforeLeaving(job.id, runner, job.tokenSymbol);
        await this.#store.jobs.fail({ id: job.id }, reason, this.#options(runner));
        return true;
      });
      if (!failed) {
        // Spared: the job it failed for is not the job there now (a liquidation starts afresh).
        runner.failures = 0;
        return;
      }
      this.#runners.delete(job.id);
      const ref = `${job.tokenAddress}${job.chain === DEFAULT_CHAIN ? '' : ` --chain ${job.chain}`}`;
      // resume would make a job that was liquidating trade (buy) again: liquidate goes on selling.
      const then = job.status === 'LIQUIDATING' ? `botstate liquidate ${ref} to go on selling, or botstate resume ${ref} to trade again` : `botstate resume ${ref}`;
      this.#log(`${stamp()}  ${job.tokenSymbol}  → ERROR: ${reason} (once the cause is fixed: ${then})`);
    } catch (failError) {
      if (!isBotstateError(failError, 'LEASE_LOST')) this.#log(`${stamp()}  ${job.tokenSymbol}  could not mark the job ERROR: ${coerceError(failError).message}`);
    }
  }

  /** An exchange call a stop kept from being made: only an order not sent is said (its intent stays PENDING). */
  #leftForStop(job: Job, e: StopAsked): void {
    if (e.order !== undefined) this.#log(`${stamp()}  ${job.tokenSymbol}  ${e.message}`);
  }

  /** One audit entry per start-up, in the daemon's own stream. */
  async #auditRecovery(report: RecoveryReport): Promise<void> {
    const stream = `daemon:${this.instanceId}`;
    await this.#store.transaction(async (tx) => {
      // An instance id may be reused (a restart with --instance-id): continue its chain.
      const head = await tx.get<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_log WHERE stream = ? ORDER BY seq DESC LIMIT 1', [stream]);
      const prepared = prepareAudit({
        stream,
        seq: head ? Number(head.seq) + 1 : 1,
        prevHash: head?.hash ?? GENESIS_HASH,
        at: new Date().toISOString(),
        actor: this.#actor,
        entity: 'daemon',
        entityId: this.instanceId,
        action: 'recover',
        before: null,
        // The exchange it trades on: a later daemon sends none of its intents again elsewhere (checkBeforeResend).
        after: this.#exchange.id === undefined ? report : { ...report, exchange: this.#exchange.id },
      });
      await insertAudit(tx, prepared);
    });
  }

}

/**
 * The exchange's answer for an order whose trade someone else settled otherwise meanwhile (a
 * `settle` by hand or through the library, while this daemon held the job): the ledger no
 * longer says what the exchange did, and the job's balances are off by that order. The job must
 * stop until an operator records what the exchange did.
 */
function diverged(trade: Trade, order: ExchangeOrder, why: string, cause?: BotstateError): BotstateError {
  const did = order.status === 'FILLED' ? `filled ${order.side} ${order.baseAmount} for ${order.quoteAmount}` : `did not fill (${order.error ?? 'rejected'})`;
  const error = new RuleError('DUPLICATE_ORDER', `the exchange ${did} for order ${trade.clientOrderId}, but its trade was settled otherwise meanwhile (${why}): the job's balances no longer match the exchange`, {
    hint: `compare botstate trades with the exchange's order ${trade.clientOrderId} and put the job right (a fill the ledger misses: botstate record, under another --client-order-id), then resume the job`,
    ...(cause === undefined ? {} : { cause }),
  });
  STOPS_THE_JOB.add(error);
  return error;
}

/** What an order sent again takes from its trade row, compared with the intent's entry. */
const SENT_FIELDS = ['side', 'clientOrderId', 'baseAmount', 'quoteAmount'] as const;

/**
 * What checkBeforeResend compares, in one statement: the intent's entry (the last of the job's
 * stream for the trade), the job's first entry (its creation: the token and chain it trades),
 * and, when a daemon recorded the intent (its actor is `daemon:<id>`, the name of its own
 * stream), that daemon's last start before it: its `recover` entry, which names its exchange. By
 * the log's own order (id), not by time: a clock stepped back after the start would skip it. A
 * daemon's recover entry commits before its first tick records anything.
 */
const BEFORE_RESEND =
  'SELECT i.id, i.actor, i.after, ' +
  '(SELECT c.after FROM audit_log c WHERE c.stream = i.stream AND c.seq = 1) AS created, ' +
  "(SELECT r.after FROM audit_log r WHERE r.stream = i.actor AND r.action = 'recover' AND r.id < i.id ORDER BY r.seq DESC LIMIT 1) AS started " +
  "FROM audit_log i WHERE i.stream = ? AND i.entity = 'trade' AND i.entity_id = ? AND i.action = 'intent' ORDER BY i.seq DESC LIMIT 1";

/**
 * Before an intent is sent again (the exchange did not have it), three checks, each of which
 * leaves it PENDING and stops the job (ERROR, at once) for an operator:
 * - its trade row against the order its intent's audit entry recorded (side, amount,
 *   clientOrderId): the daemon sends what the row says, and a row changed outside botstate (an
 *   amount raised from 10 to 5000 USD) would go out as it stands, found by `verify` only once
 *   filled. An intent whose entry the log does not hold is not sent either.
 * - the job row's token and chain, which the order goes out for, against the job's creation entry;
 * - the exchange: an intent a daemon recorded while it traded on another exchange (its `recover`
 *   entry names it) is not sent through this one, which does not have it, while the first may have
 *   filled it (two daemons of one database given different --exchange URLs).
 * One statement (BEFORE_RESEND), on re-sends only.
 */
async function checkBeforeResend(tx: Executor, job: Job, trade: Trade, exchange: string | undefined): Promise<void> {
  const row = await tx.get<{ actor: string; after: string | null; created: string | null; started: string | null }>(BEFORE_RESEND, [jobStream(trade.jobId), trade.id]);
  const recorded = jsonMember(row?.after, 'trade');
  const unsent = (why: string) =>
    leftPending(
      new StorageError('STORAGE_CORRUPT', `intent ${trade.clientOrderId} was not sent again: ${why}, so its trade row was changed outside botstate; it is left PENDING`, {
        hint: `run botstate verify, find out at the exchange that it does not have ${trade.clientOrderId}, stop the daemons and settle it (botstate settle ${trade.clientOrderId} --status failed --error TEXT), then resume the job`,
      }),
    );
  if (!isRecord(recorded)) throw unsent('the audit log holds no readable intent entry for it');
  const same = (field: (typeof SENT_FIELDS)[number], a: unknown): boolean => {
    const b = trade[field];
    if (field === 'side' || field === 'clientOrderId' || b === null) return a === b;
    return typeof a === 'string' && isDecimal(a) && cmp(a, b) === 0;
  };
  const differs = SENT_FIELDS.find((field) => !same(field, recorded[field]));
  if (differs !== undefined) {
    throw unsent(`its row says ${differs} ${shown(JSON.stringify(trade[differs]))}, but its intent recorded ${shown(JSON.stringify(recorded[differs]) ?? 'nothing')} in the audit log`);
  }
  // The token it goes out for is the job row's: compared with the job's creation entry.
  const [token, chain] = [jsonMember(row!.created, 'tokenAddress'), jsonMember(row!.created, 'chain')];
  if (token !== job.tokenAddress || chain !== job.chain) {
    const why = token !== job.tokenAddress ? `token ${shown(job.tokenAddress)}, but the job was created for ${shown(JSON.stringify(token) ?? 'nothing')}` : `chain ${shown(job.chain)}, but the job was created on ${shown(JSON.stringify(chain) ?? 'nothing')}`;
    throw leftPending(
      new StorageError('STORAGE_CORRUPT', `intent ${trade.clientOrderId} was not sent again: its job row says ${why} in the audit log, so the job row was changed outside botstate; it is left PENDING`, {
        hint: 'run botstate verify, put the job row right (or restore a backup), then resume the job',
      }),
    );
  }
  const recorder = /^daemon:(.+)$/.exec(row!.actor)?.[1];
  const theirs = jsonMember(row!.started, 'exchange');
  if (exchange === undefined || recorder === undefined || typeof theirs !== 'string' || theirs === exchange) return;
  throw leftPending(
    new RuleError(
      'DUPLICATE_ORDER',
      `intent ${trade.clientOrderId} was not sent again: daemon ${recorder} recorded it while trading on exchange ${shown(theirs, 200)}, and this daemon trades on ${shown(exchange, 200)}, ` +
        `which does not have it, while the first may have filled it; it is left PENDING`,
      { hint: `run the daemons of this database on one exchange: a daemon on ${shown(theirs, 200)} reconciles it (if both name one exchange account, start every daemon with the same --exchange-id, e.g. --exchange-id ${shown(theirs, 200)}); or find out there what became of it, stop the daemons and settle it by hand (botstate settle ${trade.clientOrderId}), then resume the job` },
    ),
  );
}

/** An error that stops the job at once (ERROR) and leaves its intent PENDING, for an operator. */
function leftPending<E extends Error>(error: E): E {
  STOPS_THE_JOB.add(error);
  LEAVES_IT_PENDING.add(error);
  return error;
}

/** How many of a job's latest trades a fill's exchange order id is compared with (checkOwnFill). */
const RECENT_TRADES_CHECKED = 100;
const SAME_EXCHANGE_ORDER =
  'SELECT client_order_id FROM (SELECT client_order_id, exchange_order_id FROM trades WHERE job_id = ? ' +
  `ORDER BY created_at DESC LIMIT ${RECENT_TRADES_CHECKED}) recent WHERE exchange_order_id = ? AND client_order_id <> ? ` +
  "AND EXISTS (SELECT 1 FROM trades WHERE client_order_id = ? AND status = 'PENDING') LIMIT 1";

/**
 * A fill whose exchange order another trade of the job already records is not this intent's: the
 * adapter maps two clientOrderIds to one exchange order (one cut to the exchange's length: every
 * intent of a job then reads as its first order), and settling it would record that one fill
 * again. Nothing is settled: the job stops (ERROR, at once) and the intent stays PENDING for an
 * operator. It reads the job's last RECENT_TRADES_CHECKED trades only, a short range of the
 * trades_by_job index, not the job's whole history (no index holds exchange order ids): the
 * intents such an adapter confuses follow one another, and the job stops at the first. Another
 * job's trades are not compared, nor is an intent settled meanwhile by someone else (the
 * settlement then finds that out, see #settle).
 */
async function checkOwnFill(tx: Executor, job: Job, trade: Trade, order: ExchangeOrder): Promise<void> {
  const other = await tx.get<{ client_order_id: string }>(SAME_EXCHANGE_ORDER, [job.id, order.exchangeOrderId, trade.clientOrderId, trade.clientOrderId]);
  if (other === undefined) return;
  const error = new RuleError(
    'DUPLICATE_ORDER',
    `the exchange answered order ${trade.clientOrderId} with its order ${order.exchangeOrderId}, which trade ${other.client_order_id} of this job already records: ` +
      `either the adapter maps two clientOrderIds to one exchange order (clientOrderIds cut or hashed to the exchange's length must stay one-to-one), ` +
      `or this exchange is not the one that trade was placed at and reuses its ids (another account or instance); ${trade.clientOrderId} is left PENDING, not settled`,
    { hint: `fix the adapter or point the daemon back at its exchange, find out there what became of ${trade.clientOrderId}, stop the daemons and settle it (botstate settle), then resume the job` },
  );
  STOPS_THE_JOB.add(error);
  LEAVES_IT_PENDING.add(error);
  throw error;
}

/**
 * Whether a settled trade records exactly the exchange's fill: its side, base, quote and price,
 * and no other order's id (another exchange order id is another fill, as for the ledger).
 */
function sameAmounts(trade: Trade, order: ExchangeOrder): boolean {
  const same = (a: string | null, b: string) => a !== null && cmp(a, b) === 0;
  return (
    trade.side === order.side && same(trade.baseAmount, order.baseAmount) && same(trade.quoteAmount, order.quoteAmount) && same(trade.priceUsd, order.price) &&
    (trade.exchangeOrderId === null || trade.exchangeOrderId === order.exchangeOrderId)
  );
}

/** What is said of an error: exchange and strategy errors are not botstate bugs, and keep their own message. */
function messageOf(e: unknown): string {
  return isBotstateError(e) || !(e instanceof Error) ? coerceError(e).message : errorText(e);
}

/**
 * The exchange's order under this clientOrderId must be this intent. A clientOrderId can only
 * come back with another order if committed intents were lost (a restored backup, a power cut
 * or a PostgreSQL crash in `process` durability) and the id was derived again for a new one:
 * then nothing is settled, and the job stops with the reason (the trade stays PENDING for an
 * operator to look at).
 *
 * An exchange fills what it can of the amount asked (lot sizes, rounding, a price step): a fill
 * of no more than the intent asked for, in the intent's own terms (baseAmount or quoteAmount),
 * on its side and token, is its fill, and the ledger records the exchange's amounts. More than
 * was asked, another side or another token is another order. (A reused id for a smaller order
 * of the same side and token cannot be told apart from a rounded fill.)
 */
function checkSameOrder(job: Job, trade: Trade, order: ExchangeOrder): void {
  // A rejection moved nothing, and an open order's amounts are not final: only a fill's are compared.
  const beyond = order.status === 'FILLED' ? beyondAsked(trade, order) : undefined;
  // What differs, and what the Exchange contract asks of an adapter that would answer so (the
  // likelier cause with a new adapter than lost intents).
  const [problem, contract] =
    order.side !== trade.side
      ? [`it is a ${order.side}, the intent a ${trade.side}`, 'the side the order was placed with']
      : order.token.toLowerCase() !== job.tokenAddress.toLowerCase()
        ? [`it is for ${order.token}, the intent for ${job.tokenAddress}`, "the token's address, not the market's name"]
        : beyond !== undefined
          ? [`its ${beyond.field} is ${String(beyond.got)}, more than the intent asked for, ${String(beyond.asked)}`, 'no more than was asked, a fee charged on top included']
          : [undefined, undefined];
  if (problem === undefined) return;
  // The intent never went out under its id: the exchange's order is another trade (a fill of more
  // than asked too: the ledger refuses it as this intent's, as the daemon does). Or the adapter
  // maps the exchange's answer wrongly: a side or token mapped right once it is fixed settles the
  // intent; an order that did move more than asked stays what it is, and is reconciled by hand.
  const byHand = `stop the daemons, botstate settle ${trade.clientOrderId} --status failed --error TEXT, and record the exchange's order with botstate record under a clientOrderId of its own`;
  const fixed = beyond === undefined ? 'the intent is settled once it does' : 'for the later orders; reconcile this one by hand';
  throw new Error(
    `the exchange's order ${trade.clientOrderId} is not this intent (${problem}): either the exchange adapter answers otherwise than ` +
      `the Exchange contract asks (${contract}: fix it; ${fixed}), or a clientOrderId was reused after committed intents were lost ` +
      `(reconcile it by hand: ${byHand})`,
  );
}

/**
 * The daemon's transactions whose bodies let every error through (no call in them is caught and
 * gone on from): atomic, without a savepoint around each call (two round trips fewer per call on
 * PostgreSQL). Not those that write each leaving job's state apart (#flushBeforeLeaving catches).
 */
const ATOMIC = { atomic: true } as const;

/** How often an order that stays open at the exchange is said again, counted from its intent's recording. */
const OPEN_REMINDER_MS = 10 * 60_000;

/** The daemon's actors, `daemon:` and the id, and its recovery's with `:recovery`, are at most an actor's length. */
const MAX_INSTANCE_ID = MAX_ACTOR_LENGTH - 'daemon:'.length - ':recovery'.length;
const DAEMON_OPTIONS = ['store', 'exchange', 'tickMs', 'leaseTtlMs', 'concurrency', 'maxFailures', 'marketDownMs', 'flushMs', 'maxJobs', 'exchangeTimeoutMs', 'log', 'instanceId'];

/** DaemonOptions.maxFailures's default (the CLI's --max-failures). */
export const DEFAULT_MAX_FAILURES = 5;
/** DaemonOptions.marketDownMs's default (the CLI's --market-down). */
export const DEFAULT_MARKET_DOWN_MS = 60_000;

/** The shortest lease TTL a daemon takes (DaemonOptions.leaseTtlMs, the CLI's --lease-ttl). */
export const MIN_LEASE_TTL_MS = 100;

/** Refuses an unknown option or a count or duration that is not a positive whole number (0, NaN, 1.5). */
function checkDaemonOptions(options: DaemonOptions): void {
  const bad = (message: string) => new ValidationError('INVALID_ARGUMENT', message, { hint: 'see DaemonOptions' });
  for (const key of Object.keys(options)) if (!DAEMON_OPTIONS.includes(key)) throw bad(`unknown daemon option "${key}"`);
  for (const key of ['tickMs', 'leaseTtlMs', 'concurrency', 'maxFailures', 'marketDownMs', 'flushMs', 'maxJobs', 'exchangeTimeoutMs'] as const) {
    const v = options[key];
    if (v !== undefined && !(Number.isSafeInteger(v) && v > 0)) throw bad(`daemon option ${key} must be a positive whole number, got ${described(v)}`);
  }
  // Renewed every third of it: a lease of a few milliseconds would be lost to any pause of the
  // event loop, its jobs moving between daemons all the time. The CLI's --lease-ttl has the same floor.
  if (options.leaseTtlMs !== undefined && options.leaseTtlMs < MIN_LEASE_TTL_MS) {
    throw bad(`daemon option leaseTtlMs must be at least ${MIN_LEASE_TTL_MS}, got ${options.leaseTtlMs}`);
  }
  // Kept on the instance row in 32-bit columns.
  for (const key of ['maxJobs', 'leaseTtlMs'] as const) {
    const v = options[key];
    if (v !== undefined && v > 2_147_483_647) throw bad(`daemon option ${key} must be at most 2147483647, got ${v}`);
  }
  // It names the daemon's leases and, as daemon:<id>, the actor of every write it makes: an id the
  // audit log cannot store would leave the daemon holding jobs it can neither trade nor mark ERROR.
  const id: unknown = options.instanceId;
  if (id !== undefined && (typeof id !== 'string' || id.length === 0 || id.length > MAX_INSTANCE_ID || !isStorableText(id) || id.trim() !== id)) {
    throw bad(`daemon option instanceId must be 1 to ${MAX_INSTANCE_ID} characters of well-formed text, without NUL or surrounding blanks, got ${typeof id === 'string' ? JSON.stringify(shown(id)) : described(id)}`);
  }
  if (typeof options.store?.transaction !== 'function') throw bad('daemon option store must be a Store (openStore)');
  for (const method of ['placeOrder', 'getOrder', 'getPrice', 'getBalances'] as const) {
    if (typeof options.exchange?.[method] !== 'function') throw bad(`daemon option exchange has no ${method} method: it must implement the Exchange interface`);
  }
  const exchangeId: unknown = options.exchange.id;
  if (exchangeId !== undefined && (typeof exchangeId !== 'string' || exchangeId === '' || !isStorableText(exchangeId))) {
    throw bad(`daemon option exchange's id must be a non-empty string of well-formed text, got ${described(exchangeId)}`);
  }
}

/**
 * A price as an adapter gave it, in the canonical form the strategies decide on when it is an
 * exact decimal string in any other form ("0.37000000", as exchanges' APIs write them, is 0.37):
 * nothing is rounded. A string that is not one is refused here with its reason (19 decimals, an
 * exponent, a sign: the step fails); a price of 0, or not a string, is the strategy's to refuse.
 */
function exactPrice(price: string): string {
  if (typeof price !== 'string') return price; // an adapter's number: the strategy says why not
  return parseDecimal(price, { field: 'price' });
}

/**
 * The adapter with every call bounded by `ms`: a call that has not answered by then is an
 * ExchangeUnavailableError (what it did is unknown, as after a dropped answer). The call itself
 * goes on; its late answer is ignored. Once `stopping()`, a call is not made at all: it fails at
 * once with StopAsked.
 */
function timed(exchange: Exchange, ms: number, stopping: () => boolean): Exchange {
  const bound = <A extends unknown[], R>(name: string, call: (...args: A) => Promise<R>) =>
    (...args: A): Promise<R> => {
      // Once a stop is asked for, no call starts: the stop waits only for the calls already made.
      if (stopping()) return Promise.reject(new StopAsked(name, args[0]));
      let answer: Promise<R>;
      try {
        answer = Promise.resolve(call.apply(exchange, args));
      } catch (e) {
        return Promise.reject(e); // an adapter that throws instead of rejecting
      }
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ExchangeUnavailableError(`the exchange did not answer ${name} within ${ms} ms`)), ms);
        timer.unref(); // a call nobody waits for (the registration's probe) keeps no stopped process alive
      });
      return Promise.race([answer, late]).finally(() => clearTimeout(timer));
    };
  return {
    get id() {
      return exchange.id; // read when used: the demo's exchange has none until its paper exchange starts
    },
    placeOrder: bound('placeOrder', exchange.placeOrder),
    getOrder: bound('getOrder', exchange.getOrder),
    getPrice: bound('getPrice', exchange.getPrice),
    getBalances: bound('getBalances', exchange.getBalances),
    ...(exchange.getPrices ? { getPrices: bound('getPrices', exchange.getPrices) } : {}),
    ...(exchange.getOrders ? { getOrders: bound('getOrders', exchange.getOrders) } : {}),
  };
}

/**
 * An order as an exchange adapter returned it, checked before anything is settled from it,
 * whatever the adapter (HttpExchange checks its HTTP answers too): every field of the contract
 * with its type, amounts that are exact decimal strings (read in canonical form: "25.00000000" is
 * 25), a time with a zone, the status FILLED, REJECTED or OPEN (an unknown status such as
 * PARTIALLY_FILLED, or a lowercase one, is not read as any of them), a fill with a positive
 * amount and price (a BUY's quote positive too; a SELL may fetch 0, as the ledger allows) and an
 * exchangeOrderId the ledger stores (a rejection may have none), and the clientOrderId asked
 * about (an adapter that answered with another order would otherwise record a fill that never
 * happened).
 * @throws ExchangeInvalidAnswerError: the step fails and the intent stays PENDING.
 */
function answered(order: unknown, trade: Trade): ExchangeOrder {
  const what = `order ${trade.clientOrderId}`;
  const checked = parseExchangeOrder(order, what);
  if (checked.clientOrderId !== trade.clientOrderId) {
    throw new ExchangeInvalidAnswerError(`invalid answer from the exchange to ${what}: it is order ${checked.clientOrderId}`);
  }
  // A fill of nothing or at no price is no fill, nor is a BUY for nothing (a quote of 0 would pass
  // for "no more than the intent asked for", checkSameOrder). A SELL may fetch 0 (the last of a
  // worthless token), as the ledger takes it.
  const free = trade.side === 'BUY' && cmp(checked.quoteAmount, '0') <= 0;
  if (checked.status === 'FILLED' && (cmp(checked.baseAmount, '0') <= 0 || free || cmp(checked.price, '0') <= 0)) {
    throw new ExchangeInvalidAnswerError(`invalid answer from the exchange to ${what}: a fill of ${checked.baseAmount} for ${checked.quoteAmount} at ${checked.price}`);
  }
  // A rejection executed nothing. One carrying amounts is a partial fill the adapter reported as
  // REJECTED (an order the exchange cancelled or let expire after part of it filled), whose fill
  // would be lost, the job buying again; or amounts that are what it asked for: which, cannot be
  // told, and the intent stays PENDING until the adapter answers with what executed.
  if (checked.status === 'REJECTED' && (cmp(checked.baseAmount, '0') > 0 || cmp(checked.quoteAmount, '0') > 0)) {
    throw new ExchangeInvalidAnswerError(
      `invalid answer from the exchange to ${what}: REJECTED with amounts ${checked.baseAmount} and ${checked.quoteAmount}; ` +
        'a REJECTED order executed nothing and says so with amounts 0: if these are the amounts it asked for, the adapter answers 0; ' +
        'if part of it filled before the exchange cancelled the rest, the adapter answers FILLED with what filled (see ExchangeOrder.status)',
    );
  }
  // Nor is a fill whose amounts and price cannot be one trade (a unit or scale wrong by a factor of 10 or more).
  const disagree = checked.status === 'FILLED' ? amountsDisagree(checked.baseAmount, checked.quoteAmount, checked.price) : undefined;
  if (disagree !== undefined) throw new ExchangeInvalidAnswerError(`invalid answer from the exchange to ${what}: its amounts disagree (${disagree})`);
  // A rejection with an empty reason ("" or blanks, as some exchanges send) is a rejection that
  // gives none: recorded with the daemon's own words, since the ledger keeps no blank reason.
  if (checked.error !== null && checked.error.trim() === '') return { ...checked, error: null };
  return checked;
}

/** A market, as the tick's prices are keyed: its chain and token. */
function marketKey(chain: string, token: string): string {
  return `${chain}:${token}`;
}

function market(job: Job): string {
  return marketKey(job.chain, job.tokenAddress);
}

function orderRequest(job: Job, trade: Trade): OrderRequest {
  const base = { clientOrderId: trade.clientOrderId, token: job.tokenAddress, chain: job.chain, side: trade.side };
  return trade.baseAmount !== null ? { ...base, baseAmount: trade.baseAmount } : { ...base, quoteAmount: trade.quoteAmount! };
}

/** A REJECTED order for an intent the exchange refused to take, `why` its error. */
function refused(job: Job, trade: Trade, why: string): ExchangeOrder {
  return {
    clientOrderId: trade.clientOrderId,
    exchangeOrderId: '',
    token: job.tokenAddress,
    side: trade.side,
    status: 'REJECTED',
    baseAmount: '0',
    quoteAmount: '0',
    price: '0',
    error: why.slice(0, 500),
    time: new Date().toISOString(),
  };
}

/**
 * An exchange call that was not made because a stop was asked for (see timed): nothing reached the
 * exchange. Not an outage, nor an unknown outcome, nor a failure of the job: nothing is counted,
 * and an intent whose order was not sent again stays PENDING, for the next start's recovery to send it
 * under its clientOrderId (the protocol's usual path for an order whose answer was lost).
 */
class StopAsked extends Error {
  /** The clientOrderId of the order not sent (placeOrder), said in the log. */
  readonly order: string | undefined;

  constructor(call: string, arg: unknown) {
    const order = call === 'placeOrder' ? (arg as OrderRequest | undefined)?.clientOrderId : undefined;
    super(order === undefined ? `${call} not called: the daemon is stopping` : `order ${order} not sent: the daemon is stopping; it stays PENDING, for the next start to reconcile`);
    this.order = order;
  }
}

/** Refuses a second start, or a start or registration after stop(). */
function startedOnce(message: string): BotstateError {
  return new ValidationError('INVALID_ARGUMENT', message, { hint: 'a Daemon runs once: create a new Daemon to run again' });
}

function stamp(): string {
  return new Date().toISOString();
}

/** Jobs read per statement when only some are needed (recovery): one round trip for 100 intents. */
const LOAD_CHUNK = 100;
const LOAD_BY_IDS = `SELECT ${JOB_COLUMNS} FROM jobs WHERE id IN (${Array(LOAD_CHUNK).fill('?').join(', ')})`;

/** At most `limit` tasks at a time; the others wait their turn in order. */
class Slots {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.#free = limit;
  }

  async run(fn: () => Promise<void>): Promise<void> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      await fn();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function forEach<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
