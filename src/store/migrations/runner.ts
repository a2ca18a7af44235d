import { hostname } from 'node:os';
import { BotstateError, NotFoundError, RuleError, SchemaError, ValidationError } from '../../errors.ts';
import type { Adapter, Engine, Executor } from '../adapter.ts';
import { LATEST_VERSION, MIGRATIONS } from './index.ts';
import { checksum, type Migration, type PerEngine } from './migration.ts';
import { databaseNow, DEFAULT_LEASE_TTL_MS, heardFrom, runsForRegistration, type InstanceRow } from '../instances.ts';

const VERSION_TABLE: PerEngine = {
  sqlite: `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  checksum   TEXT NOT NULL,
  applied_at TEXT NOT NULL
) STRICT;`,
  postgres: `CREATE TABLE IF NOT EXISTS schema_migrations (
  version    INTEGER PRIMARY KEY,
  name       TEXT NOT NULL,
  checksum   TEXT NOT NULL,
  applied_at TIMESTAMPTZ(3) NOT NULL
);`,
};

interface AppliedRow {
  version: number;
  name: string;
  checksum: string;
  applied_at: string;
}

/** One line of `botstate db status`. */
export interface MigrationState {
  readonly version: number;
  readonly name: string;
  /** `applied`, `pending`, `modified` (applied, but its SQL changed since) or `unknown` (newer than this code). */
  readonly state: 'applied' | 'pending' | 'modified' | 'unknown';
  readonly appliedAt: string | null;
}

export interface SchemaStatus {
  readonly current: number;
  readonly latest: number;
  readonly migrations: readonly MigrationState[];
}

async function readApplied(adapter: Adapter, tx: Executor): Promise<AppliedRow[]> {
  if (!(await adapter.hasTable(tx, 'schema_migrations'))) return [];
  return tx.all<AppliedRow>('SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version');
}

/**
 * The checksums migration 1 had in botstate's pre-release builds of 2026-11-22 (before 02:40 UTC),
 * by engine: a database made by one cannot be migrated (its trades index differs, and its audit
 * entries were hashed another way until 02:49), and is said to be one.
 */
const PRE_RELEASE_0001 = new Set([
  'e54d083d4c052d4c9774fa76d309b9311f07d7a12cc72d66c778c83f7d6102c0',
  'dfbdba333b059292c656ed1e63726eea4faea989d0bc43998f1cf419ff3855df',
  '3146f9e4300ab5d315ad03c0e5ee6a2791573c9683dde79da3ebef6757cac8f0',
]);

/** The statuses of databases made by a pre-release build (see PRE_RELEASE_0001). */
const PRE_RELEASE = new WeakSet<SchemaStatus>();

function statusOf(adapter: Adapter, applied: readonly AppliedRow[]): SchemaStatus {
  const byVersion = new Map(applied.map((row) => [row.version, row]));
  const migrations: MigrationState[] = MIGRATIONS.map((m) => {
    const row = byVersion.get(m.version);
    if (!row) return { version: m.version, name: m.name, state: 'pending', appliedAt: null };
    const state = row.checksum === checksum(m, adapter.engine) ? 'applied' : 'modified';
    return { version: m.version, name: m.name, state, appliedAt: row.applied_at };
  });
  for (const row of applied) {
    if (row.version > LATEST_VERSION) {
      migrations.push({ version: row.version, name: row.name, state: 'unknown', appliedAt: row.applied_at });
    }
  }
  const current = applied.length === 0 ? 0 : Math.max(...applied.map((r) => r.version));
  const status = { current, latest: LATEST_VERSION, migrations };
  if (PRE_RELEASE_0001.has(byVersion.get(1)?.checksum ?? '')) PRE_RELEASE.add(status);
  return status;
}

const label = (m: { version: number; name: string }) => `${String(m.version).padStart(4, '0')}_${m.name}`;

/**
 * Refuses a schema newer than this code, or an applied migration whose SQL has changed, and
 * (unless `allowGap`, for a rollback, which steps down from the highest) a migration missing
 * below the highest applied one.
 */
