import { jobStream, verifyChains, type AuditEntry, type AuditProblem, type AuditReport } from './audit.ts';
import { JOB_COLUMNS, toJob, type Job, type JobRow } from '../jobs/job-rows.ts';
import type { JobConfig } from '../jobs/config.ts';
import { TRADE_COLUMNS, toTrade, type Trade, type TradeRow } from '../ledger/ledger.ts';
import { add, cmp, isDecimal, sub, type Decimal } from '../money/decimal.ts';
import type { Executor } from '../store/adapter.ts';
import { shown } from '../util/values.ts';

/** Job fields that only change through audited writes, compared after replaying the log. */
const REPLAYED = [
  'tokenAddress', 'tokenSymbol', 'chain', 'mode', 'status', 'statusReason', 'lastDcaBuyTime', 'recentHigh',
  'recentHighTime', 'totalAccumulated', 'tokenBalance', 'lastRebalanceTime', 'config', 'startedAt', 'stoppedAt',
  'createdAt',
] as const;

/** A trade's fields, compared with what its last audit entry (intent, record or settle) recorded. */
const TRADE_FIELDS = [
  'jobId', 'side', 'reason', 'baseAmount', 'quoteAmount', 'priceUsd', 'clientOrderId', 'exchangeOrderId', 'txHash',
  'status', 'error', 'createdAt', 'executedAt',
] as const satisfies ReadonlyArray<keyof Trade>;

/** Amounts compare as numbers, times as instants (the engines format them alike, but need not). */
function sameValue(field: string, recorded: unknown, actual: unknown): boolean {
  if (recorded === null || recorded === undefined || actual === null || actual === undefined) return (recorded ?? null) === (actual ?? null);
  if (field.endsWith('Amount') || field === 'priceUsd') {
    return typeof recorded === 'string' && typeof actual === 'string' && isDecimal(recorded) && isDecimal(actual) && cmp(recorded, actual) === 0;
  }
  if (field.endsWith('At') || field.endsWith('Time')) {
    if (typeof recorded !== 'string' || typeof actual !== 'string') return false;
    const at = Date.parse(actual);
    return !Number.isNaN(at) && Date.parse(recorded) === at;
  }
  return recorded === actual;
}


/**
 * The recorded config against the job's: every key the audit entry recorded must match. Keys
 * added to the config after the entry was written are not in it, and are not compared.
 */
function sameConfig(recorded: unknown, actual: JobConfig): boolean {
  if (typeof recorded !== 'object' || recorded === null) return false;
  for (const [section, values] of Object.entries(recorded)) {
    const current = (actual as unknown as Record<string, Record<string, unknown> | undefined>)[section];
    if (!current || typeof values !== 'object' || values === null) return false;
    for (const [key, value] of Object.entries(values)) if (JSON.stringify(value ?? null) !== JSON.stringify(current[key] ?? null)) return false;
  }
  return true;
}

/** Folds a job's audit entries into the state they describe. */
function replay(entries: readonly AuditEntry[]): Record<string, unknown> {
  const state: Record<string, unknown> = {};
  for (const e of entries) {
    const after = (e.after ?? {}) as Record<string, unknown>;
    for (const [key, value] of Object.entries(after)) if (key !== 'trade') state[key] = value;
  }
  return state;
}

/**
 * Verifies the audit log: every hash and link of every stream; then for every job that its row
 * is the head of its stream (version and hash), that replaying its entries gives exactly the
 * row's state, and that its updatedAt is its last entry's time; that every job stream still has
 * its job; and that every trade is exactly what its last audit entry recorded, with no trade
 * missing and none added. An edit to the log, a job or a trade is found; so is a deleted job or
 * trade. A row that cannot be read is reported, not thrown. Reads only.
 *
 * What this cannot find: the chain is plain SHA-256 with no secret, so someone who can write the
 * database and recomputes the hashes of what they change (and the job row's head) can rewrite
 * history consistently. Keep the report's head hashes elsewhere to detect that.
 */
