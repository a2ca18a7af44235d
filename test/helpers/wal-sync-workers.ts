/**
 * Stand-ins for the group commit's fsync thread (src/store/sqlite/sqlite-wal-sync-worker.ts):
 * the same request loop, with an fsync that a real disk will not misbehave like on demand. The
 * mode is the text of `<wal>.mode`:
 * - `gate`: once `<wal>.armed` exists, each fsync waits until `<wal>.release` exists, then runs
 *   for real (before it is armed, fsyncs run at once: the writes that bring the thread up must not
 *   wait on it);
 * - `step`: as `gate`, but each fsync deletes `<wal>.release` as it passes: one release, one fsync
 *   (`<wal>.open` lets every fsync through, for a test's clean-up). `<wal>.held` exists while an
 *   fsync is held: it has read which commits it covers, and none made later;
 * - `eio`: the fsync fails as one returning EIO would;
 * - `die`: the thread exits at its first fsync without answering;
 * - `fast`: no fsync, only a busy wait of 0–40 µs, so that answers land at scattered moments of
 *   the writer's work (races between the writer's checks and the answer show up).
 * `<wal>.ready` is created once the thread is up.
 */
import { existsSync, fdatasyncSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { READY, openWal, serveFsyncRequests } from '../../src/store/sqlite/wal-sync.ts';

const { walPath, state } = workerData as { walPath: string; state: SharedArrayBuffer };
const mode = readFileSync(`${walPath}.mode`, 'utf8').trim();
const pause = new Int32Array(new SharedArrayBuffer(4));
let fd: number | undefined;

const shared = new BigInt64Array(state);
Atomics.store(shared, READY, 1n); // before the file, so that a test seeing the file finds the thread up
writeFileSync(`${walPath}.ready`, '');
serveFsyncRequests(shared, () => {
  if (mode === 'die') process.exit(3);
  if (mode === 'fast') {
    const until = performance.now() + Math.random() * 0.04;
    while (performance.now() < until);
    return;
  }
  if (mode === 'eio') throw Object.assign(new Error('EIO: i/o error, fdatasync'), { errno: -5, code: 'EIO' });
  const gated = (mode === 'gate' || mode === 'step') && existsSync(`${walPath}.armed`);
  if (gated && mode === 'step') writeFileSync(`${walPath}.held`, '');
  while (gated && !existsSync(`${walPath}.release`) && !existsSync(`${walPath}.open`)) Atomics.wait(pause, 0, 0, 5);
  if (gated && mode === 'step') {
    rmSync(`${walPath}.held`);
    rmSync(`${walPath}.release`, { force: true });
  }
  fd ??= openWal(walPath);
  fdatasyncSync(fd);
});
