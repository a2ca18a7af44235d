/**
 * The paper exchange's own SQLite file: its orders, its account balances, the epoch its price paths
 * count steps from, and a cache of the last computed price per token.
 *
 * This is the exchange's state, not a botstate store: it is opened with better-sqlite3 directly and
 * refuses any file that is not a paper-exchange file (so `--data botstate.db` cannot damage a store).
 * WAL with synchronous=NORMAL: a committed order survives the exchange being killed (-9) at any
 * instant; a power cut may lose the last few commits (like botstate's `process` mode).
 *
 * Each order and its balance change are one `BEGIN IMMEDIATE` transaction, and clientOrderId is
 * UNIQUE, so an order is placed at most once even when several processes share the file.
 *
 * @example
 * const book = PaperBook.open('./paper-exchange.db', { initialUsd: '1000', nowMs: Date.now() });
 * book.place({ clientOrderId: 'a-1', token, side: 'BUY', quoteAmount: '10' }, '0.5', new Date().toISOString());
 * book.balances(); // { USD: '990', [token]: '20' }
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { StorageError, ValidationError } from '../../errors.ts';
import { DEFAULT_CHAIN } from '../../jobs/job-rows.ts';
import { checkNotCompanion } from '../../store/location.ts';
import { add, cmp, div, integerDigits, isDecimal, isZero, mul, sub, type Decimal } from '../../money/decimal.ts';
import type { ExchangeOrder, OrderRequest } from '../exchange.ts';

/** The quote asset's key in {@link PaperBook.balances}. */
export const QUOTE_ASSET = 'USD';
const KIND = 'botstate-paper-exchange';
const FORMAT_VERSION = '1';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS orders (
  seq INTEGER PRIMARY KEY,
  client_order_id TEXT NOT NULL UNIQUE,
  exchange_order_id TEXT NOT NULL UNIQUE,
  token TEXT NOT NULL,
  side TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
  status TEXT NOT NULL CHECK (status IN ('FILLED', 'REJECTED')),
  base_amount TEXT NOT NULL,
  quote_amount TEXT NOT NULL,
  price TEXT NOT NULL,
  error TEXT,
  time TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS balances (asset TEXT PRIMARY KEY, amount TEXT NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS price_cache (
  market TEXT NOT NULL,
  token TEXT NOT NULL,
  step INTEGER NOT NULL,
  price TEXT NOT NULL,
  PRIMARY KEY (market, token)
) STRICT;
`;

interface OrderRow {
  client_order_id: string;
  exchange_order_id: string;
  token: string;
  side: 'BUY' | 'SELL';
  status: 'FILLED' | 'REJECTED';
  base_amount: string;
  quote_amount: string;
  price: string;
  error: string | null;
  time: string;
}

const ORDER_COLUMNS = 'client_order_id, exchange_order_id, token, side, status, base_amount, quote_amount, price, error, time';

function toOrder(r: OrderRow): ExchangeOrder {
  // A rejection executed nothing (ExchangeOrder's amounts are what executed): it is answered with
  // amounts 0. Its row keeps the amounts it would have filled (the one asked for among them).
  const rejected = r.status === 'REJECTED';
  return {
    clientOrderId: r.client_order_id,
    exchangeOrderId: r.exchange_order_id,
    token: r.token,
    side: r.side,
    status: r.status,
    baseAmount: rejected ? '0' : r.base_amount,
    quoteAmount: rejected ? '0' : r.quote_amount,
    price: r.price,
    error: r.error,
    time: r.time,
  };
}

/**
 * The amounts of a market order at `price`, rounded in the exchange's favour:
 * BUY quote → base = quote ÷ price (down); BUY base → quote = base × price (up);
 * SELL base → quote = base × price (down); SELL quote → base = quote ÷ price (up).
 */
export function fillAmounts(order: Pick<OrderRequest, 'side' | 'baseAmount' | 'quoteAmount'>, price: Decimal): { baseAmount: Decimal; quoteAmount: Decimal } {
  const buy = order.side === 'BUY';
  if (order.baseAmount !== undefined) {
    return { baseAmount: order.baseAmount, quoteAmount: mul(order.baseAmount, price, buy ? 'up' : 'down') };
  }
  if (order.quoteAmount === undefined) throw new RangeError('an order needs baseAmount or quoteAmount');
  return { baseAmount: div(order.quoteAmount, price, buy ? 'down' : 'up'), quoteAmount: order.quoteAmount };
}

/** The most integer digits an order's amount may have, asked for or filled (so what it fills it can sell again). */
export const MAX_ORDER_INTEGER_DIGITS = 60;

export interface PaperBookOptions {
  /** The USD balance of a new file. Ignored when the file exists: balances are the file's. */
  readonly initialUsd: Decimal;
  /** The current time; becomes the epoch of a new file. */
  readonly nowMs: number;
  /**
   * The chain its account is on (default `base`), kept in the file when it is first opened: one
   * opened later for another chain is refused, its balances being that chain's.
   */
  readonly chain?: string;
}

/** The result of {@link PaperBook.place}: the order, and whether this call created it. */
export interface Placed {
  readonly order: ExchangeOrder;
  readonly created: boolean;
}

export class PaperBook {
  /** When this file's price paths started (ms since 1970), fixed at the file's creation. */
  readonly epochMs: number;
  /** This file's random id (12 hex digits), fixed when the file is first opened: `paper-<bookId>-<n>` names its orders. */
  readonly bookId: string;
  readonly path: string;
  readonly #db: Database.Database;
  readonly #getOrder: Database.Statement<[string], OrderRow>;
  readonly #listOrders: Database.Statement<[], OrderRow>;
  readonly #insertOrder: Database.Statement<unknown[]>;
  readonly #nextSeq: Database.Statement<[], { next: number }>;
  readonly #getBalance: Database.Statement<[string], { amount: string }>;
  readonly #setBalance: Database.Statement<[string, string]>;
  readonly #listBalances: Database.Statement<[], { asset: string; amount: string }>;
  readonly #savePrice: Database.Statement<[string, string, number, string]>;
  readonly #place: (request: OrderRequest, price: Decimal, time: string) => Placed;

  private constructor(db: Database.Database, path: string, epochMs: number, bookId: string) {
    this.#db = db;
    this.path = path;
    this.epochMs = epochMs;
    this.bookId = bookId;
    this.#getOrder = db.prepare(`SELECT ${ORDER_COLUMNS} FROM orders WHERE client_order_id = ?`);
    this.#listOrders = db.prepare(`SELECT ${ORDER_COLUMNS} FROM orders ORDER BY seq`);
    this.#insertOrder = db.prepare(`INSERT INTO orders (seq, ${ORDER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.#nextSeq = db.prepare('SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM orders');
    this.#getBalance = db.prepare('SELECT amount FROM balances WHERE asset = ?');
    this.#setBalance = db.prepare('INSERT INTO balances (asset, amount) VALUES (?, ?) ON CONFLICT (asset) DO UPDATE SET amount = excluded.amount');
    this.#listBalances = db.prepare('SELECT asset, amount FROM balances ORDER BY asset = \'USD\' DESC, asset');
    this.#savePrice = db.prepare(
      'INSERT INTO price_cache (market, token, step, price) VALUES (?, ?, ?, ?) ON CONFLICT (market, token) DO UPDATE SET step = excluded.step, price = excluded.price WHERE excluded.step > price_cache.step',
    );
    const place = db.transaction((request: OrderRequest, price: Decimal, time: string) => this.#placeInTransaction(request, price, time));
    this.#place = (request, price, time) => place.immediate(request, price, time);
  }

  /**
   * Opens (creating if needed, mode 0600) a paper-exchange file.
   * @throws StorageError when the file cannot be opened or belongs to something else.
   */
  static open(path: string, options: PaperBookOptions): PaperBook {
    if (!isDecimal(options.initialUsd) || options.initialUsd.startsWith('-')) throw new RangeError(`initialUsd must be a non-negative decimal, got ${options.initialUsd}`);
    // Not a file SQLite keeps beside a database (x.db-wal while x.db is there): the next
    // connection to that database would delete it, and the exchange's orders and balances with it.
    if (path !== ':memory:') checkNotCompanion(path, () => 'give --data a file of its own, e.g. paper-exchange.db');
    // A named pipe would block the open below for ever (signals could not stop it), a device fail
    // with a misleading I/O error and get a -journal beside it: refused before either is opened.
    const stat = path === ':memory:' ? undefined : statSync(path, { throwIfNoEntry: false });
    if (stat !== undefined && !stat.isFile()) {
      throw new StorageError('STORAGE_UNAVAILABLE', `${path} is ${stat.isDirectory() ? 'a directory' : 'not a regular file (a device, a pipe or a socket)'}, so it cannot hold the paper exchange's data`, {
        hint: 'give --data the path of a file, e.g. paper-exchange.db',
      });
    }
    let db: Database.Database | undefined;
    try {
      if (path !== ':memory:') closeSync(openSync(path, 'a', 0o600));
      db = new Database(path, { timeout: 5000 });
      const d = db;
      const check = (): boolean => {
        const tables = d.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").pluck().all() as string[];
        if (tables.length === 0) return false;
        const kind = tables.includes('meta') ? (d.prepare("SELECT value FROM meta WHERE key = 'kind'").pluck().get() as string | undefined) : undefined;
        if (kind !== KIND) {
          throw new StorageError('STORAGE_CORRUPT', `${path} is not a paper-exchange file (it holds other tables)`, {
            hint: 'point --data at a new file or at an existing paper-exchange file, never at a botstate database',
          });
        }
        const version = d.prepare("SELECT value FROM meta WHERE key = 'version'").pluck().get();
        if (version !== FORMAT_VERSION) {
          throw new StorageError('STORAGE_CORRUPT', `${path} is a paper-exchange file of format ${String(version)}; this botstate reads format ${FORMAT_VERSION}`, {
            hint: 'use a new --data file',
          });
        }
        return true;
      };
      check(); // before switching to WAL, which would rewrite the header of someone else's file
      d.pragma('journal_mode = WAL');
      d.pragma('synchronous = NORMAL');
      const init = d.transaction(() => {
        if (!check()) {
          d.exec(SCHEMA);
          const meta = d.prepare('INSERT INTO meta (key, value) VALUES (?, ?)');
          meta.run('kind', KIND);
          meta.run('version', FORMAT_VERSION);
          meta.run('epoch_ms', String(options.nowMs));
          meta.run('created_at', new Date(options.nowMs).toISOString());
          d.prepare('INSERT INTO balances (asset, amount) VALUES (?, ?)').run(QUOTE_ASSET, options.initialUsd);
        }
        // The file's own id, in every exchangeOrderId: order numbers start at 1 in each file, and a
        // daemon whose ledger holds paper-1 from one file must not see another file's paper-1 as the
        // same order (its fill check stops the job). A file written before the id existed gets one now.
        d.prepare("INSERT INTO meta (key, value) VALUES ('book_id', ?) ON CONFLICT (key) DO NOTHING").run(randomBytes(6).toString('hex'));
        const bookId = d.prepare("SELECT value FROM meta WHERE key = 'book_id'").pluck().get();
        // Its account's chain, kept from the first open (a file written before chains were kept
        // takes the one it is opened with now): the same balances on another chain would be made up.
        const chain = options.chain ?? DEFAULT_CHAIN;
        d.prepare("INSERT INTO meta (key, value) VALUES ('chain', ?) ON CONFLICT (key) DO NOTHING").run(chain);
        const kept = d.prepare("SELECT value FROM meta WHERE key = 'chain'").pluck().get();
        if (kept !== chain) {
          throw new ValidationError('INVALID_ARGUMENT', `${path} holds the paper exchange's account on chain ${String(kept)}, not ${chain}: its balances and orders are that chain's`, {
            hint: `start it with --chain ${String(kept)}, or give --data a new file for chain ${chain}`,
          });
        }
        return { epochMs: Number(d.prepare("SELECT value FROM meta WHERE key = 'epoch_ms'").pluck().get()), bookId };
      });
      const { epochMs, bookId } = init.immediate();
      if (!Number.isSafeInteger(epochMs)) throw new StorageError('STORAGE_CORRUPT', `${path} has no valid epoch`, { hint: 'use a new --data file' });
      if (typeof bookId !== 'string' || !/^[0-9a-f]{12}$/.test(bookId)) throw new StorageError('STORAGE_CORRUPT', `${path} has no valid book id`, { hint: 'use a new --data file' });
      return new PaperBook(db, path, epochMs, bookId);
    } catch (e) {
      db?.close();
      if (e instanceof StorageError || e instanceof ValidationError) throw e;
      const code = (e as { code?: unknown }).code;
      const notADatabase = code === 'SQLITE_NOTADB' || (typeof code === 'string' && code.startsWith('SQLITE_CORRUPT'));
      throw new StorageError(notADatabase ? 'STORAGE_CORRUPT' : 'STORAGE_UNAVAILABLE', `cannot open the paper exchange file ${path}: ${(e as Error).message}`, {
        hint: notADatabase ? 'give --data a new file, or one the paper exchange wrote' : 'check that the directory exists and is writable',
        cause: e,
      });
    }
  }

  /**
   * Places a market order at `price`, or returns the order already placed under its clientOrderId
   * (whatever its other fields) with `created: false`, changing nothing. A BUY beyond the USD balance,
   * a SELL beyond the token balance, an order whose other amount rounds to 0, or one whose other
   * amount has more than MAX_ORDER_INTEGER_DIGITS integer digits is stored REJECTED (with the
   * amounts it would have filled, and `error`), answered with amounts 0 (what it executed), and
   * moves no balance.
   *
   * `request` must be validated: canonical positive amounts, exactly one of them, a canonical token.
   */
  place(request: OrderRequest, price: Decimal, time: string): Placed {
    return this.#place(request, price, time);
  }

  #placeInTransaction(request: OrderRequest, price: Decimal, time: string): Placed {
    const existing = this.#getOrder.get(request.clientOrderId);
    if (existing !== undefined) return { order: toOrder(existing), created: false };
    const { baseAmount, quoteAmount } = fillAmounts(request, price);
    const usd = this.#balance(QUOTE_ASSET);
    const tokens = this.#balance(request.token);
    let error: string | null = null;
    if (isZero(baseAmount) || isZero(quoteAmount)) {
      error = `order too small: ${isZero(baseAmount) ? `quoteAmount ${request.quoteAmount} ÷ price ${price} buys less than 10⁻¹⁸ tokens` : `baseAmount ${request.baseAmount} × price ${price} is worth less than 10⁻¹⁸ USD`}`;
    } else if (integerDigits(baseAmount) > MAX_ORDER_INTEGER_DIGITS || integerDigits(quoteAmount) > MAX_ORDER_INTEGER_DIGITS) {
      // Filled, it would be a balance that no order could sell again (requests take at most as many digits).
      const [name, amount] = integerDigits(baseAmount) > MAX_ORDER_INTEGER_DIGITS ? ['baseAmount', baseAmount] : ['quoteAmount', quoteAmount];
      error = `order too large: its ${name} ${amount} at price ${price} has more than ${MAX_ORDER_INTEGER_DIGITS} integer digits`;
    } else if (request.side === 'BUY' && cmp(quoteAmount, usd) > 0) {
      error = `insufficient USD balance: the order needs ${quoteAmount}, the account has ${usd}`;
    } else if (request.side === 'SELL' && cmp(baseAmount, tokens) > 0) {
      error = `insufficient ${request.token} balance: the order sells ${baseAmount}, the account has ${tokens}`;
    }
    const seq = this.#nextSeq.get()!.next;
    const row: OrderRow = {
      client_order_id: request.clientOrderId,
      exchange_order_id: `paper-${this.bookId}-${seq}`,
      token: request.token,
      side: request.side,
      status: error === null ? 'FILLED' : 'REJECTED',
      base_amount: baseAmount,
      quote_amount: quoteAmount,
      price,
      error,
      time,
    };
    this.#insertOrder.run(seq, row.client_order_id, row.exchange_order_id, row.token, row.side, row.status,
      row.base_amount, row.quote_amount, row.price, row.error, row.time);
    const order = toOrder(row);
    if (error === null) {
      const buy = request.side === 'BUY';
      this.#setBalance.run(QUOTE_ASSET, buy ? sub(usd, quoteAmount) : add(usd, quoteAmount));
      this.#setBalance.run(request.token, buy ? add(tokens, baseAmount) : sub(tokens, baseAmount));
    }
    return { order, created: true };
  }

  #balance(asset: string): Decimal {
    return this.#getBalance.get(asset)?.amount ?? '0';
  }

  /** The order with this clientOrderId, or null. */
  get(clientOrderId: string): ExchangeOrder | null {
    const row = this.#getOrder.get(clientOrderId);
    return row === undefined ? null : toOrder(row);
  }

  /** Every order, in the order they were placed. */
  list(): ExchangeOrder[] {
    return this.#listOrders.all().map(toOrder);
  }

  /** `USD` first, then every token the account ever held, by address. */
  balances(): Record<string, Decimal> {
    const out: Record<string, Decimal> = {};
    for (const { asset, amount } of this.#listBalances.all()) out[asset] = amount;
    return out;
  }

  /** The cached (step, price) of each token for the market with this fingerprint. */
  loadPrices(market: string): Array<{ token: string; step: number; price: Decimal }> {
    return this.#db.prepare('SELECT token, step, price FROM price_cache WHERE market = ?').all(market) as Array<{ token: string; step: number; price: Decimal }>;
  }

  /** Stores computed prices so that a restarted exchange need not recompute its paths from step 0. */
  savePrices(market: string, prices: ReadonlyArray<{ token: string; step: number; price: Decimal }>): void {
    if (prices.length === 0) return;
    this.#db.transaction(() => {
      for (const p of prices) this.#savePrice.run(market, p.token, p.step, p.price);
    }).immediate();
  }

  close(): void {
    if (this.#db.open) this.#db.close();
  }
}
