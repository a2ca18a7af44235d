import { closeSync, openSync, readSync } from 'node:fs';
import { StorageError, ValidationError } from '../../errors.ts';
import { CONFIG_KEYS, defaultConfig, parseConfigJson, resolveConfig } from '../../jobs/config.ts';
import type { Job } from '../../jobs/job-rows.ts';
import { limitUsage } from '../../engine/strategies/strategy.ts';
import { JOB_STATUSES, type JobMode, type JobStatus } from '../../jobs/lifecycle.ts';
import { checkConfigureInput, checkStartInput } from '../../jobs/jobs.ts';
import type { Store } from '../../store/store.ts';
import { CHAIN_OPTION, EXISTING, oneOf, READING, timeFlag, tokenRef, withStore, type Command, type CommandContext } from '../command.ts';
import { errorInJson, jobJson, jobsTable, jobView, json, jsonArrayChunks, jsonError, outChunks } from '../output.ts';

const CONFIG_OPTIONS = {
  config: { type: 'string', value: 'FILE', help: 'a JSON file with config values to apply' },
  set: { type: 'string', multiple: true, value: 'S.K=V', help: 'set one config value, e.g. accumulate.dcaAmount=25' },
} as const;

const CONFIG_HELP =
  'Config keys (defaults in brackets; "off" means no limit):\n' +
  CONFIG_KEYS.map((k) => `  ${`${k.section}.${k.key}`.padEnd(34)} ${k.description} [${k.default === null ? 'off' : String(k.default)}]`).join('\n');

/** A config file is a few hundred bytes; one past this (`--config /dev/zero`, a log given by mistake) is refused unread. */
const MAX_CONFIG_BYTES = 1024 * 1024;

/** The file's text, read to its end, or refused as soon as it is longer than `max` bytes (a device or pipe may have no end). */
function readAtMost(path: string, max: number): string {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(max + 1);
    let length = 0;
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) return buffer.toString('utf8', 0, length);
      length += n;
      if (length > max) {
        throw new ValidationError('INVALID_CONFIG', `the config file ${path} is longer than ${max / 1024 / 1024} MiB: a config is a few hundred bytes`, {
          hint: 'check the --config path',
        });
      }
    }
  } finally {
    closeSync(fd);
  }
}

function readConfigFile(ctx: CommandContext): unknown {
  const path = ctx.values['config'];
  if (typeof path !== 'string') return undefined;
  let text: string;
  try {
    // A byte-order mark (Windows editors, PowerShell) is not part of the JSON.
    text = readAtMost(path, MAX_CONFIG_BYTES).replace(/^\uFEFF/, '');
  } catch (e) {
    if (e instanceof ValidationError) throw e;
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new ValidationError('INVALID_CONFIG', `cannot read the config file ${path} (${code})`, { hint: 'check the --config path' });
  }
  const origin = `config file ${path}`;
  const patch = parseConfigJson(text, origin);
  // Checked here too, so that a wrong key or value names the file. Against the defaults: a key's
  // own checks do not depend on the base, and a rule across keys fails here only if the file sets
  // both; the store checks again against the job's own config.
  resolveConfig(defaultConfig(), patch, [], { origin });
  return patch;
}

function sets(ctx: CommandContext): string[] {
  const s = ctx.values['set'];
  return Array.isArray(s) ? s : [];
}

function printJob(ctx: CommandContext, job: Job, headline: string): void {
  ctx.io.out(ctx.json ? json(jobJson(job)) : `${headline}\n${jobView(job)}`);
}