export function assertCompatible(status: SchemaStatus, allowGap = false): void {
  if (status.current > status.latest) {
    throw new SchemaError(
      'SCHEMA_TOO_NEW',
      `the database schema is at version ${status.current} but this botstate knows only up to ${status.latest}`,
      {
        hint: 'upgrade botstate, or roll the database back with the newer botstate (botstate db rollback)',
        details: { current: status.current, latest: status.latest },
      },
    );
  }
  const modified = status.migrations.find((m) => m.state === 'modified');
  if (modified && PRE_RELEASE.has(status)) {
    throw new SchemaError(
      'MIGRATION_CHECKSUM_MISMATCH',
      'this database was made by a pre-release build of botstate (of 2026-11-22, before its schema was released), which cannot be migrated',
      {
        hint: 'make a new database with this botstate and record in it what the old one holds (botstate start, then botstate record for each position); the old one stays readable by the build that made it',
        details: { version: modified.version, preRelease: true },
      },
    );
  }
  if (modified) {
    throw new SchemaError(
      'MIGRATION_CHECKSUM_MISMATCH',
      `migration ${label(modified)} was edited after it was applied to this database (its checksum no longer matches)`,
      {
        hint: 'restore the released migration: applied migrations are immutable, add a new one instead',
        details: { version: modified.version },
      },
    );
  }
  const gap = allowGap ? undefined : status.migrations.find((m) => m.version < status.current && m.state === 'pending');
  if (gap) {
    throw new SchemaError('MIGRATION_GAP', `migration ${label(gap)} is not applied, though version ${status.current} is: the schema has a gap`, {
      hint: `roll back below it (botstate db rollback --to ${gap.version - 1}), then run botstate db migrate`,
      details: { missing: gap.version, current: status.current },
    });
  }
}

/** Another process moved the schema the other way meanwhile: this command did not reach its target. */
function movedMeanwhile(current: number | undefined, target: number): BotstateError {
  const where = current === undefined ? 'kept moving the schema the other way' : `moved the schema to version ${current} meanwhile`;
  return new RuleError('CONCURRENT_MODIFICATION', `another process ${where}; the target was ${target}`, {
    hint: 'run botstate db status, then the command again once the other one has finished',
    details: { current, target },
  });
}

/** Reads the schema state without changing anything. */
export async function schemaStatus(adapter: Adapter): Promise<SchemaStatus> {
  return adapter.transaction(async (tx) => statusOf(adapter, await readApplied(adapter, tx)), { readOnly: true });
}

/** Throws unless the schema is exactly the version this code expects. Changes nothing. */
export async function assertCurrent(adapter: Adapter): Promise<SchemaStatus> {
  return checkCurrent(await schemaStatus(adapter), adapter.location);
}

/** {@link assertCurrent} for a status already read. */
export function checkCurrent(status: SchemaStatus, location: string): SchemaStatus {
  assertCompatible(status);
  if (status.current === 0) {
    throw new NotFoundError('DATABASE_NOT_FOUND', `there is no botstate database at ${location}`, {
      hint: 'start a job first (botstate start <token>) or pass --db with the right path or URL',
    });
  }
  if (status.current < status.latest) {
    throw new SchemaError(
      'SCHEMA_OUTDATED',
      `the database schema is at version ${status.current}; this botstate needs version ${status.latest}`,
      {
        // Each migration commits on its own: a command run while another process creates or
        // migrates the database sees it part-way, and only needs to try again.
        hint: 'if another botstate is creating or migrating this database right now, try again in a moment; otherwise run botstate db migrate (a backup you keep as it is: migrate and check a copy of it)',
        details: { current: status.current, latest: status.latest },
      },
    );
  }
  return status;
}

/** A migration target, checked (the CLI checks before it opens a database). */
export function checkTarget(to: number | undefined, fallback: number): number {
  const target = to ?? fallback;
  if (!Number.isInteger(target) || target < 0 || target > LATEST_VERSION) {
    throw new ValidationError('INVALID_ARGUMENT', `migration target ${typeof to === 'string' ? `"${to}" (a string)` : String(to)} is not a version from 0 to ${LATEST_VERSION}`, {
      hint: 'run botstate db status to see the versions',
    });
  }
  return target;
}

