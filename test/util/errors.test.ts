import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { BotstateError, coerceError, ErrorCategory, errorText, EXIT_CODES, InvalidTransitionError, RuleError, type ErrorCode } from '../../src/errors.ts';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
const CLASS_OF_CATEGORY: Record<ErrorCategory, readonly string[]> = {
  usage: ['ValidationError'],
  rule: ['RuleError', 'InvalidTransitionError'],
  not_found: ['NotFoundError'],
  storage: ['StorageError'],
  schema: ['SchemaError'],
  internal: ['BotstateError'],
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? sources(join(dir, d.name)) : d.name.endsWith('.ts') ? [join(dir, d.name)] : []));
}

test('every error botstate constructs with a literal code is of its category\'s class', () => {
  const wrong: string[] = [];
  let seen = 0;
  for (const file of sources(SRC)) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/new (\w+Error)\(\s*'([A-Z_]+)'/g)) {
      const [, cls, code] = m as unknown as [string, string, ErrorCode];
      const category = new BotstateError(code, '').category;
      if (category === undefined) continue; // not a BotstateError code (an exchange error's own)
      seen++;
      if (!CLASS_OF_CATEGORY[category].includes(cls)) wrong.push(`${file.slice(SRC.length)}: new ${cls}('${code}') (${category})`);
    }
  }
  assert.ok(seen > 100, `only ${seen} constructions found: the pattern no longer matches the code`);
  assert.deepEqual(wrong, []);
});

test('RuleError covers every rule code, InvalidTransitionError among them, with exit code 3', () => {
  const e = new InvalidTransitionError('INVALID_TRANSITION', 'x');
  assert.ok(e instanceof RuleError && e instanceof BotstateError);
  assert.equal(e.name, 'InvalidTransitionError');
  assert.equal(new RuleError('INSUFFICIENT_BALANCE', 'x').name, 'RuleError');
  assert.equal(EXIT_CODES[new RuleError('LEASE_LOST', 'x').category], 3);
});

test('coerceError never throws, and keeps what a thrown value says', () => {
  const bare = Object.assign(Object.create(null) as object, { message: 'insufficient funds' });
  const noProto = Object.create(null) as object;
  const hostile = { toString: () => { throw new Error('no'); } };
  const badGetter = Object.defineProperty(new Error('x'), 'message', { get: () => { throw new Error('no'); } });
  const cases: Array<[unknown, string]> = [
    [new Error('boom'), 'boom'],
    [{ code: 'E1', message: 'plain object' }, 'plain object'],
    [bare, 'insufficient funds'],
    ['a string', 'a string'],
    [undefined, 'undefined'],
    [Symbol('s'), 'Symbol(s)'],
    [noProto, '[object Object] that cannot be read as text'],
    [hostile, '[object Object] that cannot be read as text'],
    [badGetter, '[object Error] that cannot be read as text'],
  ];
  for (const [thrown, says] of cases) {
    assert.equal(errorText(thrown), says);
    assert.equal(coerceError(thrown).message, `unexpected error: ${says}`);
    assert.equal(coerceError(thrown).code, 'INTERNAL');
  }
});
