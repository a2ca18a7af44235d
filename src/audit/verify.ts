import { hash, randomBytes } from 'node:crypto';
import { AUDIT_COLUMNS, auditPages, checkLink, GENESIS_HASH, jobStream, toEntry, type AuditEntry, type AuditProblem, type AuditReport, type AuditRow } from './audit.ts';
import { beforeMismatch, JOB_COLUMNS, toJob, type Job, type JobRow } from '../jobs/job-rows.ts';
import type { JobConfig } from '../jobs/config.ts';
import { beyondAsked, TRADE_COLUMNS, toTrade, type Trade, type TradeRow } from '../ledger/ledger.ts';
import { add, cmp, isDecimal, sub, type Decimal } from '../money/decimal.ts';
import type { Executor, SqlParam } from '../store/adapter.ts';
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

/** The actions that record a trade in its job's stream (its intent, a fill recorded by hand, its settlement). */
const TRADE_ACTIONS: ReadonlySet<string> = new Set(['intent', 'record', 'settle']);

/** Trade rows read per query (see auditPages). */
const TRADE_PAGE = 2000;

/** What the walk keeps of a job's stream once it has passed it: small, whatever the stream's length. */
interface JobStreamSummary {
  readonly head: { seq: number; hash: string };
  /** The job's fields as its entries leave them (see replay in verifyAudit). */
  readonly state: Record<string, unknown>;
  readonly lastAt: string;
}

/** Per job: what its executed trades add up to. */
interface Sums {
  balance: Decimal;
  accumulated: Decimal;
}

/**
 * Verifies the audit log: every hash and link of every stream; then for every job that its row
 * is the head of its stream (version and hash), that replaying its entries gives exactly the
 * row's state, and that its updatedAt is its last entry's time; that every job stream still has
 * its job; that every trade is exactly what its last audit entry recorded, with no trade
 * missing and none added; and that each job's balances add up to its executed trades. An edit
 * to the log, a job or a trade is found; so is a deleted trade, or a deleted job whose stream is
 * left. A row that cannot be read is reported, not thrown. Reads only.
 *
 * The log is walked one stream at a time, a page of rows at a time, and each job's trades are
 * checked as its stream ends, against a tally of what the stream records (see TradeTally):
 * memory does not grow with a job's trades (only with the number of jobs and the intents still open),
 * unless a job's trades differ from its log, whose stream is then read again to say how.
 *
 * What this cannot find: the chain is plain SHA-256 with no secret, so someone who can write the
 * database and recomputes the hashes of what they change (and the job row's head) can rewrite
 * history consistently; a deletion that leaves the rest consistent (a job with its whole stream,
 * a stream's tail with the job row set back to match) is not seen either. Keep the report's head
 * hashes elsewhere to detect that.
 */