/**
 * Applies pending migrations up to `to` (default: the latest), each in its own transaction
 * with its version row, under the engine's migration lock (taken inside that transaction). Safe to run from several processes
 * at once: each step re-reads the applied versions after taking the lock.
 *
 * `onStart` is called once, under the migration lock, just before the first step is applied to a
 * database that has a schema already (from > 0): not when another process has migrated it
 * meanwhile, nor when a running daemon refuses the migration.
 *
 * @returns the migrations this call applied (empty if another process got there first).
 */
export async function migrate(adapter: Adapter, options: { to?: number; onStart?: (from: number, to: number) => void } = {}): Promise<Migration[]> {
  const target = checkTarget(options.to, LATEST_VERSION);
  const quick = await schemaStatus(adapter);
  assertCompatible(quick);
  if (quick.current > target) {
    throw new ValidationError('INVALID_ARGUMENT', `the schema is at version ${quick.current}, past the target ${target}`, {
      hint: 'use botstate db rollback --to N to go down',
    });
  }
  if (quick.current === target) return [];
  return stepTo(adapter, target, 'up', false, options.onStart);
}

/**
 * What rolling a migration back deletes, for the migrations whose down step drops data: queries
 * counting the rows that hold it (valid at that migration's version or above), with the nouns to
 * report. Kept here, not in the released migration files.
 */
const LOSSES: Readonly<Record<number, ReadonlyArray<readonly [one: string, many: string, count: PerEngine]>>> = {
  1: [
    ['job', 'jobs', both('SELECT count(*) AS n FROM jobs')],
    ['trade', 'trades', both('SELECT count(*) AS n FROM trades')],
    ['audit entry', 'audit entries', both('SELECT count(*) AS n FROM audit_log')],
  ],
  2: [
    ["job's strategy state", "jobs' strategy states", {
      sqlite: "SELECT count(*) AS n FROM jobs WHERE strategy_state <> '{}'",
      postgres: "SELECT count(*) AS n FROM jobs WHERE strategy_state <> '{}'::jsonb",
    }],
  ],
};

function both(sql: string): PerEngine {
  return { sqlite: sql, postgres: sql };
}

/**
 * Refuses (DATA_LOSS) when rolling all of `steps` back would delete rows, saying everything that
 * would go (not only the first step's): what a rollback to 0 deletes is every job, trade and
 * audit entry, not just the strategy states its first step drops.
 */
async function checkLoss(tx: Executor, engine: Engine, steps: readonly Migration[]): Promise<void> {
  const counted: string[] = [];
  const labels: string[] = [];
  let rows = 0;
  for (const m of steps) {
    let ofStep = 0;
    for (const [one, many, count] of LOSSES[m.version] ?? []) {
      const n = Number((await tx.get<{ n: number | string }>(count[engine]))?.n ?? 0);
      ofStep += n;
      if (n > 0) counted.push(`${n} ${n === 1 ? one : many}`);
    }
    rows += ofStep;
    if (ofStep > 0) labels.push(label(m));
  }
  if (rows === 0) return;
  const list = counted.length > 1 ? `${counted.slice(0, -1).join(', ')} and ${counted.at(-1)}` : counted[0];
  throw new RuleError('DATA_LOSS', `rolling back ${labels.join(' and ')} would delete ${list}`, {
    hint: 'back the database up first, then roll back anyway with --force, or force: true in the library',
    details: { versions: steps.map((m) => m.version), rows },
  });
}

/**
 * Rolls back applied migrations down to version `to` (default: one step back), newest first,
 * each in its own transaction with the removal of its version row, under the migration lock.
 * A step that would delete data (every job, trade and audit entry for migration 1) is refused
 * with DATA_LOSS before anything is rolled back, unless `force` is set.
 *
 * @returns the migrations this call rolled back.
 */
