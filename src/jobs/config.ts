/**
 * A job's configuration: validated, frozen, and exact. Every numeric value is a {@link Decimal} string
 * except `limits.maxTradesPerHour` (a small integer). Numbers read from JSON keep their exact source text
 * (JSON.parse source access) and are written back as raw JSON number literals, so no value ever passes
 * through a float and equal configs serialize to identical bytes.
 *
 * Validation is driven by {@link CONFIG_KEYS}, which the CLI's `--help` and the docs also render.
 *
 * @example
 * const base = deserializeConfig(row.config);                       // stored text → JobConfig
 * const file = parseConfigJson(fs.readFileSync(path, 'utf8'), path); // a partial object
 * const cfg = resolveConfig(base, file, ['accumulate.dcaAmount=25', 'limits.maxPositionUsd=null']);
 * await store.jobs.configure({ tokenAddress }, { config: file, set: ['accumulate.dcaAmount=25'] }); // what the store does with them
 */
import { ValidationError } from '../errors.ts';
import { cmp, isDecimal, parseDecimal } from '../money/decimal.ts';
import type { Decimal } from '../money/decimal.ts';
import { described, shown } from '../util/values.ts';

export interface AccumulateConfig {
  /** USD spent per DCA buy. */
  readonly dcaAmount: Decimal;
  /** Hours between DCA buys. */
  readonly dcaIntervalHours: Decimal;
  /** % drop from the recent high that triggers a dip buy. */
  readonly dipBuyThreshold: Decimal;
  /** Dip buy size as a multiple of dcaAmount. */
  readonly dipBuyMultiplier: Decimal;
  /** % gain that triggers a partial sell; 0 = off. */
  readonly takeProfitPercent: Decimal;
  /** % of the position sold on take-profit. */
  readonly takeProfitSellPercent: Decimal;
  /** USD cap on the total accumulated. */
  readonly maxAccumulationUsd: Decimal;
}

export interface LiquidityConfig {
  /** Target share of value held in the token, 0–1. */
  readonly targetRatio: Decimal;
  /** % drift from targetRatio that triggers a rebalance. */
  readonly rebalanceThreshold: Decimal;
  /** Size multiplier of support buys. */
  readonly supportBuyMultiplier: Decimal;
  /** USD traded per day at most. */
  readonly maxDailyVolume: Decimal;
  /** % spread around the mid price. */
  readonly spreadPercent: Decimal;
  /** Quote (USD) capital the job trades with: its starting cash, used for the inventory ratio. */
  readonly capitalUsd: Decimal;
  /** USD size of one spread buy or sell (support buys are this × supportBuyMultiplier). */
  readonly orderSizeUsd: Decimal;
}

export interface LimitsConfig {
  /** USD cap on the position; null = no cap. */
  readonly maxPositionUsd: Decimal | null;
  /** Smallest trade in USD; null = no minimum. */
  readonly minTradeUsd: Decimal | null;
  /** Trades per hour at most; null = no limit. */
  readonly maxTradesPerHour: number | null;
  /** USD cap on one order (liquidation sells in slices of at most this); null = no cap. */
  readonly maxOrderUsd: Decimal | null;
}

/** A job's full configuration. Every job stores all three sections. */
export interface JobConfig {
  readonly accumulate: AccumulateConfig;
  readonly liquidity: LiquidityConfig;
  readonly limits: LimitsConfig;
}

export type ConfigSection = keyof JobConfig;

/** One row of {@link CONFIG_KEYS}. Bounds are Decimals; `null` means unbounded on that side. */
export interface ConfigKeySpec {
  readonly section: ConfigSection;
  readonly key: string;
  /** `section.key`, as used by `--set` and in messages. */
  readonly path: string;
  readonly kind: 'decimal' | 'integer';
  /** Whether `null` (= off) is allowed. */
  readonly nullable: boolean;
  readonly min: Decimal | null;
  readonly minInclusive: boolean;
  readonly max: Decimal | null;
  readonly maxInclusive: boolean;
  /** A Decimal for 'decimal' keys, a number for 'integer' keys, or null. */
  readonly default: Decimal | number | null;
  /** Unit shown in help, e.g. 'USD', '%', 'hours', or '' for a plain number. */
  readonly unit: string;
  readonly description: string;
}

