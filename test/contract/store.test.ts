/**
 * Opening a store: URL forms and defaults, options, the SQLite file and its pragmas, the
 * PostgreSQL session settings, unusable databases (missing, a directory, not SQLite, somebody
 * else's, unreachable), lock contention on SQLite, and concurrent writers on one job.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import { exitCodeFor, isBotstateError } from '../../src/errors.ts';
import { classifyPostgresError, PostgresAdapter } from '../../src/store/postgres/postgres-adapter.ts';
import { openStore, type Store, type StoreOptions } from '../../src/store/store.ts';
import type { Executor } from '../../src/store/adapter.ts';
import { envWithout, runChild } from '../helpers/child.ts';
import { rejectsWith } from '../helpers/assert.ts';
import { ENGINES, PG_URL, TOKEN, tokenAddress, type Fixture } from '../helpers/engines.ts';


/** Exact 18-decimal formatting of base units. */
function fmt18(units: bigint): string {
  const digits = units.toString().padStart(19, '0');
  const frac = digits.slice(-18).replace(/0+$/, '');
  return `${digits.slice(0, -18)}${frac ? `.${frac}` : ''}`;
}

const mode = (path: string): number => statSync(path).mode & 0o777;
const pgSkip = ENGINES.find((e) => e.name === 'postgres')!.skip;
const pgEngine = ENGINES.find((e) => e.name === 'postgres')!;

/** Parses the JSON line an open-child prints, failing with its stderr if it did not succeed. */
function childOutput(r: { code: number | null; stdout: string; stderr: string }): { engine: string; location: string; jobs: number } {
  assert.equal(r.code, 0, `the child failed: ${r.stderr || r.stdout}`);
  return JSON.parse(r.stdout) as { engine: string; location: string; jobs: number };
}