export async function verifyAudit(tx: Executor): Promise<AuditReport> {
  const { heads, entries, problems } = await verifyChains(tx);
  const byStream = new Map<string, AuditEntry[]>();
  for (const e of entries) {
    let list = byStream.get(e.stream);
    if (!list) byStream.set(e.stream, (list = []));
    list.push(e);
  }
  const rows = await tx.all<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs ORDER BY id`);
  const readable = new Map<string, Job>();
  // A job's stream with no job row: the job was deleted (jobs are never deleted by botstate).
  const jobStreams = new Set(rows.map((row) => jobStream(row.id)));
  for (const [stream, head] of heads) {
    if (stream.startsWith(jobStream('')) && !jobStreams.has(stream)) {
      problems.push({ stream, seq: head.seq, problem: 'the job of this stream is gone (its row was deleted)' });
    }
  }
  for (const row of rows) {
    const stream = jobStream(row.id);
    const head = heads.get(stream);
    if (!head || head.seq !== row.version || head.hash !== row.audit_hash) {
      problems.push({ stream, seq: row.version, problem: 'the job row does not match the last entry of its stream (entries missing or job altered)' });
      continue;
    }
    let job: Job;
    try {
      job = toJob(row);
    } catch (e) {
      problems.push({ stream, seq: row.version, problem: `the job row cannot be read: ${e instanceof Error ? e.message : String(e)}` });
      continue;
    }
    readable.set(job.id, job);
    const own = byStream.get(stream) ?? [];
    const state = replay(own);
    for (const field of REPLAYED) {
      if (!(field in state)) continue;
      const same = field === 'config' ? sameConfig(state[field], job.config) : sameValue(field, state[field], job[field]);
      if (!same) {
        problems.push({ stream, seq: row.version, problem: `the job's ${field} differs from what its audit log records` });
      }
    }
    const last = own[own.length - 1];
    if (last !== undefined && !sameValue('updatedAt', last.at, job.updatedAt)) {
      problems.push({ stream, seq: row.version, problem: "the job's updatedAt is not the time of its last audit entry" });
    }
  }
  // A job with a trade that cannot be read has no sum to check: that trade is reported instead.
  const unreadableJobs = new Set<string>();
  const trades = await verifyTrades(tx, entries, problems, unreadableJobs);
  for (const id of unreadableJobs) readable.delete(id);
  verifyBalances(readable, trades, problems);
  return { streams: heads.size, entries: entries.length, problems, heads: [...heads].map(([stream, head]) => ({ stream, ...head })) };
}

/** The actions that record a trade in its job's stream (its intent, a fill recorded by hand, its settlement). */
const TRADE_ACTIONS: ReadonlySet<string> = new Set(['intent', 'record', 'settle']);

/**
 * Every trade row against the last entry that recorded it in its job's stream, and every trade
 * recorded there against its row. A trade entry anywhere else (another stream, another action)
 * is reported: a new stream needs no secret, so it must not vouch for a trade.
 */
