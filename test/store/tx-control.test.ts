import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { transactionControl } from '../../src/store/tx-control.ts';

describe('transactionControl', () => {
  it('finds a statement that begins or ends a transaction, in any statement of a script', () => {
    const cases: Array<[string, string]> = [
      ['COMMIT', 'COMMIT'],
      ['  commit ;', 'COMMIT'],
      ['end', 'END'],
      ['END TRANSACTION', 'END'],
      ['ROLLBACK', 'ROLLBACK'],
      ['ROLLBACK TRANSACTION', 'ROLLBACK'],
      ['BEGIN IMMEDIATE', 'BEGIN'],
      ['begin deferred transaction', 'BEGIN'],
      ['START   TRANSACTION ISOLATION LEVEL SERIALIZABLE', 'START TRANSACTION'],
      ['ABORT', 'ABORT'],
      ["PREPARE TRANSACTION 'x'", 'PREPARE TRANSACTION'],
      ['INSERT INTO t VALUES (1); COMMIT; BEGIN', 'COMMIT'],
      ['/* first */ -- then\nCOMMIT', 'COMMIT'],
      ["UPDATE t SET v = 'a;b'; ROLLBACK", 'ROLLBACK'],
      ['CREATE TRIGGER t1 AFTER INSERT ON t BEGIN SELECT 1; END; COMMIT', 'COMMIT'],
    ];
    for (const [sql, control] of cases) assert.equal(transactionControl(sql), control, sql);
  });

  it('leaves data changes, queries, savepoints, quoted words and trigger bodies alone', () => {
    const fine = [
      'SELECT 1',
      "SELECT 'COMMIT' AS c",
      `SELECT "end" FROM t`,
      'SELECT [begin] FROM t',
      'SELECT `rollback` FROM t',
      "SELECT 'it''s; COMMIT'",
      '-- COMMIT\nSELECT 1',
      '/* ; END */ SELECT 1',
      'SAVEPOINT a',
      'RELEASE a',
      'RELEASE SAVEPOINT a',
      'ROLLBACK TO a',
      'rollback to savepoint a',
      'UPDATE t SET ended = 1 WHERE commit_id = 2',
      'SELECT CASE WHEN x THEN 1 END FROM t',
      "CREATE TRIGGER no_update BEFORE UPDATE ON t BEGIN SELECT RAISE(ABORT, 'append-only'); END;",
      'CREATE TEMP TRIGGER x AFTER INSERT ON t BEGIN UPDATE u SET n = CASE WHEN n > 1 THEN 0 END; DELETE FROM v; END',
      'CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION \'no\'; END; $$ LANGUAGE plpgsql',
      'CREATE FUNCTION g() RETURNS void AS $body$ BEGIN COMMIT; END $body$ LANGUAGE plpgsql',
      '',
    ];
    for (const sql of fine) assert.equal(transactionControl(sql), undefined, sql);
  });
});
