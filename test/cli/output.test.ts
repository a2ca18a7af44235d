/**
 * The CLI's listings are written in chunks: the same text as one JSON.stringify or one table, for
 * listings of any length (a million trades is a longer string than V8 allows, and spreading
 * 130,000 rows as arguments overflowed the stack).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { json, jsonArrayChunks, table, tableChunks } from '../../src/cli/output.ts';

describe('chunked listings', () => {
  it('jsonArrayChunks writes exactly what json() writes, whatever the length', () => {
    const item = (i: number) => ({ id: `t-${i}`, amount: `${i}.5`, nested: { list: [i, null, 'x\ny'] }, empty: [], none: {}, raw: JSON.rawJSON('0.10') });
    for (const n of [0, 1, 2, 999, 1000, 1001, 2500]) {
      const items = Array.from({ length: n }, (_, i) => item(i));
      assert.equal([...jsonArrayChunks(items)].join(''), json(items), `${n} items`);
    }
  });

  it('a table of 200,000 rows is written, in chunks, with the widths of all its rows', () => {
    const rows = Array.from({ length: 200_000 }, (_, i) => [`row-${i}`, i === 123_456 ? 'the widest cell of all' : 'x', null]);
    const chunks = [...tableChunks(['A', 'B', 'C'], rows)];
    assert.ok(chunks.length > 100);
    const lines = chunks.join('').split('\n');
    assert.equal(lines.length, 200_002); // the header, the rows, and the final newline
    assert.equal(lines[0], `A${' '.repeat(11)}B${' '.repeat(23)}C`);
    assert.equal(lines[1], `row-0${' '.repeat(7)}x${' '.repeat(23)}-`);
    assert.equal(table(['A'], [['1'], ['22']]), 'A\n1\n22\n');
  });
});
