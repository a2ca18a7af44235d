import type { Migration } from './migration.ts';

/**
 * A daemon's `--max-jobs` on its instance row, so that the other daemons know how many jobs it
 * takes and share the rest among themselves (without it, the jobs a capped daemon left were run
 * by no daemon).
 *
 * Released: never edit this file; add a new migration instead.
 */
export const migration0005: Migration = {
  version: 5,
  name: 'daemon_max_jobs',
  up: {
    sqlite: `ALTER TABLE daemon_instances ADD COLUMN max_jobs INTEGER;`,
    postgres: `ALTER TABLE daemon_instances ADD COLUMN max_jobs INTEGER;`,
  },
  down: {
    sqlite: `ALTER TABLE daemon_instances DROP COLUMN max_jobs;`,
    postgres: `ALTER TABLE daemon_instances DROP COLUMN max_jobs;`,
  },
};
