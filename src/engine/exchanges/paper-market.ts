/**
 * The paper exchange's markets: one deterministic price path per token, a geometric random walk.
 *
 * price(0) = startPrice × a per-token factor in [1 − spread, 1 + spread), from hash(seed, token);
 * price(n) = price(n−1) × clamp(1 + volatility × z(n), 0.5, 1.5), rounded to {@link SIGNIFICANT_DIGITS}
 * significant digits (half-even) and kept within [{@link MIN_PRICE}, {@link MAX_PRICE}].
 *
 * z(n) is roughly standard normal (Irwin–Hall): the sum of 12 uniform 16-bit values from
 * SHA-256(seed, token, n), centred and scaled. It is an exact binary fraction, (2·sum − 786420) / 2^17,
 * so it is an exact 18-decimal {@link Decimal}, and every price is computed with src/money/decimal.ts:
 * no float ever touches a price.
 *
 * The path depends only on (seed, volatility, startPrice, spread, token, n), so two exchanges with the
 * same parameters quote the same prices at the same step, and a restarted one continues its path.
 *
 * @example
 * const market = new PaperMarket({ seed: '1', volatility: '0.01', startPrice: '1', startPriceSpread: '0.5' });
 * market.priceAt('0xbbd9aDe16525acb4B336b6dAd3b9762901522B07', 42); // e.g. '0.873164210455'
 */
import { createHash, hash } from 'node:crypto';
import { add, cmp, fromUnits, isDecimal, mul, mulUnits, SCALE, sub, toUnits, type Decimal } from '../../money/decimal.ts';

/** Prices keep this many significant digits, so they stay short and never drift into 18-decimal noise. */
export const SIGNIFICANT_DIGITS = 12;
/** The lowest price a path can reach: a walk that falls further is held here. */
export const MIN_PRICE: Decimal = '0.000000000001';
/** The highest price a path can reach. */
export const MAX_PRICE: Decimal = '1000000000000000';
const MIN_FACTOR: Decimal = '0.5';
const MAX_FACTOR: Decimal = '1.5';

/** What a path depends on. Validate with {@link validateMarketParams}. */
export interface MarketParams {
  /** Any text; the same seed gives the same paths. */
  readonly seed: string;
  /** Size of one step's move: 0.01 is 1 % (one standard deviation of z). 0 gives a flat price. */
  readonly volatility: Decimal;
  /** The base start price, in USD. */
  readonly startPrice: Decimal;
  /** Each token starts at startPrice × [1 − spread, 1 + spread), chosen by seed and token. 0 ≤ spread < 1. */
  readonly startPriceSpread: Decimal;
}

/** Throws a `RangeError` naming the first bad parameter. */
export function validateMarketParams(p: MarketParams): MarketParams {
  if (typeof p.seed !== 'string' || p.seed === '') throw new RangeError('seed must be a non-empty string');
  const decimal = (name: string, v: unknown, lo: Decimal, hi: Decimal, hiOpen = false): void => {
    if (!isDecimal(v) || cmp(v, lo) < 0 || cmp(v, hi) > (hiOpen ? -1 : 0)) {
      throw new RangeError(`${name} must be a decimal from ${lo} to ${hi}${hiOpen ? ' (exclusive)' : ''}, got ${JSON.stringify(v)}`);
    }
  };
  decimal('volatility', p.volatility, '0', '1');
  decimal('startPrice', p.startPrice, MIN_PRICE, MAX_PRICE);
  decimal('startPriceSpread', p.startPriceSpread, '0', '1', true);
  return Object.freeze({ seed: p.seed, volatility: p.volatility, startPrice: p.startPrice, startPriceSpread: p.startPriceSpread });
}

/**
 * The step index at `nowMs` for a market that started at `epochMs`: floor((now − epoch) / stepMs),
 * and 0 before the epoch (a clock set back never moves a path backwards past its start).
 */
export function stepAt(epochMs: number, stepMs: number, nowMs: number): number {
  return nowMs <= epochMs ? 0 : Math.floor((nowMs - epochMs) / stepMs);
}

/** `d` rounded half-even to {@link SIGNIFICANT_DIGITS} significant digits (at most 18 decimals). */
export function roundSignificant(d: Decimal): Decimal {
  return fromUnits(roundSignificantUnits(toUnits(d)));
}

/** {@link roundSignificant} in 10^-18 units. */
function roundSignificantUnits(u: bigint): bigint {
  const negative = u < 0n;
  const a = negative ? -u : u;
  const drop = a.toString().length - SIGNIFICANT_DIGITS;
  if (drop <= 0) return u;
  const p = 10n ** BigInt(drop);
  let q = a / p;
  const r2 = (a % p) * 2n;
  if (r2 > p || (r2 === p && q % 2n === 1n)) q += 1n;
  return (negative ? -q : q) * p;
}

function clampUnits(u: bigint, lo: bigint, hi: bigint): bigint {
  return u < lo ? lo : u > hi ? hi : u;
}

function clamp(d: Decimal, lo: Decimal, hi: Decimal): Decimal {
  return cmp(d, lo) < 0 ? lo : cmp(d, hi) > 0 ? hi : d;
}

// z = (2·sum − 12·65535) / 2^17 with sum of 12 uint16: mean 0, standard deviation ≈ 0.99999.
const Z_CENTRE = 12n * 65535n;
const Z_UNIT = 10n ** BigInt(SCALE) / (1n << 17n); // exact: 10^18 is divisible by 2^17

function digest(...parts: readonly (string | number)[]): Buffer {
  return hash('sha256', ['botstate-paper', ...parts].join('\0'), 'buffer');
}