type SpecInput = Omit<ConfigKeySpec, 'section' | 'key' | 'path'>;

const usd = (description: string, dflt: Decimal): SpecInput => ({
  kind: 'decimal', nullable: false, min: '0', minInclusive: false, max: null, maxInclusive: false,
  default: dflt, unit: 'USD', description,
});

// The single source of truth. `satisfies` makes TypeScript check it names exactly the interfaces' keys;
// its order is the serialization order.
const TABLE = {
  accumulate: {
    dcaAmount: usd('USD spent per DCA buy', '10'),
    dcaIntervalHours: {
      kind: 'decimal', nullable: false, min: '0', minInclusive: false, max: null, maxInclusive: false,
      default: '4', unit: 'hours', description: 'hours between DCA buys (fractions allowed)',
    },
    dipBuyThreshold: {
      kind: 'decimal', nullable: false, min: '0', minInclusive: false, max: '100', maxInclusive: false,
      default: '5', unit: '%', description: 'drop from the recent high that triggers a dip buy',
    },
    dipBuyMultiplier: {
      kind: 'decimal', nullable: false, min: '0', minInclusive: false, max: null, maxInclusive: false,
      default: '2', unit: '×', description: 'dip buy size as a multiple of dcaAmount',
    },
    takeProfitPercent: {
      kind: 'decimal', nullable: false, min: '0', minInclusive: true, max: null, maxInclusive: false,
      default: '0', unit: '%', description: 'gain that triggers a partial sell; 0 = off',
    },
    takeProfitSellPercent: {
      kind: 'decimal', nullable: false, min: '0', minInclusive: false, max: '100', maxInclusive: true,
      default: '10', unit: '%', description: 'share of the position sold on take-profit',
    },
    maxAccumulationUsd: usd('total USD the job may spend on buys in its life (sales do not give it back)', '1000'),
  },
  liquidity: {
    targetRatio: {
      kind: 'decimal', nullable: false, min: '0', minInclusive: true, max: '1', maxInclusive: true,
      default: '0.5', unit: '', description: 'target share of value held in the token (0 to 1)',
    },
    rebalanceThreshold: {
      kind: 'decimal', nullable: false, min: '0', minInclusive: false, max: '100', maxInclusive: true,
      default: '10', unit: '%', description: 'drift from targetRatio that triggers a rebalance',
    },
    supportBuyMultiplier: {
      kind: 'decimal', nullable: false, min: '0', minInclusive: false, max: null, maxInclusive: false,
      default: '1.5', unit: '×', description: 'size multiplier of support buys',
    },
    maxDailyVolume: usd('USD a LIQUIDITY job trades per UTC day at most (a liquidation is not held to it)', '500'),
    spreadPercent: {
      kind: 'decimal', nullable: false, min: '0', minInclusive: true, max: '100', maxInclusive: false,
      default: '2', unit: '%', description: 'spread around the moving average of the last 20 prices',
    },
    capitalUsd: usd('quote capital the job trades with (its starting cash)', '1000'),
    orderSizeUsd: usd('USD size of one spread buy or sell', '10'),
  },
  limits: {
    maxPositionUsd: {
      kind: 'decimal', nullable: true, min: '0', minInclusive: false, max: null, maxInclusive: false,
      default: null, unit: 'USD', description: 'cap on the position value; null = no cap',
    },
    minTradeUsd: {
      kind: 'decimal', nullable: true, min: '0', minInclusive: true, max: null, maxInclusive: false,
      default: null, unit: 'USD', description: 'smallest trade; null = no minimum (at most maxPositionUsd and maxOrderUsd)',
    },
    maxTradesPerHour: {
      kind: 'integer', nullable: true, min: '1', minInclusive: true, max: '1000000', maxInclusive: true,
      default: null, unit: 'trades', description: 'trades per hour at most; null = no limit',
    },
    maxOrderUsd: {
      kind: 'decimal', nullable: true, min: '0', minInclusive: false, max: null, maxInclusive: false,
      default: null, unit: 'USD', description: 'largest single order (liquidation sells in slices); null = no cap',
    },
  },
} as const satisfies { readonly [S in ConfigSection]: { readonly [K in keyof JobConfig[S]]-?: SpecInput } };