function jobsIn(path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM jobs').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe('store location and options', () => {
  let dir: string;
  const stores: Store[] = [];
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'botstate-store-'));
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  const open = async (url?: string, options?: StoreOptions): Promise<Store> => {
    const s = await openStore(url, options);
    stores.push(s);
    return s;
  };

  it('a bare path opens SQLite there, creating the file with mode 0600 (and its WAL files too)', async () => {
    const path = join(dir, 'bare.db');
    const store = await open(path);
    assert.equal(store.engine, 'sqlite');
    assert.equal(store.location, path);
    await store.jobs.start({ tokenAddress: TOKEN });
    assert.equal(mode(path), 0o600);
    for (const f of readdirSync(dir)) assert.equal(mode(join(dir, f)), 0o600, `${f} is readable by others`);
    assert.ok(existsSync(`${path}-wal`), 'WAL mode keeps a -wal file');
    await store.close();
    assert.equal(jobsIn(path), 1);
  });

  it('sqlite:/absolute/path opens that file', async () => {
    const path = join(dir, 'abs.db');
    const store = await open(`sqlite:${path}`);
    assert.equal(store.engine, 'sqlite');
    await store.jobs.start({ tokenAddress: TOKEN });
    await store.close();
    assert.equal(jobsIn(path), 1);
  });

  it('sqlite:./x.db is relative to the working directory', async () => {
    const r = childOutput(await runChild('open-child.ts', ['sqlite:./x.db'], { cwd: dir, env: envWithout('BOTSTATE_DB') }));
    assert.equal(r.engine, 'sqlite');
    assert.equal(r.jobs, 1);
    assert.equal(jobsIn(join(dir, 'x.db')), 1);
    assert.equal(mode(join(dir, 'x.db')), 0o600);
  });

  for (const url of [':memory:', 'sqlite::memory:']) {
    it(`${url} is an in-memory database that leaves no file behind`, async () => {
      const r = childOutput(await runChild('open-child.ts', [url], { cwd: dir, env: envWithout('BOTSTATE_DB') }));
      assert.equal(r.engine, 'sqlite');
      assert.equal(r.jobs, 1);
      assert.deepEqual(readdirSync(dir), []);
      // Two in-memory stores are two separate databases.
      const a = await open(url);
      const b = await open(url);
      await a.jobs.start({ tokenAddress: TOKEN });
      assert.equal((await a.jobs.list()).length, 1);
      assert.equal((await b.jobs.list()).length, 0);
    });
  }

  it('with no URL, $BOTSTATE_DB is used', async () => {
    const path = join(dir, 'from-env.db');
    const cwd = join(dir, 'cwd');
    mkdirSync(cwd);
    const r = childOutput(await runChild('open-child.ts', [], { cwd, env: { ...envWithout('BOTSTATE_DB'), BOTSTATE_DB: path } }));
    assert.equal(r.location, path);
    assert.equal(jobsIn(path), 1);
    assert.deepEqual(readdirSync(cwd), [], 'the default ./botstate.db was not created');
  });

  it('an explicit URL wins over $BOTSTATE_DB', async () => {
    const fromEnv = join(dir, 'env.db');
    const explicit = join(dir, 'explicit.db');
    const r = childOutput(await runChild('open-child.ts', [explicit], { cwd: dir, env: { ...envWithout('BOTSTATE_DB'), BOTSTATE_DB: fromEnv } }));
    assert.equal(r.location, explicit);
    assert.equal(jobsIn(explicit), 1);
    assert.equal(existsSync(fromEnv), false);
  });

  for (const [label, env] of [
    ['neither a URL nor $BOTSTATE_DB', () => envWithout('BOTSTATE_DB')],
    ['an empty $BOTSTATE_DB', () => ({ ...envWithout('BOTSTATE_DB'), BOTSTATE_DB: '' })],
  ] as const) {
    it(`with ${label}, the store is ./botstate.db in the working directory`, async () => {
      const r = childOutput(await runChild('open-child.ts', [], { cwd: dir, env: env() }));
      assert.equal(r.engine, 'sqlite');
      assert.equal(r.location, './botstate.db');
      const path = join(dir, 'botstate.db');
      assert.equal(jobsIn(path), 1);
      assert.equal(mode(path), 0o600);
    });
  }

  it('$BOTSTATE_DB may name a PostgreSQL database', { skip: pgSkip }, async () => {
    const fx = await pgEngine.create();
    try {
      const r = childOutput(await runChild('open-child.ts', [], { cwd: dir, env: { ...envWithout('BOTSTATE_DB'), BOTSTATE_DB: fx.url } }));
      assert.equal(r.engine, 'postgres');
      assert.equal(r.jobs, 1);
      assert.equal((await fx.raw('SELECT count(*)::int AS n FROM jobs'))[0]?.['n'], 1);
      assert.deepEqual(readdirSync(dir), []);
    } finally {
      await fx.cleanup();
    }
  });

  for (const url of ['mysql://root@localhost/bots', 'http://example.com/x.db', '', 'sqlite:']) {
    it(`URL ${JSON.stringify(url)} is refused as USAGE, creating nothing`, async () => {
      await rejectsWith(open(url), 'USAGE');
      assert.deepEqual(readdirSync(dir), []);
    });
  }

  for (const schema of ['Bots', '1bots', 'bots-1', 'x";drop schema public;--', 'a'.repeat(64), '']) {
    it(`PostgreSQL schema name ${JSON.stringify(schema.slice(0, 20))} is refused as USAGE`, async () => {
      const details = await rejectsWith(open(`postgres://postgres@127.0.0.1:5432/test?schema=${encodeURIComponent(schema)}`), 'USAGE');
      assert.match(String(details['message']), /schema name/);
    });
  }

  it('a malformed PostgreSQL URL is refused as USAGE', async () => {
    await rejectsWith(open('postgres://[::1:5432/test'), 'USAGE');
  });

  it('an unknown (mistyped) option is refused with INVALID_ARGUMENT naming it, before anything is created', async () => {
    const path = join(dir, 'opt.db');
    const details = await rejectsWith(open(path, { durabilty: 'power' } as unknown as StoreOptions), 'INVALID_ARGUMENT');
    assert.match(String(details['message']), /durabilty/);
    assert.equal(existsSync(path), false);
  });

  const badValues: Array<[string, Record<string, unknown>]> = [
    ['durability', { durability: 'disk' }],
    ['durability', { durability: 'POWER' }],
    ['schema', { schema: 'auto' }],
    ['create', { create: 'yes' }],
    ['create', { create: 1 }],
    ['actor', { actor: '' }],
    ['actor', { actor: 'x'.repeat(201) }],
    ['actor', { actor: 42 }],
    ['busyTimeoutMs', { busyTimeoutMs: -1 }],
    ['busyTimeoutMs', { busyTimeoutMs: 1.5 }],
    ['busyTimeoutMs', { busyTimeoutMs: '200' }],
    ['busyTimeoutMs', { busyTimeoutMs: Number.NaN }],
    ['poolSize', { poolSize: 0 }],
    ['poolSize', { poolSize: Infinity }],
    ['connectTimeoutMs', { connectTimeoutMs: 0 }],
  ];
  for (const [key, options] of badValues) {
    const label = Object.entries(options).map(([k, v]) => `${k}=${typeof v === 'string' ? JSON.stringify(v.slice(0, 12)) : String(v)}`).join(' ');
    it(`option ${label} is refused with INVALID_ARGUMENT`, async () => {
      const path = join(dir, 'opt.db');
      const details = await rejectsWith(open(path, options as StoreOptions), 'INVALID_ARGUMENT');
      assert.match(String(details['message']), new RegExp(key));
      assert.equal(existsSync(path), false);
    });
  }

  it('the store reports the durability it was opened with (default process)', async () => {
    assert.equal((await open(join(dir, 'a.db'))).durability, 'process');
    assert.equal((await open(join(dir, 'b.db'), { durability: 'power' })).durability, 'power');
  });
});

