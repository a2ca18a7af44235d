import { AsyncLocalStorage } from 'node:async_hooks';
import { BotstateError, readOnlyStore, ValidationError } from '../errors.ts';
import { isStorableText } from '../util/text.ts';
import { inputObject } from '../util/values.ts';
import type { Adapter, Engine, Executor, SqlParam } from './adapter.ts';
import { changesBotstateSetting, changesSession, transactionControl } from './tx-control.ts';

/**
 * The fields of every store method's options: CallOptions', and those some methods add (history's
 * window, completeLiquidation's price, the ledger's scratch and decidedWith).
 */
const CALL_OPTION_FIELDS = ['tx', 'actor', 'fence', 'scratch', 'decidedWith', 'since', 'limit', 'priceUsd'];

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

/**
 * One run of a transaction's body (a nested one's too), on the adapter's connection; `open` is
 * cleared once the body has returned or thrown and the calls made in it are done.
 */
interface Txn {
  open: boolean;
  readonly connection: Executor;
  /** The outermost transaction's: shared by the transactions nested in it. */
  readonly root: Root;
}

/**
 * An atomic transaction (store.transaction's `atomic`) runs the calls made in it, and the
 * transactions nested in it, without savepoints: the first of them to fail fails it whole, even
 * when its body catches the error (what that call wrote before it failed is not undone alone).
 */
interface Root {
  readonly atomic: boolean;
  failed?: { readonly error: unknown };
}

/**
 * The tx a store.transaction hands its body: the connection's methods, refused once that
 * transaction (a nested one included) has ended. An adapter may hand every transaction the same
 * executor (SQLite's one connection, and every transaction of a group-commit batch, share one),
 * so a tx kept past its transaction would otherwise run its statement on its own (autocommit),
 * inside whichever transaction is open then, or after a nested one's savepoint was released.
 * One object per transaction, and one check per statement.
 */
class Tx implements Executor {
  readonly #txn: Txn;
  readonly #engine: Engine;

  constructor(txn: Txn, engine: Engine) {
    this.#txn = txn;
    this.#engine = engine;
  }

  all<T extends object>(sql: string, params?: readonly SqlParam[]): Promise<T[]> {
    return this.#refusal(sql) ?? this.#txn.connection.all<T>(sql, params);
  }

  get<T extends object>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined> {
    return this.#refusal(sql) ?? this.#txn.connection.get<T>(sql, params);
  }

  run(sql: string, params?: readonly SqlParam[]): Promise<number> {
    return this.#refusal(sql) ?? this.#txn.connection.run(sql, params);
  }

  exec(sql: string): Promise<void> {
    return this.#refusal(sql) ?? this.#txn.connection.exec(sql);
  }

