/**
 * An {@link Exchange} over HTTP, speaking the paper exchange's protocol (docs/paper-exchange.md).
 *
 * It uses the global fetch, whose default dispatcher keeps connections alive and reuses them, with
 * `AbortSignal.timeout(timeoutMs)` on every call (covering the whole answer, body included).
 *
 * Failure mapping:
 * - no answer (connection refused or dropped, a timeout), a 5xx, 408 or 429 →
 *   {@link ExchangeUnavailableError}: the exchange's answer is unknown, an order may or may not
 *   exist, find out with `getOrder`;
 * - a 2xx whose body is not JSON (a proxy's page, an empty body) → {@link ExchangeUnavailableError};
 * - a 2xx whose JSON is not a valid answer → {@link ExchangeInvalidAnswerError}: the answer
 *   cannot be read, and asking again will not help (an order's amounts are read in any exact
 *   decimal form, `"25.00000000"` as 25, see {@link parseExchangeOrder});
 * - 404 on `getOrder` with the exchange's `code: 'ORDER_NOT_FOUND'` → `null`;
 * - a 404 that is not the exchange's own JSON error (its "no endpoint …" for a wrong path, a
 *   proxy's page) → {@link ExchangeUnavailableError}: nothing at this URL speaks the protocol; the
 *   daemon waits for it, saying so once, instead of counting a failed step against every job;
 * - any other 4xx → {@link ExchangeRejectedError} carrying the exchange's message (a definite
 *   refusal: nothing was placed; the daemon records the order FAILED, or, for an order it sent
 *   again after `getOrder` found nothing, asks about it again first).
 *
 * @example
 * const exchange = new HttpExchange('http://127.0.0.1:8790', { timeoutMs: 2000 });
 * const order = await exchange.placeOrder({ clientOrderId: 'job1-7', token, chain: 'base', side: 'BUY', quoteAmount: '25' });
 */
import { ValidationError } from '../../errors.ts';
import { isReference } from '../../ledger/ledger.ts';
import { isDecimal, parseDecimal, type Decimal } from '../../money/decimal.ts';
import { described, shown } from '../../util/values.ts';
import { ExchangeInvalidAnswerError, ExchangeRejectedError, ExchangeUnavailableError, type Exchange, type ExchangeOrder, type OrderRequest } from '../exchange.ts';

export interface HttpExchangeOptions {
  /** Per call, connection to last byte of the answer. Default 5000. */
  readonly timeoutMs?: number;
  /** The exchange's {@link Exchange.id}. Default: the URL as `new URL()` writes it (host in lower case, no default port), without a trailing `/`. */
  readonly id?: string;
}

const STATUSES = new Set(['FILLED', 'REJECTED', 'OPEN']);
const SIDES = new Set(['BUY', 'SELL']);

function invalid(what: string, why: string): ExchangeInvalidAnswerError {
  return new ExchangeInvalidAnswerError(`invalid answer from the exchange to ${what}: ${why}`);
}

/** An ISO 8601 time with milliseconds optional and a zone required (Z or ±hh:mm). */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;

/**
 * Validates a JSON value as an {@link ExchangeOrder}: every field present with its type, the time
 * ISO 8601 with a zone, and amounts and price exact decimal strings, returned in the canonical form
 * the ledger stores: trailing and leading zeros are dropped (`"25.00000000"` → `"25"`), nothing is
 * rounded. A JSON number (a float), an exponent, a negative amount or more than 18 decimals is
 * refused. A FILLED order needs an exchangeOrderId the ledger can store (1 to 128 visible ASCII
 * characters, no spaces); a REJECTED or OPEN order may have none (absent, null or ''), and it
 * is then returned as ''. An OPEN order's amounts are read as any other's (the daemon ignores them).
 * @throws ExchangeInvalidAnswerError naming the first bad field.
 */