type Value = Decimal | number | null;
type Draft = Record<ConfigSection, Map<string, Value>>;

/** The sections, in serialization order. */
export const CONFIG_SECTIONS: readonly ConfigSection[] = Object.freeze(['accumulate', 'liquidity', 'limits'] as const);

/** Every config key, in serialization order: what it means, its default, and its allowed range. */
export const CONFIG_KEYS: readonly ConfigKeySpec[] = Object.freeze(
  CONFIG_SECTIONS.flatMap((section) =>
    Object.entries(TABLE[section] as Record<string, SpecInput>).map(([key, spec]) =>
      Object.freeze({ section, key, path: `${section}.${key}`, ...spec }))),
);

// Maps, not object lookups, so `constructor` or `__proto__` can never pass for a key.
const BY_SECTION: ReadonlyMap<string, ReadonlyMap<string, ConfigKeySpec>> = new Map(
  CONFIG_SECTIONS.map((s) => [s, new Map(CONFIG_KEYS.filter((k) => k.section === s).map((k) => [k.key, k]))]),
);

// JSON.parse source-text access and JSON.rawJSON (Node ≥ 21) are missing from TypeScript's lib.
type RawJson = object;
const JSONX = JSON as unknown as {
  rawJSON(text: string): RawJson;
  parse(text: string, reviver: (key: string, value: unknown, context?: { source?: string }) => unknown): unknown;
};

/**
 * A number literal from JSON text, kept as its exact source text (e.g. `'12.345678901234567890123'` or
 * `'1e400'`). {@link parseConfigJson} produces these; `JSON.stringify` writes them back verbatim.
 */
export class JsonNumber {
  readonly source: string;
  constructor(source: string) {
    this.source = source;
    Object.freeze(this);
  }
  toJSON(): RawJson {
    return JSONX.rawJSON(this.source);
  }
}

function configError(message: string, details: Record<string, unknown>, hint: string, cause?: unknown): ValidationError {
  return new ValidationError('INVALID_CONFIG', message, { hint, details, cause });
}

/**
 * Parse config JSON text without losing precision: every number becomes a {@link JsonNumber} holding
 * its exact source text. Throws `ValidationError('INVALID_CONFIG')` when `text` is not JSON.
 *
 * @param origin Where the text came from, for the message (a file path, 'stored job config', …).
 */
export function parseConfigJson(text: string, origin: string): unknown {
  let value: unknown;
  try {
    value = JSONX.parse(text, (_key, v, context) =>
      typeof v === 'number' ? new JsonNumber(context?.source ?? String(v)) : v);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw configError(`${origin} is not valid JSON: ${reason}`, { origin },
      `Fix the JSON syntax in ${origin}.`, e);
  }
  const duplicate = findDuplicateKey(text);
  if (duplicate !== undefined) {
    // JSON.parse would silently keep the last one; the operator may have edited the other.
    throw configError(`${origin} has the key ${JSON.stringify(duplicate)} twice in one object`, { origin, key: duplicate },
      `Keep one ${JSON.stringify(duplicate)} in ${origin}.`);
  }
  return value;
}

/** The first key repeated within one object of `text`, which must be valid JSON. */
function findDuplicateKey(text: string): string | undefined {
  const stack: Array<Set<string> | null> = []; // null for arrays
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) stack.push(new Set());
    else if (c === 0x5b /* [ */) stack.push(null);
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      const keys = stack[stack.length - 1];
      let k = j + 1;
      while (k < text.length && ' \t\n\r'.includes(text[k] as string)) k++;
      if (keys != null && text[k] === ':') {
        const key = JSON.parse(text.slice(i, j + 1)) as string; // decodes escapes: "\u0061" is "a"
        if (keys.has(key)) return key;
        keys.add(key);
      }
      i = j;
    }
  }
  return undefined;
}

function boundsText(spec: ConfigKeySpec): string {
  const parts: string[] = [];
  if (spec.min !== null) parts.push(spec.minInclusive ? `at least ${spec.min}` : `greater than ${spec.min}`);
  if (spec.max !== null) parts.push(spec.maxInclusive ? `at most ${spec.max}` : `less than ${spec.max}`);
  return parts.join(' and ');
}

