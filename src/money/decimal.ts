/**
 * Exact decimal amounts as canonical strings. Money never passes through a JS float here: values are
 * parsed as text, computed as bigints scaled by 10^{@link SCALE}, and written back as text.
 *
 * A {@link Decimal} is canonical: optional `-`, an integer part without leading zeros (`0` allowed),
 * and an optional `.` plus at most 18 fraction digits without trailing zeros. `-0`, `+`, exponents and
 * whitespace never appear. Because the form is canonical, two Decimals are equal iff their strings are.
 *
 * Arithmetic functions accept only canonical Decimals (run user input through {@link parseDecimal}
 * first) and throw `ValidationError('INVALID_AMOUNT')` otherwise, so raw text cannot slip into a sum.
 *
 * @example
 * const qty = parseDecimal(argv.amount, { field: 'baseAmount' }); // '007.10' → '7.1'
 * const cost = mul(qty, parseDecimal('0.0001234', { field: 'price' }), 'up');
 * add('0.1', '0.2'); // '0.3', exactly
 */
import { ValidationError } from '../errors.ts';
import { described, shown } from '../util/values.ts';

/** A canonical exact decimal string, e.g. `'-12.5'`, `'0'`, `'0.000000000000000001'`. */
export type Decimal = string;

/** Fraction digits carried by every computation: `units = value × 10^SCALE`. */
export const SCALE = 18;

/** The smallest amount there is, 10⁻¹⁸: one unit. */
export const UNIT: Decimal = '0.000000000000000001';

/** How {@link mul}, {@link div} and {@link mulDiv} round a result that needs more than 18 decimals. */
export type Rounding = 'down' | 'up' | 'half-even';

/** Options of {@link parseDecimal}. */
export interface ParseDecimalOptions {
  /** Name of the value in error messages, e.g. `'baseAmount'`. Default `'amount'`. */
  readonly field?: string;
  /** Accept negative values. Default `false`. `-0` is zero, so it is accepted either way (as `'0'`). */
  readonly allowNegative?: boolean;
  /** Most significant integer digits accepted (leading zeros do not count). Default 78. */
  readonly maxIntegerDigits?: number;
  /** Most significant fraction digits accepted (trailing zeros do not count), 0–18. Default 18. */
  readonly maxScale?: number;
}

const ONE = 10n ** BigInt(SCALE);
const ZEROS = '0'.repeat(SCALE);
const POW10: readonly bigint[] = Array.from({ length: SCALE + 1 }, (_, i) => 10n ** BigInt(i));
/** Most integer digits an amount may have (parseDecimal's default): a stored total stays within it too. */
export const MAX_INTEGER_DIGITS = 78;

// Compiled once: the canonical form, and the general shape accepted as input.
const CANONICAL_RE = new RegExp(`^(?!-0$)-?(?:0|[1-9][0-9]*)(?:\\.[0-9]{0,${SCALE - 1}}[1-9])?$`);
const INPUT_RE = /^(-?)([0-9]+)(?:\.([0-9]+))?$/;
// Only consulted on the error path, to say precisely what is wrong.
// (One way only to split the digits: `[0-9]+\.?[0-9]*` backtracks quadratically on a long run of
// digits that ends in something else.)
const EXPONENT_RE = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]+$/;
const BARE_POINT_RE = /^-?(?:\.[0-9]+|[0-9]+\.)$/;
const NON_FINITE_RE = /^[+-]?(?:nan|inf|infinity)$/i;
const HEX_RE = /^-?0[xXoObB]/;
const SPACE_RE = /^\s|\s$/;

const SHAPE_HINT = `use digits with an optional "." and at most ${SCALE} decimals`;

/** Quote a user value for a message, bounded so a huge input cannot flood the terminal. */
function quote(input: string): string {
  return JSON.stringify(shown(input, 48));
}

function amountError(field: string, input: string, reason: string, message: string, hint: string): ValidationError {
  return new ValidationError('INVALID_AMOUNT', message, {
    hint,
    details: { field, input: input.length > 100 ? `${input.slice(0, 100)}...` : input, reason },
  });
}

