import { BotstateError, ValidationError } from '../../errors.ts';
import { escapeControls } from '../../util/text.ts';
import { statSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseLocation } from '../../store/location.ts';
import { openStore, PG_BACKUP_HINT } from '../../store/store.ts';
import { withStore, type Command, type CommandContext } from '../command.ts';
import { json, table } from '../output.ts';
import type { Migration } from '../../store/migrations/migration.ts';
import { LATEST_VERSION } from '../../store/migrations/index.ts';
import { assertCompatible, checkCurrent, checkTarget } from '../../store/migrations/runner.ts';

function target(ctx: CommandContext): number | undefined {
  const to = ctx.values['to'];
  if (to === undefined) return undefined;
  if (typeof to !== 'string' || !/^\d{1,6}$/.test(to)) {
    throw new ValidationError('USAGE', `--to must be a schema version number, got "${String(to)}"`, { hint: 'see botstate db status' });
  }
  return Number(to);
}

function printSteps(ctx: CommandContext, verb: string, steps: readonly Migration[], version: number): void {
  if (ctx.json) {
    const key = verb === 'Applied' ? 'applied' : 'rolledBack';
    ctx.io.out(json({ [key]: steps.map((m) => ({ version: m.version, name: m.name })), version }));
    return;
  }
  for (const m of steps) ctx.io.out(`${verb} ${String(m.version).padStart(4, '0')}_${m.name}\n`);
  ctx.io.out(`Schema is at version ${version}.\n`);
}

const TO = { to: { type: 'string', value: 'N', help: 'the target schema version' } } as const;

