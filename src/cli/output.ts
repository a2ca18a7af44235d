import type { AuditEntry } from '../audit/audit.ts';
import { serializeConfig, type JobConfig } from '../jobs/config.ts';
import type { Job } from '../jobs/job-rows.ts';
import { ACTIVE_STATUSES } from '../jobs/lifecycle.ts';
import type { Trade } from '../ledger/ledger.ts';
import { capRoom, type LimitUsage } from '../engine/strategies/strategy.ts';
import { sub, type Decimal } from '../money/decimal.ts';
import type { JobDaemon } from '../store/store.ts';
import { coerceError } from '../errors.ts';
import { escapeControls } from '../util/text.ts';
import { stopsOnSignal } from './signals.ts';
import { isRecord } from '../util/values.ts';

declare global {
  interface JSON {
    rawJSON(text: string): unknown;
  }
}

/** Where a command writes; tests swap these for buffers. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Resolves once what `out` was given has been handed on (a pipe's reader has caught up). */
  drained?(): Promise<void>;
}

let stdoutClosed = false;
/** Set when writing to stdout failed for another reason than its reader going away. */
let stdoutFailed = false;

/** The exit code of a command whose output could not be written (a full disk, say). */
export const OUTPUT_FAILED = 7;

/**
 * When whatever reads our stdout goes away (`botstate list | head`), writing fails with EPIPE.
 * Stop writing, instead of crashing on an unhandled 'error' event: a command then ends as it
 * would have, with its own exit code. A process waiting for a signal to stop (the daemon) is
 * sent SIGTERM, and stops cleanly.
 *
 * The same for a terminal that closed (EIO on a TTY). A file that cannot take the output (`> file`
 * on a full disk: ENOSPC, EDQUOT, EFBIG; an I/O error) is said on stderr in one line, and a
 * command that succeeded exits {@link OUTPUT_FAILED} instead of 0: a script reading the output
 * must not take a cut-short file for a whole one (a command that failed keeps its own code). The
 * error arrives after the write that failed, possibly once the command has returned: it sets the
 * exit code itself, and run() returns it if it came before.
 */
function watchStdout(): void {
  if (process.stdout.listenerCount('error') > 0) return;
  watchStderr();
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (stdoutClosed) return;
    stdoutClosed = true;
    const readerGone = e.code === 'EPIPE' || e.code === 'ECONNRESET' || (e.code === 'EIO' && process.stdout.isTTY === true);
    if (!readerGone) {
      stdoutFailed = true;
      if (!process.exitCode) process.exitCode = OUTPUT_FAILED;
      process.stderr.write(
        `botstate: could not write the output: ${e.code ?? 'error'} (${e.message.replace(/\s+/g, ' ').replace(`${e.code}: `, '')}) (the output is lost or cut short; a change the command made stays made: look with botstate status or list before running it again, and write the output where there is room)\n`,
      );
    }
    // Not while the CLI only holds the signals (bin/botstate.js) and prints help: SIGTERM would
    // then end it with 143 instead of its own exit code.
    if (stopsOnSignal()) process.kill(process.pid, 'SIGTERM');
  });
}

/** stderr may be on the same full disk (`> log 2>&1`): its failure must not crash the process, whose exit code says the rest. */
function watchStderr(): void {
  if (process.stderr.listenerCount('error') === 0) process.stderr.on('error', () => {});
}

/** True once writing to stdout failed other than by its reader going away (see watchStdout). */
export function outputFailed(): boolean {
  return stdoutFailed;
}

export const processIo: Io = {
  out: (text) => {
    watchStdout();
    if (!stdoutClosed) process.stdout.write(text);
  },
  err: (text) => {
    watchStderr();
    process.stderr.write(text);
  },
  drained: () =>
    stdoutClosed || !process.stdout.writableNeedDrain
      ? Promise.resolve()
      : new Promise((resolve) => {
          // The reader going away ends the wait too (the error sets stdoutClosed).
          const done = () => {
            process.stdout.off('drain', done);
            process.stdout.off('error', done);
            process.stdout.off('close', done);
            resolve();
          };
          process.stdout.on('drain', done).on('error', done).on('close', done);
        }),
};

/**
 * The config as a JSON value whose numbers are emitted exactly as stored (JSON.rawJSON), so
 * `botstate status X --json | jq .config` can be fed back with `--config`.
 */
function configJson(config: JobConfig): unknown {
  return JSON.parse(serializeConfig(config), (_key, value, context?: { source?: string }) =>
    typeof value === 'number' && context?.source !== undefined ? JSON.rawJSON(context.source) : value,
  );
}

