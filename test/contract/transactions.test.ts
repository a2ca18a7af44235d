/**
 * A tx kept past its store.transaction: its own methods (all, get, run, exec) are refused with
 * INVALID_ARGUMENT, as store calls given it are, and change nothing. Before, they ran: on their
 * own (autocommit, with no audit entry) when no transaction was open, or inside whichever one was
 * (SQLite's one connection, a group-commit batch, a PostgreSQL pool's reused client), or inside
 * the outer transaction after a nested one had ended.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBotstateError, StorageError, ValidationError } from '../../src/errors.ts';
import type { Executor } from '../../src/store/adapter.ts';
import type { Store, StoreOptions } from '../../src/store/store.ts';
import { rejectsWith } from '../helpers/assert.ts';
import { ENGINES, TOKEN, type Fixture } from '../helpers/engines.ts';

/** Every method of `tx`, each writing (or reading) what a stale tx must not. */
function uses(tx: Executor, id: string): Array<[string, () => Promise<unknown>]> {
  return [
    ['run', () => tx.run(`UPDATE jobs SET token_symbol = 'HACK' WHERE id = ?`, [id])],
    ['exec', () => tx.exec(`UPDATE jobs SET token_symbol = 'HACK'`)],
    ['get', () => tx.get(`UPDATE jobs SET token_symbol = 'HACK' WHERE id = ? RETURNING id`, [id])],
    ['all', () => tx.all(`SELECT id FROM jobs`)],
  ];
}

/** `p` refused as a tx of a transaction that has ended, with a hint. */
async function refusedAsEnded(p: Promise<unknown>, what: string): Promise<void> {
  const details = await rejectsWith(p, 'INVALID_ARGUMENT').catch((e: Error) => assert.fail(`${what}: ${e.message}`));
  assert.match(String(details['message']), /transaction that has ended/, what);
  await p.catch((e: unknown) => assert.ok(isBotstateError(e) && e.hint !== undefined && e.hint.length > 0, `${what}: a hint`));
}

