/**
 * A full disk under a running daemon (SQLite): its database lives on a small tmpfs, filled up while
 * it trades. Every step then fails ("storage, not counted": no job goes to ERROR for it), or the
 * tick's lease sync before any step, and no order
 * is placed without its intent committed; once the filesystem has room again (remounted larger, as
 * an operator frees space), trading resumes by itself, and after a SIGTERM (exit 0) and the drain,
 * every invariant of the exactly-once protocol holds against the exchange's order log.
 *
 * Mounting a tmpfs needs root (CAP_SYS_ADMIN); where that is refused the test is skipped, saying so.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { openStore } from '../../src/store/store.ts';
import { checkInvariants, createJobs, drain, emptyTally, makeRng, readExchange, startDaemon, startExchange } from './harness.ts';

const dir = mkdtempSync(join(tmpdir(), 'botstate-disk-full-'));
const mnt = join(dir, 'fs');
mkdirSync(mnt);

function mount(options: string): void {
  execFileSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', mnt], { stdio: 'pipe' });
}

const unmountable = ((): string | false => {
  try {
    mount('size=3m');
    return false;
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    return `cannot mount a tmpfs here (${String((e as { stderr?: unknown }).stderr ?? e).trim().split('\n')[0]})`;
  }
})();

describe('a full disk under a running daemon [sqlite]', { skip: unmountable }, () => {
  it('steps fail without an ERROR or an unrecorded order; trading resumes once there is room; every invariant holds', { timeout: 120_000 }, async (t) => {
    const db = join(mnt, 'botstate.db');
    const exchange = await startExchange({ dataFile: join(dir, 'paper-exchange.db'), seed: 'disk-full' });
    const store = await openStore(db, { actor: 'test' });
    const tally = emptyTally();
    let daemon: ReturnType<typeof startDaemon> | undefined;
    try {
      await createJobs(store, 12, 2, makeRng('disk-full'));
      // About 1 MB left: the daemon fills it within seconds.
      const used = Number(execFileSync('df', ['--output=used', '-k', mnt]).toString().trim().split('\n')[1]);
      writeFileSync(join(mnt, 'filler'), Buffer.alloc((3 * 1024 - used - 1024) * 1024));
      daemon = startDaemon({ exchangeUrl: exchange.url, dbUrl: db, tickMs: 50, leaseTtlMs: 2000, tally, name: 'daemon' });
      assert.ok(await daemon.recovered(30_000), daemon.describeExit());
      // A step's write or the tick's lease sync, whichever needs a page first: SQLite reuses the
      // WAL file's room after a checkpoint, so a small write may still fit when a larger one does not.
      const full = await daemon.proc.waitFor(/(?:step failed \(storage, not counted\)|tick failed): .*SQLITE_FULL/, 60_000);
      assert.ok(full, `the disk never filled: ${daemon.describeExit()}; ${tally.trades} trades, ${tally.stepFailed} failed steps; last lines: ${daemon.proc.lines.slice(-5).join(' | ')}`);
      const tradesWhenFull = tally.trades;
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(daemon.proc.exit, undefined, `the daemon exited on a full disk: ${daemon.describeExit()}`);
      mount('remount,size=100m');
      const deadline = performance.now() + 30_000;
      while (tally.trades < tradesWhenFull + 24 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.ok(tally.trades >= tradesWhenFull + 24, `only ${tally.trades - tradesWhenFull} trades once there was room again`);
      assert.equal(tally.toError, 0, 'a full disk put a job in ERROR');
      const stopped = await daemon.proc.stop('SIGTERM', 20_000);
      assert.equal(stopped.code, 0, daemon.describeExit());
      daemon = undefined;
      const end = await drain({ store, exchangeUrl: exchange.url, dbUrl: db, tickMs: 50, leaseTtlMs: 2000, tally });
      assert.deepEqual(end.violations, []);
      const state = await readExchange(exchange.url);
      const { violations, counts } = await checkInvariants(store, state, { allowError: false });
      t.diagnostic(`${tradesWhenFull} trades before the disk filled, ${tally.trades} in all; ${tally.stepFailed} failed steps; ${counts.orders} orders, ${counts.filled} filled`);
      assert.deepEqual(violations, []);
    } finally {
      await daemon?.proc.kill9();
      await exchange.proc.kill9();
      await store.close().catch(() => {});
      try {
        execFileSync('umount', [mnt], { stdio: 'pipe' });
      } catch {
        // left mounted: removed with the machine's /tmp
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