/** A job as a JSON object: amounts as exact decimal strings, config numbers as exact literals. */
export function jobJson(job: Job): Record<string, unknown> {
  return { ...job, config: configJson(job.config) };
}

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

/** Rows or elements per chunk written: a long listing is written as it is made, never as one string. */
const CHUNK = 1000;

/**
 * `json(items)`, the same text, in chunks: an array of a million trades or entries would be a
 * string longer than V8 allows (about 512 M characters).
 */
export function* jsonArrayChunks(items: readonly unknown[]): Generator<string> {
  if (items.length === 0) {
    yield '[]\n';
    return;
  }
  for (let start = 0; start < items.length; start += CHUNK) yield arrayPart(items.slice(start, start + CHUNK), start === 0);
  yield '\n]\n';
}

/** Elements of a json() array, indented as it indents them, after the `[` or the `,` before them. */
function arrayPart(items: readonly unknown[], first: boolean): string {
  const parts = items.map((item) => `  ${(JSON.stringify(item, null, 2) ?? 'null').replaceAll('\n', '\n  ')}`);
  return `${first ? '[\n' : ',\n'}${parts.join(',\n')}`;
}

/** Writes chunks as they come. */
export function outChunks(io: Io, chunks: Iterable<string>): void {
  for (const chunk of chunks) io.out(chunk);
}

/** Errors whose `{ "error": … }` a command has already printed inside its own JSON document. */
export const errorInJson = new WeakSet<object>();

/**
 * A hint as the CLI gives it, in the error line's brackets and in `--json`: lower case first, no
 * full stop (the library's own hints are sentences: "Set accumulate.dcaAmount to …").
 */
export function hintText(hint: string): string {
  return `${hint.charAt(0).toLowerCase()}${hint.slice(1).replace(/\.$/, '')}`;
}

/** The `error` member of a failed command's JSON document. */
export function jsonError(error: { code: string; message: string; hint?: string | undefined }): { code: string; message: string; hint: string | null } {
  return { code: error.code, message: error.message, hint: error.hint ? hintText(error.hint) : null };
}

/** Left-aligned columns separated by two spaces; `-` for empty cells. */
export function table(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number | null | undefined>>): string {
  return [...tableChunks(headers, rows)].join('');
}

/** `table()`, in chunks of lines (see jsonArrayChunks). */
export function* tableChunks(headers: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number | null | undefined>>): Generator<string> {
  const cells = rows.map(tableCells);
  // A loop, not Math.max(...cells): spread as arguments, 130,000 rows overflow the stack.
  const widths = headers.map((h) => h.length);
  for (const r of cells) widen(widths, r);
  yield `${tableLine(headers, widths)}\n`;
  for (let start = 0; start < cells.length; start += CHUNK) {
    yield `${cells.slice(start, start + CHUNK).map((r) => tableLine(r, widths)).join('\n')}\n`;
  }
}

type Row = ReadonlyArray<string | number | null | undefined>;

/** A row's cells as a table shows them: `-` for an empty one, control characters escaped. */
function tableCells(row: Row): string[] {
  return row.map((c) => (c === null || c === undefined || c === '' ? '-' : escapeControls(String(c))));
}

function widen(widths: number[], cells: readonly string[]): void {
  for (let i = 0; i < cells.length; i++) if (cells[i]!.length > widths[i]!) widths[i] = cells[i]!.length;
}

function tableLine(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
}