export function parseExchangeOrder(value: unknown, what = 'an order request'): ExchangeOrder {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(what, 'not a JSON object');
  const v = value as Record<string, unknown>;
  const str = (k: string): string => {
    if (typeof v[k] !== 'string' || v[k] === '') throw invalid(what, `${k} is not a non-empty string`);
    return v[k];
  };
  const amount = (k: string): Decimal => {
    const a = v[k];
    if (typeof a === 'number') throw invalid(what, `${k} ${String(a)} is a JSON number, not a string: amounts are exact decimal strings`);
    if (typeof a !== 'string') throw invalid(what, `${k} is ${described(a)}, not a decimal string`);
    try {
      return parseDecimal(a, { field: k });
    } catch (e) {
      // Its own words: an exponent, more than 18 decimals, a negative amount, a stray character.
      throw invalid(what, (e as Error).message);
    }
  };
  const side = str('side');
  if (!SIDES.has(side)) throw invalid(what, `side ${JSON.stringify(side)} is not BUY or SELL`);
  const status = str('status');
  if (!STATUSES.has(status)) throw invalid(what, `status ${JSON.stringify(status)} is not FILLED, REJECTED or OPEN`);
  const error = v['error'];
  if (error !== null && typeof error !== 'string') throw invalid(what, 'error is neither null nor a string');
  const time = str('time');
  if (!ISO_TIME.test(time) || Number.isNaN(Date.parse(time))) throw invalid(what, `time ${JSON.stringify(time)} is not an ISO 8601 time with a zone`);
  return {
    clientOrderId: str('clientOrderId'),
    exchangeOrderId: exchangeOrderId(v['exchangeOrderId'], status, what),
    token: str('token'),
    side: side as ExchangeOrder['side'],
    status: status as ExchangeOrder['status'],
    baseAmount: amount('baseAmount'),
    quoteAmount: amount('quoteAmount'),
    price: amount('price'),
    error,
    time,
  };
}

/**
 * An answer's exchangeOrderId: a fill's is recorded on its trade, so it must be one the ledger
 * stores (refused here, naming the answer, rather than by the ledger's settle); an order that
 * moved nothing may have none (a real exchange gives no id to an order it refused).
 */
function exchangeOrderId(id: unknown, status: string, what: string): string {
  if (id === undefined || id === null || id === '') {
    if (status === 'FILLED') throw invalid(what, 'a FILLED order has no exchangeOrderId');
    return '';
  }
  if (typeof id !== 'string') throw invalid(what, `exchangeOrderId is ${described(id)}, not a string`);
  if (status === 'FILLED' && !isReference(id)) {
    throw invalid(what, `exchangeOrderId ${JSON.stringify(shown(id))} cannot be recorded: the ledger takes 1 to 128 visible ASCII characters, no spaces`);
  }
  return id;
}

/** Items per batch request. */
const BATCH = 1000;

/**
 * The ports fetch refuses to connect to (the Fetch standard's "bad ports", which Node's fetch
 * follows): a request to one fails at once with "bad port", as if nothing listened there.
 * https://fetch.spec.whatwg.org/#port-blocking
 */
const FETCH_BLOCKED_PORTS = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137,
  139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995, 1719, 1720, 1723,
  2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/** Whether fetch refuses to connect to this port (see FETCH_BLOCKED_PORTS). */
export function fetchBlocksPort(port: number): boolean {
  return FETCH_BLOCKED_PORTS.has(port);
}

export class HttpExchange implements Exchange {
  readonly baseUrl: string;
  readonly timeoutMs: number;
  readonly id: string;