function rangeText(spec: ConfigKeySpec): string {
  const bounds = boundsText(spec);
  const what = spec.kind === 'integer' ? 'a whole number' : 'a number';
  const range = bounds === '' ? what : `${what} ${bounds}`;
  return spec.nullable ? `${range}, or null to turn it off` : range;
}

/** Turn text (a `--set` value or a JSON number's source) into a checked value for `spec`. */
function valueFromText(spec: ConfigKeySpec, text: string, where: string): Value {
  let d: Decimal;
  try {
    d = parseDecimal(text, { field: spec.path, allowNegative: true });
  } catch (e) {
    const inner = e instanceof ValidationError ? e.message : String(e);
    const hint = e instanceof ValidationError && e.details['reason'] === 'scale' ? e.hint : undefined;
    throw configError(`${inner}${where}`, { key: spec.path, value: shown(text, 48) },
      hint ?? `Set ${spec.path} to ${rangeText(spec)}.`, e);
  }
  return checkValue(spec, d, where);
}

function checkValue(spec: ConfigKeySpec, d: Decimal, where: string): Value {
  const hint = `Set ${spec.path} to ${rangeText(spec)}.`;
  const bounds = boundsText(spec);
  if ((spec.min !== null && (spec.minInclusive ? cmp(d, spec.min) < 0 : cmp(d, spec.min) <= 0))
    || (spec.max !== null && (spec.maxInclusive ? cmp(d, spec.max) > 0 : cmp(d, spec.max) >= 0))) {
    throw configError(`${spec.path} must be ${bounds}, got ${shown(d, 48)}${where}`, { key: spec.path, value: d }, hint);
  }
  if (spec.kind === 'integer') {
    if (d.includes('.')) {
      throw configError(`${spec.path} must be a whole number, got ${d}${where}`, { key: spec.path, value: d }, hint);
    }
    // Exact: the bounds above keep integer keys far inside the safe-integer range.
    return Number.parseInt(d, 10);
  }
  return d;
}

function nullValue(spec: ConfigKeySpec, where: string, shown = 'null'): null {
  if (spec.nullable) return null;
  throw configError(`${spec.path} cannot be ${shown}${where}: it is required (default ${String(spec.default)})`,
    { key: spec.path, value: null }, `Set ${spec.path} to ${rangeText(spec)}.`);
}

function unknownSection(name: string, where: string): ValidationError {
  return configError(`unknown config section ${JSON.stringify(name)}${where}; valid sections: ${CONFIG_SECTIONS.join(', ')}`,
    { section: name }, `Use one of the sections ${CONFIG_SECTIONS.join(', ')}.`);
}

function unknownKey(section: ConfigSection, key: string, where: string): ValidationError {
  const keys = [...(BY_SECTION.get(section) as ReadonlyMap<string, ConfigKeySpec>).keys()];
  const guess = closest(key, keys);
  return configError(
    `unknown config key ${section}.${key}${where}; valid keys of ${section}: ${keys.join(', ')}`,
    { section, key },
    guess === undefined ? `Use one of the keys of ${section}.` : `Did you mean ${section}.${guess}?`,
  );
}

/** The key within edit distance 2 of `word`, if any — for a "did you mean" hint. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDist = 3;
  const w = word.toLowerCase();
  for (const c of candidates) {
    const d = editDistance(w, c.toLowerCase());
    if (d < bestDist) { best = c; bestDist = d; }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] as number;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function describeType(v: unknown): string {
  return v instanceof JsonNumber ? `the number ${shown(v.source, 48)}` : described(v);
}

/** The widest exponent a JSON number of a config is written out for (no config value comes near it). */
const MAX_JSON_EXPONENT = 100;

/**
 * A JSON number literal with an exponent written out in plain digits, exactly: jq 1.6 writes
 * 0.0000001 as `1e-07`, and `status --json | jq .config` must go back through `--config`. Only a
 * JSON number's own literal is read so: a `--set` value or a decimal string with an exponent is
 * refused as any amount with one is. An exponent beyond ±MAX_JSON_EXPONENT is undefined (refused
 * as out of range: no value of any key comes near it).
 */
