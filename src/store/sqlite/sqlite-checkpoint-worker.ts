/**
 * Runs in a worker thread: checkpoints the WAL of one SQLite database from its own connection,
 * so that the writer's commits never pay for a checkpoint (5–15 ms on a busy disk, every ~100
 * commits with SQLite's automatic checkpoints). PASSIVE checkpoints never block the writer.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { path, intervalMs } = workerData as { path: string; intervalMs: number };
const db = new Database(path, { fileMustExist: true, timeout: 0 });
db.pragma('busy_timeout = 0');
const checkpoint = db.prepare('PRAGMA wal_checkpoint(PASSIVE)');

function run(): void {
  try {
    checkpoint.run();
  } catch {
    // Busy (another checkpoint, a recovery in progress): try again at the next interval.
  }
}

const timer = setInterval(run, intervalMs);
parentPort!.on('message', (message: unknown) => {
  if (message === 'stop') {
    clearInterval(timer);
    run();
    db.close();
    parentPort!.postMessage('stopped');
  }
});