const start: Command = {
  name: 'start',
  summary: 'start a job for a token (creating it if new)',
  usage: '<token> [--mode accumulate|liquidity] [--symbol S] [--chain C] [--config FILE] [--set S.K=V …]',
  details: `A new job starts RUNNING; an existing job must be IDLE.\n\n${CONFIG_HELP}`,
  options: {
    mode: { type: 'string', value: 'M', help: 'accumulate or liquidity (default accumulate for a new job)' },
    symbol: { type: 'string', value: 'S', help: 'the token symbol, e.g. LGI' },
    ...CHAIN_OPTION,
    ...CONFIG_OPTIONS,
  },
  positionals: [1, 1],
  async run(ctx) {
    const ref = tokenRef(ctx) as { tokenAddress: string; chain: string };
    const modeFlag = ctx.values['mode'];
    let mode: JobMode | undefined;
    if (typeof modeFlag === 'string') {
      const upper = modeFlag.toUpperCase();
      if (upper !== 'ACCUMULATE' && upper !== 'LIQUIDITY') {
        throw new ValidationError('USAGE', `--mode must be accumulate or liquidity, got "${modeFlag}"`, { hint: 'see botstate start --help' });
      }
      mode = upper;
    }
    const config = readConfigFile(ctx);
    const symbol = ctx.values['symbol'];
    const input = {
      tokenAddress: ref.tokenAddress,
      chain: ref.chain,
      set: sets(ctx),
      ...(mode ? { mode } : {}),
      ...(typeof symbol === 'string' ? { tokenSymbol: symbol } : {}),
      ...(config !== undefined ? { config } : {}),
    };
    checkStartInput(input); // before a database is opened, created or migrated
    // A new database is created and migrated; an outdated one is refused (exit 6) as by every
    // other command, since the start itself may then be refused (a job already RUNNING).
    const job = await withStore(ctx, { schema: 'create' }, (store) => store.jobs.start(input));
    printJob(ctx, job, `Started ${job.mode} job for ${job.tokenSymbol} on ${job.chain}: ${job.status}`);
  },
};

function lifecycle(name: 'pause' | 'resume' | 'liquidate', summary: string, verb: string): Command {
  return {
    name,
    summary,
    usage: '<token> [--chain C]',
    options: { ...CHAIN_OPTION },
    positionals: [1, 1],
    async run(ctx) {
      const ref = tokenRef(ctx);
      const job = await withStore(ctx, EXISTING, (store: Store) => store.jobs[name](ref));
      printJob(ctx, job, `${verb} job for ${job.tokenSymbol} on ${job.chain}: ${job.status}`);
    },
  };
}

const configure: Command = {
  name: 'config',
  summary: "change a job's config (any status)",
  usage: '<token> [--chain C] [--config FILE] [--set S.K=V …]',
  details: CONFIG_HELP,
  options: { ...CHAIN_OPTION, ...CONFIG_OPTIONS },
  positionals: [1, 1],
  async run(ctx) {
    const ref = tokenRef(ctx);
    const config = readConfigFile(ctx);
    if (config === undefined && sets(ctx).length === 0) {
      throw new ValidationError('USAGE', 'nothing to change', { hint: 'pass --set section.key=value or --config FILE' });
    }
    const input = { set: sets(ctx), ...(config !== undefined ? { config } : {}) };
    checkConfigureInput(input);
    const [before, job] = await withStore(ctx, EXISTING, async (store) => {
      const before = await store.jobs.get(ref);
      return [before, await store.jobs.configure(ref, input)] as const;
    });
    // The configs, not the versions: a daemon's write between the two reads changes the version.
    printJob(ctx, job, JSON.stringify(job.config) === JSON.stringify(before.config) ? `Config of ${job.tokenSymbol} on ${job.chain} unchanged (it already held these values):` : `Config of ${job.tokenSymbol} on ${job.chain} is now:`);
  },
};

const status: Command = {
  name: 'status',
  summary: 'show one job: status, the daemon running it, mode, balances, open orders, the limits it has used, and config (now, or as it was at a time)',
  usage: '<token> [--chain C] [--as-of T]',
  details:
    'limitsUsed says what counts against the limits now, from the daemon\'s strategy state: the trades of the last\n' +
    'hour (limits.maxTradesPerHour), and the USD accumulated (accumulate.maxAccumulationUsd) or, for a liquidity job,\n' +
    'the USD traded today, UTC (liquidity.maxDailyVolume) and the liquidity cash left (a liquidation heeds the trade\n' +
    'count only: only it is shown); "(reached)" after one that leaves no order now (less than limits.minTradeUsd of room\n' +
    'counts). Not shown with --as-of, nor for another strategy\'s state.\n' +
    '--as-of T shows the job as it was at T, rebuilt from its audit log (botstate history): its status, balances and\n' +
    'config then; version and updatedAt are those of the last change at or before T. The strategy state is not\n' +
    'audited and is not shown. A time before the job was created is exit 4.',
  options: { ...CHAIN_OPTION, 'as-of': { type: 'string', value: 'T', help: 'show the job as it was then, a UTC time (e.g. 2026-11-26T12:00:00Z)' } },
  positionals: [1, 1],
  async run(ctx) {
    const ref = tokenRef(ctx);
    const at = timeFlag(ctx, 'as-of');
    if (at === undefined) {
      // Two reads (a read-only file takes no transaction of the caller's): an order settled in
      // between shows in the balance and still here, never in neither.
      const [job, open, daemon] = await withStore(ctx, READING, async (store) => {
        const open = await store.ledger.trades(ref, { status: 'PENDING' });
        return [await store.jobs.get(ref), open, await store.daemonFor(ref)] as const;
      });
      // What counts against the limits now, from the daemon's strategy state (none for another strategy's).
      const usage = limitUsage(job);
      return void ctx.io.out(ctx.json ? json({ ...jobJson(job), openOrders: open, daemon, limitsUsed: usage ?? null }) : jobView(job, open, daemon, usage));
    }
    const job = await withStore(ctx, READING, (store) => store.jobAt(ref, at));
    const { strategyState: _, ...audited } = jobJson(job);
    ctx.io.out(ctx.json ? json({ asOf: at, ...audited }) : `as of ${at} (the job's audit log up to version ${job.version})\n${jobView(job)}`);
  },
};

