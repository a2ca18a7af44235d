import { createHash } from 'node:crypto';
import type { Engine } from '../adapter.ts';

/**
 * The columns of botstate's schema_migrations table: how a database is told apart from another
 * application's that has a table of that name too (Rails, Ecto, golang-migrate).
 */
export const VERSION_COLUMNS: readonly string[] = Object.freeze(['version', 'name', 'checksum', 'applied_at']);

/** SQL for each engine. */
export type PerEngine = { readonly [E in Engine]: string };

/**
 * One numbered, immutable schema change. `up` and `down` are applied in one transaction
 * together with the change to the `schema_migrations` row.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly up: PerEngine;
  readonly down: PerEngine;
}

/** The checksum recorded when a migration is applied: SHA-256 of its `up` SQL for that engine. */
export function checksum(migration: Migration, engine: Engine): string {
  return createHash('sha256').update(migration.up[engine]).digest('hex');
}
