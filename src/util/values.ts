import { ValidationError } from '../errors.ts';

/** An object that is not null or an array, as JSON and callers' inputs hold them. */
export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A value from the caller, for an error message: its text cut to `max` characters (a 5 MB id is
 * not echoed whole). Messages quote it with JSON.stringify, which shows a newline in it as \n
 * (flattened into the one line an error is printed on, it would read as a space).
 */
export function shown(value: unknown, max = 64): string {
  const text = typeof value === 'string' ? value : String(value);
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

/**
 * What a wrong value from the caller was, for an error message: a string quoted (and cut as by
 * {@link shown}), a number or bigint named as one (so that 10 and "10" read differently), an
 * object, array or function by its kind (never "[object Object]").
 */
export function described(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'string') return `the string ${JSON.stringify(shown(value))}`;
  if (typeof value === 'number') return `the number ${String(value)}`;
  if (typeof value === 'bigint') return `the bigint ${String(value)}n`;
  if (typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a Date object';
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/**
 * `value`, if it is an object: a caller without types passing null, a string or a number where an
 * input object goes is refused with INVALID_ARGUMENT, not a TypeError from deeper down.
 */
export function inputObject<T>(value: T, what: string, fields?: readonly string[]): NonNullable<T> {
  if (!isRecord(value)) {
    throw new ValidationError('INVALID_ARGUMENT', `${what} must be an object, got ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}`, { hint: 'pass one object with the named fields, as the method\'s type says' });
  }
  if (fields !== undefined) knownFields(value, what, fields);
  return value as NonNullable<T>;
}

/**
 * Refuses a field of `value` that is not one of `fields`: a misspelt optional field (`executedat`,
 * `sett`) would otherwise be ignored, its default taken in silence. TypeScript catches it in an
 * object literal, not in an object built otherwise or in JavaScript.
 */
function knownFields(value: Record<string, unknown>, what: string, fields: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (fields.includes(key)) continue;
    const near = fields.find((f) => f.toLowerCase() === key.toLowerCase());
    throw new ValidationError('INVALID_ARGUMENT', `there is no field ${JSON.stringify(shown(key))} in ${what}`, {
      hint: near !== undefined ? `write it ${near}` : `its fields are ${fields.join(', ')}`,
    });
  }
}

/** A member of the JSON object `text` holds, or undefined (for a text that is not JSON, or not an object). */
export function jsonMember(text: string | null | undefined, key: string): unknown {
  try {
    const value: unknown = text == null ? undefined : JSON.parse(text);
    return isRecord(value) ? value[key] : undefined;
  } catch {
    return undefined;
  }
}
