import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ValidationError } from '../../src/errors.ts';
import {
  CONFIG_KEYS, CONFIG_SECTIONS, JsonNumber, defaultConfig, deserializeConfig, parseConfigJson, resolveConfig,
  serializeConfig,
} from '../../src/jobs/config.ts';
import type { JobConfig } from '../../src/jobs/config.ts';
import { fromUnits, toUnits } from '../../src/money/decimal.ts';

function throwsConfig(f: () => unknown, ...patterns: RegExp[]): ValidationError {
  let caught: unknown;
  let returned: unknown;
  try {
    returned = f();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ValidationError, `expected a ValidationError, got ${String(caught)}; returned ${JSON.stringify(returned)}`);
  assert.equal(caught.code, 'INVALID_CONFIG', caught.message);
  for (const p of patterns) assert.match(caught.message, p);
  assert.equal(typeof caught.hint, 'string');
  return caught;
}

const set = (...sets: string[]) => resolveConfig(defaultConfig(), undefined, sets);
const file = (text: string, ...sets: string[]) => resolveConfig(defaultConfig(), parseConfigJson(text, 'bot.json'), sets, { origin: 'bot.json' });

/**
 * The spec, restated independently of src/jobs/config.ts: [section, key, kind, nullable, min, minInclusive,
 * max, maxInclusive, default].
 */
type Row = [string, string, 'decimal' | 'integer', boolean, string | null, boolean, string | null, boolean, string | number | null];
const SPEC: Row[] = [
  ['accumulate', 'dcaAmount', 'decimal', false, '0', false, null, false, '10'],
  ['accumulate', 'dcaIntervalHours', 'decimal', false, '0', false, null, false, '4'],
  ['accumulate', 'dipBuyThreshold', 'decimal', false, '0', false, '100', false, '5'],
  ['accumulate', 'dipBuyMultiplier', 'decimal', false, '0', false, null, false, '2'],
  ['accumulate', 'takeProfitPercent', 'decimal', false, '0', true, null, false, '0'],
  ['accumulate', 'takeProfitSellPercent', 'decimal', false, '0', false, '100', true, '10'],
  ['accumulate', 'maxAccumulationUsd', 'decimal', false, '0', false, null, false, '1000'],
  ['liquidity', 'targetRatio', 'decimal', false, '0', true, '1', true, '0.5'],
  ['liquidity', 'rebalanceThreshold', 'decimal', false, '0', false, '100', true, '10'],
  ['liquidity', 'supportBuyMultiplier', 'decimal', false, '0', false, null, false, '1.5'],
  ['liquidity', 'maxDailyVolume', 'decimal', false, '0', false, null, false, '500'],
  ['liquidity', 'spreadPercent', 'decimal', false, '0', true, '100', false, '2'],
  ['liquidity', 'capitalUsd', 'decimal', false, '0', false, null, false, '1000'],
  ['liquidity', 'orderSizeUsd', 'decimal', false, '0', false, null, false, '10'],
  ['limits', 'maxPositionUsd', 'decimal', true, '0', false, null, false, null],
  ['limits', 'minTradeUsd', 'decimal', true, '0', true, null, false, null],
  ['limits', 'maxTradesPerHour', 'integer', true, '1', true, '1000000', true, null],
  ['limits', 'maxOrderUsd', 'decimal', true, '0', false, null, false, null],
];

const DEFAULT_TEXT = '{"accumulate":{"dcaAmount":10,"dcaIntervalHours":4,"dipBuyThreshold":5,"dipBuyMultiplier":2,'
  + '"takeProfitPercent":0,"takeProfitSellPercent":10,"maxAccumulationUsd":1000},'
  + '"liquidity":{"targetRatio":0.5,"rebalanceThreshold":10,"supportBuyMultiplier":1.5,"maxDailyVolume":500,"spreadPercent":2,'
  + '"capitalUsd":1000,"orderSizeUsd":10},'
  + '"limits":{"maxPositionUsd":null,"minTradeUsd":null,"maxTradesPerHour":null,"maxOrderUsd":null}}';

const TINY = '0.000000000000000001';
const plus = (a: string, b: string) => fromUnits(toUnits(a) + toUnits(b));
const minus = (a: string, b: string) => fromUnits(toUnits(a) - toUnits(b));

function get(c: JobConfig, section: string, key: string): unknown {
  return (c as unknown as Record<string, Record<string, unknown>>)[section]?.[key];
}

