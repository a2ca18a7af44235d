/**
 * The paper exchange: a local HTTP server (127.0.0.1 only) that fills market orders at deterministic
 * prices and keeps its orders and balances in its own SQLite file. See docs/paper-exchange.md.
 *
 * | endpoint | answer |
 * |---|---|
 * | `POST /orders` | 200 with the order (new, or the existing one for a repeated clientOrderId); 400 on bad input, or a `chain` other than its own (`code: 'WRONG_CHAIN'`) |
 * | `GET /orders/:clientOrderId` | 200 with the order, or 404 `{ error, code: 'ORDER_NOT_FOUND' }` |
 * | `GET /orders` | 200 with every order, in placement order |
 * | `GET /price/:token[?chain=C]` | 200 `{ token, price, time }`; 400 `WRONG_CHAIN` for another chain |
 * | `POST /prices` | body `{ tokens: [...], chain? }` (at most 10 000): 200 `{ time, prices: { <token>: price } }`, keyed as asked; 400 `WRONG_CHAIN` for another chain |
 * | `POST /orders/query` | body `{ clientOrderIds: [...] }` (at most 10 000): 200 with the orders found, in the order asked |
 * | `GET /balances` | 200 `{ USD, <token>: amount, … }` |
 * | `GET /health` | 200 `{ status: 'ok', time, chain }`; never subject to fault injection |
 *
 * Fault injection (for tests), decided by a PRNG seeded from `seed` so a run is reproducible:
 * `latencyMs` delays every request before it is handled; `errorRate` answers that share of requests
 * 503 without doing anything; `dropRate` executes and commits that share of `POST /orders`, then
 * destroys the connection without an answer; `lateRate` answers that share of new orders 503 and
 * executes them 50–500 ms later (an exchange whose engine lags its API: a lookup meanwhile finds
 * nothing, the order fills all the same; the same clientOrderId sent again meanwhile is the one order).
 *
 * @example
 * const ex = await startPaperExchange({ port: 0, dataFile: '/tmp/paper.db', seed: '7' });
 * const client = new HttpExchange(ex.url);
 * await client.getPrice('0xbbd9aDe16525acb4B336b6dAd3b9762901522B07');
 * await ex.close();
 */
import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { isBotstateError, ValidationError } from '../../errors.ts';
import { normalizeAddress } from '../../jobs/address.ts';
import { DEFAULT_CHAIN, normalizeChain } from '../../jobs/job-rows.ts';
import { cmp, integerDigits, isDecimal, type Decimal } from '../../money/decimal.ts';
import { described, shown } from '../../util/values.ts';
import type { ExchangeOrder, OrderRequest } from '../exchange.ts';
import { MAX_ORDER_INTEGER_DIGITS, PaperBook } from './paper-book.ts';
import { MAX_PRICE, MIN_PRICE, PaperMarket, stepAt } from './paper-market.ts';

/** Options of {@link startPaperExchange}. Every one has a default. */
export interface PaperExchangeOptions {
  /** TCP port on 127.0.0.1; 0 picks a free one. Default 8790. */
  readonly port?: number;
  /** The exchange's SQLite file. Default `./paper-exchange.db`. */
  readonly dataFile?: string;
  /** Seeds the price paths and the fault PRNG. Default `'1'`. */
  readonly seed?: string;
  /** One step's move (one standard deviation): `'0.01'` = 1 %. Default `'0.01'`; `'0'` = flat prices. */
  readonly volatility?: Decimal;
  /** Milliseconds per price step. Default 1000. */
  readonly stepMs?: number;
  /** The base start price in USD. Default `'1'`. */
  readonly startPrice?: Decimal;
  /** Each token starts at startPrice × [1 − spread, 1 + spread), by seed and token. Default `'0.5'`; `'0'` = exactly startPrice. */
  readonly startPriceSpread?: Decimal;
  /** USD balance of a new data file. Default `'1000000000'`. */
  readonly initialUsd?: Decimal;
  /** Added before every request is handled (not /health). Default 0. */
  readonly latencyMs?: number;
  /** Share (0..1) of requests answered 503 without doing anything (not /health). Default 0. */
  readonly errorRate?: number;
  /** Share (0..1) of `POST /orders` executed and committed, then dropped without an answer. Default 0. */
  readonly dropRate?: number;
  /**
   * Share (0..1) of new orders answered 503, then executed 50–500 ms later, unless their
   * clientOrderId has been placed meanwhile (sent again). Orders still waiting when the exchange
   * closes are never executed. Default 0.
   */
  readonly lateRate?: number;
  /**
   * The chain it trades on (a botstate chain name). An order or a price asked for another chain is
   * refused: 400 `{ error, code: 'WRONG_CHAIN' }`, nothing done. One that names none is taken as
   * this chain's. Default `base`, botstate's default chain. Kept in the data file: a file of one
   * chain is refused (ValidationError) for another.
   */
  readonly chain?: string;
  /** The clock, in ms since 1970. Default `Date.now`; tests pass a fake one to move along the path. */
  readonly now?: () => number;
}