export async function verifyAudit(tx: Executor): Promise<AuditReport> {
  // Reported in this order, each kind in the order the walk meets it.
  const links: AuditProblem[] = [];
  const unreadableEntries: AuditProblem[] = [];
  const goneJobs: AuditProblem[] = [];
  const jobProblems: AuditProblem[] = [];
  const tradeEntries: AuditProblem[] = [];
  const tradeRows: Array<AuditProblem & { readonly tradeId: string }> = [];
  const goneTrades: AuditProblem[] = [];
  const balances: AuditProblem[] = [];

  /** The multisets' key (see addElement): new at every run. */
  const key = randomBytes(16).toString('base64');
  const jobRows = await tx.all<JobRow>(`SELECT ${JOB_COLUMNS} FROM jobs ORDER BY id`);
  const jobIds = new Set(jobRows.map((row) => row.id));
  const heads = new Map<string, { seq: number; hash: string }>();
  const jobStreams = new Map<string, JobStreamSummary>();
  const sums = new Map<string, Sums>();
  const unreadableJobs = new Set<string>();
  let entries = 0;

  /** The stream being walked: its head so far, its replayed state, and a tally of the trades it records. */
  let open: { stream: string; head: { seq: number; hash: string }; state: Record<string, unknown>; lastAt: string; tally: TradeTally } | undefined;

  const close = async () => {
    if (open === undefined) return;
    heads.set(open.stream, open.head);
    if (open.stream.startsWith(jobStream(''))) {
      const jobId = open.stream.slice(jobStream('').length);
      jobStreams.set(open.stream, { head: open.head, state: open.state, lastAt: open.lastAt });
      if (!jobIds.has(jobId)) goneJobs.push({ stream: open.stream, seq: open.head.seq, problem: 'the job of this stream is gone (its row was deleted)' });
      const out = { tradeRows, goneTrades, sums, unreadableJobs };
      // The common case, in constant memory: the job's trade rows are, as a multiset, what the
      // stream's last entries record. Only when they are not is the stream read again, keeping
      // every trade's last entry, to say which trades differ and how.
      if (!(await tradesMatch(tx, jobId, open.tally, out))) await checkTrades(tx, jobId, open.stream, await lastEntries(tx, open.stream), out);
    }
    open = undefined;
  };

  for await (const rows of auditPages(tx)) {
    for (const row of rows) {
      entries++;
      if (open?.stream !== row.stream) {
        await close();
        open = { stream: row.stream, head: { seq: 0, hash: GENESIS_HASH }, state: {}, lastAt: row.at, tally: new TradeTally(key) };
      }
      links.push(...checkLink(row, open.head));
      open.head = { seq: row.seq, hash: row.hash };
      open.lastAt = row.at;
      let entry: AuditEntry;
      try {
        entry = toEntry(row);
      } catch {
        // Reported, and replayed as an entry that records nothing.
        unreadableEntries.push({ stream: row.stream, seq: row.seq, problem: 'its before or after is not valid JSON (it was altered)' });
        entry = toEntry({ ...row, before: null, after: null });
      }
      // Each entry's `before` is the job as the entries before it left it: one that is not says
      // the row was changed outside botstate before botstate wrote this entry from it (a later
      // write makes the row match the log again, so only this shows it), or the entry was.
      const mismatch = open.stream.startsWith(jobStream('')) ? beforeMismatch(open.state, entry) : undefined;
      if (mismatch !== undefined) jobProblems.push({ stream: entry.stream, seq: entry.seq, problem: `this entry says ${mismatch} (the job row was changed outside botstate before this entry was written, or the entry was)` });
      // The job's fields as its entries leave them.
      for (const [key, value] of Object.entries((entry.after ?? {}) as Record<string, unknown>)) if (key !== 'trade') open.state[key] = value;
      if (entry.entity !== 'trade') continue;
      const recorded = recordedBy(entry);
      if (typeof recorded === 'string') tradeEntries.push({ stream: entry.stream, seq: entry.seq, problem: recorded });
      else {
        const unlike = open.tally.add(entry, recorded);
        if (unlike !== undefined) tradeEntries.push({ stream: entry.stream, seq: entry.seq, problem: unlike });
      }
    }
  }
  await close();

  // Trades of a job that has no stream at all.
  for (const { job_id: jobId } of await tx.all<{ job_id: string }>('SELECT DISTINCT job_id FROM trades ORDER BY job_id')) {
    if (!heads.has(jobStream(jobId))) await checkTrades(tx, jobId, jobStream(jobId), new Map(), { tradeRows, goneTrades, sums, unreadableJobs });
  }

  for (const row of jobRows) {
    const stream = jobStream(row.id);
    const summary = jobStreams.get(stream);
    if (!summary || summary.head.seq !== row.version || summary.head.hash !== row.audit_hash) {
      jobProblems.push({ stream, seq: row.version, problem: 'the job row does not match the last entry of its stream (entries missing or job altered)' });
      continue;
    }
    let job: Job;
    try {
      job = toJob(row);
    } catch (e) {
      jobProblems.push({ stream, seq: row.version, problem: `the job row cannot be read: ${e instanceof Error ? e.message : String(e)}` });
      continue;
    }
    for (const field of REPLAYED) {
      if (!(field in summary.state)) continue;
      const same = field === 'config' ? sameConfig(summary.state[field], job.config) : sameValue(field, summary.state[field], job[field]);
      if (!same) jobProblems.push({ stream, seq: row.version, problem: `the job's ${field} differs from what its audit log records` });
    }
    if (!sameValue('updatedAt', summary.lastAt, job.updatedAt)) {
      jobProblems.push({ stream, seq: row.version, problem: "the job's updatedAt is not the time of its last audit entry" });
    }
    // A job with a trade that cannot be read has no sum to check: that trade is reported instead.
    if (!unreadableJobs.has(job.id)) checkBalances(job, sums.get(job.id), balances);
  }
  tradeRows.sort((a, b) => (a.tradeId < b.tradeId ? -1 : a.tradeId > b.tradeId ? 1 : 0));
  const problems = [...links, ...unreadableEntries, ...goneJobs, ...jobProblems, ...tradeEntries, ...tradeRows.map(({ stream, seq, problem }) => ({ stream, seq, problem })), ...goneTrades, ...balances];
  return { streams: heads.size, entries, problems, heads: [...heads].map(([stream, head]) => ({ stream, ...head })) };
}


