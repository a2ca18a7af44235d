import { BotstateError, RuleError, ValidationError } from '../../errors.ts';
import { cmp, parseDecimal } from '../../money/decimal.ts';
import { checkAmountsAgree, checkRecordInput, checkSettlement, POSITIVE_HINTS, TradeReason, TradeSide, TradeStatus, type Settlement } from '../../ledger/ledger.ts';
import { leaseHolder } from '../../engine/leases.ts';
import { scratchAfterFill } from '../../engine/strategies/strategy.ts';
import { CHAIN_OPTION, EXISTING, oneOf, READING, timeFlag, tokenRef, WINDOW_OPTIONS, windowOf, withStore, type Command, type CommandContext } from '../command.ts';
import { escapeControls } from '../../util/text.ts';
import { json, jsonArrayChunks, outChunks, outPaged, pagedChunks, TRADES_LISTING, tradesTable } from '../output.ts';

function required(ctx: CommandContext, flag: string, command = 'record'): string {
  const value = ctx.values[flag];
  if (typeof value !== 'string') throw new ValidationError('USAGE', `missing --${flag}`, { hint: `see botstate ${command} --help` });
  return value;
}

/** Why each flag that must be greater than 0 must be (the ledger's hints). */
const POSITIVE: Readonly<Record<string, string>> = { base: POSITIVE_HINTS.baseAmount, price: POSITIVE_HINTS.priceUsd };

/** An amount flag, checked here so that a refusal names the flag (the ledger checks it again). */
function amount(ctx: CommandContext, flag: string, command = 'record'): string {
  const value = parseDecimal(required(ctx, flag, command), { field: `--${flag}` });
  const hint = POSITIVE[flag];
  if (hint !== undefined && cmp(value, '0') <= 0) throw new ValidationError('INVALID_AMOUNT', `--${flag} must be greater than 0, got ${value}`, { hint });
  return value;
}

function optional(ctx: CommandContext, flag: string): string | undefined {
  const value = ctx.values[flag];
  return typeof value === 'string' ? value : undefined;
}

const trades: Command = {
  name: 'trades',
  summary: "list a job's trades",
  usage: '<token> [--chain C] [--status pending|executed|failed] [--since T] [--limit N]',
  options: { ...CHAIN_OPTION, status: { type: 'string', value: 'S', help: 'only trades in this status' }, ...WINDOW_OPTIONS },
  positionals: [1, 1],
  async run(ctx) {
    const ref = tokenRef(ctx);
    const status = ctx.values['status'] === undefined ? {} : { status: oneOf(ctx, 'trades', 'status', Object.values(TradeStatus)) };
    const window = windowOf(ctx);
    if (window.since !== undefined || window.limit !== undefined) {
      const list = await withStore(ctx, READING, (store) => store.ledger.trades(ref, { ...status, ...window }));
      outChunks(ctx.io, ctx.json ? jsonArrayChunks(list) : tradesTable(list));
      return;
    }
    // Every trade, however many: read a page at a time (see pagedChunks).
    await withStore(ctx, READING, (store) => outPaged(ctx.io, pagedChunks(TRADES_LISTING, () => store.ledger.tradePages(ref, status), ctx.json)));
  },
};

const EXECUTED_AT_OPTION = {
  type: 'string',
  value: 'T',
  help: 'when the exchange filled it, a UTC time, e.g. 2026-11-26T16:01:56Z, seconds and milliseconds optional (default: now); sets lastDcaBuyTime for a DCA buy',
} as const;

/**
 * A repeat that names another fill time is not the same record: refused as a conflicting
 * repeat is (the ledger took it for a duplicate, changing nothing, as it must for the daemon's
 * own repeats, whose times are read again from the exchange).
 */
function sameTimeOrRefused(duplicate: boolean, trade: { clientOrderId: string; executedAt: string | null }, executedAt: string | undefined): void {
  if (!duplicate || executedAt === undefined || trade.executedAt === executedAt) return;
  throw new RuleError('DUPLICATE_ORDER', `clientOrderId ${trade.clientOrderId} is already recorded with executedAt ${trade.executedAt}, not ${executedAt}`, {
    hint: 'a repeat must give the same details; nothing was changed',
  });
}

/** --executed-at, a UTC time as --since takes it (a time in the future is refused by the ledger). */
function executedAtOf(ctx: CommandContext): string | undefined {
  return timeFlag(ctx, 'executed-at');
}