  constructor(baseUrl: string, options: HttpExchangeOptions = {}) {
    const bad = (message: string, hint: string) => new ValidationError('INVALID_ARGUMENT', message, { hint });
    let url: URL;
    try {
      url = new URL(baseUrl);
    } catch {
      throw bad(`exchange URL ${JSON.stringify(baseUrl)} is not a URL`, 'give the exchange\'s address, e.g. http://127.0.0.1:8790');
    }
    // The calls' paths are appended to it: a query or a fragment would end up before them, or swallow them.
    if (url.search !== '' || url.hash !== '' || /[?#]/.test(baseUrl)) throw bad(`exchange URL ${JSON.stringify(baseUrl)} must not hold a ? query or a # fragment`, 'give the exchange\'s address only, e.g. http://127.0.0.1:8790');
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw bad(`exchange URL ${JSON.stringify(baseUrl)} must be http:// or https://`, 'e.g. http://127.0.0.1:8790');
    // fetch refuses every request to such a URL, and the URL is printed in the daemon's log.
    if (url.username !== '' || url.password !== '') throw bad('exchange URL must not hold a user name or password', 'give the exchange\'s address only, e.g. http://127.0.0.1:8790');
    // fetch would refuse every call at once ("bad port"): the daemon would wait for an exchange it can never reach.
    if (url.port !== '' && fetchBlocksPort(Number(url.port))) {
      throw bad(`exchange URL ${JSON.stringify(url.origin)} uses port ${url.port}, which fetch refuses to connect to (a blocked port)`, 'run the exchange on another port');
    }
    for (const key of Object.keys(options)) {
      if (key !== 'timeoutMs' && key !== 'id') throw bad(`unknown HttpExchange option "${key}"`, 'the options are timeoutMs and id');
    }
    if (options.id !== undefined && (typeof options.id !== 'string' || options.id === '')) throw bad(`id must be a non-empty string, got ${described(options.id)}`, 'name the exchange account, e.g. its URL');
    const timeoutMs = options.timeoutMs ?? 5000;
    // A timer holds at most 2^31 - 1 ms (~24.8 days): past it Node fires it at once, and every call would time out.
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0 || timeoutMs > 2_147_483_647) {
      throw bad(`timeoutMs must be a whole number from 1 to 2147483647, got ${String(timeoutMs)}`, 'give the milliseconds a call may take, e.g. 5000');
    }
    this.baseUrl = url.href.replace(/\/+$/, '');
    this.timeoutMs = timeoutMs;
    this.id = options.id ?? this.baseUrl;
  }

  async placeOrder(order: OrderRequest): Promise<ExchangeOrder> {
    const body: Record<string, string> = { clientOrderId: order.clientOrderId, token: order.token, side: order.side };
    // The paper exchange refuses an order for a chain it does not trade on (400): never placed on another.
    if (order.chain !== undefined) body['chain'] = order.chain;
    if (order.baseAmount !== undefined) body['baseAmount'] = order.baseAmount;
    if (order.quoteAmount !== undefined) body['quoteAmount'] = order.quoteAmount;
    const what = `order ${order.clientOrderId}`;
    const answer = await this.#call('POST', '/orders', what, JSON.stringify(body));
    const placed = parseExchangeOrder(answer.body, what);
    if (placed.clientOrderId !== order.clientOrderId) throw invalid(what, `it answered with order ${placed.clientOrderId}`);
    return placed;
  }

  async getOrder(clientOrderId: string): Promise<ExchangeOrder | null> {
    const what = `the lookup of order ${clientOrderId}`;
    const answer = await this.#call('GET', `/orders/${encodeURIComponent(clientOrderId)}`, what, undefined, true);
    if (answer.status === 404) {
      // Only the exchange's own "no such order" counts: a 404 from a wrong URL or a proxy must not
      // read as "never received", or recovery would re-send what may already be filled.
      if ((answer.body as { code?: unknown } | undefined)?.code === 'ORDER_NOT_FOUND') return null;
      throw wrongUrl(this.baseUrl, what);
    }
    const found = parseExchangeOrder(answer.body, what);
    if (found.clientOrderId !== clientOrderId) throw invalid(what, `it answered with order ${found.clientOrderId}`);
    return found;
  }

  async getPrice(token: string, chain?: string): Promise<Decimal> {
    const what = `the price of ${token}`;
    const { body } = await this.#call('GET', `/price/${encodeURIComponent(token)}${chain === undefined ? '' : `?chain=${encodeURIComponent(chain)}`}`, what);
    const answer = body as { token?: unknown; price?: unknown } | null;
    // The answer names its token: another token's price is no answer to this question.
    if (typeof answer?.token !== 'string' || answer.token.toLowerCase() !== token.toLowerCase()) throw invalid(what, `it answered for token ${JSON.stringify(answer?.token)}`);
    const price = answer.price;
    if (!isDecimal(price) || price === '0' || price.startsWith('-')) throw invalid(what, `price ${JSON.stringify(price)} is not a canonical positive decimal`);
    return price;
  }

  async getPrices(tokens: readonly string[], chain?: string): Promise<ReadonlyMap<string, Decimal>> {
    const out = new Map<string, Decimal>();
    for (let i = 0; i < tokens.length; i += BATCH) {
      const chunk = tokens.slice(i, i + BATCH);
      const what = chunk.length === 1 ? `the price of ${chunk[0]}` : `the prices of ${chunk.length} tokens`;
      const { body } = await this.#call('POST', '/prices', what, JSON.stringify(chain === undefined ? { tokens: chunk } : { tokens: chunk, chain }));
      const prices = (body as { prices?: unknown } | null)?.prices;
      if (typeof prices !== 'object' || prices === null) throw invalid(what, 'prices is not an object');
      for (const token of chunk) {
        // A token without a valid price is left out: the caller asks for it alone.
        const price = Object.hasOwn(prices, token) ? (prices as Record<string, unknown>)[token] : undefined;
        if (isDecimal(price) && price !== '0' && !price.startsWith('-')) out.set(token, price);
      }
    }
    return out;
  }

  async getOrders(clientOrderIds: readonly string[]): Promise<ReadonlyMap<string, ExchangeOrder>> {
    const out = new Map<string, ExchangeOrder>();
    for (let i = 0; i < clientOrderIds.length; i += BATCH) {
      const chunk = clientOrderIds.slice(i, i + BATCH);
      const what = `the lookup of ${chunk.length} orders`;
      const { body } = await this.#call('POST', '/orders/query', what, JSON.stringify({ clientOrderIds: chunk }));
      if (!Array.isArray(body)) throw invalid(what, 'not a JSON array');
      const asked = new Set(chunk);
      for (const item of body) {
        const order = parseExchangeOrder(item, what);
        if (!asked.has(order.clientOrderId)) throw invalid(what, `it answered with order ${order.clientOrderId}, which was not asked for`);
        out.set(order.clientOrderId, order);
      }
    }
    return out;
  }

  async getBalances(): Promise<Readonly<Record<string, Decimal>>> {
    const what = 'the balances';
    const { body } = await this.#call('GET', '/balances', what, undefined, false, true);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw invalid(what, 'not a JSON object');
    const entries = Object.entries(body);
    for (const [asset, amount] of entries) {
      if (!isDecimal(amount)) throw invalid(what, `${asset} ${JSON.stringify(amount)} is not a canonical decimal`);
    }
    // fromEntries defines own properties, so even an asset named "__proto__" cannot touch the prototype.
    return Object.freeze(Object.fromEntries(entries) as Record<string, Decimal>);
  }

  /**
   * `allow404`: a 404 is the caller's to read (an order lookup). `asksNothing`: the call sends no
   * input the exchange could refuse (the balances), so a 4xx other than an authorisation refusal
   * means that no exchange of this protocol is at the URL.
   */
  async #call(method: string, path: string, what: string, body?: string, allow404 = false, asksNothing = false): Promise<{ status: number; body: unknown }> {
    const url = `${this.baseUrl}${path}`;
    let status: number;
    let text: string;
    try {
      const res = await fetch(url, {
        method,
        headers: body === undefined ? { accept: 'application/json' } : { accept: 'application/json', 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body }),
        redirect: 'error',
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      status = res.status;
      text = await readLimited(res, MAX_ANSWER_BYTES);
    } catch (e) {
      if (e instanceof ExchangeUnavailableError) throw new ExchangeUnavailableError(`exchange at ${this.baseUrl} answered ${what} with ${e.message}`);
      const err = e as Error & { cause?: Error };
      const why = err.name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : (err.cause?.message ?? err.message);
      throw new ExchangeUnavailableError(`exchange at ${this.baseUrl} gave no answer to ${what}: ${why}`, { cause: e });
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    // No final answer (fetch follows no redirect here: a 3xx left is one without a Location): unknown.
    if (status < 200 || (status >= 300 && status < 400)) throw new ExchangeUnavailableError(`exchange at ${this.baseUrl} gave no final answer to ${what} (HTTP ${status})`);
    if (status >= 200 && status < 300) {
      // Not JSON at all (a proxy's or a maintenance page, an empty body): no answer from the exchange.
      if (parsed === undefined) throw new ExchangeUnavailableError(`exchange at ${this.baseUrl} answered ${what} with a body that is not JSON (HTTP ${status})`);
      return { status, body: parsed };
    }
    const message = typeof (parsed as { error?: unknown } | undefined)?.error === 'string' ? (parsed as { error: string }).error : text.slice(0, 200);
    if (status === 404) {
      if (allow404) return { status, body: parsed };
      // The exchange's own refusal (a JSON error of its protocol, such as "no market for this
      // token") is a refusal; anything else (its "no endpoint", a proxy's page) is no exchange.
      // A web framework's default 404 document (Spring's {"status":404,"error":"Not Found",…})
      // is JSON too, but says no more than the status line: no exchange either.
      // "No such order" is the answer of an order lookup only: to any other call (a URL ending in
      // /orders, whose /orders/balances reads as the lookup of an order "balances"), no exchange.
      const ownError =
        typeof (parsed as { error?: unknown } | undefined)?.error === 'string' &&
        !message.startsWith('no endpoint ') &&
        !/^not found$/i.test(message.trim()) &&
        (parsed as { code?: unknown }).code !== 'ORDER_NOT_FOUND';
      if (!ownError) throw wrongUrl(this.baseUrl, what);
    }
    // The protocol allows every method it is asked with: a 405 is something else at this URL.
    if (status === 405 || (asksNothing && status >= 400 && status < 500 && status !== 401 && status !== 403 && status !== 408 && status !== 429)) {
      throw wrongUrl(this.baseUrl, what, status);
    }
    // A 409 is a refusal here like any other 4xx: by the Exchange contract an order placed again
    // under its clientOrderId is answered with that order, never with a conflict.
    if (status >= 500 || status === 408 || status === 429) throw new ExchangeUnavailableError(`exchange at ${this.baseUrl} failed ${what} (HTTP ${status}): ${message}`);
    throw new ExchangeRejectedError(`exchange refused ${what} (HTTP ${status}): ${message}`);
  }
}

/**
 * The most an answer may hold: a batch of 1,000 orders is ~300 kB. A larger one (a broken or
 * hostile server) is not read whole into memory.
 */
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

/** The body as text, refused (ExchangeUnavailableError: what was asked may have happened) past `limit` bytes. */
async function readLimited(res: Response, limit: number): Promise<string> {
  const tooLarge = () => new ExchangeUnavailableError(`an answer larger than ${limit} bytes (HTTP ${res.status}), not read`);
  const declared = Number(res.headers.get('content-length') ?? NaN);
  if (declared > limit) {
    await res.body?.cancel();
    throw tooLarge();
  }
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > limit) throw tooLarge(); // leaving the loop cancels the stream
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** A 404 (or another status) that is not the exchange's own answer: nothing at this URL speaks the protocol. */
function wrongUrl(baseUrl: string, what: string, status = 404): ExchangeUnavailableError {
  return new ExchangeUnavailableError(`exchange at ${baseUrl} answered ${status} to ${what}: no such endpoint there; is the --exchange URL right?`);
}