/**
 * A digest of the fields of a trade compared with its row, normalised as {@link sameValue}
 * compares them: amounts as canonical decimals, times as instants. A value sameValue would never
 * call equal to anything (an amount that is not a decimal, a time that does not parse) gets a
 * digest of its own, so that it never matches.
 */
function tradeDigest(trade: Readonly<Record<string, unknown>>): string {
  return hash('sha256', JSON.stringify(normalised(trade)), 'base64');
}

/** The compared fields of a trade, normalised (see tradeDigest). */
function normalised(trade: Readonly<Record<string, unknown>>): unknown[] {
  return TRADE_FIELDS.map((field) => {
    const v = trade[field];
    if (v === null || v === undefined) return null;
    if (field.endsWith('Amount') || field === 'priceUsd') return typeof v === 'string' && isDecimal(v) ? v : { never: ++unmatched };
    if (field.endsWith('At')) {
      const ms = typeof v === 'string' ? Date.parse(v) : Number.NaN;
      return Number.isNaN(ms) ? { never: ++unmatched } : ms;
    }
    return v;
  });
}
let unmatched = 0;

/**
 * The trade an entry of trade records, or why it records none. A trade entry anywhere else
 * (another stream, another action) is reported: a new stream needs no secret, so it must not
 * vouch for a trade.
 */
function recordedBy(entry: AuditEntry): Record<string, unknown> | string {
  const trade = (entry.after as { trade?: unknown } | null)?.trade;
  if (!entry.stream.startsWith(jobStream('')) || !TRADE_ACTIONS.has(entry.action)) {
    return `an entry of trade ${entry.entityId} outside its job's stream, or with an action (${entry.action}) that does not record a trade`;
  }
  if (typeof trade !== 'object' || trade === null) return `this entry of trade ${entry.entityId} records no trade`;
  return trade as Record<string, unknown>;
}

/**
 * A trade as one element of a multiset: its id and its compared fields, hashed under `key`. The
 * multiset's digest is the lane-wise sum of its elements (eight 32-bit lanes, each mod 2^32):
 * equal multisets give equal sums whatever the order. The key is random and new at every run:
 * unkeyed, a sum of hashes yields to a search (someone editing rows could vary a free field, a
 * txHash or an error text, until the sums match again); keyed, an edit cannot be aimed, and
 * unequal multisets collide by chance only.
 */
function addElement(sum: Uint32Array, key: string, id: string, trade: Readonly<Record<string, unknown>>): void {
  const h = hash('sha256', `${key}${JSON.stringify([id, ...normalised(trade)])}`, 'buffer');
  for (let lane = 0; lane < 8; lane++) sum[lane] = (sum[lane]! + h.readUInt32LE(lane * 4)) >>> 0;
}

/**
 * What a job's stream records of its trades, in constant memory: the sum of the trades its
 * settled entries (record, settle) leave, and the trades whose latest entry is still an intent
 * (at most a few open at a time), which a settle takes out. When every trade's entries are an
 * intent then its settle, or one record, the multiset is each trade's last entry. An entry after
 * a settled one (which botstate never writes) adds a second element for that trade, which no row
 * can match: the table side then differs, and the stream is read again in full.
 */
class TradeTally {
  readonly key: string;
  readonly settled = new Uint32Array(8);
  settledCount = 0;
  readonly intents = new Map<string, Record<string, unknown>>();

  constructor(key: string) {
    this.key = key;
  }

  /**
   * Tallies the trade an entry records. A settle is also compared with the trade's intent, when
   * the stream holds it: the same order (side, reason, clientOrderId, time), filled for no more
   * than the intent asked. The trade row is what the daemon sends (again, after a restart), so an
   * intent's amount raised in the row alone went out and was settled as it stood; this says so.
   */
  add(entry: AuditEntry, trade: Record<string, unknown>): string | undefined {
    const intent = this.intents.get(entry.entityId);
    this.intents.delete(entry.entityId);
    if (entry.action === 'intent') {
      this.intents.set(entry.entityId, trade);
      return undefined;
    }
    addElement(this.settled, this.key, entry.entityId, trade);
    this.settledCount++;
    return intent === undefined ? undefined : unlikeItsIntent(entry.entityId, intent, trade);
  }

