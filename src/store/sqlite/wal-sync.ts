import { closeSync, fdatasyncSync, fstatSync, fsyncSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { getSystemErrorName } from 'node:util';
import { Worker } from 'node:worker_threads';
import { StorageError } from '../../errors.ts';

/** Slots of the array shared with the sync thread (see sqlite-wal-sync-worker.ts). */
export const REQUESTED = 0;
export const DONE = 1;
export const STOP = 2;
export const ERRNO = 3;
export const READY = 4;
export const SLOTS = 5;
/** Stored in ERRNO when the error had no errno. */
export const UNKNOWN_ERRNO = -1_000_000;

/**
 * Makes a WAL database's commits durable for `power` mode with group commit.
 *
 * The connection runs `synchronous=NORMAL`: a COMMIT writes its frames to the WAL without an
 * fsync. SQLite's `synchronous=FULL` in WAL mode is exactly that plus one fsync of the WAL after
 * each commit (https://sqlite.org/pragma.html#pragma_synchronous); this class does that fsync
 * instead, and one fsync covers every commit written before it started. No caller is answered
 * before an fsync that covers its commit has returned, so an answered transaction is on disk,
 * as with FULL.
 *
 * Commits are numbered by `request()`. At first the fsync runs inline (a short-lived command
 * never starts a thread). Once `startThread()` has been called and the thread is up, the
 * fsync runs there, so that the writer goes on executing the next transactions meanwhile:
 * `idle` tells the writer that no fsync is in flight, which is when it commits.
 */
export class WalSync {
  readonly #walPath: string;
  readonly #state = new BigInt64Array(new SharedArrayBuffer(SLOTS * BigInt64Array.BYTES_PER_ELEMENT));
  #requested = 0n;
  #inlineFd: number | undefined;
  #worker: Worker | undefined;
  #threadFailed = false;
  #threaded = false;
  #waiting = 0;
  #changed: { done: bigint; promise: Promise<void> } | undefined;
  #failure: StorageError | undefined;

  readonly #workerUrl: URL;
  /** Set when close() begins: no thread is started after it. */
  #closing = false;
  /** Set when close() asks the thread to stop: its exit is then expected. */
  #stopping = false;

  /** `workerUrl` replaces the fsync thread's module (tests use it to delay or fail fsyncs). */
  constructor(databasePath: string, workerUrl?: URL) {
    this.#walPath = `${databasePath}-wal`;
    const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
    this.#workerUrl = workerUrl ?? new URL(`./sqlite-wal-sync-worker${ext}`, import.meta.url);
  }

  /** The highest commit number asked to be made durable. */
  get requested(): bigint {
    return this.#requested;
  }

  /** Every commit up to this number is durable. */
  get done(): bigint {
    return this.#threaded ? Atomics.load(this.#state, DONE) : this.#requested;
  }

  /** True when no fsync is in flight (inline fsyncs are never in flight). */
  get idle(): boolean {
    return !this.#threaded || Atomics.load(this.#state, DONE) === this.#requested;
  }

  /** True once the thread is up; the first call that sees it up hands the requests over to it. */
  get threaded(): boolean {
    if (!this.#threaded && this.#worker !== undefined && Atomics.load(this.#state, READY) === 1n) {
      // From here on the thread takes the requests; it starts from what is already durable.
      Atomics.store(this.#state, DONE, this.#requested);
      Atomics.store(this.#state, REQUESTED, this.#requested);
      this.#threaded = true;
    }
    return this.#threaded;
  }

  /** Set once an fsync has failed: nothing written since may be durable, and nothing is retried. */
  get failure(): StorageError | undefined {
    if (this.#failure === undefined && this.#threaded) {
      const errno = Atomics.load(this.#state, ERRNO);
      if (errno !== 0n) this.#failure = fsyncFailed(this.#walPath, Number(errno));
    }
    return this.#failure;
  }

  /** Marks the store's storage as failed (the writer's checkpoint could not sync): every waiter is refused. */
  fail(error: StorageError): void {
    this.#failure ??= error;
    Atomics.notify(this.#state, DONE);
  }

  /** Numbers the commit just made and asks for it to be made durable. Throws if an inline fsync fails. */
  request(): bigint {
    // Asked before this commit is numbered: the call that hands the requests over to the
    // thread marks every commit numbered so far durable (they were fsynced inline), and this
    // one is not yet.
    const threaded = this.threaded;
    const n = ++this.#requested;
    if (threaded) {
      Atomics.store(this.#state, REQUESTED, n);
      Atomics.notify(this.#state, REQUESTED);
      return n;
    }
    try {
      this.#inlineFd = this.#inlineFd === undefined ? openWal(this.#walPath) : reopenIfUnlinked(this.#inlineFd, this.#walPath);
      fdatasyncSync(this.#inlineFd);
    } catch (e) {
      this.#failure ??= fsyncFailed(this.#walPath, (e as NodeJS.ErrnoException).errno ?? 0, e);
      throw this.#failure;
    }
    return n;
  }

  /** Starts the fsync thread (once); until it is up, fsyncs stay inline. */
  startThread(): void {
    if (this.#worker !== undefined || this.#threadFailed || this.#closing || this.#failure !== undefined) return;
    let worker: Worker;
    try {
      worker = new Worker(this.#workerUrl, { workerData: { walPath: this.#walPath, state: this.#state.buffer } });
    } catch {
      this.#threadFailed = true; // the fsyncs stay inline
      return;
    }
    this.#worker = worker;
    worker.unref();
    // A thread that could not start leaves the fsyncs inline. One that stops after taking
    // requests (other than at close) may not have made them durable: that is a failure, and
    // its waiters are woken to see it.
    const lost = (cause: unknown) => {
      if (this.#stopping || this.#worker !== worker) return;
      this.#threadFailed = true;
      this.#worker = undefined;
      if (this.#threaded && this.failure === undefined) this.#failure = fsyncFailed(this.#walPath, 0, cause);
      Atomics.notify(this.#state, DONE);
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`the fsync thread exited with code ${code}`)));
  }

  /** Resolves when `done` moves past its current value, or at once if nothing is in flight. */
  changed(): Promise<void> {
    if (!this.#threaded || this.failure) return Promise.resolve();
    // One load for both the check and the wait: an fsync that ends between two loads would
    // leave this waiting for a change of DONE that no fsync is coming to make.
    const done = Atomics.load(this.#state, DONE);
    if (done === this.#requested) return Promise.resolve();
    if (this.#changed?.done === done) return this.#changed.promise;
    // Bounded, as the thread's own wait is: a wake-up that never arrives (one hang was seen under
    // the test runner and not explained) costs a re-check after 50 ms, never a hang.
    const wait = Atomics.waitAsync(this.#state, DONE, done, 50);
    if (!wait.async) return Promise.resolve();
    // Atomics.waitAsync does not keep Node's event loop alive by itself: the worker does,
    // while someone waits.
    if (this.#waiting++ === 0) this.#worker?.ref();
    const promise: Promise<void> = wait.value.then(() => {
      // Not once close() holds the thread: a wait that settles after close() has asked the thread
      // to stop (it waited for a DONE that has moved on) must not unref it then; with nothing
      // else pending, the process would end before the thread's exit, which close() awaits
      // (Node exits 13: an unsettled top-level await).
      if (--this.#waiting === 0 && !this.#stopping) this.#worker?.unref();
      // Settled: the next waiter must wait anew, even if DONE has the same value.
      if (this.#changed?.promise === promise) this.#changed = undefined;
    });
    this.#changed = { done, promise };
    return promise;
  }

  /** Resolves when commit `n` is durable; rejects if an fsync failed. */
  async durable(n: bigint): Promise<void> {
    for (;;) {
      const failure = this.failure;
      if (failure) throw failure;
      if (this.done >= n) return;
      await this.changed();
    }
  }

  /** Waits for every requested fsync, then stops the thread. */
  async close(): Promise<void> {
    this.#closing = true;
    await this.durable(this.#requested).catch(() => {});
    if (this.#inlineFd !== undefined) closeSync(this.#inlineFd);
    this.#inlineFd = undefined;
    const worker = this.#worker;
    if (!worker) return;
    this.#stopping = true;
    worker.ref();
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    Atomics.store(this.#state, STOP, 1n);
    Atomics.notify(this.#state, REQUESTED);
    await exited;
    this.#worker = undefined;
    this.#threaded = false;
  }
}

/**
 * The fsync thread's loop (sqlite-wal-sync-worker.ts): whenever the writer stores a higher
 * REQUESTED, `fsync` the WAL and store that number in DONE; stop at STOP. An fsync that throws
 * stores its errno in ERRNO and ends the loop: nothing is retried.
 */
export function serveFsyncRequests(state: BigInt64Array, fsync: () => void): void {
  Atomics.store(state, READY, 1n);
  for (;;) {
    const done = Atomics.load(state, DONE);
    if (Atomics.load(state, REQUESTED) <= done) {
      if (Atomics.load(state, STOP) === 1n) return;
      // Bounded: a STOP stored between the check above and this wait is seen at the next turn.
      Atomics.wait(state, REQUESTED, done, 50);
      continue;
    }
    // Everything the writer had committed when it stored this number is in the WAL already.
    const requested = Atomics.load(state, REQUESTED);
    try {
      fsync();
    } catch (e) {
      const errno = (e as NodeJS.ErrnoException).errno;
      Atomics.store(state, ERRNO, BigInt(typeof errno === 'number' && errno !== 0 ? errno : UNKNOWN_ERRNO));
      Atomics.notify(state, DONE);
      return;
    }
    Atomics.store(state, DONE, requested);
    Atomics.notify(state, DONE);
  }
}

/** Opens the WAL for fsync, and makes its directory entry durable too (it may be new). */
export function openWal(walPath: string): number {
  const fd = openSync(walPath, 'r');
  const dir = openSync(dirname(walPath), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
  return fd;
}

/** The WAL is deleted when the last connection closes; a file recreated since needs a new fd. */
export function reopenIfUnlinked(fd: number, walPath: string): number {
  if (fstatSync(fd).nlink > 0) return fd;
  closeSync(fd);
  return openWal(walPath);
}

function fsyncFailed(walPath: string, errno: number, cause?: unknown): StorageError {
  const name = errno !== 0 ? safeErrorName(errno) : cause instanceof Error ? cause.message : 'unknown error';
  return new StorageError('STORAGE_FAILED', `fsync of ${walPath} failed (${name}): commits since the last good fsync may not be on disk`, {
    hint: 'check the disk, then restart the process; the database is consistent but may have lost those commits',
    ...(cause !== undefined ? { cause } : {}),
  });
}

function safeErrorName(errno: number): string {
  if (errno === UNKNOWN_ERRNO) return 'unknown error';
  try {
    return getSystemErrorName(errno < 0 ? errno : -errno);
  } catch {
    return `errno ${errno}`;
  }
}