/** A running paper exchange. */
export interface PaperExchangeHandle {
  /** `http://127.0.0.1:PORT`. */
  readonly url: string;
  readonly port: number;
  /** The underlying server (its address() is 127.0.0.1). */
  readonly server: Server;
  /** Stops listening, drops open connections, saves the price cache and closes the data file. Idempotent. */
  close(): Promise<void>;
}

export const PAPER_DEFAULTS = Object.freeze({
  port: 8790,
  dataFile: './paper-exchange.db',
  seed: '1',
  volatility: '0.01',
  stepMs: 1000,
  startPrice: '1',
  startPriceSpread: '0.5',
  initialUsd: '1000000000',
  latencyMs: 0,
  errorRate: 0,
  dropRate: 0,
  lateRate: 0,
  chain: DEFAULT_CHAIN,
});

const OPTION_NAMES = new Set<string>([...Object.keys(PAPER_DEFAULTS), 'now']);
const HOST = '127.0.0.1';
/** Room for the batch endpoints' 10,000 items of the longest kind (128-character clientOrderIds). */
const MAX_BODY = 2 * 1024 * 1024;
/** Not `.` or `..` alone: `GET /orders/..` is a request for `/`, so such an order could never be looked up. */
const CLIENT_ORDER_ID_RE = /^(?!\.\.?$)[\x21-\x7e]{1,128}$/;
const ORDER_FIELDS = new Set(['clientOrderId', 'token', 'chain', 'side', 'baseAmount', 'quoteAmount']);

type Resolved = Required<Omit<PaperExchangeOptions, 'now'>> & { now: () => number };

function bad(message: string): ValidationError {
  return new ValidationError('INVALID_ARGUMENT', message, { hint: 'see botstate paper-exchange --help' });
}

function resolveOptions(options: PaperExchangeOptions): Resolved {
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) throw bad(`unknown paper exchange option "${key}"`);
  }
  const o = { ...PAPER_DEFAULTS, now: Date.now, ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) } as Resolved;
  const int = (name: string, v: number, lo: number, hi: number) => {
    if (!Number.isSafeInteger(v) || v < lo || v > hi) throw bad(`${name} must be an integer from ${lo} to ${hi}, got ${String(v)}`);
  };
  const rate = (name: string, v: number) => {
    if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw bad(`${name} must be a number from 0 to 1, got ${String(v)}`);
  };
  const dec = (name: string, v: Decimal, lo: Decimal, hi: Decimal | null, hiOpen = false) => {
    // As everywhere in botstate, an amount is a decimal string: a JS number may already be rounded.
    if (typeof v !== 'string') throw bad(`${name} must be given as a decimal string (such as "0.5"), got ${typeof v === 'number' ? `the number ${String(v)}` : `a ${typeof v}`}`);
    if (!isDecimal(v) || cmp(v, lo) < 0 || (hi !== null && cmp(v, hi) > (hiOpen ? -1 : 0))) {
      throw bad(`${name} must be a decimal from ${lo}${hi === null ? ' up' : ` to ${hi}${hiOpen ? ' (exclusive)' : ''}`}, got ${JSON.stringify(v)}`);
    }
  };
  int('port', o.port, 0, 65535);
  if (typeof o.dataFile !== 'string' || o.dataFile === '') throw bad('dataFile must be a path');
  if (typeof o.seed !== 'string' || o.seed === '') throw bad('seed must be a non-empty string');
  dec('volatility', o.volatility, '0', '1');
  int('stepMs', o.stepMs, 1, 2 ** 31);
  dec('startPrice', o.startPrice, MIN_PRICE, MAX_PRICE);
  dec('startPriceSpread', o.startPriceSpread, '0', '1', true);
  dec('initialUsd', o.initialUsd, '0', null);
  int('latencyMs', o.latencyMs, 0, 600_000);
  rate('errorRate', o.errorRate);
  rate('dropRate', o.dropRate);
  rate('lateRate', o.lateRate);
  // Not normalizeChain's own refusal: it reads null as the default chain, and names no flag.
  const badChain = () => bad(`chain must be a chain name: letters, digits and - (at most 32), such as base or ethereum; got ${typeof o.chain === 'string' ? JSON.stringify(shown(o.chain)) : described(o.chain)}`);
  if (typeof o.chain !== 'string') throw badChain();
  try {
    (o as { chain: string }).chain = normalizeChain(o.chain);
  } catch {
    throw badChain();
  }
  if (typeof o.now !== 'function') throw bad('now must be a function returning ms since 1970');
  // Whole milliseconds: a clock with fractions (performance.timeOrigin + performance.now()) would
  // store an epoch a new data file could never be opened with again.
  const clock = o.now;
  o.now = () => {
    const ms = clock();
    if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) throw bad(`now() must return ms since 1970, got ${String(ms)}`);
    return Math.floor(ms);
  };
  return Object.freeze(o);
}