const record: Command = {
  name: 'record',
  summary: 'record an executed trade by hand (idempotent on --client-order-id)',
  usage: '<token> --side buy|sell --reason R --base N --quote N --price N --client-order-id ID [--chain C] [--tx-hash H] [--exchange-order-id E] [--executed-at T]',
  details:
    'Updates the job\'s tokenBalance, totalAccumulated and lastDcaBuyTime in the same transaction, and its\n' +
    'strategy state (the limits\' counts, the liquidity cash) as the daemon does for its own fills. Refused\n' +
    '(exit 3) while a daemon holds the job, which keeps that state in memory: pause the job (its daemon lets it\n' +
    'go at its next tick when no order of it is open) or stop the daemons first.\n' +
    'Recording the same --client-order-id again with the same details changes nothing.\n' +
    `Reasons: ${Object.values(TradeReason).join(', ').toLowerCase()}.`,
  options: {
    ...CHAIN_OPTION,
    side: { type: 'string', value: 'SIDE', help: 'buy or sell' },
    reason: { type: 'string', value: 'R', help: 'a buy: dca, dip_buy, support_buy or rebalance; a sell: take_profit, liquidate or rebalance' },
    base: { type: 'string', value: 'N', help: 'token amount (exact decimal, up to 18 decimals)' },
    quote: { type: 'string', value: 'N', help: 'quote amount paid or received' },
    price: { type: 'string', value: 'N', help: 'price in USD, greater than 0' },
    'client-order-id': { type: 'string', value: 'ID', help: 'the order id shared with the exchange; unique' },
    'tx-hash': { type: 'string', value: 'H', help: 'on-chain transaction hash' },
    'exchange-order-id': { type: 'string', value: 'E', help: "the exchange's own order id" },
    'executed-at': EXECUTED_AT_OPTION,
  },
  positionals: [1, 1],
  async run(ctx) {
    const ref = tokenRef(ctx);
    const side = oneOf(ctx, 'record', 'side', Object.values(TradeSide));
    const reason = oneOf(ctx, 'record', 'reason', Object.values(TradeReason));
    const txHash = optional(ctx, 'tx-hash');
    const exchangeOrderId = optional(ctx, 'exchange-order-id');
    const executedAt = executedAtOf(ctx);
    const input = {
      job: ref,
      side,
      reason,
      clientOrderId: required(ctx, 'client-order-id'),
      baseAmount: amount(ctx, 'base'),
      quoteAmount: amount(ctx, 'quote'),
      priceUsd: amount(ctx, 'price'),
      ...(txHash !== undefined ? { txHash } : {}),
      ...(exchangeOrderId !== undefined ? { exchangeOrderId } : {}),
      ...(executedAt !== undefined ? { executedAt } : {}),
    };
    asFlags(() => checkRecordInput(input), RECORD_FLAGS); // before a database is opened or migrated
    checkAmountsAgree(input);
    const result = await withStore(ctx, EXISTING, (store) =>
      store.transaction(async (tx) => {
        // The fill counts in the job's strategy state too (its limits, its liquidity cash), as the
        // daemon's own fills do: a daemon holding the job keeps that state in memory and would
        // write over it. A repeat (the clientOrderId is taken) is the ledger's to answer.
        const known = await store.ledger.get(input.clientOrderId).then(() => true, notFound);
        // A new trade's reason must be one of its side's (a repeat is the ledger's to compare).
        if (!known) checkReasonSide(side, reason);
        const job = known ? undefined : await store.jobs.get(ref);
        const holder = job === undefined ? undefined : await leaseHolder(store, tx, job.id);
        if (holder !== undefined) {
          throw daemonHolds(
            holder,
            `daemon ${holder.owner} holds the job of ${job!.tokenAddress} and keeps its strategy state in memory: it would not count this trade`,
            // A paused job with no open order is let go at the daemon's next tick.
            'pause the job and record once its daemon has let it go (its log says so by its next tick, unless an order of the job is open), or stop every daemon on this database',
          );
        }
        return store.ledger.recordTrade(input, { scratch: scratchAfterFill });
      }),
    ).catch((e: unknown) => {
      throw flagNamed(e, RECORD_FLAGS);
    });
    sameTimeOrRefused(result.duplicate, result.trade, executedAt);
    if (ctx.json) {
      ctx.io.out(json({ duplicate: result.duplicate, trade: result.trade, tokenBalance: result.job.tokenBalance, totalAccumulated: result.job.totalAccumulated }));
      return;
    }
    const t = result.trade;
    const what = result.duplicate ? 'Already recorded' : 'Recorded';
    ctx.io.out(`${what} ${t.side} ${t.baseAmount} (${t.reason}, ${t.clientOrderId}); tokenBalance ${result.job.tokenBalance}, totalAccumulated ${result.job.totalAccumulated}\n`);
  },
};

