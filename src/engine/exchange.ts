import type { Decimal } from '../money/decimal.ts';

/** A market order. Exactly one of baseAmount (sell/buy this many tokens) or quoteAmount (spend/receive this much quote). */
export interface OrderRequest {
  /**
   * The idempotency key: placing the same clientOrderId again never places a second order.
   *
   * The daemon derives it as `<jobId>-<n>`: the job's id, a UUID (36 characters of lowercase hex
   * digits and `-`), then `-` and a decimal sequence number, so 38 characters or more. Any intent
   * may carry one given through the library (`recordIntent`), and recovery sends those too: 1 to
   * 64 characters of `A-Z a-z 0-9 . _ : -`. An exchange that takes shorter ids (many cap them at
   * 32 or 36 characters) needs an adapter that maps each clientOrderId to one of its own,
   * one-to-one and the same for ever (across restarts and new versions of the adapter): for
   * example a hash of it cut to the exchange's length, kept with the clientOrderId it stands for.
   * Cutting the id itself maps every intent of a job to one exchange order; the daemon refuses to
   * record a fill whose exchangeOrderId one of the job's last 100 trades holds (the job goes to
   * ERROR), but only an adapter that keeps ids apart places every order.
   */
  readonly clientOrderId: string;
  /** The token's address (EIP-55). */
  readonly token: string;
  readonly side: 'BUY' | 'SELL';
  readonly baseAmount?: Decimal;
  readonly quoteAmount?: Decimal;
}

/** An order as the exchange knows it. */
export interface ExchangeOrder {
  /** The clientOrderId it was placed or asked for under (an adapter that maps ids answers with botstate's). */
  readonly clientOrderId: string;
  /**
   * The exchange's own id of the order (a tx hash on a DEX), recorded on a filled order's trade: 1
   * to 128 visible ASCII characters, no spaces. A REJECTED or OPEN order may have none: `''` (the
   * daemon also takes null or no field).
   */
  readonly exchangeOrderId: string;
  readonly token: string;
  readonly side: 'BUY' | 'SELL';
  /**
   * FILLED: executed, and done, at `price`; REJECTED: never executed, and never will be (see
   * `error`); OPEN: accepted but not final yet (a CEX's NEW or PARTIALLY_FILLED order, a DEX's
   * transaction not yet mined). For an OPEN order the amounts and price are ignored (they must
   * still be decimal strings) and it may have no exchangeOrderId yet: the daemon leaves its
   * intent PENDING, counts no failure, places no other order for the job, and asks `getOrder`
   * again at every tick until it is FILLED or REJECTED. Only a final status settles an intent.
   */
  readonly status: 'FILLED' | 'REJECTED' | 'OPEN';
  /**
   * What was executed, which the ledger records. In the order's own terms (the baseAmount or
   * quoteAmount it asked for) never more than asked; it may be less (lot sizes, rounding). A
   * fill of more than was asked is taken for another order under the same clientOrderId.
   *
   * Amounts and price are decimal strings, never JS numbers (floats). Any exact form is read:
   * leading and trailing zeros are dropped (`"25.00000000"` is 25), nothing is rounded. An
   * exponent (`"1e-7"`) or more than 18 significant decimals is refused as an invalid answer.
   */
  readonly baseAmount: Decimal;
  readonly quoteAmount: Decimal;
  readonly price: Decimal;
  readonly error: string | null;
  /** ISO 8601. */
  readonly time: string;
}

/**
 * What botstate needs from an exchange or DEX. By contract `placeOrder` is idempotent on
 * clientOrderId: placing an order whose clientOrderId the exchange already has returns that
 * order (filled, rejected or open) and places nothing. An adapter for an exchange that refuses a
 * duplicate clientOrderId ("Duplicate order sent") must catch that refusal and answer with the
 * existing order, which it looks up: not throw it as a refusal. And `getOrder` must see every
 * order `placeOrder` has accepted, at once: where the exchange's order query lags behind its
 * matching engine, the adapter waits for it or asks where the order is already seen. (The daemon
 * guards against both: a re-send refused after `getOrder` said "not found" is asked about again,
 * and is settled FAILED only if the exchange still does not know it `exchangeTimeoutMs` later.)
 *
 * A call that fails without an answer (a timeout, a dropped connection) may or may not have
 * reached the exchange; callers find out with `getOrder` and never invent a new clientOrderId
 * for the same intent.
 */
export interface Exchange {
  placeOrder(order: OrderRequest): Promise<ExchangeOrder>;
  /** The order with this clientOrderId, or null if the exchange never received it. */
  getOrder(clientOrderId: string): Promise<ExchangeOrder | null>;
  /** The current price of one token, in quote (USD). */
  getPrice(token: string): Promise<Decimal>;
  /** The account's balances: `USD` for quote, and one entry per token address. */
  getBalances(): Promise<Readonly<Record<string, Decimal>>>;
  /**
   * Optional batch form of getPrice: one round trip for many tokens (keys as given). The
   * daemon uses it, when present, to price every job of a tick at once. A token the exchange
   * has no valid price for is left out of the map (the daemon then asks getPrice for that job
   * alone), so that one delisted token does not stop the others.
   */
  getPrices?(tokens: readonly string[]): Promise<ReadonlyMap<string, Decimal>>;
  /**
   * Optional batch form of getOrder: the orders the exchange has among these clientOrderIds
   * (absent ones were never received). Recovery uses it to reconcile every open intent at once.
   */
  getOrders?(clientOrderIds: readonly string[]): Promise<ReadonlyMap<string, ExchangeOrder>>;
}

/**
 * A failure where the exchange's answer is unknown (timeout, dropped response, 5xx): the
 * order may or may not exist. Distinct from a REJECTED order, which is a definite answer.
 */
export class ExchangeUnavailableError extends Error {
  override readonly name = 'ExchangeUnavailableError';
}

/**
 * The exchange answered, but not with anything this client can read (a malformed order, an
 * unknown status such as a partial fill, an amount that is a JS number, has an exponent or more
 * than 18 decimals, a time without a zone). What
 * became of the order is unknown, and waiting will not tell: the daemon counts it as a failed
 * step (ending in ERROR with this message) and leaves the intent PENDING for an operator.
 */
export class ExchangeInvalidAnswerError extends Error {
  override readonly name = 'ExchangeInvalidAnswerError';
}

/** The exchange answered and refused the request (a 4xx): nothing was placed. */
export class ExchangeRejectedError extends Error {
  override readonly name = 'ExchangeRejectedError';
}
