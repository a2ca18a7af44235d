/**
 * Times as botstate stores them: ISO 8601 in UTC with milliseconds, exactly as
 * `Date.prototype.toISOString` writes them (`2026-11-26T03:44:27.123Z`).
 */
const ISO_MS = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/**
 * Whether `value` is such a time and a real one: `2026-02-30T…` or `…T24:00:00.000Z`, which
 * `Date.parse` accepts and rolls over, are not (PostgreSQL would store another instant than the
 * one hashed into the audit log, or refuse it).
 */
export function isIsoTime(value: unknown): value is string {
  if (typeof value !== 'string' || !ISO_MS.test(value)) return false;
  const ms = Date.parse(value);
  return !Number.isNaN(ms) && new Date(ms).toISOString() === value;
}
