import assert from 'node:assert/strict';
import { BotstateError, isBotstateError, NotFoundError, RuleError, SchemaError, StorageError, ValidationError, type ErrorCategory } from '../../src/errors.ts';

/** The class every error of a category is an instance of (INTERNAL: the base class itself). */
const CLASS_OF: Record<ErrorCategory, typeof BotstateError> = {
  usage: ValidationError,
  rule: RuleError,
  not_found: NotFoundError,
  storage: StorageError,
  schema: SchemaError,
  internal: BotstateError,
};

/** `e`'s class is its category's, so that `instanceof ValidationError` and the like catch every code of it. */
export function assertClassOfCategory(e: BotstateError): void {
  assert.ok(e instanceof CLASS_OF[e.category], `${e.code} (${e.category}) was thrown as ${e.name}, not ${CLASS_OF[e.category].name}: ${e.message}`);
}

/** Awaits `p`, which must reject with a BotstateError of `code`; returns its details and message. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<Record<string, unknown>> {
  try {
    await p;
  } catch (e) {
    assert.ok(isBotstateError(e), `expected a BotstateError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assertClassOfCategory(e);
    return { ...e.details, message: e.message };
  }
  assert.fail(`expected ${code}, but it resolved`);
}
