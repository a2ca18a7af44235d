import type { Migration } from './migration.ts';

/**
 * Since when a daemon's exchange has answered no call (NULL while it answers), on its instance
 * row: a daemon cut off from its exchange hands its jobs only to a daemon that reaches its own,
 * and a daemon that reaches its exchange gives no more jobs to one that does not. `botstate
 * daemons` shows it.
 *
 * Released: never edit this file; add a new migration instead.
 */
export const migration0008: Migration = {
  version: 8,
  name: 'daemon_exchange_unreachable',
  up: {
    sqlite: `ALTER TABLE daemon_instances ADD COLUMN exchange_unreachable_since TEXT;`,
    postgres: `ALTER TABLE daemon_instances ADD COLUMN exchange_unreachable_since TIMESTAMPTZ(3);`,
  },
  down: {
    sqlite: `ALTER TABLE daemon_instances DROP COLUMN exchange_unreachable_since;`,
    postgres: `ALTER TABLE daemon_instances DROP COLUMN exchange_unreachable_since;`,
  },
};
