/**
 * Migrations on both engines: data survives every step up and down, each step is reversible,
 * the runner refuses schemas it does not know (newer, edited, outdated), concurrent migrators in
 * separate processes are safe, and a failing step leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { GENESIS_HASH, jobStream, prepareAudit } from '../../src/audit/audit.ts';
import { defaultConfig, serializeConfig } from '../../src/jobs/config.ts';
import { LATEST_VERSION, MIGRATIONS } from '../../src/store/migrations/index.ts';
import { checksum } from '../../src/store/migrations/migration.ts';
import { runChild } from '../helpers/child.ts';
import { rejectsWith } from '../helpers/assert.ts';
import { ENGINES, TOKEN, tokenAddress, type Fixture } from '../helpers/engines.ts';

// ---------------------------------------------------------------------------------------------
// Helpers


type Value = string | number | null;
type Row = Readonly<Record<string, Value>>;
/** Rows to insert, per table, in insertion order (parents first). */
type Seed = ReadonlyArray<readonly [table: string, rows: readonly Row[]]>;
/** A row as read back: every value as text (see readTable). */
type TextRow = Record<string, string | null>;

/** How rows of each table are ordered when read back. */
const TABLE_ORDER: Readonly<Record<string, string>> = {
  jobs: 'id',
  trades: 'id',
  audit_log: 'stream, seq',
  schema_migrations: 'version',
  daemon_instances: 'id',
  job_leases: 'job_id',
};

function pgSchema(fx: Fixture): string {
  const schema = new URL(fx.url).searchParams.get('schema');
  assert.ok(schema, `no ?schema= in ${fx.url}`);
  return schema;
}

