import { ValidationError } from '../errors.ts';
/**
 * Free text stored in a row and hashed into the audit log (a failure reason, an exchange's error,
 * an actor): what both engines store exactly as given. Lone UTF-16 surrogates become U+FFFD (the
 * drivers would write U+FFFD anyway, so the stored text would differ from the hashed one and
 * `verifyAudit` would report tampering) and NUL becomes U+FFFD (PostgreSQL refuses it in text).
 * Cut to at most `max` UTF-16 units, never inside a surrogate pair.
 */
export function storableText(text: string, max: number): string {
  let s = text.toWellFormed().replaceAll('\u0000', '\uFFFD');
  if (s.length > max) {
    s = s.slice(0, max);
    const last = s.charCodeAt(s.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) s = s.slice(0, -1);
  }
  return s;
}

/** Whether `text` is stored exactly as given (see {@link storableText}). */
export function isStorableText(text: string): boolean {
  return text.isWellFormed() && !text.includes('\u0000');
}

/** A value from the caller, for an error message: its text cut to `max` characters (a 5 MB id is not echoed whole). */
export function shown(value: unknown, max = 64): string {
  const text = typeof value === 'string' ? value : String(value);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

/**
 * `value`, if it is an object: a caller without types passing null, a string or a number where an
 * input object goes is refused with INVALID_ARGUMENT, not a TypeError from deeper down.
 */
export function inputObject<T>(value: T, what: string): NonNullable<T> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ValidationError('INVALID_ARGUMENT', `${what} must be an object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`);
  }
  return value as NonNullable<T>;
}
