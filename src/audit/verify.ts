import { jobStream, verifyChains, type AuditEntry, type AuditReport } from './audit.ts';
import { JOB_COLUMNS, toJob, type Job, type JobRow } from '../jobs/job-rows.ts';
import type { JobConfig } from '../jobs/config.ts';
import type { Executor } from '../store/adapter.ts';

/** Job fields that only change through audited writes, compared after replaying the log. */
const REPLAYED = [
  'tokenAddress', 'tokenSymbol', 'chain', 'mode', 'status', 'statusReason', 'lastDcaBuyTime', 'recentHigh',
  'recentHighTime', 'totalAccumulated', 'tokenBalance', 'lastRebalanceTime', 'config', 'startedAt', 'stoppedAt',
] as const;

function show(field: string, value: unknown): string {
  return JSON.stringify(value ?? null);
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
 * Verifies the audit log: every hash and link of every stream, then for every job that its row
 * is the head of its stream (version and hash) and that replaying its entries gives exactly
 * the row's state, so an edit to either the log or the job is found, and that every job stream
 * still has its job (a deleted job is found too). Reads only.
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
    const job: Job = toJob(row);
    const state = replay(byStream.get(stream) ?? []);
    for (const field of REPLAYED) {
      if (!(field in state)) continue;
      const same = field === 'config' ? sameConfig(state[field], job.config) : show(field, state[field]) === show(field, job[field]);
      if (!same) {
        problems.push({ stream, seq: row.version, problem: `the job's ${field} differs from what its audit log records` });
      }
    }
  }
  return { streams: heads.size, entries: entries.length, problems };
}