const subcommands: Record<string, { summary: string; options: Record<string, { type: 'string' | 'boolean'; value?: string; help: string }>; run(ctx: CommandContext): Promise<void> }> = {
  status: {
    summary: 'show applied and pending migrations',
    options: {},
    async run(ctx) {
      const { status, location } = await withStore(ctx, { schema: 'none', create: false, readOnly: true }, async (store) => ({ status: await store.schemaStatus(), location: store.location }));
      // A schema the other commands refuse (an edited migration, a gap, a newer version, an older
      // one) is said so here, with why, rather than under an all-clear summary.
      let problem: BotstateError | undefined;
      try {
        if (status.current === 0) assertCompatible(status);
        else checkCurrent(status, location);
      } catch (e) {
        if (!(e instanceof BotstateError)) throw e;
        problem = e;
      }
      if (ctx.json) return void ctx.io.out(json({ ...status, problem: problem === undefined ? null : { code: problem.code, message: problem.message, hint: problem.hint ?? null } }));
      const summary =
        problem === undefined
          ? `Schema is at version ${status.current}; this botstate expects ${status.latest}.`
          : `Schema is at version ${status.current}; this botstate expects ${status.latest}, and refuses it (exit 6 for ${problem.code === 'SCHEMA_OUTDATED' ? 'every other command but db backup and db rollback; daemon and db migrate migrate it' : 'every other command but db backup'}): ${problem.message} (${problem.hint}).`;
      ctx.io.out(table(['VERSION', 'NAME', 'STATE', 'APPLIED'], status.migrations.map((m) => [m.version, m.name, m.state, m.appliedAt])) + `${summary}\n`);
    },
  },
  migrate: {
    summary: 'apply pending migrations (up to --to N)',
    options: TO,
    async run(ctx) {
      const to = target(ctx);
      checkTarget(to, LATEST_VERSION); // before a database is created
      // --to 0 applies nothing: on a mistyped path it would only leave an empty database behind.
      const [steps, status] = await withStore(ctx, { schema: 'none', ...(to === 0 ? { create: false } : {}) }, async (store) => [await store.migrate(to === undefined ? {} : { to }), await store.schemaStatus()] as const);
      printSteps(ctx, 'Applied', steps, status.current);
    },
  },
  rollback: {
    summary: 'roll back the last migration (or down to --to N); refused while a daemon runs, or if it would delete data unless --force',
    options: { ...TO, force: { type: 'boolean', help: 'roll back even if that deletes jobs, trades, audit entries or strategy state' } },
    async run(ctx) {
      const to = target(ctx);
      if (to !== undefined) checkTarget(to, LATEST_VERSION); // before a database is opened
      const force = ctx.values['force'] === true;
      const [steps, status] = await withStore(ctx, { schema: 'none', create: false }, async (store) => [await store.rollback({ ...(to === undefined ? {} : { to }), force }), await store.schemaStatus()] as const);
      printSteps(ctx, 'Rolled back', steps, status.current);
    },
  },
  backup: {
    summary: 'write a consistent copy of the SQLite database to a new file, while daemons run (PostgreSQL: use pg_dump)',
    options: { to: { type: 'string', value: 'FILE', help: 'the backup file to write; it must not exist' } },
    async run(ctx) {
      const to = ctx.values['to'];
      if (typeof to !== 'string' || to === '') throw new ValidationError('USAGE', 'missing --to FILE', { hint: 'see botstate db backup --help' });
      const db = ctx.values['db'];
      const url = typeof db === 'string' ? db : process.env['BOTSTATE_DB'];
      if (url && parseLocation(url).engine === 'postgres') {
        // Before the store opens: a schema botstate never made would be "no database" (exit 4).
        throw new ValidationError('USAGE', 'botstate db backup copies SQLite files; this database is PostgreSQL', { hint: PG_BACKUP_HINT });
      }
      // resolve() would drop the slash and write a file of that name.
      if (/[\\/]$/.test(to)) throw new ValidationError('USAGE', `--to ${to} names a folder: a backup is written to a file`, { hint: 'give the backup file a name, e.g. --to backups/botstate-backup.db' });
      const path = resolve(to);
      const t0 = performance.now();
      // Any schema version: a backup is what to take before a migration (or after a downgrade).
      // Read-only: a database that is itself a backup (not in WAL mode) is copied as it is, and
      // one this user may only read can be copied too.
      await withStore(ctx, { schema: 'none', create: false, readOnly: true }, (store) => store.backup(path));
      // The copy's own version, not the database's now: a db migrate running meanwhile moves the latter.
      const copy = await openStore(path, { schema: 'none', create: false, readOnly: true });
      const version = await copy.schemaStatus().then((s) => s.current).finally(() => copy.close());
      const bytes = statSync(path).size;
      if (ctx.json) return void ctx.io.out(json({ backup: path, bytes, schemaVersion: version }));
      // verify reads only this botstate's schema version; the backup itself must stay as it is.
      // The path as typed may hold anything a file name may: quoted for a shell where it needs to
      // be, so that the command given can be pasted; one with control characters is shown escaped,
      // and no command is given for it (pasted, the escaped name would be another file's).
      const controls = escapeControls(path) !== path;
      const shown = escapeControls(/^[\w./-]+$/.test(path) ? path : `'${path.replaceAll("'", "'\\''")}'`);
      const verifyIt = controls ? 'Check it with botstate verify --db and that path (it holds control characters, shown escaped)' : `Check it with botstate verify --db ${shown}`;
      const check =
        version === LATEST_VERSION ? verifyIt
        : version > LATEST_VERSION ? `It holds schema version ${version}, as the database, newer than this botstate reads (${LATEST_VERSION}): keep the backup as it is, and check it with the botstate that wrote the database`
        : `It holds schema version ${version}, as the database; this botstate reads version ${LATEST_VERSION}: keep the backup as it is, and check a copy of it (botstate db migrate, then verify, on the copy)`;
      ctx.io.out(`Backed up to ${shown} (${bytes} bytes, ${Math.round(performance.now() - t0)} ms). ${check}\n`);
    },
  },
};

/** `botstate db status|migrate|rollback|backup`: the parsing of the subcommand happens in main. */
export const dbCommands: readonly Command[] = Object.entries(subcommands).map(([name, sub]) => ({
  name: `db ${name}`,
  summary: sub.summary,
  usage: name === 'status' ? '' : name === 'rollback' ? '[--to N] [--force]' : name === 'backup' ? '--to FILE' : '[--to N]',
  options: sub.options,
  positionals: [0, 0] as const,
  run: sub.run,
}));
