/**
 * Runs in a worker thread: fsyncs one database's WAL whenever the writer asks (see wal-sync.ts).
 * Requests and answers are commit numbers in a shared array, so that the writer can tell
 * between two transactions, without a turn of its event loop, whether the last fsync is done.
 */
import { closeSync, fdatasyncSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { openWal, reopenIfUnlinked, serveFsyncRequests } from './wal-sync.ts';

const { walPath, state } = workerData as { walPath: string; state: SharedArrayBuffer };
let fd: number | undefined;
serveFsyncRequests(new BigInt64Array(state), () => {
  fd = fd === undefined ? openWal(walPath) : reopenIfUnlinked(fd, walPath);
  fdatasyncSync(fd);
});
if (fd !== undefined) closeSync(fd);
