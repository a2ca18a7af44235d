/**
 * The SQLite cases: botstate on a file vs better-sqlite3 on another file created by botstate's
 * own migrations, with the same pragmas (WAL, synchronous NORMAL or FULL, foreign keys, the
 * same busy timeout), statements prepared once and run in `db.transaction(…).immediate()`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { openStore, type Store } from '../src/store/store.ts';
import { botstateTrade, botstateTransition } from './botstate-side.ts';
import type { Case, Impl } from './harness.ts';
import {
  ACTOR,
  benchToken,
  INSERT_AUDIT,
  INSERT_TRADE,
  SELECT_TRADE_BY_CLIENT_ORDER_ID,
  rawTradeParams,
  rawTransitionParams,
  SELECT_JOB,
  tradeAmounts,
  updateJobSql,
  type RawJobRow,
  type RawTradeInput,
} from './workload.ts';
import type { EngineSetup, Durability, StateCheck } from './engine.ts';

type Stmt = Database.Statement<unknown[], unknown>;

function rawSqlite(path: string, durability: Durability, tradeJob: string, transitionJob: string): { db: Database.Database; trade: Impl; transition: Impl } {
  const db = new Database(path, { timeout: 5000 });
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${durability === 'power' ? 'FULL' : 'NORMAL'}`);
  db.pragma('foreign_keys = ON');
  const select = db.prepare(SELECT_JOB);
  const selectTrade = db.prepare(SELECT_TRADE_BY_CLIENT_ORDER_ID);
  const insertTrade = db.prepare(INSERT_TRADE);
  const insertAudit = db.prepare(INSERT_AUDIT);
  const updates = new Map<string, Stmt>();
  const update = (columns: string): Stmt => {
    let stmt = updates.get(columns);
    if (stmt === undefined) updates.set(columns, (stmt = db.prepare(updateJobSql(columns))));
    return stmt;
  };

  const recordTrade = db.transaction((jobId: string, t: RawTradeInput) => {
    const row = select.get(jobId) as RawJobRow | undefined;
    if (!row) throw new Error(`raw: no job ${jobId}`);
    if (selectTrade.get(t.clientOrderId) !== undefined) throw new Error(`raw: duplicate ${t.clientOrderId}`);
    const p = rawTradeParams(row, t);
    if (insertTrade.run(...p.insert).changes !== 1) throw new Error(`raw: duplicate ${t.clientOrderId}`);
    const { columns, update: params, audit } = p.rest();
    if (update(columns).run(...params).changes !== 1) throw new Error('raw: job changed meanwhile');
    insertAudit.run(...audit);
  });
  const transition = db.transaction((jobId: string) => {
    const row = select.get(jobId) as RawJobRow | undefined;
    if (!row) throw new Error(`raw: no job ${jobId}`);
    const t = rawTransitionParams(row);
    if (update(t.columns).run(...t.update).changes !== 1) throw new Error('raw: job changed meanwhile');
    insertAudit.run(...t.audit);
  });

  let first = 0;
  let inputs: RawTradeInput[] = [];
  return {
    db,
    trade: {
      label: 'raw better-sqlite3',
      async: false,
      prepare(start, count) {
        first = start;
        inputs = [];
        for (let k = 0; k < count; k++) inputs.push({ clientOrderId: `raw-${start + k}`, ...tradeAmounts(start + k) });
      },
      run(i) {
        recordTrade.immediate(tradeJob, inputs[i - first]!);
      },
    },
    transition: {
      label: 'raw better-sqlite3',
      async: false,
      prepare() {},
      run() {
        transition.immediate(transitionJob);
      },
    },
  };
}

/** Creates a database with botstate's migrations and two RUNNING jobs; returns their ids. */
async function seed(store: Store): Promise<{ tradeJob: string; transitionJob: string }> {
  const tradeJob = (await store.jobs.start({ tokenAddress: benchToken(1), tokenSymbol: 'TRADE' })).id;
  const transitionJob = (await store.jobs.start({ tokenAddress: benchToken(2), tokenSymbol: 'LIFE' })).id;
  return { tradeJob, transitionJob };
}

/** The SQLite set-up, plus the raw side's connection for bench/breakdown.ts. */
export type SqliteSetup = EngineSetup & { readonly rawDb: Database.Database };

export async function setupSqlite(dir: string, durability: Durability): Promise<SqliteSetup> {
  const bsPath = join(dir, `botstate-${durability}.db`);
  const rawPath = join(dir, `raw-${durability}.db`);

  const store = await openStore(bsPath, { durability, actor: ACTOR });
  const bsJobs = await seed(store);
  const creator = await openStore(rawPath, { durability, actor: ACTOR });
  const rawJobs = await seed(creator);
  await creator.close();
  const raw = rawSqlite(rawPath, durability, rawJobs.tradeJob, rawJobs.transitionJob);

  const cases: Case[] = [
    { id: `sqlite/${durability}/recordTrade`, engine: 'sqlite', durability, op: 'recordTrade', botstate: botstateTrade(store, bsJobs.tradeJob, 'bs'), raw: raw.trade },
    { id: `sqlite/${durability}/transition`, engine: 'sqlite', durability, op: 'transition', botstate: botstateTransition(store, bsJobs.transitionJob), raw: raw.transition },
  ];

  return {
    cases,
    rawDb: raw.db,
    async verifySql() {
      const log = new Map<string, string[]>();
      const proto = Object.getPrototypeOf(raw.db.prepare('SELECT 1')) as Record<'run' | 'get' | 'all', (...a: unknown[]) => unknown>;
      const originals = { run: proto.run, get: proto.get, all: proto.all };
      for (const name of ['run', 'get', 'all'] as const) {
        const original = originals[name];
        proto[name] = function (this: Stmt, ...args: unknown[]) {
          const key = this.database.name;
          const kinds = args.map((a) => (a === null ? 'null' : typeof a)).join(',');
          (log.get(key) ?? log.set(key, []).get(key)!).push(`${this.source} [${kinds}]`);
          return original.apply(this, args);
        };
      }
      try {
        for (const c of cases) {
          for (const impl of [c.botstate, c.raw]) {
            // Two operations, far enough apart that every time column changes in both.
            for (const i of [-2, -1]) {
              impl.prepare(i, 1);
              await impl.run(i);
              await sleep(3);
            }
          }
        }
      } finally {
        Object.assign(proto, originals);
      }
      return [{ botstate: log.get(bsPath) ?? [], raw: log.get(rawPath) ?? [] }];
    },
    async checkState(): Promise<StateCheck[]> {
      const bsDb = new Database(bsPath, { readonly: true });
      try {
        const read = (db: Database.Database, jobs: { tradeJob: string; transitionJob: string }) => ({
          trades: (db.prepare('SELECT count(*) AS n FROM trades WHERE job_id = ?').get(jobs.tradeJob) as { n: number }).n,
          trade: db.prepare('SELECT token_balance, total_accumulated, version FROM jobs WHERE id = ?').get(jobs.tradeJob) as Record<string, unknown>,
          transition: db.prepare('SELECT status, version FROM jobs WHERE id = ?').get(jobs.transitionJob) as Record<string, unknown>,
          audit: (db.prepare('SELECT count(*) AS n FROM audit_log').get() as { n: number }).n,
        });
        const report = await store.verifyAudit();
        return [{ botstate: read(bsDb, bsJobs), raw: read(raw.db, rawJobs), auditProblems: report.problems.length, auditEntries: report.entries }];
      } finally {
        bsDb.close();
      }
    },
    async close() {
      await store.close();
      raw.db.close();
    },
  };
}