/** The side each reason belongs to; REBALANCE goes both ways. */
const REASON_SIDE: Readonly<Partial<Record<string, 'BUY' | 'SELL'>>> = {
  DCA: 'BUY',
  DIP_BUY: 'BUY',
  SUPPORT_BUY: 'BUY',
  TAKE_PROFIT: 'SELL',
  LIQUIDATE: 'SELL',
};

/** Each reason but REBALANCE is one side's (docs/strategies.md): a sell for DCA is a typo. */
function checkReasonSide(side: string, reason: string): void {
  const sideOf = REASON_SIDE[reason];
  if (sideOf === undefined || sideOf === side) return;
  throw new ValidationError('USAGE', `--reason ${reason.toLowerCase()} is a ${sideOf.toLowerCase()}'s reason, not a ${side.toLowerCase()}'s`, {
    hint: 'buys: dca, dip_buy, support_buy, rebalance; sells: take_profit, liquidate, rebalance',
  });
}

/** The library's field names as the flags that give them (settle's clientOrderId is its argument). */
const SETTLE_FLAGS: Readonly<Record<string, string>> = {
  txHash: '--tx-hash',
  exchangeOrderId: '--exchange-order-id',
  executedAt: '--executed-at',
  baseAmount: '--base',
  quoteAmount: '--quote',
  priceUsd: '--price',
};
const RECORD_FLAGS: Readonly<Record<string, string>> = { ...SETTLE_FLAGS, clientOrderId: '--client-order-id' };

/** Runs a library check, its refusal naming the flag the user typed rather than the library's field. */
function asFlags(check: () => void, flags: Readonly<Record<string, string>>): void {
  try {
    check();
  } catch (e) {
    throw flagNamed(e, flags);
  }
}

/** A refusal that begins with a library field's name (`quoteAmount 1… would take …`), said with the flag instead. */
function flagNamed(e: unknown, flags: Readonly<Record<string, string>>): unknown {
  const field = e instanceof ValidationError ? Object.keys(flags).find((f) => e.message.startsWith(`${f} `)) : undefined;
  if (field === undefined) return e;
  const error = e as ValidationError;
  const flag = flags[field]!;
  return new ValidationError(error.code, `${flag}${error.message.slice(field.length)}`, {
    ...(error.hint !== undefined ? { hint: error.hint.replaceAll(field, flag) } : {}),
    details: { ...error.details },
    cause: e,
  });
}

/** A TRADE_NOT_FOUND is an answer (false); anything else goes on. */
function notFound(e: unknown): false {
  if (e instanceof BotstateError && e.code === 'TRADE_NOT_FOUND') return false;
  throw e;
}

function daemonHolds(
  holder: { owner: string; expiresAt: string },
  message: string,
  what = 'stop every daemon on this database first (another one takes over a job with an open order; a stopped daemon hands its leases back immediately)',
): BotstateError {
  return new RuleError('DAEMON_RUNNING', message, {
    // A daemon killed (kill -9) hands nothing back: its lease holds until it expires.
    hint: `${what}; a daemon that was killed holds the lease until it expires (${holder.expiresAt})`,
    details: holder,
  });
}

const SETTLE_AMOUNTS = ['base', 'quote', 'price', 'exchange-order-id', 'tx-hash', 'executed-at'] as const;