/** A reproducible stream of uniform [0, 1) values: SHA-256(seed, stream, counter). Not for prices. */
function faultStream(seed: string, stream: string): () => number {
  let counter = 0;
  return () => createHash('sha256').update(`botstate-paper-fault\0${seed}\0${stream}\0${counter++}`).digest().readUInt32BE(0) / 2 ** 32;
}

class HttpError extends Error {
  readonly status: number;
  readonly headers: Record<string, string>;
  /** Answered beside the message, for a client to tell this refusal from others. */
  readonly code: string | undefined;
  constructor(status: number, message: string, headers: Record<string, string> = {}, code?: string) {
    super(message);
    this.status = status;
    this.headers = headers;
    this.code = code;
  }
}

/** Refuses (400 WRONG_CHAIN) a request that names a chain other than `own`; one that names none is `own`'s. */
function checkChain(given: unknown, own: string): void {
  if (given === undefined) return;
  if (typeof given !== 'string') throw new HttpError(400, `chain must be a string, got ${described(given)}`);
  if (given.toLowerCase() !== own) {
    throw new HttpError(400, `this exchange trades on chain ${own}, not ${JSON.stringify(shown(given))}: nothing was done`, {}, 'WRONG_CHAIN');
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    // The rest of the body is not read: the connection cannot carry another request, and is closed.
    if (size > MAX_BODY) throw new HttpError(413, `request body larger than ${MAX_BODY} bytes`, { connection: 'close' });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Validates a `POST /orders` body into an {@link OrderRequest} with a canonical EIP-55 token, on the exchange's `chain`. */
export function parseOrderRequest(text: string, chain: string): OrderRequest {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'the body is not JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'the body must be a JSON object');
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).find((k) => !ORDER_FIELDS.has(k));
  if (unknown !== undefined) throw new HttpError(400, `unknown field "${unknown}"; an order has ${[...ORDER_FIELDS].join(', ')}`);
  const { clientOrderId, token, side, baseAmount, quoteAmount } = b;
  checkChain(b['chain'], chain);
  if (typeof clientOrderId !== 'string' || !CLIENT_ORDER_ID_RE.test(clientOrderId)) {
    throw new HttpError(400, 'clientOrderId must be 1 to 128 printable ASCII characters without spaces, and not "." or ".." alone');
  }
  if (typeof token !== 'string') throw new HttpError(400, 'token must be an EVM address string');
  const canonicalToken = canonicalTokenOr400(token);
  if (side !== 'BUY' && side !== 'SELL') throw new HttpError(400, `side must be "BUY" or "SELL", got ${JSON.stringify(side)}`);
  if ((baseAmount === undefined) === (quoteAmount === undefined)) throw new HttpError(400, 'give exactly one of baseAmount and quoteAmount');
  const name = baseAmount !== undefined ? 'baseAmount' : 'quoteAmount';
  const amount = name === 'baseAmount' ? baseAmount : quoteAmount;
  if (!isDecimal(amount)) {
    throw new HttpError(400, `${name} must be a canonical decimal string (digits, an optional "." and at most 18 decimals, no leading or trailing zeros, no exponent), got ${JSON.stringify(amount)}`);
  }
  if (amount === '0' || amount.startsWith('-')) throw new HttpError(400, `${name} must be positive, got "${amount}"`);
  if (integerDigits(amount) > MAX_ORDER_INTEGER_DIGITS) throw new HttpError(400, `${name} is too large: at most ${MAX_ORDER_INTEGER_DIGITS} integer digits`);
  return name === 'baseAmount'
    ? { clientOrderId, token: canonicalToken, chain, side, baseAmount: amount }
    : { clientOrderId, token: canonicalToken, chain, side, quoteAmount: amount };
}

/** `{ "<field>": ["…", …] }`: a list of at most 10 000 non-empty strings, and the body's other fields. */
function listField(body: string, field: string): { list: string[]; fields: Record<string, unknown> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new HttpError(400, 'the body is not JSON');
  }
  const list = (parsed as Record<string, unknown> | null)?.[field];
  if (!Array.isArray(list) || list.length > 10_000 || !list.every((x) => typeof x === 'string' && x.length > 0 && x.length <= 128)) {
    throw new HttpError(400, `${field} must be an array of at most 10000 non-empty strings`);
  }
  return { list: list as string[], fields: parsed as Record<string, unknown> };
}

