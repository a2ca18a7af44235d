/**
 * store.backup(path) from the library: a copy the store reads back, refusals that leave the store
 * usable (its lock released), and PostgreSQL refused with pg_dump as the way.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon } from '../../src/engine/daemon.ts';
import { openStore, type Store } from '../../src/store/store.ts';
import { rejectsWith } from '../helpers/assert.ts';
import { ENGINES, TOKEN } from '../helpers/engines.ts';

describe('store.backup', () => {
  let dir: string;
  let store: Store;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'botstate-backup-'));
    store = await openStore(join(dir, 'live.db'));
    await store.jobs.start({ tokenAddress: TOKEN });
  });
  after(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes a copy with the same jobs; refusals leave the store usable', async () => {
    const to = join(dir, 'copy.db');
    await store.backup(to);
    assert.equal(statSync(to).mode & 0o777, 0o600);
    const copy = await openStore(to, { create: false });
    try {
      assert.deepEqual((await copy.jobs.list()).map((j) => j.tokenAddress), [TOKEN]);
    } finally {
      await copy.close();
    }
    await rejectsWith(store.backup(to), 'INVALID_ARGUMENT'); // it exists
    await rejectsWith(store.backup(join(dir, 'no-such-dir', 'x.db')), 'STORAGE_UNAVAILABLE');
    const taken = join(dir, 'taken.db');
    writeFileSync(taken, 'not mine');
    await rejectsWith(store.backup(taken), 'INVALID_ARGUMENT');
    // The store's lock was released each time: it still answers at once.
    assert.equal((await store.jobs.list()).length, 1);
  });

  it('an in-memory store is backed up to a file of mode 0600 like any other', async () => {
    const memory = await openStore(':memory:');
    const to = join(dir, 'from-memory.db');
    try {
      await memory.jobs.start({ tokenAddress: TOKEN });
      await memory.backup(to);
    } finally {
      await memory.close();
    }
    assert.equal(statSync(to).mode & 0o777, 0o600);
    const copy = await openStore(to, { create: false });
    try {
      assert.deepEqual((await copy.jobs.list()).map((j) => j.tokenAddress), [TOKEN]);
      assert.deepEqual((await copy.verifyAudit()).problems, []);
    } finally {
      await copy.close();
    }
  });

  it("refuses the database's own name and the files beside it (SQLite or botstate would delete a backup there), and a folder", async () => {
    const live = join(dir, 'live.db');
    for (const [to, pattern] of [
      [live, /exists already/],
      [join(dir, '.', 'live.db-journal'), /is the database's -journal file/],
      [`${live}-wait`, /is the database's -wait file/],
      [`${live}-shm`, /./],
      [dir, /is a folder/],
      [`${join(dir, 'new')}/`, /is a folder/],
    ] as const) {
      const refusal = await rejectsWith(store.backup(to), 'INVALID_ARGUMENT');
      assert.match(String(refusal['message']), pattern, to);
    }
    assert.ok(!existsSync(`${live}-journal`) && !existsSync(`${live}-wait`) && !existsSync(join(dir, 'new')));
    // Opened through a symbolic link, the database's files are beside the real one.
    const elsewhere = mkdtempSync(join(dir, 'link-'));
    symlinkSync(live, join(elsewhere, 'link.db'));
    const linked = await openStore(join(elsewhere, 'link.db'), { create: false });
    try {
      await rejectsWith(linked.backup(`${live}-journal`), 'INVALID_ARGUMENT');
      await rejectsWith(linked.backup(join(elsewhere, 'link.db-wait')), 'INVALID_ARGUMENT');
    } finally {
      await linked.close();
    }
  });

  it("refuses a name beside another database (its -wal), or with an earlier database's -wal or -journal still beside it", async () => {
    const other = join(dir, 'other.db');
    const made = new Database(other);
    made.exec('CREATE TABLE t (x)');
    made.close();
    const refused = await rejectsWith(store.backup(`${other}-wal`), 'INVALID_ARGUMENT');
    assert.match(String(refused['message']), /is the -wal file of the database \S+other\.db, which SQLite or botstate would delete/);
    assert.equal(existsSync(`${other}-wal`), false);
    for (const suffix of ['-wal', '-journal']) {
      const to = join(dir, `stale${suffix}.db`);
      writeFileSync(`${to}${suffix}`, 'left by an earlier database');
      const refusal = await rejectsWith(store.backup(to), 'INVALID_ARGUMENT');
      assert.match(String(refusal['message']), new RegExp(`stale${suffix}\\.db${suffix} is there, left by an earlier database of that name: SQLite would apply it to the backup$`));
      assert.equal(existsSync(to), false, 'no backup was written');
    }
    // The store is usable after the refusals.
    assert.equal((await store.jobs.list()).length, 1);
  });

  it('the copy has no daemon running on it: the registrations are stopped and the leases handed back at a new epoch', async () => {
    const path = join(dir, 'daemon.db');
    const s = await openStore(path);
    const job = await s.jobs.start({ tokenAddress: TOKEN, set: ['accumulate.dcaIntervalHours=1000'] });
    const exchange = { placeOrder: () => new Promise<never>(() => {}), getOrder: async () => null, getPrice: async () => '1', getBalances: async () => ({}) };
    const daemon = new Daemon({ store: s, exchange, tickMs: 20, log: () => {} });
    try {
      await daemon.start();
      const to = join(dir, 'daemon-copy.db');
      await s.backup(to);
      const raw = new Database(to, { readonly: true });
      try {
        assert.deepEqual(raw.prepare('SELECT count(*) AS n FROM daemon_instances WHERE stopped_at IS NULL').get(), { n: 0 });
        const leases = raw.prepare('SELECT owner, epoch FROM job_leases WHERE job_id = ?').all(job.id) as Array<{ owner: string; epoch: number }>;
        assert.equal(leases.length, 1);
        assert.equal(leases[0]!.owner, '');
        assert.ok(leases[0]!.epoch >= 2, 'a new epoch: a fence of the daemon that held it no longer holds');
      } finally {
        raw.close();
      }
      // The live database still has its daemon.
      const live = new Database(path, { readonly: true });
      try {
        assert.deepEqual(live.prepare('SELECT count(*) AS n FROM daemon_instances WHERE stopped_at IS NULL').get(), { n: 1 });
      } finally {
        live.close();
      }
      // Nothing on the copy is refused for a daemon that runs elsewhere.
      const copy = await openStore(to, { create: false });
      try {
        await copy.rollback({ to: 0, force: true }).catch((e: unknown) => assert.fail(`rollback of the copy refused: ${(e as Error).message}`));
      } finally {
        await copy.close();
      }
    } finally {
      await daemon.stop();
      await s.close();
    }
  });

  it('PostgreSQL is backed up with pg_dump', { skip: ENGINES.find((e) => e.name === 'postgres')?.skip }, async () => {
    const pg = ENGINES.find((e) => e.name === 'postgres')!;
    const fx = await pg.create();
    try {
      const s = await fx.open();
      try {
        const refusal = await rejectsWith(s.backup(join(dir, 'pg.db')), 'INVALID_ARGUMENT');
        assert.match(String(refusal['message']), /^botstate backs up SQLite files; postgres:\/\/\S+ \(schema \w+\) is PostgreSQL$/);
      } finally {
        await s.close();
      }
    } finally {
      await fx.cleanup();
    }
  });
});
