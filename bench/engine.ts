/** What each engine's set-up gives the runner, and the checks that both sides did the same work. */
import type { Case } from './harness.ts';
import { fromUnits, toUnits, tradeAmounts } from './workload.ts';

export type Durability = 'process' | 'power';

/** The statements each side ran for one trade and one pause + resume, with the kinds of their parameters. */
export interface SqlLog {
  readonly botstate: readonly string[];
  readonly raw: readonly string[];
}

export interface SideState {
  readonly trades: number;
  readonly trade: Record<string, unknown>;
  readonly transition: Record<string, unknown>;
  readonly audit: number;
}

export interface StateCheck {
  readonly botstate: SideState;
  readonly raw: SideState;
  readonly auditProblems: number;
  readonly auditEntries: number;
}

export interface EngineSetup {
  /** The recordTrade case and the transition case. */
  readonly cases: readonly Case[];
  /** Runs two trades and a pause + resume on each side (operations -2 and -1) while logging the SQL. */
  verifySql(): Promise<SqlLog[]>;
  /** Reads back both databases after the run. */
  checkState(): Promise<StateCheck[]>;
  close(): Promise<void>;
}

/** Statements botstate may run around the measured ones (group commit in `power` mode). */
const EXTRA = /^(SAVEPOINT|RELEASE) /;

/**
 * Compares the statement sequences of the two sides. Returns the differences (empty when they
 * match) and notes on statements botstate runs in addition (its group-commit savepoints), which
 * are part of what it costs.
 */
export function compareSql(log: SqlLog): { problems: string[]; notes: string[] } {
  const problems: string[] = [];
  const extra = log.botstate.filter((s) => EXTRA.test(s));
  const botstate = log.botstate.filter((s) => !EXTRA.test(s));
  const n = Math.max(botstate.length, log.raw.length);
  for (let i = 0; i < n; i++) {
    const a = botstate[i];
    const b = log.raw[i];
    if (a !== b) problems.push(`statement ${i + 1}:\n    botstate: ${a ?? '(none)'}\n    raw:      ${b ?? '(none)'}`);
  }
  if (botstate.length === 0) problems.push('no statement was logged for botstate');
  const kinds = [...new Set(extra.map((s) => s.replace(/ \[.*\]$/, '')))];
  const notes = kinds.length === 0 ? [] : [`botstate also ran ${kinds.map((k) => `\`${k}\``).join(', ')} around each of its transactions (group commit, which has nothing to group with one caller); their cost is in botstate's figures`];
  return { problems, notes };
}

/**
 * Both sides ran `ops` trades (operation indices -2 … ops - 3) and `ops` transitions: they must
 * hold the same number of trades, the exact same balance (the sum of the amounts), and the job
 * must have the same version; botstate's audit chain must verify.
 */
export function compareState(check: StateCheck, tradeOps: number, transitionOps: number): string[] {
  const problems: string[] = [];
  let units = 0n;
  let quote = 0n;
  for (let i = -2; i < tradeOps - 2; i++) {
    const a = tradeAmounts(i);
    units += toUnits(a.baseAmount);
    quote += toUnits(a.quoteAmount);
  }
  const expected = { balance: fromUnits(units), accumulated: fromUnits(quote) };
  for (const [side, s] of [['botstate', check.botstate], ['raw', check.raw]] as const) {
    if (s.trades !== tradeOps) problems.push(`${side}: ${s.trades} trades, expected ${tradeOps}`);
    if (String(s.trade['token_balance']) !== expected.balance) problems.push(`${side}: token_balance ${String(s.trade['token_balance'])}, expected ${expected.balance}`);
    if (String(s.trade['total_accumulated']) !== expected.accumulated) problems.push(`${side}: total_accumulated ${String(s.trade['total_accumulated'])}, expected ${expected.accumulated}`);
    if (Number(s.trade['version']) !== tradeOps + 1) problems.push(`${side}: trade job at version ${String(s.trade['version'])}, expected ${tradeOps + 1}`);
    if (Number(s.transition['version']) !== transitionOps + 1) problems.push(`${side}: transition job at version ${String(s.transition['version'])}, expected ${transitionOps + 1}`);
  }
  if (check.botstate.transition['status'] !== check.raw.transition['status']) problems.push('the transition jobs ended in different statuses');
  if (check.botstate.audit !== check.raw.audit) problems.push(`audit rows differ: botstate ${check.botstate.audit}, raw ${check.raw.audit}`);
  if (check.auditProblems > 0) problems.push(`botstate's audit chain has ${check.auditProblems} problems`);
  return problems;
}