function canonicalTokenOr400(token: string): string {
  try {
    return normalizeAddress(token, { field: 'token' });
  } catch (e) {
    if (isBotstateError(e)) throw new HttpError(400, e.message);
    throw e;
  }
}

/**
 * Starts a paper exchange on 127.0.0.1. Resolves once it is listening.
 * @throws ValidationError on a bad option, StorageError when the data file cannot be used,
 *   BotstateError `INVALID_ARGUMENT` when the port is taken.
 */
export async function startPaperExchange(options: PaperExchangeOptions = {}): Promise<PaperExchangeHandle> {
  const o = resolveOptions(options);
  const market = new PaperMarket({ seed: o.seed, volatility: o.volatility, startPrice: o.startPrice, startPriceSpread: o.startPriceSpread });
  // A start that fails (the port is taken) must not leave a new file behind: its epoch and
  // --initial-usd would then be fixed for the next start.
  const newFile = o.dataFile !== ':memory:' && !existsSync(o.dataFile);
  const book = PaperBook.open(o.dataFile, { initialUsd: o.initialUsd, nowMs: o.now(), chain: o.chain });
  for (const p of book.loadPrices(market.fingerprint)) market.prime(p.token, p.step, p.price);
  const errorDraw = faultStream(o.seed, 'error');
  const dropDraw = faultStream(o.seed, 'drop');
  const lateDraw = faultStream(o.seed, 'late');
  /** Orders accepted late, waiting to be executed, by clientOrderId. */
  const late = new Map<string, NodeJS.Timeout>();
  const place = (request: OrderRequest): ExchangeOrder => {
    const { order } = book.place(request, priceNow(request.token).price, new Date(o.now()).toISOString());
    book.savePrices(market.fingerprint, market.cachedOf(request.token));
    return order;
  };
  const aborter = new AbortController();
  let closed = false;

  const priceNow = (token: string): { price: Decimal; step: number; time: string } => {
    const ms = o.now();
    const step = stepAt(book.epochMs, o.stepMs, ms);
    return { price: market.priceAt(token, step), step, time: new Date(ms).toISOString() };
  };

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? 'GET';
    const [path = '/', query = ''] = (req.url ?? '/').split('?');
    const parts = path.split('/').filter((p, i) => i > 0 || p !== '');
    if (method === 'GET' && path === '/health') return send(res, 200, { status: 'ok', time: new Date(o.now()).toISOString(), chain: o.chain });

    const body = method === 'POST' ? await readBody(req) : '';
    if (o.latencyMs > 0) await sleep(o.latencyMs, undefined, { signal: aborter.signal });
    if (closed) return void res.destroy();
    if (o.errorRate > 0 && errorDraw() < o.errorRate) return send(res, 503, { error: 'injected fault: service unavailable (--error-rate)' });

    const segment = (i: number): string => {
      try {
        return decodeURIComponent(parts[i]!);
      } catch {
        throw new HttpError(400, 'malformed percent-encoding in the path');
      }
    };
    const allow = (methods: string): void => {
      if (!methods.split(', ').includes(method)) throw new HttpError(405, `${method} is not allowed on ${path}; use ${methods}`, { allow: methods });
    };
    if (parts[0] === 'orders' && parts.length === 1) {
      allow('GET, POST');
      if (method === 'GET') return send(res, 200, book.list());
      const request = parseOrderRequest(body, o.chain);
      const existing = book.get(request.clientOrderId);
      const waiting = late.get(request.clientOrderId);
      if (waiting !== undefined) {
        // Sent again while it waits: the one order, executed now.
        clearTimeout(waiting);
        late.delete(request.clientOrderId);
      } else if (existing === null && o.lateRate > 0 && lateDraw() < o.lateRate) {
        const timer = setTimeout(() => {
          late.delete(request.clientOrderId);
          if (!closed && book.get(request.clientOrderId) === null) place(request);
        }, 50 + Math.floor(lateDraw() * 450));
        late.set(request.clientOrderId, timer);
        return send(res, 503, { error: 'injected fault: accepted, to be executed later (--late-rate)' });
      }
      const order = existing ?? place(request);
      if (o.dropRate > 0 && dropDraw() < o.dropRate) return void res.destroy();
      return send(res, 200, order);
    }
    if (parts[0] === 'orders' && parts[1] === 'query' && parts.length === 2) {
      allow('POST');
      const ids = listField(body, 'clientOrderIds').list;
      return send(res, 200, ids.map((id) => book.get(id)).filter((order) => order !== null));
    }
    if (parts[0] === 'prices' && parts.length === 1) {
      allow('POST');
      const { list: tokens, fields } = listField(body, 'tokens');
      checkChain(fields['chain'], o.chain);
      const prices: Record<string, Decimal> = {};
      let time = new Date(o.now()).toISOString();
      for (const token of tokens) {
        // A token that is not an address has no price: left out (the Exchange contract), not the whole batch refused.
        let canonical: string;
        try {
          canonical = canonicalTokenOr400(token);
        } catch {
          continue;
        }
        const now = priceNow(canonical);
        prices[token] = now.price;
        time = now.time;
      }
      return send(res, 200, { time, prices });
    }
    if (parts[0] === 'orders' && parts.length === 2) {
      allow('GET');
      const order = book.get(segment(1));
      return order === null ? send(res, 404, { error: `no order with clientOrderId ${JSON.stringify(segment(1))}`, code: 'ORDER_NOT_FOUND' }) : send(res, 200, order);
    }
    if (parts[0] === 'price' && parts.length === 2) {
      allow('GET');
      checkChain(new URLSearchParams(query).get('chain') ?? undefined, o.chain);
      const token = canonicalTokenOr400(segment(1));
      const { price, time } = priceNow(token);
      return send(res, 200, { token, price, time });
    }
    if (parts[0] === 'balances' && parts.length === 1) {
      allow('GET');
      return send(res, 200, book.balances());
    }
    if (parts[0] === 'health' && parts.length === 1) allow('GET');
    throw new HttpError(404, `no endpoint ${method} ${path}`);
  }

  const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
    route(req, res).catch((e: unknown) => {
      if (res.headersSent || res.destroyed) return;
      if (closed || (e instanceof Error && e.name === 'AbortError')) return void res.destroy();
      if (e instanceof HttpError) return send(res, e.status, e.code === undefined ? { error: e.message } : { error: e.message, code: e.code }, e.headers);
      send(res, 500, { error: `paper exchange failure: ${(e as Error).message}` });
    });
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, HOST, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    book.close();
    if (newFile) for (const suffix of ['', '-wal', '-shm']) rmSync(`${o.dataFile}${suffix}`, { force: true });
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES') {
      throw new ValidationError('INVALID_ARGUMENT', `cannot listen on ${HOST}:${o.port} (${code === 'EADDRINUSE' ? 'the port is in use' : 'permission denied'})`, {
        hint: 'pick another --port, or --port 0 for a free one',
        cause: e,
      });
    }
    throw e;
  }
  const port = (server.address() as AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${HOST}:${port}`,
    port,
    server,
    close() {
      closing ??= (async () => {
        closed = true;
        aborter.abort();
        for (const timer of late.values()) clearTimeout(timer);
        late.clear();
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await stopped;
        try {
          book.savePrices(market.fingerprint, market.cached());
        } finally {
          book.close();
        }
      })();
      return closing;
    },
  };
}