async function verifyTrades(tx: Executor, entries: readonly AuditEntry[], problems: AuditProblem[], unreadableJobs: Set<string>): Promise<Trade[]> {
  const recorded = new Map<string, { stream: string; seq: number; trade: Record<string, unknown> }>();
  const key = (stream: string, tradeId: string) => `${stream}\u0000${tradeId}`;
  for (const e of entries) {
    if (e.entity !== 'trade') continue;
    const trade = (e.after as { trade?: unknown } | null)?.trade;
    if (!e.stream.startsWith(jobStream('')) || !TRADE_ACTIONS.has(e.action)) {
      problems.push({ stream: e.stream, seq: e.seq, problem: `an entry of trade ${e.entityId} outside its job's stream, or with an action (${e.action}) that does not record a trade` });
    } else if (typeof trade !== 'object' || trade === null) {
      problems.push({ stream: e.stream, seq: e.seq, problem: `this entry of trade ${e.entityId} records no trade` });
    } else {
      // Entries are in seq order within a stream: the last one is the trade's current state.
      recorded.set(key(e.stream, e.entityId), { stream: e.stream, seq: e.seq, trade: trade as Record<string, unknown> });
    }
  }
  const rows = await tx.all<TradeRow>(`SELECT ${TRADE_COLUMNS} FROM trades ORDER BY id`);
  const trades: Trade[] = [];
  for (const row of rows) {
    const trade = toTrade(row);
    const stream = jobStream(trade.jobId);
    const unreadable = unreadableAmount(row);
    if (unreadable !== undefined) {
      // Reported where it is, and left out of the sums (which it would make throw, or lie).
      recorded.delete(key(stream, trade.id));
      unreadableJobs.add(trade.jobId);
      problems.push({ stream, seq: 0, problem: `trade ${trade.id} (${shown(trade.clientOrderId)}) cannot be read: ${unreadable}` });
      continue;
    }
    trades.push(trade);
    const entry = recorded.get(key(stream, trade.id));
    if (entry === undefined) {
      problems.push({ stream, seq: 0, problem: `trade ${trade.id} (${trade.clientOrderId}) has no audit entry (it was added outside botstate)` });
      continue;
    }
    recorded.delete(key(stream, trade.id));
    const differ = TRADE_FIELDS.filter((field) => !sameValue(field, entry.trade[field], trade[field]));
    if (differ.length > 0) {
      problems.push({ stream: entry.stream, seq: entry.seq, problem: `trade ${trade.id} (${trade.clientOrderId}): its ${differ.join(', ')} differ${differ.length === 1 ? 's' : ''} from what the audit log records` });
    }
  }
  for (const entry of recorded.values()) {
    problems.push({ stream: entry.stream, seq: entry.seq, problem: `trade ${String(entry.trade['id'])} (${String(entry.trade['clientOrderId'])}), recorded in the audit log, is gone (its row was deleted)` });
  }
  return trades;
}

/** Why a trade row's amounts cannot be read (one that is not a canonical decimal ≥ 0), or undefined. */
function unreadableAmount(row: TradeRow): string | undefined {
  for (const [column, value] of [['base_amount', row.base_amount], ['quote_amount', row.quote_amount], ['price_usd', row.price_usd]] as const) {
    if (value === null) continue;
    if (!isDecimal(value) || value.startsWith('-')) return `its ${column} ${JSON.stringify(shown(String(value)))} is not a canonical decimal amount`;
  }
  return undefined;
}

/**
 * The ledger's arithmetic, not only its record: a job's tokenBalance is what its executed buys
 * brought in less what its executed sells took out, and its totalAccumulated the quote its
 * executed buys paid (a fill is the only write that moves them). The audit log vouches for each
 * write; this checks that the writes add up, so a wrong balance written and audited as such (a
 * bug, or a history rewritten with every hash recomputed) shows too.
 */
function verifyBalances(jobs: ReadonlyMap<string, Job>, trades: readonly Trade[], problems: AuditProblem[]): void {
  const sums = new Map<string, { balance: Decimal; accumulated: Decimal }>();
  for (const t of trades) {
    if (t.status !== 'EXECUTED' || t.baseAmount === null || t.quoteAmount === null) continue;
    const s = sums.get(t.jobId) ?? { balance: '0', accumulated: '0' };
    if (t.side === 'BUY') sums.set(t.jobId, { balance: add(s.balance, t.baseAmount), accumulated: add(s.accumulated, t.quoteAmount) });
    else sums.set(t.jobId, { balance: sub(s.balance, t.baseAmount), accumulated: s.accumulated });
  }
  for (const job of jobs.values()) {
    const s = sums.get(job.id) ?? { balance: '0', accumulated: '0' };
    const stream = jobStream(job.id);
    if (cmp(s.balance, job.tokenBalance) !== 0) {
      problems.push({ stream, seq: job.version, problem: `the job's tokenBalance ${job.tokenBalance} is not its executed buys less its executed sells (${s.balance})` });
    }
    if (cmp(s.accumulated, job.totalAccumulated) !== 0) {
      problems.push({ stream, seq: job.version, problem: `the job's totalAccumulated ${job.totalAccumulated} is not the quote its executed buys paid (${s.accumulated})` });
    }
  }
}