const list: Command = {
  name: 'list',
  summary: 'list every job, with its open orders and the daemon running it',
  usage: `[--status ${JOB_STATUSES.map((s) => s.toLowerCase()).join('|')}]`,
  details:
    'OPEN ORDERS counts the PENDING intents (orders sent or about to be, not yet settled); DAEMON names the daemon ' +
    'holding the job\'s lease (pid N on HOST), "silent (pid N on HOST)" when that daemon was killed or is stalled and its ' +
    'lease is not over yet, "expired" when the lease ran out, "-" when none holds it ' +
    '(botstate status gives both in full). With --json each job also has openOrderCount and daemon (as in status --json). ' +
    'A job whose row cannot be read (changed outside botstate) does not hide the others: every readable job is listed, ' +
    'then the command fails with exit 5 (storage) naming the damaged ones. With --json the document is then an object: ' +
    '{ "jobs": [...], "damaged": [{ id, chain, tokenAddress, status, code, message }], "error": {...} }.',
  options: { status: { type: 'string', value: 'S', help: 'only jobs in this status' } },
  positionals: [0, 0],
  async run(ctx) {
    const s = ctx.values['status'];
    const filter: { status?: JobStatus } = typeof s === 'string' ? { status: oneOf(ctx, 'list', 'status', JOB_STATUSES) } : {};
    // The open intents before the jobs (as status reads them): an order settled in between shows
    // in the balance and still as open, never in neither.
    const { jobs, damaged, open, daemons } = await withStore(ctx, READING, async (store) => {
      const open = await store.ledger.pendingCounts();
      return { ...(await store.jobs.scan(filter)), open, daemons: await store.daemons() };
    });
    const listed = (job: Job) => ({ ...jobJson(job), openOrderCount: open.get(job.id) ?? 0, daemon: daemons.get(job.id) ?? null });
    if (damaged.length === 0) {
      outChunks(ctx.io, ctx.json ? jsonArrayChunks(jobs.map(listed)) : jobsTable(jobs, open, daemons, filter.status));
      return;
    }
    const shown = damaged.slice(0, 3).map((d) => d.error.message).join('; ');
    const more = damaged.length > 3 ? `; and ${damaged.length - 3} more` : '';
    const failure = new StorageError(
      'STORAGE_CORRUPT',
      `${damaged.length === 1 ? '1 job' : `${damaged.length} jobs`} cannot be read${jobs.length > 0 ? ' (the others are listed)' : ''}: ${shown}${more}`,
      { hint: damaged[0]!.error.hint ?? 'botstate verify reports every damaged row' },
    );
    if (ctx.json) {
      const rows = damaged.map((d) => ({ id: d.id, chain: d.chain, tokenAddress: d.tokenAddress, status: d.status, code: d.error.code, message: d.error.message }));
      ctx.io.out(json({ jobs: jobs.map(listed), damaged: rows, error: jsonError(failure) }));
      errorInJson.add(failure);
    } else if (jobs.length > 0) {
      outChunks(ctx.io, jobsTable(jobs, open, daemons));
    }
    throw failure;
  },
};

export const jobCommands: readonly Command[] = [
  start,
  lifecycle('pause', 'pause a RUNNING job (keeps its position)', 'Paused'),
  lifecycle('resume', 'resume a PAUSED or ERROR job', 'Resumed'),
  lifecycle('liquidate', 'sell everything, then return to IDLE', 'Liquidating'),
  status,
  list,
  configure,
];