describe('unusable SQLite databases are refused and left untouched', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'botstate-store-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('create: false on a missing file → DATABASE_NOT_FOUND, and no file is created', async () => {
    const path = join(dir, 'missing.db');
    await rejectsWith(openStore(path, { create: false }), 'DATABASE_NOT_FOUND');
    await rejectsWith(openStore(`sqlite:${path}`, { create: false, schema: 'none' }), 'DATABASE_NOT_FOUND');
    assert.deepEqual(readdirSync(dir), []);
  });

  it('create: false opens an existing database', async () => {
    const path = join(dir, 'there.db');
    const first = await openStore(path);
    await first.jobs.start({ tokenAddress: TOKEN });
    await first.close();
    const again = await openStore(path, { create: false });
    try {
      assert.equal((await again.jobs.list()).length, 1);
    } finally {
      await again.close();
    }
  });

  it('a directory → STORAGE_UNAVAILABLE', async () => {
    const path = join(dir, 'adir');
    mkdirSync(path);
    await rejectsWith(openStore(path), 'STORAGE_UNAVAILABLE');
    assert.deepEqual(readdirSync(path), []);
  });

  it('a device or a named pipe → STORAGE_UNAVAILABLE, saying it is no regular file, with nothing made beside it', async () => {
    const fifo = join(dir, 'pipe.db');
    execFileSync('mkfifo', [fifo]);
    for (const path of [fifo, '/dev/null']) {
      const details = await rejectsWith(openStore(path), 'STORAGE_UNAVAILABLE');
      assert.equal(details['message'], `${path} is not a regular file (a device, a pipe or a socket), so it cannot hold a database`);
      for (const suffix of ['-journal', '-wal', '-shm', '-wait']) assert.equal(existsSync(`${path}${suffix}`), false, `${path}${suffix}`);
    }
    assert.deepEqual(readdirSync(dir), ['pipe.db']);
  });

  it('a file in a directory that does not exist → STORAGE_UNAVAILABLE', async () => {
    await rejectsWith(openStore(join(dir, 'no', 'such', 'dir', 'x.db')), 'STORAGE_UNAVAILABLE');
    assert.deepEqual(readdirSync(dir), []);
  });

  const notSqlite: Array<[string, () => Buffer]> = [
    ['a text file', () => Buffer.from('{"jobs": []}\nthis is my bot config, not a database\n'.repeat(40))],
    ['random bytes', () => randomBytes(16384)],
  ];
  for (const [label, content] of notSqlite) {
    it(`${label} → STORAGE_CORRUPT, with its bytes unchanged and nothing created beside it`, async () => {
      const path = join(dir, 'victim.db');
      const bytes = content();
      writeFileSync(path, bytes, { mode: 0o644 });
      for (const options of [{}, { schema: 'check' }, { schema: 'none' }, { create: false }] as StoreOptions[]) {
        await rejectsWith(openStore(path, options), 'STORAGE_CORRUPT');
      }
      assert.ok(readFileSync(path).equals(bytes), 'the file was modified');
      assert.deepEqual(readdirSync(dir), ['victim.db']);
      assert.equal(mode(path), 0o644);
    });
  }

  it('an empty file is no database to a command that does not create one (exit 4), and stays empty', async () => {
    const path = join(dir, 'empty.db');
    writeFileSync(path, '');
    for (const options of [{ create: false }, { create: false, schema: 'none' }] as StoreOptions[]) {
      await rejectsWith(openStore(path, options), 'DATABASE_NOT_FOUND');
    }
    assert.equal(readFileSync(path).length, 0);
    assert.deepEqual(readdirSync(dir), ['empty.db']);
    // One that creates databases makes it one.
    await (await openStore(path)).close();
    assert.ok(readFileSync(path).length > 0);
  });

  for (const [app, ddl] of [
    ['another application', ''],
    ['an application with its own schema_migrations table (Rails, Ecto, golang-migrate)', 'CREATE TABLE schema_migrations (version TEXT PRIMARY KEY);'],
  ] as const) {
    it(`a SQLite database of ${app} is refused, with its bytes unchanged`, async () => {
      const path = join(dir, 'other-app.db');
      const db = new Database(path);
      db.exec(`${ddl} CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);`);
      db.close();
      const bytes = readFileSync(path);
      for (const options of [{}, { schema: 'none' }, { create: false }] as StoreOptions[]) {
        assert.match(String((await rejectsWith(openStore(path, options), 'STORAGE_UNAVAILABLE'))['message']), /another application's tables/);
      }
      assert.deepEqual(readdirSync(dir), ['other-app.db']);
      assert.ok(readFileSync(path).equals(bytes), 'the file was modified');
    });
  }

  it("a SQLite database holding another application's tables is refused, with its bytes unchanged", async () => {
    const path = join(dir, 'other-app.db');
    const db = new Database(path);
    db.exec(`CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);
             CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER REFERENCES users (id), total TEXT);
             INSERT INTO users (email) VALUES ('a@example.com'), ('b@example.com');
             INSERT INTO orders (user_id, total) VALUES (1, '19.99');`);
    db.close();
    const bytes = readFileSync(path);
    const details = await rejectsWith(openStore(path), 'STORAGE_UNAVAILABLE');
    assert.match(String(details['message']), /another application/);
    await rejectsWith(openStore(path, { schema: 'none' }), 'STORAGE_UNAVAILABLE');
    // Refusing must not convert the other application's file to WAL mode or leave -wal/-shm files.
    assert.deepEqual(readdirSync(dir), ['other-app.db']);
    const check = new Database(path, { readonly: true });
    const journal = check.pragma('journal_mode', { simple: true });
    check.close();
    assert.equal(journal, 'delete', "the other application's database was switched to WAL mode before being refused");
    assert.ok(readFileSync(path).equals(bytes), 'the other application\'s database file was modified');
  });
});

