import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { numberedPlaceholders, transactionControl } from '../../src/store/tx-control.ts';

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
    // A trigger with a body is SQLite's syntax (PostgreSQL refuses the script at its END either way).
    for (const [sql, control] of cases) for (const engine of sql.startsWith('CREATE TRIGGER') ? (['sqlite'] as const) : (['sqlite', 'postgres'] as const)) assert.equal(transactionControl(sql, engine), control, `${engine}: ${sql}`);
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
      'CREATE TRIGGER x AFTER INSERT ON t BEGIN UPDATE u SET n = CASE WHEN n > 1 THEN 0 END; DELETE FROM v; END',
      'CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION \'no\'; END; $$ LANGUAGE plpgsql',
      'CREATE FUNCTION g() RETURNS void AS $body$ BEGIN COMMIT; END $body$ LANGUAGE plpgsql',
      '',
    ];
    for (const sql of fine) assert.equal(transactionControl(sql, sql.includes('$') ? 'postgres' : 'sqlite'), undefined, sql);
  });

  it('reads quoting and comments as each engine does', () => {
    const both: Array<[string, string | undefined]> = [
      ['ROLLBACK TRANSACTION TO SAVEPOINT a', undefined],
      ['rollback transaction to a', undefined],
      ['/**/COMMIT', 'COMMIT'],
      ['COMMIT/**/', 'COMMIT'],
      ['\uFEFFCOMMIT', 'COMMIT'],
      ["CREATE TRIGGER t1 AFTER INSERT ON t BEGIN SELECT 'a; END'; END; COMMIT", 'COMMIT'],
      ['CREATE TRIGGER t1 AFTER INSERT ON t BEGIN SELECT 1; END\n;\nEND', 'END'],
    ];
    for (const [sql, control] of both) assert.equal(transactionControl(sql, 'sqlite'), control, `sqlite: ${sql}`);
    const postgres: Array<[string, string | undefined]> = [
      ['ROLLBACK WORK TO SAVEPOINT a', undefined],
      ["SELECT E'it\\'s; commit'", undefined],
      ["SELECT e'\\''; COMMIT; SELECT 1", 'COMMIT'],
      ["SELECT E'\\'', '['; COMMIT; SELECT ']'", 'COMMIT'],
      ['SELECT 1 /* a /* nested */ ; COMMIT */', undefined],
      ['SELECT 1 /* a /* nested */ */; COMMIT', 'COMMIT'],
      ['CREATE TRIGGER t AFTER INSERT ON x FOR EACH ROW EXECUTE FUNCTION f(); COMMIT; BEGIN; SELECT 1; END', 'COMMIT'],
      ['SELECT a[1] FROM t; COMMIT', 'COMMIT'],
      ['SELECT $1::text; COMMIT', 'COMMIT'],
      ["SELECT $tag$ it's; COMMIT $tag$", undefined],
      ['SELECT "a""; COMMIT"', undefined],
      // PostgreSQL ends a -- comment at a carriage return too, and takes non-ASCII letters in a dollar tag.
      ['INSERT INTO t VALUES (1) -- c\r; COMMIT', 'COMMIT'],
      ['INSERT INTO t VALUES (length($é$x$é$)); COMMIT', 'COMMIT'],
      ['SELECT $é$ ; COMMIT $é$', undefined],
      ['CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END', undefined],
      ['CREATE PROCEDURE p() BEGIN ATOMIC INSERT INTO t VALUES (1); SELECT CASE WHEN true THEN 1 END; END; COMMIT', 'COMMIT'],
      // An empty body ends at its own END; `begin atomic` outside a routine is a column and an alias.
      ['CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC END; COMMIT; CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END', 'COMMIT'],
      ['SELECT begin atomic FROM t; COMMIT; CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END', 'COMMIT'],
      ['CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END', undefined],
    ];
    for (const [sql, control] of postgres) assert.equal(transactionControl(sql, 'postgres'), control, `postgres: ${sql}`);
    // In SQLite, [ ] quotes an identifier and a backslash escapes nothing.
    assert.equal(transactionControl('SELECT [a; COMMIT] FROM t', 'sqlite'), undefined);
    assert.equal(transactionControl("SELECT 'a\\'; COMMIT", 'sqlite'), 'COMMIT');
    // SQLite ends a -- comment at a newline only.
    assert.equal(transactionControl('SELECT 1 -- c\r; COMMIT', 'sqlite'), undefined);
  });

  it('finds statements that change the connection, not the transaction: SET, RESET, DISCARD on PostgreSQL, a PRAGMA that sets on SQLite', () => {
    const postgres: Array<[string, string | undefined]> = [
      ['SET search_path TO other', 'SET'],
      ["set synchronous_commit = off", 'SET'],
      ['SET SESSION statement_timeout = 0', 'SET'],
      ["SET TIME ZONE 'Europe/Paris'", 'SET'],
      ['SET ROLE other', 'SET'],
      ['RESET ALL', 'RESET'],
      ['DISCARD ALL', 'DISCARD'],
      ['SELECT 1; SET DateStyle = \'SQL, DMY\'', 'SET'],
      // These end with the transaction.
      ['SET LOCAL statement_timeout = 100', undefined],
      ['SET LOCAL app.owner TO x', undefined],
      ['SET TRANSACTION ISOLATION LEVEL SERIALIZABLE', undefined],
      ['SET CONSTRAINTS ALL DEFERRED', undefined],
      ['UPDATE t SET v = 1', undefined],
      ["SELECT 'SET x = 1'", undefined],
      ['CREATE FUNCTION f() RETURNS void AS $$ BEGIN SET search_path TO x; END $$ LANGUAGE plpgsql', undefined],
      // The same by function call, and temporary objects, which stay on the connection too.
      ["SELECT set_config('search_path', 'public', false)", 'set_config(…, false)'],
      ["SELECT pg_catalog.set_config('a.b', 'c',false) AS x", 'set_config(…, false)'],
      ["SELECT set_config('app.owner', 'x', true)", undefined],
      ["SELECT 'set_config(x, y, false)'", undefined],
      ['CREATE TEMP TABLE jobs (x int)', 'CREATE TEMP'],
      ['create temporary table t AS SELECT 1', 'CREATE TEMP'],
      ['CREATE TEMP VIEW v AS SELECT 1', 'CREATE TEMP'],
      ['CREATE TEMP TABLE t (x int) ON COMMIT DROP', undefined],
      ['CREATE TEMPORARY TABLE t ON COMMIT DROP AS SELECT 1', undefined],
      ['CREATE TABLE temp (x int)', undefined],
      // set_config allowed only with a third argument written true; temporary objects by any spelling.
      ["SELECT set_config('search_path','public','false')", 'set_config(…, false)'],
      ["SELECT set_config('a', 'b', $2)", 'set_config(…, false)'],
      ["SELECT set_config('a', concat('b','c'), false)", 'set_config(…, false)'],
      ["SELECT set_config('a', concat('b','c'), true)", undefined],
      ["SELECT set_config('a', 'b', is_local => false)", 'set_config(…, false)'],
      ["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT set_config('a','b',false); SELECT 1; END", undefined],
      ['CREATE TABLE pg_temp.jobs (x int)', 'CREATE TEMP'],
      ['CREATE OR REPLACE TEMP VIEW v AS SELECT 1', 'CREATE TEMP'],
      ['CREATE VIEW pg_temp.x AS SELECT 1', 'CREATE TEMP'],
      ['SELECT 1 AS a INTO TEMP t', 'CREATE TEMP'],
      ['SELECT 1 AS a INTO t2', undefined],
      // SELECT INTO the temporary schema makes a temporary table too; INSERT INTO one does not.
      ['SELECT 1 AS a INTO pg_temp.x', 'CREATE TEMP'],
      ['SELECT * INTO TABLE pg_temp_3 . jobs FROM jobs', 'CREATE TEMP'],
      ['WITH a AS (SELECT 1 AS x) SELECT x INTO TEMP t FROM a', 'CREATE TEMP'],
      ['WITH a AS (SELECT 1 AS x) SELECT x INTO UNLOGGED pg_temp.t FROM a', 'CREATE TEMP'],
      ['WITH a AS (SELECT 1 AS x) INSERT INTO pg_temp.t SELECT x FROM a', undefined],
      ['WITH a AS (SELECT 1 AS x) INSERT INTO temp SELECT x FROM a', undefined],
      // The settings botstate's own statements in the transaction depend on, even for the transaction alone.
      ['SET LOCAL search_path TO other', 'SET LOCAL search_path'],
      ['set local SEARCH_PATH = other, public', 'SET LOCAL SEARCH_PATH'],
      ['SET LOCAL "search_path" TO other', 'SET LOCAL search_path'],
      ["SET LOCAL SCHEMA 'other'", 'SET LOCAL SCHEMA'],
      ["SET LOCAL TIME ZONE 'Europe/Paris'", 'SET LOCAL TIME ZONE'],
      ["SET LOCAL TimeZone = 'Europe/Paris'", 'SET LOCAL TimeZone'],
      ["SET LOCAL DateStyle = 'SQL, DMY'", 'SET LOCAL DateStyle'],
      ["SET LOCAL NAMES 'LATIN1'", 'SET LOCAL NAMES'],
      ["SET LOCAL client_encoding = 'LATIN1'", 'SET LOCAL client_encoding'],
      ['SET LOCAL synchronous_commit = off', 'SET LOCAL synchronous_commit'],
      ["SELECT 1; SET LOCAL search_path = pg_temp, public", 'SET LOCAL search_path'],
      ["SELECT set_config('search_path', 'public', true)", "set_config('search_path', …, true)"],
      ["SELECT set_config( 'SYNCHRONOUS_COMMIT' , 'off', true)", "set_config('SYNCHRONOUS_COMMIT', …, true)"],
      // Named otherwise than by a string, a setting cannot be read here (as a function's body cannot).
      ["SELECT set_config($1, $2, true)", undefined],
      ["SELECT set_config('app.x'::text, $1, true)", undefined],
      ["SELECT set_config(E'search_path', 'x', true)", "set_config('search_path', …, true)"],
      ["SELECT set_config('search_path'::text, 'x', true)", "set_config('search_path', …, true)"],
      // synchronous_commit may be raised for one transaction, not lowered.
      ["SELECT set_config('synchronous_commit', 'on', true)", undefined],
      ["SELECT set_config('synchronous_commit', 'local', true)", "set_config('synchronous_commit', …, true)"],
      ['SET LOCAL synchronous_commit = on', undefined],
      ["SET LOCAL synchronous_commit TO 'remote_apply'", undefined],
      ['SET LOCAL synchronous_commit TO local', 'SET LOCAL synchronous_commit'],
      ['SET LOCAL synchronous_commit = off', 'SET LOCAL synchronous_commit'],
      // Setting names are case-insensitive, quoted or not, and may be written U&"…"; a comment changes nothing.
      ['SET LOCAL "Search_Path" = public', 'SET LOCAL Search_Path'],
      ['SET LOCAL "Synchronous_Commit" = off', 'SET LOCAL Synchronous_Commit'],
      ["SET LOCAL \"DateStyle\" = 'SQL, DMY'", 'SET LOCAL DateStyle'],
      ['SET LOCAL U&"search_path" = public', 'SET LOCAL search_path'],
      ['SET LOCAL U&"\\0073earch_path" = public', 'SET LOCAL search_path'],
      ['SET LOCAL /* hm */ search_path = public', 'SET LOCAL search_path'],
      ['SET LOCAL\nsearch_path = public', 'SET LOCAL search_path'],
      // A custom setting named like one of them is another setting.
      ["SET LOCAL schema.tenant = 'a'", undefined],
      ["SET LOCAL timezone.x = 'a'", undefined],
      ['SELECT 1 INTO LOCAL TEMP t', 'CREATE TEMP'],
      ['SELECT 1 INTO GLOBAL TEMPORARY t', 'CREATE TEMP'],
      ["SELECT set_config('app.a', set_config('search_path', 'x', true), true)", "set_config('search_path', …, true)"],
      ['CREATE TABLE pg_temp.t (x int) ON COMMIT DROP', undefined],
    ];
    for (const [sql, found] of postgres) assert.equal(transactionControl(sql, 'postgres'), found, `postgres: ${sql}`);
    const sqlite: Array<[string, string | undefined]> = [
      ['PRAGMA synchronous = OFF', 'PRAGMA'],
      ['pragma main.synchronous=0', 'PRAGMA'],
      ['PRAGMA synchronous(0)', 'PRAGMA'],
      ['PRAGMA "synchronous" = 0', 'PRAGMA'],
      ['PRAGMA query_only = 1', 'PRAGMA'],
      ['SELECT 1; PRAGMA busy_timeout = 100000', 'PRAGMA'],
      // Reading is fine, and defer_foreign_keys lasts only as long as the transaction.
      ['PRAGMA synchronous', undefined],
      ['PRAGMA table_info(jobs)', undefined],
      ['PRAGMA main.index_list(trades)', undefined],
      ['PRAGMA foreign_key_check', undefined],
      ['PRAGMA defer_foreign_keys = ON', undefined],
      ['PRAGMA defer_foreign_keys(1)', undefined],
      // Written to the database file, and rolled back with the transaction.
      ['PRAGMA user_version = 7', undefined],
      ['PRAGMA application_id(42)', undefined],
      // Temporary objects stay on the store's one connection.
      ['CREATE TEMP TABLE jobs (x int)', 'CREATE TEMP'],
      ['SELECT 1; CREATE TEMPORARY VIEW v AS SELECT 1', 'CREATE TEMP'],
      ['CREATE TEMP TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END', 'CREATE TEMP'],
      ['CREATE TABLE temp.jobs (x int)', 'CREATE TEMP'],
      ['CREATE VIEW temp.v AS SELECT 1', 'CREATE TEMP'],
      ['CREATE VIRTUAL TABLE temp.t USING fts5(x)', 'CREATE TEMP'],
      ['CREATE TRIGGER temp.tr AFTER INSERT ON t BEGIN SELECT 1; END', 'CREATE TEMP'],
      ['CREATE TABLE main.t (x)', undefined],
      ['SELECT * FROM pragma_table_info(\'jobs\')', undefined],
      // SQLite has no SET statement: this fails in SQLite itself.
      ['SET x = 1', undefined],
    ];
    for (const [sql, found] of sqlite) assert.equal(transactionControl(sql, 'sqlite'), found, `sqlite: ${sql}`);
  });
});