  /**
   * Why `sql` may not run here: the transaction has ended, or `sql` would end or begin one
   * itself. A COMMIT run through a tx used to commit what came before it (and, with group
   * commit, other callers' writes), after which the transaction was reported as not written.
   */
  #refusal(sql: string): Promise<never> | undefined {
    if (!this.#txn.open) return Promise.reject(txEnded('this tx'));
    const control = typeof sql === 'string' ? transactionControl(sql, this.#engine) : undefined;
    if (control === undefined) return undefined;
    if (changesBotstateSetting(control)) {
      return Promise.reject(new ValidationError('INVALID_ARGUMENT', `a tx cannot run ${control}: botstate's own statements in the transaction depend on it (its schema, how times and text are read, whether the commit waits for the disk)`, {
        hint: 'leave search_path, TimeZone, DateStyle and client_encoding as the store sets them, and synchronous_commit on or higher; name your own tables with their schema (myschema.t)',
      }));
    }
    if (changesSession(control)) {
      return Promise.reject(new ValidationError('INVALID_ARGUMENT', `a tx cannot run ${control}: it ${control === 'DO' ? 'may change' : 'changes'} the connection, which outlives the transaction, for every later call on it`, {
        hint: sessionHint(control, this.#engine),
      }));
    }
    return Promise.reject(new ValidationError('INVALID_ARGUMENT', `a tx cannot run ${control}: store.transaction begins, commits and rolls back its transaction itself`, {
      hint: 'return from the transaction body to commit, throw to roll back; nest store.transaction for a part that may fail alone',
    }));
  }
}

/** What to do instead of a statement that would change the connection past the transaction. */
function sessionHint(control: string, engine: Engine): string {
  if (engine === 'sqlite' && (control === 'ATTACH' || control === 'DETACH')) return "open the other database on a connection of your own (better-sqlite3), not on the store's one connection";
  if (engine === 'sqlite') return "set what botstate allows through openStore's options; use a table of your own or a WITH clause rather than a TEMP one";
  if (control === 'pg_advisory_lock') return 'use pg_advisory_xact_lock, which is released with the transaction';
  if (control === 'DO') return "run the statements of its body through the tx itself (a DO block's body cannot be checked for what it leaves on the connection)";
  if (/^(?:PREPARE|LISTEN|DECLARE)/.test(control)) return "run it on a connection of your own (a pg client), not on botstate's pooled ones";
  return "use SET LOCAL or set_config(…, true), which end with the transaction (not for search_path, TimeZone, DateStyle, client_encoding or a lower synchronous_commit: botstate's statements depend on them), and ON COMMIT DROP for a temporary table";
}

/** What a tx of a transaction that has ended gets, from a store call or from its own methods. */
function txEnded(what: string): BotstateError {
  return new ValidationError('INVALID_ARGUMENT', `${what} belongs to a transaction that has ended`, {
    hint: 'use a tx only in calls made (and awaited) inside its store.transaction',
  });
}

/**
 * Where calls joined to a transaction take turns: the transaction's own body, or the body of a
 * call (or nested transaction) made in it. Calls made directly in one scope run one at a time,
 * each in a scope of its own, so siblings take turns at every level and no call waits for an
 * ancestor.
 */
interface Scope {
  readonly tx: Executor;
  readonly txn: Txn;
  /** The scope this one's call or nested transaction took its turn in; none for a transaction's root. */
  readonly outer: Scope | undefined;
  /** Cleared when the body has returned or thrown: a call still queued in it is then refused. */
  open: boolean;
  /** The end of the queue of calls made directly in this scope. */
  tail: Promise<void>;
}

/** What the domain modules share: the adapter, the ambient transaction and the default actor. */
export class Context {
  readonly adapter: Adapter;
  readonly actor: string;
  readonly #scope = new AsyncLocalStorage<Scope>();
  /**
   * The transactions' own scopes (nested ones' too), by tx: a `tx` passed explicitly from code
   * that is not running in its transaction's body (a callback set up outside it) takes turns there.
   */
  readonly #open = new WeakMap<Executor, Scope>();
  /** Every tx this store's transactions handed out, open or ended: any other is another store's. */
  readonly #issued = new WeakSet<Executor>();

  constructor(adapter: Adapter, actor: string) {
    this.adapter = adapter;
    this.actor = actor;
  }

  /** The caller's transaction: passed as `tx`, or the open `store.transaction` this call is made inside. */
  #joined(options: CallOptions | undefined): Executor | undefined {
    // null as none, as before fields were checked.
    if (options !== undefined && options !== null) inputObject(options, 'the options', CALL_OPTION_FIELDS);
    if (options?.tx) return options.tx;
    const scope = this.#scope.getStore();
    if (scope === undefined || scope.txn.open) return scope?.tx;
    // Made in a nested transaction that has ended (a callback set up in it) while one around it
    // is still open: run on its own, it would wait for that one (SQLite's one connection, the
    // rows it locked) or commit what that one may yet roll back.
    for (let s = scope.outer; s !== undefined; s = s.outer) {
      if (s.txn.open) {
        throw new ValidationError('INVALID_ARGUMENT', 'this call was made in a nested store.transaction that has ended, while the transaction around it is still open', {
          hint: 'await every store call made inside store.transaction before it returns',
        });
      }
    }
    return undefined;
  }

  /**
   * The scope a call joined to `tx` takes its turn in: the caller's own if it is made inside
   * `tx`'s transaction (in its body, in a call or a transaction nested in it), or else the scope
   * of the open transaction `tx` belongs to. A `tx` whose transaction has ended is refused, even
   * while another transaction is open (each store.transaction, nested or not, hands out its own tx).
   */
  #scopeFor(tx: Executor): Scope {
    const current = this.#scope.getStore();
    for (let s = current; s !== undefined; s = s.outer) {
      if (s.tx === tx) {
        if (s.txn.open) return current!;
        break;
      }
    }
    const own = this.#open.get(tx);
    if (own !== undefined && own.txn.open) return own;
    if (!this.#issued.has(tx)) {
      throw new ValidationError('INVALID_ARGUMENT', "the tx passed to this call is not one of this store's transactions", {
        hint: 'pass the tx of a store.transaction of the store you call (another store, even on the same database, has connections of its own)',
      });
    }
    throw txEnded('the tx passed to this call');
  }