/** A promise and the function that resolves it. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

for (const engine of ENGINES) {
  // `power` on SQLite is a group commit: transactions run back to back in one SQLite transaction.
  for (const durability of ['process', 'power'] as const) {
    describe(`a tx whose transaction has ended [${engine.name}, ${durability}]`, { skip: engine.skip }, () => {
      let fx: Fixture;
      let store: Store;
      let id: string;
      const open = (options: StoreOptions = {}) => fx.open({ actor: 'test', durability, ...options });
      beforeEach(async () => {
        fx = await engine.create();
        store = await open();
        id = (await store.jobs.start({ tokenAddress: TOKEN, tokenSymbol: 'LGI' })).id;
      });
      afterEach(() => fx.cleanup());

      it('a statement error caught inside the transaction: botstate\'s error on both engines; on PostgreSQL the commit is refused, not reported done', async () => {
        const body = store.transaction(async (tx) => {
          await store.jobs.pause({ id });
          const caught = await tx.run('INSERT INTO jobs (id) VALUES (?)', ['x']).then(() => undefined, (e: unknown) => e);
          assert.ok(isBotstateError(caught, 'CONSTRAINT_VIOLATION'), String(caught));
          return 'done';
        });
        if (fx.engine === 'sqlite') {
          // SQLite undoes the failed statement alone: the transaction goes on and commits.
          assert.equal(await body, 'done');
          assert.equal((await store.jobs.get({ id })).status, 'PAUSED');
        } else {
          // PostgreSQL aborted the whole transaction: nothing of it was written, and it says so.
          const refusal = await rejectsWith(body, 'INVALID_ARGUMENT');
          assert.match(String(refusal['message']), /rolled the transaction back at COMMIT, because a statement in it failed/);
          assert.equal((await store.jobs.get({ id })).status, 'RUNNING');
        }
      });

      it("a tx of another store (even on the same database) is refused as such, not as a transaction that has ended", async () => {
        const other = await open();
        const before = await fx.dump();
        let outcome: unknown;
        await other.transaction(async (tx) => {
          outcome = await store.jobs.pause({ id }, { tx }).then(() => 'paused', (e: unknown) => e);
        });
        assert.ok(isBotstateError(outcome, 'INVALID_ARGUMENT'), String(outcome));
        assert.equal((outcome as Error).message, "the tx passed to this call is not one of this store's transactions");
        assert.equal(await fx.dump(), before);
      });

      it("a ? written inside a string is text, not a placeholder, on both engines", async () => {
        const rows = await store.transaction(async (tx) => [
          await tx.get("SELECT 'why?' AS q"),
          await tx.get("SELECT CAST(? AS integer) AS a, 'x?y' AS b, ? AS c -- and? ", [1, 'c?']),
        ]);
        assert.deepEqual(rows, [{ q: 'why?' }, { a: 1, b: 'x?y', c: 'c?' }]);
      });

      it('PostgreSQL: PREPARE, LISTEN, a cursor WITH HOLD, a DO block and a session advisory lock are refused (they would stay on the pooled connection)', { skip: engine.name !== 'postgres' }, async () => {
        for (const [sql, hint] of [
          ['LISTEN chan', /connection of your own/],
          ['PREPARE p1 AS SELECT 1', /connection of your own/],
          ['DECLARE c1 CURSOR WITH HOLD FOR SELECT 1', /connection of your own/],
          ["DO $$ BEGIN PERFORM set_config('search_path', 'public', false); END $$", /body/],
          ['SELECT pg_advisory_lock(42)', /pg_advisory_xact_lock/],
        ] as const) {
          const outcome = await store.transaction((tx) => tx.exec(sql)).then(() => 'ran', (e: unknown) => e);
          assert.ok(isBotstateError(outcome, 'INVALID_ARGUMENT') && /it (?:may change|changes) the connection/.test(outcome.message) && hint.test(outcome.hint ?? ''), `${sql}: ${String(outcome)}`);
        }
        assert.deepEqual((await store.jobs.list()).map((j) => j.id), [id], 'the store still reads its own schema');
      });

      it('PostgreSQL: a transaction the server ended for sitting idle past idleTransactionTimeoutMs is said to be rolled back (STORAGE_BUSY), not "may have been made"', { skip: engine.name !== 'postgres', timeout: 20_000 }, async () => {
        const idle = await open({ idleTransactionTimeoutMs: 300 });
        for (const thenStatement of [false, true]) {
          const before = await fx.dump();
          const outcome = await idle
            .transaction(async (tx) => {
              await idle.jobs.pause({ id });
              await new Promise((resolve) => setTimeout(resolve, 800));
              if (thenStatement) await tx.get('SELECT 1 AS one');
            })
            .then(() => 'committed', (e: unknown) => e);
          assert.ok(isBotstateError(outcome, 'STORAGE_BUSY'), String(outcome));
          assert.match(outcome.message, /waited for its caller longer than idleTransactionTimeoutMs \(300 ms\), and the server ended it: nothing of it was written/);
          assert.equal(await fx.dump(), before);
        }
        // The pool goes on with fresh connections.
        await idle.jobs.pause({ id });
        assert.equal((await idle.jobs.get({ id })).status, 'PAUSED');
      });

      it('PostgreSQL: only the first 1,000 distinct statements get a server-side prepared name; the others run unnamed', { skip: engine.name !== 'postgres', timeout: 30_000 }, async () => {
        const one = await open({ poolSize: 1 });
        for (let i = 0; i < 1100; i++) await one.transaction((tx) => tx.get(`SELECT ${i} AS n`));
        const prepared = await one.transaction((tx) => tx.get<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements'));
        assert.ok(prepared!.n <= 1000, `${prepared!.n} prepared statements on the connection`);
        assert.deepEqual(await one.transaction((tx) => tx.get('SELECT 1099 AS n')), { n: 1099 });
      });

      it('close() lets calls made before it complete, and refuses the ones after', async () => {
        const paused = store.jobs.pause({ id });
        const closed = store.close();
        await rejectsWith(store.jobs.get({ id }), 'STORAGE_UNAVAILABLE');
        assert.equal((await paused).status, 'PAUSED');
        await closed;
        store = await open();
        assert.equal((await store.jobs.get({ id })).status, 'PAUSED');
      });

      it('close() lets a call made before it complete even while that call gives the event loop a turn', async () => {
        // No turn for 20 ms: SQLite's next transaction yields one (every 10 ms) before it takes the connection.
        const t0 = performance.now();
        while (performance.now() - t0 < 20);
        const paused = store.jobs.pause({ id });
        const closed = store.close();
        assert.equal((await paused).status, 'PAUSED');
        await closed;
        store = await open();
        assert.equal((await store.jobs.get({ id })).status, 'PAUSED');
      });

      it('refuses BEGIN, COMMIT, ROLLBACK and the like: the transaction goes on, and commits or rolls back as its body says', async () => {
        const control = ['COMMIT', 'commit;', 'END', 'END TRANSACTION', 'ROLLBACK', 'BEGIN', 'BEGIN IMMEDIATE', 'START TRANSACTION', 'ABORT', 'SELECT 1; COMMIT', '/* note */ COMMIT', '-- note\nROLLBACK'];
        const tryAll = async (tx: Executor) => {
          for (const sql of control) {
            for (const [name, p] of [['run', tx.run(sql)], ['exec', tx.exec(sql)]] as const) {
              const details = await rejectsWith(p, 'INVALID_ARGUMENT');
              assert.match(String(details['message']), /^a tx cannot run (BEGIN|START TRANSACTION|COMMIT|END|ROLLBACK|ABORT): store\.transaction begins, commits and rolls back its transaction itself$/, `${name} ${sql}`);
            }
          }
          // Words in strings, comments and savepoints are not transaction control.
          assert.deepEqual(await tx.get(`SELECT 'COMMIT; END' AS s`), { s: 'COMMIT; END' });
          await tx.exec('SAVEPOINT mine; ROLLBACK TO mine; RELEASE mine');
        };
        const before = await fx.dump();
        await assert.rejects(store.transaction(async (tx) => {
          await store.jobs.pause({ id });
          await tryAll(tx);
          throw new Error('rolled back');
        }), /rolled back/);
        assert.equal(await fx.dump(), before);
        await store.transaction(async (tx) => {
          await store.jobs.pause({ id });
          await tryAll(tx);
        });
        const job = await store.jobs.get({ id });
        assert.equal(job.status, 'PAUSED');
        assert.equal(job.version, 2);
        assert.deepEqual((await store.verifyAudit()).problems, []);
      });

      it('verifyAudit inside a caller\'s transaction: refused on PostgreSQL, where its statements would see different commits; run on SQLite', async () => {
        const inside = store.transaction(async () => store.verifyAudit());
        if (engine.name === 'postgres') {
          const details = await rejectsWith(inside, 'INVALID_ARGUMENT');
          assert.equal(details['message'], "verifyAudit must read the database in one snapshot, which a transaction of the caller's on PostgreSQL does not give");
        } else {
          assert.deepEqual((await inside).problems, []);
        }
        assert.deepEqual((await store.verifyAudit()).problems, []);
      });

      it('SQL the database refuses as written is INVALID_ARGUMENT (the caller\'s), a missing table STORAGE_FAILED with a hint; nothing is written', async () => {
        const p = (n: number) => (engine.name === 'postgres' ? `$${n}` : '?');
        const before = await fx.dump();
        const cases: Array<readonly [string, unknown[], string, RegExp]> = [
          ['SELEC 1', [], 'INVALID_ARGUMENT', /refused the statement .*syntax error/],
          [`SELECT ${p(1)} AS a`, [], 'INVALID_ARGUMENT', /refused the statement/],
          [`SELECT ${p(1)} AS a`, [1, 2], 'INVALID_ARGUMENT', /refused the statement/],
          ['SELECT * FROM no_such_table', [], 'STORAGE_FAILED', /no_such_table/],
          ['SELECT no_such_column FROM jobs', [], 'STORAGE_FAILED', /no_such_column/],
          // A value the statement cannot take, a type that does not match, a name it cannot resolve:
          // the caller's SQL too, with the database's own message, not a failed database.
          ...(engine.name === 'postgres'
            ? ([
                ['SELECT 1/0 AS x', [], 'INVALID_ARGUMENT', /^PostgreSQL refused the statement at .*: division by zero \[22012\]$/],
                ["SELECT 'abc'::numeric AS x", [], 'INVALID_ARGUMENT', /invalid input syntax for type numeric: "abc" \[22P02\]$/],
                ['SELECT 1 AS x LIMIT -1', [], 'INVALID_ARGUMENT', /LIMIT must not be negative \[2201W\]$/],
                ["SELECT CASE WHEN true THEN 1 ELSE 'x'::text END AS x", [], 'INVALID_ARGUMENT', /cannot be matched \[42804\]$/],
                ['SELECT id FROM jobs, trades', [], 'INVALID_ARGUMENT', /column reference "id" is ambiguous \[42702\]$/],
                ['SELECT status, count(*) AS n FROM jobs GROUP BY mode', [], 'INVALID_ARGUMENT', /must appear in the GROUP BY clause .*\[42803\]$/],
                ['SELECT no_such_function(1) AS x', [], 'STORAGE_FAILED', /function no_such_function\(integer\) does not exist \[42883\]$/],
                // A value that says "timeout" is not a server that timed out.
                ["SELECT 'timeout'::interval AS x", [], 'INVALID_ARGUMENT', /invalid input syntax for type interval: "timeout" \[22007\]$/],
              ] satisfies Array<[string, unknown[], string, RegExp]>)
            : ([
                ["SELECT json('x') AS x", [], 'INVALID_ARGUMENT', /^SQLite refused the statement on .*: malformed JSON \[SQLITE_ERROR\]$/],
                ['SELECT abs(-9223372036854775808) AS x', [], 'INVALID_ARGUMENT', /integer overflow \[SQLITE_ERROR\]$/],
                ['SELECT 1 AS x UNION SELECT 1, 2', [], 'INVALID_ARGUMENT', /do not have the same number of result columns \[SQLITE_ERROR\]$/],
                ['SELECT id FROM jobs, trades', [], 'INVALID_ARGUMENT', /ambiguous column name: id \[SQLITE_ERROR\]$/],
                ["SELECT 1 AS x LIMIT 'x'", [], 'INVALID_ARGUMENT', /datatype mismatch \[SQLITE_MISMATCH\]$/],
                ['SELECT no_such_function(1) AS x', [], 'STORAGE_FAILED', /no such function: no_such_function \[SQLITE_ERROR\]$/],
              ] satisfies Array<[string, unknown[], string, RegExp]>)),
        ];
        for (const [sql, params, code, said] of cases) {
          const e = await store.transaction(async (tx) => {
            await store.jobs.pause({ id });
            return tx.get(sql, params as never);
          }).then(() => undefined, (x: unknown) => x);
          assert.ok(isBotstateError(e, code as never), `${sql}: ${String(e)}`);
          assert.match(e.message, said, sql);
          assert.ok(code === 'INVALID_ARGUMENT' ? e instanceof ValidationError : e instanceof StorageError, `${sql}: ${e.name}`);
          assert.doesNotMatch(e.message, /\n/, sql);
          const hint = String(e.hint);
          assert.match(hint, code === 'INVALID_ARGUMENT' ? /^correct the SQL, or the values given with it/ : /^if the SQL is yours, check its names against botstate's schema/, sql);
        }
        assert.equal(await fx.dump(), before);
      });

      it('PostgreSQL: a statement after one that failed in the same transaction is refused as the caller\'s (INVALID_ARGUMENT, saying so), a store call too; nothing is written', { skip: engine.name !== 'postgres' }, async () => {
        const before = await fx.dump();
        const outcomes: unknown[] = [];
        const body = store.transaction(async (tx) => {
          await store.jobs.pause({ id });
          outcomes.push(await tx.get('SELECT 1/0 AS x').then(() => 'ran', (e: unknown) => e));
          outcomes.push(await tx.get('SELECT 1 AS one').then(() => 'ran', (e: unknown) => e));
          outcomes.push(await store.jobs.resume({ id }).then(() => 'ran', (e: unknown) => e));
          return 'done';
        });
        // The COMMIT of an aborted transaction is a ROLLBACK: refused as the caller's too, not said to be done.
        await rejectsWith(body, 'INVALID_ARGUMENT');
        const [first, ...after] = outcomes;
        assert.ok(isBotstateError(first, 'INVALID_ARGUMENT') && /division by zero \[22012\]$/.test(first.message), String(first));
        for (const e of after) {
          assert.ok(isBotstateError(e, 'INVALID_ARGUMENT') && e instanceof ValidationError, String(e));
          assert.match(e.message, /^an earlier statement of this transaction at .* failed, and PostgreSQL refuses every statement after it until the transaction ends \(current transaction is aborted, commands ignored until end of transaction block\) \[25P02\]$/);
          assert.match(String(e.hint), /nested store\.transaction/);
        }
        assert.equal(await fx.dump(), before);
        assert.equal((await store.jobs.get({ id })).status, 'RUNNING');
      });

      it('refuses a statement that would change the connection for every later call (SET on PostgreSQL, a setting PRAGMA on SQLite)', async () => {
        // One connection: on PostgreSQL every later call gets the same client back from the pool.
        store = await open({ ...(engine.name === 'postgres' ? { poolSize: 1 } : {}) });
        const sessionWide =
          engine.name === 'postgres'
            ? ['SET search_path TO public', 'set synchronous_commit = off', "SET DateStyle = 'SQL, DMY'", 'RESET ALL', 'DISCARD ALL', "SELECT set_config('search_path', 'public', false)", 'CREATE TEMP TABLE jobs (x int)']
            : ['PRAGMA synchronous = OFF', 'PRAGMA foreign_keys = OFF', 'PRAGMA query_only(1)', 'CREATE TEMP TABLE jobs (x int)'];
        const before = await fx.dump();
        await store.transaction(async (tx) => {
          for (const sql of sessionWide) {
            for (const p of [tx.run(sql), tx.exec(sql)]) {
              const details = await rejectsWith(p, 'INVALID_ARGUMENT');
              assert.match(String(details['message']), /^a tx cannot run (SET|RESET|DISCARD|PRAGMA|CREATE TEMP|set_config\(…, false\)): it changes the connection, which outlives the transaction, for every later call on it$/, sql);
            }
          }
          // What ends with the transaction is allowed.
          if (engine.name === 'postgres') await tx.exec("SET LOCAL statement_timeout = 60000; SET LOCAL app.owner = 'me'; CREATE TEMP TABLE mine (x int) ON COMMIT DROP");
          else await tx.get('PRAGMA synchronous');
        });
        assert.equal(await fx.dump(), before);
        // The connection is as botstate set it: its own schema, its times read.
        const job = await store.jobs.get({ id });
        assert.equal(job.id, id);
        assert.match(job.createdAt, /^\d{4}-\d\d-\d\dT/);
        if (engine.name === 'postgres') {
          const { setting } = (await store.transaction((tx) => tx.get<{ setting: string }>("SELECT current_setting('synchronous_commit') AS setting")))!;
          assert.equal(setting, durability === 'power' ? 'on' : 'off');
        }
      });

      it('refuses them however their names are quoted or qualified, and ATTACH and DETACH on SQLite; nothing changed, the connection as botstate set it', async () => {
        store = await open({ ...(engine.name === 'postgres' ? { poolSize: 1 } : {}) });
        const refused: Array<[string, string]> =
          engine.name === 'postgres'
            ? [
                [`SELECT "set_config"('search_path', 'public', false)`, 'set_config(…, false)'],
                [`SELECT pg_catalog."set_config"('search_path', 'public', false)`, 'set_config(…, false)'],
                [`SELECT "pg_catalog"."set_config"('synchronous_commit', 'off', false)`, 'set_config(…, false)'],
                [`SELECT U&"\\0073et_config"('search_path', 'public', false)`, 'set_config(…, false)'],
                [`SELECT "pg_advisory_lock"(1)`, 'pg_advisory_lock'],
                [`SELECT pg_catalog."pg_advisory_lock"(1)`, 'pg_advisory_lock'],
                [`CREATE TABLE "pg_temp".jobs (x int)`, 'CREATE TEMP'],
              ]
            : [
                ['CREATE TABLE "temp".jobs (x)', 'CREATE TEMP'],
                ['CREATE TABLE [temp].jobs (x)', 'CREATE TEMP'],
                ['CREATE TABLE `TEMP`.jobs (x)', 'CREATE TEMP'],
                ["CREATE TABLE 'temp'.jobs (x)", 'CREATE TEMP'],
                ['PRAGMA "main"."synchronous" = OFF', 'PRAGMA'],
                ["ATTACH DATABASE ':memory:' AS other", 'ATTACH'],
                ["attach ':memory:' as other", 'ATTACH'],
                ['DETACH DATABASE other', 'DETACH'],
              ];
        // What a statement let through would have changed on the store's (only) connection.
        const connection = () =>
          store.transaction((tx) =>
            engine.name === 'postgres'
              ? tx.get(
                  "SELECT current_setting('search_path') AS path, current_setting('synchronous_commit') AS commit, (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks, (SELECT count(*)::int FROM pg_class WHERE relnamespace = pg_my_temp_schema()) AS temp",
                )
              : tx.all("SELECT 'database' AS kind, name FROM pragma_database_list UNION ALL SELECT 'temp', name FROM temp.sqlite_master UNION ALL SELECT 'synchronous', synchronous FROM pragma_synchronous ORDER BY 1, 2"),
          );
        const was = await connection();
        const before = await fx.dump();
        await store.transaction(async (tx) => {
          for (const [sql, control] of refused) {
            for (const p of [tx.run(sql), tx.exec(sql)]) {
              const e = await p.then(() => undefined, (x: unknown) => x);
              assert.ok(isBotstateError(e, 'INVALID_ARGUMENT'), `${sql}: ${String(e)}`);
              assert.equal(e.message, `a tx cannot run ${control}: it changes the connection, which outlives the transaction, for every later call on it`, sql);
              assert.ok(e.hint !== undefined && e.hint.length > 0 && !e.hint.includes('\n'), sql);
              if (control === 'ATTACH' || control === 'DETACH') assert.match(e.hint, /connection of your own/, sql);
            }
          }
          // A quoted name PostgreSQL does not fold is another name: "SET_CONFIG" is no set_config (the
          // database says it has no such function), and a string that holds the words is text.
          if (engine.name === 'postgres') {
            const e = await tx.get(`SELECT "SET_CONFIG"('search_path', 'public', false) AS x`).then(() => undefined, (x: unknown) => x);
            assert.ok(isBotstateError(e, 'STORAGE_FAILED') && /\[42883\]$/.test(e.message), String(e));
            throw new Error('rolled back');
          }
          assert.deepEqual(await tx.get(`SELECT 'CREATE TABLE "temp".t (x); ATTACH x' AS s`), { s: 'CREATE TABLE "temp".t (x); ATTACH x' });
        }).catch((e: unknown) => {
          if (!(e instanceof Error && e.message === 'rolled back')) throw e;
        });
        if (engine.name === 'postgres') {
          assert.deepEqual(await store.transaction((tx) => tx.get(`SELECT '"set_config"(1, 2, false)' AS s`)), { s: '"set_config"(1, 2, false)' });
        }
        assert.equal(await fx.dump(), before);
        // The connection is as botstate set it: no database attached, no temporary table, no lock held.
        assert.deepEqual(await connection(), was);
        assert.equal((await store.jobs.get({ id })).id, id);
      });

      it('PostgreSQL: refuses changing, even for the transaction, a setting its own statements depend on; a function that changes the session cannot carry over', { skip: engine.name !== 'postgres' && 'PostgreSQL only' }, async () => {
        // One connection: every later transaction gets the same session back from the pool.
        store = await open({ poolSize: 1 });
        const { path } = (await store.transaction((tx) => tx.get<{ path: string }>("SELECT current_setting('search_path') AS path")))!;
        const before = await fx.dump();
        await store.transaction(async (tx) => {
          for (const [sql, control] of [
            ['SET LOCAL search_path TO public', 'SET LOCAL search_path'],
            ['SET LOCAL "Search_Path" TO public', 'SET LOCAL Search_Path'],
            ["SET LOCAL SCHEMA 'public'", 'SET LOCAL SCHEMA'],
            ["SET LOCAL DateStyle = 'SQL, DMY'", 'SET LOCAL DateStyle'],
            ['SET LOCAL synchronous_commit = off', 'SET LOCAL synchronous_commit'],
            ["SELECT set_config('search_path', 'public', true)", "set_config('search_path', …, true)"],
          ]) {
            const e = await tx.run(sql!).then(() => undefined, (x: unknown) => x);
            assert.ok(isBotstateError(e, 'INVALID_ARGUMENT'), `${sql}: ${String(e)}`);
            assert.match(e.message, new RegExp(`^a tx cannot run ${control!.replace(/[()…]/g, '.')}: botstate's own statements in the transaction depend on it`), sql);
            assert.match(e.hint ?? '', /name your own tables with their schema/, sql);
          }
          // The store's own call in the same transaction still finds its own job.
          assert.equal((await store.jobs.get({ id })).id, id);
          // A temporary table by SELECT INTO is refused however it is named.
          await rejectsWith(tx.run('SELECT * INTO pg_temp.jobs FROM jobs'), 'INVALID_ARGUMENT');
        });
        assert.equal(await fx.dump(), before);
        // What the tx cannot see: a function of the caller's that changes the session (its body is
        // a string) and makes a temporary table named as one of botstate's.
        await store.transaction(async (tx) => {
          await tx.exec(
            "CREATE FUNCTION sneak() RETURNS int LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('search_path', 'public', false); " +
              "PERFORM set_config('synchronous_commit', 'off', false); PERFORM set_config('DateStyle', 'SQL, DMY', false); " +
              'CREATE TEMP TABLE jobs (id text); RETURN 1; END $$',
          );
          await tx.get('SELECT sneak() AS x');
        });
        // Every transaction after it, on that same session, still runs as the store set it: its own
        // tables (the temporary one is searched after them), its times read, its commits durable
        // as its durability says.
        const now = (await store.transaction((tx) => tx.get<{ path: string; commit: string; style: string; temp: number }>(
          "SELECT current_setting('search_path') AS path, current_setting('synchronous_commit') AS commit, current_setting('DateStyle') AS style, (SELECT count(*)::int FROM pg_class WHERE relnamespace = pg_my_temp_schema() AND relname = 'jobs') AS temp",
        )))!;
        assert.deepEqual(now, { path, commit: durability === 'power' ? 'on' : 'off', style: 'ISO, MDY', temp: 1 });
        const job = await store.jobs.get({ id });
        assert.equal(job.id, id);
        assert.match(job.createdAt, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
        await store.jobs.pause({ id });
        assert.equal((await store.jobs.get({ id })).status, 'PAUSED');
        assert.deepEqual((await store.verifyAudit()).problems, []);
      });

      it('refuses its own statements with no transaction open, and nothing is written', async () => {
        const stale = await store.transaction(async (tx) => tx);
        const before = await fx.dump();
        for (const [name, use] of uses(stale, id)) await refusedAsEnded(use(), name);
        assert.equal(await fx.dump(), before);
        assert.equal((await store.jobs.get({ id })).tokenSymbol, 'LGI');
        assert.deepEqual((await store.verifyAudit()).problems, []);
      });

      it('refuses them while another transaction is open, which commits without them', async () => {
        // A pool of one connection: on PostgreSQL the next transaction gets the stale tx's client back.
        store = await open({ ...(engine.name === 'postgres' ? { poolSize: 1 } : {}) });
        const stale = await store.transaction(async (tx) => tx);
        const before = await fx.dump();
        const held = gate();
        const entered = gate();
        const other = store.transaction(async (tx) => {
          await tx.get('SELECT 1 AS one');
          entered.open();
          await held.wait;
        });
        await entered.wait;
        const attempts = uses(stale, id).map(([name, use]) => [name, use().then(() => 'ran', (e: unknown) => e)] as const);
        held.open();
        await other;
        for (const [name, outcome] of attempts) await refusedAsEnded(Promise.reject(await outcome), name);
        assert.equal(await fx.dump(), before, 'the open transaction committed nothing of the stale statements');
      });

      it('transactions started one after another take the connection in that order, also when the first gives the event loop a turn', { skip: engine.name !== 'sqlite' && 'PostgreSQL runs them at once, each on a connection of its own' }, async () => {
        // Idle past the 10 ms after which a transaction first yields a turn: the first one yields.
        await new Promise((resolve) => setTimeout(resolve, 20));
        const order: number[] = [];
        await Promise.all([1, 2, 3].map((n) => store.transaction(async () => void order.push(n))));
        assert.deepEqual(order, [1, 2, 3]);
      });

      it('refuses them inside a transaction run in the same batch (group commit), which commits without them', async () => {
        const before = await fx.dump();
        let saved: Executor | undefined;
        const first = gate();
        const outcomes: Array<readonly [string, unknown]> = [];
        // Queued together: with group commit the second runs right after the first, in one SQLite
        // transaction. (Elsewhere they may run at once: the second waits for the first's body to end.)
        await Promise.all([
          store.transaction(async (tx) => {
            saved = tx;
            first.open();
          }),
          store.transaction(async () => {
            await first.wait;
            await new Promise((resolve) => setImmediate(resolve));
            for (const [name, use] of uses(saved!, id)) outcomes.push([name, await use().then(() => 'ran', (e: unknown) => e)]);
          }),
        ]);
        assert.equal(outcomes.length, 4);
        for (const [name, outcome] of outcomes) await refusedAsEnded(Promise.reject(outcome), name);
        assert.equal(await fx.dump(), before);
      });

      it('an atomic transaction commits as one; a call in it that fails fails it whole, even caught (no savepoint undoes that call alone)', async () => {
        const dca = async () => (await store.jobs.get({ id })).config.accumulate.dcaAmount;
        await store.transaction(async () => {
          await store.jobs.configure({ id }, { set: ['accumulate.dcaAmount=12'] });
          await store.jobs.pause({ id });
        }, { atomic: true });
        assert.deepEqual([(await store.jobs.get({ id })).status, await dca()], ['PAUSED', '12']);
        // The same body, not atomic: the refused pause (the job is PAUSED) is caught and the rest commits.
        const body = (amount: string) => async () => {
          await store.jobs.configure({ id }, { set: [`accumulate.dcaAmount=${amount}`] });
          return store.jobs.pause({ id }).then(() => 'paused', (e: unknown) => (isBotstateError(e) ? e.code : e));
        };
        assert.equal(await store.transaction(body('13')), 'INVALID_TRANSITION');
        assert.equal(await dca(), '13');
        // Atomic: the caught refusal fails the transaction, with the call's own error; nothing is written.
        const before = await fx.dump();
        await rejectsWith(store.transaction(body('14'), { atomic: true }), 'INVALID_TRANSITION');
        // A nested transaction that throws, caught: the same.
        const nested = store.transaction(async () => {
          await store.jobs.configure({ id }, { set: ['accumulate.dcaAmount=15'] });
          await store.transaction(async () => store.jobs.resume({ id }).then(() => store.jobs.resume({ id }))).catch(() => undefined);
        }, { atomic: true });
        await rejectsWith(nested, 'INVALID_TRANSITION');
        assert.equal(await fx.dump(), before);
        // A caught failed read fails it too, on both engines alike.
        await rejectsWith(store.transaction(async () => {
          await store.jobs.configure({ id }, { set: ['accumulate.dcaAmount=16'] });
          await store.jobs.get({ id: '00000000-0000-7000-8000-000000000000' }).catch(() => undefined);
        }, { atomic: true }), 'JOB_NOT_FOUND');
        // A call the database refuses (a rule of the operator's), caught, then another call: the
        // first failure is the outcome (on PostgreSQL the second only says the transaction was aborted).
        await fx.raw(engine.name === 'postgres'
          ? "ALTER TABLE jobs ADD CONSTRAINT no_resume CHECK (status <> 'RUNNING') NOT VALID"
          : "CREATE TRIGGER no_resume BEFORE UPDATE ON jobs WHEN NEW.status = 'RUNNING' BEGIN SELECT RAISE(ABORT, 'no resume'); END");
        await rejectsWith(store.transaction(async () => {
          await store.jobs.resume({ id }).catch(() => undefined);
          await store.jobs.get({ id });
        }, { atomic: true }), 'CONSTRAINT_VIOLATION');
        await fx.raw(engine.name === 'postgres' ? 'ALTER TABLE jobs DROP CONSTRAINT no_resume' : 'DROP TRIGGER no_resume');
        assert.equal(await fx.dump(), before);
        // The options: checked, and given to the outermost transaction only; a refused one runs nothing.
        let ran = 0;
        const count = async () => void ran++;
        for (const options of [{ atomic: 'yes' }, { atomc: true }, null, 'atomic']) {
          await rejectsWith(store.transaction(count, options as never), 'INVALID_ARGUMENT');
        }
        await rejectsWith(store.transaction(() => store.transaction(count, { atomic: true })), 'INVALID_ARGUMENT');
        await rejectsWith(store.transaction(() => store.transaction(count, { atomic: false }), { atomic: true }), 'INVALID_ARGUMENT');
        assert.equal(ran, 0);
        await store.transaction(() => store.transaction(count), { atomic: true });
        assert.equal(ran, 1);
        assert.equal(await fx.dump(), before);
        assert.deepEqual((await store.verifyAudit()).problems, []);
      });

      it("a nested transaction hands out a tx of its own, refused once it has ended while the outer one goes on", async () => {
        const before = await fx.dump();
        const outcomes: Array<readonly [string, unknown]> = [];
        await store.transaction(async (outer) => {
          const inner = await store.transaction(async (tx) => {
            assert.notEqual(tx, outer);
            // Inside the nested transaction both work, and a store call given the outer tx takes its turn there.
            assert.equal((await tx.all('SELECT id FROM jobs')).length, 1);
            assert.equal((await outer.all('SELECT id FROM jobs')).length, 1);
            await store.jobs.configure({ id }, { set: ['accumulate.dcaAmount=12'] }, { tx: outer });
            await store.jobs.configure({ id }, { set: ['accumulate.dcaAmount=11'] }, { tx });
            return tx;
          });
          const written = await fx.dump();
          for (const [name, use] of uses(inner, id)) outcomes.push([name, await use().then(() => 'ran', (e: unknown) => e)]);
          outcomes.push(['a store call', await store.jobs.pause({ id }, { tx: inner }).then(() => 'ran', (e: unknown) => e)]);
          // Seen from outside, nothing is committed yet; the outer transaction's own tx still works in it.
          assert.equal(await fx.dump(), written);
          assert.deepEqual(await outer.get('SELECT token_symbol, status FROM jobs WHERE id = ?', [id]), { token_symbol: 'LGI', status: 'RUNNING' });
          await store.jobs.configure({ id }, { set: ['accumulate.dcaAmount=13'] }, { tx: outer });
        });
        for (const [name, outcome] of outcomes) await refusedAsEnded(Promise.reject(outcome), name);
        const job = await store.jobs.get({ id });
        assert.deepEqual([job.status, job.tokenSymbol, job.config.accumulate.dcaAmount], ['RUNNING', 'LGI', '13']);
        assert.equal((await store.history({ id })).length, 4, 'start, then the three configures; no pause');
        assert.deepEqual((await store.verifyAudit()).problems, []);
        assert.notEqual(await fx.dump(), before);
      });

      it("a nested transaction's tx kept past it, by a callback that fires later, is refused and its statement undone with nothing", async () => {
        const before = await fx.dump();
        let later: Promise<unknown> | undefined;
        await store.transaction(async () => {
          await assert.rejects(
            store.transaction(async (tx) => {
              later = new Promise((resolve) => setTimeout(resolve, 10)).then(() => tx.run(`UPDATE jobs SET token_symbol = 'HACK' WHERE id = ?`, [id]));
              // Its refusal may come before the rollback below is done (a busy PostgreSQL): handled
              // from now on, so that it is not an unhandled rejection; it is checked below.
              later.catch(() => {});
              throw new Error('inner');
            }),
            /inner/,
          );
          await refusedAsEnded(later!, 'the late run');
        });
        assert.equal(await fx.dump(), before);
      });

      it('a store call from a callback set up in a nested transaction, firing after it ended while the outer one runs, is refused: not run outside the outer one', async () => {
        const before = await fx.dump();
        let later: Promise<unknown> | undefined;
        await assert.rejects(
          store.transaction(async () => {
            await store.jobs.configure({ id }, { set: ['accumulate.dcaAmount=11'] });
            await store.transaction(async () => {
              later = new Promise((resolve) => setTimeout(resolve, 10)).then(() => store.jobs.pause({ id }));
              later.catch(() => {}); // checked below; handled at once so that an early refusal is not unhandled
            });
            // Awaited inside the outer transaction: refused at once (it used to hang, waiting for the outer one).
            const refusal = await rejectsWith(later!, 'INVALID_ARGUMENT');
            assert.match(String(refusal['message']), /nested store\.transaction that has ended/);
            throw new Error('outer rolls back');
          }),
          /outer rolls back/,
        );
        assert.equal(await fx.dump(), before, 'neither the configure nor the pause is left');
      });

      it('a store call made outside any transaction and awaited inside one does not hang: SQLite refuses it after the busy timeout, PostgreSQL runs it on another connection', async () => {
        const quick = await open({ busyTimeoutMs: 300 });
        const before = await fx.dump();
        let outside: Promise<unknown> | undefined;
        // Started from a timer set up outside the transaction: not in its context, so not joined to it.
        const started = new Promise<void>((resolve) =>
          setTimeout(() => {
            outside = quick.jobs.configure({ id }, { set: ['accumulate.dcaAmount=31'] });
            resolve();
          }, 5),
        );
        const t0 = performance.now();
        const run = quick.transaction(async () => {
          await quick.jobs.get({ id });
          await started;
          await outside;
          throw new Error('the body ends here');
        });
        if (engine.name === 'sqlite') {
          // It waits for this very transaction, on SQLite's one connection: it used to wait for ever.
          const refusal = await rejectsWith(run, 'STORAGE_BUSY');
          assert.match(String(refusal['message']), /waited 300 ms for another transaction of this process to end/);
          assert.ok(performance.now() - t0 >= 300);
          await rejectsWith(outside!, 'STORAGE_BUSY');
          assert.equal(await fx.dump(), before, 'neither the transaction nor the call changed anything');
        } else {
          await assert.rejects(run, /the body ends here/);
          assert.equal((await quick.jobs.get({ id })).config.accumulate.dcaAmount, '31');
        }
        // The store goes on working.
        await quick.jobs.pause({ id });
        assert.equal((await quick.jobs.get({ id })).status, 'PAUSED');
      });

      it('close() and backup() called inside store.transaction are refused at once (each waits for the transaction: it used to hang); the transaction and the store go on', { timeout: 20_000 }, async () => {
        const target = `${fx.url}.inside-backup`;
        await store.transaction(async () => {
          await store.jobs.pause({ id });
          await assert.rejects(store.close(), (e: { code?: string; message?: string; hint?: string }) =>
            e.code === 'INVALID_ARGUMENT' && /^close\(\) cannot be called inside store\.transaction/.test(e.message ?? '') && /after store\.transaction has returned/.test(e.hint ?? ''));
          await store.transaction(async () => {
            // Nested too.
            await rejectsWith(store.close(), 'INVALID_ARGUMENT');
          });
          if (engine.name === 'sqlite') {
            const backup = await rejectsWith(store.backup(target), 'INVALID_ARGUMENT');
            assert.match(String(backup['message']), /^backup\(\) cannot be called inside store\.transaction/);
          }
        });
        assert.equal(store.closed, false);
        assert.equal((await store.jobs.get({ id })).status, 'PAUSED');
        if (engine.name === 'sqlite') {
          assert.equal(existsSync(target), false, 'the refused backup wrote nothing');
          await store.backup(target);
          assert.equal(existsSync(target), true);
        }
        await store.close();
        assert.equal(store.closed, true);
      });

      it('a store is closed from the moment close() is called, while it waits for the transaction in flight', async () => {
        const gate = Promise.withResolvers<void>();
        const inFlight = store.transaction(async (tx) => {
          await tx.get('SELECT 1 AS one');
          await gate.promise;
        });
        await sleep(20);
        const closing = store.close();
        try {
          // Calls are refused from here on: a daemon that sees one refused must see the store closed
          // too (it said "tick failed: the store … is closed" before saying it was closed under it).
          assert.equal(store.closed, true);
          await rejectsWith(store.jobs.list(), 'STORAGE_UNAVAILABLE');
        } finally {
          gate.resolve();
        }
        await inFlight;
        await closing;
        assert.equal(store.closed, true);
      });
    });
  }
}
