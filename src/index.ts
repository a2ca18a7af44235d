/**
 * botstate: crash-safe state for trading bots on SQLite or PostgreSQL.
 *
 * @example
 * import { openStore } from 'botstate';
 * const store = await openStore('./botstate.db');
 * const job = await store.jobs.start({ tokenAddress: '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07' });
 */
import './util/node-version.ts'; // first: before the native driver loads
export { openStore, Store, type DaemonInstance, type JobDaemon, type StoreOptions, type TransactionOptions } from './store/store.ts';
export type { Executor, Durability, Engine, SqlParam } from './store/adapter.ts';
export type { CallOptions, Fence } from './store/context.ts';
export type { SchemaStatus, MigrationState } from './store/migrations/runner.ts';
export type { Migration } from './store/migrations/migration.ts';
export { Jobs, type DamagedJob, type StartJobInput, type ConfigureInput, type StrategyStatePatch, type CompleteLiquidationOptions } from './jobs/jobs.ts';
export type { Job, JobRef, JobChange } from './jobs/job-rows.ts';
export { JobStatus, JobMode, TRANSITIONS, allowedActions, type LifecycleAction } from './jobs/lifecycle.ts';
export { defaultConfig, parseConfigJson, CONFIG_KEYS, type JobConfig, type AccumulateConfig, type LiquidityConfig, type LimitsConfig } from './jobs/config.ts';
export { normalizeAddress, type NormalizeAddressOptions } from './jobs/address.ts';
export {
  Ledger,
  TradeSide,
  TradeReason,
  TradeStatus,
  type Trade,
  type TradeInput,
  type Fill,
  type RecordTradeInput,
  type IntentInput,
  type IntentOptions,
  type SettleOptions,
  type RecordOptions,
  type Settlement,
  type TradeResult,
  type TradesFilter,
} from './ledger/ledger.ts';
export type { AuditEntry, AuditReport, AuditProblem } from './audit/audit.ts';
export * as decimal from './money/decimal.ts';
export {
  BotstateError,
  ValidationError,
  RuleError,
  InvalidTransitionError,
  NotFoundError,
  StorageError,
  SchemaError,
  ErrorCategory,
  EXIT_CODES,
  isBotstateError,
  type ErrorCode,
} from './errors.ts';
export { Daemon, type DaemonOptions, type RecoveryReport } from './engine/daemon.ts';
export {
  ExchangeUnavailableError,
  ExchangeInvalidAnswerError,
  ExchangeRejectedError,
  type Exchange,
  type ExchangeOrder,
  type OrderRequest,
} from './engine/exchange.ts';
export { HttpExchange, type HttpExchangeOptions } from './engine/exchanges/http-exchange.ts';
export { startPaperExchange, type PaperExchangeOptions, type PaperExchangeHandle } from './engine/exchanges/paper-server.ts';
export {
  decide,
  afterFill,
  scratchAfterFill,
  limitUsage,
  parseScratch,
  type Scratch,
  type StrategyInput,
  type Decision,
  type OrderPlan,
  type AfterFillInput,
  type StateChange,
  type LimitUsage,
} from './engine/strategies/strategy.ts';