describe('quoted and qualified names', () => {
  it('reads a quoted name as the name it quotes, as each engine folds it, schema-qualified too', () => {
    const postgres: Array<[string, string | undefined]> = [
      [`SELECT "set_config"('search_path','public',false)`, 'set_config(…, false)'],
      [`SELECT pg_catalog."set_config"('a', 'b', false)`, 'set_config(…, false)'],
      [`SELECT "pg_catalog"."set_config"('a', 'b', false)`, 'set_config(…, false)'],
      [`SELECT "pg_catalog" . "set_config" ('a', 'b', false)`, 'set_config(…, false)'],
      [`SELECT"set_config"('a', 'b', false)`, 'set_config(…, false)'],
      [`SELECT "set_config"('a', 'b', true)`, undefined],
      // A column named "true" is not the word true: it may be false.
      [`SELECT set_config('a', 'b', "true") FROM t`, 'set_config(…, false)'],
      // U&"…" with its escapes read, UESCAPE too.
      [`SELECT U&"\\0073et_config"('a', 'b', false)`, 'set_config(…, false)'],
      [`SELECT u&"!0073et_config" UESCAPE '!' ('a', 'b', false)`, 'set_config(…, false)'],
      [`SELECT U&"!0073et_config" UESCAPE '!' ('a', 'b', true)`, undefined],
      [`SELECT "pg_advisory_lock"(1)`, 'pg_advisory_lock'],
      [`SELECT pg_catalog."pg_try_advisory_lock_shared"(1, 2)`, 'pg_advisory_lock'],
      [`SELECT "pg_catalog".pg_advisory_lock(1)`, 'pg_advisory_lock'],
      [`SELECT "pg_advisory_xact_lock"(1)`, undefined],
      [`CREATE TABLE "pg_temp".jobs (x int)`, 'CREATE TEMP'],
      [`CREATE VIEW "pg_temp"."v" AS SELECT 1`, 'CREATE TEMP'],
      ['CREATE TABLE pg_temp_3.jobs (x int)', 'CREATE TEMP'],
      [`CREATE TABLE "pg_temp".t (x int) ON COMMIT DROP`, undefined],
      // PostgreSQL does not fold a quoted name to lower case: "SET_CONFIG" is another function.
      [`SELECT "SET_CONFIG"('a', 'b', false)`, undefined],
      [`SELECT pg_catalog."Set_Config"('a', 'b', false)`, undefined],
      [`SELECT "PG_ADVISORY_LOCK"(1)`, undefined],
      [`CREATE TABLE "PG_TEMP".t (x int)`, undefined],
      // A quoted name that is not a call, and strings and comments holding the words, stay text.
      [`SELECT "set_config", "pg_advisory_lock" FROM t`, undefined],
      [`SELECT 'pg_catalog."set_config"(1, 2, false)'`, undefined],
      [`SELECT $$"pg_advisory_lock"(1)$$`, undefined],
      [`SELECT 1 /* "set_config"('a','b',false) */`, undefined],
      [`SELECT 1 AS a INTO "temp"`, undefined],
      [`CREATE TABLE "temp".t (x int)`, undefined],
    ];
    for (const [sql, found] of postgres) assert.equal(transactionControl(sql, 'postgres'), found, `postgres: ${sql}`);
    const sqlite: Array<[string, string | undefined]> = [
      ['CREATE TABLE "temp".z(a)', 'CREATE TEMP'],
      ['CREATE TABLE [temp].w(a)', 'CREATE TEMP'],
      ['CREATE TABLE `temp`.w(a)', 'CREATE TEMP'],
      ['CREATE TABLE "TEMP" . w(a)', 'CREATE TEMP'],
      ["CREATE TABLE 'temp'.w(a)", 'CREATE TEMP'],
      ['CREATE VIEW IF NOT EXISTS [Temp].v AS SELECT 1', 'CREATE TEMP'],
      ['CREATE TRIGGER "temp".tr AFTER INSERT ON t BEGIN SELECT 1; END', 'CREATE TEMP'],
      ['PRAGMA "main".synchronous = OFF', 'PRAGMA'],
      ['PRAGMA [main].[journal_mode] = off', 'PRAGMA'],
      ["PRAGMA 'main'.'synchronous'(0)", 'PRAGMA'],
      ['PRAGMA "main"."table_info"(jobs)', undefined],
      ['PRAGMA "user_version" = 7', undefined],
      ['CREATE TABLE "main".t(a)', undefined],
      ['CREATE TABLE "temp x".t(a)', undefined],
      ['CREATE TABLE t AS SELECT "temp".a FROM x AS "temp"', undefined],
      ["SELECT 'CREATE TABLE \"temp\".t(a)'", undefined],
    ];
    for (const [sql, found] of sqlite) assert.equal(transactionControl(sql, 'sqlite'), found, `sqlite: ${sql}`);
  });

  it('refuses ATTACH and DETACH on SQLite (a database attached stays on the store\'s one connection), not the words', () => {
    const cases: Array<[string, string | undefined]> = [
      ["ATTACH DATABASE 'other.db' AS other", 'ATTACH'],
      ["attach 'other.db' as other", 'ATTACH'],
      ["/* c */ ATTACH ':memory:' AS m", 'ATTACH'],
      ['DETACH DATABASE other', 'DETACH'],
      ['detach other', 'DETACH'],
      ["SELECT 1; ATTACH 'x.db' AS x", 'ATTACH'],
      ["SELECT 'ATTACH DATABASE x'", undefined],
      ['SELECT attach, detach FROM t', undefined],
      ['UPDATE t SET detach = 1', undefined],
      ['SELECT [attach] FROM t', undefined],
    ];
    for (const [sql, found] of cases) assert.equal(transactionControl(sql, 'sqlite'), found, `sqlite: ${sql}`);
  });
});