for (const engine of ENGINES) {
  describe(`store session settings [${engine.name}]`, { skip: engine.skip }, () => {
    let fx: Fixture;
    beforeEach(async () => {
      fx = await engine.create();
    });
    afterEach(() => fx.cleanup());

    if (engine.name === 'sqlite') {
      const modes = [
        ['process', true, 1, 'NORMAL'],
        // Group commit fsyncs the WAL itself after each shared commit (test/contract/group-commit.test.ts).
        ['power', true, 1, 'NORMAL and group commit'],
        ['power', false, 2, 'FULL'],
      ] as const;
      for (const [durability, groupCommit, level, name] of modes) {
        it(`durability '${durability}' (groupCommit ${groupCommit}) runs with synchronous=${name}, WAL, foreign keys on and savepoint journals in memory`, async () => {
          const store = await fx.open({ durability, groupCommit });
          assert.deepEqual(await store.transaction((tx) => tx.get('PRAGMA synchronous')), { synchronous: level });
          assert.deepEqual(await store.transaction((tx) => tx.get('PRAGMA foreign_keys')), { foreign_keys: 1 });
          assert.deepEqual(await store.transaction((tx) => tx.get('PRAGMA temp_store')), { temp_store: 2 });
          assert.deepEqual(await fx.raw('PRAGMA journal_mode'), [{ journal_mode: 'wal' }]);
        });
      }
    } else {
      for (const [durability, value] of [['process', 'off'], ['power', 'on']] as const) {
        it(`durability '${durability}' runs with synchronous_commit=${value}`, async () => {
          const store = await fx.open({ durability });
          assert.deepEqual(await store.transaction((tx) => tx.get('SHOW synchronous_commit')), { synchronous_commit: value });
          // Every connection of the pool has it, not just the first.
          const many = await Promise.all(Array.from({ length: 6 }, () => store.transaction(async (tx) => {
            const row = await tx.get<{ synchronous_commit: string }>('SHOW synchronous_commit');
            await tx.get('SELECT pg_sleep(0.05)');
            return row?.synchronous_commit;
          })));
          assert.deepEqual(many, Array(6).fill(value));
        });
      }

      it('the location names the schema and never the password', async () => {
        const url = fx.url.replace('postgres://postgres@', 'postgres://postgres:sekret-pw@');
        assert.notEqual(url, fx.url, 'the fixture URL has the expected shape');
        const store = await openStore(url);
        try {
          assert.equal(store.engine, 'postgres');
          assert.doesNotMatch(store.location, /sekret-pw/);
          assert.match(store.location, new RegExp(`schema ${new URL(fx.url).searchParams.get('schema')}`));
        } finally {
          await store.close();
        }
      });

      it('?schema= puts the tables in that schema, and postgresql:// works too', async () => {
        const schema = new URL(fx.url).searchParams.get('schema')!;
        const store = await openStore(fx.url.replace(/^postgres:/, 'postgresql:'));
        try {
          await store.jobs.start({ tokenAddress: TOKEN });
        } finally {
          await store.close();
        }
        const tables = await fx.raw(`SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1`, [schema]);
        assert.deepEqual(tables.map((t) => t['table_name']), ['audit_log', 'daemon_instances', 'job_leases', 'jobs', 'schema_migrations', 'trades']);
        assert.equal((await fx.raw('SELECT count(*)::int AS n FROM jobs'))[0]?.['n'], 1);
      });

      it('a pool of one connection can open (and migrate) a fresh schema', async () => {
        // withMigrationLock holds a pooled client for the advisory lock while each migration
        // step needs another one from the same pool.
        const store = await openStore(fx.url, { poolSize: 1, connectTimeoutMs: 2000 });
        try {
          assert.equal((await store.jobs.start({ tokenAddress: TOKEN })).status, 'RUNNING');
        } finally {
          await store.close();
        }
      });
    }

    it("schema: 'check' where there is no database refuses with DATABASE_NOT_FOUND and creates nothing", async () => {
      await rejectsWith(openStore(fx.url, { schema: 'check' }), 'DATABASE_NOT_FOUND');
      if (fx.engine === 'sqlite') {
        assert.equal(existsSync(fx.url), false, 'an empty database file was left behind');
      } else {
        const schema = new URL(fx.url).searchParams.get('schema');
        assert.deepEqual(await fx.raw('SELECT nspname FROM pg_namespace WHERE nspname = $1', [schema]), [], 'the schema was created');
      }
    });

    it('a closed store refuses calls with STORAGE_UNAVAILABLE, and closing again is a no-op', async () => {
      const store = await fx.open();
      await store.jobs.start({ tokenAddress: TOKEN });
      await store.close();
      await store.close();
      await assert.rejects(store.jobs.list(), (e: unknown) => isBotstateError(e) && e.code === 'STORAGE_UNAVAILABLE' && /is closed/.test(e.message) && /open another with openStore/.test(e.hint ?? ''));
      await assert.rejects(store.jobs.start({ tokenAddress: tokenAddress(2) }), (e: unknown) => isBotstateError(e) && e.code === 'STORAGE_UNAVAILABLE');
    });

    it('foreign keys are enforced: a trade for a job that does not exist is refused', async () => {
      const store = await fx.open();
      await assert.rejects(
        store.transaction((tx) =>
          tx.run(
            `INSERT INTO trades (id, job_id, side, reason, client_order_id, status, created_at) VALUES ('t1', 'no-such-job', 'BUY', 'DCA', 'c1', 'PENDING', ?)`,
            [new Date().toISOString()],
          ),
        ),
        (e: unknown) => isBotstateError(e) && e.code === 'CONSTRAINT_VIOLATION' && e.category === 'rule',
      );
      assert.equal((await fx.raw('SELECT count(*) AS n FROM trades'))[0]?.['n']?.toString(), '0');
    });

    it("raw SQL that breaks the schema's rules is CONSTRAINT_VIOLATION (a rule, exit 3), not a storage failure, and changes nothing", async () => {
      const store = await fx.open();
      const job = await store.jobs.start({ tokenAddress: tokenAddress(7) });
      const before = await fx.dump();
      const sql = (text: string): string => (fx.engine === 'sqlite' ? text : text.replace(/\?/g, (_, i: number) => `$${text.slice(0, i).split('?').length}`));
      const refused = [
        // A CHECK: a version below 1.
        sql('UPDATE jobs SET version = 0 WHERE id = ?'),
        // A unique key: a second job for the same token and chain.
        sql(`INSERT INTO jobs (id, chain, token_address, token_symbol, mode, status, recent_high, total_accumulated, token_balance,
               config, created_at, updated_at, version, audit_hash)
             SELECT ?, chain, token_address, token_symbol, mode, status, recent_high, total_accumulated, token_balance,
               config, created_at, updated_at, version, audit_hash FROM jobs WHERE id = ?`),
        // The audit log is append-only (a trigger).
        sql("UPDATE audit_log SET actor = 'mallory' WHERE stream = ?"),
      ];
      const params = [[job.id], ['other-id', job.id], [`job:${job.id}`]];
      const codes = fx.engine === 'sqlite' ? ['SQLITE_CONSTRAINT_CHECK', 'SQLITE_CONSTRAINT_UNIQUE', 'SQLITE_CONSTRAINT_TRIGGER'] : ['23514', '23505', 'P0001'];
      for (const [i, text] of refused.entries()) {
        await assert.rejects(
          store.transaction((tx) => tx.run(text, params[i]!)),
          (e: unknown) =>
            isBotstateError(e, 'CONSTRAINT_VIOLATION') && e.category === 'rule' && exitCodeFor(e) === 3 &&
            /refused the write/.test(e.message) && e.details['engineCode'] === codes[i],
          text,
        );
      }
      assert.deepEqual(await fx.dump(), before);
    });

    it('concurrent writers on the same job from two stores all succeed and the balance is the exact sum', async () => {
      const s1 = await fx.open({ actor: 'one' });
      const s2 = await fx.open({ actor: 'two' });
      const job = await s1.jobs.start({ tokenAddress: TOKEN });
      const N = 20;
      const amounts = Array.from({ length: N }, (_, i) => BigInt(i + 1) * 1_000000000000000000n + BigInt(i * 7919 + 1) * 1_000000001n);
      const results = await Promise.all(
        amounts.map((base, i) =>
          (i % 2 === 0 ? s1 : s2).ledger.recordTrade({
            job: { id: job.id },
            clientOrderId: `conc-${i}`,
            side: 'BUY',
            reason: 'DCA',
            baseAmount: fmt18(base),
            quoteAmount: fmt18(base / 1000n),
            priceUsd: '0.001',
          }),
        ),
      );
      assert.deepEqual(results.map((r) => r.duplicate), Array(N).fill(false));
      const expected = fmt18(amounts.reduce((a, b) => a + b, 0n));
      const after = await s2.jobs.get({ id: job.id });
      assert.equal(after.tokenBalance, expected);
      assert.equal(after.totalAccumulated, fmt18(amounts.reduce((a, b) => a + b / 1000n, 0n)));
      assert.equal(after.version, 1 + N);
      assert.equal((await s1.ledger.trades({ id: job.id })).length, N);
      assert.deepEqual((await s1.verifyAudit()).problems, []);
    });

    it('the same clientOrderId recorded at once through two stores is recorded once', async () => {
      const s1 = await fx.open();
      const s2 = await fx.open();
      const job = await s1.jobs.start({ tokenAddress: TOKEN });
      const input = { job: { id: job.id }, clientOrderId: 'same-order', side: 'BUY', reason: 'DCA', baseAmount: '12.000000000000000001', quoteAmount: '3', priceUsd: '0.25' } as const;
      const results = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 ? s1 : s2).ledger.recordTrade(input)));
      assert.equal(results.filter((r) => !r.duplicate).length, 1);
      const after = await s1.jobs.get({ id: job.id });
      assert.equal(after.tokenBalance, '12.000000000000000001');
      assert.equal(after.version, 2);
      assert.equal((await s2.ledger.trades({ id: job.id })).length, 1);
    });
  });
}

