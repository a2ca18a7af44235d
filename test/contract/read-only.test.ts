/**
 * A store opened with `readOnly: true`, on both engines: it never creates a database or a schema,
 * never migrates (an outdated schema is SCHEMA_OUTDATED, to be migrated with `botstate db
 * migrate`), refuses every write with one error (INVALID_ARGUMENT, "opened read-only"), the
 * store's calls and SQL in a store.transaction alike, and reads as usual. The database is
 * compared before and after.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { isBotstateError } from '../../src/errors.ts';
import { LATEST_VERSION } from '../../src/store/migrations/index.ts';
import { openStore, type Store, type StoreOptions } from '../../src/store/store.ts';
import { rejectsWith } from '../helpers/assert.ts';
import { ENGINES, TOKEN, tokenAddress, type Fixture } from '../helpers/engines.ts';

const READ_ONLY = /opened read-only \(readOnly: true\): it refuses every write/;

/** `p` is refused as a write on a read-only store, saying so. */
async function refusedAsReadOnly(p: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(isBotstateError(e), `${what}: ${String(e)}`);
    assert.equal(e.code, 'INVALID_ARGUMENT', `${what}: ${e.code} ${e.message}`);
    assert.match(e.message, READ_ONLY, what);
    assert.match(e.hint ?? '', /without readOnly/, what);
    return true;
  });
}