function shapeError(field: string, input: string): ValidationError {
  // Every shape error starts the same way; the parenthesis says what exactly is wrong.
  let why = '';
  let reason = 'shape';
  if (input === '') { why = 'it is empty'; reason = 'empty'; }
  else if (SPACE_RE.test(input)) { why = 'remove the spaces around it'; reason = 'whitespace'; }
  else if (input.startsWith('+')) { why = 'write it without the "+" sign'; reason = 'plus-sign'; }
  else if (BARE_POINT_RE.test(input)) { why = 'digits are needed on both sides of ".": write 0.5, not .5, and 5, not 5.'; reason = 'bare-point'; }
  else if (EXPONENT_RE.test(input)) { why = 'exponents are not accepted'; reason = 'exponent'; }
  else if (NON_FINITE_RE.test(input)) { why = 'it must be a finite number'; reason = 'non-finite'; }
  else if (HEX_RE.test(input)) { why = 'only base-10 digits are accepted'; reason = 'radix'; }
  else if (input.includes(',')) { why = 'no thousands separators; "." is the decimal point'; reason = 'separator'; }
  const message = `${field} ${quote(input)} is not a plain decimal number: ${SHAPE_HINT}${why === '' ? '' : ` (${why})`}`;
  return amountError(field, input, reason, message,
    `Write ${field} in plain base-10 digits with an optional "." (e.g. 1500 or 0.25).`);
}

function checkLimit(name: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new ValidationError('INVALID_ARGUMENT', `parseDecimal option ${name} must be an integer from 0 to ${max}, got ${String(value)}`, { hint: 'see ParseDecimalOptions' });
  }
}

/**
 * Parse user or wire text into a canonical {@link Decimal}, exactly. Never rounds: a value with more
 * significant decimals than `maxScale` is refused. Leading zeros of the integer part and trailing zeros
 * of the fraction are dropped (`'007.10'` → `'7.1'`), so they count toward neither limit.
 *
 * Refused (→ `ValidationError('INVALID_AMOUNT')`, message naming `field`): empty text, surrounding
 * whitespace, `+`, exponents (`1e5`), `NaN`/`Infinity`, hex, a `.` without digits on both sides
 * (`.5`, `5.`), thousands separators, too many digits, and negatives unless `allowNegative`.
 *
 * @example
 * parseDecimal('-1.50', { allowNegative: true }); // '-1.5'
 * parseDecimal('1e400', { field: 'baseAmount' });  // throws: baseAmount "1e400" uses an exponent…
 */
export function parseDecimal(input: string, opts?: ParseDecimalOptions): Decimal {
  const field = opts?.field ?? 'amount';
  if (typeof input !== 'string') {
    throw new ValidationError('INVALID_AMOUNT', `${field} must be given as a decimal string, got ${described(input)}`, {
      hint: `Pass ${field} as text such as "12.5"; JS numbers are floats and are not accepted for amounts.`,
      details: { field, reason: 'type' },
    });
  }
  const maxInt = opts?.maxIntegerDigits ?? MAX_INTEGER_DIGITS;
  const maxScale = opts?.maxScale ?? SCALE;
  if (opts?.maxIntegerDigits !== undefined) checkLimit('maxIntegerDigits', maxInt, 1_000_000);
  if (opts?.maxScale !== undefined) checkLimit('maxScale', maxScale, SCALE);

  const m = INPUT_RE.exec(input);
  if (m === null) throw shapeError(field, input);
  const negative = m[1] === '-';
  const rawInt = m[2] as string;
  const rawFrac = m[3];

  let i = 0;
  while (i < rawInt.length - 1 && rawInt.charCodeAt(i) === 48) i++;
  const intPart = i === 0 ? rawInt : rawInt.slice(i);
  let frac = '';
  if (rawFrac !== undefined) {
    let end = rawFrac.length;
    while (end > 0 && rawFrac.charCodeAt(end - 1) === 48) end--;
    frac = end === rawFrac.length ? rawFrac : rawFrac.slice(0, end);
  }

  const q = () => quote(input);
  if (frac.length > maxScale) {
    throw amountError(field, input, 'scale',
      `${field} ${q()} has ${frac.length} decimals; at most ${maxScale} are allowed (it is not rounded)`,
      `Give ${field} with at most ${maxScale} decimals; round it yourself if that is what you mean.`);
  }
  if (intPart.length > maxInt) {
    throw amountError(field, input, 'magnitude',
      `${field} ${q()} has ${intPart.length} integer digits; at most ${maxInt} are allowed`,
      `Check ${field} for extra digits.`);
  }
  const isZeroValue = frac === '' && intPart === '0';
  if (negative && !isZeroValue && opts?.allowNegative !== true) {
    throw amountError(field, input, 'negative', `${field} must not be negative, got ${q()}`,
      `Give ${field} as a positive amount.`);
  }
  const body = frac === '' ? intPart : `${intPart}.${frac}`;
  return negative && !isZeroValue ? `-${body}` : body;
}

