import { hash } from 'node:crypto';
import { StorageError } from '../errors.ts';
import type { Executor, SqlParam } from '../store/adapter.ts';

/** The `prev_hash` of the first entry of every stream. */
export const GENESIS_HASH = '0'.repeat(64);

/** One row of the audit log, as returned by the library. */
export interface AuditEntry {
  readonly id: number;
  /** The chain this entry belongs to, e.g. `job:<id>`; every stream is hash-chained on its own. */
  readonly stream: string;
  /** 1, 2, 3… within the stream, without gaps. */
  readonly seq: number;
  readonly at: string;
  readonly actor: string;
  readonly entity: string;
  readonly entityId: string;
  readonly action: string;
  readonly before: unknown;
  readonly after: unknown;
  readonly prevHash: string;
  readonly hash: string;
}

/** What a writer supplies; the hash is computed here. */
export interface AuditAppend {
  readonly stream: string;
  readonly seq: number;
  readonly prevHash: string;
  readonly at: string;
  readonly actor: string;
  readonly entity: string;
  readonly entityId: string;
  readonly action: string;
  readonly before: unknown;
  readonly after: unknown;
}

/** An audit_log row as stored. */
export interface AuditRow {
  id: number;
  stream: string;
  seq: number;
  at: string;
  actor: string;
  entity: string;
  entity_id: string;
  action: string;
  before: string | null;
  after: string | null;
  prev_hash: string;
  hash: string;
}

export const AUDIT_COLUMNS = 'id, stream, seq, at, actor, entity, entity_id, action, before, after, prev_hash, hash';
const COLUMNS = AUDIT_COLUMNS;

/** The stream of audit entries for one job (its transitions, config changes and trades). */
export function jobStream(jobId: string): string {
  return `job:${jobId}`;
}

/** Length-prefixed, so that no two different entries have the same encoding. */
function field(v: string | null): string {
  return v === null ? '~;' : `${v.length}:${v};`;
}

/**
 * SHA-256 over the entry's fields and the previous entry's hash. The encoding is length-prefixed
 * text (not JSON: before/after are JSON already, and escaping them again doubled the cost).
 */
function hashOf(
  e: Pick<AuditAppend, 'stream' | 'seq' | 'prevHash' | 'at' | 'actor' | 'entity' | 'entityId' | 'action'>,
  before: string | null,
  after: string | null,
): string {
  const text =
    field(e.stream) + field(String(e.seq)) + field(e.at) + field(e.actor) + field(e.entity) + field(e.entityId) +
    field(e.action) + field(before) + field(after) + field(e.prevHash);
  return hash('sha256', text, 'hex');
}

/**
 * Prepares an entry: serialises before/after and computes the chained hash. The caller writes
 * the new head hash onto the entity in the same transaction, then calls {@link insertAudit}.
 */
export function prepareAudit(entry: AuditAppend): { entry: AuditAppend; before: string | null; after: string | null; hash: string } {
  const before = entry.before === null || entry.before === undefined ? null : JSON.stringify(entry.before);
  const after = entry.after === null || entry.after === undefined ? null : JSON.stringify(entry.after);
  return { entry, before, after, hash: hashOf(entry, before, after) };
}

export type PreparedAudit = ReturnType<typeof prepareAudit>;

const AUDIT_INSERT = 'INSERT INTO audit_log (stream, seq, at, actor, entity, entity_id, action, before, after, prev_hash, hash)';

/** The INSERT's parameters, in AUDIT_INSERT's column order. */
export function auditParams(prepared: PreparedAudit): SqlParam[] {
  const { entry: e, before, after, hash } = prepared;
  return [e.stream, e.seq, e.at, e.actor, e.entity, e.entityId, e.action, before, after, e.prevHash, hash];
}

// One string object for every call: the adapters look prepared statements up by their SQL text.
const AUDIT_INSERT_VALUES = `${AUDIT_INSERT} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`;

export async function insertAudit(tx: Executor, prepared: PreparedAudit): Promise<void> {
  await tx.run(AUDIT_INSERT_VALUES, auditParams(prepared));
}

/**
 * PostgreSQL: the entry inserted once for each row of `source`, a WITH clause of the same
 * statement (takes {@link auditParams}). The non-text parameters are cast: in a SELECT list
 * they are not typed from the target columns.
 */
export function auditInsertFrom(source: string): string {
  return `${AUDIT_INSERT} SELECT ?, ?::bigint, ?::timestamptz, ?, ?, ?, ?, ?, ?, ?, ? FROM ${source}`;
}

