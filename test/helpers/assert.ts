import assert from 'node:assert/strict';
import { isBotstateError } from '../../src/errors.ts';

/** Awaits `p`, which must reject with a BotstateError of `code`; returns its details and message. */
export async function rejectsWith(p: Promise<unknown>, code: string): Promise<Record<string, unknown>> {
  try {
    await p;
  } catch (e) {
    assert.ok(isBotstateError(e), `expected a BotstateError ${code}, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return { ...e.details, message: e.message };
  }
  assert.fail(`expected ${code}, but it resolved`);
}