  /**
   * Runs `body` once the calls made before it in the same scope are done: calls made at once inside
   * one transaction (`Promise.all` of two writes) take turns. Interleaved, a failing call's
   * ROLLBACK TO its savepoint would also undo the writes the other made after that savepoint. A
   * call whose turn comes after its transaction has ended is refused: it would run outside it.
   */
  async #inTurn<T>(tx: Executor, savepoint: boolean, body: (parent: Scope) => Promise<T>): Promise<T> {
    const parent = this.#scopeFor(tx);
    const previous = parent.tail;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    parent.tail = previous.then(() => mine);
    await previous;
    try {
      if (!parent.open || !parent.txn.open) {
        throw new ValidationError('INVALID_ARGUMENT', 'this call joined a transaction (or a call) that ended before it could run', {
          hint: 'await every store call made inside store.transaction before the transaction returns',
        });
      }
      const { root } = parent.txn;
      // Atomic: every joined call that fails fails the transaction, a read too, on both engines.
      if (!root.atomic) return await (savepoint ? this.#savepoint(tx, () => body(parent)) : body(parent));
      try {
        return await body(parent);
      } catch (e) {
        root.failed ??= { error: e };
        throw e;
      }
    } finally {
      done();
    }
  }

  /**
   * Runs a call joined to `tx` in a scope of its own inside `parent`: the calls `fn` leaves queued
   * are refused (or finish) before its savepoint is rolled back or released.
   */
  #call<T>(tx: Executor, parent: Scope, fn: () => Promise<T>): Promise<T> {
    return this.#within({ tx, txn: parent.txn, outer: parent, open: true, tail: Promise.resolve() }, fn);
  }

  /**
   * Runs `fn` as the body of a transaction of its own on `connection` (nested in `outer`'s, if
   * given), with its own tx: once the body and the calls made in it are done, that tx is refused,
   * by store calls and by its own methods alike.
   */
  async #own<T>(connection: Executor, outer: Scope | undefined, fn: (tx: Executor) => Promise<T>, atomic = false): Promise<T> {
    const root: Root = outer?.txn.root ?? { atomic };
    const txn: Txn = { open: true, connection, root };
    const tx = new Tx(txn, this.adapter.engine);
    const scope: Scope = { tx, txn, outer, open: true, tail: Promise.resolve() };
    this.#open.set(tx, scope);
    this.#issued.add(tx);
    try {
      const outcome = await this.#within(scope, () => fn(tx)).then((value) => ({ value }), (error: unknown) => ({ error }));
      // The first failure of an atomic transaction is its outcome, whether its body went on (no
      // commit) or threw after it (on PostgreSQL a later statement only says the transaction was
      // aborted, and the adapter retries by the first's code).
      if (outer === undefined && root.failed !== undefined) throw root.failed.error;
      if ('error' in outcome) throw outcome.error;
      return outcome.value;
    } finally {
      txn.open = false;
      this.#open.delete(tx);
    }
  }

  /**
   * Runs `fn` as the body of `scope`; once it has returned or thrown, the calls it left queued
   * (a Promise.all that gave up at the first refusal) are refused before the body's savepoint
   * or transaction ends, so that none runs after it.
   */
  async #within<T>(scope: Scope, fn: () => Promise<T>): Promise<T> {
    try {
      return await this.#scope.run(scope, fn);
    } finally {
      scope.open = false;
      await scope.tail;
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
   * the caller catches the error and commits the rest. Refused at once on a read-only store.
   */
  async write<T>(options: CallOptions | undefined, fn: (tx: Executor) => Promise<T>): Promise<T> {
    // Before anything is read or locked: one refusal for every write, whatever the job's state.
    if (this.adapter.readOnly) throw readOnlyStore(this.adapter.location);
    const tx = this.#joined(options);
    if (!tx) return this.adapter.transaction(fn);
    return this.#inTurn(tx, true, (parent) => this.#call(tx, parent, () => fn(tx)));
  }

  /**
   * A read whose statements must all see the same commits (verify compares the jobs with the
   * audit log and the trades, read by several statements). Alone it is one: a read-only
   * transaction is REPEATABLE READ on PostgreSQL and a snapshot on SQLite. Joined to a caller's
   * PostgreSQL transaction (READ COMMITTED, where each statement sees the commits made before it
   * began) it would report a change committed between two of its statements as a tampered log:
   * refused there.
   */
  snapshotRead<T>(options: CallOptions | undefined, what: string, fn: (tx: Executor) => Promise<T>): Promise<T> {
    if (this.adapter.engine === 'postgres' && this.#joined(options)) {
      return Promise.reject(new ValidationError('INVALID_ARGUMENT', `${what} must read the database in one snapshot, which a transaction of the caller's on PostgreSQL does not give`, {
        hint: `call ${what} outside store.transaction, without { tx }`,
      }));
    }
    return this.read(options, fn);
  }

  read<T>(options: CallOptions | undefined, fn: (tx: Executor) => Promise<T>): Promise<T> {
    const tx = this.#joined(options);
    // On PostgreSQL a statement that fails aborts the whole transaction, which COMMIT then rolls
    // back in silence: a joined read gets a savepoint there too, so that a caught failure is harmless.
    return tx
      ? this.#inTurn(tx, this.adapter.engine === 'postgres', (parent) => this.#call(tx, parent, () => fn(tx)))
      : this.adapter.transaction(fn, { readOnly: true });
  }

  /**
   * A transaction that store calls made inside `fn` join automatically. Nested, it joins the
   * outer one under a SAVEPOINT: if `fn` throws, what it wrote is undone. Either way `fn` gets a
   * tx of its own, refused once this transaction has ended (a nested one's while the outer goes on).
   * `atomic` (outermost only; a nested one is as the outermost): no savepoints in it (see Root).
   */
  transaction<T>(fn: (tx: Executor) => Promise<T>, atomic = false): Promise<T> {
    const outer = this.#scope.getStore();
    if (outer?.txn.open) return this.#inTurn(outer.tx, true, (parent) => this.#own(parent.txn.connection, parent, fn));
    return this.adapter.transaction((connection) => this.#own(connection, undefined, fn, atomic));
  }

  /** Whether this call is made inside an open store.transaction of this store. */
  inTransaction(): boolean {
    return this.#scope.getStore()?.txn.open === true;
  }

  /**
   * Refuses `what` (close, backup) called inside an open store.transaction of this store: it
   * waits for the store's transactions to end, so awaited in one's body it would wait for ever.
   */
  refuseInTransaction(what: string, hint: string): void {
    for (let s = this.#scope.getStore(); s !== undefined; s = s.outer) {
      if (s.txn.open) {
        throw new ValidationError('INVALID_ARGUMENT', `${what} cannot be called inside store.transaction: it waits for the transaction to end, which would wait for it`, { hint });
      }
    }
  }

  actorFor(options: CallOptions | undefined): string {
    return options?.actor === undefined ? this.actor : checkActor(options.actor, 'the actor');
  }
}

/** The longest actor the audit log stores. */
export const MAX_ACTOR_LENGTH = 200;

/** An actor as the audit log stores it: 1 to 200 characters of well-formed text without NUL. */
export function checkActor(actor: unknown, what: string): string {
  if (typeof actor !== 'string' || actor.length === 0 || actor.length > MAX_ACTOR_LENGTH || !isStorableText(actor)) {
    throw new ValidationError('INVALID_ARGUMENT', `${what} must be 1 to ${MAX_ACTOR_LENGTH} characters of well-formed text without NUL`, {
      hint: 'name who is acting, e.g. "ops:alice"',
    });
  }
  return actor;
}