const settle: Command = {
  name: 'settle',
  summary: 'settle a PENDING order by hand: the fill the exchange reports, or why it failed',
  usage: '<client-order-id> --status executed --base N --quote N --price N [--exchange-order-id E] [--tx-hash H] [--executed-at T] | <client-order-id> --status failed --error TEXT',
  details:
    'For an order the daemon could not reconcile itself (it logs "reconcile it by hand" and the job goes to ERROR):\n' +
    'look the order up at the exchange by its clientOrderId, then settle it as the daemon\'s message says.\n' +
    'EXECUTED applies the fill to the job (tokenBalance, totalAccumulated, lastDcaBuyTime, and its strategy state:\n' +
    'the limits\' counts, the liquidity cash, the dip) in the same transaction; it is no more than the intent asked for;\n' +
    'FAILED records that the order was not filled. Then resume the job. Refused (exit 3) while a daemon holds\n' +
    'the job: a daemon reconciles a job\'s open order whatever the job\'s status, and another takes it over, so\n' +
    'stop every daemon on the database first. Settling a settled order again the same way (the same fill;\n' +
    'failed, whatever the error text) changes nothing; another way is exit 3. An exchange order on another\n' +
    'side or token, or for more than the intent asked, is another trade: settle the intent failed and record\n' +
    'the exchange\'s order with botstate record under a clientOrderId of its own.',
  options: {
    status: { type: 'string', value: 'S', help: 'executed or failed' },
    base: { type: 'string', value: 'N', help: 'executed: the token amount filled' },
    quote: { type: 'string', value: 'N', help: 'executed: the quote amount paid or received' },
    price: { type: 'string', value: 'N', help: 'executed: the price in USD, greater than 0' },
    'exchange-order-id': { type: 'string', value: 'E', help: "executed: the exchange's own order id" },
    'tx-hash': { type: 'string', value: 'H', help: 'executed: the on-chain transaction hash' },
    'executed-at': { ...EXECUTED_AT_OPTION, help: `executed: ${EXECUTED_AT_OPTION.help}; at most 5 minutes before the order was recorded` },
    error: { type: 'string', value: 'TEXT', help: 'failed: why the order was not filled' },
  },
  positionals: [1, 1],
  async run(ctx) {
    const clientOrderId = ctx.positionals[0]!;
    const status = oneOf(ctx, 'settle', 'status', [TradeStatus.EXECUTED, TradeStatus.FAILED] as const);
    const misplaced = (status === 'EXECUTED' ? ['error'] : SETTLE_AMOUNTS).find((f) => ctx.values[f] !== undefined);
    if (misplaced !== undefined) {
      throw new ValidationError('USAGE', `--${misplaced} does not go with --status ${status.toLowerCase()}`, { hint: 'see botstate settle --help' });
    }
    let settlement: Settlement;
    if (status === 'EXECUTED') {
      const txHash = optional(ctx, 'tx-hash');
      const exchangeOrderId = optional(ctx, 'exchange-order-id');
      const executedAt = executedAtOf(ctx);
      settlement = {
        status,
        baseAmount: amount(ctx, 'base', 'settle'),
        quoteAmount: amount(ctx, 'quote', 'settle'),
        priceUsd: amount(ctx, 'price', 'settle'),
        ...(txHash !== undefined ? { txHash } : {}),
        ...(exchangeOrderId !== undefined ? { exchangeOrderId } : {}),
        ...(executedAt !== undefined ? { executedAt } : {}),
      };
    } else {
      settlement = { status, error: required(ctx, 'error', 'settle') };
    }
    asFlags(() => checkSettlement(clientOrderId, settlement), SETTLE_FLAGS); // before a database is opened
    if (settlement.status === 'EXECUTED') checkAmountsAgree(settlement);
    const result = await withStore(ctx, EXISTING, (store) =>
      store.transaction(async (tx) => {
        const trade = await store.ledger.get(clientOrderId);
        // A daemon reconciles a job's open intent whatever the job's status (it may re-send an
        // order the exchange does not know): while one holds the job's lease, it may be doing so now.
        const holder = trade.status === 'PENDING' ? await leaseHolder(store, tx, trade.jobId) : undefined;
        if (holder !== undefined) throw daemonHolds(holder, `daemon ${holder.owner} holds the job of order ${clientOrderId} and may be settling the order itself`);
        // The daemon's strategies count the fill too (limits, liquidity cash, the dip it was for).
        return store.ledger.settle(clientOrderId, settlement, { scratch: scratchAfterFill });
      }),
    ).catch((e: unknown) => {
      throw flagNamed(e, SETTLE_FLAGS);
    });
    sameTimeOrRefused(result.duplicate, result.trade, settlement.status === 'EXECUTED' ? settlement.executedAt : undefined);
    if (ctx.json) {
      ctx.io.out(json({ duplicate: result.duplicate, trade: result.trade, tokenBalance: result.job.tokenBalance, totalAccumulated: result.job.totalAccumulated }));
      return;
    }
    const t = result.trade;
    const what = result.duplicate ? 'Already settled' : 'Settled';
    const how = t.status === 'EXECUTED' ? `EXECUTED ${t.side} ${t.baseAmount}` : `FAILED (${t.error})`;
    // The error text may be an exchange's (a settled trade's, repeated): one line, whatever it holds.
    ctx.io.out(`${escapeControls(`${what} ${t.clientOrderId}: ${how}; tokenBalance ${result.job.tokenBalance}, totalAccumulated ${result.job.totalAccumulated}`)}\n`);
  },
};

export const tradeCommands: readonly Command[] = [trades, record, settle];
