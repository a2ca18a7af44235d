import { insertAudit, jobStream, prepareAudit, GENESIS_HASH } from '../audit/audit.ts';
import { BotstateError, InvalidTransitionError, RuleError, ValidationError } from '../errors.ts';
import { isZero, parseDecimal, worthNothing } from '../money/decimal.ts';
import type { Executor } from '../store/adapter.ts';
import type { CallOptions, Context } from '../store/context.ts';
import { uuidv7 } from '../util/ids.ts';
import { storableText } from '../util/text.ts';
import { inputObject, shown } from '../util/values.ts';
import { checkNotAhead, isIsoTime, notIsoTime } from '../util/time.ts';
import { normalizeAddress } from './address.ts';
import { defaultConfig, resolveConfig, serializeConfig } from './config.ts';
import {
  changedFields,
  JOB_COLUMNS,
  lockJob,
  normalizeChain,
  requireJob,
  scratchText,
  selectJob,
  toJob,
  updateJob,
  type Job,
  type JobChange,
  type JobRef,
  type JobRow,
} from './job-rows.ts';
import {
  allowedActions,
  JOB_MODES,
  JOB_STATUSES,
  TRANSITIONS,
  type JobMode,
  type JobStatus,
  type LifecycleAction,
} from './lifecycle.ts';

export interface StartJobInput {
  /** Any case; a mixed-case address must carry a valid EIP-55 checksum. */
  readonly tokenAddress: string;
  readonly tokenSymbol?: string;
  /** Default `base`. */
  readonly chain?: string;
  /** Default ACCUMULATE for a new job; an IDLE job may switch mode when started again. */
  readonly mode?: JobMode;
  /**
   * A partial config object applied over the current config (a Job's `config` is one), each
   * value a decimal string such as `"0.5"`, an integer, or null for a limit. JSON text goes
   * through `parseConfigJson`, which keeps every number exact; a JS number other than an integer
   * is refused (`0.1` is not exact). Single values can also go in `set`.
   */
  readonly config?: unknown;
  /** `section.key=value` strings, applied after `config`. */
  readonly set?: readonly string[];
}

export interface ConfigureInput {
  /** As {@link StartJobInput.config}. */
  readonly config?: unknown;
  readonly set?: readonly string[];
}

/** A job whose row cannot be read (see {@link Jobs.scan}): what identifies it, and what is wrong. */
export interface DamagedJob {
  readonly id: string;
  readonly chain: string;
  readonly tokenAddress: string;
  /** As stored. */
  readonly status: string;
  /** STORAGE_CORRUPT, naming the field and what is wrong with it. */
  readonly error: BotstateError;
}

/** Options of {@link Jobs.completeLiquidation}. */
export interface CompleteLiquidationOptions extends CallOptions {
  /** The token's USD price now: a balance worth less than 10⁻¹⁸ USD at it is dust the job may keep. */
  readonly priceUsd?: string;
}

/** Audited fields a strategy moves between ticks. */
export type StrategyStatePatch = Partial<Pick<Job, 'recentHigh' | 'recentHighTime' | 'lastDcaBuyTime' | 'lastRebalanceTime'>>;

const STATE_TIMES = ['recentHighTime', 'lastDcaBuyTime', 'lastRebalanceTime'] as const;

/**
 * The patch with recentHigh canonical (a decimal ≥ 0) and each time null or a real ISO 8601 UTC
 * time with milliseconds; anything else is refused before it is stored (a stored "abc" or
 * "yesterday" broke every later comparison of the job).
 */
function checkStatePatch(patch: StrategyStatePatch): StrategyStatePatch {
  if (typeof patch !== 'object' || patch === null) throw new ValidationError('INVALID_ARGUMENT', 'the state patch must be an object', { hint: "e.g. { recentHigh: '1.5' }" });
  const out: { -readonly [K in keyof StrategyStatePatch]: StrategyStatePatch[K] } = {};
  for (const [key, value] of Object.entries(patch)) {
    // A key given as undefined is left out, as its optional type says (and JSON would drop it).
    if (value === undefined) continue;
    if (key === 'recentHigh') {
      out.recentHigh = parseDecimal(value as string, { field: 'recentHigh' });
    } else if ((STATE_TIMES as readonly string[]).includes(key)) {
      if (value !== null && !isIsoTime(value)) {
        throw new ValidationError('INVALID_ARGUMENT', notIsoTime(key, value), {
          hint: 'pass new Date(ms).toISOString(), or null',
        });
      }
      // As a fill's executedAt: lastDcaBuyTime in the future would hold the DCA buys back until then.
      if (value !== null) checkNotAhead(key, value, "pass a time already past (up to 5 minutes ahead of this host's clock is taken)");
      out[key as (typeof STATE_TIMES)[number]] = value;
    } else {
      throw new ValidationError('INVALID_ARGUMENT', `"${key}" is not a strategy state field`, {
        hint: 'updateState takes recentHigh, recentHighTime, lastDcaBuyTime and lastRebalanceTime',
      });
    }
  }
  return out;
}

