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

