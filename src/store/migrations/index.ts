import { migration0001 } from './0001-jobs-trades-audit.ts';
import { migration0002 } from './0002-job-strategy-state.ts';
import { migration0003 } from './0003-daemon-leases.ts';
import { migration0004 } from './0004-trades-checks-without-in-lists.ts';
import { migration0005 } from './0005-daemon-max-jobs.ts';
import { migration0006 } from './0006-daemon-lease-ttl.ts';
import { migration0007 } from './0007-audit-log-no-truncate.ts';
import { migration0008 } from './0008-daemon-exchange-unreachable.ts';
import type { Migration } from './migration.ts';

/** Every migration, in order. Append only: a released migration is never edited or removed. */
export const MIGRATIONS: readonly Migration[] = Object.freeze([migration0001, migration0002, migration0003, migration0004, migration0005, migration0006, migration0007, migration0008]);

/** The schema version this code expects. */
export const LATEST_VERSION = MIGRATIONS.length;
