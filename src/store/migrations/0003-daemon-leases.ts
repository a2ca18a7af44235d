import type { Migration } from './migration.ts';

/**
 * Daemons and the leases through which they share jobs (issue 3; docs/daemon.md).
 *
 * - `daemon_instances`: one row per daemon run (seed 002's bot instances), heartbeated.
 * - `job_leases`: who runs each job, until when, and at which fencing epoch. A lease row is
 *   never deleted: a takeover increments `epoch`, so a daemon that lost the job can never
 *   write with its old epoch again. `owner = ''` means nobody holds it.
 *
 * Released: never edit this file; add a new migration instead.
 */
export const migration0003: Migration = {
  version: 3,
  name: 'daemon_leases',
  up: {
    sqlite: `
CREATE TABLE daemon_instances (
  id           TEXT PRIMARY KEY,
  host         TEXT NOT NULL,
  pid          INTEGER NOT NULL,
  started_at   TEXT NOT NULL,
  heartbeat_at TEXT NOT NULL,
  stopped_at   TEXT
) STRICT;
CREATE TABLE job_leases (
  job_id     TEXT PRIMARY KEY REFERENCES jobs (id),
  owner      TEXT NOT NULL,
  epoch      INTEGER NOT NULL CHECK (epoch >= 0),
  expires_at TEXT NOT NULL
) STRICT;
CREATE INDEX job_leases_by_owner ON job_leases (owner);
`,
    postgres: `
CREATE TABLE daemon_instances (
  id           TEXT PRIMARY KEY,
  host         TEXT NOT NULL,
  pid          INTEGER NOT NULL,
  started_at   TIMESTAMPTZ(3) NOT NULL,
  heartbeat_at TIMESTAMPTZ(3) NOT NULL,
  stopped_at   TIMESTAMPTZ(3)
);
CREATE TABLE job_leases (
  job_id     TEXT PRIMARY KEY REFERENCES jobs (id),
  owner      TEXT NOT NULL,
  epoch      BIGINT NOT NULL CHECK (epoch >= 0),
  expires_at TIMESTAMPTZ(3) NOT NULL
);
CREATE INDEX job_leases_by_owner ON job_leases (owner);
`,
  },
  down: {
    sqlite: `
DROP TABLE job_leases;
DROP TABLE daemon_instances;
`,
    postgres: `
DROP TABLE job_leases;
DROP TABLE daemon_instances;
`,
  },
};
