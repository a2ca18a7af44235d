/**
 * A first-come, first-served async mutex. `acquire()` returns undefined when the lock was free
 * (the common case, taken without a microtask) and a promise to await otherwise.
 */
export class Mutex {
  #locked = false;
  readonly #waiters: Array<() => void> = [];

  acquire(): Promise<void> | undefined {
    if (!this.#locked) {
      this.#locked = true;
      return undefined;
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Hands the lock to the next waiter, or frees it. */
  release(): void {
    const next = this.#waiters.shift();
    if (next) next();
    else this.#locked = false;
  }
}