export async function rollback(adapter: Adapter, options: { to?: number; force?: boolean } = {}): Promise<Migration[]> {
  const quick = await schemaStatus(adapter);
  assertCompatible(quick, true);
  const target = checkTarget(options.to, Math.max(0, quick.current - 1));
  // A database botstate never migrated (a PostgreSQL schema missing or empty, a SQLite file with
  // no tables) is a wrong --db, not a schema at version 0: said as for any other command, whatever the target.
  if (quick.current === 0 && !(await adapter.transaction((tx) => adapter.hasTable(tx, 'schema_migrations'), { readOnly: true }))) {
    throw new NotFoundError('DATABASE_NOT_FOUND', `there is no botstate database at ${adapter.location}`, {
      hint: 'pass --db with the right path or URL',
    });
  }
  if (target > quick.current) {
    throw new ValidationError('INVALID_ARGUMENT', `the schema is at version ${quick.current}, below the target ${target}`, {
      hint: 'use botstate db migrate --to N to go up',
    });
  }
  const force = options.force === true;
  // The applied ones only: below a gap (see MIGRATION_GAP) a missing migration has nothing to roll back.
  const applied = new Set(quick.migrations.filter((m) => m.state !== 'pending').map((m) => m.version));
  const steps = [...MIGRATIONS].reverse().filter((m) => m.version > target && m.version <= quick.current && applied.has(m.version));
  // Nothing to roll back: nothing is locked (on PostgreSQL, taking the lock creates the schema).
  if (steps.length === 0) return [];
  if (!force && steps.some((m) => LOSSES[m.version] !== undefined)) {
    // Every step first, so that a refusal leaves the schema where it was.
    await adapter.transaction((tx) => checkLoss(tx, adapter.engine, steps), { readOnly: true });
  }
  // Not overridden by force: that is about data loss, and a running daemon is simply stopped first.
  // Checked here, before anything, and again in every step under the migration lock (see stepTo).
  await adapter.transaction((tx) => refuseWhileDaemonRuns(adapter, tx), { readOnly: true });
  return stepTo(adapter, target, 'down', force);
}

/**
 * Migrates or rolls back one step at a time from the version read under the lock (the highest
 * applied), never by a list made before it: a migrate and a rollback running at once must not
 * leave a migration out (a gap). Ends with CONCURRENT_MODIFICATION if another process moved the
 * schema so that it did not end at `target`.
 */
async function stepTo(adapter: Adapter, target: number, direction: 'up' | 'down', force: boolean, onStart?: (from: number, to: number) => void): Promise<Migration[]> {
  const done: Migration[] = [];
  let started = false;
  for (let turn = 0; ; turn++) {
    const reached = await adapter.transaction(
      async (tx) => {
        await adapter.lockForMigration(tx);
        const status = statusOf(adapter, await readApplied(adapter, tx));
        // A rollback steps down from the highest applied version: it may cross (and repair) a gap.
        assertCompatible(status, direction === 'down');
        if (direction === 'up' ? status.current >= target : status.current <= target) return status.current;
        const m = MIGRATIONS[direction === 'up' ? status.current : status.current - 1]!;
        if (direction === 'down' && !force) await checkLoss(tx, adapter.engine, [m]);
        // A daemon started since the rollback's first check (while it waited for the lock, or
        // between two steps) is found here, before its tables change.
        // And on SQLite a migration up too: one daemon runs per file, and the running one (of the
        // older botstate) would go on on a schema it does not know, which it would refuse to start
        // on again; a daemon command that migrates first would be refused only after it.
        if (direction === 'down' || adapter.engine === 'sqlite') await refuseWhileDaemonRuns(adapter, tx, direction);
        if (!started && status.current > 0) onStart?.(status.current, target);
        started = true;
        await step(tx, adapter.engine, m, direction);
        done.push(m);
        // This step reached the target: done, however many turns another process's moves took.
        const now = direction === 'up' ? status.current + 1 : status.current - 1;
        return now === target ? now : undefined;
      },
      { exclusive: true },
    );
    if (reached !== undefined) {
      if (reached !== target) throw movedMeanwhile(reached, target);
      return done;
    }
    if (turn > 4 * LATEST_VERSION) throw movedMeanwhile(undefined, target);
  }
}

/**
 * A rollback pulls the tables from under a running daemon (it then fails every tick until it is
 * stopped): refused while one runs. On this host a daemon runs, for a rollback, while its process
 * exists, however long ago it heartbeated (a long tick, a stopped process); one of another host
 * while it heartbeated within a minute or holds a lease that has not expired, by the database's
 * clock on PostgreSQL (where lease times come from it). So is a migration up on SQLite (`direction`
 * 'up', see stepTo), judging as a daemon that registers does (see runsForRegistration).
 */
