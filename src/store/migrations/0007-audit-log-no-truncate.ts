import type { Migration } from './migration.ts';

/**
 * PostgreSQL: TRUNCATE of the audit log is refused as UPDATE and DELETE are. A row trigger does
 * not see TRUNCATE, which emptied the append-only log in one statement. SQLite has no TRUNCATE
 * (its DELETE without WHERE fires the DELETE trigger, which refuses it): nothing to do there.
 *
 * Released: never edit this file; add a new migration instead.
 */
export const migration0007: Migration = {
  version: 7,
  name: 'audit_log_no_truncate',
  up: {
    sqlite: '',
    postgres: `CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();`,
  },
  down: {
    sqlite: '',
    postgres: `DROP TRIGGER audit_log_no_truncate ON audit_log;`,
  },
};
