import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkNotBefore, isIsoTime, nowIso } from '../../src/util/time.ts';

describe('nowIso', () => {
  it('is now, as toISOString writes it, and follows the clock from one millisecond to the next', async () => {
    const seen = new Set<string>();
    // Until it has followed the clock through 10 milliseconds (a cached value that never moved
    // would not); the deadline is only a bound, far beyond it, for a process the machine starves.
    const end = Date.now() + 5000;
    while (seen.size < 10 && Date.now() < end) {
      const before = Date.now();
      const iso = nowIso();
      const after = Date.now();
      assert.ok(isIsoTime(iso), iso);
      const ms = Date.parse(iso);
      assert.ok(ms >= before && ms <= after, `${iso} is not between ${before} and ${after}`);
      seen.add(iso);
    }
    assert.ok(seen.size >= 10, `only ${seen.size} distinct milliseconds seen in 5 s`);
  });
});

describe('isIsoTime', () => {
  it('takes real UTC times with milliseconds only', () => {
    assert.equal(isIsoTime('2026-11-26T03:44:27.123Z'), true);
    assert.equal(isIsoTime('0001-01-01T00:00:00.000Z'), true);
    for (const bad of ['0000-06-01T00:00:00.000Z', '2026-02-30T00:00:00.000Z', '2026-11-26T24:00:00.000Z', '2026-11-26T03:44:27Z', '2026-11-26 03:44:27.123Z', 1, null]) {
      assert.equal(isIsoTime(bad), false, String(bad));
    }
  });
});

describe('checkNotBefore', () => {
  const iso = (ms: number) => new Date(ms).toISOString();
  const MIN = 60_000;
  const check = (time: number, recordedAt: number) => () => checkNotBefore('executedAt', iso(time), iso(recordedAt), 'order o-1', 'hint');
  it('refuses a fill dated more than 5 minutes before its intent, and takes one within them', () => {
    const now = Date.now();
    assert.throws(check(now - 2 * 60 * MIN, now - 60 * MIN), /^ValidationError: executedAt \S+ is before order o-1 was recorded \(\S+\)$/);
    assert.throws(check(now - 365 * 24 * 60 * MIN, now));
    assert.doesNotThrow(check(now - 60 * MIN - 4 * MIN, now - 60 * MIN));
  });
  it('takes a fill dated now when the intent was stamped ahead of this clock (a clock stepped back, another host\'s clock)', () => {
    const now = Date.now();
    assert.doesNotThrow(check(now, now + 20 * MIN));
    assert.doesNotThrow(check(now - 4 * MIN, now + 20 * MIN));
    assert.throws(check(now - 6 * MIN, now + 20 * MIN));
  });
});