async function refuseWhileDaemonRuns(adapter: Adapter, tx: Executor, direction: 'up' | 'down' = 'down'): Promise<void> {
  if (!(await adapter.hasTable(tx, 'daemon_instances'))) return;
  const nowMs = adapter.engine === 'postgres' ? await databaseNow(tx) : Date.now();
  const now = new Date(nowMs).toISOString();
  // lease_ttl_ms exists from schema version 6 on. A daemon with a TTL longer than the window
  // heartbeats less often than the window: its own TTL counts then. The columns are named, not
  // i.*: a rollback runs this before each step, on a table whose shape the steps change (on
  // PostgreSQL a prepared statement's result may not change shape).
  const withTtl = await hasLeaseTtl(adapter, tx);
  const rows = await tx.all<InstanceRow & { leased: number | string; lease_ttl_ms?: number | null }>(
    `SELECT i.id, i.host, i.pid, i.heartbeat_at${withTtl ? ', i.lease_ttl_ms' : ''},
       (SELECT count(*) FROM job_leases l WHERE l.owner = i.id AND l.expires_at > ?) AS leased
     FROM daemon_instances i WHERE i.stopped_at IS NULL`,
    [now],
  );
  // One of another host also while it holds a lease not yet expired.
  let first: (typeof rows)[number] | undefined;
  for (const row of rows) {
    // A migration up on SQLite judges as a daemon that registers does: a killed daemon whose pid
    // another program took since, or one silent past its TTL, does not hold the upgrade back. (An
    // older daemon with no TTL on its row is judged by the daemon command's default one.)
    const runs =
      direction === 'up'
        ? await runsForRegistration(row, new Date(nowMs - Number(row.lease_ttl_ms ?? DEFAULT_LEASE_TTL_MS)).toISOString(), () => Number(row.leased) > 0)
        : heardFrom(row, nowMs) || (row.host !== hostname() && Number(row.leased) > 0);
    if (runs) {
      first = row;
      break;
    }
  }
  if (first === undefined) return;
  const [why, hint] =
    direction === 'up'
      ? ['migrating the schema under it would leave it running on a schema it does not know', 'stop that daemon first (SIGTERM or Ctrl-C), then migrate (botstate db migrate, or start the new daemon, which migrates)']
      : ['rolling back would take its tables away', 'stop the daemon first (SIGTERM or Ctrl-C), then roll back'];
  throw new RuleError('DAEMON_RUNNING', `a daemon (pid ${first.pid} on ${first.host}) is running on ${adapter.location}: ${why}`, {
    hint,
    details: { instance: first.id, pid: first.pid, host: first.host },
  });
}

/** Whether daemon_instances has its lease_ttl_ms column (schema version 6 on). */
async function hasLeaseTtl(adapter: Adapter, tx: Executor): Promise<boolean> {
  const sql =
    adapter.engine === 'postgres'
      ? "SELECT 1 AS present FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'daemon_instances' AND column_name = 'lease_ttl_ms'"
      : "SELECT 1 AS present FROM pragma_table_info('daemon_instances') WHERE name = 'lease_ttl_ms'";
  return (await tx.get(sql)) !== undefined;
}

async function step(tx: Executor, engine: Engine, m: Migration, direction: 'up' | 'down'): Promise<void> {
  try {
    if (direction === 'up') {
      await tx.exec(VERSION_TABLE[engine]);
      await tx.exec(m.up[engine]);
      await tx.run('INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES (?, ?, ?, ?)', [
        m.version,
        m.name,
        checksum(m, engine),
        new Date().toISOString(),
      ]);
    } else {
      await tx.exec(m.down[engine]);
      await tx.run('DELETE FROM schema_migrations WHERE version = ?', [m.version]);
    }
  } catch (e) {
    throw new SchemaError('MIGRATION_FAILED', `migration ${label(m)} (${direction}) failed and was rolled back: ${(e as Error).message}`, {
      hint: 'nothing was changed; fix the cause above and run the command again',
      cause: e,
    });
  }
}
