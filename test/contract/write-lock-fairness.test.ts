/**
 * SQLite has one write lock per file. A process that never pauses writing (a busy daemon) takes
 * it again microseconds after each COMMIT; another process's write (a CLI command) must still get
 * in, not wait out its busy timeout. Real processes, a real file.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { openStore } from '../../src/store/store.ts';
import { helperScript } from '../helpers/child.ts';
import { TOKEN } from '../helpers/engines.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'botstate-fair-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('the SQLite write lock is shared fairly between processes', () => {
  for (const durability of ['power', 'process'] as const) {
    it(`another process's writes get in while a writer never pauses (${durability} mode), within a 250 ms busy timeout`, { timeout: 60_000 }, async () => {
      const path = join(dir, 'fair.db');
      const store = await openStore(path, { busyTimeoutMs: 250 });
      try {
        const job = await store.jobs.start({ tokenAddress: TOKEN });
        const child = spawn(process.execPath, [helperScript('sustained-writer.ts'), path, '4', durability], { stdio: ['ignore', 'pipe', 'inherit'] });
        const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
        const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
        try {
          assert.equal((await lines.next()).value, 'ready');
          // Each of these is a write transaction of its own (BEGIN IMMEDIATE), as a CLI command's is.
          for (let i = 0; i < 25; i++) {
            assert.equal((await store.jobs.pause({ id: job.id })).status, 'PAUSED');
            assert.equal((await store.jobs.resume({ id: job.id })).status, 'RUNNING');
          }
        } finally {
          const trades = Number((await lines.next()).value);
          assert.equal(await exited, 0);
          assert.ok(trades > 0, 'the busy writer made no trade');
        }
      } finally {
        await store.close();
      }
      // Each waiter (this process, and the busy one when this one held the lock) removed its -wait file.
      assert.equal(existsSync(`${path}-wait`), false, 'a -wait file was left behind');
    });
  }
});

describe('a writer that never pauses leaves room for its own process and for others', () => {
  it("callers writing back to back (process mode) still give the event loop a turn: this process's timers run meanwhile", { timeout: 30_000 }, async () => {
    const store = await openStore(join(dir, 'turns.db'));
    try {
      const ids: string[] = [];
      for (let i = 1; i <= 4; i++) ids.push((await store.jobs.start({ tokenAddress: `0x${(0xb000 + i).toString(16).padStart(40, '0')}` })).id);
      let ticks = 0;
      const timer = setInterval(() => ticks++, 5);
      const end = performance.now() + 500;
      let writes = 0;
      await Promise.all(
        ids.map(async (id) => {
          // Each call answers at once (better-sqlite3, a free connection): on microtasks alone, the
          // timer above never ran before the loops ended (0 ticks; a BUSY retry's sleep neither).
          while (performance.now() < end) {
            await store.jobs.updateState({ id }, { recentHigh: String(++writes) });
          }
        }),
      );
      clearInterval(timer);
      assert.ok(writes > 100, `${writes} writes`);
      assert.ok(ticks >= 5, `the timer ran ${ticks} times in 500 ms of back-to-back writes`);
    } finally {
      await store.close();
    }
  });

  it('the -wait file is put beside the database file itself, where a process naming it through a symbolic link looks too', { timeout: 30_000 }, async () => {
    mkdirSync(join(dir, 'real'));
    mkdirSync(join(dir, 'link'));
    const real = join(dir, 'real', 'f.db');
    const linked = join(dir, 'link', 'f.db');
    const store = await openStore(real);
    const job = await store.jobs.start({ tokenAddress: TOKEN });
    await store.close();
    symlinkSync(real, linked);
    const viaLink = await openStore(linked, { busyTimeoutMs: 5000 });
    const holder = new Database(real);
    holder.exec('BEGIN IMMEDIATE');
    try {
      const pausing = viaLink.jobs.pause({ id: job.id });
      for (let i = 0; i < 200 && !existsSync(`${real}-wait`); i++) await sleep(5);
      assert.equal(existsSync(`${real}-wait`), true, 'no -wait file beside the real file');
      assert.equal(existsSync(`${linked}-wait`), false, 'a -wait file beside the link');
      holder.exec('ROLLBACK');
      assert.equal((await pausing).status, 'PAUSED');
      assert.equal(existsSync(`${real}-wait`), false, 'the -wait file was left behind');
    } finally {
      if (holder.inTransaction) holder.exec('ROLLBACK');
      holder.close();
      await viaLink.close();
    }
  });
});

describe('the -wait file cannot be turned against a writer', () => {
  it('a stale one that cannot be removed is ignored, and one dated in the future is stale', async () => {
    const path = join(dir, 'w.db');
    const store = await openStore(path);
    try {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      // A directory in its place: removing it as a file fails (as another user's file in a sticky
      // directory would).
      mkdirSync(`${path}-wait`);
      const old = new Date(Date.now() - 60_000);
      utimesSync(`${path}-wait`, old, old);
      assert.equal((await store.jobs.pause({ id: job.id })).status, 'PAUSED');
      rmSync(`${path}-wait`, { recursive: true });
      // A file dated a minute ahead (a clock stepped back) is stale too: the next writer removes it.
      writeFileSync(`${path}-wait`, '');
      const ahead = new Date(Date.now() + 60_000);
      utimesSync(`${path}-wait`, ahead, ahead);
      await sleep(2);
      assert.equal((await store.jobs.resume({ id: job.id })).status, 'RUNNING');
      assert.equal(existsSync(`${path}-wait`), false);
    } finally {
      await store.close();
    }
  });

  it('a waiter never writes through a symbolic link put in its place', async () => {
    const path = join(dir, 'l.db');
    const store = await openStore(path);
    try {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      const victim = join(dir, 'victim.txt');
      writeFileSync(victim, 'keep me intact');
      symlinkSync(victim, `${path}-wait`);
      // Another connection holds the write lock for a while (longer than a writer holds back for a
      // fresh -wait file), so that this store's write finds it taken and announces that it waits.
      const other = new Database(path);
      other.exec('BEGIN IMMEDIATE');
      const paused = store.jobs.pause({ id: job.id });
      await sleep(400);
      other.exec('COMMIT');
      other.close();
      assert.equal((await paused).status, 'PAUSED');
      assert.equal(readFileSync(victim, 'utf8'), 'keep me intact');
    } finally {
      await store.close();
    }
  });
});

