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
  /**
   * The job's chain (`base` unless it was started with `--chain`): lowercase letters, digits and
   * `-`. The daemon always gives it; absent (a caller of the adapter's own), the adapter's chain.
   * An adapter that trades on one chain refuses an order for another with ExchangeRejectedError,
   * rather than placing it where it trades: the same address on two chains is two tokens.
   */
  readonly chain?: string;
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
  /**
   * The token's address, as the order was placed (OrderRequest.token; any case): not the
   * exchange's name for the market (`LGIUSDT`). An order for another token is not the intent's.
   */
  readonly token: string;
  readonly side: 'BUY' | 'SELL';
  /**
   * FILLED: executed, and done, at `price`; REJECTED: never executed, and never will be (see
   * `error`), its amounts `'0'`. An order the exchange cancelled or let expire after part of it
   * filled (an IOC order, a market order cancelled for the rest, a CEX's CANCELED or EXPIRED with an
   * executed quantity) is FILLED with what filled, not REJECTED: the ledger must record that part.
   * A REJECTED answer with amounts above 0 is refused as an invalid answer (the intent stays
   * PENDING), since a partial fill reported so would be lost, and the job would buy again. (Since
   * 2026-11-28: before, a rejection's amounts were ignored, and the paper exchange answered with the
   * amounts it would have filled; an adapter that echoes the amounts asked now answers 0.)
   * OPEN: accepted but not final yet (a CEX's NEW or PARTIALLY_FILLED order, a DEX's
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
   * They are what the account actually received and paid, fees included, as the job's balance
   * must follow the account's: for a BUY, the tokens that came in (less a fee taken in tokens) and
   * the quote that went out (with a fee taken in quote); for a SELL, the tokens that went out and
   * the quote that came in (less a fee taken in quote). Not the gross quantity an exchange's order
   * endpoint reports when it takes its fee elsewhere. An order that moves more than was asked,
   * its fee on top (a BUY sized in quote that spends the quote asked plus a fee in quote, a SELL
   * whose fee is taken in tokens on top of the amount asked), is refused as above: where the
   * exchange charges so, the adapter places the order for less (the quote asked ÷ (1 + the fee
   * rate)), so that the amount and its fee stay within what was asked.
   *
   * Amounts and price are decimal strings, never JS numbers (floats). Any exact form is read:
   * leading and trailing zeros are dropped (`"25.00000000"` is 25), nothing is rounded. An
   * exponent (`"1e-7"`) or more than 18 significant decimals is refused as an invalid answer.
   */
  readonly baseAmount: Decimal;
  readonly quoteAmount: Decimal;
  /**
   * The price of the fill in quote (USD) per token, recorded as the trade's priceUsd. baseAmount ×
   * price and quoteAmount may differ by fees and rounding, not by more than a factor of 2 (beyond
   * 0.01 USD): such a fill is refused as an invalid answer, an amount or a price in the wrong unit
   * or scale. For a token taxed on transfer at more than 50 %, give the fill's own price (quote /
   * base), not the market's.
   */
  readonly price: Decimal;
  /** A REJECTED order's reason, recorded on its FAILED trade (null, empty or blank: "rejected by the exchange"). */
  readonly error: string | null;
  /** ISO 8601. */
  readonly time: string;
}

/**
 * What botstate needs from an exchange or DEX. By contract `placeOrder` is idempotent on
 * clientOrderId: placing an order whose clientOrderId the exchange already has returns that
 * order (filled, rejected or open) and places nothing. An adapter for an exchange that refuses a
 * duplicate clientOrderId ("Duplicate order sent") must catch that refusal and answer with the
 * existing order, which it looks up: not throw it as a refusal. One that takes a clientOrderId
 * again once its first order is no longer open (some keep it unique among open orders only) would
 * place a second order: its adapter looks the id up (as `getOrder` does) before placing. And
 * `getOrder` must see every order `placeOrder` has accepted, at once: where the exchange's order query lags behind its
 * matching engine, the adapter waits for it or asks where the order is already seen. (The daemon
 * guards against both: a re-send refused after `getOrder` said "not found" is asked about again,
 * and is settled FAILED only if the exchange still does not know it `exchangeTimeoutMs` later.)
 *
 * A call that fails without an answer (a timeout, a dropped connection) may or may not have
 * reached the exchange; callers find out with `getOrder` and never invent a new clientOrderId
 * for the same intent.
 *
 * What to throw, for every method:
 * - {@link ExchangeUnavailableError} when the answer is unknown: no answer (a network error, a
 *   timeout), a 5xx, a rate limit, anything after which the request may or may not have been
 *   carried out. The daemon also turns a call that takes longer than its `exchangeTimeoutMs`
 *   (default 5 s) into one (the call goes on; its late answer is ignored).
 * - {@link ExchangeRejectedError} for a definite refusal that did nothing: the exchange answered
 *   and refused the request (a 4xx such as insufficient balance, an unknown market, an order
 *   below the minimum). Never for a duplicate clientOrderId (answer with that order), and never
 *   when unsure.
 * - Anything else (a plain Error, {@link ExchangeInvalidAnswerError} for an answer that cannot be
 *   read) counts as a failed step of the job, where the method's own entry does not say otherwise;
 *   after `maxFailures` (5) failed steps in a row the job goes to ERROR.
 * Each method's entry below says what the daemon does with each.
 */
