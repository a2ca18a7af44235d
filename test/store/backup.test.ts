/**
 * store.backup(path) from the library: a copy the store reads back, refusals that leave the store
 * usable (its lock released), and PostgreSQL refused with pg_dump as the way.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
