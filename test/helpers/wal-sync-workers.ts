/**
 * Stand-ins for the group commit's fsync thread (src/store/sqlite/sqlite-wal-sync-worker.ts),
 * speaking the same protocol, for the cases a real disk will not produce on demand. Chosen by
 * `workerData.walPath`'s neighbour files, so one module serves every test:
 * - `<wal>.ready` is created once the thread is up;
 * - mode `gate`: each fsync waits until `<wal>.release` exists, then runs for real;
 * - mode `eio`: the first request fails as an fsync returning EIO would;
 * - mode `die`: the thread exits on the first request without answering.
 * The mode is the text of `<wal>.mode`.
 */
import { existsSync, fdatasyncSync, readFileSync, writeFileSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { DONE, ERRNO, READY, REQUESTED, STOP, openWal } from '../../src/store/sqlite/wal-sync.ts';

const { walPath, state: buffer } = workerData as { walPath: string; state: SharedArrayBuffer };
const state = new BigInt64Array(buffer);
const mode = readFileSync(`${walPath}.mode`, 'utf8').trim();
const pause = new Int32Array(new SharedArrayBuffer(4));
let fd: number | undefined;

Atomics.store(state, READY, 1n);
writeFileSync(`${walPath}.ready`, '');
for (;;) {
  const done = Atomics.load(state, DONE);
  if (Atomics.load(state, REQUESTED) <= done) {
    if (Atomics.load(state, STOP) === 1n) break;
    Atomics.wait(state, REQUESTED, done, 1000);
    continue;
  }
  const requested = Atomics.load(state, REQUESTED);
  if (mode === 'die') process.exit(3);
  if (mode === 'eio') {
    Atomics.store(state, ERRNO, -5n);
    Atomics.notify(state, DONE);
    break;
  }
  while (mode === 'gate' && !existsSync(`${walPath}.release`)) Atomics.wait(pause, 0, 0, 5);
  fd ??= openWal(walPath);
  fdatasyncSync(fd);
  Atomics.store(state, DONE, requested);
  Atomics.notify(state, DONE);
}