  /** The whole multiset: the settled sum with the open intents added. */
  total(): { sum: Uint32Array; count: number } {
    const sum = new Uint32Array(this.settled);
    for (const [id, trade] of this.intents) addElement(sum, this.key, id, trade);
    return { sum, count: this.settledCount + this.intents.size };
  }
}

/** How a settled trade is not the order its intent recorded, if it is not. */
function unlikeItsIntent(id: string, intent: Record<string, unknown>, settled: Record<string, unknown>): string | undefined {
  const same = (field: string) =>
    field === 'createdAt' && typeof intent[field] === 'string' && typeof settled[field] === 'string'
      ? Date.parse(intent[field]) === Date.parse(settled[field]) // an instant, whatever its spelling
      : JSON.stringify(intent[field]) === JSON.stringify(settled[field]);
  for (const field of ['jobId', 'side', 'reason', 'clientOrderId', 'createdAt'] as const) {
    if (!same(field)) {
      return `trade ${id} was settled with ${field} ${JSON.stringify(settled[field])}, but its intent recorded ${JSON.stringify(intent[field])}`;
    }
  }
  if (settled['status'] !== 'EXECUTED') return undefined;
  const amount = (v: unknown): Decimal | null => (typeof v === 'string' && isDecimal(v) ? v : null);
  const beyond = beyondAsked(
    { baseAmount: amount(intent['baseAmount']), quoteAmount: amount(intent['quoteAmount']) },
    { baseAmount: amount(settled['baseAmount']), quoteAmount: amount(settled['quoteAmount']) },
  );
  if (beyond === undefined) return undefined;
  return `trade ${id} was filled for ${beyond.field} ${String(beyond.got)}, more than its intent recorded asking for, ${String(beyond.asked)} (the order sent was not the one its intent recorded)`;
}

/**
 * The job's trade rows against the tally of its stream, a page at a time, adding up its executed
 * trades as it goes. True when they match exactly and every row can be read: the job's trades
 * are then what its log records, and its sums are in `out`. False otherwise, with nothing of the
 * job left in `out`: checkTrades then goes through them again and says what is wrong.
 */
async function tradesMatch(tx: Executor, jobId: string, tally: TradeTally, out: { sums: Map<string, Sums> }): Promise<boolean> {
  const sum = new Uint32Array(8);
  let count = 0;
  let sums: Sums = { balance: '0', accumulated: '0' };
  for await (const rows of tradePages(tx, jobId)) {
    for (const row of rows) {
      if (unreadableAmount(row) !== undefined) return false;
      const trade = toTrade(row);
      addElement(sum, tally.key, trade.id, trade as unknown as Record<string, unknown>);
      count++;
      sums = addedUp(sums, trade);
    }
  }
  const recorded = tally.total();
  if (count !== recorded.count || !sum.every((lane, i) => lane === recorded.sum[i])) return false;
  if (count > 0) out.sums.set(jobId, sums);
  return true;
}

/** A stream read again: the last entry that recorded each trade (trade id → "seq digest"). */
async function lastEntries(tx: Executor, stream: string): Promise<Map<string, string>> {
  const recorded = new Map<string, string>();
  for await (const rows of auditPages(tx, stream)) {
    for (const row of rows) {
      if (row.entity !== 'trade') continue;
      let entry: AuditEntry;
      try {
        entry = toEntry(row);
      } catch {
        continue; // reported by the walk
      }
      const trade = recordedBy(entry);
      // Entries are in seq order within a stream: the last one is the trade's current state.
      if (typeof trade !== 'string') recorded.set(entry.entityId, `${entry.seq} ${tradeDigest(trade)}`);
    }
  }
  return recorded;
}

/** A job's trade rows in (created_at, id) order, a page at a time. */
async function* tradePages(tx: Executor, jobId: string): AsyncGenerator<TradeRow[]> {
  let after: TradeRow | undefined;
  for (;;) {
    const [where, params]: [string, SqlParam[]] = after ? ['job_id = ? AND (created_at, id) > (?, ?)', [jobId, after.created_at, after.id]] : ['job_id = ?', [jobId]];
    const rows = await tx.all<TradeRow>(`SELECT ${TRADE_COLUMNS} FROM trades WHERE ${where} ORDER BY created_at, id LIMIT ${TRADE_PAGE}`, params);
    if (rows.length > 0) yield rows;
    if (rows.length < TRADE_PAGE) return;
    after = rows[rows.length - 1];
  }
}

