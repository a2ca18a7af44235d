/**
 * A first-come, first-served async mutex. `acquire()` returns undefined when the lock was free
 * (the common case, taken without a microtask) and a promise to await otherwise.
 */
export class Mutex {
  #locked = false;
  readonly #waiters: Array<() => void> = [];

  /**
   * With `timeoutMs`, a wait that lasts longer is given up: the promise rejects with what
   * `onTimeout` returns, and the lock is never handed to that waiter.
   */
  acquire(timeoutMs?: number, onTimeout?: () => Error): Promise<void> | undefined {
    if (!this.#locked) {
      this.#locked = true;
      return undefined;
    }
    if (timeoutMs === undefined) return new Promise((resolve) => this.#waiters.push(resolve));
    return new Promise((resolve, reject) => {
      const take = () => {
        clearTimeout(timer);
        resolve();
      };
      // Ref'd: a caller waiting for the lock keeps the process alive until it gets it or gives up.
      const timer = setTimeout(() => {
        const at = this.#waiters.indexOf(take);
        if (at < 0) return;
        this.#waiters.splice(at, 1);
        reject(onTimeout?.() ?? new Error(`waited ${timeoutMs} ms for the lock`));
      }, timeoutMs);
      this.#waiters.push(take);
    });
  }

  /** Hands the lock to the next waiter, or frees it. */
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#locked = false;
  }
}