for (const engine of ENGINES) {
  describe(`readOnly stores [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    beforeEach(async () => {
      fx = await engine.create();
    });
    afterEach(() => fx.cleanup());

    /** Where the fixture's database is: the SQLite file's folder, or the PostgreSQL schema's name. */
    const schemaName = (): string => new URL(fx.url).searchParams.get('schema')!;
    const nothingThere = async (): Promise<void> => {
      if (fx.engine === 'sqlite') assert.deepEqual(readdirSync(dirname(fx.url)), [], 'a file was created');
      else assert.deepEqual(await fx.raw('SELECT nspname FROM pg_namespace WHERE nspname = $1', [schemaName()]), [], 'the schema was created');
    };

    /** A database with two jobs, an executed trade, an open intent and their audit entries; the writer is closed. */
    async function seeded(): Promise<{ id: string; at: string }> {
      const writer = await openStore(fx.url);
      try {
        const job = await writer.jobs.start({ tokenAddress: TOKEN });
        await writer.ledger.recordTrade({ job: { id: job.id }, clientOrderId: 'ro-1', side: 'BUY', reason: 'DCA', baseAmount: '1234.5', quoteAmount: '25', priceUsd: '0.02025' });
        const at = new Date().toISOString();
        await new Promise((resolve) => setTimeout(resolve, 5));
        await writer.ledger.recordIntent({ job: { id: job.id }, clientOrderId: 'ro-2', side: 'BUY', reason: 'DCA', quoteAmount: '10' });
        await writer.jobs.pause({ id: job.id });
        await writer.jobs.start({ tokenAddress: tokenAddress(2) });
        return { id: job.id, at };
      } finally {
        await writer.close();
      }
    }

    it('reads, history, jobAt, verifyAudit and schemaStatus work, and every write is refused with one error, the database unchanged', async () => {
      const { id, at } = await seeded();
      const before = await fx.dump();
      // SQLite: the file itself, not a byte of it written (the writer's close checkpointed it).
      const bytes = fx.engine === 'sqlite' ? readFileSync(fx.url) : undefined;
      const store = await fx.open({ readOnly: true });
      const ref = { id };

      // Reads.
      assert.equal((await store.jobs.get(ref)).status, 'PAUSED');
      assert.equal((await store.jobs.list()).length, 2);
      assert.deepEqual((await store.jobs.scan()).damaged, []);
      assert.deepEqual((await store.ledger.trades(ref)).map((t) => t.clientOrderId), ['ro-1', 'ro-2']);
      assert.deepEqual((await store.ledger.pending()).map((t) => t.clientOrderId), ['ro-2']);
      assert.equal((await store.ledger.get('ro-1')).status, 'EXECUTED');
      const history = await store.history(ref);
      assert.ok(history.length >= 4, `${history.length} entries`);
      let paged = 0;
      for await (const page of store.historyPages(ref)) paged += page.length;
      assert.equal(paged, history.length);
      const then = await store.jobAt(ref, at);
      assert.equal(then.status, 'RUNNING');
      assert.equal(then.tokenBalance, '1234.5');
      assert.deepEqual((await store.verifyAudit()).problems, []);
      assert.equal((await store.schemaStatus()).current, LATEST_VERSION);
      // A store.transaction that only reads, and store calls joined to it.
      assert.equal(await store.transaction(async (tx) => {
        const row = await tx.get<{ n: number | string }>('SELECT count(*) AS n FROM jobs');
        assert.equal((await store.jobs.get(ref)).status, 'PAUSED');
        return Number(row!.n);
      }), 2);

      // Every write the API has, refused before it reads anything (an unknown job is not JOB_NOT_FOUND).
      const writes: Array<[string, () => Promise<unknown>]> = [
        ['jobs.start (new)', () => store.jobs.start({ tokenAddress: tokenAddress(3) })],
        ['jobs.start (existing)', () => store.jobs.start({ tokenAddress: TOKEN })],
        ['jobs.resume', () => store.jobs.resume(ref)],
        ['jobs.pause (unknown job)', () => store.jobs.pause({ id: 'no-such-job' })],
        ['jobs.liquidate', () => store.jobs.liquidate(ref)],
        ['jobs.completeLiquidation', () => store.jobs.completeLiquidation(ref)],
        ['jobs.fail', () => store.jobs.fail(ref, 'broken')],
        ['jobs.configure', () => store.jobs.configure(ref, { set: ['accumulate.dcaAmount=5'] })],
        ['jobs.updateState', () => store.jobs.updateState(ref, { recentHigh: '1' })],
        ['jobs.saveScratch', () => store.jobs.saveScratch(ref, { n: 1 })],
        ['ledger.recordTrade', () => store.ledger.recordTrade({ job: ref, clientOrderId: 'ro-3', side: 'BUY', reason: 'DCA', baseAmount: '1', quoteAmount: '1', priceUsd: '1' })],
        ['ledger.recordIntent', () => store.ledger.recordIntent({ job: ref, clientOrderId: 'ro-4', side: 'BUY', reason: 'DCA', quoteAmount: '1' })],
        ['ledger.settle', () => store.ledger.settle('ro-2', { status: 'FAILED', error: 'rejected' })],
        ['migrate', () => store.migrate()],
        ['rollback', () => store.rollback({ to: LATEST_VERSION - 1 })],
        // SQL of the caller's: the connection itself refuses it.
        ['an INSERT in store.transaction', () => store.transaction((tx) => tx.run("INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (99, 'x', 'x', '2026-01-01T00:00:00.000Z')"))],
        ['an UPDATE in store.transaction', () => store.transaction((tx) => tx.run("UPDATE jobs SET token_symbol = 'X'"))],
        ['a DELETE in store.transaction', () => store.transaction((tx) => tx.run('DELETE FROM schema_migrations WHERE version = 99'))],
        ['a CREATE TABLE in store.transaction', () => store.transaction((tx) => tx.exec('CREATE TABLE mine (x INTEGER)'))],
        ['a write after a read in store.transaction', () => store.transaction(async (tx) => {
          await tx.get('SELECT 1 AS one');
          return tx.run('DELETE FROM trades');
        })],
        ['a store call joined to store.transaction', () => store.transaction(() => store.jobs.resume(ref))],
      ];
      if (fx.engine === 'postgres') {
        // Made read-write by its first statement, the transaction would take writes: it cannot be.
        writes.push(
          ['SET TRANSACTION READ WRITE', () => store.transaction(async (tx) => {
            await tx.exec('SET TRANSACTION READ WRITE');
            return tx.run('DELETE FROM trades');
          })],
          ["set_config('transaction_read_only', 'off', true)", () => store.transaction(async (tx) => {
            await tx.get("SELECT set_config('transaction_read_only', 'off', true) AS v");
            return tx.run('DELETE FROM trades');
          })],
        );
      }
      for (const [what, write] of writes) await refusedAsReadOnly(write(), what);
      // The store is still usable for reads after its refusals.
      assert.equal((await store.jobs.list()).length, 2);
      await store.close();

      assert.equal(await fx.dump(), before);
      if (bytes !== undefined) assert.ok(readFileSync(fx.url).equals(bytes), 'the SQLite file was written');
    });

    it('an outdated schema is refused (SCHEMA_OUTDATED, saying to run botstate db migrate), not migrated', async () => {
      await seeded();
      const writer = await openStore(fx.url, { schema: 'none' });
      await writer.rollback({ to: LATEST_VERSION - 1 });
      await writer.close();
      const before = await fx.dump();
      for (const options of [{ readOnly: true }, { readOnly: true, schema: 'check' }, { readOnly: true, create: false }] satisfies StoreOptions[]) {
        await assert.rejects(openStore(fx.url, options), (e: unknown) => {
          assert.ok(isBotstateError(e, 'SCHEMA_OUTDATED'), String(e));
          assert.equal(e.category, 'schema');
          assert.match(e.message, new RegExp(`version ${LATEST_VERSION - 1}; this botstate needs version ${LATEST_VERSION}`));
          assert.match(e.hint ?? '', /botstate db migrate/);
          return true;
        });
      }
      assert.equal(await fx.dump(), before);
      // schema: 'none' (db status) opens it as it is, and reads its status.
      const status = await fx.open({ readOnly: true, schema: 'none' });
      assert.equal((await status.schemaStatus()).current, LATEST_VERSION - 1);
      await refusedAsReadOnly(status.migrate(), 'migrate');
      await status.close();
      assert.equal(await fx.dump(), before);
    });

    it('where there is no database, nothing is created: DATABASE_NOT_FOUND', async () => {
      for (const options of [{ readOnly: true }, { readOnly: true, schema: 'check' }, { readOnly: true, durability: 'power' }] satisfies StoreOptions[]) {
        await rejectsWith(openStore(fx.url, options), 'DATABASE_NOT_FOUND');
        await nothingThere();
      }
      if (fx.engine === 'sqlite') {
        await rejectsWith(openStore(fx.url, { readOnly: true, schema: 'none' }), 'DATABASE_NOT_FOUND');
      } else {
        // db status: a schema with no botstate tables lists every migration as pending.
        const status = await openStore(fx.url, { readOnly: true, schema: 'none' });
        try {
          assert.equal((await status.schemaStatus()).current, 0);
          await refusedAsReadOnly(status.migrate(), 'migrate');
        } finally {
          await status.close();
        }
      }
      await nothingThere();
      if (fx.engine === 'postgres') {
        // An empty schema (made by somebody else): no table is created in it.
        await fx.raw(`CREATE SCHEMA "${schemaName()}"`);
        await rejectsWith(openStore(fx.url, { readOnly: true }), 'DATABASE_NOT_FOUND');
        assert.deepEqual(await fx.raw('SELECT table_name FROM information_schema.tables WHERE table_schema = $1', [schemaName()]), []);
      }
    });

    it('options that would create or migrate are refused with readOnly, before anything is opened', async () => {
      const cases: Array<[StoreOptions, RegExp]> = [
        [{ readOnly: true, schema: 'migrate' }, /schema 'migrate' cannot go with readOnly/],
        [{ readOnly: true, schema: 'create' }, /schema 'create' cannot go with readOnly/],
        [{ readOnly: true, create: true }, /create cannot be true with readOnly/],
      ];
      for (const [options, message] of cases) {
        const details = await rejectsWith(openStore(fx.url, options), 'INVALID_ARGUMENT');
        assert.match(String(details['message']), message);
        await nothingThere();
      }
    });

    it('reads what another store writes meanwhile (a report beside a running daemon)', async () => {
      const { id } = await seeded();
      const writer = await fx.open();
      const reader = await fx.open({ readOnly: true });
      assert.equal((await reader.jobs.get({ id })).status, 'PAUSED');
      await writer.jobs.resume({ id });
      assert.equal((await reader.jobs.get({ id })).status, 'RUNNING');
      await writer.ledger.settle('ro-2', { status: 'FAILED', error: 'rejected' });
      assert.deepEqual(await reader.ledger.pending(), []);
      assert.deepEqual((await reader.verifyAudit()).problems, []);
      await refusedAsReadOnly(reader.jobs.pause({ id }), 'pause');
      assert.equal((await writer.jobs.pause({ id })).status, 'PAUSED');
    });
  });
}

describe('readOnly SQLite, its own cases', () => {
  let store: Store | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });
  it('is no database (nothing to read): DATABASE_NOT_FOUND; with schema none, writes are refused', async () => {
    await rejectsWith(openStore(':memory:', { readOnly: true }), 'DATABASE_NOT_FOUND');
    store = await openStore(':memory:', { readOnly: true, schema: 'none' });
    await refusedAsReadOnly(store.transaction((tx) => tx.exec('CREATE TABLE t (x INTEGER)')), 'CREATE TABLE');
    assert.equal(existsSync(':memory:'), false);
  });

  it('a file a writer left part-way (a hot rollback journal) is refused, saying why, and left as it is', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'botstate-ro-'));
    try {
      const path = join(dir, 'crashed.db');
      // A change in flight, its journal copied with the file: what a crash part-way leaves.
      const writer = new Database(join(dir, 'live.db'));
      writer.exec('CREATE TABLE t (x BLOB); INSERT INTO t VALUES (1)');
      writer.pragma('cache_size = 1');
      writer.exec("BEGIN; INSERT INTO t SELECT randomblob(5000) FROM (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 200) SELECT i FROM c)");
      copyFileSync(join(dir, 'live.db'), path);
      copyFileSync(join(dir, 'live.db-journal'), `${path}-journal`);
      writer.exec('ROLLBACK');
      writer.close();
      const bytes = [readFileSync(path), readFileSync(`${path}-journal`)];
      await assert.rejects(openStore(path, { readOnly: true }), (e: unknown) => {
        assert.ok(isBotstateError(e, 'STORAGE_UNAVAILABLE'), String(e));
        assert.match(e.message, /cannot read \S+crashed\.db without writing it: .*crashed\.db-journal must be rolled back first/);
        assert.deepEqual([readFileSync(path), readFileSync(`${path}-journal`)], bytes);
        return true;
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
