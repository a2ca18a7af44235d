/**
 * Runs in a worker thread: checkpoints the WAL of one SQLite database from its own connection,
 * so that the writer's commits never pay for a checkpoint (5–15 ms on a busy disk, every ~100
 * commits with SQLite's automatic checkpoints). PASSIVE checkpoints never block the writer.
 * When the WAL is still longer than `longWalFrames` after one, the thread says so: the writer
 * then checkpoints the remainder itself, so that the WAL starts over (see SqliteAdapter).
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const { path, intervalMs, longWalFrames, walLong } = workerData as {
  path: string;
  intervalMs: number;
  longWalFrames: number;
  walLong: SharedArrayBuffer;
};
const long = new Int32Array(walLong);
/** A pass that found fewer new frames than this leaves the writer about a millisecond of copying. */
const SMALL_PASS_FRAMES = 128;
/**
 * Opens the database, trying again for about a second: preparing the checkpoint reads the
 * schema, which another connection restarting the WAL can make busy for a moment. A thread that
 * still cannot open it ends, and the writer goes back to SQLite's automatic checkpoints.
 */
function open(): { db: Database.Database; checkpoint: Database.Statement } {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 1; ; attempt++) {
    let db: Database.Database | undefined;
    try {
      db = new Database(path, { fileMustExist: true, timeout: 0 });
      db.pragma('busy_timeout = 0');
      return { db, checkpoint: db.prepare('PRAGMA wal_checkpoint(PASSIVE)') };
    } catch (e) {
      db?.close();
      const code = String((e as { code?: unknown }).code ?? '');
      if (attempt >= 50 || !(code.startsWith('SQLITE_BUSY') || code === 'SQLITE_PROTOCOL')) throw e;
      Atomics.wait(pause, 0, 0, 20);
    }
  }
}

const { db, checkpoint } = open();

function run(): void {
  try {
    // Under sustained writes, further passes copy what was written during the one before, until
    // one finds little new: the writer, told the WAL is long, then has little left to copy.
    let previous = -1;
    for (let pass = 0; pass < 6; pass++) {
      const { log } = checkpoint.get() as { busy: number; log: number; checkpointed: number };
      if (log <= longWalFrames) {
        Atomics.store(long, 0, 0); // the WAL started over meanwhile: nothing to ask for
        return;
      }
      if (previous >= 0 && log - previous < SMALL_PASS_FRAMES) break;
      previous = log;
    }
    Atomics.store(long, 0, 1);
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