const MIN_PRICE_UNITS = toUnits(MIN_PRICE);
const MAX_PRICE_UNITS = toUnits(MAX_PRICE);
const MIN_FACTOR_UNITS = toUnits(MIN_FACTOR);
const MAX_FACTOR_UNITS = toUnits(MAX_FACTOR);
const ONE_UNITS = toUnits('1');

/**
 * Deterministic price paths, one per token, with a cache of the last computed step per token so that
 * reading the price at a later step costs only the steps in between.
 */
export class PaperMarket {
  readonly params: MarketParams;
  /** Identifies the parameters: a cached (step, price) is only valid for the same fingerprint. */
  readonly fingerprint: string;
  readonly #cache = new Map<string, { step: number; price: Decimal }>();
  /** Per token, the last point computed before its cached one (see priceAt). */
  readonly #behind = new Map<string, { step: number; price: Decimal }>();
  readonly #volatilityUnits: bigint;

  constructor(params: MarketParams) {
    this.params = validateMarketParams(params);
    const { seed, volatility, startPrice, startPriceSpread } = this.params;
    this.#volatilityUnits = toUnits(volatility);
    this.fingerprint = createHash('sha256').update(JSON.stringify(['v1', seed, volatility, startPrice, startPriceSpread])).digest('hex').slice(0, 32);
  }

  /** The roughly standard-normal shock of step `n` (n ≥ 1) of `token`'s path, exact. */
  z(token: string, n: number): Decimal {
    return fromUnits(this.#zUnits(token, n));
  }

  #zUnits(token: string, n: number): bigint {
    const h = digest(this.params.seed, token, n);
    let sum = 0n;
    for (let i = 0; i < 24; i += 2) sum += BigInt(h.readUInt16BE(i));
    return (2n * sum - Z_CENTRE) * Z_UNIT;
  }

  /** `token`'s price at step 0. */
  startPriceOf(token: string): Decimal {
    const { startPrice, startPriceSpread } = this.params;
    if (startPriceSpread === '0') return roundSignificant(startPrice);
    // u ∈ [0, 1) as an exact 16-bit fraction; factor = 1 − spread + 2·spread·u.
    const u = fromUnits(BigInt(digest(this.params.seed, token, 'start').readUInt16BE(0)) * (10n ** BigInt(SCALE) / 65536n));
    const factor = add(sub('1', startPriceSpread), mul(mul('2', startPriceSpread), u, 'half-even'));
    return clamp(roundSignificant(mul(startPrice, factor, 'half-even')), MIN_PRICE, MAX_PRICE);
  }

  /** One step of the walk: price(n) from price(n−1). */
  next(token: string, previous: Decimal, n: number): Decimal {
    return fromUnits(this.#nextUnits(token, toUnits(previous), n));
  }

  /**
   * {@link next} in 10^-18 units, so that a walk of many steps converts to text once: clamp(1 +
   * volatility × z, 0.5, 1.5), times the previous price, rounded half-even to 18 decimals and then
   * to 12 significant digits, within [MIN_PRICE, MAX_PRICE]. The same path as with decimals.
   */
  #nextUnits(token: string, previous: bigint, n: number): bigint {
    if (this.#volatilityUnits === 0n) return previous;
    const factor = clampUnits(ONE_UNITS + mulUnits(this.#volatilityUnits, this.#zUnits(token, n), 'half-even'), MIN_FACTOR_UNITS, MAX_FACTOR_UNITS);
    return clampUnits(roundSignificantUnits(mulUnits(previous, factor, 'half-even')), MIN_PRICE_UNITS, MAX_PRICE_UNITS);
  }

  /** `token`'s price at step `n`, from the cache when it is at or before `n`, else from the start. */
  priceAt(token: string, n: number): Decimal {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`step must be a non-negative integer, got ${n}`);
    const hit = this.#cache.get(token);
    // Asked for a step before the cached one (the clock set back, a longer --step-ms after a
    // restart): the last such point saves walking from the start at every call.
    const behind = this.#behind.get(token);
    const from = hit !== undefined && hit.step <= n ? hit : behind !== undefined && behind.step <= n ? behind : undefined;
    let step = 0;
    let price: Decimal;
    if (from !== undefined) ({ step, price } = from);
    else price = this.startPriceOf(token);
    if (step < n) {
      let units = toUnits(price);
      while (step < n) units = this.#nextUnits(token, units, ++step);
      price = fromUnits(units);
    }
    if (hit === undefined || hit.step < n) this.#cache.set(token, { step: n, price });
    else if (hit.step > n) this.#behind.set(token, { step: n, price });
    return price;
  }

  /** Seeds the cache with a (step, price) computed earlier for these parameters (e.g. stored on disk). */
  prime(token: string, step: number, price: Decimal): void {
    if (!Number.isSafeInteger(step) || step < 0 || !isDecimal(price)) throw new RangeError(`bad cached price for ${token}`);
    const hit = this.#cache.get(token);
    if (hit === undefined || hit.step < step) this.#cache.set(token, { step, price });
  }

  /** The cache's entries: the last computed step and price of each token. */
  /** The cached point of one token's path, if any (what an order saves, without copying the whole cache). */
  cachedOf(token: string): Array<{ token: string; step: number; price: Decimal }> {
    const hit = this.#cache.get(token);
    return hit === undefined ? [] : [{ token, step: hit.step, price: hit.price }];
  }

  cached(): Array<{ token: string; step: number; price: Decimal }> {
    return [...this.#cache].map(([token, { step, price }]) => ({ token, step, price }));
  }
}