function plainDigits(source: string): string | undefined {
  const m = /^(-?)(\d+)(?:\.(\d+))?[eE]([+-]?\d+)$/.exec(source);
  if (m === null) return source;
  const exponent = Number(m[4]);
  const digits = m[2]! + (m[3] ?? '');
  if (/^0*$/.test(digits)) return `${m[1]}0`; // 0e101 is 0, whatever its exponent
  if (Math.abs(exponent) > MAX_JSON_EXPONENT) return undefined;
  const point = m[2]!.length + exponent; // where the point goes among the digits
  const plain =
    point <= 0 ? `0.${'0'.repeat(-point)}${digits}` : point >= digits.length ? digits + '0'.repeat(point - digits.length) : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return m[1]! + plain; // parseDecimal drops the zeros this leaves at either end
}

/**
 * A value from a patch object: a JSON number literal, an exact JS integer, a decimal string (the
 * library's own Decimal, as a Job's config holds it: `"25"`, `"0.5"`), or null. Other strings,
 * and JS numbers that are not integers, are refused.
 */
function valueFromPatch(spec: ConfigKeySpec, v: unknown, where: string): Value {
  if (v === null) return nullValue(spec, where);
  if (v instanceof JsonNumber) {
    const plain = plainDigits(v.source);
    if (plain === undefined) {
      throw configError(
        `${spec.path} is the number ${shown(v.source, 48)}${where}, whose exponent is beyond ±${MAX_JSON_EXPONENT}: far outside any value ${spec.path} takes`,
        { key: spec.path },
        `Write ${spec.path} in plain digits, e.g. "${spec.key}": ${exampleOf(spec)}.`,
      );
    }
    // A refusal names what was typed too: 1e-19 is refused as its 19 decimals.
    return valueFromText(spec, plain, plain === v.source ? where : ` (written ${shown(v.source, 48)})${where}`);
  }
  if (typeof v === 'bigint') return valueFromText(spec, v.toString(), where);
  if (typeof v === 'number' && Number.isSafeInteger(v)) return valueFromText(spec, String(v), where);
  if (typeof v === 'number') {
    throw configError(
      `${spec.path} is the JS number ${String(v)}${where}, which is not exact; give it as a decimal string ("${spec.default ?? 1}"), as JSON text read with parseConfigJson or as a --set string`,
      { key: spec.path }, `Pass ${spec.path} as a string of its digits, e.g. "0.1", not the number 0.1.`);
  }
  // A string with a digit is read as a --set value is: one that is no plain decimal (1e3, " 25",
  // +5) gets the plain decimal's own refusal, which says what is wrong with it.
  if (typeof v === 'string' && /\d/.test(v)) return valueFromText(spec, v, where);
  throw configError(
    `${spec.path} must be a number or a decimal string${spec.nullable ? ', or null' : ''}, got ${describeType(v)}${where}`,
    { key: spec.path },
    `Write ${spec.path} as a number, e.g. "${spec.key}": ${exampleOf(spec)}${spec.nullable ? `, or "${spec.key}": null for none` : ''}.`);
}

/** A value the key takes: its default, else its least allowed value, else 1 (every key with no default takes 1). */
function exampleOf(spec: ConfigKeySpec): string {
  return String(spec.default ?? (spec.min !== null && spec.minInclusive ? spec.min : '1'));
}

function draftOf(base: JobConfig): Draft {
  const draft = {} as Draft;
  for (const section of CONFIG_SECTIONS) draft[section] = new Map();
  if (!isPlainObject(base)) {
    throw configError(`the base config must be a JobConfig object, got ${describeType(base)}`, {}, 'Start from defaultConfig().');
  }
  for (const spec of CONFIG_KEYS) {
    const sec = (base as unknown as Record<string, unknown>)[spec.section];
    const v = isPlainObject(sec) && Object.hasOwn(sec, spec.key) ? sec[spec.key] : undefined;
    draft[spec.section].set(spec.key, baseValue(spec, v));
  }
  return draft;
}

