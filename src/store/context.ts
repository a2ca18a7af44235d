import { AsyncLocalStorage } from 'node:async_hooks';
import { ValidationError } from '../errors.ts';
import { isStorableText } from '../util/text.ts';
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

interface Ambient {
  readonly tx: Executor;
  /** Set when the transaction has committed or rolled back; a callback scheduled inside it must not use it. */
  open: boolean;
}

/** What the domain modules share: the adapter, the ambient transaction and the default actor. */
export class Context {
  readonly adapter: Adapter;
  readonly actor: string;
  readonly #ambient = new AsyncLocalStorage<Ambient>();
  /** The transaction whose turn the current call holds (so that a call made inside it does not wait for itself). */
  readonly #turn = new AsyncLocalStorage<Executor>();
  /** Per joined transaction, the end of the queue of calls waiting for their turn. */
  readonly #queues = new WeakMap<Executor, Promise<void>>();

  constructor(adapter: Adapter, actor: string) {
    this.adapter = adapter;
    this.actor = actor;
  }

  /** The caller's transaction: passed as `tx`, or the open `store.transaction` this call is made inside. */
  #joined(options: CallOptions | undefined): Executor | undefined {
    if (options?.tx) return options.tx;
    const ambient = this.#ambient.getStore();
    return ambient?.open ? ambient.tx : undefined;
  }

  /**
   * Runs `fn` when no other call joined to `tx` is running: calls made at once inside one
   * transaction (`Promise.all` of two writes) take turns. Interleaved, a failing call's
   * ROLLBACK TO its savepoint would also undo the writes the other made after that savepoint.
   */
  async #inTurn<T>(tx: Executor, fn: () => Promise<T>): Promise<T> {
    if (this.#turn.getStore() === tx) return fn();
    const previous = this.#queues.get(tx) ?? Promise.resolve();
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    this.#queues.set(tx, previous.then(() => mine));
    await previous;
    try {
      return await this.#turn.run(tx, fn);
    } finally {
      done();
    }
  }

  /** `fn` under a SAVEPOINT of `tx`: if it throws, what it wrote is undone and the transaction goes on. */
  async #savepoint<T>(tx: Executor, fn: () => Promise<T>): Promise<T> {
    await tx.run('SAVEPOINT botstate_call');
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      try {
        await tx.run('ROLLBACK TO SAVEPOINT botstate_call');
        await tx.run('RELEASE SAVEPOINT botstate_call');
      } catch {
        // The transaction itself is broken (a lost connection): the original error says why.
      }
      throw e;
    }
    await tx.run('RELEASE SAVEPOINT botstate_call');
    return result;
  }

  /**
   * Runs `fn` in the caller's transaction if there is one, else in a new one. Joining, it runs
   * under a SAVEPOINT, in its turn: a call that fails leaves nothing of its own behind even when
   * the caller catches the error and commits the rest.
   */
  async write<T>(options: CallOptions | undefined, fn: (tx: Executor) => Promise<T>): Promise<T> {
    const tx = this.#joined(options);
    if (!tx) return this.adapter.transaction(fn);
    return this.#inTurn(tx, () => this.#savepoint(tx, () => fn(tx)));
  }

  read<T>(options: CallOptions | undefined, fn: (tx: Executor) => Promise<T>): Promise<T> {
    const tx = this.#joined(options);
    return tx ? this.#inTurn(tx, () => fn(tx)) : this.adapter.transaction(fn, { readOnly: true });
  }

  /**
   * A transaction that store calls made inside `fn` join automatically. Nested, it joins the
   * outer one under a SAVEPOINT: if `fn` throws, what it wrote is undone.
   */
  transaction<T>(fn: (tx: Executor) => Promise<T>): Promise<T> {
    const outer = this.#ambient.getStore();
    if (outer?.open) return this.#inTurn(outer.tx, () => this.#savepoint(outer.tx, () => fn(outer.tx)));
    return this.adapter.transaction(async (tx) => {
      const ambient: Ambient = { tx, open: true };
      try {
        return await this.#ambient.run(ambient, () => fn(tx));
      } finally {
        ambient.open = false;
      }
    });
  }

  actorFor(options: CallOptions | undefined): string {
    const actor = options?.actor;
    if (actor === undefined) return this.actor;
    if (typeof actor !== 'string' || actor.length === 0 || actor.length > 200 || !isStorableText(actor)) {
      throw new ValidationError('INVALID_ARGUMENT', 'the actor must be 1 to 200 characters of well-formed text without NUL', {
        hint: 'name who is acting, e.g. "ops:alice"',
      });
    }
    return actor;
  }
}
