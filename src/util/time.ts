import { ValidationError } from '../errors.ts';
import { described } from './values.ts';

/**
 * Times as botstate stores them: ISO 8601 in UTC with milliseconds, exactly as
 * `Date.prototype.toISOString` writes them (`2026-11-26T03:44:27.123Z`).
 */
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * Whether `value` is such a time and a real one: `2026-02-30T…` or `…T24:00:00.000Z`, which
 * `Date.parse` accepts and rolls over, are not (PostgreSQL would store another instant than the
 * one hashed into the audit log, or refuse it), and neither is the year 0000, which SQLite
 * stores and PostgreSQL (whose calendar has no year 0) refuses.
 */
export function isIsoTime(value: unknown): value is string {
  if (typeof value !== 'string' || !ISO_MS.test(value) || value.startsWith('0000-')) return false;
  const ms = Date.parse(value);
  return !Number.isNaN(ms) && new Date(ms).toISOString() === value;
}

/** Why `value` is not such a time, for a message about `field`: a Date or a number is named as one. */
export function notIsoTime(field: string, value: unknown): string {
  if (typeof value === 'string') return `${field} ${JSON.stringify(value)} is not a real ISO 8601 UTC time with milliseconds`;
  return `${field} must be an ISO 8601 UTC time string with milliseconds, got ${described(value)}`;
}

/**
 * How far ahead of this host's clock a time given to botstate may be: another machine's clock (an
 * exchange's fill time). More is a typo (in the year), which would hold a job's DCA buys back
 * until then, as lastDcaBuyTime only moves forward.
 */
const AHEAD_MS = 5 * 60_000;

/**
 * Refuses a fill's `executedAt` more than AHEAD_MS before its intent was recorded (`recordedAt`):
 * an order is not filled before it was decided, and a year typo backwards would date the trade
 * years back (its day's volume and hour's count with it, and a job's first DCA buy's
 * lastDcaBuyTime, which later fills only move forward). A few minutes is another machine's clock. The bound
 * is this host's clock instead when that is behind the intent's time (the clock stepped back, or
 * the intent was recorded on a host whose clock is ahead): a fill dated now is always taken.
 */
export function checkNotBefore(field: string, time: string, recordedAt: string, what: string, hint: string): void {
  if (Date.parse(time) < Math.min(Date.parse(recordedAt), Date.now()) - AHEAD_MS) {
    throw new ValidationError('INVALID_ARGUMENT', `${field} ${time} is before ${what} was recorded (${recordedAt})`, { hint });
  }
}

/** Refuses `time` (such a time, of `field`) more than AHEAD_MS ahead of this host's clock, with `hint`. */
export function checkNotAhead(field: string, time: string, hint: string): void {
  if (Date.parse(time) > Date.now() + AHEAD_MS) throw new ValidationError('INVALID_ARGUMENT', `${field} ${time} is in the future`, { hint });
}

let lastMs = Number.NaN;
let lastIso = '';

/**
 * Now, as `new Date().toISOString()` writes it. Formatting a Date goes through V8's printf
 * (~0.4 µs); a write path asks several times per transaction, mostly within one millisecond,
 * so the string of the last millisecond is kept.
 */
export function nowIso(): string {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastIso = new Date(ms).toISOString();
    lastMs = ms;
  }
  return lastIso;
}

/**
 * A listing's window, as `ledger.trades` and `store.history` take it: `since`, an ISO 8601 UTC
 * time with milliseconds (rows at or after it); `limit`, a whole number ≥ 1 (only the last
 * `limit` rows, the most recent). Returns them checked; a bad one is INVALID_ARGUMENT.
 */
export function checkWindow(window: { since?: unknown; limit?: unknown }): { since?: string; limit?: number } {
  const { since, limit } = window;
  const refuse = (message: string) => new ValidationError('INVALID_ARGUMENT', message, { hint: "e.g. { since: '2026-11-26T00:00:00.000Z', limit: 100 }" });
  if (since !== undefined && !isIsoTime(since)) throw refuse(notIsoTime('since', since));
  if (limit !== undefined && (typeof limit !== 'number' || !Number.isSafeInteger(limit) || limit < 1)) {
    throw refuse(`limit must be a whole number from 1, got ${described(limit)}`);
  }
  return { ...(since !== undefined ? { since: since as string } : {}), ...(limit !== undefined ? { limit: limit as number } : {}) };
}
