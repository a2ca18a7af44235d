/**
 * The paper exchange (issue 3 §2) and its HTTP client: real servers on 127.0.0.1 port 0, real SQLite
 * files in a temp directory, and once the real `botstate paper-exchange` binary (run `npm run build`
 * first; `npm test` does it).
 *
 * Prices move with a fake clock passed as `now`, so every step is chosen by the test, never by timing.
 * Amounts are generated as bigints and formatted; no float touches a price or an amount.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { BotstateError, isBotstateError, StorageError, ValidationError } from '../../src/errors.ts';
import { ExchangeInvalidAnswerError, ExchangeRejectedError, ExchangeUnavailableError, type ExchangeOrder, type OrderRequest } from '../../src/engine/exchange.ts';
import { HttpExchange } from '../../src/engine/exchanges/http-exchange.ts';
import { fillAmounts, PaperBook } from '../../src/engine/exchanges/paper-book.ts';
import { MAX_PRICE, MIN_PRICE, PaperMarket, roundSignificant, stepAt } from '../../src/engine/exchanges/paper-market.ts';
import { startPaperExchange, type PaperExchangeHandle, type PaperExchangeOptions } from '../../src/engine/exchanges/paper-server.ts';
import { add, cmp, fromUnits, isDecimal, mul, sub, toUnits } from '../../src/money/decimal.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'botstate.js');
const TOKEN = '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07';
const TOKEN2 = '0x00000000000000000000000000000000000000b2';
const T0 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const ONE = 10n ** 18n;

let dir: string;
let files = 0;
const dataFile = (): string => join(dir, `paper-${files++}.db`);
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'botstate-paper-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** A settable clock. */
function clock(start = T0): { now: () => number; at(ms: number): void; step(n: number, stepMs?: number): void } {
  let t = start;
  return { now: () => t, at: (ms) => void (t = ms), step: (n, stepMs = 1000) => void (t = start + n * stepMs) };
}

async function withExchange<T>(options: PaperExchangeOptions, fn: (ex: PaperExchangeHandle, client: HttpExchange) => Promise<T>): Promise<T> {
  const ex = await startPaperExchange({ port: 0, dataFile: dataFile(), ...options });
  try {
    return await fn(ex, new HttpExchange(ex.url, { timeoutMs: 5000 }));
  } finally {
    await ex.close();
  }
}

async function getJson(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(url);
  return { status: res.status, body: await res.json() };
}

