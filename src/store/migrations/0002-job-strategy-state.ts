import type { Migration } from './migration.ts';

/**
 * A job's strategy state (the moving-average window, daily volume, trades this hour…) as one
 * JSON document, so that a strategy can keep what it needs across restarts without a migration
 * of its own.
 *
 * Released: never edit this file; add a new migration instead.
 */
export const migration0002: Migration = {
  version: 2,
  name: 'job_strategy_state',
  up: {
    sqlite: `ALTER TABLE jobs ADD COLUMN strategy_state TEXT NOT NULL DEFAULT '{}';`,
    postgres: `ALTER TABLE jobs ADD COLUMN strategy_state JSONB NOT NULL DEFAULT '{}';`,
  },
  down: {
    sqlite: `ALTER TABLE jobs DROP COLUMN strategy_state;`,
    postgres: `ALTER TABLE jobs DROP COLUMN strategy_state;`,
  },
};