/** A deep snapshot that does not rely on toJSON, to detect any mutation. */
function snapshot(v: unknown): string {
  if (v instanceof JsonNumber) return `JsonNumber(${v.source})`;
  if (Array.isArray(v)) return `[${v.map(snapshot).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    return `{${Object.keys(v).map((k) => `${JSON.stringify(k)}:${snapshot((v as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return typeof v === 'bigint' ? `${v}n` : JSON.stringify(v) ?? String(v);
}

describe('CONFIG_KEYS', () => {
  it('matches the spec row by row, in order', () => {
    assert.deepEqual(
      CONFIG_KEYS.map((k) => [k.section, k.key, k.kind, k.nullable, k.min, k.minInclusive, k.max, k.maxInclusive, k.default]),
      SPEC,
    );
  });

  it('every key has a path, a unit field and a one-line description', () => {
    for (const k of CONFIG_KEYS) {
      assert.equal(k.path, `${k.section}.${k.key}`);
      assert.equal(typeof k.unit, 'string');
      assert.ok(k.description.length > 10 && !k.description.includes('\n'), k.path);
    }
    assert.deepEqual(CONFIG_SECTIONS, ['accumulate', 'liquidity', 'limits']);
  });

  it('is frozen', () => {
    assert.ok(Object.isFrozen(CONFIG_KEYS));
    assert.ok(CONFIG_KEYS.every((k) => Object.isFrozen(k)));
  });
});

describe('defaultConfig', () => {
  it('has the spec defaults, types included', () => {
    const c = defaultConfig();
    for (const [section, key, , , , , , , dflt] of SPEC) assert.equal(get(c, section, key), dflt, `${section}.${key}`);
    assert.deepEqual(Object.keys(c), ['accumulate', 'liquidity', 'limits']);
  });

  it('is deeply frozen', () => {
    const c = defaultConfig();
    assert.ok(Object.isFrozen(c));
    for (const s of CONFIG_SECTIONS) assert.ok(Object.isFrozen(c[s]));
    assert.throws(() => { (c.accumulate as { dcaAmount: string }).dcaAmount = '1'; }, TypeError);
    assert.equal(defaultConfig().accumulate.dcaAmount, '10');
  });

  it('serializes to the exact canonical bytes', () => {
    assert.equal(serializeConfig(defaultConfig()), DEFAULT_TEXT);
  });
});

describe('parseConfigJson', () => {
  it('keeps number literals exact, as source text', () => {
    const v = parseConfigJson('{"a": 12.345678901234567890123, "b": [1e400, -0, 0.1], "c": "x", "d": null, "e": true}', 'f.json') as
      Record<string, unknown>;
    assert.ok(v['a'] instanceof JsonNumber);
    assert.equal((v['a'] as JsonNumber).source, '12.345678901234567890123');
    assert.deepEqual((v['b'] as JsonNumber[]).map((n) => n.source), ['1e400', '-0', '0.1']);
    assert.equal(v['c'], 'x');
    assert.equal(v['d'], null);
    assert.equal(v['e'], true);
  });

  it('JSON.stringify writes JsonNumbers back verbatim', () => {
    const text = '{"a":12.345678901234567890123,"b":[1e400,-0,1E-7]}';
    assert.equal(JSON.stringify(parseConfigJson(text, 'f.json')), text);
  });

  it('refuses a key repeated within one object, which JSON.parse would silently collapse', () => {
    throwsConfig(() => parseConfigJson('{"accumulate":{"dcaAmount":-5,"dcaAmount":10}}', 'bot.json'),
      /^bot\.json has the key "dcaAmount" twice in one object$/);
    throwsConfig(() => parseConfigJson('{"limits":{}, "limits":{}}', 'bot.json'), /key "limits" twice/);
    throwsConfig(() => parseConfigJson('{"a":1, "\\u0061":2}', 'bot.json'), /key "a" twice/);
    throwsConfig(() => parseConfigJson('[{"x":1}, {"y":[{"z":1,"z":2}]}]', 'bot.json'), /key "z" twice/);
    // The same key in different objects, and the same text as a value or in an array, is fine.
    parseConfigJson('{"a":{"x":1},"b":{"x":1},"c":"a","d":["a","a"],"e":"\\"a\\":","f":{"a":"a"}}', 'ok.json');
    parseConfigJson('{ "a" : { "a" : 1 } , "b\\\\" : 2, "b" : 3 }', 'ok.json');
  });

  it('invalid JSON names the origin and the reason', () => {
    throwsConfig(() => parseConfigJson('{"accumulate": {', 'bot.json'), /^bot\.json is not valid JSON: \S/);
    throwsConfig(() => parseConfigJson('', 'bot.json'), /^bot\.json is not valid JSON: /);
    throwsConfig(() => parseConfigJson("{'a': 1}", '/etc/bot.json'), /^\/etc\/bot\.json is not valid JSON: .*position|line/);
    throwsConfig(() => parseConfigJson('{"a": NaN}', 'x'), /not valid JSON/);
    throwsConfig(() => parseConfigJson('{"a": .5}', 'x'), /not valid JSON/);
  });
});

describe('resolveConfig: ranges from the spec, per key', () => {
  for (const [section, key, kind, nullable, lo, loIn, hi, hiIn] of SPEC) {
    const path = `${section}.${key}`;
    it(path, () => {
      const ok = (v: string) => {
        const expected = kind === 'integer' ? Number.parseInt(v, 10) : v;
        assert.equal(get(set(`${path}=${v}`), section, key), expected, `--set ${path}=${v}`);
        assert.equal(get(file(`{"${section}":{"${key}":${v}}}`), section, key), expected, `file ${path}: ${v}`);
      };
      const bad = (v: string, msg: RegExp) => {
        throwsConfig(() => set(`${path}=${v}`), new RegExp(`^${path.replace('.', '\\.')} `), msg);
        throwsConfig(() => file(`{"${section}":{"${key}":${v}}}`), new RegExp(`^${path.replace('.', '\\.')} `), msg, /\(in bot\.json\)/);
      };
      const step = kind === 'integer' ? '1' : TINY;
      if (lo !== null) {
        if (loIn) ok(lo); else bad(lo, new RegExp(`greater than ${lo}`));
        ok(plus(lo, step));
        bad(minus(lo, step), loIn ? new RegExp(`at least ${lo}`) : new RegExp(`greater than ${lo}`));
        bad('-5', new RegExp(`, got -5\\b`));
      }
      if (hi !== null) {
        if (hiIn) ok(hi); else bad(hi, new RegExp(`less than ${hi}`));
        ok(minus(hi, step));
        bad(plus(hi, step), hiIn ? new RegExp(`at most ${hi}`) : new RegExp(`less than ${hi}`));
      } else {
        ok('1' + '0'.repeat(40)); // no upper bound
      }
      if (kind === 'integer') {
        bad('1.5', /must be a whole number, got 1\.5/);
        ok('7.000'); // an integral value written with zeros is still that integer
        assert.equal(get(set(`${path}=7.000`), section, key), 7);
      } else if (lo !== null) {
        ok(plus(lo, '0.123456789012345678')); // 18 decimals allowed
      }
      if (nullable) {
        assert.equal(get(set(`${path}=1`, `${path}=null`), section, key), null);
        assert.equal(get(set(`${path}=1`, `${path}=off`), section, key), null, '"off", as status shows it');
        assert.equal(get(file(`{"${section}":{"${key}":null}}`), section, key), null);
      } else {
        throwsConfig(() => set(`${path}=null`), new RegExp(`^${path.replace('.', '\\.')} cannot be null`));
        throwsConfig(() => set(`${path}=off`), new RegExp(`^${path.replace('.', '\\.')} cannot be off`));
        throwsConfig(() => file(`{"${section}":{"${key}":null}}`), /cannot be null/);
      }
    });
  }
});

describe('resolveConfig: --set', () => {
  it('applies in order; later wins; other keys keep the base', () => {
    const c = set('accumulate.dcaAmount=25', 'liquidity.targetRatio=0.25', 'accumulate.dcaAmount=26.50');
    assert.equal(c.accumulate.dcaAmount, '26.5');
    assert.equal(c.liquidity.targetRatio, '0.25');
    assert.equal(c.accumulate.dcaIntervalHours, '4');
    assert.equal(c.limits.maxTradesPerHour, null);
  });

  it('accepts fractions such as dcaIntervalHours=0.0001 and keeps them exact', () => {
    assert.equal(set('accumulate.dcaIntervalHours=0.0001').accumulate.dcaIntervalHours, '0.0001');
    assert.equal(set('accumulate.dcaAmount=0.100000000000000001').accumulate.dcaAmount, '0.100000000000000001');
  });

  it('the spec message for a negative amount', () => {
    const e = throwsConfig(() => set('accumulate.dcaAmount=-5'), /^accumulate\.dcaAmount must be greater than 0, got -5\b/);
    assert.equal(e.details['key'], 'accumulate.dcaAmount');
  });

  const refusals: Array<[string, RegExp[]]> = [
    ['accumulate.dcaAmount', [/has no "="/, /section\.key=value/]],
    ['dcaAmount=5', [/names no section/]],
    ['=5', [/names no section/]],
    ['strategy.dcaAmount=5', [/unknown config section "strategy"/, /valid sections: accumulate, liquidity, limits/]],
    ['accumulate.dcaAmmount=5', [/unknown config key accumulate\.dcaAmmount/,
      /valid keys of accumulate: dcaAmount, dcaIntervalHours, dipBuyThreshold, dipBuyMultiplier, takeProfitPercent, takeProfitSellPercent, maxAccumulationUsd$/]],
    ['limits.maxTradesPerHours=5', [/unknown config key limits\.maxTradesPerHours/, /valid keys of limits: maxPositionUsd, minTradeUsd, maxTradesPerHour, maxOrderUsd$/]],
    ['accumulate.=5', [/unknown config key accumulate\./]],
    ['accumulate.constructor=5', [/unknown config key accumulate\.constructor/]],
    ['accumulate.__proto__=5', [/unknown config key accumulate\.__proto__/]],
    ['constructor.name=5', [/unknown config section "constructor"/]],
    ['accumulate.dcaAmount.x=5', [/unknown config key accumulate\.dcaAmount\.x/]],
    ['Accumulate.dcaAmount=5', [/unknown config section "Accumulate"/]],
    ['accumulate.dcaAmount=', [/^accumulate\.dcaAmount has no value/]],
    ['accumulate.dcaAmount=NaN', [/^accumulate\.dcaAmount "NaN" is not a plain decimal number/]],
    ['accumulate.dcaAmount=Infinity', [/^accumulate\.dcaAmount "Infinity" is not a plain decimal number/]],
    ['accumulate.dcaAmount=1e400', [/^accumulate\.dcaAmount "1e400" is not a plain decimal number/]],
    ['accumulate.dcaAmount=1E2', [/exponents/]],
    ['accumulate.dcaAmount=0x10', [/not a plain decimal number/]],
    ['accumulate.dcaAmount=+5', [/"\+" sign/]],
    ['accumulate.dcaAmount= 5', [/spaces/]],
    ['accumulate.dcaAmount=5 ', [/spaces/]],
    ['accumulate.dcaAmount=.5', [/both sides/]],
    ['accumulate.dcaAmount=1=2', [/not a plain decimal number/]],
    ['accumulate.dcaAmount="10"', [/not a plain decimal number/]],
    ['accumulate.dcaAmount=0.0000000000000000001', [/19 decimals; at most 18/]],
    ['accumulate.dcaAmount=1' + '0'.repeat(78), [/79 integer digits/]],
    ['accumulate.dcaAmount=0', [/must be greater than 0, got 0\b/]],
    ['accumulate.dcaAmount=-0', [/must be greater than 0, got 0\b/]],
    ['accumulate.dcaAmount=Null', [/not a plain decimal number/]],
    ['liquidity.targetRatio=1.000000000000000001', [/^liquidity\.targetRatio must be at least 0 and at most 1, got 1\.000000000000000001/]],
    ['accumulate.takeProfitPercent=-0.5', [/^accumulate\.takeProfitPercent must be at least 0, got -0\.5/]],
    ['limits.maxTradesPerHour=0', [/^limits\.maxTradesPerHour must be at least 1 and at most 1000000, got 0/]],
    ['limits.maxTradesPerHour=1000001', [/at most 1000000, got 1000001/]],
    ['limits.maxTradesPerHour=99999999999999999999', [/at most 1000000/]],
  ];
  for (const [s, patterns] of refusals) {
    it(`refuses ${JSON.stringify(s.length > 60 ? `${s.slice(0, 60)}…` : s)}`, () => {
      throwsConfig(() => set(s), ...patterns);
    });
  }

  it('suggests the nearest key', () => {
    assert.match(throwsConfig(() => set('accumulate.dcaAmmount=5')).hint ?? '', /Did you mean accumulate\.dcaAmount\?/);
    assert.match(throwsConfig(() => set('accumulate.zzz=5')).hint ?? '', /^Use one of the keys of accumulate/);
  });

  it('the failing --set is quoted in the message', () => {
    throwsConfig(() => set('accumulate.dcaAmount=5', 'liquidity.spreadPercent=100'),
      /^liquidity\.spreadPercent must be at least 0 and less than 100, got 100 \(in --set "liquidity\.spreadPercent=100"\)$/);
  });

  it('refuses non-string sets and a non-array', () => {
    throwsConfig(() => resolveConfig(defaultConfig(), undefined, [5 as unknown as string]), /--set expects text/);
    throwsConfig(() => resolveConfig(defaultConfig(), undefined, 'accumulate.dcaAmount=5' as unknown as string[]), /sets must be an array/);
  });
});

describe('resolveConfig: the file patch', () => {
  it('applies a partial object, then the sets', () => {
    const c = file('{"accumulate":{"dcaAmount":20,"dipBuyThreshold":7.5},"limits":{"maxTradesPerHour":12}}',
      'accumulate.dcaAmount=30');
    assert.equal(c.accumulate.dcaAmount, '30');
    assert.equal(c.accumulate.dipBuyThreshold, '7.5');
    assert.equal(c.limits.maxTradesPerHour, 12);
    assert.equal(c.liquidity.targetRatio, '0.5');
  });

  it('keeps an 18-decimal file value exact (it would not survive a float)', () => {
    const c = file('{"accumulate":{"dcaAmount":12.345678901234567891}}');
    assert.equal(c.accumulate.dcaAmount, '12.345678901234567891');
    assert.equal(file('{"liquidity":{"maxDailyVolume":9007199254740993}}').liquidity.maxDailyVolume, '9007199254740993');
  });

  it('canonicalizes number literals', () => {
    assert.equal(file('{"accumulate":{"dcaAmount":10.50}}').accumulate.dcaAmount, '10.5');
    assert.equal(file('{"accumulate":{"takeProfitPercent":-0}}').accumulate.takeProfitPercent, '0');
  });

  it('reads a JSON number with an exponent exactly, as jq 1.6 writes small values (0.0000001 as 1e-07)', () => {
    const cases: Array<[string, string]> = [['1e-07', '0.0000001'], ['1E2', '100'], ['1.5e1', '15'], ['2.50e-1', '0.25'], ['12.345e+2', '1234.5'], ['7e0', '7']];
    for (const [literal, expected] of cases) assert.equal(file(`{"accumulate":{"dcaAmount":${literal}}}`).accumulate.dcaAmount, expected, literal);
    assert.equal(file('{"accumulate":{"dcaIntervalHours":1e-07}}').accumulate.dcaIntervalHours, '0.0000001');
    assert.equal(file('{"accumulate":{"takeProfitPercent":0e5}}').accumulate.takeProfitPercent, '0');
    assert.equal(file('{"accumulate":{"takeProfitPercent":0.0e101}}').accumulate.takeProfitPercent, '0', 'zero, whatever its exponent');
    assert.equal(file('{"limits":{"maxTradesPerHour":6e1}}').limits.maxTradesPerHour, 60);
    // Exact or refused: 19 decimals once written out, an exponent past ±100.
    assert.match(throwsConfig(() => file('{"accumulate":{"dcaAmount":1.234567890123456789e-2}}')).message, /has 20 decimals; at most 18 are allowed \(it is not rounded\) \(written 1\.234567890123456789e-2\) \(in bot\.json\)/);
    assert.match(throwsConfig(() => file('{"accumulate":{"dcaAmount":1e-101}}')).message, /^accumulate\.dcaAmount is the number 1e-101 \(in bot\.json\), whose exponent is beyond ±100: far outside any value accumulate\.dcaAmount takes$/);
    assert.match(throwsConfig(() => file('{"accumulate":{"dcaAmount":1e101}}')).message, /^accumulate\.dcaAmount is the number 1e101 \(in bot\.json\), whose exponent is beyond ±100/);
    // Only a JSON number's own literal: a decimal string with an exponent is refused as any amount is.
    assert.match(throwsConfig(() => file('{"accumulate":{"dcaAmount":"1e2"}}')).message, /"1e2" is not a plain decimal number/);
  });

  const refusals: Array<[string, RegExp[]]> = [
    ['{"accumulate":{"dcaAmount":"ten"}}', [/^accumulate\.dcaAmount must be a number or a decimal string, got the string "ten" \(in bot\.json\)/]],
    ['{"limits":{"maxPositionUsd":"off"}}', [/^limits\.maxPositionUsd must be a number or a decimal string, or null, got the string "off"/]],
    ['{"accumulate":{"dcaAmount":"1e3"}}', [/^accumulate\.dcaAmount "1e3" is not a plain decimal number/]],
    ['{"accumulate":{"dcaAmount":" 25"}}', [/^accumulate\.dcaAmount/, /\(in bot\.json\)/]],
    ['{"accumulate":{"dcaAmount":"0.1234567890123456789"}}', [/has 19 decimals; at most 18/]],
    ['{"accumulate":{"dcaAmount":"-5"}}', [/^accumulate\.dcaAmount must be greater than 0, got -5/]],
    ['{"accumulate":{"dcaAmount":true}}', [/must be a number or a decimal string, got true/]],
    ['{"accumulate":{"dcaAmount":[10]}}', [/must be a number or a decimal string, got an array/]],
    ['{"accumulate":{"dcaAmount":{"v":10}}}', [/must be a number or a decimal string, got an object/]],
    ['{"accumulate":{"dcaAmount":1e400}}', [/^accumulate\.dcaAmount is the number 1e400 \(in bot\.json\), whose exponent is beyond ±100/]],
    ['{"accumulate":{"dcaAmount":1E101}}', [/^accumulate\.dcaAmount is the number 1E101 \(in bot\.json\), whose exponent is beyond ±100/]],
    ['{"accumulate":{"dcaAmount":12.345678901234567890123}}', [/has 21 decimals; at most 18/]],
    ['{"accumulate":{"dcaAmount":-5}}', [/^accumulate\.dcaAmount must be greater than 0, got -5 \(in bot\.json\)/]],
    ['{"strategy":{}}', [/unknown config section "strategy" \(in bot\.json\); valid sections: accumulate, liquidity, limits/]],
    ['{"accumulate":{},"version":2}', [/unknown config section "version"/]],
    ['{"__proto__":{"dcaAmount":1}}', [/unknown config section "__proto__"/]],
    ['{"accumulate":{"dcaAmont":1}}', [/unknown config key accumulate\.dcaAmont \(in bot\.json\); valid keys of accumulate: dcaAmount,/]],
    ['{"accumulate":{"toString":1}}', [/unknown config key accumulate\.toString/]],
    ['{"accumulate":null}', [/config section accumulate \(in bot\.json\) must be an object, got null/]],
    ['{"accumulate":[1]}', [/must be an object, got an array/]],
    ['{"accumulate":5}', [/must be an object, got the number 5/]],
    ['[]', [/must be a JSON object with the sections accumulate, liquidity, limits, got an array/]],
    ['null', [/must be a JSON object/]],
    ['10', [/must be a JSON object/]],
    ['"x"', [/must be a JSON object/]],
  ];
  it('the hint for a string where a number goes shows valid JSON', () => {
    assert.match(throwsConfig(() => file('{"accumulate":{"dcaAmount":"ten"}}')).hint!, /e\.g\. "dcaAmount": 10\.$/);
    assert.match(throwsConfig(() => file('{"limits":{"maxPositionUsd":"off"}}')).hint!, /e\.g\. "maxPositionUsd": \d+(\.\d+)?, or "maxPositionUsd": null for none\.$/);
    // Every key's example is a value the key takes (not 0 where it must be greater than 0).
    for (const spec of CONFIG_KEYS) {
      const hint = throwsConfig(() => file(`{"${spec.section}":{"${spec.key}":true}}`)).hint!;
      const example = /e\.g\. "\w+": ([^,.]+(?:\.\d+)?)[,.]/.exec(hint)?.[1];
      assert.ok(example !== undefined, hint);
      assert.doesNotThrow(() => file(`{"${spec.section}":{"${spec.key}":${example}}}`), `${spec.path}: ${hint}`);
    }
  });

  for (const [text, patterns] of refusals) {
    it(`refuses ${text}`, () => {
      throwsConfig(() => file(text), ...patterns);
    });
  }

  it('plain JS objects: exact integers, bigints and decimal strings are accepted, fractional JS numbers are not', () => {
    const c = resolveConfig(defaultConfig(), { accumulate: { dcaAmount: 20 }, limits: { maxTradesPerHour: 5n, maxPositionUsd: null } }, []);
    assert.equal(c.accumulate.dcaAmount, '20');
    assert.equal(c.limits.maxTradesPerHour, 5);
    throwsConfig(() => resolveConfig(defaultConfig(), { accumulate: { dcaAmount: 0.1 } }, []), /is the JS number 0\.1.*not exact/);
    throwsConfig(() => resolveConfig(defaultConfig(), { accumulate: { dcaAmount: 2 ** 60 } }, []), /not exact/);
    throwsConfig(() => resolveConfig(defaultConfig(), { accumulate: { dcaAmount: Number.NaN } }, []), /not exact/);
    // A decimal string is the library's own Decimal: a Job's config can be given back as it is.
    const fromStrings = resolveConfig(defaultConfig(), { accumulate: { dcaAmount: '10.50', dcaIntervalHours: '0.0001' }, limits: { maxTradesPerHour: '12', maxOrderUsd: '99.999999999999999999' } }, []);
    assert.equal(fromStrings.accumulate.dcaAmount, '10.5');
    assert.equal(fromStrings.accumulate.dcaIntervalHours, '0.0001');
    assert.equal(fromStrings.limits.maxTradesPerHour, 12);
    assert.equal(fromStrings.limits.maxOrderUsd, '99.999999999999999999');
    assert.deepEqual(resolveConfig(defaultConfig(), fromStrings, []), fromStrings);
    throwsConfig(() => resolveConfig(defaultConfig(), { limits: { maxTradesPerHour: '1.5' } }, []), /maxTradesPerHour must be a whole number, got 1\.5/);
    throwsConfig(() => resolveConfig(defaultConfig(), { accumulate: { dcaAmount: 'NaN' } }, []), /got the string "NaN"/);
    throwsConfig(() => resolveConfig(defaultConfig(), new Map(), []), /must be a JSON object/);
  });

  it('undefined patch and an empty object change nothing', () => {
    assert.equal(serializeConfig(resolveConfig(defaultConfig(), undefined, [])), DEFAULT_TEXT);
    assert.equal(serializeConfig(resolveConfig(defaultConfig(), {}, [])), DEFAULT_TEXT);
    assert.equal(serializeConfig(file('{"accumulate":{},"liquidity":{},"limits":{}}')), DEFAULT_TEXT);
  });
});

describe('resolveConfig: cross-key rule and the base', () => {
  it('minTradeUsd may not exceed maxPositionUsd', () => {
    assert.equal(set('limits.maxPositionUsd=100', 'limits.minTradeUsd=100').limits.minTradeUsd, '100');
    throwsConfig(() => set('limits.maxPositionUsd=100', 'limits.minTradeUsd=100.01'),
      /^limits\.minTradeUsd \(100\.01\) must not exceed limits\.maxPositionUsd \(100\)/);
    // Either alone, or with the other null, is fine.
    assert.equal(set('limits.minTradeUsd=1000000').limits.minTradeUsd, '1000000');
    assert.equal(set('limits.maxPositionUsd=1', 'limits.minTradeUsd=5', 'limits.maxPositionUsd=null').limits.minTradeUsd, '5');
  });

  it('minTradeUsd may not exceed maxOrderUsd', () => {
    assert.equal(set('limits.maxOrderUsd=50', 'limits.minTradeUsd=50').limits.maxOrderUsd, '50');
    throwsConfig(() => set('limits.maxOrderUsd=50', 'limits.minTradeUsd=50.000000000000000001'),
      /^limits\.minTradeUsd \(50\.000000000000000001\) must not exceed limits\.maxOrderUsd \(50\): no order could be made/);
    assert.equal(set('limits.maxOrderUsd=1', 'limits.minTradeUsd=5', 'limits.maxOrderUsd=null').limits.minTradeUsd, '5');
  });

  it('validates the base too', () => {
    const bad = { ...defaultConfig(), accumulate: { ...defaultConfig().accumulate, dcaAmount: '-1' } };
    throwsConfig(() => resolveConfig(bad, undefined, []), /^accumulate\.dcaAmount must be greater than 0, got -1 \(in the base config\)/);
    const float = { ...defaultConfig(), accumulate: { ...defaultConfig().accumulate, dcaAmount: 10 } } as unknown as JobConfig;
    throwsConfig(() => resolveConfig(float, undefined, []), /accumulate\.dcaAmount in the base config must be a canonical Decimal string, got the number 10/);
    const nonCanonical = { ...defaultConfig(), accumulate: { ...defaultConfig().accumulate, dcaAmount: '10.0' } };
    throwsConfig(() => resolveConfig(nonCanonical, undefined, []), /canonical Decimal string/);
    throwsConfig(() => resolveConfig({} as JobConfig, undefined, []), /accumulate\.dcaAmount in the base config/);
    throwsConfig(() => resolveConfig(null as unknown as JobConfig, undefined, []), /base config must be a JobConfig object/);
    // A bad base value overridden by the patch is still refused: the base is checked first.
    throwsConfig(() => resolveConfig(bad, undefined, ['accumulate.dcaAmount=5']), /in the base config/);
  });

  it('returns a new deeply frozen object and never mutates its inputs', () => {
    const base = set('accumulate.dcaAmount=11');
    const patch = parseConfigJson('{"accumulate":{"dcaAmount":12},"limits":{"maxTradesPerHour":3}}', 'f');
    const sets = ['liquidity.targetRatio=0.75'];
    const before = [snapshot(base), snapshot(patch), snapshot(sets)];
    const c = resolveConfig(base, patch, sets);
    assert.notEqual(c, base);
    assert.ok(Object.isFrozen(c) && CONFIG_SECTIONS.every((s) => Object.isFrozen(c[s])));
    assert.deepEqual([snapshot(base), snapshot(patch), snapshot(sets)], before);
    assert.equal(c.accumulate.dcaAmount, '12');
    assert.equal(c.liquidity.targetRatio, '0.75');
    assert.equal(base.accumulate.dcaAmount, '11');
  });
});

describe('serializeConfig / deserializeConfig', () => {
  it('writes decimals as exact number literals, in fixed key order', () => {
    const c = file('{"limits":{"maxTradesPerHour":60,"maxPositionUsd":123456789012345678901234.123456789012345678},'
      + '"accumulate":{"dcaIntervalHours":0.0001}}');
    const text = serializeConfig(c);
    assert.ok(text.includes('"dcaIntervalHours":0.0001,'), text);
    assert.ok(text.includes('"limits":{"maxPositionUsd":123456789012345678901234.123456789012345678,"minTradeUsd":null,"maxTradesPerHour":60,"maxOrderUsd":null}}'), text);
    assert.ok(text.startsWith('{"accumulate":{"dcaAmount":10,"dcaIntervalHours"'), text);
    const back = deserializeConfig(text);
    assert.deepEqual(back, c);
    assert.equal(serializeConfig(back), text);
  });

  it('key order of the input object does not matter', () => {
    const a = resolveConfig(defaultConfig(), { limits: { minTradeUsd: 1, maxPositionUsd: 2 }, accumulate: { dcaAmount: 3 } }, []);
    const b = resolveConfig(defaultConfig(), { accumulate: { dcaAmount: 3 }, limits: { maxPositionUsd: 2, minTradeUsd: 1 } }, []);
    assert.equal(serializeConfig(a), serializeConfig(b));
  });

  it('indent is for humans; it parses back to the same config', () => {
    const pretty = serializeConfig(defaultConfig(), { indent: 2 });
    assert.ok(pretty.includes('\n  "accumulate": {\n    "dcaAmount": 10,'), pretty);
    assert.equal(serializeConfig(deserializeConfig(pretty)), DEFAULT_TEXT);
  });

  it('refuses to serialize an invalid config', () => {
    const bad = { ...defaultConfig(), liquidity: { ...defaultConfig().liquidity, targetRatio: '2' } };
    throwsConfig(() => serializeConfig(bad), /liquidity\.targetRatio must be at least 0 and at most 1, got 2/);
    const crossed = { ...defaultConfig(), limits: { maxPositionUsd: '1', minTradeUsd: '2', maxTradesPerHour: null, maxOrderUsd: null } };
    throwsConfig(() => serializeConfig(crossed), /must not exceed/);
  });

  it('fills keys and sections missing from stored text with defaults', () => {
    assert.equal(serializeConfig(deserializeConfig('{}')), DEFAULT_TEXT);
    const c = deserializeConfig('{"accumulate":{"dcaAmount":25},"limits":{"maxTradesPerHour":9}}');
    assert.equal(c.accumulate.dcaAmount, '25');
    assert.equal(c.accumulate.dcaIntervalHours, '4');
    assert.equal(c.liquidity.spreadPercent, '2');
    assert.equal(c.limits.maxTradesPerHour, 9);
    assert.ok(Object.isFrozen(c) && Object.isFrozen(c.limits));
  });

  it('refuses corrupt or foreign stored text, naming the origin', () => {
    throwsConfig(() => deserializeConfig('{"accumulate":'), /^stored job config is not valid JSON/);
    throwsConfig(() => deserializeConfig('{"accumulate":{"dcaAmount":"lots"}}'), /got the string "lots" \(in stored job config\)/);
    throwsConfig(() => deserializeConfig('{"accumulate":{"newKey":1}}'), /unknown config key accumulate\.newKey \(in stored job config\)/);
    throwsConfig(() => deserializeConfig('{"accumulate":{"dcaAmount":0}}'), /must be greater than 0, got 0 \(in stored job config\)/);
    throwsConfig(() => deserializeConfig('[]'), /must be a JSON object/);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Property tests. Generators work from the independent SPEC above, not from CONFIG_KEYS.

const BIG = 10n ** 30n;
function rangeUnits(row: Row): [bigint, bigint] {
  const [, , kind, , lo, loIn, hi, hiIn] = row;
  const unit = kind === 'integer' ? toUnits('1') : 1n;
  const min = lo === null ? 0n : toUnits(lo) + (loIn ? 0n : unit);
  const max = hi === null ? min + BIG : toUnits(hi) - (hiIn ? 0n : unit);
  return [min, max];
}

/** A valid value as text for `row`. */
function validText(row: Row): fc.Arbitrary<string> {
  const [min, max] = rangeUnits(row);
  if (row[2] === 'integer') {
    return fc.bigInt({ min: min / toUnits('1'), max: max / toUnits('1') }).map(String);
  }
  const edge = fc.constantFrom(min, max);
  const small = fc.bigInt({ min, max: max < min + 10n ** 20n ? max : min + 10n ** 20n });
  return fc.oneof(edge, small, fc.bigInt({ min, max })).map(fromUnits);
}

/** `text` with an exponent, as a JSON number may be written (2.5 as `25e-1` or `2500e-3`); an integer key's as `60e0`. */
function withExponent(text: string, zeros: number): string {
  if (text.startsWith('-')) return text;
  const [int, frac = ''] = text.split('.');
  const digits = `${int}${frac}${'0'.repeat(zeros)}`.replace(/^0+(?=.)/, ''); // JSON has no leading zeros
  return `${digits}e${-(frac.length + zeros)}`;
}

/** A value as text that `row` must refuse. */
function invalidText(row: Row): fc.Arbitrary<string> {
  const [min, max] = rangeUnits(row);
  const options: Array<fc.Arbitrary<string>> = [
    fc.constantFrom('NaN', 'Infinity', '1e5', '1E400', '.5', '5.', '+1', ' 1', '1,5', '0x1f', 'abc', '', '0.0000000000000000001'),
    fc.bigInt({ min: 1n, max: BIG }).map((d) => fromUnits(min - d)), // below the range
  ];
  if (row[4] !== null && !row[5]) options.push(fc.constant(row[4])); // an exclusive bound itself
  if (row[6] !== null) options.push(fc.bigInt({ min: 1n, max: BIG }).map((d) => fromUnits(max + d)));
  if (row[2] === 'integer') options.push(fc.constantFrom('1.5', '2.000000000000000001'));
  if (!row[3]) options.push(fc.constant('null'));
  return fc.oneof(...options);
}

type Via = 'file' | 'set' | 'file-string';
type Item = { row: Row; text: string; via: Via };

const itemArb: fc.Arbitrary<Item> = fc.constantFrom(...SPEC).chain((row) =>
  fc.record({
    row: fc.constant(row),
    // A valid value is also written with an exponent: valid as a JSON number only.
    text: fc.oneof(validText(row), validText(row).chain((t) => fc.integer({ min: 0, max: 3 }).map((z) => withExponent(t, z))), invalidText(row)),
    // 'file-string': the value is written as a JSON string in the file (read as its digits, like --set).
    via: fc.constantFrom<Via>('file', 'set', 'file', 'set', 'file-string'),
  }));

/** The oracle, from first principles: the value `item` ends up with, or 'invalid'. */
function oracleValue(item: Item): bigint | null | 'invalid' {
  const { row, text, via } = item;
  // In the file, "null" in quotes is a string, not null; any other string is read as its digits.
  if (text === 'null') return via === 'file-string' ? 'invalid' : row[3] ? null : 'invalid';
  // A JSON number's own literal may have an exponent (as jq 1.6 writes 1e-07), read exactly up to ±100.
  const m = (via === 'file' ? /^(-?)([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/ : /^(-?)([0-9]+)(?:\.([0-9]+))?()$/).exec(text);
  if (m === null) return 'invalid';
  const exponent = m[4] === undefined || m[4] === '' ? 0 : Number(m[4]);
  if (Math.abs(exponent) > 100) return 'invalid';
  // The value is digits × 10^-scale; in units of 10^-18 it must be whole (at most 18 decimals).
  const digits = BigInt((m[2] as string) + (m[3] ?? ''));
  const scale = (m[3] ?? '').length - exponent;
  let magnitude: bigint;
  if (scale <= 18) magnitude = digits * 10n ** BigInt(18 - scale);
  else if (digits % 10n ** BigInt(scale - 18) === 0n) magnitude = digits / 10n ** BigInt(scale - 18);
  else return 'invalid';
  if (magnitude >= 10n ** 96n) return 'invalid'; // more than 78 integer digits
  const u = m[1] === '-' ? -magnitude : magnitude;
  const [min, max] = rangeUnits(row);
  if (u < min || u > max) return 'invalid';
  if (row[2] === 'integer' && u % toUnits('1') !== 0n) return 'invalid';
  return u;
}

/** Items in the order resolveConfig applies them: the file's values first, then the sets in order. */
const applied = (items: Item[]) => [...items.filter((i) => i.via !== 'set'), ...items.filter((i) => i.via === 'set')];

/** Whether resolving `groups` one after another (each on the previous result) must succeed. */
function oracleAccepts(groups: Item[][]): boolean {
  const finals = new Map<string, bigint | null>();
  for (const items of groups) {
    // A key written twice in the file is refused (JSON.parse would silently keep the last).
    const inFile = items.filter((i) => i.via !== 'set').map((i) => i.row[1]);
    if (new Set(inFile).size !== inFile.length) return false;
    for (const it of applied(items)) {
      const v = oracleValue(it);
      if (v === 'invalid') return false;
      finals.set(it.row[1], v);
    }
    const lo = finals.get('minTradeUsd');
    const hi = finals.get('maxPositionUsd');
    if (lo != null && hi != null && lo > hi) return false;
    const order = finals.get('maxOrderUsd');
    if (lo != null && order != null && lo > order) return false;
  }
  return true;
}

/** Build the file patch (via parseConfigJson, like the CLI does) and the --set list from items. */
function build(items: Item[], unknown: 'none' | 'section' | 'key'): { patch: unknown; sets: string[] } {
  const { text, sets } = buildText(items, unknown);
  return { patch: parseConfigJson(text, 'prop.json'), sets };
}

function buildText(items: Item[], unknown: 'none' | 'section' | 'key'): { text: string; sets: string[] } {
  const sections: Record<string, string[]> = {};
  const sets: string[] = [];
  for (const { row, text, via } of items) {
    const [section, key] = row;
    if (via === 'set') { sets.push(`${section}.${key}=${text}`); continue; }
    // The file is JSON text: a value that is not a JSON literal goes in as a string (refused either way).
    const literal = via === 'file-string' ? JSON.stringify(text) : isJsonNumberOrNull(text) ? text : JSON.stringify(text);
    (sections[section] ??= []).push(`${JSON.stringify(key)}:${literal}`);
  }
  if (unknown === 'section') sections['extra'] = [];
  if (unknown === 'key') (sections['liquidity'] ??= []).push('"bogus":1');
  const text = `{${Object.entries(sections).map(([s, kv]) => `${JSON.stringify(s)}:{${kv.join(',')}}`).join(',')}}`;
  return { text, sets };
}

function isJsonNumberOrNull(text: string): boolean {
  return text === 'null' || /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/.test(text);
}

const validItemArb: fc.Arbitrary<Item> = fc.constantFrom(...SPEC).chain((row) =>
  fc.record({ row: fc.constant(row), text: validText(row), via: fc.constantFrom<Via>('file', 'set'), zeros: fc.option(fc.integer({ min: 0, max: 3 })) })
    .map(({ zeros, ...item }) => (item.via === 'file' && zeros !== null ? { ...item, text: withExponent(item.text, zeros) } : item)));
const validItems = (maxLength: number) => fc.array(validItemArb, { maxLength });

describe('properties', () => {
  it('the oracle itself sees both outcomes (guards against a vacuous property)', () => {
    const outcomes = fc.sample(fc.array(itemArb, { maxLength: 6 }), { numRuns: 300, seed: 7 }).map((x) => oracleAccepts([x]));
    assert.ok(outcomes.filter(Boolean).length > 30 && outcomes.filter((x) => !x).length > 30);
  });

  it('the generators agree with the oracle', () => {
    for (const item of fc.sample(validItemArb, { numRuns: 500, seed: 3 })) assert.notEqual(oracleValue(item), 'invalid', snapshot(item));
  });

  it('resolveConfig accepts exactly what the oracle accepts; a refusal returns nothing and mutates nothing', () => {
    fc.assert(fc.property(
      fc.array(itemArb, { maxLength: 12 }),
      fc.constantFrom('none' as const, 'none' as const, 'none' as const, 'section' as const, 'key' as const),
      fc.boolean(),
      (items, unknown, customBase) => {
        const base = customBase ? set('accumulate.dcaAmount=42', 'limits.maxTradesPerHour=3') : defaultConfig();
        const { text, sets } = buildText(items, unknown);
        let patch: unknown;
        let result: JobConfig | undefined;
        let error: unknown;
        try {
          patch = parseConfigJson(text, 'prop.json'); // refuses a key repeated in the file
        } catch (e) {
          error = e;
        }
        const before = [snapshot(base), snapshot(patch), snapshot(sets)];
        if (error === undefined) {
          try {
            result = resolveConfig(base, patch, sets);
          } catch (e) {
            error = e;
          }
        }
        assert.deepEqual([snapshot(base), snapshot(patch), snapshot(sets)], before, 'inputs were mutated');
        if (unknown === 'none' && oracleAccepts([items])) {
          assert.equal(error, undefined, String(error));
          assert.ok(result !== undefined && Object.isFrozen(result));
        } else {
          assert.equal(result, undefined, `expected a refusal for ${text} ${snapshot(sets)}`);
          assert.ok(error instanceof ValidationError && error.code === 'INVALID_CONFIG', String(error));
        }
      }), { numRuns: 1000 });
  });

  it('resolve → serialize → deserialize → serialize is byte-identical, and holds the last value of each key', () => {
    fc.assert(fc.property(validItems(20), (items) => {
      fc.pre(oracleAccepts([items]));
      const { patch, sets } = build(items, 'none');
      const c = resolveConfig(defaultConfig(), patch, sets);
      const text = serializeConfig(c);
      const back = deserializeConfig(text);
      assert.deepEqual(back, c);
      assert.equal(serializeConfig(back), text);
      for (const it of applied(items).reverse().filter((x, i, all) => all.findIndex((y) => y.row === x.row) === i)) {
        const v = get(c, it.row[0], it.row[1]);
        const expected = oracleValue(it);
        if (expected === null) assert.equal(v, null);
        else assert.equal(typeof v === 'number' ? toUnits(String(v)) : toUnits(v as string), expected, `${it.row[0]}.${it.row[1]}`);
      }
    }), { numRuns: 400 });
  });

  it('resolving on a deserialized base equals resolving on the original base', () => {
    fc.assert(fc.property(validItems(10), validItems(10), (first, second) => {
      fc.pre(oracleAccepts([first, second]));
      const a = build(first, 'none');
      const base = resolveConfig(defaultConfig(), a.patch, a.sets);
      const b = build(second, 'none');
      const c = resolveConfig(deserializeConfig(serializeConfig(base)), b.patch, b.sets);
      assert.equal(serializeConfig(c), serializeConfig(resolveConfig(base, b.patch, b.sets)));
    }), { numRuns: 200 });
  });
});
