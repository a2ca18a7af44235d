/**
 * The engines every contract test runs against: a fresh SQLite file, and a fresh schema on the
 * real PostgreSQL server. Nothing is mocked.
 *
 * PostgreSQL: $BOTSTATE_TEST_PG, default postgres://postgres@127.0.0.1:5432/test. When it is
 * unreachable the PostgreSQL tests are skipped with a loud warning, except under CI=true, where
 * that is a failure.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { openStore, type Store, type StoreOptions } from '../../src/store/store.ts';

export const PG_URL = process.env['BOTSTATE_TEST_PG'] ?? 'postgres://postgres@127.0.0.1:5432/test';

async function probePostgres(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (e) {
    return (e as Error).message || String(e);
  } finally {
    await client.end().catch(() => {});
  }
}

const pgProblem = await probePostgres();
if (pgProblem !== undefined) {
  if (process.env['CI'] === 'true') {
    throw new Error(`PostgreSQL at ${PG_URL} is unreachable under CI=true: ${pgProblem}`);
  }
  process.stderr.write(`\n*** WARNING: PostgreSQL at ${PG_URL} is unreachable (${pgProblem}); SKIPPING every PostgreSQL test ***\n\n`);
}

/** A fresh, empty database on one engine. */
export interface Fixture {
  readonly engine: 'sqlite' | 'postgres';
  /** The URL to pass to openStore or to the CLI's --db. */
  readonly url: string;
  /** Opens a store on this database (the fixture closes it in `cleanup`). */
  open(options?: StoreOptions): Promise<Store>;
  /** A logical dump of every table and row, through the raw driver, for before/after comparisons. */
  dump(): Promise<string>;
  /** Runs SQL through the raw driver (for tampering and for seeding old schema versions). */
  raw(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  cleanup(): Promise<void>;
}

export interface EngineDef {
  readonly name: 'sqlite' | 'postgres';
  /** A reason to skip, or false. */
  readonly skip: string | false;
  create(): Promise<Fixture>;
}

let counter = 0;

function sqliteFixture(): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'botstate-test-'));
  const path = join(dir, 'test.db');
  const stores: Store[] = [];
  const withDb = <T>(fn: (db: Database.Database) => T): T => {
    const db = new Database(path, { fileMustExist: true });
    try {
      return fn(db);
    } finally {
      db.close();
    }
  };
  return {
    engine: 'sqlite',
    url: path,
    async open(options) {
      const store = await openStore(path, options);
      stores.push(store);
      return store;
    },
    async dump() {
      return withDb((db) => {
        const objects = db.prepare(`SELECT type, name, sql FROM sqlite_master ORDER BY type, name`).all() as Array<{ type: string; name: string; sql: string | null }>;
        const out: string[] = objects.map((o) => `${o.type} ${o.name}: ${o.sql ?? ''}`);
        for (const { name } of objects.filter((o) => o.type === 'table')) {
          const rows = db.prepare(`SELECT * FROM "${name}" ORDER BY 1`).raw().all();
          out.push(`-- ${name} (${rows.length})`, ...rows.map((r) => JSON.stringify(r)));
        }
        return out.join('\n');
      });
    },
    async raw(sql, params = []) {
      return withDb((db) => {
        const stmt = db.prepare(sql);
        return stmt.reader ? (stmt.all(...params) as Record<string, unknown>[]) : (stmt.run(...params), []);
      });
    },
    async cleanup() {
      for (const s of stores) await s.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function postgresFixture(): Promise<Fixture> {
  const schema = `t_${process.pid}_${++counter}_${Math.random().toString(36).slice(2, 8)}`;
  const url = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}schema=${schema}`;
  const stores: Store[] = [];
  const admin = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${schema}` });
  await admin.connect();
  return {
    engine: 'postgres',
    url,
    async open(options) {
      const store = await openStore(url, options);
      stores.push(store);
      return store;
    },
    async dump() {
      const out: string[] = [];
      const tables = await admin.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
        [schema],
      );
      const columns = await admin.query(
        `SELECT table_name, column_name, data_type, is_nullable, column_default FROM information_schema.columns WHERE table_schema = $1 ORDER BY table_name, ordinal_position`,
        [schema],
      );
      out.push(...columns.rows.map((c) => JSON.stringify(c)));
      const indexes = await admin.query(`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY indexname`, [schema]);
      out.push(...indexes.rows.map((i) => JSON.stringify(i)));
      for (const { table_name } of tables.rows as Array<{ table_name: string }>) {
        const rows = await admin.query({ text: `SELECT * FROM "${schema}"."${table_name}" ORDER BY 1`, rowMode: 'array' });
        out.push(`-- ${table_name} (${rows.rowCount})`, ...rows.rows.map((r) => JSON.stringify(r)));
      }
      return out.join('\n');
    },
    async raw(sql, params = []) {
      return (await admin.query(sql, params)).rows;
    },
    async cleanup() {
      for (const s of stores) await s.close().catch(() => {});
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await admin.end();
    },
  };
}

export const ENGINES: readonly EngineDef[] = [
  { name: 'sqlite', skip: false, create: async () => sqliteFixture() },
  {
    name: 'postgres',
    skip: pgProblem === undefined ? false : `PostgreSQL unreachable: ${pgProblem}`,
    create: postgresFixture,
  },
];

/** The demo token of seed 000 (valid EIP-55). */
export const TOKEN = '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07';

/** A deterministic, valid, distinct token address for index `i`. */
export function tokenAddress(i: number): string {
  return `0x${i.toString(16).padStart(40, '0')}`;
}

/**
 * Takes an ACCESS EXCLUSIVE lock on one table of a PostgreSQL fixture's schema, from a session of
 * its own, held until the returned function is called (a migration's or a maintenance job's lock).
 */
export async function lockTable(fx: Fixture, table: string): Promise<() => Promise<void>> {
  const schema = new URL(fx.url).searchParams.get('schema')!;
  const locker = new pg.Client({ connectionString: PG_URL });
  await locker.connect();
  await locker.query('BEGIN');
  await locker.query(`LOCK TABLE "${schema}"."${table}" IN ACCESS EXCLUSIVE MODE`);
  let released = false;
  return async () => {
    if (released) return;
    released = true;
    await locker.query('ROLLBACK').catch(() => {});
    await locker.end();
  };
}