async function post(url: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${url}/orders`, { method: 'POST', body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** Σ, exact. */
const sum = (xs: readonly string[]): string => xs.reduce((a, b) => add(a, b), '0');

describe('paper market: deterministic price paths', () => {
  const params = { seed: '1', volatility: '0.01', startPrice: '1', startPriceSpread: '0.5' };

  it('pins the path of seed 1 (a restarted or upgraded exchange must continue the same path)', () => {
    const m = new PaperMarket(params);
    assert.equal(m.priceAt(TOKEN, 0), '1.1812286377');
    assert.equal(m.priceAt(TOKEN, 1), '1.17842967232');
    assert.equal(m.priceAt(TOKEN, 2), '1.18265872009');
    assert.equal(m.z(TOKEN, 1), '-0.2369537353515625');
  });

  it('same seed → same path; another seed or token → another path', () => {
    const a = new PaperMarket(params);
    const b = new PaperMarket(params);
    const c = new PaperMarket({ ...params, seed: '2' });
    const pathOf = (m: PaperMarket, token: string) => Array.from({ length: 200 }, (_, n) => m.priceAt(token, n));
    const pa = pathOf(a, TOKEN);
    assert.deepEqual(pathOf(b, TOKEN), pa);
    const pc = pathOf(c, TOKEN);
    assert.ok(pc.filter((p, i) => p !== pa[i]).length > 190, 'another seed gives another path');
    const other = pathOf(a, TOKEN2);
    assert.ok(other.filter((p, i) => p !== pa[i]).length > 190, 'another token gives another path');
    assert.ok(new Set(pa).size > 150, 'the price moves');
  });

  it('every price is canonical, 12 significant digits at most, within the bounds, each step within ×[0.5, 1.5]', () => {
    for (const volatility of ['0.01', '0.3', '1']) {
      const m = new PaperMarket({ ...params, volatility });
      let prev = m.priceAt(TOKEN, 0);
      let clamped = 0;
      for (let n = 1; n <= 300; n++) {
        const p = m.priceAt(TOKEN, n);
        assert.ok(isDecimal(p) && cmp(p, MIN_PRICE) >= 0 && cmp(p, MAX_PRICE) <= 0, `${p} at step ${n}`);
        assert.ok(toUnits(p).toString().replace(/0+$/, '').length <= 12, `${p} has more than 12 significant digits`);
        const lo = roundSignificant(mul(prev, '0.5', 'half-even'));
        const hi = roundSignificant(mul(prev, '1.5', 'half-even'));
        assert.ok(cmp(p, lo) >= 0 && cmp(p, hi) <= 0, `step ${n}: ${prev} → ${p}`);
        if (p === lo || p === hi) clamped++;
        prev = p;
      }
      if (volatility === '1') assert.ok(clamped > 50, `with volatility 1 the factor is clamped often (${clamped})`);
      if (volatility === '0.01') assert.equal(clamped, 0);
    }
  });

  it('volatility 0 is flat; spread 0 starts exactly at startPrice; the floor holds', () => {
    const flat = new PaperMarket({ ...params, volatility: '0', startPrice: '2.5', startPriceSpread: '0' });
    assert.equal(flat.priceAt(TOKEN, 0), '2.5');
    assert.equal(flat.priceAt(TOKEN, 1000), '2.5');
    const spread = new PaperMarket({ ...params, startPrice: '100' });
    const starts = [TOKEN, TOKEN2, '0x00000000000000000000000000000000000000c3'].map((t) => spread.startPriceOf(t));
    for (const s of starts) assert.ok(cmp(s, '50') >= 0 && cmp(s, '150') < 0, s);
    assert.equal(new Set(starts).size, 3);
    const floor = new PaperMarket({ ...params, volatility: '1', startPrice: MIN_PRICE, startPriceSpread: '0' });
    for (let n = 0; n <= 100; n++) assert.ok(cmp(floor.priceAt(TOKEN, n), MIN_PRICE) >= 0);
  });

  it('z is roughly standard normal and an exact decimal', () => {
    const m = new PaperMarket(params);
    let total = 0n;
    let squares = 0n;
    const n = 4000;
    for (let i = 1; i <= n; i++) {
      const z = m.z(TOKEN, i);
      assert.ok(isDecimal(z));
      const u = toUnits(z);
      total += u;
      squares += (u * u) / ONE;
    }
    // Statistics only (z is no amount): mean within ±0.06, variance within [0.9, 1.1].
    const mean = Number((total * 1000n) / BigInt(n) / ONE) / 1000;
    const variance = Number((squares * 1000n) / BigInt(n) / ONE) / 1000;
    assert.ok(Math.abs(mean) < 0.06, `mean ${mean}`);
    assert.ok(variance > 0.9 && variance < 1.1, `variance ${variance}`);
  });

  it('the cache never changes an answer, whatever order steps are asked in', () => {
    const fresh = new PaperMarket(params);
    const expected = Array.from({ length: 301 }, (_, n) => fresh.priceAt(TOKEN, n));
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 300 }), { minLength: 1, maxLength: 20 }), (steps) => {
        const m = new PaperMarket(params);
        for (const s of steps) assert.equal(m.priceAt(TOKEN, s), expected[s]);
      }),
      { numRuns: 50 },
    );
    const primed = new PaperMarket(params);
    primed.prime(TOKEN, 250, expected[250]!);
    assert.equal(primed.priceAt(TOKEN, 300), expected[300]);
  });

  it('the walk, computed in integer units, is the walk in decimals step for step', () => {
    const clampD = (d: string, lo: string, hi: string) => (cmp(d, lo) < 0 ? lo : cmp(d, hi) > 0 ? hi : d);
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 8 }),
        fc.integer({ min: 0, max: 10 ** 6 }).map((v) => fromUnits(BigInt(v) * 10n ** 12n)), // 0 to 1, 6 decimals
        fc.integer({ min: 1, max: 150 }),
        (seed, volatility, n) => {
          const m = new PaperMarket({ seed, volatility, startPrice: '0.001', startPriceSpread: '0.5' });
          let p = m.startPriceOf(TOKEN);
          for (let i = 1; i <= n; i++) {
            if (volatility === '0') continue;
            const factor = clampD(add('1', mul(volatility, m.z(TOKEN, i), 'half-even')), '0.5', '1.5');
            p = clampD(roundSignificant(mul(p, factor, 'half-even')), MIN_PRICE, MAX_PRICE);
          }
          assert.equal(m.priceAt(TOKEN, n), p);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('stepAt counts whole steps from the epoch and never goes below 0', () => {
    assert.equal(stepAt(T0, 1000, T0 - 5000), 0);
    assert.equal(stepAt(T0, 1000, T0 + 999), 0);
    assert.equal(stepAt(T0, 1000, T0 + 1000), 1);
    assert.equal(stepAt(T0, 250, T0 + 2600), 10);
  });
});

describe('paper book: fills and balances', () => {
  it('keeps USD and token balances exact over random order sequences; every fill favours the exchange', () => {
    const amount = fc.oneof(fc.bigInt({ min: 1n, max: ONE }), fc.bigInt({ min: 1n, max: 10n ** 24n }));
    const order = fc.record({
      side: fc.constantFrom('BUY' as const, 'SELL' as const),
      byBase: fc.boolean(),
      units: amount,
      step: fc.integer({ min: 0, max: 50 }),
      token: fc.constantFrom(TOKEN, TOKEN2),
    });
    const market = new PaperMarket({ seed: '9', volatility: '0.05', startPrice: '3', startPriceSpread: '0.5' });
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 25n }), fc.array(order, { minLength: 1, maxLength: 25 }), (initialUnits, orders) => {
        const initialUsd = fromUnits(initialUnits);
        const book = PaperBook.open(dataFile(), { initialUsd, nowMs: T0 });
        try {
          const placed: ExchangeOrder[] = [];
          orders.forEach((o, i) => {
            const a = fromUnits(o.units);
            const request: OrderRequest = { clientOrderId: `p-${i}`, token: o.token, side: o.side, ...(o.byBase ? { baseAmount: a } : { quoteAmount: a }) };
            const price = market.priceAt(o.token, o.step);
            const { order: got, created } = book.place(request, price, new Date(T0).toISOString());
            assert.equal(created, true);
            assert.equal(got.price, price);
            if (got.status === 'REJECTED') {
              // What executed: nothing.
              assert.deepEqual([got.baseAmount, got.quoteAmount], ['0', '0']);
            } else {
              assert.equal(o.byBase ? got.baseAmount : got.quoteAmount, a, 'the requested amount is kept exactly');
              // In the exchange's favour: a buyer pays at least base × price, a seller gets at most it.
              const product = toUnits(got.baseAmount) * toUnits(price);
              const paid = toUnits(got.quoteAmount) * ONE;
              assert.ok(o.side === 'BUY' ? paid >= product : paid <= product);
              assert.ok(o.side === 'BUY' ? paid - product < toUnits(price) + ONE : product - paid < toUnits(price) + ONE);
            }
            placed.push(got);
            const balances = book.balances();
            for (const v of Object.values(balances)) assert.ok(!v.startsWith('-'), `a balance went negative: ${v}`);
          });
          const filled = placed.filter((p) => p.status === 'FILLED');
          const quote = (side: string) => sum(filled.filter((p) => p.side === side).map((p) => p.quoteAmount));
          const base = (side: string, t: string) => sum(filled.filter((p) => p.side === side && p.token === t).map((p) => p.baseAmount));
          const balances = book.balances();
          assert.equal(balances['USD'], add(sub(initialUsd, quote('BUY')), quote('SELL')));
          for (const t of [TOKEN, TOKEN2]) assert.equal(balances[t] ?? '0', sub(base('BUY', t), base('SELL', t)));
          for (const r of placed.filter((p) => p.status === 'REJECTED')) assert.ok(r.error !== null && r.error.length > 0);
          assert.deepEqual(book.list(), placed);
        } finally {
          book.close();
        }
      }),
      { numRuns: 40 },
    );
  });

  it('fillAmounts rounds each way as documented', () => {
    assert.deepEqual(fillAmounts({ side: 'BUY', quoteAmount: '1' }, '3'), { baseAmount: '0.333333333333333333', quoteAmount: '1' });
    assert.deepEqual(fillAmounts({ side: 'SELL', quoteAmount: '1' }, '3'), { baseAmount: '0.333333333333333334', quoteAmount: '1' });
    assert.deepEqual(fillAmounts({ side: 'BUY', baseAmount: '0.000000000000000001' }, '0.5'), { baseAmount: '0.000000000000000001', quoteAmount: '0.000000000000000001' });
    assert.deepEqual(fillAmounts({ side: 'SELL', baseAmount: '0.000000000000000001' }, '0.5'), { baseAmount: '0.000000000000000001', quoteAmount: '0' });
  });

  it('refuses a file that is not a paper-exchange file, and leaves it alone', async () => {
    const path = dataFile();
    const db = new Database(path);
    db.exec("CREATE TABLE jobs (id TEXT); INSERT INTO jobs VALUES ('keep me')");
    db.close();
    const before = readFileSync(path);
    await assert.rejects(startPaperExchange({ port: 0, dataFile: path }), (e: unknown) => e instanceof StorageError && /not a paper-exchange file/.test(e.message));
    assert.deepEqual(readFileSync(path), before);
  });
});

describe('paper exchange over HTTP', () => {
  it('binds 127.0.0.1 only', async () => {
    await withExchange({}, async (ex) => {
      const address = ex.server.address() as AddressInfo;
      assert.equal(address.address, '127.0.0.1');
      assert.equal(address.family, 'IPv4');
      assert.equal(address.port, ex.port);
      assert.equal(ex.url, `http://127.0.0.1:${ex.port}`);
      const external = Object.values(networkInterfaces()).flat().find((i) => i !== undefined && !i.internal && i.family === 'IPv4');
      if (external !== undefined) {
        await assert.rejects(fetch(`http://${external.address}:${ex.port}/health`), TypeError, 'not reachable on another interface');
      }
    });
  });

  it('same seed → same prices at the same steps; another seed → others; the step follows the clock', async () => {
    const c = clock();
    const prices = async (seed: string): Promise<string[]> =>
      withExchange({ seed, now: c.now, stepMs: 1000 }, async (_ex, client) => {
        const out: string[] = [];
        for (const n of [0, 1, 5, 40]) {
          c.step(n);
          out.push(await client.getPrice(TOKEN));
        }
        c.step(0);
        return out;
      });
    const a = await prices('42');
    assert.deepEqual(await prices('42'), a);
    const b = await prices('43');
    assert.ok(b.every((p, i) => p !== a[i]), `${b} vs ${a}`);
    const m = new PaperMarket({ seed: '42', volatility: '0.01', startPrice: '1', startPriceSpread: '0.5' });
    assert.deepEqual(a, [0, 1, 5, 40].map((n) => m.priceAt(TOKEN, n)));
  });

  it('a restarted exchange continues the same path from the epoch stored in its file', async () => {
    const path = dataFile();
    const c = clock();
    const market = new PaperMarket({ seed: '5', volatility: '0.02', startPrice: '10', startPriceSpread: '0.5' });
    const opts = { dataFile: path, seed: '5', volatility: '0.02', startPrice: '10', stepMs: 500, now: c.now, port: 0 };
    let ex = await startPaperExchange(opts);
    try {
      c.step(30, 500);
      assert.equal(await new HttpExchange(ex.url).getPrice(TOKEN), market.priceAt(TOKEN, 30));
    } finally {
      await ex.close();
    }
    c.step(75, 500); // time passed while it was down
    ex = await startPaperExchange(opts);
    try {
      const price = await new HttpExchange(ex.url).getPrice(TOKEN);
      assert.equal(price, market.priceAt(TOKEN, 75));
      assert.notEqual(price, market.priceAt(TOKEN, 0), 'not restarted from step 0');
    } finally {
      await ex.close();
    }
    // A new file started now begins its own path at step 0.
    await withExchange({ seed: '5', volatility: '0.02', startPrice: '10', stepMs: 500, now: c.now }, async (_ex, client) => {
      assert.equal(await client.getPrice(TOKEN), market.priceAt(TOKEN, 0));
    });
  });

  it('keeps amounts exact end to end: strings in, strings out, balances to the last unit', async () => {
    const initialUsd = fromUnits(10n ** 60n + 7n); // 42 integer digits and 18 decimals
    const quote = fromUnits(987654321987654321987654321123456789123456789n);
    await withExchange({ initialUsd, now: clock().now, startPrice: '0.000123456789', startPriceSpread: '0' }, async (_ex, client) => {
      const buy = await client.placeOrder({ clientOrderId: 'exact-1', token: TOKEN, side: 'BUY', quoteAmount: quote });
      assert.equal(buy.status, 'FILLED');
      assert.equal(buy.price, '0.000123456789');
      assert.equal(buy.quoteAmount, quote);
      assert.equal(buy.baseAmount, fromUnits((toUnits(quote) * ONE) / toUnits(buy.price)));
      const sell = await client.placeOrder({ clientOrderId: 'exact-2', token: TOKEN, side: 'SELL', baseAmount: buy.baseAmount });
      assert.equal(sell.quoteAmount, fromUnits((toUnits(buy.baseAmount) * toUnits(sell.price)) / ONE));
      const balances = await client.getBalances();
      assert.deepEqual(balances, { USD: add(sub(initialUsd, quote), sell.quoteAmount), [TOKEN]: '0' });
      assert.ok(cmp(balances['USD']!, initialUsd) < 0, 'the round trip cost the rounding');
      const listed = (await getJson(`${client.baseUrl}/orders`)).body as ExchangeOrder[];
      assert.deepEqual(listed, [buy, sell]);
      for (const o of listed) for (const k of ['baseAmount', 'quoteAmount', 'price'] as const) assert.equal(typeof o[k], 'string');
    });
  });

  it('a repeated clientOrderId returns the existing order and changes nothing (sequentially)', async () => {
    const c = clock();
    await withExchange({ now: c.now }, async (ex, client) => {
      const first = await client.placeOrder({ clientOrderId: 'dup-1', token: TOKEN, side: 'BUY', quoteAmount: '50' });
      const balances = await client.getBalances();
      c.step(10); // another price now
      const again = await client.placeOrder({ clientOrderId: 'dup-1', token: TOKEN, side: 'BUY', quoteAmount: '50' });
      const different = await client.placeOrder({ clientOrderId: 'dup-1', token: TOKEN2, side: 'SELL', baseAmount: '1' });
      assert.deepEqual(again, first);
      assert.deepEqual(different, first);
      assert.deepEqual(await client.getBalances(), balances);
      const raw = await post(ex.url, { clientOrderId: 'dup-1', token: TOKEN, side: 'BUY', quoteAmount: '50' });
      assert.equal(raw.status, 200);
      assert.equal(((await getJson(`${ex.url}/orders`)).body as unknown[]).length, 1);
    });
  });

  it('20 concurrent identical orders → one order, one balance change', async () => {
    await withExchange({ initialUsd: '1000' }, async (ex, client) => {
      const request: OrderRequest = { clientOrderId: 'race-1', token: TOKEN, side: 'BUY', quoteAmount: '10' };
      const answers = await Promise.all(Array.from({ length: 20 }, () => client.placeOrder(request)));
      for (const a of answers) assert.deepEqual(a, answers[0]);
      const orders = (await getJson(`${ex.url}/orders`)).body as ExchangeOrder[];
      assert.equal(orders.length, 1);
      assert.deepEqual(await client.getBalances(), { USD: '990', [TOKEN]: answers[0]!.baseAmount });
    });
  });

  it('refuses a fill it could not sell again: more than 60 integer digits, asked for or filled', () => {
    const book = PaperBook.open(dataFile(), { initialUsd: `1${'0'.repeat(55)}`, nowMs: T0 });
    try {
      const at = new Date(T0).toISOString();
      // 10^50 USD at 10^-12 would fill 10^62 tokens, which no SELL (60 digits at most) could sell again.
      const { order } = book.place({ clientOrderId: 'huge', token: TOKEN, side: 'BUY', quoteAmount: `1${'0'.repeat(50)}` }, '0.000000000001', at);
      assert.equal(order.status, 'REJECTED');
      assert.match(order.error ?? '', /^order too large: its baseAmount 1000+ at price 0\.000000000001 has more than 60 integer digits$/);
      assert.equal(book.balances()['USD'], `1${'0'.repeat(55)}`, 'no balance moved');
      const { order: fits } = book.place({ clientOrderId: 'fits', token: TOKEN, side: 'BUY', quoteAmount: `1${'0'.repeat(47)}` }, '0.000000000001', at);
      assert.equal(fits.status, 'FILLED');
      assert.equal(fits.baseAmount, `1${'0'.repeat(59)}`);
      const { order: back } = book.place({ clientOrderId: 'back', token: TOKEN, side: 'SELL', baseAmount: fits.baseAmount }, '0.000000000001', at);
      assert.equal(back.status, 'FILLED', 'what it filled it sells again');
    } finally {
      book.close();
    }
  });

  it('answers a rejection with amounts 0, what it executed, and keeps the amounts it would have filled in its file', () => {
    const file = dataFile();
    const book = PaperBook.open(file, { initialUsd: '10', nowMs: T0 });
    const at = new Date(T0).toISOString();
    try {
      const { order } = book.place({ clientOrderId: 'poor', token: TOKEN, side: 'BUY', quoteAmount: '20' }, '2', at);
      assert.deepEqual([order.status, order.baseAmount, order.quoteAmount, order.price], ['REJECTED', '0', '0', '2']);
      assert.deepEqual(book.get('poor'), order);
      assert.deepEqual(book.place({ clientOrderId: 'poor', token: TOKEN, side: 'BUY', quoteAmount: '20' }, '3', at).order, order, 'a repeat too');
      assert.deepEqual(book.list().map((o) => [o.status, o.baseAmount, o.quoteAmount]), [['REJECTED', '0', '0']]);
    } finally {
      book.close();
    }
    // What the crash test compares with the intent: the amount asked, among those it would have filled.
    const db = new Database(file, { readonly: true });
    assert.deepEqual(db.prepare("SELECT base_amount, quote_amount FROM orders WHERE client_order_id = 'poor'").get(), { base_amount: '10', quote_amount: '20' });
    db.close();
  });

  it("names its orders by the file's own id: another data file never gives the same exchangeOrderId; an older file gets an id once", () => {
    const at = new Date(T0).toISOString();
    const buy = { clientOrderId: 'same-1', token: TOKEN, side: 'BUY', quoteAmount: '10' } as const;
    const [first, second] = [dataFile(), dataFile()];
    const idOf = (path: string): string => {
      const book = PaperBook.open(path, { initialUsd: '100', nowMs: T0 });
      try {
        return book.place(buy, '2', at).order.exchangeOrderId;
      } finally {
        book.close();
      }
    };
    const a = idOf(first);
    const b = idOf(second);
    assert.match(a, /^paper-[0-9a-f]{12}-1$/);
    assert.match(b, /^paper-[0-9a-f]{12}-1$/);
    assert.notEqual(a, b, 'the first order of two files');
    assert.equal(idOf(first), a, 'reopened, the file answers the repeat with the id it gave');
    const again = PaperBook.open(first, { initialUsd: '100', nowMs: T0 });
    try {
      assert.equal(again.place({ ...buy, clientOrderId: 'same-2' }, '2', at).order.exchangeOrderId, a.replace(/-1$/, '-2'), 'the same file id for its later orders');
    } finally {
      again.close();
    }
    // A file written before the id existed: its orders keep their ids, its new ones get the file's new id.
    const old = dataFile();
    idOf(old);
    const raw = new Database(old);
    raw.prepare("DELETE FROM meta WHERE key = 'book_id'").run();
    raw.prepare("UPDATE orders SET exchange_order_id = 'paper-1'").run();
    raw.close();
    const reopened = PaperBook.open(old, { initialUsd: '100', nowMs: T0 });
    try {
      assert.equal(reopened.place(buy, '2', at).order.exchangeOrderId, 'paper-1');
      assert.match(reopened.place({ ...buy, clientOrderId: 'same-2' }, '2', at).order.exchangeOrderId, /^paper-[0-9a-f]{12}-2$/);
    } finally {
      reopened.close();
    }
  });

  it('stores rejections and answers a repeat with the same rejection, even once it would fill', async () => {
    await withExchange({ initialUsd: '100', startPriceSpread: '0', volatility: '0', startPrice: '2' }, async (_ex, client) => {
      const tooBig = await client.placeOrder({ clientOrderId: 'rej-1', token: TOKEN, side: 'BUY', quoteAmount: '100.000000000000000001' });
      assert.equal(tooBig.status, 'REJECTED');
      assert.match(tooBig.error ?? '', /insufficient USD/);
      // What executed: nothing (the Exchange contract's amounts; the daemon refuses a REJECTED order with more).
      assert.deepEqual([tooBig.baseAmount, tooBig.quoteAmount], ['0', '0']);
      const oversell = await client.placeOrder({ clientOrderId: 'rej-2', token: TOKEN, side: 'SELL', baseAmount: '1' });
      assert.equal(oversell.status, 'REJECTED');
      assert.match(oversell.error ?? '', /insufficient .* balance/);
      const dust = await client.placeOrder({ clientOrderId: 'rej-3', token: TOKEN, side: 'BUY', quoteAmount: '0.000000000000000001' });
      assert.equal(dust.status, 'REJECTED');
      assert.equal(dust.error, 'order too small: quoteAmount 0.000000000000000001 ÷ price 2 buys less than 10⁻¹⁸ tokens');
      assert.deepEqual(await client.getBalances(), { USD: '100' });
      const fill = await client.placeOrder({ clientOrderId: 'ok-1', token: TOKEN, side: 'BUY', baseAmount: '10' });
      assert.equal(fill.status, 'FILLED');
      assert.equal(fill.quoteAmount, '20');
      assert.deepEqual(await client.placeOrder({ clientOrderId: 'rej-2', token: TOKEN, side: 'SELL', baseAmount: '1' }), oversell);
      assert.deepEqual(await client.getOrder('rej-1'), tooBig);
      assert.deepEqual(await client.getBalances(), { USD: '80', [TOKEN]: '10' });
    });
  });

  it('orders and balances outlive a restart of the exchange', async () => {
    const path = dataFile();
    let placed: ExchangeOrder;
    let ex = await startPaperExchange({ port: 0, dataFile: path, initialUsd: '500' });
    try {
      placed = await new HttpExchange(ex.url).placeOrder({ clientOrderId: 'keep-1', token: TOKEN, side: 'BUY', quoteAmount: '5' });
    } finally {
      await ex.close();
    }
    ex = await startPaperExchange({ port: 0, dataFile: path, initialUsd: '999' });
    try {
      const client = new HttpExchange(ex.url);
      assert.deepEqual(await client.getOrder('keep-1'), placed);
      assert.deepEqual(await client.getBalances(), { USD: '495', [TOKEN]: placed.baseAmount });
      assert.deepEqual(await client.placeOrder({ clientOrderId: 'keep-1', token: TOKEN, side: 'BUY', quoteAmount: '5' }), placed);
    } finally {
      await ex.close();
    }
  });

  it('drop-rate 1: the order is filled and committed, the client gets ExchangeUnavailableError', async () => {
    await withExchange({ dropRate: 1, initialUsd: '100' }, async (ex, client) => {
      const request: OrderRequest = { clientOrderId: 'drop-1', token: TOKEN, side: 'BUY', quoteAmount: '7' };
      await assert.rejects(client.placeOrder(request), ExchangeUnavailableError);
      const raw = await getJson(`${ex.url}/orders/drop-1`);
      assert.equal(raw.status, 200);
      assert.equal((raw.body as ExchangeOrder).status, 'FILLED');
      const order = await client.getOrder('drop-1');
      assert.equal(order?.status, 'FILLED');
      await assert.rejects(client.placeOrder(request), ExchangeUnavailableError); // the retry is dropped too…
      assert.deepEqual(await client.getBalances(), { USD: '93', [TOKEN]: order!.baseAmount }); // …and places nothing
    });
  });

  it('late-rate 1: a new order is answered 503, not found for a while, then filled; sent again meanwhile it is one order', async () => {
    await withExchange({ lateRate: 1, initialUsd: '100' }, async (ex, client) => {
      const late: OrderRequest = { clientOrderId: 'late-1', token: TOKEN, side: 'BUY', quoteAmount: '7' };
      const answer = await post(ex.url, late);
      assert.deepEqual([answer.status, answer.body['error']], [503, 'injected fault: accepted, to be executed later (--late-rate)']);
      assert.equal(await client.getOrder('late-1'), null, 'not there yet: the engine lags the API');
      let order: ExchangeOrder | null = null;
      for (const t0 = Date.now(); order === null && Date.now() - t0 < 2000; ) {
        await sleep(25);
        order = await client.getOrder('late-1');
      }
      assert.equal(order?.status, 'FILLED');
      // Sent again before it is executed (a client that reconciles by its clientOrderId): placed at
      // once, by the repeat, and the late execution then finds it and does nothing.
      const again: OrderRequest = { clientOrderId: 'late-2', token: TOKEN, side: 'BUY', quoteAmount: '3' };
      assert.equal((await post(ex.url, again)).status, 503);
      const rePlaced = await client.placeOrder(again); // a repeat of a waiting clientOrderId is not deferred again
      assert.equal(rePlaced.status, 'FILLED');
      await sleep(600);
      assert.equal((await client.getBalances())['USD'], '90', 'two orders, 7 + 3 USD: late-2 filled once');
      assert.equal(((await getJson(`${ex.url}/orders`)).body as ExchangeOrder[]).length, 2);
    });
  });

  it('error-rate 1: every request but /health answers 503 → ExchangeUnavailableError, and no order exists', async () => {
    const path = dataFile();
    const ex = await startPaperExchange({ port: 0, dataFile: path, errorRate: 1, initialUsd: '100' });
    try {
      const client = new HttpExchange(ex.url);
      await assert.rejects(client.placeOrder({ clientOrderId: 'err-1', token: TOKEN, side: 'BUY', quoteAmount: '7' }), (e: unknown) => e instanceof ExchangeUnavailableError && /503/.test(e.message));
      await assert.rejects(client.getOrder('err-1'), ExchangeUnavailableError);
      await assert.rejects(client.getPrice(TOKEN), ExchangeUnavailableError);
      assert.equal((await fetch(`${ex.url}/orders`)).status, 503);
      const health = await getJson(`${ex.url}/health`);
      assert.equal(health.status, 200);
    } finally {
      await ex.close();
    }
    await withExchange({ dataFile: path }, async (_ex, client) => {
      assert.equal(await client.getOrder('err-1'), null);
      assert.deepEqual(await client.getBalances(), { USD: '100' });
    });
  });

  it('fault decisions are reproducible from the seed', async () => {
    const outcomes = async (): Promise<number[]> =>
      withExchange({ errorRate: 0.5, seed: '11' }, async (ex) => {
        const out: number[] = [];
        for (let i = 0; i < 24; i++) out.push((await fetch(`${ex.url}/balances`)).status);
        return out;
      });
    const a = await outcomes();
    assert.deepEqual(await outcomes(), a);
    assert.ok(a.includes(200) && a.includes(503), a.join(','));
  });

  it('latency is added to every answer but /health; a client timeout is ExchangeUnavailableError and the order may still land', async () => {
    await withExchange({ latencyMs: 150, initialUsd: '100' }, async (ex, client) => {
      let t = performance.now();
      await client.getPrice(TOKEN);
      assert.ok(performance.now() - t >= 148, `getPrice took ${performance.now() - t} ms`);
      t = performance.now();
      await client.placeOrder({ clientOrderId: 'slow-1', token: TOKEN, side: 'BUY', quoteAmount: '1' });
      assert.ok(performance.now() - t >= 148, `placeOrder took ${performance.now() - t} ms`);

      const impatient = new HttpExchange(ex.url, { timeoutMs: 40 });
      await assert.rejects(impatient.placeOrder({ clientOrderId: 'slow-2', token: TOKEN, side: 'BUY', quoteAmount: '1' }), (e: unknown) => e instanceof ExchangeUnavailableError && /40 ms/.test(e.message));
      let landed: ExchangeOrder | null = null;
      for (let i = 0; i < 40 && landed === null; i++) {
        await sleep(50);
        landed = await client.getOrder('slow-2');
      }
      assert.equal(landed?.status, 'FILLED', 'the request reached the exchange although the client gave up');
    });
  });

  it('an unreachable exchange is ExchangeUnavailableError', async () => {
    const ex = await startPaperExchange({ port: 0, dataFile: dataFile() });
    await ex.close();
    const client = new HttpExchange(ex.url);
    await assert.rejects(client.getPrice(TOKEN), ExchangeUnavailableError);
    await assert.rejects(client.placeOrder({ clientOrderId: 'x', token: TOKEN, side: 'BUY', quoteAmount: '1' }), ExchangeUnavailableError);
  });

  it('404 for an unknown order (getOrder → null), and a wrong URL is not mistaken for "unknown order"', async () => {
    await withExchange({}, async (ex, client) => {
      assert.equal(await client.getOrder('never-placed'), null);
      const raw = await getJson(`${ex.url}/orders/never-placed`);
      assert.equal(raw.status, 404);
      assert.match((raw.body as { error: string }).error, /never-placed/);
      assert.equal((await fetch(`${ex.url}/nope`)).status, 404);
      // A wrong URL is no exchange at all: unavailable (the daemon waits for it), never "unknown
      // order" (recovery would re-send what may be filled) nor a refusal (every job would fail).
      const wrong = new HttpExchange(`${ex.url}/v2`);
      for (const call of [() => wrong.getOrder('never-placed'), () => wrong.getPrice(TOKEN), () => wrong.getPrices([TOKEN]), () => wrong.placeOrder({ clientOrderId: 'w-1', token: TOKEN, side: 'BUY', quoteAmount: '1' })]) {
        await assert.rejects(call(), (e: unknown) => e instanceof ExchangeUnavailableError && /answered 404 to .*: no such endpoint there; is the --exchange URL right\?$/.test(e.message));
      }
      // Base URLs ending in one of the exchange's own paths: /orders/balances reads as the lookup of
      // an order "balances", /orders/prices allows no POST, /price/balances is no token. No exchange either.
      for (const base of [`${ex.url}/orders`, `${ex.url}/price`]) {
        const under = new HttpExchange(base);
        for (const call of [() => under.getBalances(), () => under.getPrices([TOKEN]), () => under.getPrice(TOKEN), () => under.placeOrder({ clientOrderId: 'w-2', token: TOKEN, side: 'BUY', quoteAmount: '1' })]) {
          await assert.rejects(call(), (e: unknown) => e instanceof ExchangeUnavailableError && /answered 40[045] to .*: no such endpoint there; is the --exchange URL right\?$/.test(e.message), base);
        }
      }
      assert.equal(await client.getOrder('w-2'), null, 'nothing was placed through them');
      // An exchange's own 404 refusal (its JSON error) stays a refusal; a proxy's 404 page is no exchange.
      const other = createServer((req, res) => {
        const html = req.url === '/proxy/orders';
        res.writeHead(404, { 'content-type': html ? 'text/html' : 'application/json' });
        // Another web application's default JSON 404 (Spring Boot's): no exchange either.
        if (req.url === '/spring/orders') return void res.end(JSON.stringify({ timestamp: '2026-11-26T20:00:00.000+00:00', status: 404, error: 'Not Found', path: '/spring/orders' }));
        res.end(html ? '<html>Not Found</html>' : JSON.stringify({ error: 'no market for this token' }));
      }).listen(0, '127.0.0.1');
      await new Promise((resolve) => other.once('listening', resolve));
      try {
        const at = `http://127.0.0.1:${(other.address() as AddressInfo).port}`;
        const order = { clientOrderId: 'n-1', token: TOKEN, side: 'BUY', quoteAmount: '1' } as const;
        await assert.rejects(new HttpExchange(at).placeOrder(order), (e: unknown) => e instanceof ExchangeRejectedError && /no market for this token/.test(e.message));
        await assert.rejects(new HttpExchange(`${at}/proxy`).placeOrder(order), (e: unknown) => e instanceof ExchangeUnavailableError && /no such endpoint there/.test(e.message));
        await assert.rejects(new HttpExchange(`${at}/spring`).placeOrder(order), (e: unknown) => e instanceof ExchangeUnavailableError && /no such endpoint there/.test(e.message));
      } finally {
        other.close();
      }
      // A clientOrderId with URL-special characters round-trips.
      const odd = await client.placeOrder({ clientOrderId: 'job/1?#%-7', token: TOKEN, side: 'BUY', quoteAmount: '1' });
      assert.deepEqual(await client.getOrder('job/1?#%-7'), odd);
    });
  });

  it('malformed input → 400 with {error}, nothing stored; the client raises a plain Error', async () => {
    await withExchange({}, async (ex, client) => {
      const good = { clientOrderId: 'b-1', token: TOKEN, side: 'BUY', quoteAmount: '1' };
      const cases: Array<[string, unknown]> = [
        ['both amounts', { ...good, baseAmount: '1' }],
        ['neither amount', { clientOrderId: 'b-1', token: TOKEN, side: 'BUY' }],
        ['bad side', { ...good, side: 'buy' }],
        ['trailing zero', { ...good, quoteAmount: '1.50' }],
        ['leading zero', { ...good, quoteAmount: '01' }],
        ['exponent', { ...good, quoteAmount: '1e5' }],
        ['19 decimals', { ...good, quoteAmount: '0.0000000000000000001' }],
        ['a JSON number', { ...good, quoteAmount: 1 }],
        ['negative', { ...good, quoteAmount: '-1' }],
        ['zero', { ...good, quoteAmount: '0' }],
        ['bad token', { ...good, token: '0x123' }],
        ['bad checksum', { ...good, token: TOKEN.replace('aDe', 'ade') }],
        ['no clientOrderId', { token: TOKEN, side: 'BUY', quoteAmount: '1' }],
        ['clientOrderId with a space', { ...good, clientOrderId: 'a b' }],
        ['clientOrderId "." (GET /orders/. is /orders/)', { ...good, clientOrderId: '.' }],
        ['clientOrderId ".." (GET /orders/.. is /)', { ...good, clientOrderId: '..' }],
        ['unknown field', { ...good, price: '1' }],
        ['an array', [good]],
        ['not JSON', '{"clientOrderId":'],
      ];
      for (const [name, body] of cases) {
        const res = await post(ex.url, body);
        assert.equal(res.status, 400, name);
        assert.equal(typeof res.body['error'], 'string', name);
      }
      // A null amount is that amount given as null, said as such.
      const nullBase = await post(ex.url, { clientOrderId: 'b-2', token: TOKEN, side: 'BUY', baseAmount: null });
      assert.equal(nullBase.status, 400);
      assert.match(String(nullBase.body['error']), /^baseAmount must be a canonical decimal string .*, got null$/);
      assert.deepEqual((await getJson(`${ex.url}/orders`)).body, []);
      await assert.rejects(client.placeOrder({ ...good, side: 'BUY', quoteAmount: '1.0' }), (e: unknown) => e instanceof Error && !(e instanceof ExchangeUnavailableError) && /quoteAmount/.test(e.message));
      assert.equal((await fetch(`${ex.url}/price/0x1234`)).status, 400);
      const wrongMethod = await fetch(`${ex.url}/orders`, { method: 'DELETE' });
      assert.equal(wrongMethod.status, 405);
      assert.equal(wrongMethod.headers.get('allow'), 'GET, POST');
      assert.equal((await post(ex.url, good)).status, 200, 'the well-formed order is accepted');
      // The batch endpoints take the 10,000 items they document, of the longest kind; a body
      // past 2 MiB is 413.
      const longest = Array.from({ length: 10_000 }, (_, i) => `${'c'.repeat(120)}-${String(i).padStart(7, '0')}`);
      const query = await fetch(`${ex.url}/orders/query`, { method: 'POST', body: JSON.stringify({ clientOrderIds: longest }) });
      assert.deepEqual([query.status, await query.json()], [200, []]);
      const tokens = Array.from({ length: 10_000 }, () => TOKEN);
      assert.equal((await fetch(`${ex.url}/prices`, { method: 'POST', body: JSON.stringify({ tokens }) })).status, 200);
      const huge = await fetch(`${ex.url}/orders/query`, { method: 'POST', body: JSON.stringify({ clientOrderIds: ['x'.repeat(2 * 1024 * 1024)] }) });
      assert.deepEqual([huge.status, huge.headers.get('connection'), await huge.json()], [413, 'close', { error: 'request body larger than 2097152 bytes' }]);
      // Its connection is closed, not left open unread: the next requests are answered at once.
      for (let i = 0; i < 2; i++) {
        assert.equal((await fetch(`${ex.url}/orders/query`, { method: 'POST', body: JSON.stringify({ clientOrderIds: ['x'.repeat(3 * 1024 * 1024)] }) })).status, 413);
      }
      for (let i = 0; i < 3; i++) assert.equal((await fetch(`${ex.url}/health`, { signal: AbortSignal.timeout(2000) })).status, 200);
      // A token that is not an address has no price: left out of the batch, the others priced.
      const mixed = await fetch(`${ex.url}/prices`, { method: 'POST', body: JSON.stringify({ tokens: [TOKEN, '0x1234', TOKEN.toLowerCase().replace('0xb', '0xB')] }) });
      assert.deepEqual([mixed.status, Object.keys(((await mixed.json()) as { prices: object }).prices)], [200, [TOKEN]]);
    });
  });

  it('a clock with fractions of a millisecond is taken in whole ones: the data file opens again with another clock', async () => {
    const data = dataFile();
    const fractional = await startPaperExchange({ port: 0, dataFile: data, now: () => performance.timeOrigin + performance.now() });
    const placed = await new HttpExchange(fractional.url).placeOrder({ clientOrderId: 'f-1', token: TOKEN, side: 'BUY', quoteAmount: '1' });
    assert.match(placed.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    await fractional.close();
    await withExchange({ dataFile: data }, async (_, client) => assert.deepEqual(await client.getOrder('f-1'), placed));
    await assert.rejects(startPaperExchange({ port: 0, dataFile: dataFile(), now: () => Number.NaN }), (e: unknown) => e instanceof ValidationError && /now\(\) must return ms since 1970, got NaN/.test(e.message));
  });

  it('refuses an order or a price for a chain other than its own (400 WRONG_CHAIN), nothing done; serves its own, in any case, or none named', async () => {
    await withExchange({ chain: 'ethereum' }, async (ex, client) => {
      assert.equal(((await getJson(`${ex.url}/health`)).body as { chain: string }).chain, 'ethereum');
      const order = { clientOrderId: 'c-1', token: TOKEN, side: 'BUY', quoteAmount: '10' } as const;
      const state = async () => [(await getJson(`${ex.url}/orders`)).body, (await getJson(`${ex.url}/balances`)).body];
      const before = await state();
      const wrong = /^exchange refused .* \(HTTP 400\): this exchange trades on chain ethereum, not "base": nothing was done/;
      await assert.rejects(client.placeOrder({ ...order, chain: 'base' }), (e: unknown) => e instanceof ExchangeRejectedError && wrong.test(e.message));
      await assert.rejects(client.getPrice(TOKEN, 'base'), (e: unknown) => e instanceof ExchangeRejectedError && wrong.test(e.message));
      await assert.rejects(client.getPrices([TOKEN], 'base'), (e: unknown) => e instanceof ExchangeRejectedError && wrong.test(e.message));
      const raw = await post(ex.url, { ...order, chain: 'base' });
      assert.deepEqual([raw.status, raw.body['code']], [400, 'WRONG_CHAIN']);
      assert.deepEqual([(await post(ex.url, { ...order, chain: 7 })).status, (await fetch(`${ex.url}/price/${TOKEN}?chain=`)).status], [400, 400]);
      assert.deepEqual(await state(), before, 'nothing was placed');
      // Its own chain, in any case, or none named: served.
      assert.equal((await client.placeOrder({ ...order, chain: 'Ethereum' })).status, 'FILLED');
      assert.equal((await client.placeOrder({ ...order, clientOrderId: 'c-2' })).status, 'FILLED');
      assert.ok(isDecimal(await client.getPrice(TOKEN, 'ethereum')));
      assert.deepEqual([...(await client.getPrices([TOKEN], 'ethereum')).keys()], [TOKEN]);
      assert.ok(isDecimal(await client.getPrice(TOKEN)));
    });
    await assert.rejects(startPaperExchange({ port: 0, dataFile: dataFile(), chain: 'Base Mainnet' }), (e: unknown) => e instanceof ValidationError && /^chain must be a chain name: .*; got "Base Mainnet"$/.test(e.message));
    await assert.rejects(startPaperExchange({ port: 0, dataFile: dataFile(), chain: null as unknown as string }), (e: unknown) => e instanceof ValidationError && /^chain must be a chain name: .*; got null$/.test(e.message));
  });

  it('keeps the chain its account is on in its data file: started again for another chain, it is refused, the file unchanged', async () => {
    const file = dataFile();
    const first = await startPaperExchange({ port: 0, dataFile: file, chain: 'ethereum' });
    await new HttpExchange(first.url).placeOrder({ clientOrderId: 'k-1', token: TOKEN, chain: 'ethereum', side: 'BUY', quoteAmount: '10' });
    await first.close();
    const bytes = readFileSync(file);
    await assert.rejects(
      startPaperExchange({ port: 0, dataFile: file }),
      (e: unknown) => e instanceof ValidationError && e.message === `${file} holds the paper exchange's account on chain ethereum, not base: its balances and orders are that chain's` && e.hint === 'start it with --chain ethereum, or give --data a new file for chain base',
    );
    assert.deepEqual(readFileSync(file), bytes, 'nothing written');
    // The CLI says so in one line, exit 2.
    const child = spawn(process.execPath, [BIN, 'paper-exchange', '--port', '0', '--data', file, '--chain', 'base'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    assert.equal(await new Promise<number | null>((resolve) => child.on('close', resolve)), 2, stderr);
    assert.equal(stderr, `botstate: ${file} holds the paper exchange's account on chain ethereum, not base: its balances and orders are that chain's (start it with --chain ethereum, or give --data a new file for chain base)\n`);
    assert.deepEqual(readFileSync(file), bytes, 'nothing written');
    // Its own chain, given in any case: served, with its orders.
    const again = await startPaperExchange({ port: 0, dataFile: file, chain: 'Ethereum' });
    try {
      assert.equal((await new HttpExchange(again.url).getOrder('k-1'))?.status, 'FILLED');
    } finally {
      await again.close();
    }
  });

  it('validates options, refuses a port in use', async () => {
    await assert.rejects(startPaperExchange({ port: 0, dataFile: dataFile(), volatility: '1.0' }), ValidationError);
    await assert.rejects(startPaperExchange({ port: 0, dataFile: dataFile(), errorRate: 2 }), ValidationError);
    await assert.rejects(startPaperExchange({ port: 0, dataFile: dataFile(), stepMs: 0 }), ValidationError);
    await assert.rejects(startPaperExchange({ port: 0, dataFile: dataFile(), startPrice: '0' }), ValidationError);
    await assert.rejects(startPaperExchange({ port: 0, dataFile: dataFile(), ...({ sede: '1' } as object) }), /unknown paper exchange option "sede"/);
    // A number where a decimal string goes is told apart from a value out of range.
    await assert.rejects(
      startPaperExchange({ port: 0, dataFile: dataFile(), volatility: 0.01 as unknown as string }),
      (e: unknown) => e instanceof ValidationError && e.message === 'volatility must be given as a decimal string (such as "0.5"), got the number 0.01',
    );
    await withExchange({}, async (ex) => {
      const fresh = dataFile();
      await assert.rejects(startPaperExchange({ port: ex.port, dataFile: fresh }), (e: unknown) => e instanceof BotstateError && e.code === 'INVALID_ARGUMENT' && /in use/.test(e.message));
      assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith(basename(fresh))), [], 'the refused start left no new data file');
      // An existing file is kept as it was.
      const kept = dataFile();
      await (await startPaperExchange({ port: 0, dataFile: kept })).close();
      const bytes = readFileSync(kept);
      await assert.rejects(startPaperExchange({ port: ex.port, dataFile: kept }), /in use/);
      assert.deepEqual(readFileSync(kept), bytes);
    });
  });
});