describe('SQLite lock contention', () => {
  let fx: Fixture;
  let holder: Database.Database | undefined;
  beforeEach(async () => {
    fx = await ENGINES.find((e) => e.name === 'sqlite')!.create();
  });
  afterEach(async () => {
    if (holder?.inTransaction) holder.exec('ROLLBACK');
    holder?.close();
    holder = undefined;
    await fx.cleanup();
  });

  it('a write blocked past busyTimeoutMs fails with STORAGE_BUSY, reads still work, and it succeeds once the lock is released', async () => {
    const store = await fx.open({ busyTimeoutMs: 200 });
    await store.jobs.start({ tokenAddress: TOKEN });
    const before = await fx.dump();
    holder = new Database(fx.url);
    holder.exec('BEGIN IMMEDIATE');

    const t0 = performance.now();
    let err: unknown;
    try {
      await store.jobs.pause({ tokenAddress: TOKEN });
    } catch (e) {
      err = e;
    }
    const waited = performance.now() - t0;
    assert.ok(isBotstateError(err), `expected a BotstateError, got ${String(err)}`);
    assert.equal(err.code, 'STORAGE_BUSY');
    assert.doesNotMatch(err.message, /database is locked/);
    assert.ok(waited >= 180, `gave up after ${waited.toFixed(0)} ms, before the 200 ms busy timeout`);
    assert.ok(waited < 3000, `waited ${waited.toFixed(0)} ms`);

    // WAL: readers are not blocked by the writer.
    assert.equal((await store.jobs.get({ tokenAddress: TOKEN })).status, 'RUNNING');

    holder.exec('ROLLBACK');
    assert.equal(await fx.dump(), before, 'the refused write changed something');
    assert.equal((await store.jobs.pause({ tokenAddress: TOKEN })).status, 'PAUSED');
  });

  it('a write waits for a lock released within busyTimeoutMs, without blocking the event loop', async () => {
    const store = await fx.open({ busyTimeoutMs: 5000 });
    await store.jobs.start({ tokenAddress: TOKEN });
    holder = new Database(fx.url);
    holder.exec('BEGIN IMMEDIATE');
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    setTimeout(() => holder!.exec('COMMIT'), 300);
    try {
      const t0 = performance.now();
      const paused = await store.jobs.pause({ tokenAddress: TOKEN });
      const waited = performance.now() - t0;
      assert.equal(paused.status, 'PAUSED');
      assert.ok(waited >= 250, `the write did not wait for the lock (${waited.toFixed(0)} ms)`);
    } finally {
      clearInterval(ticker);
    }
    assert.ok(ticks >= 10, `the event loop was blocked while waiting (${ticks} ticks)`);
  });
});