const SYMBOL = /^[A-Za-z0-9$._-]{1,32}$/;

function checkSymbol(symbol: string): string {
  // A string only: a number passes the pattern as text, and would be stored as other text than returned.
  if (typeof symbol !== 'string' || !SYMBOL.test(symbol)) {
    throw new ValidationError('INVALID_ARGUMENT', `token symbol ${JSON.stringify(shown(symbol))} is not allowed`, {
      hint: 'use 1 to 32 ASCII letters (A-Z, a-z), digits or $ . _ -',
    });
  }
  return symbol;
}

function checkMode(mode: string): JobMode {
  if (!(JOB_MODES as readonly string[]).includes(mode)) {
    throw new ValidationError('INVALID_ARGUMENT', `mode ${JSON.stringify(shown(mode))} is not one of ${JOB_MODES.join(', ')}`, {
      hint: `use ${JOB_MODES.join(' or ')}, in capitals (the CLI's --mode takes them in lower case)`,
    });
  }
  return mode as JobMode;
}

function checkStatus(status: string): JobStatus {
  if (!(JOB_STATUSES as readonly string[]).includes(status)) {
    throw new ValidationError('INVALID_ARGUMENT', `status ${JSON.stringify(shown(status))} is not one of ${JOB_STATUSES.join(', ')}`, {
      hint: "use one of them, in capitals (the CLI's --status takes them in lower case)",
    });
  }
  return status as JobStatus;
}

/** `0xbbd9…2B07`: the symbol of a job started without one. */
function shortAddress(address: string): string {
  return `${address.slice(0, 6)}…${address.slice(-4)}`;
}

/** A start's input, checked and normalised without the database. */
function startInput(input: StartJobInput) {
  inputObject(input, 'the start input', ['tokenAddress', 'tokenSymbol', 'chain', 'mode', 'config', 'set']);
  const tokenAddress = normalizeAddress(input.tokenAddress);
  const chain = normalizeChain(input.chain);
  const mode = input.mode === undefined ? undefined : checkMode(input.mode);
  // The symbol botstate gave a job started without one (0xbbd9…2B07) may be passed back as it is.
  const symbol = input.tokenSymbol === undefined || input.tokenSymbol === shortAddress(tokenAddress) ? input.tokenSymbol : checkSymbol(input.tokenSymbol);
  const set = input.set ?? [];
  // The config against the defaults, before the database is touched: a bad value is reported as
  // such whether or not the job exists.
  resolveConfig(defaultConfig(), input.config, set);
  return { tokenAddress, chain, mode, symbol, set };
}

/**
 * Throws what {@link Jobs.start} would refuse in its input alone (an address, a mode, a symbol,
 * a config value), without a database: the CLI checks before it opens (and maybe creates) one.
 */
export function checkStartInput(input: StartJobInput): void {
  startInput(input);
}

/** Throws what {@link Jobs.configure} would refuse in its input alone (an unknown key, a bad value). */
export function checkConfigureInput(input: ConfigureInput): void {
  inputObject(input, 'the configure input', ['config', 'set']);
  resolveConfig(defaultConfig(), input.config, input.set ?? []);
}

/**
 * Jobs and their lifecycle. Every change is one transaction: a guarded update of the job row
 * plus its audit entry.
 *
 * @example
 * const job = await store.jobs.start({ tokenAddress: '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07', set: ['accumulate.dcaAmount=25'] });
 * await store.jobs.pause({ id: job.id });
 */
export class Jobs {
  readonly #ctx: Context;

  constructor(ctx: Context) {
    this.#ctx = ctx;
  }