describe('HttpExchange validates what it is answered', () => {
  let liar: Server;
  let url: string;
  const answers = new Map<string, string>();
  before(async () => {
    liar = createServer((req, res) => {
      const body = answers.get(`${req.method} ${req.url}`) ?? '{}';
      // "HTTP <status> <body>" answers with that status.
      const withStatus = /^HTTP (\d{3}) ([\s\S]*)$/.exec(body);
      res.writeHead(withStatus ? Number(withStatus[1]) : 200, { 'content-type': 'application/json' });
      if (body === 'HUGE') {
        // 17 MiB of a JSON string, without a content-length: the reader must stop by itself.
        res.write('"');
        const mib = 'x'.repeat(1024 * 1024);
        for (let i = 0; i < 17; i++) res.write(mib);
        res.end('"');
        return;
      }
      res.end(withStatus ? withStatus[2] : body);
    });
    await new Promise<void>((resolve) => liar.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(liar.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => liar.close(() => resolve())));

  const order = { clientOrderId: 'v-1', exchangeOrderId: 'e-1', token: TOKEN, side: 'BUY', status: 'FILLED', baseAmount: '1', quoteAmount: '2', price: '2', error: null, time: new Date(T0).toISOString() };

  it('accepts a valid order, its amounts in any exact form, and refuses inexact amounts, bad fields, non-JSON, another order', async () => {
    const client = new HttpExchange(url);
    answers.set('GET /orders/v-1', JSON.stringify(order));
    assert.deepEqual(await client.getOrder('v-1'), order);
    // Amounts as real exchanges write them (trailing and leading zeros) are read exactly, in the
    // ledger's canonical form; nothing is rounded.
    answers.set('GET /orders/v-1', JSON.stringify({ ...order, baseAmount: '0001.50000000', quoteAmount: '2.000000000000000000000', price: '2.0' }));
    assert.deepEqual(await client.getOrder('v-1'), { ...order, baseAmount: '1.5', quoteAmount: '2', price: '2' });
    // Each refusal says what is wrong with the amount.
    const amounts: Array<[unknown, RegExp]> = [
      [1.5, /baseAmount 1\.5 is a JSON number, not a string/],
      ['1.5e+0', /baseAmount "1\.5e\+0" is not a plain decimal number: .*\(exponents are not accepted\)/],
      ['8.333333333333333333333333', /baseAmount "8\.333333333333333333333333" has 24 decimals; at most 18 are allowed \(it is not rounded\)/],
      ['-1', /baseAmount must not be negative, got "-1"/],
      [null, /baseAmount is null, not a decimal string/],
    ];
    for (const [baseAmount, message] of amounts) {
      answers.set('GET /orders/v-1', JSON.stringify({ ...order, baseAmount }));
      await assert.rejects(client.getOrder('v-1'), (e: unknown) => e instanceof ExchangeInvalidAnswerError && /^invalid answer from the exchange to the lookup of order v-1: /.test((e as Error).message) && message.test((e as Error).message), String(baseAmount));
    }
    // A rejected order may have no exchange order id (real exchanges give none): it is ''. A fill
    // needs one the ledger can store.
    const rejected = { ...order, status: 'REJECTED', baseAmount: '0', quoteAmount: '0', price: '0', error: 'insufficient balance' };
    for (const exchangeOrderId of ['', null, undefined]) {
      answers.set('GET /orders/v-1', JSON.stringify({ ...rejected, exchangeOrderId }));
      assert.deepEqual(await client.getOrder('v-1'), { ...rejected, exchangeOrderId: '' }, String(exchangeOrderId));
    }
    // An order accepted and not final yet: its amounts are read (the daemon ignores them), it may have no id yet.
    const open = { ...order, status: 'OPEN', baseAmount: '0.00000000', quoteAmount: '0', price: '0', exchangeOrderId: '' };
    answers.set('GET /orders/v-1', JSON.stringify(open));
    assert.deepEqual(await client.getOrder('v-1'), { ...open, baseAmount: '0' });
    const ids: Array<[unknown, RegExp]> = [
      ['', /a FILLED order has no exchangeOrderId/],
      [28457, /exchangeOrderId is the number 28457, not a string/],
      ['ORDER 123', /exchangeOrderId "ORDER 123" cannot be recorded: the ledger takes 1 to 128 visible ASCII characters, no spaces/],
      [`tx:${'ab'.repeat(70)}`, /exchangeOrderId "tx:abab.*\.\.\." cannot be recorded/],
    ];
    for (const [exchangeOrderId, message] of ids) {
      answers.set('GET /orders/v-1', JSON.stringify({ ...order, exchangeOrderId }));
      await assert.rejects(client.getOrder('v-1'), (e: unknown) => e instanceof ExchangeInvalidAnswerError && message.test((e as Error).message), String(exchangeOrderId));
    }
    const broken: Array<[string, unknown]> = [
      ['a float amount', { ...order, baseAmount: 1.5 }],
      ['negative', { ...order, quoteAmount: '-2' }],
      ['status', { ...order, status: 'PARTIAL' }],
      ['time', { ...order, time: 'yesterday' }],
      ['a time without a zone (read as local time)', { ...order, time: '2026-11-26T03:44:27' }],
      ['a bare year', { ...order, time: '1' }],
      ['another order', { ...order, clientOrderId: 'v-2' }],
    ];
    // A definite answer that cannot be read: not "unavailable" (asking again will not help).
    for (const [name, body] of broken) {
      answers.set('GET /orders/v-1', JSON.stringify(body));
      await assert.rejects(client.getOrder('v-1'), (e: unknown) => e instanceof ExchangeInvalidAnswerError && !(e instanceof ExchangeUnavailableError), name);
    }
    answers.set('GET /orders/v-1', JSON.stringify({ ...order, time: '2026-11-26T03:44:27.5+09:00' }));
    assert.equal((await client.getOrder('v-1'))?.time, '2026-11-26T03:44:27.5+09:00');
    // A body that is not JSON at all (a proxy's or a maintenance page) is no answer from the exchange.
    answers.set('GET /orders/v-1', '<html>maintenance</html>');
    await assert.rejects(client.getOrder('v-1'), ExchangeUnavailableError);
    answers.set(`GET /price/${TOKEN}`, JSON.stringify({ token: TOKEN, price: '1e-3', time: order.time }));
    await assert.rejects(client.getPrice(TOKEN), ExchangeInvalidAnswerError);
    // Another token's price is no answer, however well formed; the same token in other case is.
    answers.set(`GET /price/${TOKEN}`, JSON.stringify({ token: TOKEN2, price: '123.45', time: order.time }));
    await assert.rejects(client.getPrice(TOKEN), (e: unknown) => e instanceof ExchangeInvalidAnswerError && /answered for token "0x0+b2"/.test((e as Error).message));
    answers.set(`GET /price/${TOKEN}`, JSON.stringify({ token: TOKEN.toLowerCase(), price: '123.45', time: order.time }));
    assert.equal(await client.getPrice(TOKEN), '123.45');
    // A 409 is a refusal like any 4xx: by the contract an order placed again is answered with itself,
    // never with a conflict (treated as unknown, a real refusal would be re-sent for ever).
    for (const status of [400, 409]) {
      answers.set('POST /orders', `HTTP ${status} {"error":"refused"}`);
      await assert.rejects(client.placeOrder({ clientOrderId: 'v-3', token: TOKEN, side: 'BUY', quoteAmount: '1' }), ExchangeRejectedError, String(status));
    }
    // No final answer (a 3xx fetch could not follow, a 1xx): what became of the order is unknown.
    answers.set('POST /orders', 'HTTP 300 {}');
    await assert.rejects(client.placeOrder({ clientOrderId: 'v-3', token: TOKEN, side: 'BUY', quoteAmount: '1' }), (e: unknown) => e instanceof ExchangeUnavailableError && /no final answer .*\(HTTP 300\)/.test((e as Error).message));
    // An answer too large to be an exchange's is not read into memory: unknown too.
    answers.set('POST /orders', 'HUGE');
    await assert.rejects(client.placeOrder({ clientOrderId: 'v-3', token: TOKEN, side: 'BUY', quoteAmount: '1' }), (e: unknown) => e instanceof ExchangeUnavailableError && /answered order v-3 with an answer larger than 16777216 bytes/.test((e as Error).message));
    answers.delete('POST /orders');
    // fetch refuses a URL with credentials: refused at once, not on every call.
    assert.throws(() => new HttpExchange('http://trader:s3cret@127.0.0.1:8790'), /must not hold a user name or password/);
    // So does a port fetch blocks (it fails at once, "bad port", as if nothing listened there).
    await assert.rejects(fetch('http://127.0.0.1:6000/'), (e: unknown) => /bad port/.test(String((e as Error).cause)));
    assert.throws(() => new HttpExchange('http://127.0.0.1:6000'), /uses port 6000, which fetch refuses to connect to/);
    assert.ok(new HttpExchange('http://127.0.0.1:6001'));
    // A bad URL or option is the library's own error, with a hint, not a TypeError.
    // A timer cannot hold more than 2^31 - 1 ms; a query or fragment would swallow the calls' paths.
    for (const [url, options] of [['notaurl', {}], ['ftp://x', {}], ['http://127.0.0.1:1', { timeoutMs: 0 }], ['http://127.0.0.1:1', { timeoutMs: 2 ** 31 }], ['http://127.0.0.1:1', { retries: 3 }], ['http://127.0.0.1:1/?a=1', {}], ['http://127.0.0.1:1/#x', {}], ['http://127.0.0.1:1/?', {}]] as const) {
      assert.throws(() => new HttpExchange(url, options as never), (e: unknown) => isBotstateError(e, 'INVALID_ARGUMENT') && typeof e.hint === 'string', url);
    }
    answers.set('GET /balances', JSON.stringify({ USD: 100 }));
    await assert.rejects(client.getBalances(), ExchangeInvalidAnswerError);
    answers.set('GET /balances', '{"USD":"100","__proto__":"5"}');
    const balances = await client.getBalances();
    assert.equal(Object.getPrototypeOf(balances), Object.prototype);
    assert.equal(Object.getOwnPropertyDescriptor(balances, '__proto__')?.value, '5');
  });

  it('getPrices leaves out a token it got no valid price for, and keeps the others', async () => {
    const client = new HttpExchange(url);
    const other = '0x00000000000000000000000000000000000000b2';
    answers.set('POST /prices', JSON.stringify({ time: order.time, prices: { [TOKEN]: '2.5', [other]: '0' } }));
    assert.deepEqual([...(await client.getPrices([TOKEN, other, '0x00000000000000000000000000000000000000b3']))], [[TOKEN, '2.5']]);
    answers.set('POST /prices', JSON.stringify({ time: order.time, prices: [] }));
    assert.deepEqual([...(await client.getPrices([TOKEN]))], []);
    answers.set('POST /prices', JSON.stringify({ time: order.time }));
    await assert.rejects(client.getPrices([TOKEN]), ExchangeInvalidAnswerError);
  });
});

describe('botstate paper-exchange (the real binary)', () => {
  for (const stop of ['SIGTERM', 'SIGHUP'] as const) {
    it(`prints one listening line, serves, and exits 0 on ${stop}`, { timeout: 20_000 }, async () => {
      assert.ok(existsSync(join(ROOT, 'dist', 'cli', 'main.js')), 'dist/cli/main.js is missing: run `npm run build` first (npm test does it)');
      const data = dataFile();
      const child = spawn(process.execPath, [BIN, 'paper-exchange', '--port', '0', '--data', data, '--seed', '3', '--step-ms', '100'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
      const line = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no listening line; stderr: ${stderr}`)), 15_000);
        child.stdout.setEncoding('utf8').on('data', (d: string) => {
          stdout += d;
          if (stdout.includes('\n')) {
            clearTimeout(timer);
            resolve(stdout.split('\n')[0]!);
          }
        });
        child.on('close', () => reject(new Error(`exited early; stderr: ${stderr}`)));
      });
      try {
        const m = /^paper exchange listening on (http:\/\/127\.0\.0\.1:(\d+))$/.exec(line);
        assert.ok(m, `unexpected line: ${line}`);
        const client = new HttpExchange(m[1]!);
        assert.equal((await getJson(`${m[1]}/health`)).status, 200);
        const o = await client.placeOrder({ clientOrderId: 'cli-1', token: TOKEN, side: 'BUY', quoteAmount: '3' });
        assert.equal(o.status, 'FILLED');
      } finally {
        child.kill(stop);
      }
      assert.equal(await exited, 0, stderr);
      assert.equal(stdout, `${line}\n`, 'exactly one line on stdout');
      assert.equal(stderr, '');
      const db = new Database(data, { readonly: true });
      try {
        assert.equal(db.prepare("SELECT status FROM orders WHERE client_order_id = 'cli-1'").pluck().get(), 'FILLED');
      } finally {
        db.close();
      }
    });
  }

  it('refuses a bad flag (exit 2) or a --data file that is no database (exit 5), with one line on stderr', async () => {
    const text = dataFile();
    writeFileSync(text, 'not a database, but long enough for SQLite to read a header from it: '.repeat(4));
    const database = dataFile();
    const other = new Database(database);
    other.exec('CREATE TABLE t (x)');
    other.close();
    // A named pipe: opened, it blocked for ever, SIGINT and SIGTERM ignored.
    const pipe = dataFile();
    execFileSync('mkfifo', [pipe]);
    for (const [flags, exit, said] of [
      [['--error-rate', '2'], 2, /^botstate: --error-rate must be a number from 0 to 1.*\n$/],
      // --db is botstate's database: one meaning --data would otherwise be ignored.
      [['--db', 'exchange.db'], 2, /^botstate: the paper exchange does not use --db: .*--data FILE\)\n$/],
      // Range errors name the flag typed, not the library's option.
      [['--start-spread', '1'], 2, /^botstate: --start-spread must be a decimal from 0 to 1 \(exclusive\)/],
      [['--data', ''], 2, /^botstate: --data must be a path/],
      [['--chain', 'base mainnet'], 2, /^botstate: --chain must be a chain name: letters, digits and - \(at most 32\), such as base or ethereum; got "base mainnet" \(see botstate paper-exchange --help\)\n$/],
      // A --data file that is no database: said so, not "check that the directory is writable".
      [['--data', text], 5, /^botstate: cannot open the paper exchange file .*: file is not a database \(give --data a new file, or one the paper exchange wrote\)\n$/],
      // A file SQLite keeps beside a database there: the next connection to it would delete the exchange's orders.
      [['--data', pipe], 5, /^botstate: \S+ is not a regular file \(a device, a pipe or a socket\), so it cannot hold the paper exchange's data \(give --data the path of a file, e\.g\. paper-exchange\.db\)\n$/],
      [['--data', `${database}-wal`], 2, /^botstate: \S+-wal is the -wal file of the database \S+, which SQLite or botstate would delete \(give --data a file of its own, e.g\. paper-exchange\.db\)\n$/],
    ] as const) {
      const data = (flags as readonly string[]).includes('--data') ? [] : ['--data', dataFile()];
      const child = spawn(process.execPath, [BIN, 'paper-exchange', '--port', '0', ...data, ...flags], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(code, exit, stderr);
      assert.match(stderr, said);
    }
    assert.equal(existsSync(`${database}-wal`), false, 'nothing was written beside the database');
  });
});
