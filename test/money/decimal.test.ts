import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ValidationError } from '../../src/errors.ts';
import {
  SCALE, abs, add, cmp, div, fromUnits, isDecimal, isNegative, isZero, max, min, mul, mulDiv, mulUnits, neg,
  parseDecimal, sub, toUnits,
} from '../../src/money/decimal.ts';
import type { Rounding } from '../../src/money/decimal.ts';

const E18 = 10n ** 18n;

/** Assert `f` throws a ValidationError with `code` whose message matches every pattern. */
function throwsValidation(f: () => unknown, code: string, ...patterns: RegExp[]): ValidationError {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ValidationError, `expected a ValidationError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

// Independent oracle for canonical text: built digit by digit from a bigint, no shared code.
function oracleFormat(u: bigint): string {
  const negative = u < 0n;
  const a = negative ? -u : u;
  const intPart = (a / E18).toString();
  let frac = (a % E18).toString().padStart(18, '0');
  while (frac.endsWith('0')) frac = frac.slice(0, -1);
  const body = frac === '' ? intPart : `${intPart}.${frac}`;
  return negative ? `-${body}` : body;
}

/** Random scaled values: integer parts of up to 60 digits, 18 decimals (sum of two stays ≤ 78 digits). */
const units = (maxIntDigits = 60) =>
  fc.tuple(
    fc.bigInt({ min: 0n, max: 10n ** BigInt(maxIntDigits) - 1n }),
    fc.bigInt({ min: 0n, max: E18 - 1n }),
    fc.boolean(),
    fc.constantFrom(0, 1, 2), // bias toward small and whole values too
  ).map(([i, f, negative, shape]) => {
    const int = shape === 1 ? i % 1000n : i;
    const frac = shape === 2 ? 0n : f;
    const v = int * E18 + frac;
    return negative ? -v : v;
  });

describe('parseDecimal accepts and canonicalizes', () => {
  const cases: Array<[string, string, boolean?]> = [
    ['123', '123'],
    ['0', '0'],
    ['000', '0'],
    ['007.10', '7.1'],
    ['1.50', '1.5'],
    ['0.000000000000000001', '0.000000000000000001'],
    ['1.000000000000000000000', '1'], // trailing zeros are not precision: accepted, not rounded
    ['0.5000000000000000000', '0.5'],
    ['-1.5', '-1.5', true],
    ['-0', '0'], // zero is not negative: accepted even without allowNegative
    ['-0.000', '0'],
    ['-007.0100', '-7.01', true],
    ['1' + '0'.repeat(77), '1' + '0'.repeat(77)], // 78 integer digits
    ['0'.repeat(100) + '1', '1'], // leading zeros are not digits of the value
    ['99999999999999999999.999999999999999999', '99999999999999999999.999999999999999999'],
  ];
  for (const [input, expected, allowNegative] of cases) {
    it(`${JSON.stringify(input)} → ${expected}`, () => {
      assert.equal(parseDecimal(input, { allowNegative: allowNegative ?? false }), expected);
    });
  }
});

describe('parseDecimal refuses', () => {
  const shape = /is not a plain decimal number: use digits with an optional "\." and at most 18 decimals/;
  const cases: Array<[string, RegExp]> = [
    ['', /it is empty/],
    [' 1', /spaces/],
    ['1 ', /spaces/],
    ['\t1', /spaces/],
    ['1\n', /spaces/],
    ['1 000', shape],
    ['+1', /"\+" sign/],
    ['1e400', /exponents are not accepted/],
    ['1E5', /exponents are not accepted/],
    ['1.5e-3', /exponents are not accepted/],
    ['NaN', /finite/],
    ['Infinity', /finite/],
    ['-Infinity', /finite/],
    ['0x10', /base-10/],
    ['0b1', /base-10/],
    ['.5', /both sides of "\."/],
    ['5.', /both sides of "\."/],
    ['-.5', /both sides of "\."/],
    ['.', shape],
    ['-', shape],
    ['--1', shape],
    ['1.2.3', shape],
    ['1,000', /thousands separators/],
    ['１２', shape], // full-width digits are not ASCII digits
    ['٣', shape], // Arabic-Indic digit
    ['abc', shape],
  ];
  for (const [input, why] of cases) {
    it(`${JSON.stringify(input)}`, () => {
      const e = throwsValidation(() => parseDecimal(input, { field: 'baseAmount', allowNegative: true }),
        'INVALID_AMOUNT', /^baseAmount /, shape, why);
      assert.equal(typeof e.hint, 'string');
      assert.equal(e.details['field'], 'baseAmount');
    });
  }

  it('the spec example message for 1e400', () => {
    throwsValidation(() => parseDecimal('1e400', { field: 'baseAmount' }), 'INVALID_AMOUNT',
      /^baseAmount "1e400" is not a plain decimal number: use digits with an optional "\." and at most 18 decimals/);
  });

  it('more than 18 decimals, without rounding', () => {
    const e = throwsValidation(() => parseDecimal('0.0000000000000000001', { field: 'price' }), 'INVALID_AMOUNT',
      /^price "0\.0000000000000000001" has 19 decimals; at most 18 are allowed \(it is not rounded\)/);
    assert.equal(e.details['reason'], 'scale');
    throwsValidation(() => parseDecimal('1.1234567890123456789'), 'INVALID_AMOUNT', /19 decimals/);
  });

  it('maxScale', () => {
    assert.equal(parseDecimal('1.25', { maxScale: 2 }), '1.25');
    assert.equal(parseDecimal('1.2500', { maxScale: 2 }), '1.25');
    throwsValidation(() => parseDecimal('1.255', { maxScale: 2 }), 'INVALID_AMOUNT', /3 decimals; at most 2/);
    assert.equal(parseDecimal('7', { maxScale: 0 }), '7');
    throwsValidation(() => parseDecimal('7.5', { maxScale: 0 }), 'INVALID_AMOUNT', /at most 0/);
  });

  it('more than 78 integer digits, or maxIntegerDigits', () => {
    throwsValidation(() => parseDecimal('1' + '0'.repeat(78)), 'INVALID_AMOUNT', /79 integer digits; at most 78/);
    assert.equal(parseDecimal('999', { maxIntegerDigits: 3 }), '999');
    throwsValidation(() => parseDecimal('1000', { maxIntegerDigits: 3 }), 'INVALID_AMOUNT', /4 integer digits; at most 3/);
  });

  it('negative unless allowed', () => {
    throwsValidation(() => parseDecimal('-1', { field: 'quoteAmount' }), 'INVALID_AMOUNT',
      /^quoteAmount must not be negative, got "-1"$/);
    throwsValidation(() => parseDecimal('-0.000000000000000001'), 'INVALID_AMOUNT', /must not be negative/);
    assert.equal(parseDecimal('-1', { allowNegative: true }), '-1');
  });

  it('non-strings (JS callers)', () => {
    throwsValidation(() => parseDecimal(1.5 as unknown as string), 'INVALID_AMOUNT', /must be given as a decimal string, got the number 1\.5/);
    throwsValidation(() => parseDecimal(undefined as unknown as string), 'INVALID_AMOUNT', /got undefined/);
  });

  it('bad options are programming errors', () => {
    throwsValidation(() => parseDecimal('1', { maxScale: 19 }), 'INVALID_ARGUMENT', /maxScale/);
    throwsValidation(() => parseDecimal('1', { maxScale: 1.5 }), 'INVALID_ARGUMENT', /maxScale/);
    throwsValidation(() => parseDecimal('1', { maxIntegerDigits: -1 }), 'INVALID_ARGUMENT', /maxIntegerDigits/);
  });

  it('a huge input is quoted briefly in the message', () => {
    const e = throwsValidation(() => parseDecimal('x'.repeat(10_000)), 'INVALID_AMOUNT');
    assert.ok(e.message.length < 300, e.message);
  });

  it('defaults the field name to amount', () => {
    throwsValidation(() => parseDecimal('abc'), 'INVALID_AMOUNT', /^amount "abc"/);
  });

  it('says what is wrong with a long malformed input in one pass over it', () => {
    // The exponent check once split a run of digits every possible way: a million digits and
    // an "x" took about half an hour to refuse. Not a timing: before the fix this never ends.
    const long = `${'1'.repeat(1_000_000)}x`;
    assert.throws(() => parseDecimal(long), /is not a plain decimal number/);
    assert.throws(() => parseDecimal(`${'1'.repeat(1_000_000)}e5`), /exponents are not accepted/);
  });
});

describe('isDecimal', () => {
  it('accepts canonical forms only', () => {
    for (const s of ['0', '1', '-1', '10', '0.1', '-0.000000000000000001', '123456789012345678901234567890.5']) {
      assert.equal(isDecimal(s), true, s);
    }
    for (const s of ['', '-0', '00', '01', '1.0', '1.10', '.5', '5.', '+1', '1e5', ' 1', '-', '0.0000000000000000001', 'NaN', '-0.0']) {
      assert.equal(isDecimal(s), false, s);
    }
    for (const v of [1, 1n, null, undefined, {}, ['1']]) assert.equal(isDecimal(v), false);
  });
});

describe('toUnits / fromUnits', () => {
  const cases: Array<[string, bigint]> = [
    ['0', 0n],
    ['1', E18],
    ['-1', -E18],
    ['1.5', 1_500_000_000_000_000_000n],
    ['-1.5', -1_500_000_000_000_000_000n],
    ['0.000000000000000001', 1n],
    ['-0.000000000000000001', -1n],
    ['0.1', 100_000_000_000_000_000n],
    ['123.000000000000000456', 123_000_000_000_000_000_456n],
    ['1' + '0'.repeat(77), 10n ** 95n],
  ];
  for (const [d, u] of cases) {
    it(`${d} ↔ ${u}`, () => {
      assert.equal(toUnits(d), u);
      assert.equal(fromUnits(u), d);
    });
  }

  it('toUnits refuses non-canonical text', () => {
    for (const s of ['007', '1.50', '-0', '1e5', ' 1', '', '.5']) {
      throwsValidation(() => toUnits(s), 'INVALID_AMOUNT', /not a canonical decimal amount/);
    }
  });

  it('fromUnits refuses non-bigints', () => {
    throwsValidation(() => fromUnits(5 as unknown as bigint), 'INVALID_AMOUNT', /expects a bigint/);
  });

  it('property: fromUnits matches an independent formatter and toUnits inverts it', () => {
    fc.assert(fc.property(units(78), (u) => {
      const d = fromUnits(u);
      assert.equal(d, oracleFormat(u));
      assert.equal(isDecimal(d), true);
      assert.equal(toUnits(d), u);
    }), { numRuns: 2000 });
  });

  it('property: parse ∘ format is the identity, and parse is idempotent', () => {
    fc.assert(fc.property(units(78), (u) => {
      const d = fromUnits(u);
      assert.equal(parseDecimal(d, { allowNegative: true }), d);
    }), { numRuns: 2000 });
  });

  it('property: decorating a value with leading/trailing zeros parses back to it', () => {
    fc.assert(fc.property(units(40), fc.nat(5), fc.nat(5), (u, lead, trail) => {
      const d = fromUnits(u);
      const negative = d.startsWith('-');
      const body = negative ? d.slice(1) : d;
      const [i, f] = body.split('.') as [string, string | undefined];
      const decorated = `${negative ? '-' : ''}${'0'.repeat(lead)}${i}.${f ?? ''}${'0'.repeat(trail + (f === undefined ? 1 : 0))}`;
      assert.equal(parseDecimal(decorated, { allowNegative: true }), d);
    }), { numRuns: 1000 });
  });
});

describe('arithmetic', () => {
  it('examples', () => {
    assert.equal(add('0.1', '0.2'), '0.3');
    assert.equal(add('-0.1', '0.1'), '0');
    assert.equal(sub('1', '1.000000000000000001'), '-0.000000000000000001');
    assert.equal(sub('0', '0'), '0');
    assert.equal(add('999999999999999999.999999999999999999', '0.000000000000000001'), '1000000000000000000');
    assert.equal(neg('0'), '0');
    assert.equal(neg('1.5'), '-1.5');
    assert.equal(neg('-1.5'), '1.5');
    assert.equal(abs('-2'), '2');
    assert.equal(abs('2'), '2');
    assert.equal(abs('0'), '0');
    assert.equal(isZero('0'), true);
    assert.equal(isZero('0.000000000000000001'), false);
    assert.equal(isNegative('-0.1'), true);
    assert.equal(isNegative('0'), false);
    assert.equal(isNegative('5'), false);
    assert.equal(min('1.5', '1.25'), '1.25');
    assert.equal(max('1.5', '1.25'), '1.5');
    assert.equal(min('-1', '0.5'), '-1');
    assert.equal(max('-1', '-2'), '-1');
  });

  it('cmp examples, including tricky string orders', () => {
    const ordered = ['-100', '-99.5', '-10', '-9.99', '-1', '-0.5', '-0.05', '-0.000000000000000001', '0',
      '0.000000000000000001', '0.05', '0.1', '0.5', '1', '1.000000000000000001', '1.25', '1.5', '9', '10', '10.01', '99', '100'];
    for (let i = 0; i < ordered.length; i++) {
      for (let j = 0; j < ordered.length; j++) {
        const expected = i < j ? -1 : i > j ? 1 : 0;
        assert.equal(cmp(ordered[i] as string, ordered[j] as string), expected, `${ordered[i]} vs ${ordered[j]}`);
      }
    }
  });

  it('operations refuse non-canonical operands', () => {
    const ops: Array<(x: string) => unknown> = [
      (x) => add(x, '1'), (x) => add('1', x), (x) => sub(x, '1'), (x) => cmp(x, '1'), (x) => cmp('1', x),
      (x) => isZero(x), (x) => isNegative(x), (x) => neg(x), (x) => abs(x), (x) => min(x, '1'), (x) => max('1', x),
      (x) => mul(x, '1'), (x) => div('1', x), (x) => mulDiv('1', '1', x),
    ];
    for (const op of ops) {
      for (const bad of ['01', '1.0', '-0', '1e3', '']) throwsValidation(() => op(bad), 'INVALID_AMOUNT', /not a canonical/);
    }
  });

  it('property: add and sub agree with bigint arithmetic on 18-decimal values up to 78 digits', () => {
    fc.assert(fc.property(units(60), units(60), (x, y) => {
      const a = fromUnits(x);
      const b = fromUnits(y);
      assert.equal(add(a, b), oracleFormat(x + y));
      assert.equal(sub(a, b), oracleFormat(x - y));
      assert.equal(add(a, b), add(b, a));
      assert.equal(sub(add(a, b), b), a);
    }), { numRuns: 3000 });
  });

  it('property: cmp is consistent with the sign of sub, antisymmetric, and with min/max', () => {
    fc.assert(fc.property(units(30), units(30), (x, y) => {
      const a = fromUnits(x);
      const b = fromUnits(y);
      const c = cmp(a, b);
      const expected = x < y ? -1 : x > y ? 1 : 0;
      assert.equal(c, expected);
      const diff = sub(a, b);
      assert.equal(c, isZero(diff) ? 0 : isNegative(diff) ? -1 : 1);
      assert.equal(cmp(b, a), c === 0 ? 0 : -c); // not -c alone: strict equality tells 0 from -0
      assert.equal(min(a, b), c <= 0 ? a : b);
      assert.equal(max(a, b), c >= 0 ? a : b);
    }), { numRuns: 3000 });
  });

  it('property: cmp on values sharing digits (prefixes, same lengths)', () => {
    // Random values tend to differ in length; this targets the string-order path.
    const digits = fc.string({ unit: fc.constantFrom('0', '1', '9'), minLength: 1, maxLength: 6 });
    fc.assert(fc.property(digits, digits, digits, digits, fc.boolean(), fc.boolean(), (i1, f1, i2, f2, n1, n2) => {
      const a = parseDecimal(`${n1 ? '-' : ''}${i1}.${f1}`, { allowNegative: true });
      const b = parseDecimal(`${n2 ? '-' : ''}${i2}.${f2}`, { allowNegative: true });
      const x = toUnits(a);
      const y = toUnits(b);
      assert.equal(cmp(a, b), x < y ? -1 : x > y ? 1 : 0, `${a} vs ${b}`);
    }), { numRuns: 3000 });
  });

  it('property: neg and abs', () => {
    fc.assert(fc.property(units(78), (x) => {
      const a = fromUnits(x);
      assert.equal(neg(a), oracleFormat(-x));
      assert.equal(abs(a), oracleFormat(x < 0n ? -x : x));
      assert.equal(neg(neg(a)), a);
    }), { numRuns: 1000 });
  });
});

describe('mul / div / mulDiv rounding', () => {
  it('mul examples', () => {
    assert.equal(mul('2', '3'), '6');
    assert.equal(mul('1.5', '-2'), '-3');
    assert.equal(mul('0.1', '0.1'), '0.01');
    assert.equal(mul('0', '-5'), '0');
    // 0.000000000000000001 × 0.5 = 0.0000000000000000005: the 19th decimal decides.
    assert.equal(mul('0.000000000000000001', '0.5'), '0');
    assert.equal(mul('0.000000000000000001', '0.5', 'down'), '0');
    assert.equal(mul('0.000000000000000001', '0.5', 'up'), '0.000000000000000001');
    assert.equal(mul('0.000000000000000001', '0.5', 'half-even'), '0'); // tie → even (0)
    assert.equal(mul('0.000000000000000003', '0.5', 'half-even'), '0.000000000000000002'); // 1.5 → 2
    assert.equal(mul('0.000000000000000005', '0.5', 'half-even'), '0.000000000000000002'); // 2.5 → 2
    assert.equal(mul('0.000000000000000001', '0.6', 'half-even'), '0.000000000000000001'); // 0.6 → 1
    assert.equal(mul('0.000000000000000001', '0.4', 'half-even'), '0'); // 0.4 → 0
    assert.equal(mul('-0.000000000000000001', '0.5', 'up'), '-0.000000000000000001'); // away from zero
    assert.equal(mul('-0.000000000000000001', '0.5', 'down'), '0'); // toward zero, never '-0'
    assert.equal(mul('-0.000000000000000003', '0.5', 'half-even'), '-0.000000000000000002');
  });

  it('div examples', () => {
    assert.equal(div('1', '3'), '0.333333333333333333');
    assert.equal(div('2', '3'), '0.666666666666666666');
    assert.equal(div('2', '3', 'up'), '0.666666666666666667');
    assert.equal(div('2', '3', 'half-even'), '0.666666666666666667');
    assert.equal(div('-2', '3'), '-0.666666666666666666');
    assert.equal(div('-2', '3', 'up'), '-0.666666666666666667');
    assert.equal(div('2', '-3', 'half-even'), '-0.666666666666666667');
    assert.equal(div('10', '4'), '2.5');
    assert.equal(div('1', '0.000000000000000001'), '1000000000000000000');
    assert.equal(div('0', '7'), '0');
  });

  it('division by zero', () => {
    throwsValidation(() => div('1', '0'), 'INVALID_AMOUNT', /division by zero/);
    throwsValidation(() => div('0', '0'), 'INVALID_AMOUNT', /division by zero/);
    throwsValidation(() => mulDiv('1', '1', '0'), 'INVALID_AMOUNT', /division by zero/);
  });

  it('unknown rounding is refused', () => {
    throwsValidation(() => mul('1', '1', 'ceil' as Rounding), 'INVALID_ARGUMENT', /unknown rounding/);
    throwsValidation(() => div('1', '3', 'nearest' as Rounding), 'INVALID_ARGUMENT', /unknown rounding/);
  });

  it('mulDiv rounds once', () => {
    assert.equal(mulDiv('10', '1', '3'), '3.333333333333333333');
    assert.equal(mulDiv('200', '5', '100'), '10');
    // div(mul(a,b),c) would round twice: 0.000000000000000001 × 0.5 → 0, then ÷ 0.5 → 0.
    assert.equal(mulDiv('0.000000000000000001', '0.5', '0.5'), '0.000000000000000001');
    assert.equal(div(mul('0.000000000000000001', '0.5'), '0.5'), '0');
  });

  /** Oracle for rounding q = n/d from first principles: floor via remainder sign, then the rule. */
  function oracleRound(n: bigint, d: bigint, rounding: Rounding): bigint {
    // Normalize to a positive divisor so floor is well defined.
    if (d < 0n) { n = -n; d = -d; }
    let floor = n / d;
    if (n % d !== 0n && n < 0n) floor -= 1n;
    const rem = n - floor * d; // 0 ≤ rem < d
    if (rem === 0n) return floor;
    const ceil = floor + 1n;
    const towardZero = n < 0n ? ceil : floor;
    const awayFromZero = n < 0n ? floor : ceil;
    if (rounding === 'down') return towardZero;
    if (rounding === 'up') return awayFromZero;
    if (2n * rem < d) return floor;
    if (2n * rem > d) return ceil;
    return floor % 2n === 0n ? floor : ceil;
  }

  const roundings = fc.constantFrom<Rounding>('down', 'up', 'half-even');

  it('property: mul matches the rounding oracle', () => {
    fc.assert(fc.property(units(30), units(30), roundings, (x, y, r) => {
      assert.equal(mul(fromUnits(x), fromUnits(y), r), oracleFormat(oracleRound(x * y, E18, r)));
      assert.equal(mulUnits(x, y, r), oracleRound(x * y, E18, r));
    }), { numRuns: 3000 });
  });

  it('property: div matches the rounding oracle, and exact quotients come back exactly', () => {
    fc.assert(fc.property(units(30), units(30).filter((y) => y !== 0n), roundings, (x, y, r) => {
      assert.equal(div(fromUnits(x), fromUnits(y), r), oracleFormat(oracleRound(x * E18, y, r)));
      // (x × y) / y = x when x × y is exact at 18 decimals.
      const p = x * y;
      if (p % E18 === 0n) assert.equal(div(fromUnits(p / E18), fromUnits(y), r), fromUnits(x));
    }), { numRuns: 3000 });
  });

  it('property: half-even ties alternate, down ≤ exact ≤ up in magnitude', () => {
    fc.assert(fc.property(fc.bigInt({ min: -(10n ** 20n), max: 10n ** 20n }), (k) => {
      // k + 0.5 units exactly: (2k+1) × 0.5e-18.
      const tie = mul(fromUnits(2n * k + 1n), '0.5', 'half-even');
      const down = toUnits(mul(fromUnits(2n * k + 1n), '0.5', 'down'));
      const up = toUnits(mul(fromUnits(2n * k + 1n), '0.5', 'up'));
      const u = toUnits(tie);
      assert.equal(u % 2n, 0n);
      assert.ok(u === down || u === up);
      assert.equal(up - down, k >= 0n ? 1n : -1n);
    }), { numRuns: 1000 });
  });

  it('SCALE is 18', () => {
    assert.equal(SCALE, 18);
  });
});

describe('no floats in the money code', () => {
  it('decimal.ts uses no Number()/parseFloat/Math on amounts', async () => {
    const { readFile } = await import('node:fs/promises');
    const src = await readFile(new URL('../../src/money/decimal.ts', import.meta.url), 'utf8');
    const code = src.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    assert.doesNotMatch(code, /\bNumber\(|parseFloat|parseInt|Math\.|toFixed|\+\s*0\.|Number\.parse/);
  });
});
