import { ValidationError } from '../../errors.ts';
import { cmp, parseDecimal } from '../../money/decimal.ts';
import { checkRecordInput, TradeReason, TradeSide, TradeStatus } from '../../ledger/ledger.ts';
import { CHAIN_OPTION, EXISTING, tokenRef, withStore, type Command, type CommandContext } from '../command.ts';
import { json, tradesTable } from '../output.ts';

function oneOf<T extends string>(ctx: CommandContext, command: string, flag: string, allowed: readonly T[]): T {
  const value = ctx.values[flag];
  if (typeof value !== 'string') {
    throw new ValidationError('USAGE', `missing --${flag}`, { hint: `pass --${flag} ${allowed.join('|').toLowerCase()}` });
  }
  const upper = value.toUpperCase().replace(/-/g, '_') as T;
  if (!allowed.includes(upper)) {
    throw new ValidationError('USAGE', `--${flag} must be one of ${allowed.join(', ').toLowerCase()}, got "${value}"`, {
      hint: `see botstate ${command} --help`,
    });
  }
  return upper;
}

function required(ctx: CommandContext, flag: string): string {
  const value = ctx.values[flag];
  if (typeof value !== 'string') throw new ValidationError('USAGE', `missing --${flag}`, { hint: 'see botstate record --help' });
  return value;
}

/** An amount flag, checked here so that a refusal names the flag (the ledger checks it again). */
function amount(ctx: CommandContext, flag: string, positive: boolean): string {
  const value = parseDecimal(required(ctx, flag), { field: `--${flag}` });
  if (positive && cmp(value, '0') <= 0) {
    throw new ValidationError('INVALID_AMOUNT', `--${flag} must be greater than 0, got ${value}`, { hint: 'a trade moves a positive amount of tokens' });
  }
  return value;
}

function optional(ctx: CommandContext, flag: string): string | undefined {
  const value = ctx.values[flag];
  return typeof value === 'string' ? value : undefined;
}

const trades: Command = {
  name: 'trades',
  summary: "list a job's trades",
  usage: '<token> [--chain C] [--status pending|executed|failed]',
  options: { ...CHAIN_OPTION, status: { type: 'string', value: 'S', help: 'only trades in this status' } },
  positionals: [1, 1],
  async run(ctx) {
    const ref = tokenRef(ctx);
    const filter = ctx.values['status'] === undefined ? {} : { status: oneOf(ctx, 'trades', 'status', Object.values(TradeStatus)) };
    const list = await withStore(ctx, EXISTING, (store) => store.ledger.trades(ref, filter));
    ctx.io.out(ctx.json ? json(list) : tradesTable(list));
  },
};

const record: Command = {
  name: 'record',
  summary: 'record an executed trade by hand (idempotent on --client-order-id)',
  usage: '<token> --side buy|sell --reason R --base N --quote N --price N --client-order-id ID [--chain C] [--tx-hash H] [--exchange-order-id E]',
  details:
    'Updates the job\'s tokenBalance, totalAccumulated and lastDcaBuyTime in the same transaction.\n' +
    'Recording the same --client-order-id again with the same details changes nothing.\n' +
    `Reasons: ${Object.values(TradeReason).join(', ').toLowerCase()}.`,
  options: {
    ...CHAIN_OPTION,
    side: { type: 'string', value: 'SIDE', help: 'buy or sell' },
    reason: { type: 'string', value: 'R', help: 'dca, dip_buy, take_profit, rebalance, support_buy or liquidate' },
    base: { type: 'string', value: 'N', help: 'token amount (exact decimal, up to 18 decimals)' },
    quote: { type: 'string', value: 'N', help: 'quote amount paid or received' },
    price: { type: 'string', value: 'N', help: 'price in USD' },
    'client-order-id': { type: 'string', value: 'ID', help: 'the order id shared with the exchange; unique' },
    'tx-hash': { type: 'string', value: 'H', help: 'on-chain transaction hash' },
    'exchange-order-id': { type: 'string', value: 'E', help: "the exchange's own order id" },
  },
  positionals: [1, 1],
  async run(ctx) {
    const ref = tokenRef(ctx);
    const side = oneOf(ctx, 'record', 'side', Object.values(TradeSide));
    const reason = oneOf(ctx, 'record', 'reason', Object.values(TradeReason));
    const txHash = optional(ctx, 'tx-hash');
    const exchangeOrderId = optional(ctx, 'exchange-order-id');
    const input = {
      job: ref,
      side,
      reason,
      clientOrderId: required(ctx, 'client-order-id'),
      baseAmount: amount(ctx, 'base', true),
      quoteAmount: amount(ctx, 'quote', false),
      priceUsd: amount(ctx, 'price', false),
      ...(txHash !== undefined ? { txHash } : {}),
      ...(exchangeOrderId !== undefined ? { exchangeOrderId } : {}),
    };
    checkRecordInput(input); // before a database is opened or migrated
    const result = await withStore(ctx, EXISTING, (store) => store.ledger.recordTrade(input));
    if (ctx.json) {
      ctx.io.out(json({ duplicate: result.duplicate, trade: result.trade, tokenBalance: result.job.tokenBalance, totalAccumulated: result.job.totalAccumulated }));
      return;
    }
    const t = result.trade;
    const what = result.duplicate ? 'Already recorded' : 'Recorded';
    ctx.io.out(`${what} ${t.side} ${t.baseAmount} (${t.reason}, ${t.clientOrderId}); tokenBalance ${result.job.tokenBalance}, totalAccumulated ${result.job.totalAccumulated}\n`);
  },
};

export const tradeCommands: readonly Command[] = [trades, record];