async function insertRows(fx: Fixture, table: string, rows: readonly Row[]): Promise<void> {
  for (const row of rows) {
    const cols = Object.keys(row);
    const marks = cols.map((_, i) => (fx.engine === 'sqlite' ? '?' : `$${i + 1}`));
    await fx.raw(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${marks.join(', ')})`, cols.map((c) => row[c]));
  }
}

/** The columns of a table in the current schema, with whether each holds JSON. */
async function columnsOf(fx: Fixture, table: string): Promise<Array<{ name: string; type: string }>> {
  if (fx.engine === 'sqlite') {
    const cols = await fx.raw(`SELECT name, type FROM pragma_table_info(?) ORDER BY cid`, [table]);
    return cols.map((c) => ({ name: String(c['name']), type: String(c['type']) }));
  }
  const cols = await fx.raw(
    `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position`,
    [table],
  );
  return cols.map((c) => ({ name: String(c['column_name']), type: String(c['data_type']) }));
}

/**
 * Every row of a table through the raw driver, each value as exact text (no JS numbers, no
 * Dates): integers as digits, decimals as stored, times as ISO 8601 UTC with milliseconds,
 * JSON as the engine's own text.
 */
async function readTable(fx: Fixture, table: string): Promise<TextRow[]> {
  const cols = await columnsOf(fx, table);
  assert.ok(cols.length > 0, `table ${table} does not exist`);
  const order = TABLE_ORDER[table] ?? '1';
  const exprs = cols.map(({ name, type }) => {
    if (fx.engine === 'sqlite') return `"${name}"`;
    if (type === 'timestamp with time zone') return `to_char("${name}" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "${name}"`;
    return `"${name}"::text AS "${name}"`;
  });
  const rows = await fx.raw(`SELECT ${exprs.join(', ')} FROM ${table} ORDER BY ${order}`);
  return rows.map((r) => {
    const out: TextRow = {};
    for (const { name } of cols) {
      const v = r[name];
      assert.ok(v === null || typeof v === 'string' || typeof v === 'number', `${table}.${name} came back as ${typeof v}`);
      out[name] = v === null ? null : String(v);
    }
    return out;
  });
}

async function readSeeded(fx: Fixture, seed: Seed): Promise<Record<string, TextRow[]>> {
  const out: Record<string, TextRow[]> = {};
  for (const [table] of seed) out[table] = await readTable(fx, table);
  return out;
}

/** What the engine stores for a JSON text (PostgreSQL's jsonb normalises it). */
async function storedJson(fx: Fixture, text: string): Promise<string> {
  if (fx.engine === 'sqlite') return text;
  const [row] = await fx.raw('SELECT $1::jsonb::text AS t', [text]);
  return String(row?.['t']);
}

/** Asserts that the rows read back hold exactly the seeded values. */
async function assertHoldsSeed(fx: Fixture, seed: Seed, read: Record<string, TextRow[]>): Promise<void> {
  for (const [table, rows] of seed) {
    const jsonCols = new Set((await columnsOf(fx, table)).filter((c) => c.type === 'jsonb').map((c) => c.name));
    const actual = read[table];
    assert.ok(actual, `table ${table} was not read`);
    assert.equal(actual.length, rows.length, `row count of ${table}`);
    // Rows are identified by their ordering key (audit_log's id is assigned by the database).
    const keyCols = (TABLE_ORDER[table] ?? 'id').split(', ');
    for (const expected of rows) {
      const match: TextRow[] = actual.filter((a) => keyCols.every((k) => a[k] === String(expected[k])));
      assert.equal(match.length, 1, `${table} row ${JSON.stringify(expected).slice(0, 80)} is not there exactly once`);
      const got = match[0]!;
      for (const [col, value] of Object.entries(expected)) {
        const want = value === null ? null : jsonCols.has(col) ? await storedJson(fx, String(value)) : String(value);
        assert.equal(got[col], want, `${table}.${col} of ${String(expected['id'] ?? `${expected['stream']}#${expected['seq']}`)}`);
      }
    }
  }
}

/** Exact 18-decimal formatting of base units: the same canonical text botstate stores. */
function fmt18(units: bigint): string {
  const neg = units < 0n;
  const digits = (neg ? -units : units).toString().padStart(19, '0');
  const int = digits.slice(0, -18);
  const frac = digits.slice(-18).replace(/0+$/, '');
  return `${neg ? '-' : ''}${int}${frac ? `.${frac}` : ''}`;
}

const at = (minute: number): string => new Date(Date.UTC(2026, 2, 1, 10, minute, 7, 123)).toISOString();

/** A trades row as its audit entries record it (`after.trade`), as botstate has written them since version 1. */
function tradeDoc(row: Record<string, Value>): Record<string, Value> {
  return {
    id: row['id']!, jobId: row['job_id']!, side: row['side']!, reason: row['reason']!, baseAmount: row['base_amount']!,
    quoteAmount: row['quote_amount']!, priceUsd: row['price_usd']!, clientOrderId: row['client_order_id']!,
    exchangeOrderId: row['exchange_order_id']!, txHash: row['tx_hash']!, status: row['status']!, error: row['error']!,
    createdAt: row['created_at']!, executedAt: row['executed_at']!,
  };
}

// ---------------------------------------------------------------------------------------------
// Seed data per schema version. A new migration N adds SEEDS[N] (rows valid at version N)
// and ADDED[N] (the columns it adds to existing rows, with the value they must get).

/** Rows valid at schema version 1: three jobs in different states, their trades and audit chains. */
function seedV1(): Seed {
  const config = serializeConfig(defaultConfig());
  const jobs: Array<Record<string, Value>> = [];
  const trades: Array<Record<string, Value>> = [];
  const audit: Array<Record<string, Value>> = [];

  function chain(jobId: string, events: Array<{ at: string; action: string; entity?: string; entityId?: string; before: unknown; after: unknown }>): { version: number; hash: string } {
    let prevHash = GENESIS_HASH;
    events.forEach((e, i) => {
      const p = prepareAudit({
        stream: jobStream(jobId),
        seq: i + 1,
        prevHash,
        at: e.at,
        actor: i === 0 ? 'cli:alice' : 'daemon:host-1',
        entity: e.entity ?? 'job',
        entityId: e.entityId ?? jobId,
        action: e.action,
        before: e.before,
        after: e.after,
      });
      audit.push({
        stream: p.entry.stream,
        seq: p.entry.seq,
        at: p.entry.at,
        actor: p.entry.actor,
        entity: p.entry.entity,
        entity_id: p.entry.entityId,
        action: p.entry.action,
        before: p.before,
        after: p.after,
        prev_hash: p.entry.prevHash,
        hash: p.hash,
      });
      prevHash = p.hash;
    });
    return { version: events.length, hash: prevHash };
  }

  // Job A: RUNNING accumulate job with an executed buy, a take-profit sell, a pending and a failed intent.
  const a = '0195f7a0-0000-7000-8000-00000000000a';
  const aBuy = 1500_123456789012345678n;
  const aSell = 150_012345678901234567n;
  trades.push(
    { id: '0195f7a0-0001-7000-8000-00000000000a', job_id: a, side: 'BUY', reason: 'DCA', base_amount: fmt18(aBuy), quote_amount: '25', price_usd: '0.016665294', client_order_id: `${a}:1`, exchange_order_id: 'ex-99812', tx_hash: null, status: 'EXECUTED', error: null, created_at: at(1), executed_at: at(2) },
    { id: '0195f7a0-0002-7000-8000-00000000000a', job_id: a, side: 'SELL', reason: 'TAKE_PROFIT', base_amount: fmt18(aSell), quote_amount: '3.100000000000000001', price_usd: '0.020665', client_order_id: `${a}:2`, exchange_order_id: null, tx_hash: `0x${'ab'.repeat(32)}`, status: 'EXECUTED', error: null, created_at: at(3), executed_at: at(4) },
    { id: '0195f7a0-0003-7000-8000-00000000000a', job_id: a, side: 'BUY', reason: 'DIP_BUY', base_amount: null, quote_amount: '50', price_usd: null, client_order_id: `${a}:3`, exchange_order_id: null, tx_hash: null, status: 'PENDING', error: null, created_at: at(5), executed_at: null },
    { id: '0195f7a0-0004-7000-8000-00000000000a', job_id: a, side: 'BUY', reason: 'DCA', base_amount: null, quote_amount: null, price_usd: null, client_order_id: `${a}:4`, exchange_order_id: null, tx_hash: null, status: 'FAILED', error: 'exchange said: insufficient funds', created_at: at(6), executed_at: null },
  );
  const aTrades = trades.slice(-4).map(tradeDoc);
  const aHead = chain(a, [
    { at: at(0), action: 'create', before: null, after: { status: 'RUNNING', tokenAddress: TOKEN } },
    { at: at(2), action: 'record', entity: 'trade', entityId: `${aTrades[0]!['id']}`, before: { tokenBalance: '0' }, after: { tokenBalance: fmt18(aBuy), trade: aTrades[0] } },
    { at: at(4), action: 'record', entity: 'trade', entityId: `${aTrades[1]!['id']}`, before: { tokenBalance: fmt18(aBuy) }, after: { tokenBalance: fmt18(aBuy - aSell), trade: aTrades[1] } },
    { at: at(5), action: 'intent', entity: 'trade', entityId: `${aTrades[2]!['id']}`, before: null, after: { trade: aTrades[2] } },
    { at: at(6), action: 'settle', entity: 'trade', entityId: `${aTrades[3]!['id']}`, before: null, after: { trade: aTrades[3] } },
  ]);
  jobs.push({ id: a, chain: 'base', token_address: TOKEN, token_symbol: 'LGI', mode: 'ACCUMULATE', status: 'RUNNING', status_reason: null, last_dca_buy_time: at(2), recent_high: '0.021', recent_high_time: at(3), total_accumulated: '25', token_balance: fmt18(aBuy - aSell), last_rebalance_time: null, config, created_at: at(0), updated_at: at(6), started_at: at(0), stopped_at: null, version: aHead.version, audit_hash: aHead.hash });

  // Job B: LIQUIDITY job in ERROR on another chain, holding a 78-digit balance.
  const b = '0195f7a0-0000-7000-8000-00000000000b';
  const huge = 10n ** 77n + 123456789012345678901234567n; // 60 integer digits + 18 decimals
  trades.push({ id: '0195f7a0-0001-7000-8000-00000000000b', job_id: b, side: 'BUY', reason: 'REBALANCE', base_amount: fmt18(huge), quote_amount: '99999999999999999999.99', price_usd: '0.000000000000000001', client_order_id: `${b}:1`, exchange_order_id: 'ex-1', tx_hash: null, status: 'EXECUTED', error: null, created_at: at(10), executed_at: at(11) });
  const bHead = chain(b, [
    { at: at(9), action: 'create', before: null, after: { status: 'RUNNING' } },
    { at: at(11), action: 'record', entity: 'trade', entityId: `${trades.at(-1)!['id']}`, before: { tokenBalance: '0' }, after: { tokenBalance: fmt18(huge), trade: tradeDoc(trades.at(-1)!) } },
    { at: at(12), action: 'fail', before: { status: 'RUNNING' }, after: { status: 'ERROR', statusReason: 'exchange returned 503 three times' } },
  ]);
  jobs.push({ id: b, chain: 'ethereum', token_address: tokenAddress(2), token_symbol: 'HUGE', mode: 'LIQUIDITY', status: 'ERROR', status_reason: 'exchange returned 503 three times', last_dca_buy_time: null, recent_high: '0', recent_high_time: null, total_accumulated: '99999999999999999999.99', token_balance: fmt18(huge), last_rebalance_time: at(11), config, created_at: at(9), updated_at: at(12), started_at: at(9), stopped_at: at(12), version: bHead.version, audit_hash: bHead.hash });

  // Job C: liquidated back to IDLE with a zero balance.
  const c = '0195f7a0-0000-7000-8000-00000000000c';
  const cAmt = 42_000000000000000001n;
  trades.push(
    { id: '0195f7a0-0001-7000-8000-00000000000c', job_id: c, side: 'BUY', reason: 'SUPPORT_BUY', base_amount: fmt18(cAmt), quote_amount: '10', price_usd: '0.238', client_order_id: `${c}:1`, exchange_order_id: 'ex-7', tx_hash: null, status: 'EXECUTED', error: null, created_at: at(20), executed_at: at(21) },
    { id: '0195f7a0-0002-7000-8000-00000000000c', job_id: c, side: 'SELL', reason: 'LIQUIDATE', base_amount: fmt18(cAmt), quote_amount: '11.5', price_usd: '0.2738', client_order_id: `${c}:2`, exchange_order_id: 'ex-8', tx_hash: null, status: 'EXECUTED', error: null, created_at: at(23), executed_at: at(24) },
  );
  const cHead = chain(c, [
    { at: at(19), action: 'create', before: null, after: { status: 'RUNNING' } },
    { at: at(21), action: 'record', entity: 'trade', entityId: `${trades.at(-2)!['id']}`, before: { tokenBalance: '0' }, after: { tokenBalance: fmt18(cAmt), trade: tradeDoc(trades.at(-2)!) } },
    { at: at(22), action: 'liquidate', before: { status: 'RUNNING' }, after: { status: 'LIQUIDATING' } },
    { at: at(24), action: 'record', entity: 'trade', entityId: `${trades.at(-1)!['id']}`, before: { tokenBalance: fmt18(cAmt) }, after: { tokenBalance: '0', trade: tradeDoc(trades.at(-1)!) } },
    { at: at(25), action: 'completeLiquidation', before: { status: 'LIQUIDATING' }, after: { status: 'IDLE' } },
  ]);
  jobs.push({ id: c, chain: 'base', token_address: tokenAddress(3), token_symbol: 'ZERO', mode: 'ACCUMULATE', status: 'IDLE', status_reason: null, last_dca_buy_time: null, recent_high: '0.3', recent_high_time: at(23), total_accumulated: '10', token_balance: '0', last_rebalance_time: null, config, created_at: at(19), updated_at: at(25), started_at: at(19), stopped_at: at(25), version: cHead.version, audit_hash: cHead.hash });

  return [
    ['jobs', jobs],
    ['trades', trades],
    ['audit_log', audit],
  ];
}

/** Rows valid at schema version 2: version 1's, with strategy state on the jobs. */
function seedV2(): Seed {
  const states = ['{"window":["0.0201","0.0199"],"tradesThisHour":3}', '{}', '{"dailyVolumeUsd":"12.5","day":"2026-03-01"}'];
  return seedV1().map(([table, rows]) =>
    table === 'jobs' ? ([table, rows.map((r, i) => ({ ...r, strategy_state: states[i % states.length]! }))] as const) : ([table, rows] as const),
  );
}

/** Rows valid at schema version 3: version 2's, plus two daemon instances and the leases of one. */
function seedV3(): Seed {
  const a = '0195f7a0-0000-7000-8000-00000000000a';
  const b = '0195f7a0-0000-7000-8000-00000000000b';
  return [
    ...seedV2(),
    [
      'daemon_instances',
      [
        { id: 'd-1', host: 'host-1', pid: 4242, started_at: at(30), heartbeat_at: at(31), stopped_at: null },
        { id: 'd-0', host: 'host-0', pid: 17, started_at: at(1), heartbeat_at: at(29), stopped_at: at(29) },
      ],
    ],
    [
      'job_leases',
      [
        { job_id: a, owner: 'd-1', epoch: 3, expires_at: at(33) },
        { job_id: b, owner: '', epoch: 1, expires_at: at(20) },
      ],
    ],
  ];
}

// Version 4 rebuilds the trades table (its CHECKs respelled): the same rows as version 3.
// Versions 5, 6 and 8 add a column each to the daemon instances: the same rows again.
const SEEDS: Readonly<Record<number, () => Seed>> = { 1: seedV1, 2: seedV2, 3: seedV3, 4: seedV3, 5: seedV3, 6: seedV3, 7: seedV3, 8: seedV3 };

/** The columns each migration adds to rows that already exist, and the value they must get. */
const ADDED: Readonly<Record<number, Readonly<Record<string, Readonly<Record<string, string | null>>>>>> = {
  2: { jobs: { strategy_state: '{}' } },
  3: {},
  4: {},
  5: { daemon_instances: { max_jobs: null } },
  6: { daemon_instances: { lease_ttl_ms: null } },
  7: {},
  8: { daemon_instances: { exchange_unreachable_since: null } },
};

/** Masks what legitimately differs between two dumps of the same schema: when each version was applied, and the fixture's schema name. */
function stableDump(dump: string, fx: Fixture): string {
  let inVersions = false;
  const lines = dump.split('\n').map((line) => {
    if (line.startsWith('-- ')) inVersions = line.startsWith('-- schema_migrations ');
    else if (inVersions) return line.replace(/"\d{4}-\d\d-\d\dT[\d:.]+Z"/g, '"<applied_at>"');
    return line;
  });
  const text = lines.join('\n');
  return fx.engine === 'postgres' ? text.replaceAll(pgSchema(fx), '<schema>') : text;
}

/** The user objects of the database (tables, and on PostgreSQL functions), excluding the engine's own. */
async function userObjects(fx: Fixture): Promise<string[]> {
  if (fx.engine === 'sqlite') {
    const rows = await fx.raw(`SELECT type || ' ' || name AS o FROM sqlite_master WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY 1`);
    return rows.map((r) => String(r['o']));
  }
  const tables = await fx.raw(`SELECT 'table ' || table_name AS o FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`);
  const fns = await fx.raw(`SELECT 'function ' || p.proname AS o FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 ORDER BY 1`, [pgSchema(fx)]);
  return [...tables, ...fns].map((r) => String(r['o']));
}

async function versionRows(fx: Fixture): Promise<number[]> {
  return (await fx.raw('SELECT version FROM schema_migrations ORDER BY version')).map((r) => Number(r['version']));
}

const range = (from: number, to: number): number[] => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

// ---------------------------------------------------------------------------------------------

/**
 * The checksum of every released migration's `up` SQL, per engine. A database records these when
 * it migrates, and refuses to open once they differ: a released migration (or the text one derives
 * from another, as 4 does from 1) must never change. A new migration adds its line.
 */
const RELEASED_CHECKSUMS: Readonly<Record<number, { sqlite: string; postgres: string }>> = {
  1: { sqlite: 'fc6ed977e9671dc769bef20477ae38a92d4e0efb317f16754a0ed6bd9e7002f4', postgres: '06eed06949f903d63d2f62ba08dbf35b8195dc627634039ff94967465224a59e' },
  2: { sqlite: '68ce66add75d5b0fd9f587fcd6eee984c8e6395eb178be607fadd19c4b03f732', postgres: '174d99858893202652c7393f87c66fc56f4344f09fd505aae5d3b4a0589ad739' },
  3: { sqlite: 'fea87d71d9d31dd1f9b67a64eac32b46b11efb8dc84a90c8828e64d2ed3077e5', postgres: '13ee26ab0be9416da57480049aefd1dbe580fbc392d7ed34ac970c14256ae359' },
  4: { sqlite: '6360091ea2ada960ec6e76ed614cf14e163a9706b66705fedd58231a3f400868', postgres: '54a6027274bda1f7704cdc6ef120696c55ce28303d69727bc3a6bdc0501e312b' },
  5: { sqlite: '4e094cc3bf20fb493084cb732a8e3dd78d2ce9e14564e027b8fdc12bc86b17dd', postgres: '4e094cc3bf20fb493084cb732a8e3dd78d2ce9e14564e027b8fdc12bc86b17dd' },
  6: { sqlite: '7240b0fae663c73c0f70e5c43fc3557e0662c968b343711e765e8f1ef1736e34', postgres: '7240b0fae663c73c0f70e5c43fc3557e0662c968b343711e765e8f1ef1736e34' },
  7: { sqlite: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', postgres: '568a0cd90525086e1bb535d0789ed63b9eed875e385b4377f2faaa5a98413119' },
  8: { sqlite: '8b851de812687ce884355fbed9f9e91641c0d3d4ec58c153dd3eef43f7814760', postgres: '786f9c1ace3dcb84b9ab8738a3cf074ba058939ab625c4ea25e432decf002ab6' },
};

describe('released migrations', () => {
  it('keep the checksums databases recorded when they applied them', () => {
    for (const m of MIGRATIONS) {
      const pinned = RELEASED_CHECKSUMS[m.version];
      assert.ok(pinned, `migration ${m.version} has no pinned checksum: add it to RELEASED_CHECKSUMS`);
      assert.equal(checksum(m, 'sqlite'), pinned.sqlite, `migration ${m.version} (sqlite) changed after its release`);
      assert.equal(checksum(m, 'postgres'), pinned.postgres, `migration ${m.version} (postgres) changed after its release`);
    }
  });
});

describe('migration test data', () => {
  it('covers every schema version and every migration', () => {
    for (const v of range(1, LATEST_VERSION)) {
      assert.equal(typeof SEEDS[v], 'function', `SEEDS[${v}] is missing: add rows valid at schema version ${v}`);
      if (v > 1) assert.ok(ADDED[v], `ADDED[${v}] is missing: say which columns migration ${v} adds to existing rows (or {})`);
    }
    assert.deepEqual(
      MIGRATIONS.map((m) => m.version),
      range(1, LATEST_VERSION),
      'migrations are numbered 1..LATEST_VERSION without gaps',
    );
  });
});

for (const engine of ENGINES) {
  describe(`migrations [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    beforeEach(async () => {
      fx = await engine.create();
    });
    afterEach(() => fx.cleanup());

    it('onMigrate is told once when an older schema is migrated on open; not for a new database, nor a current one', async () => {
      const calls: Array<[number, number]> = [];
      const spy = (from: number, to: number) => void calls.push([from, to]);
      await (await fx.open({ onMigrate: spy })).close(); // new: created, not said
      assert.deepEqual(calls, []);
      const store = await fx.open({ schema: 'none' });
      await store.rollback({ to: 1, force: true });
      await store.close();
      const told = await fx.open({ onMigrate: spy });
      assert.deepEqual(calls, [[1, LATEST_VERSION]]);
      assert.equal((await told.schemaStatus()).current, LATEST_VERSION);
      await told.close();
      await (await fx.open({ onMigrate: spy })).close(); // current: not said
      assert.equal(calls.length, 1);
      const refused = await rejectsWith(fx.open({ onMigrate: 'log' as unknown as () => void }), 'INVALID_ARGUMENT');
      assert.match(String(refused['message']), /^store option onMigrate must be a function, got /);
      if (fx.engine === 'sqlite') {
        // Not told when the migration is refused before any step: a daemon runs on the file.
        const store = await fx.open({ schema: 'none' });
        await store.rollback({ to: LATEST_VERSION - 1, force: true });
        await store.close();
        const now = new Date().toISOString();
        await fx.raw("INSERT INTO daemon_instances (id, host, pid, started_at, heartbeat_at) VALUES (?, 'host-b', 4242, ?, ?)", ['d-old', now, now]);
        await rejectsWith(fx.open({ onMigrate: spy }), 'DAEMON_RUNNING');
        assert.equal(calls.length, 1);
      }
    });

    for (const v of range(1, LATEST_VERSION - 1)) {
      it(`a database at schema version ${v}, holding data, migrates up and rolls back down without losing rows`, async () => {
        const store = await fx.open({ schema: 'none' });
        assert.deepEqual((await store.migrate({ to: v })).map((m) => m.version), range(1, v));
        assert.equal((await store.schemaStatus()).current, v);

        const seed = SEEDS[v]!();
        for (const [table, rows] of seed) await insertRows(fx, table, rows);
        const atV = await readSeeded(fx, seed);
        await assertHoldsSeed(fx, seed, atV);

        // Up to the latest version: every row still there, identical, and new columns defaulted.
        assert.deepEqual((await store.migrate()).map((m) => m.version), range(v + 1, LATEST_VERSION));
        assert.equal((await store.schemaStatus()).current, LATEST_VERSION);
        const latest = await readSeeded(fx, seed);
        for (const [table] of seed) {
          const added: Record<string, string | null> = {};
          for (const n of range(v + 1, LATEST_VERSION)) Object.assign(added, ADDED[n]?.[table] ?? {});
          assert.equal(latest[table]!.length, atV[table]!.length, `rows of ${table} after migrating up`);
          latest[table]!.forEach((row, i) => {
            const old = atV[table]![i]!;
            const expected: TextRow = { ...old };
            for (const [col, value] of Object.entries(added)) expected[col] = value;
            assert.deepEqual(row, expected, `${table} row ${i} after migrating from ${v} to ${LATEST_VERSION}`);
          });
        }

        // Back down to v: the same rows with the same values, and no column left from the newer versions.
        assert.deepEqual((await store.rollback({ to: v })).map((m) => m.version), range(v + 1, LATEST_VERSION).reverse());
        assert.equal((await store.schemaStatus()).current, v);
        assert.deepEqual(await readSeeded(fx, seed), atV);

        // And up again gives the same as the first time.
        await store.migrate();
        assert.deepEqual(await readSeeded(fx, seed), latest);
        await store.close();

        // The migrated data is usable through the library: audit chains intact, jobs readable and writable.
        const app = await fx.open({ schema: 'check', actor: 'test' });
        const report = await app.verifyAudit();
        assert.deepEqual(report.problems, []);
        assert.equal(report.entries, seed.find(([t]) => t === 'audit_log')![1].length);
        const seededJobs = seed.find(([t]) => t === 'jobs')![1];
        for (const row of seededJobs) {
          const job = await app.jobs.get({ id: String(row['id']) });
          assert.equal(job.tokenBalance, row['token_balance']);
          assert.equal(job.totalAccumulated, row['total_accumulated']);
          assert.equal(job.status, row['status']);
          assert.equal(job.version, row['version']);
        }
        const running = seededJobs.find((r) => r['status'] === 'RUNNING')!;
        const paused = await app.jobs.pause({ id: String(running['id']) });
        assert.equal(paused.version, Number(running['version']) + 1);
        assert.deepEqual((await app.verifyAudit()).problems, []);
      });
    }

    it('an empty database migrates 0 → latest, rolls back to 0 leaving no botstate tables, and migrates up again', async () => {
      const store = await fx.open({ schema: 'none' });
      assert.equal((await store.schemaStatus()).current, 0);
      assert.deepEqual(await userObjects(fx), []);
      assert.deepEqual((await store.migrate()).map((m) => m.version), range(1, LATEST_VERSION));
      const full = await userObjects(fx);
      for (const t of ['table jobs', 'table trades', 'table audit_log', 'table schema_migrations']) assert.ok(full.includes(t), `${t} after migrating up`);
      assert.deepEqual(await versionRows(fx), range(1, LATEST_VERSION));

      assert.deepEqual((await store.rollback({ to: 0 })).map((m) => m.version), range(1, LATEST_VERSION).reverse());
      assert.equal((await store.schemaStatus()).current, 0);
      // Only the (empty) version table is left: no botstate table, index, trigger or function.
      assert.deepEqual(await userObjects(fx), ['table schema_migrations']);
      assert.deepEqual(await versionRows(fx), []);

      assert.deepEqual((await store.migrate()).map((m) => m.version), range(1, LATEST_VERSION));
      assert.deepEqual(await userObjects(fx), full);
      const status = await store.schemaStatus();
      assert.deepEqual(status.migrations.map((m) => m.state), MIGRATIONS.map(() => 'applied'));
      await store.close();
      const app = await fx.open();
      assert.equal((await app.jobs.start({ tokenAddress: TOKEN })).status, 'RUNNING');
    });

    it('a rollback that would delete data is refused (DATA_LOSS) with nothing rolled back, unless forced', async () => {
      const store = await fx.open();
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      await store.ledger.recordIntent({ job: { id: job.id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
      const before = await fx.dump();
      const refusal = await rejectsWith(store.rollback({ to: 0 }), 'DATA_LOSS');
      assert.match(String(refusal["message"]), /^rolling back 0001_jobs_trades_audit would delete 1 job, 1 trade and 2 audit entries$/);
      assert.equal(await fx.dump(), before, 'nothing rolled back, not even the steps above 1');
      // Down to 1 drops only the strategy state: allowed while every job's is empty, refused once one is not.
      await store.jobs.saveScratch({ id: job.id }, { v: 1 });
      const withScratch = await fx.dump();
      await rejectsWith(store.rollback({ to: 1 }), 'DATA_LOSS');
      assert.equal(await fx.dump(), withScratch);
      // All the way down: everything that would go is said, not only the first step's loss.
      const all = await rejectsWith(store.rollback({ to: 0 }), 'DATA_LOSS');
      assert.match(String(all['message']), /^rolling back 0002_job_strategy_state and 0001_jobs_trades_audit would delete 1 job's strategy state, 1 job, 1 trade and 2 audit entries$/);
      assert.equal(await fx.dump(), withScratch);
      await store.jobs.saveScratch({ id: job.id }, {});
      assert.deepEqual((await store.rollback({ to: 1 })).map((m) => m.version), range(2, LATEST_VERSION).reverse());
      assert.deepEqual((await store.rollback({ to: 0, force: true })).map((m) => m.version), [1]);
      assert.deepEqual(await userObjects(fx), ['table schema_migrations']);
    });

    it('a rollback is refused (DAEMON_RUNNING), forced or not, while a daemon runs; the data-loss refusal still comes first', async () => {
      const store = await fx.open();
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      const p = (n: number) => (fx.engine === 'sqlite' ? '?' : `$${n}`);
      const now = fx.engine === 'sqlite' ? new Date().toISOString() : String((await fx.raw('SELECT clock_timestamp()::text AS t'))[0]!['t']);
      const at = (ms: number) => new Date(Date.parse(now) + ms).toISOString();
      const instance = (id: string, host: string, pid: number, heartbeat: string) =>
        fx.raw(`INSERT INTO daemon_instances (id, host, pid, started_at, heartbeat_at) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)})`, [id, host, pid, heartbeat, heartbeat]);
      const lease = (owner: string, expires: string) =>
        fx.raw(`INSERT INTO job_leases (job_id, owner, epoch, expires_at) VALUES (${p(1)}, ${p(2)}, 1, ${p(3)})`, [job.id, owner, expires]);
      const stop = (id: string) => fx.raw(`UPDATE daemon_instances SET stopped_at = heartbeat_at WHERE id = ${p(1)}`, [id]);
      const refusedWhileRunning = async (pattern: RegExp) => {
        const before = await fx.dump();
        for (const force of [false, true]) {
          const refusal = await rejectsWith(store.rollback({ force }), 'DAEMON_RUNNING');
          assert.match(String(refusal['message']), pattern);
        }
        assert.equal(await fx.dump(), before, 'nothing rolled back');
      };

      // Another host's daemon that heartbeated seconds ago (by the database's clock on PostgreSQL).
      await instance('d-b', 'host-b', 4242, at(-5_000));
      await refusedWhileRunning(/^a daemon \(pid 4242 on host-b\) is running on /);
      // Data loss is still what a rollback to 0 reports first.
      await rejectsWith(store.rollback({ to: 0 }), 'DATA_LOSS');
      await stop('d-b');
      // Another host's daemon that heartbeated long ago but holds a lease not yet expired (a long tick).
      await instance('d-c', 'host-c', 4343, at(-3_600_000));
      await lease('d-c', at(600_000));
      await refusedWhileRunning(/pid 4343 on host-c/);
      await stop('d-c');
      // A daemon of this host whose process exists, however long ago it heartbeated.
      await instance('d-here', hostname(), process.pid === 1 ? 2 : 1, at(-3_600_000));
      await refusedWhileRunning(/pid (1|2) on /);
      await stop('d-here');
      // Another host's daemon with a one-hour lease TTL, silent for two minutes without a lease:
      // it heartbeats every 20 minutes, so it is running.
      await instance('d-slow', 'host-s', 4545, at(-120_000));
      await fx.raw(`UPDATE daemon_instances SET lease_ttl_ms = 3600000 WHERE id = ${p(1)}`, ['d-slow']);
      await refusedWhileRunning(/pid 4545 on host-s/);
      await stop('d-slow');
      // A daemon of another host silent for two minutes without a lease, or stopped: not running.
      await instance('d-gone', 'host-d', 4444, at(-120_000));
      assert.deepEqual((await store.rollback()).map((m) => m.version), [LATEST_VERSION]);
    });

    it('on SQLite a migration up is refused (DAEMON_RUNNING) while a daemon runs on the file, nothing migrated; on PostgreSQL daemons of both versions may run', async () => {
      const store = await fx.open();
      await store.jobs.start({ tokenAddress: TOKEN });
      await store.rollback({ to: LATEST_VERSION - 1 });
      const p = (n: number) => (fx.engine === 'sqlite' ? '?' : `$${n}`);
      const now = fx.engine === 'sqlite' ? new Date().toISOString() : String((await fx.raw('SELECT clock_timestamp()::text AS t'))[0]!['t']);
      // An older daemon of another host that heartbeated seconds ago.
      await fx.raw(`INSERT INTO daemon_instances (id, host, pid, started_at, heartbeat_at) VALUES (${p(1)}, 'host-b', 4242, ${p(2)}, ${p(3)})`, ['d-old', now, now]);
      if (fx.engine === 'sqlite') {
        const refused = async (pattern: RegExp) => {
          const before = await fx.dump();
          const refusal = await rejectsWith(store.migrate(), 'DAEMON_RUNNING');
          assert.match(String(refusal['message']), pattern);
          assert.equal(await fx.dump(), before, 'nothing migrated');
          assert.equal((await store.schemaStatus()).current, LATEST_VERSION - 1);
        };
        await refused(/^a daemon \(pid 4242 on host-b\) is running on .*: migrating the schema under it would leave it running on a schema it does not know$/);
        await fx.raw(`UPDATE daemon_instances SET stopped_at = heartbeat_at WHERE id = ${p(1)}`, ['d-old']);
        // A daemon of this host whose process exists and which heartbeated lately.
        const alive = process.pid === 1 ? 2 : 1;
        await fx.raw(`INSERT INTO daemon_instances (id, host, pid, started_at, heartbeat_at) VALUES (${p(1)}, ${p(2)}, ${p(3)}, ${p(4)}, ${p(5)})`, ['d-here', hostname(), alive, now, now]);
        await refused(new RegExp(`^a daemon \\(pid ${alive} on `));
        // The same row silent for a minute: a daemon killed long ago whose pid another program has
        // taken since. A daemon that registers takes it for dead, and so does the migration.
        const old = new Date(Date.parse(now) - 60_000).toISOString();
        await fx.raw(`UPDATE daemon_instances SET heartbeat_at = ${p(1)} WHERE id = ${p(2)}`, [old, 'd-here']);
      }
      assert.deepEqual((await store.migrate()).map((m) => m.version), [LATEST_VERSION]);
    });

    it('a daemon that starts while a rollback waits for the migration lock is found before anything is rolled back', async () => {
      const store = await fx.open();
      await store.jobs.start({ tokenAddress: TOKEN });
      const other = await fx.open();
      const p = (n: number) => (fx.engine === 'sqlite' ? '?' : `$${n}`);
      const before = await fx.dump();
      const held = Promise.withResolvers<void>();
      const rollbackWaits = Promise.withResolvers<void>();
      // Another process's migration holds the lock (on SQLite: the write lock), and a daemon of this
      // host registers meanwhile, after the rollback's first check.
      const blocker = other.transaction(async (tx) => {
        if (fx.engine === 'postgres') {
          const key = createHash('sha256').update(`botstate:migrate:${pgSchema(fx)}`).digest().readBigInt64BE(0).toString();
          await tx.get('SELECT pg_advisory_xact_lock(?::bigint) AS locked', [key]);
        }
        held.resolve();
        await rollbackWaits.promise;
        const now = new Date().toISOString();
        await tx.run(`INSERT INTO daemon_instances (id, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)`, ['d-late', hostname(), process.pid === 1 ? 2 : 1, now, now]);
      });
      await held.promise;
      const rolledBack = store.rollback();
      await sleep(300); // its first check is done; it waits for the lock
      rollbackWaits.resolve();
      await blocker;
      const refusal = await rejectsWith(rolledBack, 'DAEMON_RUNNING');
      assert.match(String(refusal['message']), /^a daemon \(pid (1|2) on /);
      await fx.raw(`DELETE FROM daemon_instances WHERE id = ${p(1)}`, ['d-late']);
      assert.equal(await fx.dump(), before, 'nothing rolled back');
    });

    it('rollback without a target goes back exactly one version', async () => {
      const store = await fx.open();
      assert.deepEqual((await store.rollback()).map((m) => m.version), [LATEST_VERSION]);
      assert.equal((await store.schemaStatus()).current, LATEST_VERSION - 1);
      assert.deepEqual(await versionRows(fx), range(1, LATEST_VERSION - 1));
    });

    for (const m of MIGRATIONS) {
      it(`migration ${m.version} (${m.name}): up, down, up again gives an identical schema`, async () => {
        const store = await fx.open({ schema: 'none' });
        await store.migrate({ to: m.version - 1 });
        const before = stableDump(await fx.dump(), fx);
        assert.deepEqual((await store.migrate({ to: m.version })).map((x) => x.version), [m.version]);
        const up = stableDump(await fx.dump(), fx);
        assert.notEqual(up, before, 'the migration changed nothing');
        assert.deepEqual((await store.rollback({ to: m.version - 1 })).map((x) => x.version), [m.version]);
        const down = stableDump(await fx.dump(), fx);
        if (m.version > 1) {
          assert.equal(down, before, `rolling back ${m.version} restores version ${m.version - 1}`);
        } else {
          // From a blank database, only the empty version table (and SQLite's own bookkeeping) remains.
          assert.deepEqual(await userObjects(fx), ['table schema_migrations']);
          assert.deepEqual(await versionRows(fx), []);
        }
        assert.deepEqual((await store.migrate({ to: m.version })).map((x) => x.version), [m.version]);
        assert.equal(stableDump(await fx.dump(), fx), up);
      });
    }

    it('a schema newer than the code is refused on open, by check, migrate and rollback, and nothing changes', async () => {
      await (await fx.open()).close();
      const future = LATEST_VERSION + 1;
      const p = fx.engine === 'sqlite' ? ['?', '?', '?', '?'] : ['$1', '$2', '$3', '$4'];
      await fx.raw(`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (${p.join(', ')})`, [future, 'from_the_future', 'f'.repeat(64), '2030-01-01T00:00:00.000Z']);
      const before = await fx.dump();

      const details = await rejectsWith(fx.open(), 'SCHEMA_TOO_NEW');
      assert.equal(details['current'], future);
      assert.equal(details['latest'], LATEST_VERSION);
      assert.match(String(details['message']), new RegExp(`version ${future}`));
      await rejectsWith(fx.open({ schema: 'check' }), 'SCHEMA_TOO_NEW');

      // The db commands open with schema: 'none'; status shows the unknown version, the rest refuse.
      const db = await fx.open({ schema: 'none' });
      const status = await db.schemaStatus();
      assert.equal(status.current, future);
      assert.deepEqual(status.migrations.at(-1), { version: future, name: 'from_the_future', state: 'unknown', appliedAt: status.migrations.at(-1)!.appliedAt });
      await rejectsWith(db.migrate(), 'SCHEMA_TOO_NEW');
      await rejectsWith(db.rollback(), 'SCHEMA_TOO_NEW');
      await rejectsWith(db.rollback({ to: 0 }), 'SCHEMA_TOO_NEW');
      await db.close();

      assert.equal(await fx.dump(), before);
    });

    it('an applied migration whose checksum changed is refused, and nothing changes', async () => {
      const store = await fx.open({ schema: 'none' });
      await store.migrate({ to: 1 });
      await store.close();
      await fx.raw(`UPDATE schema_migrations SET checksum = ${fx.engine === 'sqlite' ? '?' : '$1'} WHERE version = 1`, ['0'.repeat(64)]);
      const before = await fx.dump();

      // With migrations pending (when there are any), migrating must not go ahead either.
      const details = await rejectsWith(fx.open(), 'MIGRATION_CHECKSUM_MISMATCH');
      assert.equal(details['version'], 1);
      assert.match(String(details['message']), /0001_jobs_trades_audit/);
      await rejectsWith(fx.open({ schema: 'check' }), 'MIGRATION_CHECKSUM_MISMATCH');
      const db = await fx.open({ schema: 'none' });
      assert.equal((await db.schemaStatus()).migrations[0]!.state, 'modified');
      await rejectsWith(db.migrate(), 'MIGRATION_CHECKSUM_MISMATCH');
      await rejectsWith(db.rollback(), 'MIGRATION_CHECKSUM_MISMATCH');
      await db.close();
      assert.equal(await fx.dump(), before);
      assert.deepEqual(await versionRows(fx), [1]);
      // The checksum of a pre-release build's migration 1 (2026-11-22): said to be one, with what to do.
      const preRelease = fx.engine === 'sqlite' ? 'dfbdba333b059292c656ed1e63726eea4faea989d0bc43998f1cf419ff3855df' : '3146f9e4300ab5d315ad03c0e5ee6a2791573c9683dde79da3ebef6757cac8f0';
      await fx.raw(`UPDATE schema_migrations SET checksum = ${fx.engine === 'sqlite' ? '?' : '$1'} WHERE version = 1`, [preRelease]);
      const old = await fx.dump();
      const said = await rejectsWith(fx.open(), 'MIGRATION_CHECKSUM_MISMATCH');
      assert.equal(said['preRelease'], true);
      assert.match(String(said['message']), /^this database was made by a pre-release build of botstate \(of 2026-11-22, before its schema was released\), which cannot be migrated$/);
      assert.equal(await fx.dump(), old);
    });

    it("schema: 'create' migrates a new database, or one part-made with no job; an outdated one in use is refused and left as it was", async () => {
      const fresh = await fx.open({ schema: 'create' });
      assert.equal((await fresh.schemaStatus()).current, MIGRATIONS.length);
      // Part-way through being made (a process killed between two migrations): finished.
      await fresh.rollback({ to: 3 });
      await fresh.close();
      const finished = await fx.open({ schema: 'create' });
      assert.equal((await finished.schemaStatus()).current, MIGRATIONS.length);
      // With no job but a daemon registered and running on it (one of an older release): in use.
      await finished.rollback({ to: 3 });
      await fx.raw(
        fx.engine === 'sqlite'
          ? "INSERT INTO daemon_instances (id, host, pid, started_at, heartbeat_at) VALUES ('old-1', 'h', 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')"
          : "INSERT INTO daemon_instances (id, host, pid, started_at, heartbeat_at) VALUES ('old-1', 'h', 1, now(), now())",
      );
      const withDaemon = await fx.dump();
      await rejectsWith(fx.open({ schema: 'create' }), 'SCHEMA_OUTDATED');
      assert.equal(await fx.dump(), withDaemon);
      await fx.raw("UPDATE daemon_instances SET stopped_at = heartbeat_at WHERE id = 'old-1'");
      await (await fx.open({ schema: 'create' })).close();
      // In use (it holds a job): left to db migrate.
      await finished.jobs.start({ tokenAddress: '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07' });
      await finished.rollback({ to: 3, force: true });
      await finished.close();
      const before = await fx.dump();
      await rejectsWith(fx.open({ schema: 'create' }), 'SCHEMA_OUTDATED');
      assert.equal(await fx.dump(), before);
    });

    it('a rollback with nothing to roll back changes nothing (on PostgreSQL it does not create the schema)', async () => {
      // A database botstate never migrated (no schema, an empty one, a SQLite file with no tables)
      // is not "at version 0": it is the wrong database (DATABASE_NOT_FOUND, the CLI's exit 4).
      const db = await fx.open({ schema: 'none' }); // SQLite: creates an empty file
      const before = await fx.dump();
      await rejectsWith(db.rollback(), 'DATABASE_NOT_FOUND');
      await rejectsWith(db.rollback({ to: 0, force: true }), 'DATABASE_NOT_FOUND');
      // Whatever the target: not "the schema is at version 0, below the target 3".
      await rejectsWith(db.rollback({ to: 3 }), 'DATABASE_NOT_FOUND');
      assert.equal(await fx.dump(), before);
      if (fx.engine === 'postgres') {
        const schema = new URL(fx.url).searchParams.get('schema')!;
        assert.deepEqual(await fx.raw('SELECT nspname FROM pg_namespace WHERE nspname = $1', [schema]), []);
      }
      // A botstate database rolled back to version 0 is one: nothing more to do, and said so.
      await db.migrate();
      assert.equal((await db.rollback({ to: 0, force: true })).length, MIGRATIONS.length);
      const atZero = await fx.dump();
      assert.deepEqual(await db.rollback(), []);
      assert.deepEqual(await db.rollback({ to: 0, force: true }), []);
      await rejectsWith(db.rollback({ to: 3 }), 'INVALID_ARGUMENT');
      assert.equal(await fx.dump(), atZero);
      await db.close();
    });

    it('a migration missing below the highest applied one (a gap) is refused (MIGRATION_GAP); rolling back below it repairs it', async () => {
      // What an older botstate could leave when a migrate and a rollback ran at once: 5 applied over 3.
      const store = await fx.open({ schema: 'none' });
      await store.migrate({ to: 3 });
      await store.close();
      const five = MIGRATIONS[4]!;
      await fx.raw(five.up[fx.engine]);
      const p = fx.engine === 'sqlite' ? ['?', '?', '?', '?'] : ['$1', '$2', '$3', '$4'];
      await fx.raw(`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (${p.join(', ')})`, [5, five.name, checksum(five, fx.engine), '2026-11-26T00:00:00.000Z']);
      const before = await fx.dump();
      const gap = await rejectsWith(fx.open(), 'MIGRATION_GAP');
      assert.match(String(gap['message']), /^migration 0004_\S+ is not applied, though version 5 is: the schema has a gap$/);
      await rejectsWith(fx.open({ schema: 'check' }), 'MIGRATION_GAP');
      const db = await fx.open({ schema: 'none' });
      await rejectsWith(db.migrate(), 'MIGRATION_GAP');
      assert.equal(await fx.dump(), before);
      assert.deepEqual((await db.rollback({ to: 3 })).map((m) => m.version), [5]);
      assert.deepEqual((await db.migrate()).map((m) => m.version), range(4, LATEST_VERSION));
      await db.close();
      assert.deepEqual(await versionRows(fx), range(1, LATEST_VERSION));
    });

    it('a rollback over a gap neither rolls back nor counts the losses of the migration that is missing', async () => {
      // 3 applied over 1: migration 2 (jobs.strategy_state) is missing, and its loss count would read that column.
      const store = await fx.open({ schema: 'none' });
      await store.migrate({ to: 1 });
      const three = MIGRATIONS[2]!;
      await store.transaction((tx) => tx.exec(three.up[fx.engine]));
      await store.close();
      const p = fx.engine === 'sqlite' ? ['?', '?', '?', '?'] : ['$1', '$2', '$3', '$4'];
      await fx.raw(`INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (${p.join(', ')})`, [3, three.name, checksum(three, fx.engine), '2026-11-26T00:00:00.000Z']);
      const db = await fx.open({ schema: 'none' });
      assert.deepEqual((await db.rollback({ to: 1 })).map((m) => m.version), [3]);
      assert.deepEqual((await db.migrate()).map((m) => m.version), range(2, LATEST_VERSION));
      await db.close();
    });

    it('a migrate and a rollback at once, from two stores, never leave a gap: each reaches its target or says another process moved the schema', { timeout: 60_000 }, async () => {
      const up = await fx.open({ schema: 'none' });
      const down = await fx.open({ schema: 'none' });
      await up.migrate();
      for (let round = 0; round < 12; round++) {
        const outcomes = await Promise.allSettled([
          down.rollback({ to: 1, force: true }),
          new Promise((resolve) => setTimeout(resolve, round % 4)).then(() => up.migrate()),
        ]);
        for (const o of outcomes) {
          if (o.status === 'rejected') assert.ok((o.reason as { code?: string }).code === 'CONCURRENT_MODIFICATION', String(o.reason));
        }
        const versions = await versionRows(fx);
        assert.deepEqual(versions, range(1, versions.length), `round ${round}: versions ${versions.join(',')}`);
        await up.migrate();
      }
      await up.close();
      await down.close();
    });

    it("schema: 'check' on an outdated schema refuses with SCHEMA_OUTDATED and changes nothing", async () => {
      const store = await fx.open({ schema: 'none' });
      await store.migrate({ to: LATEST_VERSION - 1 });
      const seed = SEEDS[LATEST_VERSION - 1]?.() ?? [];
      for (const [table, rows] of seed) await insertRows(fx, table, rows);
      await store.close();
      const before = await fx.dump();
      const details = await rejectsWith(fx.open({ schema: 'check' }), 'SCHEMA_OUTDATED');
      assert.equal(details['current'], LATEST_VERSION - 1);
      assert.equal(details['latest'], LATEST_VERSION);
      assert.equal(await fx.dump(), before);
      // The default (migrate) then brings it up to date.
      const app = await fx.open();
      assert.equal((await app.schemaStatus()).current, LATEST_VERSION);
    });

    it('a migration target outside 0..latest is refused', async () => {
      const store = await fx.open({ schema: 'none' });
      await rejectsWith(store.migrate({ to: LATEST_VERSION + 1 }), 'INVALID_ARGUMENT');
      await rejectsWith(store.migrate({ to: -1 }), 'INVALID_ARGUMENT');
      await rejectsWith(store.migrate({ to: 1.5 }), 'INVALID_ARGUMENT');
      assert.equal((await store.schemaStatus()).current, 0);
      await store.migrate();
      await rejectsWith(store.migrate({ to: 0 }), 'INVALID_ARGUMENT'); // going down is rollback's job
      await rejectsWith(store.rollback({ to: LATEST_VERSION + 1 }), 'INVALID_ARGUMENT');
      assert.equal((await store.schemaStatus()).current, LATEST_VERSION);
    });

    it('a PostgreSQL schema holding another application\'s tables is refused before anything is created in it', async () => {
      if (fx.engine !== 'postgres') return; // SQLite: see store.test.ts
      await fx.raw(`CREATE SCHEMA "${pgSchema(fx)}"`);
      for (const ddl of ['CREATE TABLE users (id INTEGER PRIMARY KEY)', 'CREATE TABLE schema_migrations (version TEXT PRIMARY KEY)']) {
        await fx.raw(ddl);
        const before = await fx.dump();
        for (const options of [{}, { schema: 'none' }, { create: false }] as const) {
          assert.match(String((await rejectsWith(fx.open(options), 'STORAGE_UNAVAILABLE'))['message']), /holds another application's tables/);
        }
        assert.equal(await fx.dump(), before);
      }
    });

    it('a migration that fails midway rolls back entirely: MIGRATION_FAILED, no version row, no partial tables', async () => {
      // Migration 1 creates jobs, trades, then audit_log: a pre-existing audit_log makes it fail
      // after its first statements have run. The database must look like botstate's (an empty
      // version table), or it is refused as somebody else's before migrating.
      if (fx.engine === 'sqlite') {
        writeFileSync(fx.url, '', { mode: 0o600 }); // an empty file is an empty SQLite database
        await fx.raw(`CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT`);
        await fx.raw(`CREATE TABLE audit_log (note TEXT)`);
      } else {
        await fx.raw(`CREATE SCHEMA "${pgSchema(fx)}"`);
        await fx.raw(`CREATE TABLE "${pgSchema(fx)}".schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)`);
        await fx.raw(`CREATE TABLE "${pgSchema(fx)}".audit_log (note TEXT)`);
      }
      const before = await fx.dump();
      const objects = await userObjects(fx);

      const details = await rejectsWith(fx.open(), 'MIGRATION_FAILED');
      assert.match(String(details['message']), /0001_jobs_trades_audit \(up\) failed/);
      assert.match(String(details['message']), /audit_log/);
      assert.equal(await fx.dump(), before);
      assert.deepEqual(await userObjects(fx), objects);
      if (fx.engine === 'sqlite') assert.deepEqual(await versionRows(fx), []);

      // Once the cause is gone, the same migration applies.
      await fx.raw('DROP TABLE audit_log');
      const store = await fx.open();
      assert.equal((await store.schemaStatus()).current, LATEST_VERSION);
    });

    it('a later migration that fails leaves the earlier ones applied and its own not at all', async () => {
      const store = await fx.open({ schema: 'none' });
      await store.migrate({ to: 1 });
      // Migration 2 adds jobs.strategy_state: make that column exist already.
      await fx.raw(`ALTER TABLE jobs ADD COLUMN strategy_state TEXT`);
      const before = await fx.dump();
      const details = await rejectsWith(store.migrate(), 'MIGRATION_FAILED');
      assert.match(String(details['message']), /0002_job_strategy_state \(up\) failed/);
      assert.equal(await fx.dump(), before);
      assert.deepEqual(await versionRows(fx), [1]);
      assert.equal((await store.schemaStatus()).current, 1);
    });

    it('several processes migrating a fresh database at the same moment apply each version exactly once', async () => {
      const CHILDREN = 4;
      const startAt = String(Date.now() + 2500);
      const results = await Promise.all(Array.from({ length: CHILDREN }, () => runChild('migrate-child.ts', [fx.url, startAt], { timeoutMs: 45_000 })));
      const applied: number[] = [];
      for (const r of results) {
        assert.equal(r.code, 0, `a migrating process failed: ${r.stderr || r.stdout}`);
        const out = JSON.parse(r.stdout) as { applied: number[]; current: number };
        assert.equal(out.current, LATEST_VERSION);
        applied.push(...out.applied);
      }
      assert.deepEqual(applied.sort((x, y) => x - y), range(1, LATEST_VERSION), 'every version applied by exactly one process');
      assert.deepEqual(await versionRows(fx), range(1, LATEST_VERSION));

      // The schema is exactly the one a single migrator builds.
      const ref = await engine.create();
      try {
        await (await ref.open()).close();
        assert.equal(stableDump(await fx.dump(), fx), stableDump(await ref.dump(), ref));
      } finally {
        await ref.cleanup();
      }
      const app = await fx.open({ schema: 'check' });
      assert.equal((await app.jobs.start({ tokenAddress: TOKEN })).status, 'RUNNING');
    });
  });
}