/** True iff `s` is a canonical {@link Decimal} (at most 18 decimals). Never throws. */
export function isDecimal(s: unknown): s is Decimal {
  return typeof s === 'string' && CANONICAL_RE.test(s);
}

function notCanonical(d: unknown): ValidationError {
  const shown = typeof d === 'string' ? quote(d) : typeof d;
  return new ValidationError('INVALID_AMOUNT', `${shown} is not a canonical decimal amount`, {
    hint: 'Run the value through parseDecimal() before computing with it.',
    details: { input: typeof d === 'string' ? d.slice(0, 100) : typeof d, reason: 'not-canonical' },
  });
}

/**
 * The value scaled to an integer number of 10^-18 units: `toUnits('1.5') === 1500000000000000000n`.
 * Throws `ValidationError('INVALID_AMOUNT')` if `d` is not canonical.
 */
export function toUnits(d: Decimal): bigint {
  if (!isDecimal(d)) throw notCanonical(d);
  const dot = d.indexOf('.');
  if (dot < 0) return BigInt(d) * ONE;
  // The canonical form guarantees 1–18 fraction digits; BigInt accepts the sign and leading zeros.
  return BigInt(d.slice(0, dot) + d.slice(dot + 1)) * (POW10[SCALE - (d.length - dot - 1)] as bigint);
}

/** The exact inverse of {@link toUnits}: `fromUnits(1500000000000000000n) === '1.5'`. */
export function fromUnits(u: bigint): Decimal {
  if (typeof u !== 'bigint') throw new ValidationError('INVALID_AMOUNT', `fromUnits expects a bigint, got ${described(u)}`);
  if (u === 0n) return '0';
  const negative = u < 0n;
  let s = (negative ? -u : u).toString();
  if (s.length <= SCALE) s = ZEROS.slice(s.length - 1) + s; // at least one integer digit
  const intPart = s.slice(0, s.length - SCALE);
  let end = s.length;
  while (end > intPart.length && s.charCodeAt(end - 1) === 48) end--;
  const body = end === intPart.length ? intPart : `${intPart}.${s.slice(intPart.length, end)}`;
  return negative ? `-${body}` : body;
}

/** The number of digits before the point of a canonical decimal, its sign not counted: `integerDigits('-12.5') === 2`. */
export function integerDigits(d: Decimal): number {
  const start = d.startsWith('-') ? 1 : 0;
  const dot = d.indexOf('.');
  return (dot < 0 ? d.length : dot) - start;
}

/** `a + b`, exact. */
export function add(a: Decimal, b: Decimal): Decimal {
  return fromUnits(toUnits(a) + toUnits(b));
}

/** `a - b`, exact. */
export function sub(a: Decimal, b: Decimal): Decimal {
  return fromUnits(toUnits(a) - toUnits(b));
}

/** -1, 0 or 1 as `a` is less than, equal to or greater than `b`. */
export function cmp(a: Decimal, b: Decimal): -1 | 0 | 1 {
  if (!isDecimal(a)) throw notCanonical(a);
  if (!isDecimal(b)) throw notCanonical(b);
  if (a === b) return 0; // canonical: equal values are equal strings
  // Compared as text, no BigInt needed: with no leading zeros a longer integer part is larger; with
  // equal lengths, string order is numeric order ('.' sorts below digits, and without trailing zeros
  // a fraction that is a prefix of another is the smaller).
  const negA = a.charCodeAt(0) === 45;
  const negB = b.charCodeAt(0) === 45;
  if (negA !== negB) return negA ? -1 : 1;
  const x = negA ? a.slice(1) : a;
  const y = negB ? b.slice(1) : b;
  const dx = x.indexOf('.');
  const dy = y.indexOf('.');
  const ix = dx < 0 ? x.length : dx;
  const iy = dy < 0 ? y.length : dy;
  const mag = ix !== iy ? (ix < iy ? -1 : 1) : (x < y ? -1 : 1);
  return negA ? (mag === 1 ? -1 : 1) : mag;
}

/** `d === 0`. */
export function isZero(d: Decimal): boolean {
  if (!isDecimal(d)) throw notCanonical(d);
  return d === '0';
}

/**
 * Whether `amount` of a token is worth less than one unit (10⁻¹⁸) at `price`: `amount × price`
 * rounds down to 0, so that no order can sell it (it would fetch nothing).
 */
export function worthNothing(amount: Decimal, price: Decimal): boolean {
  return cmp(mul(amount, price, 'down'), '0') <= 0;
}

/** `d < 0`. */
export function isNegative(d: Decimal): boolean {
  if (!isDecimal(d)) throw notCanonical(d);
  return d.charCodeAt(0) === 45;
}

