import type { Migration } from './migration.ts';

/**
 * Jobs, their trades, and the hash-chained audit log.
 *
 * Amounts are exact: TEXT holding canonical decimal strings on SQLite, NUMERIC on PostgreSQL.
 * Times are ISO 8601 TEXT on SQLite and TIMESTAMPTZ(3) on PostgreSQL.
 * The audit log's before/after are stored as the exact JSON text that was hashed (TEXT / json,
 * never jsonb, which would re-serialise it), and the table refuses UPDATE and DELETE (so SQLite's
 * rowid ids never repeat without AUTOINCREMENT's extra write). On SQLite, trades are clustered on
 * their time-ordered uuidv7 id (WITHOUT ROWID): one b-tree fewer to write per trade.
 *
 * Released: never edit this file; add a new migration instead.
 */
export const migration0001: Migration = {
  version: 1,
  name: 'jobs_trades_audit',
  up: {
    sqlite: `
CREATE TABLE jobs (
  id                  TEXT PRIMARY KEY,
  chain               TEXT NOT NULL,
  token_address       TEXT NOT NULL,
  token_symbol        TEXT NOT NULL,
  mode                TEXT NOT NULL CHECK (mode IN ('ACCUMULATE', 'LIQUIDITY')),
  status              TEXT NOT NULL CHECK (status IN ('IDLE', 'RUNNING', 'PAUSED', 'LIQUIDATING', 'ERROR')),
  status_reason       TEXT,
  last_dca_buy_time   TEXT,
  recent_high         TEXT NOT NULL,
  recent_high_time    TEXT,
  total_accumulated   TEXT NOT NULL,
  token_balance       TEXT NOT NULL,
  last_rebalance_time TEXT,
  config              TEXT NOT NULL,
  created_at          TEXT NOT NULL,
  updated_at          TEXT NOT NULL,
  started_at          TEXT,
  stopped_at          TEXT,
  version             INTEGER NOT NULL CHECK (version >= 1),
  audit_hash          TEXT NOT NULL,
  UNIQUE (chain, token_address)
) STRICT;
CREATE INDEX jobs_by_status ON jobs (status);

CREATE TABLE trades (
  id                TEXT PRIMARY KEY,
  job_id            TEXT NOT NULL REFERENCES jobs (id),
  side              TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
  reason            TEXT NOT NULL CHECK (reason IN ('DCA', 'DIP_BUY', 'TAKE_PROFIT', 'REBALANCE', 'SUPPORT_BUY', 'LIQUIDATE')),
  base_amount       TEXT,
  quote_amount      TEXT,
  price_usd         TEXT,
  client_order_id   TEXT NOT NULL UNIQUE,
  exchange_order_id TEXT,
  tx_hash           TEXT,
  status            TEXT NOT NULL CHECK (status IN ('PENDING', 'EXECUTED', 'FAILED')),
  error             TEXT,
  created_at        TEXT NOT NULL,
  executed_at       TEXT,
  CHECK (status <> 'EXECUTED' OR (base_amount IS NOT NULL AND quote_amount IS NOT NULL
                                  AND price_usd IS NOT NULL AND executed_at IS NOT NULL))
) STRICT, WITHOUT ROWID;
CREATE INDEX trades_by_job ON trades (job_id, created_at);
CREATE INDEX trades_pending ON trades (job_id) WHERE status = 'PENDING';

CREATE TABLE audit_log (
  id        INTEGER PRIMARY KEY,
  stream    TEXT NOT NULL,
  seq       INTEGER NOT NULL CHECK (seq >= 1),
  at        TEXT NOT NULL,
  actor     TEXT NOT NULL,
  entity    TEXT NOT NULL,
  entity_id TEXT NOT NULL,
  action    TEXT NOT NULL,
  before    TEXT,
  after     TEXT,
  prev_hash TEXT NOT NULL,
  hash      TEXT NOT NULL,
  UNIQUE (stream, seq)
) STRICT;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
`,
    postgres: `
CREATE TABLE jobs (
  id                  TEXT PRIMARY KEY,
  chain               TEXT NOT NULL,
  token_address       TEXT NOT NULL,
  token_symbol        TEXT NOT NULL,
  mode                TEXT NOT NULL CHECK (mode IN ('ACCUMULATE', 'LIQUIDITY')),
  status              TEXT NOT NULL CHECK (status IN ('IDLE', 'RUNNING', 'PAUSED', 'LIQUIDATING', 'ERROR')),
  status_reason       TEXT,
  last_dca_buy_time   TIMESTAMPTZ(3),
  recent_high         NUMERIC NOT NULL,
  recent_high_time    TIMESTAMPTZ(3),
  total_accumulated   NUMERIC NOT NULL,
  token_balance       NUMERIC NOT NULL,
  last_rebalance_time TIMESTAMPTZ(3),
  config              JSONB NOT NULL,
  created_at          TIMESTAMPTZ(3) NOT NULL,
  updated_at          TIMESTAMPTZ(3) NOT NULL,
  started_at          TIMESTAMPTZ(3),
  stopped_at          TIMESTAMPTZ(3),
  version             BIGINT NOT NULL CHECK (version >= 1),
  audit_hash          TEXT NOT NULL,
  UNIQUE (chain, token_address)
);
CREATE INDEX jobs_by_status ON jobs (status);

CREATE TABLE trades (
  id                TEXT PRIMARY KEY,
  job_id            TEXT NOT NULL REFERENCES jobs (id),
  side              TEXT NOT NULL CHECK (side IN ('BUY', 'SELL')),
  reason            TEXT NOT NULL CHECK (reason IN ('DCA', 'DIP_BUY', 'TAKE_PROFIT', 'REBALANCE', 'SUPPORT_BUY', 'LIQUIDATE')),
  base_amount       NUMERIC,
  quote_amount      NUMERIC,
  price_usd         NUMERIC,
  client_order_id   TEXT NOT NULL UNIQUE,
  exchange_order_id TEXT,
  tx_hash           TEXT,
  status            TEXT NOT NULL CHECK (status IN ('PENDING', 'EXECUTED', 'FAILED')),
  error             TEXT,
  created_at        TIMESTAMPTZ(3) NOT NULL,
  executed_at       TIMESTAMPTZ(3),
  CHECK (status <> 'EXECUTED' OR (base_amount IS NOT NULL AND quote_amount IS NOT NULL
                                  AND price_usd IS NOT NULL AND executed_at IS NOT NULL))
);
CREATE INDEX trades_by_job ON trades (job_id, created_at);
CREATE INDEX trades_pending ON trades (job_id) WHERE status = 'PENDING';

CREATE TABLE audit_log (
  id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  stream    TEXT NOT NULL,
  seq       BIGINT NOT NULL CHECK (seq >= 1),
  at        TIMESTAMPTZ(3) NOT NULL,
  actor     TEXT NOT NULL,
  entity    TEXT NOT NULL,
  entity_id TEXT NOT NULL,
  action    TEXT NOT NULL,
  before    TEXT,
  after     TEXT,
  prev_hash TEXT NOT NULL,
  hash      TEXT NOT NULL,
  UNIQUE (stream, seq)
);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
`,
  },
  down: {
    sqlite: `
DROP TABLE audit_log;
DROP TABLE trades;
DROP TABLE jobs;
`,
    postgres: `
DROP TABLE audit_log;
DROP FUNCTION audit_log_append_only();
DROP TABLE trades;
DROP TABLE jobs;
`,
  },
};
