import { migration0001 } from './0001-jobs-trades-audit.ts';
import type { Migration } from './migration.ts';

/**
 * SQLite checks a `CHECK (x IN ('a', 'b', 'c'))` by building a temporary b-tree of the list
 * (an ephemeral table, with its own pager and page cache, allocated and freed) every time a
 * row is written: two per trade inserted (reason, status) and one per trade settled (status).
 * In the group-commit workload that was most of what an intent's INSERT cost beyond its
 * b-trees (see docs/benchmarks.md). The same rule spelled as `x = 'a' OR x = 'b' OR x = 'c'`
 * is a few comparisons.
 *
 * SQLite cannot change a CHECK in place, so `trades` is rebuilt: renamed, created again with
 * the same columns and constraints (only the IN lists respelled), its rows copied, the old
 * table dropped and its indexes created again. The time this takes grows with the number of
 * trades. PostgreSQL evaluates such lists without a temporary table: nothing changes there.
 *
 * The table's text is taken from migration 1, so that rolling back restores it exactly.
 *
 * Released: never edit this file; add a new migration instead.
 */
const V1 = migration0001.up.sqlite;
const TRADES_V1 = match(V1, /^CREATE TABLE trades \([\s\S]*?\) STRICT, WITHOUT ROWID;$/m);
const TRADES_V4 = TRADES_V1.replace(/(\w+) IN \(([^)]*)\)/g, (_all, column: string, list: string) =>
  list
    .split(',')
    .map((value) => `${column} = ${value.trim()}`)
    .join(' OR '),
);
const TRADE_INDEXES = indexesOfTrades(V1);
const COLUMNS =
  'id, job_id, side, reason, base_amount, quote_amount, price_usd, client_order_id, exchange_order_id, tx_hash, status, error, created_at, executed_at';

function match(text: string, re: RegExp): string {
  const m = re.exec(text);
  if (!m) throw new Error(`migration 4: ${re} not found in migration 1`);
  return m[0];
}

/** trades_by_job and trades_pending: dropping the old table drops them, so both are created again. */
function indexesOfTrades(text: string): string {
  const found = text.match(/^CREATE INDEX trades_\w+ ON trades .*;$/gm) ?? [];
  if (found.length !== 2) throw new Error(`migration 4: expected the 2 indexes of trades in migration 1, found ${found.length}`);
  return found.join('\n');
}

function rebuildTrades(createTable: string): string {
  return `
ALTER TABLE trades RENAME TO trades_old;
${createTable}
INSERT INTO trades (${COLUMNS}) SELECT ${COLUMNS} FROM trades_old;
DROP TABLE trades_old;
${TRADE_INDEXES}
`;
}

const NOTHING_ON_POSTGRES = '-- PostgreSQL checks an IN list without a temporary table: nothing to change.';

export const migration0004: Migration = {
  version: 4,
  name: 'trades_checks_without_in_lists',
  up: { sqlite: rebuildTrades(TRADES_V4), postgres: NOTHING_ON_POSTGRES },
  down: { sqlite: rebuildTrades(TRADES_V1), postgres: NOTHING_ON_POSTGRES },
};
