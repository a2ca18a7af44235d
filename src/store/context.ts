import { AsyncLocalStorage } from 'node:async_hooks';
import type { Adapter, Executor } from './adapter.ts';

/** Options every store method accepts. */
export interface CallOptions {
  /**
   * Run inside this transaction (from `store.transaction`) instead of a new one, so that the
   * call commits or rolls back together with the caller's other writes.
   */
  readonly tx?: Executor;
  /** Who is acting, for the audit log. Defaults to the store's actor. */
  readonly actor?: string;
  /**
   * Fencing for a daemon's job runner: the write is refused (LEASE_LOST) unless this owner
   * still holds the job's lease at this epoch, checked under a lock in the same transaction.
   */
  readonly fence?: Fence;
}

/** A job lease as held by one daemon: the owner and the epoch it was granted at. */
export interface Fence {
  readonly owner: string;
  readonly epoch: number;
}

/** What the domain modules share: the adapter, the ambient transaction and the default actor. */
export class Context {
  readonly adapter: Adapter;
  readonly actor: string;
  readonly #ambient = new AsyncLocalStorage<Executor>();

  constructor(adapter: Adapter, actor: string) {
    this.adapter = adapter;
    this.actor = actor;
  }

  /**
   * Runs `fn` in the caller's transaction if there is one (passed as `tx`, or the
   * `store.transaction` this call is made inside), else in a new one.
   */
  write<T>(options: CallOptions | undefined, fn: (tx: Executor) => Promise<T>): Promise<T> {
    const tx = options?.tx ?? this.#ambient.getStore();
    return tx ? fn(tx) : this.adapter.transaction(fn);
  }

  read<T>(options: CallOptions | undefined, fn: (tx: Executor) => Promise<T>): Promise<T> {
    const tx = options?.tx ?? this.#ambient.getStore();
    return tx ? fn(tx) : this.adapter.transaction(fn, { readOnly: true });
  }

  /** A transaction that store calls made inside `fn` join automatically. Nested calls join the outer one. */
  transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
    const outer = this.#ambient.getStore();
    if (outer) return fn(outer);
    return this.adapter.transaction((tx) => this.#ambient.run(tx, () => fn(tx)));
  }

  actorFor(options: CallOptions | undefined): string {
    return options?.actor ?? this.actor;
  }
}