/** `key  value` lines, keys aligned. */
export function fields(pairs: ReadonlyArray<readonly [string, string | number | null | undefined]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${k.padEnd(width)}  ${v === null || v === undefined || v === '' ? '-' : escapeControls(String(v))}`).join('\n') + '\n';
}

/** A job's open (PENDING) order, on one line: side, amount, clientOrderId and since when. */
function openOrder(t: Trade): string {
  return `${t.side} ${t.reason} ${askedAmount(t)} (${t.clientOrderId}, since ${t.createdAt})`;
}

/** What an order asks for: `2.5 tokens`, or `for 7.5 quote` (a buy sized in quote). */
function askedAmount(t: Pick<Trade, 'baseAmount' | 'quoteAmount'>): string {
  return t.baseAmount !== null ? `${t.baseAmount} tokens` : `for ${t.quoteAmount} quote`;
}

/**
 * Which daemon runs the job, for an operator: none; one whose lease is current; one silent
 * (killed or stalled) whose lease is not over yet; or one whose lease ran out, which another
 * daemon takes over.
 */
function daemonLine(daemon: JobDaemon | null, job: Job, openOrders: number, now = Date.now()): string {
  // A daemon takes an active job, or one with an open order to reconcile; no other.
  const taken = ACTIVE_STATUSES.includes(job.status) || openOrders > 0;
  if (daemon === null) return `none (no daemon holds its lease)${taken ? ': a running daemon takes it at its next tick, unless none runs or none has room for it (botstate daemons)' : ''}`;
  const who = daemon.host === null ? daemon.instance : `${daemon.instance} (pid ${daemon.pid} on ${daemon.host})`;
  if (Date.parse(daemon.leaseExpiresAt) < now) {
    return `${who}, lease expired at ${daemon.leaseExpiresAt}${daemon.stopped ? '; that daemon stopped' : ''}: ${taken ? 'not running it until a daemon takes it over' : `no daemon takes a job that is ${job.status} with no open order`}`;
  }
  const heartbeat = daemon.heartbeatAt === null ? '' : `, last heartbeat ${daemon.heartbeatAt}`;
  if (!daemon.running) {
    return `${who}, silent (killed or stalled${heartbeat}): not running it; its lease holds the job until ${daemon.leaseExpiresAt}, unless a daemon that starts takes it over`;
  }
  return `${who}, lease until ${daemon.leaseExpiresAt}${heartbeat}`;
}

/** A job's limit usage in one line (see limitUsage): what counts against each limit now, and which are reached. */
function usageLine(u: LimitUsage, job: Job): string {
  const { status } = job;
  const minTradeUsd = job.config.limits.minTradeUsd;
  // A cap with room left, but less than limits.minTradeUsd, is reached too: said why.
  const reached = (key: string, room?: Decimal) =>
    !u.reached.includes(key) ? '' : room === undefined || capRoom(room, minTradeUsd) === 'none' ? ' (reached)' : ' (reached: less than limits.minTradeUsd left)';
  const n = u.tradesLastHour;
  const parts = [`${n} trade${n === 1 ? '' : 's'} in the last hour, of limits.maxTradesPerHour ${u.maxTradesPerHour ?? 'off'}${reached('limits.maxTradesPerHour')}`];
  if (u.accumulatedUsd !== undefined) parts.push(`${u.accumulatedUsd} USD accumulated, of accumulate.maxAccumulationUsd ${u.maxAccumulationUsd}${reached('accumulate.maxAccumulationUsd', sub(u.maxAccumulationUsd!, u.accumulatedUsd))}`);
  if (u.tradedTodayUsd !== undefined) {
    parts.push(`${u.tradedTodayUsd} USD traded on ${u.day} (UTC), of liquidity.maxDailyVolume ${u.maxDailyVolume}${reached('liquidity.maxDailyVolume', sub(u.maxDailyVolume!, u.tradedTodayUsd))}`);
    const spent = !u.reached.includes('liquidity.capitalUsd') ? '' : capRoom(u.cashUsd!, minTradeUsd) === 'none' ? ' (spent)' : ' (less than limits.minTradeUsd)';
    parts.push(`${u.cashUsd} USD of liquidity cash left${spent}`);
  }
  // A limit reached says nothing of a job that does not trade now, and a liquidation heeds only some.
  const note =
    status === 'LIQUIDATING'
      ? ' (a liquidation is held to these only, and to limits.maxOrderUsd per order)'
      : status !== 'RUNNING'
        ? ` (not trading while ${status})`
        : '';
  return `${parts.join('; ')}${note}`;
}

/**
 * `open`: the job's PENDING orders, shown when given (not for a job rebuilt from its history);
 * `daemon`: the daemon holding its lease, likewise.
 */
export function jobView(job: Job, open?: readonly Trade[], daemon?: JobDaemon | null, usage?: LimitUsage): string {
  const configLines = Object.entries(job.config).flatMap(([section, values]) =>
    Object.entries(values as Record<string, unknown>).map(([k, v]) => [`  ${section}.${k}`, v === null ? 'off' : String(v)] as const),
  );
  return fields([
    ['token', `${job.tokenSymbol} ${job.tokenAddress}`],
    ['chain', job.chain],
    ['id', job.id],
    ['status', job.statusReason ? `${job.status} (${job.statusReason})` : job.status],
    ...(daemon === undefined ? [] : [['daemon', daemonLine(daemon, job, open?.length ?? 0)] as const]),
    ['mode', job.mode],
    ['tokenBalance', job.tokenBalance],
    // Not in the balance until filled: what the exchange may already hold.
    ...(open === undefined ? [] : [['openOrders', open.length === 0 ? '' : open.map(openOrder).join('; ')] as const]),
    ['totalAccumulated', job.totalAccumulated],
    ...(usage === undefined ? [] : [['limitsUsed', usageLine(usage, job)] as const]),
    ['recentHigh', job.recentHigh],
    ['lastDcaBuyTime', job.lastDcaBuyTime],
    ['lastRebalanceTime', job.lastRebalanceTime],
    ['createdAt', job.createdAt],
    ['updatedAt', job.updatedAt],
    ['startedAt', job.startedAt],
    ['stoppedAt', job.stoppedAt],
    ['version', job.version],
    ['config', ''],
    ...configLines,
  ]).replace(/^config( +)-$/m, 'config');
}

/**
 * `botstate list`: a row per job, with how many orders it has open (PENDING intents) and the
 * daemon running it: `pid N on HOST` (its instance id if its row is gone), `silent (pid N on
 * HOST)` for a daemon killed or stalled whose lease is not over yet, `expired` for a lease its
 * daemon stopped renewing, `-` when no daemon holds it.
 */
export function jobsTable(jobs: readonly Job[], open: ReadonlyMap<string, number>, daemons: ReadonlyMap<string, JobDaemon>, status?: string, now = Date.now()): Iterable<string> {
  // Filtered, say so: "No jobs." read as an empty database (or the wrong file).
  if (jobs.length === 0) return [status === undefined ? 'No jobs.\n' : `No ${status} jobs.\n`];
  const daemonCell = (d: JobDaemon | undefined) => {
    if (d === undefined) return '-';
    if (Date.parse(d.leaseExpiresAt) < now) return 'expired';
    const who = d.host === null ? d.instance : `pid ${d.pid} on ${d.host}`;
    return d.running ? who : `silent (${who})`;
  };
  return tableChunks(
    ['SYMBOL', 'TOKEN', 'CHAIN', 'MODE', 'STATUS', 'OPEN ORDERS', 'DAEMON', 'TOKEN BALANCE', 'TOTAL ACCUMULATED', 'UPDATED'],
    jobs.map((j) => [j.tokenSymbol, j.tokenAddress, j.chain, j.mode, j.status, String(open.get(j.id) ?? 0), daemonCell(daemons.get(j.id)), j.tokenBalance, j.totalAccumulated, j.updatedAt]),
  );
}

const TRADES_HEADERS = ['CLIENT ORDER ID', 'SIDE', 'REASON', 'STATUS', 'BASE AMOUNT', 'QUOTE AMOUNT', 'PRICE USD', 'CREATED', 'EXECUTED', 'ERROR'];

function tradeRow(t: Trade): Row {
  return [t.clientOrderId, t.side, t.reason, t.status, t.baseAmount, t.quoteAmount, t.priceUsd, t.createdAt, t.executedAt, t.error];
}

export function tradesTable(trades: readonly Trade[]): Iterable<string> {
  if (trades.length === 0) return ['No trades.\n'];
  return tableChunks(TRADES_HEADERS, trades.map(tradeRow));
}

/** `status: RUNNING → PAUSED, stoppedAt: - → 2026-…`: what an audit entry changed. */
function change(entry: AuditEntry): string {
  const before = (entry.before ?? {}) as Record<string, unknown>;
  const after = (entry.after ?? {}) as Record<string, unknown>;
  const parts: string[] = [];
  const trade = after['trade'] as Trade | undefined;
  if (trade) {
    // A fill as the daemon's log says it (what came in, what went out, at what price); an open or
    // failed order as status says what it asks for.
    const amounts = trade.status === 'EXECUTED' ? `${trade.baseAmount} for ${trade.quoteAmount} @ ${trade.priceUsd}` : askedAmount(trade);
    parts.push(`${trade.status} ${trade.side} ${trade.reason} ${amounts} (${trade.clientOrderId})`);
  }
  if (entry.action === 'create') {
    const job = after as unknown as Job;
    parts.push(`${job.mode} job created ${job.status}`);
  } else {
    const show = (v: unknown) => (v === null || v === undefined ? '-' : typeof v === 'object' ? JSON.stringify(v) : String(v));
    for (const key of Object.keys(after)) {
      if (key === 'trade') continue;
      const [b, a] = [before[key], after[key]];
      if (!isRecord(b) && !isRecord(a)) {
        parts.push(`${key}: ${show(b)} → ${show(a)}`);
        continue;
      }
      // A config: the values that changed, by path, not two whole documents.
      const was = leaves(b, key);
      const now = leaves(a, key);
      for (const path of new Set([...was.keys(), ...now.keys()])) {
        if (JSON.stringify(was.get(path)) !== JSON.stringify(now.get(path))) parts.push(`${path}: ${show(was.get(path))} → ${show(now.get(path))}`);
      }
    }
  }
  return parts.join('; ');
}

/** Every leaf value of `v` by its dotted path under `prefix` (`config.accumulate.dcaAmount`). */
function leaves(v: unknown, prefix: string, out = new Map<string, unknown>()): Map<string, unknown> {
  if (isRecord(v)) for (const [k, x] of Object.entries(v)) leaves(x, `${prefix}.${k}`, out);
  else if (v !== undefined) out.set(prefix, v);
  return out;
}

const HISTORY_HEADERS = ['SEQ', 'AT', 'ACTOR', 'ENTITY', 'ACTION', 'CHANGE'];

function historyRow(e: AuditEntry): Row {
  return [e.seq, e.at, e.actor, e.entity, e.action, change(e)];
}

export function historyTable(entries: readonly AuditEntry[]): Iterable<string> {
  if (entries.length === 0) return ['No history.\n'];
  return tableChunks(HISTORY_HEADERS, entries.map(historyRow));
}

/** How a listing read a page at a time is shown (see pagedChunks). */
interface Listing<T> {
  readonly headers: readonly string[];
  readonly row: (item: T) => Row;
  /** Whether `item` is at or before `last` in the listing's order. */
  readonly atOrBefore: (item: T, last: T) => boolean;
  /** The table's text when there is nothing to list. */
  readonly empty: string;
}

export const HISTORY_LISTING: Listing<AuditEntry> = {
  headers: HISTORY_HEADERS,
  row: historyRow,
  atOrBefore: (e, last) => e.seq <= last.seq,
  empty: 'No history.\n',
};

/** A job's trades, in (createdAt, id) order. */
export const TRADES_LISTING: Listing<Trade> = {
  headers: TRADES_HEADERS,
  row: tradeRow,
  atOrBefore: (t, last) => t.createdAt < last.createdAt || (t.createdAt === last.createdAt && t.id <= last.id),
  empty: 'No trades.\n',
};

/**
 * `tableChunks` (or with `json`, `jsonArrayChunks`) of a listing read a page at a time, twice,
 * without holding it: `pages()` once for the column widths (for JSON, a reading of every item, so
 * that one that cannot be read fails the command before any output), then again for the output,
 * up to the last item the first reading saw (later ones, written meanwhile, are left out, so the
 * widths hold). The same text as from the whole list.
 */
export async function* pagedChunks<T>(listing: Listing<T>, pages: () => AsyncIterable<readonly T[]>, json: boolean): AsyncGenerator<string> {
  const widths = listing.headers.map((h) => h.length);
  let last: T | undefined;
  for await (const page of pages()) {
    if (!json) for (const item of page) widen(widths, tableCells(listing.row(item)));
    last = page.at(-1) ?? last;
  }
  if (last === undefined) {
    yield json ? '[]\n' : listing.empty;
    return;
  }
  let first = true;
  if (!json) yield `${tableLine(listing.headers, widths)}\n`;
  for await (const page of pages()) {
    const end = page.findIndex((item) => !listing.atOrBefore(item, last));
    const kept = end < 0 ? page : page.slice(0, end);
    for (let start = 0; start < kept.length; start += CHUNK) {
      const chunk = kept.slice(start, start + CHUNK);
      yield json ? arrayPart(chunk, first) : `${chunk.map((item) => tableLine(tableCells(listing.row(item)), widths)).join('\n')}\n`;
      first = false;
    }
    if (end >= 0) break;
  }
  if (json) yield first ? '[]\n' : '\n]\n';
}

/**
 * Writes chunks as they are made, each once the one before has been handed on: a pipe whose
 * reader is slower than the database (`| less`) does not make the output pile up in memory. A
 * read failing once output has begun (the server gone mid-way) ends the command with its error on
 * stderr and its exit code; with --json no error document is appended to a cut array.
 */
export async function outPaged(io: Io, chunks: AsyncIterable<string>): Promise<void> {
  let begun = false;
  try {
    for await (const chunk of chunks) {
      io.out(chunk);
      begun = true;
      await io.drained?.();
    }
  } catch (e) {
    const error = coerceError(e);
    if (begun) errorInJson.add(error);
    throw error;
  }
}

export { configJson };
