/**
 * Runs in a worker thread: fsyncs one database's WAL whenever the writer asks (see wal-sync.ts).
 * Requests and answers are commit numbers in a shared array, so that the writer can tell
 * between two transactions, without a turn of its event loop, whether the last fsync is done.
 */
import { closeSync, fdatasyncSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { DONE, ERRNO, READY, REQUESTED, STOP, UNKNOWN_ERRNO, openWal, reopenIfUnlinked } from './wal-sync.ts';

const { walPath, state: buffer } = workerData as { walPath: string; state: SharedArrayBuffer };
const state = new BigInt64Array(buffer);
let fd: number | undefined;

Atomics.store(state, READY, 1n);
for (;;) {
  const done = Atomics.load(state, DONE);
  if (Atomics.load(state, REQUESTED) <= done) {
    if (Atomics.load(state, STOP) === 1n) break;
    // Bounded: a STOP stored between the check above and this wait is seen at the next turn.
    Atomics.wait(state, REQUESTED, done, 50);
    continue;
  }
  // Everything the writer had committed when it stored this number is in the WAL already.
  const requested = Atomics.load(state, REQUESTED);
  try {
    fd = fd === undefined ? openWal(walPath) : reopenIfUnlinked(fd, walPath);
    fdatasyncSync(fd);
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).errno;
    Atomics.store(state, ERRNO, BigInt(typeof errno === 'number' && errno !== 0 ? errno : UNKNOWN_ERRNO));
    Atomics.notify(state, DONE);
    break;
  }
  Atomics.store(state, DONE, requested);
  Atomics.notify(state, DONE);
}
if (fd !== undefined) closeSync(fd);
