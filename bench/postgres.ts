/**
 * The PostgreSQL cases: botstate on one throwaway schema vs pg on another, both created by
 * botstate's own migrations. The raw side checks out one pooled client per transaction and runs
 * BEGIN, the same named prepared statements and COMMIT on it, with the same session settings
 * (search_path, TimeZone=UTC, synchronous_commit off in `process` mode, on in `power` mode).
 * Its type parsers return the server's text as is, the cheapest a pg user can get.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { auditInsertFrom } from '../src/audit/audit.ts';
import { openStore, type Store } from '../src/store/store.ts';
import { botstateTrade, botstateTransition } from './botstate-side.ts';
import type { Durability, EngineSetup, SqlLog, StateCheck, SideState } from './engine.ts';
import type { Case, Impl } from './harness.ts';
import {
  ACTOR,
  benchToken,
  INSERT_TRADE,
  SELECT_TRADE_BY_CLIENT_ORDER_ID,
  rawTradeParams,
  rawTransitionParams,
  SELECT_JOB,
  toPg,
  tradeAmounts,
  updateJobSql,
  type Param,
  type RawJobRow,
  type RawTradeInput,
} from './workload.ts';

const SELECT_FOR_UPDATE = { name: 'raw_select_job', text: toPg(`${SELECT_JOB} FOR UPDATE`) };
const INSERT_TRADE_PG = { name: 'raw_insert_trade', text: toPg(INSERT_TRADE) };
const SELECT_TRADE_PG = { name: 'raw_select_trade', text: toPg(SELECT_TRADE_BY_CLIENT_ORDER_ID) };
const UPDATE_PG = new Map<string, { name: string; text: string }>();
/**
 * The named statement for the UPDATE of `columns` and the audit entry, prepared on each connection
 * the first time it runs there. One statement, as botstate's on PostgreSQL: the entry is inserted
 * only if the guarded UPDATE matched (a writable CTE), so one round trip fewer than two statements.
 */
function updatePg(columns: string): { name: string; text: string } {
  let q = UPDATE_PG.get(columns);
  if (q === undefined) {
    const text = toPg(`WITH changed AS (${updateJobSql(columns)} RETURNING 1) ${auditInsertFrom('changed')}`);
    UPDATE_PG.set(columns, (q = { name: `raw_update_job_${UPDATE_PG.size}`, text }));
  }
  return q;
}

const identity = (text: string): string => text;

export interface PgTarget {
  /** postgres://… without a schema parameter. */
  readonly url: string;
  /** Prefix of the throwaway schemas (`<prefix>_<durability>_bs` and `_raw`). */
  readonly schemaPrefix: string;
}

function storeUrl(url: string, schema: string): string {
  return `${url}${url.includes('?') ? '&' : '?'}schema=${schema}`;
}

async function seed(store: Store): Promise<{ tradeJob: string; transitionJob: string }> {
  const tradeJob = (await store.jobs.start({ tokenAddress: benchToken(1), tokenSymbol: 'TRADE' })).id;
  const transitionJob = (await store.jobs.start({ tokenAddress: benchToken(2), tokenSymbol: 'LIFE' })).id;
  return { tradeJob, transitionJob };
}

async function inTransaction(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<void>): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    await fn(c);
    await c.query('COMMIT');
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    throw e;
  } finally {
    c.release();
  }
}

async function selectJob(c: pg.PoolClient, jobId: string): Promise<RawJobRow> {
  const { rows } = await c.query<RawJobRow>({ ...SELECT_FOR_UPDATE, values: [jobId] });
  const row = rows[0];
  if (!row) throw new Error(`raw: no job ${jobId}`);
  return row;
}

function rawPg(pool: pg.Pool, tradeJob: string, transitionJob: string): { trade: Impl; transition: Impl } {
  let first = 0;
  let inputs: RawTradeInput[] = [];
  return {
    trade: {
      label: 'raw pg',
      async: true,
      prepare(start, count) {
        first = start;
        inputs = [];
        for (let k = 0; k < count; k++) inputs.push({ clientOrderId: `raw-${start + k}`, ...tradeAmounts(start + k) });
      },
      run(i) {
        const t = inputs[i - first]!;
        return inTransaction(pool, async (c) => {
          const row = await selectJob(c, tradeJob);
          if ((await c.query({ ...SELECT_TRADE_PG, values: [t.clientOrderId] })).rowCount !== 0) throw new Error(`raw: duplicate ${t.clientOrderId}`);
          const p = rawTradeParams(row, t);
          const inserted = await c.query({ ...INSERT_TRADE_PG, values: p.insert });
          if (inserted.rowCount !== 1) throw new Error(`raw: duplicate ${t.clientOrderId}`);
          const { columns, update, audit } = p.rest();
          const updated = await c.query({ ...updatePg(columns), values: [...update, ...audit] });
          if (updated.rowCount !== 1) throw new Error('raw: job changed meanwhile');
        });
      },
    },
    transition: {
      label: 'raw pg',
      async: true,
      prepare() {},
      run() {
        return inTransaction(pool, async (c) => {
          const t = rawTransitionParams(await selectJob(c, transitionJob));
          const updated = await c.query({ ...updatePg(t.columns), values: [...t.update, ...t.audit] });
          if (updated.rowCount !== 1) throw new Error('raw: job changed meanwhile');
        });
      },
    },
  };
}

