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
});