/** Base values are already typed (Decimal strings, integers); check them as strictly as stored ones. */
function baseValue(spec: ConfigKeySpec, v: unknown): Value {
  const where = ' (in the base config)';
  if (v === null) return nullValue(spec, where);
  if (spec.kind === 'integer' && typeof v === 'number' && Number.isSafeInteger(v)) return checkValue(spec, String(v), where);
  if (spec.kind === 'decimal' && isDecimal(v)) return checkValue(spec, v, where);
  throw configError(`${spec.path} in the base config must be ${spec.kind === 'integer' ? 'an integer' : 'a canonical Decimal string'}, got ${describeType(v)}`,
    { key: spec.path }, 'Build the base config with defaultConfig(), resolveConfig() or deserializeConfig().');
}

function applyPatch(draft: Draft, patch: unknown, where: string): void {
  if (patch === undefined) return;
  if (!isPlainObject(patch)) {
    throw configError(`the config${where} must be a JSON object with the sections ${CONFIG_SECTIONS.join(', ')}, got ${describeType(patch)}`,
      {}, 'Write the config as { "accumulate": { … }, "liquidity": { … }, "limits": { … } }.');
  }
  for (const [name, body] of Object.entries(patch)) {
    const section = BY_SECTION.get(name);
    if (section === undefined) throw unknownSection(name, where);
    if (!isPlainObject(body)) {
      throw configError(`config section ${name}${where} must be an object, got ${describeType(body)}`,
        { section: name }, `Write ${name} as { "key": value, … }.`);
    }
    for (const [key, value] of Object.entries(body)) {
      const spec = section.get(key);
      if (spec === undefined) throw unknownKey(name as ConfigSection, key, where);
      draft[spec.section].set(key, valueFromPatch(spec, value, where));
    }
  }
}

function applySet(draft: Draft, set: string): void {
  const where = ` (in --set ${JSON.stringify(shown(set, 48))})`;
  const usage = 'Write --set section.key=value, e.g. --set accumulate.dcaAmount=25.';
  if (typeof set !== 'string') {
    throw configError(`--set expects text section.key=value, got ${describeType(set)}`, {}, usage);
  }
  const eq = set.indexOf('=');
  if (eq < 0) throw configError(`--set ${JSON.stringify(shown(set, 48))} has no "=": expected section.key=value`, { set: shown(set, 48) }, usage);
  const path = set.slice(0, eq);
  const text = set.slice(eq + 1);
  const dot = path.indexOf('.');
  if (dot < 0) {
    throw configError(`--set ${JSON.stringify(shown(set, 48))} names no section: expected section.key=value with a section among ${CONFIG_SECTIONS.join(', ')}`,
      { set: shown(set, 48) }, usage);
  }
  const name = path.slice(0, dot);
  const key = path.slice(dot + 1);
  const section = BY_SECTION.get(name);
  if (section === undefined) throw unknownSection(name, where);
  const spec = section.get(key);
  if (spec === undefined) throw unknownKey(name as ConfigSection, key, where);
  if (text === '') {
    throw configError(`${spec.path} has no value${where}: expected ${rangeText(spec)}`, { key: spec.path },
      `Write --set ${spec.path}=<value>${spec.nullable ? ' (or =off to turn it off)' : ''}.`);
  }
  // `off` as status and --help show a limit that is not set.
  const value = text === 'null' || text === 'off' ? nullValue(spec, where, text) : valueFromText(spec, text, where);
  draft[spec.section].set(key, value);
}

/** Rules across keys, checked on the final result. */
function checkCrossRules(draft: Draft): void {
  const minTrade = draft.limits.get('minTradeUsd') as Decimal | null;
  const maxPosition = draft.limits.get('maxPositionUsd') as Decimal | null;
  if (minTrade != null && maxPosition != null && cmp(minTrade, maxPosition) > 0) {
    throw configError(
      `limits.minTradeUsd (${minTrade}) must not exceed limits.maxPositionUsd (${maxPosition}): no trade could be made`,
      { key: 'limits.minTradeUsd', value: minTrade, maxPositionUsd: maxPosition },
      'Lower limits.minTradeUsd or raise limits.maxPositionUsd.');
  }
  const maxOrder = draft.limits.get('maxOrderUsd') as Decimal | null;
  if (minTrade != null && maxOrder != null && cmp(minTrade, maxOrder) > 0) {
    throw configError(
      `limits.minTradeUsd (${minTrade}) must not exceed limits.maxOrderUsd (${maxOrder}): no order could be made`,
      { key: 'limits.minTradeUsd', value: minTrade, maxOrderUsd: maxOrder },
      'Lower limits.minTradeUsd or raise limits.maxOrderUsd.');
  }
}