/** `-d` (`neg('0') === '0'`). */
export function neg(d: Decimal): Decimal {
  if (!isDecimal(d)) throw notCanonical(d);
  if (d === '0') return d;
  return d.charCodeAt(0) === 45 ? d.slice(1) : `-${d}`;
}

/** `|d|`. */
export function abs(d: Decimal): Decimal {
  if (!isDecimal(d)) throw notCanonical(d);
  return d.charCodeAt(0) === 45 ? d.slice(1) : d;
}

/** The smaller of `a` and `b`. */
export function min(a: Decimal, b: Decimal): Decimal {
  return cmp(a, b) <= 0 ? a : b;
}

/** The larger of `a` and `b`. */
export function max(a: Decimal, b: Decimal): Decimal {
  return cmp(a, b) >= 0 ? a : b;
}

/**
 * `n / d` for bigints, rounded. 'down' truncates toward zero, 'up' rounds away from zero, 'half-even'
 * rounds to nearest with ties to the even neighbour (banker's rounding).
 */
function divRound(n: bigint, d: bigint, rounding: Rounding): bigint {
  const q = n / d;
  const r = n % d;
  if (r === 0n || rounding === 'down') return q;
  const away = (n < 0n) !== (d < 0n) ? q - 1n : q + 1n;
  if (rounding === 'up') return away;
  if (rounding !== 'half-even') throw badRounding(rounding);
  const twiceR = 2n * (r < 0n ? -r : r);
  const absD = d < 0n ? -d : d;
  if (twiceR > absD) return away;
  if (twiceR < absD) return q;
  return q % 2n === 0n ? q : away;
}

function badRounding(rounding: unknown): ValidationError {
  return new ValidationError('INVALID_ARGUMENT', `unknown rounding ${JSON.stringify(rounding)}`, { hint: "use 'down', 'up' or 'half-even'" });
}

function checkRounding(rounding: Rounding): void {
  if (rounding !== 'down' && rounding !== 'up' && rounding !== 'half-even') throw badRounding(rounding);
}

function divisor(b: Decimal, op: string): bigint {
  const ub = toUnits(b);
  if (ub === 0n) {
    throw new ValidationError('INVALID_AMOUNT', `${op}: division by zero`, {
      hint: 'Check that the divisor (a price, rate or quantity) is not zero before dividing.',
      details: { reason: 'division-by-zero' },
    });
  }
  return ub;
}

/**
 * `a × b` at 18 decimals. Only the 19th+ decimals are rounded, per `rounding` (default 'down' = toward zero).
 *
 * @example mul('0.1', '0.000000000000000005', 'half-even') // '0' (0.5e-18 ties to even)
 */
export function mul(a: Decimal, b: Decimal, rounding: Rounding = 'down'): Decimal {
  checkRounding(rounding);
  return fromUnits(divRound(toUnits(a) * toUnits(b), ONE, rounding));
}

/**
 * {@link mul} on values already in 10^-18 units ({@link toUnits}): for loops that multiply many
 * times and convert once at the end. `fromUnits(mulUnits(toUnits(a), toUnits(b), r)) === mul(a, b, r)`.
 */
export function mulUnits(a: bigint, b: bigint, rounding: Rounding = 'down'): bigint {
  checkRounding(rounding);
  return divRound(a * b, ONE, rounding);
}

/**
 * `a ÷ b` at 18 decimals, rounded per `rounding` (default 'down' = toward zero).
 * Throws `ValidationError('INVALID_AMOUNT')` when `b` is zero.
 *
 * @example div('1', '3') // '0.333333333333333333'; div('2', '3', 'up') // '0.666666666666666667'
 */
export function div(a: Decimal, b: Decimal, rounding: Rounding = 'down'): Decimal {
  checkRounding(rounding);
  const ub = divisor(b, 'div');
  return fromUnits(divRound(toUnits(a) * ONE, ub, rounding));
}

/**
 * `a × b ÷ c` with a single rounding at the end (more exact than `div(mul(a, b), c)`), e.g. a share
 * `amount × percent ÷ 100`. Throws `ValidationError('INVALID_AMOUNT')` when `c` is zero.
 *
 * @example mulDiv('10', '1', '3') // '3.333333333333333333'
 */
export function mulDiv(a: Decimal, b: Decimal, c: Decimal, rounding: Rounding = 'down'): Decimal {
  checkRounding(rounding);
  const uc = divisor(c, 'mulDiv');
  return fromUnits(divRound(toUnits(a) * toUnits(b), uc, rounding));
}
