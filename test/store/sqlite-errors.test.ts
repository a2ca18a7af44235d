/**
 * How SQLite's own errors are told to the user: each family gets its code and a hint that says
 * what to do (the adapter's classification, given the errors better-sqlite3 throws).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifySqliteError } from '../../src/store/sqlite/sqlite-adapter.ts';

function sqliteError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('SQLite errors', () => {
  it('a full disk, or an I/O error (growing the shared-memory file on a full disk), says to free space', () => {
    for (const [code, message] of [['SQLITE_FULL', 'database or disk is full'], ['SQLITE_IOERR_SHMSIZE', 'disk I/O error'], ['SQLITE_IOERR', 'disk I/O error']]) {
      const e = classifySqliteError(sqliteError(code!, message!), '/data/bot.db');
      assert.equal(e.code, 'STORAGE_FAILED');
      assert.equal(e.message, `SQLite failed on /data/bot.db: ${message} [${code}]`);
      assert.match(e.hint ?? '', /^free disk space where \/data\/bot\.db is, then retry \(nothing of the failed change was written\)/);
    }
  });
});