  /**
   * Starts a job: creates it (RUNNING) if the token has none on that chain, else moves it
   * IDLE → RUNNING, applying any mode, symbol and config changes in the same transaction.
   */
  async start(input: StartJobInput, options?: CallOptions): Promise<Job> {
    const { tokenAddress, chain, mode, symbol, set } = startInput(input);
    const actor = this.#ctx.actorFor(options);
    return this.#ctx.write(options, async (tx) => {
      const existing = await selectJob(tx, this.#ctx.adapter.dialect, { tokenAddress, chain }, true);
      const at = new Date().toISOString();
      if (!existing) {
        const config = resolveConfig(defaultConfig(), input.config, set);
        return toJob(await this.#insert(tx, { tokenAddress, chain, symbol: symbol ?? shortAddress(tokenAddress), mode: mode ?? 'ACCUMULATE', config: serializeConfig(config), at, actor }));
      }
      const job = this.#check(existing, 'start');
      const changes: JobChange = { status: 'RUNNING', statusReason: null, startedAt: at, stoppedAt: null };
      if (mode !== undefined && mode !== job.mode) Object.assign(changes, { mode });
      if (symbol !== undefined && symbol !== job.tokenSymbol) Object.assign(changes, { tokenSymbol: symbol });
      if (input.config !== undefined || set.length > 0) {
        const config = resolveConfig(job.config, input.config, set);
        Object.assign(changes, { config });
      }
      return toJob(await updateJob(tx, this.#ctx.adapter.dialect, existing, { set: changes, at, actor, action: 'start' }));
    });
  }

  /** RUNNING → PAUSED: stops trading, keeps the position. */
  pause(ref: JobRef, options?: CallOptions): Promise<Job> {
    return this.#transition(ref, 'pause', (at) => ({ stoppedAt: at }), options);
  }

  /** PAUSED or ERROR → RUNNING. Clears the error reason. */
  resume(ref: JobRef, options?: CallOptions): Promise<Job> {
    return this.#transition(ref, 'resume', (at) => ({ statusReason: null, startedAt: at, stoppedAt: null }), options);
  }

  /** RUNNING, PAUSED or ERROR → LIQUIDATING: sell everything, then return to IDLE. */
  liquidate(ref: JobRef, options?: CallOptions): Promise<Job> {
    return this.#transition(ref, 'liquidate', () => ({ statusReason: null }), options);
  }

  /**
   * LIQUIDATING → IDLE, once the balance is zero; or, given `priceUsd`, once what is left is worth
   * less than 10⁻¹⁸ USD at that price (dust no order can sell, which the job keeps; the audit entry
   * records the price).
   */
  async completeLiquidation(ref: JobRef, options?: CompleteLiquidationOptions): Promise<Job> {
    const price = options?.priceUsd === undefined ? undefined : parseDecimal(options.priceUsd, { field: 'priceUsd' });
    if (price !== undefined && isZero(price)) {
      throw new ValidationError('INVALID_AMOUNT', 'priceUsd must be greater than 0, got 0', { hint: "give the token's USD price" });
    }
    return this.#transition(
      ref,
      'completeLiquidation',
      async (at, job, tx) => {
        // An open intent may still fill (a buy would leave an IDLE job holding tokens).
        const open = Number((await tx.get<{ n: number | string }>("SELECT count(*) AS n FROM trades WHERE job_id = ? AND status = 'PENDING'", [job.id]))?.n ?? 0);
        if (open > 0) {
          throw new InvalidTransitionError(
            'INVALID_TRANSITION',
            `cannot completeLiquidation the job for ${job.tokenAddress} on ${job.chain}: ${open} of its orders ${open === 1 ? 'is' : 'are'} still PENDING`,
            {
              hint: 'settle its open intents first (ledger.settle), as the daemon does',
              details: { status: job.status, action: 'completeLiquidation', pending: open },
            },
          );
        }
        const dust = price !== undefined && worthNothing(job.tokenBalance, price);
        if (!isZero(job.tokenBalance) && !dust) {
          const allowed = allowedActions(job.status);
          throw new InvalidTransitionError(
            'INVALID_TRANSITION',
            `cannot completeLiquidation the job for ${job.tokenAddress} on ${job.chain} yet: it still holds ${job.tokenBalance} tokens`,
            {
              hint: price === undefined ? 'record the remaining sells first' : `record the remaining sells first (at ${price} USD they are worth 10⁻¹⁸ USD or more)`,
              details: { status: job.status, action: 'completeLiquidation', allowed, tokenBalance: job.tokenBalance },
            },
          );
        }
        return { stoppedAt: at };
      },
      options,
      price === undefined ? undefined : { priceUsd: price },
    );
  }

  /** Any status → ERROR, keeping the reason. */
  async fail(ref: JobRef, reason: string, options?: CallOptions): Promise<Job> {
    if (typeof reason !== 'string' || reason.trim() === '') throw new ValidationError('INVALID_ARGUMENT', 'a failure needs a reason', { hint: 'say why the job failed' });
    return this.#transition(ref, 'fail', (at) => ({ statusReason: storableText(reason, 2000), stoppedAt: at }), options);
  }

  /** Changes a job's config in any status (validated, audited). */
  async configure(ref: JobRef, input: ConfigureInput, options?: CallOptions): Promise<Job> {
    checkConfigureInput(input);
    const set = input.set ?? [];
    const actor = this.#ctx.actorFor(options);
    return this.#ctx.write(options, async (tx) => {
      const row = await lockJob(tx, this.#ctx.adapter.dialect, ref, options);
      const job = toJob(row);
      const config = resolveConfig(job.config, input.config, set);
      if (changedFields(job, { config }).length === 0) return job;
      return toJob(await updateJob(tx, this.#ctx.adapter.dialect, row, { set: { config }, at: new Date().toISOString(), actor, action: 'configure' }));
    });
  }

  /** Persists the audited strategy fields: recentHigh, recentHighTime, lastDcaBuyTime, lastRebalanceTime (the strategy's own document is {@link saveScratch}'s). */
  async updateState(ref: JobRef, patch: StrategyStatePatch, options?: CallOptions): Promise<Job> {
    patch = checkStatePatch(patch);
    const actor = this.#ctx.actorFor(options);
    return this.#ctx.write(options, async (tx) => {
      const row = await lockJob(tx, this.#ctx.adapter.dialect, ref, options);
      const job = toJob(row);
      if (changedFields(job, patch).length === 0) return job;
      return toJob(await updateJob(tx, this.#ctx.adapter.dialect, row, { set: patch, at: new Date().toISOString(), actor, action: 'state' }));
    });
  }

  /**
   * Persists the strategy's scratch document (a JSON object of at most 64 KiB). Not audited and
   * not versioned: it is working memory (a price window, counters) that a strategy can rebuild,
   * unlike the audited fields of {@link updateState}.
   */
  async saveScratch(ref: JobRef, doc: Readonly<Record<string, unknown>>, options?: CallOptions): Promise<void> {
    const text = scratchText(doc);
    await this.#ctx.write(options, async (tx) => {
      const row = await lockJob(tx, this.#ctx.adapter.dialect, ref, options);
      if (row.strategy_state !== text) await tx.run('UPDATE jobs SET strategy_state = ? WHERE id = ?', [text, row.id]);
    });
  }

  /** The job, or undefined. */
  async find(ref: JobRef, options?: CallOptions): Promise<Job | undefined> {
    const row = await this.#ctx.read(options, (tx) => selectJob(tx, this.#ctx.adapter.dialect, ref, false));
    return row && toJob(row);
  }

  /** The job; throws JOB_NOT_FOUND. */
  async get(ref: JobRef, options?: CallOptions): Promise<Job> {
    return toJob(await this.#ctx.read(options, (tx) => requireJob(tx, this.#ctx.adapter.dialect, ref, false)));
  }

  /**
   * Every job (optionally of one status), oldest first. A row that cannot be read (changed
   * outside botstate) fails the whole call with STORAGE_CORRUPT; {@link scan} lists around it.
   */
  async list(filter: { status?: JobStatus } = {}, options?: CallOptions): Promise<Job[]> {
    return (await this.#rows(filter, options)).map(toJob);
  }

  /**
   * Like {@link list}, but a job whose row cannot be read (a field changed outside botstate:
   * STORAGE_CORRUPT) is returned in `damaged`, with what is wrong, instead of failing the call:
   * one damaged row does not hide every other position.
   */
  async scan(filter: { status?: JobStatus } = {}, options?: CallOptions): Promise<{ jobs: Job[]; damaged: DamagedJob[] }> {
    const jobs: Job[] = [];
    const damaged: DamagedJob[] = [];
    for (const row of await this.#rows(filter, options)) {
      try {
        jobs.push(toJob(row));
      } catch (e) {
        if (!(e instanceof BotstateError) || e.code !== 'STORAGE_CORRUPT') throw e;
        damaged.push({ id: row.id, chain: row.chain, tokenAddress: row.token_address, status: row.status, error: e });
      }
    }
    return { jobs, damaged };
  }

  #rows(filter: { status?: JobStatus }, options: CallOptions | undefined): Promise<JobRow[]> {
    const wanted = inputObject(filter, 'the filter', ['status']).status;
    const status = wanted === undefined ? undefined : checkStatus(wanted);
    return this.#ctx.read(options, (tx) =>
      status === undefined
        ? tx.all<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs ORDER BY created_at, id`)
        : tx.all<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE status = ? ORDER BY created_at, id`, [status]),
    );
  }

  async #transition(
    ref: JobRef,
    action: LifecycleAction,
    extra: (at: string, job: Job, tx: Executor) => JobChange | Promise<JobChange>,
    options: CallOptions | undefined,
    detail?: Record<string, unknown>,
  ): Promise<Job> {
    const actor = this.#ctx.actorFor(options);
    return this.#ctx.write(options, async (tx) => {
      const row = await lockJob(tx, this.#ctx.adapter.dialect, ref, options);
      const job = this.#check(row, action);
      const at = new Date().toISOString();
      const set: JobChange = { status: TRANSITIONS[action].to, ...(await extra(at, job, tx)) };
      return toJob(await updateJob(tx, this.#ctx.adapter.dialect, row, { set, at, actor, action, ...(detail ? { detail } : {}) }));
    });
  }

  #check(row: JobRow, action: LifecycleAction): Job {
    const job = toJob(row);
    if (!(TRANSITIONS[action].from as readonly JobStatus[]).includes(job.status)) {
      const allowed = allowedActions(job.status);
      const operator = allowed.filter((a) => a !== 'fail' && a !== 'completeLiquidation');
      const hint =
        job.status === 'LIQUIDATING'
          ? 'wait for the liquidation to finish: the daemon sells the balance, then returns the job to IDLE'
          : `use one of: ${operator.join(', ')}`;
      throw new InvalidTransitionError(
        'INVALID_TRANSITION',
        // The hint names what an operator can do (the CLI's commands); details.allowed also holds
        // the actions only the library and the daemon take (fail, completeLiquidation).
        `cannot ${action} the job for ${job.tokenAddress} on ${job.chain}: it is ${job.status}`,
        { hint, details: { status: job.status, action, allowed } },
      );
    }
    return job;
  }