describe('unreachable PostgreSQL', () => {
  it('a server that refuses connections → STORAGE_UNAVAILABLE, fast, without the password', async () => {
    const t0 = performance.now();
    const details = await rejectsWith(openStore('postgres://postgres:sekret-pw@127.0.0.1:1/test?schema=nope'), 'STORAGE_UNAVAILABLE');
    assert.ok(performance.now() - t0 < 3000, `took ${(performance.now() - t0).toFixed(0)} ms`);
    assert.doesNotMatch(String(details['message']), /sekret-pw/);
  });

  it('a Unix-socket folder with no server in it, or an unroutable address → STORAGE_UNAVAILABLE (exit 5), not an unexpected error', async () => {
    for (const url of ['postgres://postgres@127.0.0.1:5432/test?host=/nonexistent-botstate-socket-dir', 'postgres://postgres@255.255.255.255:5432/test?connect_timeout=2']) {
      const error = await openStore(url).then(() => assert.fail('opened'), (e: unknown) => e);
      assert.ok(isBotstateError(error, 'STORAGE_UNAVAILABLE'), String(error));
      assert.equal(exitCodeFor(error), 5);
      assert.match(error.hint ?? '', /server is running/);
    }
  });

  it("a caller's own ENOENT or EACCES in a transaction passes through as it is: only a connect's is the server's", { skip: pgSkip }, async () => {
    const url = new URL(PG_URL);
    url.searchParams.set('schema', `botstate_own_errno_${process.pid}`);
    const store = await openStore(url.toString());
    try {
      for (const code of ['ENOENT', 'EACCES']) {
        const own = Object.assign(new Error(`${code}: no such file, open '/nowhere/config.json'`), { code, syscall: 'open' });
        const thrown = await store.transaction(async () => {
          throw own;
        }).then(() => assert.fail('resolved'), (e: unknown) => e);
        assert.equal(thrown, own);
      }
      const connect = Object.assign(new Error('connect ENOENT /nowhere/.s.PGSQL.5432'), { code: 'ENOENT', syscall: 'connect' });
      assert.equal(classifyPostgresError(connect, 'the test server').code, 'STORAGE_UNAVAILABLE');
    } finally {
      await store.close();
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      await admin.query(`DROP SCHEMA IF EXISTS "botstate_own_errno_${process.pid}" CASCADE`);
      await admin.end();
    }
  });

  it('a database that does not exist → STORAGE_UNAVAILABLE', { skip: pgSkip }, async () => {
    const url = new URL(PG_URL);
    url.pathname = '/botstate_no_such_database';
    await rejectsWith(openStore(url.toString()), 'STORAGE_UNAVAILABLE');
  });

  it('a session the server ends (pg_terminate_backend) is STORAGE_UNAVAILABLE, and so is the broken client after it', { skip: pgSkip }, async () => {
    const client = new pg.Client({ connectionString: PG_URL });
    const ended = new Promise((resolve) => client.on('error', resolve)); // how pg learns of the termination
    await client.connect();
    const killer = new pg.Client({ connectionString: PG_URL });
    await killer.connect();
    try {
      const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await killer.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
      await ended;
      const failed = async () => client.query('SELECT 1').then(() => assert.fail('the ended session answered'), (e: unknown) => e);
      for (const e of [await failed(), await failed()]) {
        assert.match((e as Error).message, /not queryable/);
        const error = classifyPostgresError(e, 'the test server');
        assert.equal(error.code, 'STORAGE_UNAVAILABLE', `${(e as Error).message} → ${error.code}`);
      }
    } finally {
      await killer.end();
      await client.end().catch(() => {});
    }
  });

  it('pooled connections whose sessions the server ended while idle are replaced at BEGIN: the calls after succeed', { skip: pgSkip }, async () => {
    const schema = `botstate_stale_pool_${process.pid}`;
    const url = new URL(PG_URL);
    url.searchParams.set('schema', schema);
    url.searchParams.set('application_name', schema);
    const store = await openStore(url.toString());
    const killer = new pg.Client({ connectionString: PG_URL });
    await killer.connect();
    try {
      const job = await store.jobs.start({ tokenAddress: TOKEN });
      for (const pause of [0, 20, 20, 0, 20]) {
        // Several pooled connections, idle, then their sessions ended (as a server restart does).
        await Promise.all([store.jobs.list(), store.jobs.list(), store.jobs.list()]);
        const { rows } = await killer.query('SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1', [schema]);
        assert.ok(rows.length >= 1, 'the store had pooled connections');
        if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
        // Reads and a write, at once: each gets a live connection; the write is made once.
        const [list, , paused] = await Promise.all([store.jobs.list(), store.jobs.get({ id: job.id }), store.jobs.pause({ id: job.id })]);
        assert.equal(list.length, 1);
        assert.equal(paused.status, 'PAUSED');
        await store.jobs.resume({ id: job.id });
      }
      const history = await store.history({ id: job.id });
      assert.equal(history.filter((e) => e.action === 'pause').length, 5);
    } finally {
      await store.close();
      await killer.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await killer.end();
    }
  });

  it('a schema named as a SQL keyword (user, order) works as any other', { skip: pgSkip }, async () => {
    const killer = new pg.Client({ connectionString: PG_URL });
    await killer.connect();
    try {
      for (const schema of ['user', 'order']) {
        await killer.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        const url = new URL(PG_URL);
        url.searchParams.set('schema', schema);
        const store = await openStore(url.toString());
        try {
          const job = await store.jobs.start({ tokenAddress: TOKEN });
          assert.deepEqual((await store.jobs.list()).map((j) => j.id), [job.id], schema);
          const { path } = (await store.transaction((tx) => tx.get<{ path: string }>("SELECT current_setting('search_path') AS path")))!;
          assert.equal(path, `"${schema}", pg_temp`, schema);
        } finally {
          await store.close();
          await killer.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
        }
      }
    } finally {
      await killer.end();
    }
  });

  /** A store on a schema of its own, and a second connection to end its sessions with; both closed, and the schema dropped, after `fn`. */
  async function withKiller(name: string, fn: (store: Store, killer: pg.Client, schema: string) => Promise<void>): Promise<void> {
    const schema = `botstate_${name}_${process.pid}`;
    const url = new URL(PG_URL);
    url.searchParams.set('schema', schema);
    const store = await openStore(url.toString());
    const killer = new pg.Client({ connectionString: PG_URL });
    await killer.connect();
    try {
      await fn(store, killer, schema);
    } finally {
      await store.close();
      await killer.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await killer.end();
    }
  }

  it('a session ended before the COMMIT: nothing of the transaction was written, and it is said so, whether the body saw it or not', { skip: pgSkip }, () =>
    withKiller('lost_before_commit', async (store, killer, schema) => {
      const end = async (tx: Executor) => {
        const row = await tx.get<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        await killer.query('SELECT pg_terminate_backend($1)', [row!.pid]);
        await new Promise((resolve) => setTimeout(resolve, 50));
      };
      const said = /^the connection to .* was lost during the transaction, before its COMMIT \(.*\): nothing of it was written$/;
      let runs = 0;
      const cases: Array<[string, (tx: Executor) => Promise<void>]> = [
        // Ended as the body returns: the COMMIT is what finds the connection gone (the driver never sends it).
        ['as the body returns', async (tx) => {
          await tx.run('CREATE TABLE mine (x int)');
          await end(tx);
        }],
        // Ended between two statements, the second one's error let through.
        ['between statements', async (tx) => {
          await tx.run('CREATE TABLE mine (x int)');
          await end(tx);
          await tx.run('INSERT INTO mine VALUES (1)');
        }],
        // The same, the error caught by the body, which returns as if nothing had happened.
        ['its error caught', async (tx) => {
          await tx.run('CREATE TABLE mine (x int)');
          await end(tx);
          const e = await tx.run('INSERT INTO mine VALUES (1)').then(() => undefined, (x: unknown) => x);
          assert.ok(isBotstateError(e, 'STORAGE_UNAVAILABLE') && said.test(e.message), String(e));
        }],
      ];
      for (const [name, body] of cases) {
        runs = 0;
        const lost = await store
          .transaction(async (tx) => {
            runs++;
            await body(tx);
          })
          .then(() => assert.fail(`${name}: the transaction was reported committed`), (e: unknown) => e);
        assert.ok(isBotstateError(lost, 'STORAGE_UNAVAILABLE'), `${name}: ${String(lost)}`);
        assert.match(lost.message, said, name);
        assert.match(lost.hint ?? '', /^the server ended the connection \(an administrator's pg_terminate_backend, a restart or a failover\): retry/, name);
        assert.equal(runs, 1, name);
        // Nothing of it was written; the pool goes on with a new connection.
        assert.equal((await killer.query('SELECT to_regclass($1) AS t', [`${schema}.mine`])).rows[0].t, null, name);
        assert.deepEqual(await store.jobs.list(), []);
      }
      // A caller's error whose text says "timeout" is no lost session: said as what it is.
      await store.transaction((tx) => tx.exec("CREATE FUNCTION quote() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'quote request timeout'; END $$"));
      const raised = await store.transaction((tx) => tx.get('SELECT quote() AS x')).then(() => undefined, (e: unknown) => e);
      assert.ok(isBotstateError(raised, 'CONSTRAINT_VIOLATION'), String(raised));
      assert.doesNotMatch(raised.message, /lost|nothing of it was written/);
    }));

  it('a connection lost while committing: the transaction is said to be of unknown outcome, not retried, with what to do', { skip: pgSkip }, () =>
    withKiller('commit_lost', async (store, killer, schema) => {
      // A deferred constraint trigger runs in the COMMIT: this one sleeps there, and the session is
      // ended meanwhile, after the COMMIT was sent and before its answer.
      await store.transaction((tx) =>
        tx.exec(
          'CREATE TABLE slow (x int); CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$; ' +
            'CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON slow DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()',
        ),
      );
      let runs = 0;
      const lost = await store
        .transaction(async (tx) => {
          runs++;
          const row = await tx.get<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          await tx.run('INSERT INTO slow VALUES (1)');
          setTimeout(() => void killer.query('SELECT pg_terminate_backend($1)', [row!.pid]), 200);
        })
        .then(() => assert.fail('the transaction was reported committed'), (e: unknown) => e);
      assert.ok(isBotstateError(lost, 'STORAGE_UNAVAILABLE'), String(lost));
      assert.match(lost.message, /^the connection to .* was lost while committing \(.*\): the change may have been made or not$/);
      assert.match(lost.hint ?? '', /before you do it again/);
      assert.equal(runs, 1);
      // The pool goes on with a new connection.
      assert.deepEqual(await store.jobs.list(), []);
      // A read-only transaction changed nothing, whatever became of its COMMIT: it is not said to have.
      const adapter = await PostgresAdapter.open({ connectionString: PG_URL, schema, durability: 'process', poolSize: 2, connectTimeoutMs: 5000, idleTransactionTimeoutMs: 60_000, location: 'the test server' });
      try {
        const read = await adapter
          .transaction(async (tx) => {
            const row = await tx.get<{ pid: number }>('SELECT pg_backend_pid() AS pid');
            await killer.query('SELECT pg_terminate_backend($1)', [row!.pid]);
            await new Promise((resolve) => setTimeout(resolve, 50));
          }, { readOnly: true })
          .then(() => assert.fail('the read was reported done'), (e: unknown) => e);
        assert.ok(isBotstateError(read, 'STORAGE_UNAVAILABLE'), String(read));
        assert.doesNotMatch(read.message, /may have been made/);
      } finally {
        await adapter.close();
      }
    }));

  it('a statement on a connection the network lost without closing it fails, the backend is ended, and the pool goes on; a lock wait is left to wait', { skip: pgSkip, timeout: 60_000 }, async () => {
    // A proxy that can stop forwarding on the connections it holds, without closing them (a NAT or
    // firewall that forgot them); new connections go through.
    const target = new URL(PG_URL);
    const frozen = new Set<Socket>();
    const open = new Set<Socket>();
    const proxy = createServer((inbound) => {
      const outbound = connect(Number(target.port || 5432), target.hostname);
      for (const [from, to] of [[inbound, outbound], [outbound, inbound]] as const) {
        open.add(from);
        from.on('data', (chunk) => void (frozen.has(from) ? undefined : to.write(chunk)));
        from.on('error', () => {});
        from.on('close', () => to.destroy());
      }
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxied = new URL(PG_URL);
    proxied.port = String((proxy.address() as AddressInfo).port);
    const direct = new pg.Client({ connectionString: PG_URL });
    await direct.connect();
    const adapter = await PostgresAdapter.open({
      connectionString: proxied.toString(), schema: 'public', durability: 'process', poolSize: 2, connectTimeoutMs: 5000,
      idleTransactionTimeoutMs: 60_000, location: 'the test server', stallCheckMs: 200,
    });
    try {
      let pid = 0;
      const lost = await adapter
        .transaction(async (tx) => {
          pid = (await tx.get<{ pid: number }>('SELECT pg_backend_pid() AS pid'))!.pid;
          for (const socket of open) frozen.add(socket);
          await tx.get('SELECT 1 AS one');
        })
        .then(() => assert.fail('the statement was answered'), (e: unknown) => e);
      assert.ok(isBotstateError(lost, 'STORAGE_UNAVAILABLE'), String(lost));
      assert.match(lost.message, /was lost during the transaction, before its COMMIT \(Connection terminated by botstate: a statement went unanswered and the server was not at work on it.*\): nothing of it was written$/);
      assert.match(lost.hint ?? '', /^the network lost the connection without closing it/);
      // Its backend was ended: its transaction rolled back and its locks let go, not left to a timeout.
      for (let i = 0; i < 50 && (await direct.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount! > 0; i++) await sleep(100);
      assert.equal((await direct.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount, 0, 'the backend was ended');
      assert.deepEqual(await adapter.transaction((tx) => tx.get('SELECT 2 AS two')), { two: 2 });
      // A statement waiting for a lock (here for 1 s, five checks) is the server at work: it waits on.
      await direct.query('SELECT pg_advisory_lock(8675309)');
      const waited = adapter.transaction((tx) => tx.get('SELECT pg_advisory_xact_lock(8675309)::text AS locked'));
      await sleep(1000);
      await direct.query('SELECT pg_advisory_unlock(8675309)');
      assert.deepEqual(await waited, { locked: '' });
      // So is a backend whose state the server does not track (track_activities off): no state, no verdict.
      assert.deepEqual(
        await adapter.transaction(async (tx) => {
          await tx.exec('SET LOCAL track_activities = off');
          return tx.get("SELECT pg_sleep(1)::text AS slept");
        }),
        { slept: '' },
      );
    } finally {
      await adapter.close();
      await direct.end();
      for (const socket of open) socket.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it("a server that ended a working connection gets a hint about the server, not about the URL", () => {
    const error = classifyPostgresError(Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }), 'the test server');
    assert.equal(error.code, 'STORAGE_UNAVAILABLE');
    assert.match(error.hint ?? '', /the server ended the connection/);
    const pool = classifyPostgresError(new Error('timeout exceeded when trying to connect'), 'the test server');
    assert.match(pool.hint ?? '', /every connection of the pool was in use/);
  });

  it('a server that never answers the connection is said to, within connect_timeout: not a session ended', async () => {
    // A listener that takes the connection and says nothing: a firewall that drops, a hung server.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => void sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      const error = await openStore(`postgres://postgres@127.0.0.1:${port}/test?schema=silent&connect_timeout=1`).then(() => assert.fail('opened'), (e: unknown) => e);
      assert.ok(isBotstateError(error, 'STORAGE_UNAVAILABLE'), String(error));
      assert.match(error.message, /^cannot use the PostgreSQL server at postgres:\/\/postgres@127\.0\.0\.1:\d+\/test \(schema silent\): Connection terminated due to connection timeout$/);
      assert.match(error.hint ?? '', /^the server did not answer the connection in time \(the URL's connect_timeout, else 5 s\)/);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });
});