export interface Exchange {
  /**
   * Which exchange account this adapter trades on (its URL, an account id): the same in every
   * daemon of one database. A daemon records it when it starts (in its `recover` audit entry), and
   * never sends an intent again through an exchange other than the one the daemon that recorded
   * the intent traded on: the other exchange would not have the order, and the first may have
   * filled it. Optional: without it, that is not checked. `HttpExchange`'s is its URL.
   */
  readonly id?: string;
  /**
   * Places a market order, or, for a clientOrderId the exchange already has, answers with that
   * order. Its answer may be FILLED, REJECTED or OPEN (see ExchangeOrder.status).
   *
   * - ExchangeUnavailableError: the intent stays PENDING, no failure is counted; the next tick
   *   asks `getOrder`, and sends the order again under the same clientOrderId if the exchange
   *   does not have it.
   * - ExchangeRejectedError: for a first send, the intent is recorded FAILED with the message
   *   (`refused by the exchange: …`) and the step counts as failed; for an order sent again after
   *   `getOrder` said the exchange did not have it, the order is asked for again, and recorded
   *   FAILED only if the exchange still does not know it `exchangeTimeoutMs` later.
   * - Anything else: the outcome is taken as unknown: the intent stays PENDING and the step counts
   *   as failed; the next tick asks `getOrder` and sends the order again if the exchange does not
   *   have it, and so on at every tick, in ERROR too. An exchange's refusal thrown as a plain
   *   Error (a client library's InsufficientFunds) is thus sent again every tick: map it to
   *   ExchangeRejectedError.
   */
  placeOrder(order: OrderRequest): Promise<ExchangeOrder>;
  /**
   * The order with this clientOrderId, or null if the exchange never received it. Null only
   * when the exchange says it does not have the order: the daemon then sends it again. It must
   * see every order `placeOrder` accepted (see above).
   *
   * - ExchangeUnavailableError: the intent stays PENDING, no failure is counted; the daemon says
   *   once that the exchange is unavailable and asks again every tick.
   * - Anything else (ExchangeRejectedError too): the step counts as failed, the intent stays
   *   PENDING and is asked about again at the next tick (at start-up recovery, it is counted
   *   unresolved and asked about at the first tick).
   */
  getOrder(clientOrderId: string): Promise<ExchangeOrder | null>;
  /**
   * The current price of one token, in quote (USD): an exact decimal string greater than 0, with
   * at most 18 decimals (`'2.5'`, or `'2.50000000'` as exchanges write it, read as 2.5; not the
   * number 2.5, nor `'2.5e0'`, which fail the job's step). So are getPrices' values.
   * `chain` is the job's (see OrderRequest.chain; the daemon always gives it): a chain the adapter
   * does not trade on is an ExchangeRejectedError, not another chain's price.
   *
   * - ExchangeUnavailableError: the daemon calls `getBalances` to tell a whole exchange that is
   *   down (nothing is counted, said once, the job waits) from this market alone (the job's step
   *   counts as failed; the job goes to ERROR for it only once its price has gone unanswered for
   *   `maxFailures` steps in a row and `marketDownMs`, 60 s, since the first).
   * - Anything else: the job's step counts as failed.
   */
  getPrice(token: string, chain?: string): Promise<Decimal>;
  /**
   * The account's balances: `USD` for quote, and one entry per token address. The daemon calls
   * it only to find out whether the exchange answers at all (see `getPrice`): any answer, or any
   * error but ExchangeUnavailableError, means it does.
   */
  getBalances(): Promise<Readonly<Record<string, Decimal>>>;
  /**
   * Optional batch form of getPrice: one round trip for many tokens of one chain (keys as given).
   * The daemon uses it, when present, to price every job of a tick at once (one call per chain,
   * at once; a chain whose call fails while another's answers is left out of the batch for a
   * minute, said once, its jobs asking getPrice alone). A token the exchange
   * has no valid price for is left out of the map (the daemon then asks getPrice for that job
   * alone), so that one delisted token does not stop the others. A request that fails or times
   * out (one market that hangs holds up the whole batch) while the exchange answers getBalances
   * is said once, and the daemon prices each job alone with getPrice for a minute before it tries
   * the batch again: a hung market then holds up its own jobs only. When getBalances gets no
   * answer either, or no job's getPrice has answered since the batch failed, it is an outage:
   * nothing is counted against the jobs.
   *
   * - ExchangeUnavailableError with getBalances unanswered too: an outage: the whole tick is
   *   skipped (no job steps, nothing is counted), said once, until it answers again.
   * - Anything else, or an answer that is not a Map: each job asks `getPrice` (for a minute, as above).
   */
  getPrices?(tokens: readonly string[], chain?: string): Promise<ReadonlyMap<string, Decimal>>;
  /**
   * Optional batch form of getOrder: every order the exchange has among these clientOrderIds,
   * whatever its status (filled and rejected ones too, not only the open ones), keyed by the
   * clientOrderIds as given (an adapter that maps ids keys its answer by botstate's). An absent one
   * was never received, and is sent again. Recovery uses it to reconcile every open intent at once.
   * Any error, an answer that is not a Map, or one with a key that was not asked for (ids the
   * adapter did not map back): ignored; each intent is asked about with `getOrder`.
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
 * unknown status such as PARTIALLY_FILLED, an amount that is a JS number, has an exponent or more
 * than 18 decimals, a time without a zone). What became of the order is unknown: the daemon counts
 * it as a failed step (ending in ERROR with this message after `maxFailures`) and leaves the intent
 * PENDING, asking about it again every tick, in ERROR too. The daemon checks every adapter's
 * orders so, and throws this itself for one it cannot read.
 */
export class ExchangeInvalidAnswerError extends Error {
  override readonly name = 'ExchangeInvalidAnswerError';
}

/**
 * The exchange answered and refused the request (a 4xx): nothing was placed, and nothing was
 * done. Only for a definite refusal: see the Exchange interface for what the daemon does with it.
 */
export class ExchangeRejectedError extends Error {
  override readonly name = 'ExchangeRejectedError';
}