function freezeDraft(draft: Draft): JobConfig {
  const out: Record<string, Readonly<Record<string, Value>>> = {};
  for (const section of CONFIG_SECTIONS) {
    const obj: Record<string, Value> = {};
    for (const [key, spec] of BY_SECTION.get(section) as ReadonlyMap<string, ConfigKeySpec>) {
      const values = draft[section];
      obj[key] = values.has(key) ? values.get(key) as Value : spec.default;
    }
    out[section] = Object.freeze(obj);
  }
  return Object.freeze(out) as unknown as JobConfig;
}

const DEFAULT_CONFIG: JobConfig = (() => {
  const draft = {} as Draft;
  for (const section of CONFIG_SECTIONS) draft[section] = new Map();
  return freezeDraft(draft);
})();

/** The defaults of every key (see {@link CONFIG_KEYS}), deeply frozen. */
export function defaultConfig(): JobConfig {
  return DEFAULT_CONFIG;
}

/** Options of {@link resolveConfig}. */
export interface ResolveConfigOptions {
  /** Where `patch` came from (e.g. a file path), named in messages about it. */
  readonly origin?: string;
}

/**
 * Apply a partial config object (normally from {@link parseConfigJson}) and then each `--set
 * section.key=value`, in order, to `base`; validate everything; return a new deeply frozen config.
 * Inputs are never mutated. Any problem → `ValidationError('INVALID_CONFIG')` naming the key, and no
 * result.
 *
 * In `patch`, values are JSON numbers, exact integers or decimal strings (`"0.5"`), or `null` for
 * nullable keys; other strings are refused, and so are unknown sections and keys. A `--set` value is text: a plain decimal, or `null` for nullable keys.
 *
 * @example
 * resolveConfig(defaultConfig(), parseConfigJson('{"accumulate":{"dcaAmount":25}}', 'bot.json'),
 *   ['limits.maxTradesPerHour=12']);
 */
export function resolveConfig(base: JobConfig, patch: unknown, sets: readonly string[], opts?: ResolveConfigOptions): JobConfig {
  const draft = draftOf(base);
  applyPatch(draft, patch, opts?.origin === undefined ? '' : ` (in ${opts.origin})`);
  if (!Array.isArray(sets)) throw configError('sets must be an array of "section.key=value" strings', {}, 'Pass [] for no --set.');
  for (const set of sets) applySet(draft, set);
  checkCrossRules(draft);
  return freezeDraft(draft);
}

/** Options of {@link serializeConfig}. */
export interface SerializeConfigOptions {
  /** Indentation for humans (as in JSON.stringify); omit for the compact canonical form that is stored. */
  readonly indent?: number;
}

/**
 * Canonical JSON text of a config: fixed key order, decimals written as exact JSON number literals,
 * so equal configs give identical bytes. The config is validated first.
 *
 * @example serializeConfig(defaultConfig()) // '{"accumulate":{"dcaAmount":10,…},…,"limits":{…,"maxTradesPerHour":null}}'
 */
export function serializeConfig(c: JobConfig, opts?: SerializeConfigOptions): string {
  const draft = draftOf(c);
  checkCrossRules(draft);
  const out: Record<string, Record<string, unknown>> = {};
  for (const section of CONFIG_SECTIONS) {
    const obj: Record<string, unknown> = {};
    for (const [key, value] of draft[section]) {
      obj[key] = typeof value === 'string' ? JSONX.rawJSON(value) : value;
    }
    out[section] = obj;
  }
  return JSON.stringify(out, null, opts?.indent);
}

/**
 * Read a config stored by {@link serializeConfig}. Keys missing from the text (stored by an older
 * version) take their defaults; unknown keys, strings for numbers and out-of-range values are refused
 * with `ValidationError('INVALID_CONFIG')`.
 */
export function deserializeConfig(text: string): JobConfig {
  const origin = 'stored job config';
  return resolveConfig(DEFAULT_CONFIG, parseConfigJson(text, origin), [], { origin });
}