  async #insert(
    tx: Executor,
    j: { tokenAddress: string; chain: string; symbol: string; mode: JobMode; config: string; at: string; actor: string },
  ): Promise<JobRow> {
    const row: JobRow = {
      id: uuidv7(),
      chain: j.chain,
      token_address: j.tokenAddress,
      token_symbol: j.symbol,
      mode: j.mode,
      status: 'RUNNING',
      status_reason: null,
      last_dca_buy_time: null,
      recent_high: '0',
      recent_high_time: null,
      total_accumulated: '0',
      token_balance: '0',
      last_rebalance_time: null,
      config: j.config,
      strategy_state: '{}',
      created_at: j.at,
      updated_at: j.at,
      started_at: j.at,
      stopped_at: null,
      version: 1,
      audit_hash: '',
    };
    const { version: _version, ...snapshot } = toJob(row);
    const prepared = prepareAudit({
      stream: jobStream(row.id),
      seq: 1,
      prevHash: GENESIS_HASH,
      at: j.at,
      actor: j.actor,
      entity: 'job',
      entityId: row.id,
      action: 'create',
      before: null,
      after: snapshot,
    });
    row.audit_hash = prepared.hash;
    const columns = JOB_COLUMNS.split(', ');
    const inserted = await tx.run(
      `INSERT INTO jobs (${JOB_COLUMNS}) VALUES (${columns.map(() => '?').join(', ')}) ON CONFLICT (chain, token_address) DO NOTHING`,
      columns.map((c) => row[c as keyof JobRow]),
    );
    if (inserted !== 1) {
      throw new RuleError('CONCURRENT_MODIFICATION', `a job for ${j.tokenAddress} on ${j.chain} was created meanwhile, by another command or process`, {
        hint: `see it with botstate status ${j.tokenAddress}; start takes only an IDLE job`,
      });
    }
    await insertAudit(tx, prepared);
    return row;
  }
}
