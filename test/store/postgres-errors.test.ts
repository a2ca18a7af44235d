/**
 * How PostgreSQL's errors are told to the user, by SQLSTATE (the adapter's classification of the
 * errors pg throws; the contract tests meet the same on a real server).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { StorageError, ValidationError } from '../../src/errors.ts';
import { classifyPostgresError } from '../../src/store/postgres/postgres-adapter.ts';

function pgError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('PostgreSQL errors', () => {
  it("class 22 (a value the statement cannot take) and class 42 (SQL's rules) are the caller's: INVALID_ARGUMENT, with the server's message and code", () => {
    const callers: Array<[string, string]> = [
      ['22012', 'division by zero'],
      ['22P02', 'invalid input syntax for type numeric: "abc"'],
      ['22003', 'numeric field overflow'],
      ['2201W', 'LIMIT must not be negative'],
      ['2201B', 'invalid regular expression: parentheses () not balanced'],
      ['22007', 'invalid input syntax for type interval: "timeout"'],
      ['42804', 'CASE types text and integer cannot be matched'],
      ['42702', 'column reference "id" is ambiguous'],
      ['42803', 'column "jobs.status" must appear in the GROUP BY clause or be used in an aggregate function'],
      ['42601', 'syntax error at or near "SELEC"'],
    ];
    for (const [code, message] of callers) {
      const e = classifyPostgresError(pgError(code, message), 'the server');
      assert.ok(e instanceof ValidationError, `${code}: ${e.name}`);
      assert.equal(e.code, 'INVALID_ARGUMENT');
      assert.equal(e.message, `PostgreSQL refused the statement at the server: ${message} [${code}]`);
      assert.match(String(e.hint), /^correct the SQL, or the values given with it/);
    }
  });

  it('a statement after one that failed in the transaction (25P02) says so, as the caller\'s', () => {
    const e = classifyPostgresError(pgError('25P02', 'current transaction is aborted, commands ignored until end of transaction block'), 'the server');
    assert.ok(e instanceof ValidationError);
    assert.equal(e.code, 'INVALID_ARGUMENT');
    assert.equal(e.message, 'an earlier statement of this transaction at the server failed, and PostgreSQL refuses every statement after it until the transaction ends (current transaction is aborted, commands ignored until end of transaction block) [25P02]');
    assert.match(String(e.hint), /nested store\.transaction/);
  });

  it('a missing table, column, function or object, a privilege, constraints, conflicts, timeouts and failures keep their codes', () => {
    const kept: Array<[string, string, string]> = [
      ['42P01', 'relation "jobs" does not exist', 'STORAGE_FAILED'],
      ['42703', 'column "nope" does not exist', 'STORAGE_FAILED'],
      // A function or another object (an index, a type) botstate's own statements may meet after a schema changed outside it.
      ['42883', 'function nope(integer) does not exist', 'STORAGE_FAILED'],
      ['42704', 'index "trades_pending" does not exist', 'STORAGE_FAILED'],
      ['42501', 'permission denied for table jobs', 'STORAGE_FAILED'],
      ['23505', 'duplicate key value violates unique constraint "trades_client_order_id_key"', 'CONSTRAINT_VIOLATION'],
      ['23514', 'new row for relation "jobs" violates check constraint "jobs_status_check"', 'CONSTRAINT_VIOLATION'],
      ['40001', 'could not serialize access due to concurrent update', 'STORAGE_BUSY'],
      ['40P01', 'deadlock detected', 'STORAGE_BUSY'],
      ['55P03', 'canceling statement due to lock timeout', 'STORAGE_BUSY'],
      ['57014', 'canceling statement due to statement timeout', 'STORAGE_BUSY'],
      ['53100', 'could not extend file: No space left on device', 'STORAGE_FAILED'],
      ['58030', 'could not write to file: I/O error', 'STORAGE_FAILED'],
      ['XX001', 'invalid page in block 1 of relation base/1/2', 'STORAGE_FAILED'],
      ['57P01', 'terminating connection due to administrator command', 'STORAGE_UNAVAILABLE'],
      ['57P02', 'terminating connection because of crash of another server process', 'STORAGE_UNAVAILABLE'],
      ['57P05', 'terminating connection due to idle-session timeout', 'STORAGE_UNAVAILABLE'],
      ['25P03', 'terminating connection due to idle-in-transaction timeout', 'STORAGE_UNAVAILABLE'],
      // A server error's text is its own: a caller's RAISE that says "timeout" is no lost session.
      ['P0001', 'quote request timeout', 'CONSTRAINT_VIOLATION'],
      ['XX000', 'worker terminated: timeout', 'STORAGE_FAILED'],
      // The driver's and the socket's own errors carry no SQLSTATE: their text says it.
      ['', 'Connection terminated unexpectedly', 'STORAGE_UNAVAILABLE'],
      ['', 'Query read timeout', 'STORAGE_UNAVAILABLE'],
    ];
    for (const [code, message, expected] of kept) {
      const e = classifyPostgresError(pgError(code, message), 'the server');
      assert.equal(e.code, expected, `${code}: ${e.message}`);
      if (expected.startsWith('STORAGE')) assert.ok(e instanceof StorageError, code);
    }
  });
});