describe('more of what PostgreSQL leaves on the session, and placeholders', () => {
  it('refuses PREPARE, LISTEN, a cursor WITH HOLD, a DO block and a session advisory lock; their transaction-bound forms pass', () => {
    const refused: Array<[string, string]> = [
      ['PREPARE p1 AS SELECT 1', 'PREPARE'],
      ['DEALLOCATE ALL', 'DEALLOCATE'],
      ["UPDATE pg_settings SET setting = 'public' WHERE name = 'search_path'", 'UPDATE pg_settings'],
      ["update pg_catalog.\"pg_settings\" set setting = 'off' where name = 'enable_seqscan'", 'UPDATE pg_settings'],
      ['deallocate prepare bs4', 'DEALLOCATE'],
      ['listen chan', 'LISTEN'],
      ['DECLARE c1 CURSOR WITH HOLD FOR SELECT 1', 'DECLARE … WITH HOLD'],
      ['DECLARE c1 NO SCROLL CURSOR\n  WITH  HOLD FOR SELECT 1', 'DECLARE … WITH HOLD'],
      ["DO $$ BEGIN PERFORM set_config('search_path', 'public', false); END $$", 'DO'],
      ["DO LANGUAGE plpgsql $x$ BEGIN EXECUTE 'SET synchronous_commit = off'; END $x$", 'DO'],
      ['SELECT pg_advisory_lock(42)', 'pg_advisory_lock'],
      ['SELECT pg_try_advisory_lock_shared(1, 2)', 'pg_advisory_lock'],
    ];
    for (const [sql, control] of refused) assert.equal(transactionControl(sql, 'postgres'), control, sql);
    const fine = [
      'DECLARE c1 CURSOR FOR SELECT 1',
      'SELECT pg_advisory_xact_lock(42)',
      "SELECT 'pg_advisory_lock(1)' AS text",
      'SELECT 1 AS do',
      'UPDATE t SET prepare = 1, listen = 2',
      "PREPARE TRANSACTION 'x'",
    ];
    for (const sql of fine.slice(0, 5)) assert.equal(transactionControl(sql, 'postgres'), undefined, sql);
    assert.equal(transactionControl("PREPARE TRANSACTION 'x'", 'postgres'), 'PREPARE TRANSACTION');
    // SQLite has none of these; its own rules apply.
    assert.equal(transactionControl('SELECT 1 AS do', 'sqlite'), undefined);
  });

  it('numbers only the ? placeholders outside strings, quoted identifiers, dollar quotes and comments', () => {
    assert.equal(numberedPlaceholders("SELECT ? AS a, 'x?y' AS b, \"q?\" AS c, $$z?$$ AS d, E'\\'?' AS e, ? /* ? */ -- ?\n"), "SELECT $1 AS a, 'x?y' AS b, \"q?\" AS c, $$z?$$ AS d, E'\\'?' AS e, $2 /* ? */ -- ?\n");
    assert.equal(numberedPlaceholders('INSERT INTO t VALUES (?, ?, ?)'), 'INSERT INTO t VALUES ($1, $2, $3)');
    assert.equal(numberedPlaceholders("SELECT 'why?'"), "SELECT 'why?'");
  });
});