/** `sums` with an executed trade counted. */
function addedUp(sums: Sums, trade: Trade): Sums {
  if (trade.status !== 'EXECUTED' || trade.baseAmount === null || trade.quoteAmount === null) return sums;
  return trade.side === 'BUY' ? { balance: add(sums.balance, trade.baseAmount), accumulated: add(sums.accumulated, trade.quoteAmount) } : { balance: sub(sums.balance, trade.baseAmount), accumulated: sums.accumulated };
}

/**
 * A job's trade rows, a page at a time, against the last entry that recorded each in its stream
 * (`recorded`: trade id → "seq digest"), and what its executed trades add up to. A row that
 * differs is compared field by field with its entry, read again, to say which fields differ.
 */
async function checkTrades(
  tx: Executor,
  jobId: string,
  stream: string,
  recorded: Map<string, string>,
  out: { tradeRows: Array<AuditProblem & { tradeId: string }>; goneTrades: AuditProblem[]; sums: Map<string, Sums>; unreadableJobs: Set<string> },
): Promise<void> {
  for await (const rows of tradePages(tx, jobId)) {
    for (const row of rows) {
      const trade = toTrade(row);
      const unreadable = unreadableAmount(row);
      const entry = recorded.get(trade.id);
      recorded.delete(trade.id);
      if (unreadable !== undefined) {
        // Reported where it is, and left out of the sums (which it would make throw, or lie).
        out.unreadableJobs.add(jobId);
        out.tradeRows.push({ tradeId: trade.id, stream, seq: 0, problem: `trade ${trade.id} (${shown(trade.clientOrderId)}) cannot be read: ${unreadable}` });
        continue;
      }
      const s = out.sums.get(jobId) ?? { balance: '0', accumulated: '0' };
      const next = addedUp(s, trade);
      if (next !== s) out.sums.set(jobId, next);
      if (entry === undefined) {
        out.tradeRows.push({ tradeId: trade.id, stream, seq: 0, problem: `trade ${trade.id} (${trade.clientOrderId}) has no audit entry (it was added outside botstate)` });
        continue;
      }
      const space = entry.indexOf(' ');
      if (entry.slice(space + 1) === tradeDigest(trade as unknown as Record<string, unknown>)) continue;
      const seq = Number(entry.slice(0, space));
      const recordedTrade = await recordedTradeAt(tx, stream, seq);
      const differ = TRADE_FIELDS.filter((field) => !sameValue(field, recordedTrade[field], trade[field]));
      out.tradeRows.push({ tradeId: trade.id, stream, seq, problem: `trade ${trade.id} (${trade.clientOrderId}): its ${differ.join(', ')} differ${differ.length === 1 ? 's' : ''} from what the audit log records` });
    }
  }
  for (const [tradeId, entry] of recorded) {
    const seq = Number(entry.slice(0, entry.indexOf(' ')));
    const recordedTrade = await recordedTradeAt(tx, stream, seq);
    out.goneTrades.push({ stream, seq, problem: `trade ${String(recordedTrade['id'] ?? tradeId)} (${String(recordedTrade['clientOrderId'])}), recorded in the audit log, is gone (its row was deleted)` });
  }
}

/** The trade an entry records (read again: the walk keeps only a digest of it). */
async function recordedTradeAt(tx: Executor, stream: string, seq: number): Promise<Record<string, unknown>> {
  const row = await tx.get<AuditRow>(`SELECT ${AUDIT_COLUMNS} FROM audit_log WHERE stream = ? AND seq = ?`, [stream, seq]);
  const trade = (row === undefined ? undefined : (toEntry(row).after as { trade?: unknown } | null)?.trade) as Record<string, unknown> | undefined;
  return trade ?? {};
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
function checkBalances(job: Job, sums: Sums | undefined, problems: AuditProblem[]): void {
  const s = sums ?? { balance: '0', accumulated: '0' };
  const stream = jobStream(job.id);
  if (cmp(s.balance, job.tokenBalance) !== 0) {
    problems.push({ stream, seq: job.version, problem: `the job's tokenBalance ${job.tokenBalance} is not its executed buys less its executed sells (${s.balance})` });
  }
  if (cmp(s.accumulated, job.totalAccumulated) !== 0) {
    problems.push({ stream, seq: job.version, problem: `the job's totalAccumulated ${job.totalAccumulated} is not the quote its executed buys paid (${s.accumulated})` });
  }
}