export function toEntry(row: AuditRow): AuditEntry {
  return {
    id: row.id,
    stream: row.stream,
    seq: row.seq,
    at: row.at,
    actor: row.actor,
    entity: row.entity,
    entityId: row.entity_id,
    action: row.action,
    before: row.before === null ? null : JSON.parse(row.before),
    after: row.after === null ? null : JSON.parse(row.after),
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Rows read per query when a stream or the whole log is walked: memory stays bounded however long it is. */
const PAGE = 2000;

/**
 * Audit rows in (stream, seq) order, a page at a time: every stream's, or one stream's. Keyed on
 * (stream, seq), the table's unique index, so each page is one index range whatever the length.
 */
export async function* auditPages(tx: Executor, stream?: string): AsyncGenerator<AuditRow[]> {
  let after: AuditRow | undefined;
  for (;;) {
    const [where, params]: [string, SqlParam[]] = after ? ['WHERE (stream, seq) > (?, ?)', [after.stream, after.seq]] : ['', []];
    const rows = stream !== undefined ? await streamRows(tx, stream, after?.seq ?? 0) : await tx.all<AuditRow>(`SELECT ${COLUMNS} FROM audit_log ${where} ORDER BY stream, seq LIMIT ${PAGE}`, params);
    if (rows.length > 0) yield rows;
    if (rows.length < PAGE) return;
    after = rows[rows.length - 1];
  }
}

/** One stream's entries in seq order. */
export async function readStream(tx: Executor, stream: string): Promise<AuditEntry[]> {
  const entries: AuditEntry[] = [];
  for await (const entry of streamEntries(tx, stream)) entries.push(entry);
  return entries;
}

/**
 * One stream's entries in seq order, one at a time, read a page at a time: memory stays bounded
 * however long the stream is. With `until` (an ISO time), it ends before the first entry recorded
 * after it, which is not parsed: a time-travel read reads no further than it needs.
 */
export async function* streamEntries(tx: Executor, stream: string, until?: string): AsyncGenerator<AuditEntry> {
  for await (const rows of auditPages(tx, stream)) {
    for (const row of rows) {
      if (until !== undefined && row.at > until) return;
      yield readEntry(row);
    }
  }
}

/** A page of one stream's rows after seq `after`, in seq order. */
function streamRows(tx: Executor, stream: string, after: number): Promise<AuditRow[]> {
  return tx.all<AuditRow>(`SELECT ${COLUMNS} FROM audit_log WHERE stream = ? AND seq > ? ORDER BY seq LIMIT ${PAGE}`, [stream, after]);
}

/** A page of one stream's entries after seq `after`, in seq order. */
export async function readStreamPage(tx: Executor, stream: string, after: number): Promise<AuditEntry[]> {
  return (await streamRows(tx, stream, after)).map(readEntry);
}

/**
 * One stream's entries at or after `since` (ISO), the last `limit` of them, oldest first: a
 * window on a long history without reading all of it.
 */
export async function readStreamWindow(tx: Executor, stream: string, window: { since?: string; limit?: number }): Promise<AuditEntry[]> {
  const where = window.since === undefined ? 'stream = ?' : 'stream = ? AND at >= ?';
  const params: SqlParam[] = window.since === undefined ? [stream] : [stream, window.since];
  const rows =
    window.limit === undefined
      ? await tx.all<AuditRow>(`SELECT ${COLUMNS} FROM audit_log WHERE ${where} ORDER BY seq`, params)
      : (await tx.all<AuditRow>(`SELECT ${COLUMNS} FROM audit_log WHERE ${where} ORDER BY seq DESC LIMIT ?`, [...params, window.limit])).reverse();
  return rows.map(readEntry);
}

/** The entry of a row; one whose before or after is not JSON (botstate writes only JSON there) was changed outside botstate. */
function readEntry(row: AuditRow): AuditEntry {
  try {
    return toEntry(row);
  } catch (cause) {
    throw new StorageError('STORAGE_CORRUPT', `audit entry ${row.seq} of ${row.stream} is not valid JSON`, {
      hint: 'the database was changed outside botstate; run botstate verify, and restore it from a backup',
      cause,
    });
  }
}

/** A break in the audit log found by {@link verifyAudit}. */
export interface AuditProblem {
  readonly stream: string;
  readonly seq: number;
  readonly problem: string;
}

export interface AuditReport {
  readonly streams: number;
  readonly entries: number;
  readonly problems: readonly AuditProblem[];
  /**
   * Each stream's last entry. The chain has no secret: kept elsewhere (a copy of an earlier
   * report), these show whether history up to them was rewritten since, hashes recomputed and all.
   */
  readonly heads: ReadonlyArray<{ readonly stream: string; readonly seq: number; readonly hash: string }>;
}

/**
 * Checks one row against the head of its stream so far (GENESIS_HASH at seq 0): the seq follows,
 * prev_hash links, and the hash is the entry's own. Returns the problems found (none: []).
 */
export function checkLink(row: AuditRow, head: { seq: number; hash: string }): AuditProblem[] {
  const problems: AuditProblem[] = [];
  const at = { stream: row.stream, seq: row.seq };
  if (row.seq !== head.seq + 1) problems.push({ ...at, problem: `expected seq ${head.seq + 1}` });
  if (row.prev_hash !== head.hash) problems.push({ ...at, problem: 'prev_hash does not link to the previous entry' });
  const recomputed = hashOf(
    { stream: row.stream, seq: row.seq, prevHash: row.prev_hash, at: row.at, actor: row.actor, entity: row.entity, entityId: row.entity_id, action: row.action },
    row.before,
    row.after,
  );
  if (recomputed !== row.hash) problems.push({ ...at, problem: 'hash does not match the entry (it was altered)' });
  return problems;
}
