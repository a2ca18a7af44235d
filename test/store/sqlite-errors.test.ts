/**
 * How SQLite's own errors are told to the user: each family gets its code and a hint that says
 * what to do (the adapter's classification, given the errors better-sqlite3 throws).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { StorageError, ValidationError } from '../../src/errors.ts';
import { classifySqliteError } from '../../src/store/sqlite/sqlite-adapter.ts';

function sqliteError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('SQLite errors', () => {
  it('a full disk says to free space, and that nothing of the change was written', () => {
    const e = classifySqliteError(sqliteError('SQLITE_FULL', 'database or disk is full'), '/data/bot.db');
    assert.equal(e.code, 'STORAGE_FAILED');
    assert.equal(e.message, 'SQLite failed on /data/bot.db: database or disk is full [SQLITE_FULL]');
    assert.equal(e.hint, 'free disk space where /data/bot.db is, then retry (nothing of the failed change was written)');
  });

  it('an I/O error (growing the shared-memory file on a full disk, a failed fsync) says to check the disk, and claims nothing', () => {
    for (const code of ['SQLITE_IOERR_SHMSIZE', 'SQLITE_IOERR_FSYNC', 'SQLITE_IOERR']) {
      const e = classifySqliteError(sqliteError(code, 'disk I/O error'), '/data/bot.db');
      assert.equal(e.code, 'STORAGE_FAILED');
      assert.equal(e.message, `SQLite failed on /data/bot.db: disk I/O error [${code}]`);
      assert.equal(e.hint, 'check the disk where /data/bot.db is (free space first, then errors), then retry');
    }
  });

  it("a statement's own fault is INVALID_ARGUMENT with SQLite's message; a missing table, column, index or function, and the connection's state, stay STORAGE_FAILED", () => {
    const callers: Array<[string, string]> = [
      ['SQLITE_ERROR', 'malformed JSON'],
      ['SQLITE_ERROR', 'integer overflow'],
      ['SQLITE_ERROR', 'SELECTs to the left and right of UNION do not have the same number of result columns'],
      ['SQLITE_ERROR', 'ambiguous column name: id'],
      // A statement that may not run in a transaction, which every tx is: the caller's, not the connection's.
      ['SQLITE_ERROR', 'cannot VACUUM from within a transaction'],
      ['SQLITE_ERROR_MISSING_COLLSEQ', 'no such collation sequence: nope'],
      ['SQLITE_MISMATCH', 'datatype mismatch'],
      ['SQLITE_RANGE', 'column index out of range'],
      ['SQLITE_TOOBIG', 'string or blob too big'],
    ];
    for (const [code, message] of callers) {
      const e = classifySqliteError(sqliteError(code, message), '/data/bot.db');
      assert.ok(e instanceof ValidationError, `${code} ${message}: ${e.name}`);
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.equal(e.message, `SQLite refused the statement on /data/bot.db: ${message} [${code}]`);
      assert.match(String(e.hint), /^correct the SQL, or the values given with it/);
    }
    const storage: Array<[string, string]> = [
      ['SQLITE_ERROR', 'no such table: jobs'],
      ['SQLITE_ERROR', 'no such column: status'],
      ['SQLITE_ERROR', 'table jobs has no column named status'],
      // What botstate's own statements and triggers use, gone when the schema was changed outside it.
      ['SQLITE_ERROR', 'no such function: nope'],
      ['SQLITE_ERROR', 'no such index: trades_pending'],
      ['SQLITE_ERROR', 'unsupported file format'],
      ['SQLITE_ERROR', 'cannot commit - no transaction is active'],
      ['SQLITE_ERROR', 'cannot start a transaction within a transaction'],
      ['SQLITE_ERROR', 'no such savepoint: botstate_call'],
      ['SQLITE_ERROR', 'SQL logic error'],
      ['SQLITE_NOMEM', 'out of memory'],
    ];
    for (const [code, message] of storage) {
      const e = classifySqliteError(sqliteError(code, message), '/data/bot.db');
      assert.ok(e instanceof StorageError, `${code} ${message}: ${e.name}`);
      assert.equal(e.code, 'STORAGE_FAILED', message);
    }
    // Constraints and locks keep their codes.
    assert.equal(classifySqliteError(sqliteError('SQLITE_CONSTRAINT_UNIQUE', 'UNIQUE constraint failed: trades.client_order_id'), 'x').code, 'CONSTRAINT_VIOLATION');
    assert.equal(classifySqliteError(sqliteError('SQLITE_BUSY', 'database is locked'), 'x').code, 'STORAGE_BUSY');
  });
});