export async function setupPostgres(target: PgTarget, durability: Durability): Promise<EngineSetup> {
  const bsSchema = `${target.schemaPrefix}_${durability}_bs`;
  const rawSchema = `${target.schemaPrefix}_${durability}_raw`;

  const store = await openStore(storeUrl(target.url, bsSchema), { durability, actor: ACTOR });
  const bsJobs = await seed(store);
  const creator = await openStore(storeUrl(target.url, rawSchema), { durability, actor: ACTOR });
  const rawJobs = await seed(creator);
  await creator.close();

  const pool = new pg.Pool({
    connectionString: target.url,
    max: 10,
    options: `-c search_path=${rawSchema} -c TimeZone=UTC -c DateStyle=ISO -c synchronous_commit=${durability === 'power' ? 'on' : 'off'}`,
    types: { getTypeParser: () => identity } as unknown as pg.CustomTypesConfig,
  });
  pool.on('error', () => {});
  const raw = rawPg(pool, rawJobs.tradeJob, rawJobs.transitionJob);

  const cases: Case[] = [
    { id: `postgres/${durability}/recordTrade`, engine: 'postgres', durability, op: 'recordTrade', botstate: botstateTrade(store, bsJobs.tradeJob, 'bs'), raw: raw.trade },
    { id: `postgres/${durability}/transition`, engine: 'postgres', durability, op: 'transition', botstate: botstateTransition(store, bsJobs.transitionJob), raw: raw.transition },
  ];

  return {
    cases,
    async verifySql(): Promise<SqlLog[]> {
      const log = new Map<string, string[]>();
      const proto = pg.Client.prototype as unknown as { query: (...a: unknown[]) => unknown };
      const original = proto.query;
      proto.query = function (this: { connectionParameters?: { options?: string } }, ...args: unknown[]) {
        const options = this.connectionParameters?.options ?? '';
        const key = options.includes(`search_path=${bsSchema} `) ? 'botstate' : options.includes(`search_path=${rawSchema} `) ? 'raw' : 'other';
        const config = args[0] as string | { text: string; values?: unknown[] };
        const text = typeof config === 'string' ? config : config.text;
        const values = (typeof config === 'string' ? args[1] : config.values) as unknown[] | undefined;
        const kinds = (values ?? []).map((a) => (a === null ? 'null' : typeof a)).join(',');
        (log.get(key) ?? log.set(key, []).get(key)!).push(`${text} [${kinds}]`);
        return original.apply(this, args);
      };
      try {
        for (const c of cases) {
          for (const impl of [c.botstate, c.raw]) {
            for (const i of [-2, -1]) {
              impl.prepare(i, 1);
              await impl.run(i);
              await sleep(3);
            }
          }
        }
      } finally {
        proto.query = original;
      }
      return [{ botstate: log.get('botstate') ?? [], raw: log.get('raw') ?? [] }];
    },
    async checkState(): Promise<StateCheck[]> {
      const client = new pg.Client({ connectionString: target.url, types: { getTypeParser: () => identity } as unknown as pg.CustomTypesConfig });
      await client.connect();
      try {
        const read = async (schema: string, jobs: { tradeJob: string; transitionJob: string }): Promise<SideState> => {
          const one = async (sql: string, values: Param[] = []) => (await client.query(sql.replaceAll('$s', `"${schema}"`), values)).rows[0] as Record<string, unknown>;
          return {
            trades: Number((await one('SELECT count(*) AS n FROM $s.trades WHERE job_id = $1', [jobs.tradeJob]))['n']),
            trade: canonicalAmounts(await one('SELECT token_balance, total_accumulated, version FROM $s.jobs WHERE id = $1', [jobs.tradeJob])),
            transition: await one('SELECT status, version FROM $s.jobs WHERE id = $1', [jobs.transitionJob]),
            audit: Number((await one('SELECT count(*) AS n FROM $s.audit_log'))['n']),
          };
        };
        const report = await store.verifyAudit();
        return [{ botstate: await read(bsSchema, bsJobs), raw: await read(rawSchema, rawJobs), auditProblems: report.problems.length, auditEntries: report.entries }];
      } finally {
        await client.end();
      }
    },
    async close() {
      await store.close();
      await pool.end();
    },
  };
}

/** NUMERIC text without insignificant trailing zeros, as botstate returns it. */
function canonicalAmounts(row: Record<string, unknown>): Record<string, unknown> {
  const canonical = (v: unknown) => {
    const text = String(v);
    return text.includes('.') ? text.replace(/\.?0+$/, '') : text;
  };
  return { ...row, token_balance: canonical(row['token_balance']), total_accumulated: canonical(row['total_accumulated']) };
}

/** Drops every schema this run created (`<prefix>_…`). */
export async function dropSchemas(url: string, prefix: string): Promise<string[]> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await client.connect();
  try {
    const { rows } = await client.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)', [`${prefix}_`]);
    for (const { nspname } of rows) await client.query(`DROP SCHEMA "${nspname}" CASCADE`);
    return rows.map((r) => r.nspname);
  } finally {
    await client.end();
  }
}

/** The server's version, or why it cannot be reached. */
export async function probePostgres(url: string): Promise<{ ok: true; version: string } | { ok: false; reason: string }> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return { ok: true, version: rows[0]!.server_version };
  } catch (e) {
    return { ok: false, reason: (e as Error).message || String(e) };
  } finally {
    await client.end().catch(() => {});
  }
}
