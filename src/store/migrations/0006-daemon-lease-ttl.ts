import type { Migration } from './migration.ts';

/**
 * A daemon's lease TTL on its instance row, so that the other daemons judge whether it is alive
 * by its own TTL: judged by theirs, a daemon with a longer TTL (which heartbeats less often) was
 * taken for dead by one with a shorter TTL, and one with a shorter TTL that died was waited for
 * by one with a longer TTL.
 *
 * Released: never edit this file; add a new migration instead.
 */
export const migration0006: Migration = {
  version: 6,
  name: 'daemon_lease_ttl',
  up: {
    sqlite: `ALTER TABLE daemon_instances ADD COLUMN lease_ttl_ms INTEGER;`,
    postgres: `ALTER TABLE daemon_instances ADD COLUMN lease_ttl_ms INTEGER;`,
  },
  down: {
    sqlite: `ALTER TABLE daemon_instances DROP COLUMN lease_ttl_ms;`,
    postgres: `ALTER TABLE daemon_instances DROP COLUMN lease_ttl_ms;`,
  },
};
