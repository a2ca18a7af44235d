import { ValidationError } from '../../errors.ts';
import { parseDecimal } from '../../money/decimal.ts';
import { fetchBlocksPort } from '../../engine/exchanges/http-exchange.ts';
import { PAPER_DEFAULTS, startPaperExchange } from '../../engine/exchanges/paper-server.ts';
import { untilSignal } from '../signals.ts';
import type { Command, CommandContext } from '../command.ts';

function text(ctx: CommandContext, flag: string): string | undefined {
  const v = ctx.values[flag];
  return typeof v === 'string' ? v : undefined;
}

function integer(ctx: CommandContext, flag: string, fallback: number, lo: number, hi: number): number {
  const v = text(ctx, flag);
  if (v === undefined) return fallback;
  if (!/^[0-9]+$/.test(v) || Number(v) < lo || Number(v) > hi) {
    throw new ValidationError('USAGE', `--${flag} must be a whole number from ${lo} to ${hi}, got "${v}"`, { hint: 'see botstate paper-exchange --help' });
  }
  return Number(v);
}

/** A probability, not money: a plain number from 0 to 1. */
function rate(ctx: CommandContext, flag: string): number {
  const v = text(ctx, flag);
  if (v === undefined) return 0;
  if (!/^(?:0(?:\.[0-9]+)?|1(?:\.0+)?)$/.test(v)) {
    throw new ValidationError('USAGE', `--${flag} must be a number from 0 to 1 such as 0.05, got "${v}"`, { hint: 'see botstate paper-exchange --help' });
  }
  return Number(v);
}

function decimal(ctx: CommandContext, flag: string, fallback: string): string {
  const v = text(ctx, flag);
  return v === undefined ? fallback : parseDecimal(v, { field: `--${flag}` });
}

/** The library's option names, as the flags that set them. */
const FLAG_OF: Record<string, string> = {
  volatility: '--volatility', chain: '--chain', startPrice: '--start-price', startPriceSpread: '--start-spread', initialUsd: '--initial-usd', stepMs: '--step-ms', dataFile: '--data',
};

/** A refusal of the exchange's options, reworded to name the flag the user typed. */
function asFlagError(e: unknown): unknown {
  if (!(e instanceof ValidationError)) return e;
  const m = /^(\w+)( .*)$/s.exec(e.message);
  const flag = m && FLAG_OF[m[1]!];
  return flag ? new ValidationError(e.code, `${flag}${m[2]}`, { ...(e.hint ? { hint: e.hint } : {}), cause: e }) : e;
}

/** `botstate paper-exchange`: runs the paper exchange in the foreground until SIGINT, SIGTERM or SIGHUP. */
export const paperExchangeCommand: Command = {
  name: 'paper-exchange',
  summary: 'run a local paper exchange (127.0.0.1 only) with deterministic prices, for the daemon and tests',
  usage:
    '[--port N] [--data FILE] [--seed S] [--volatility V] [--step-ms MS] [--start-price P] [--start-spread F] ' +
    '[--initial-usd N] [--chain NAME] [--latency MS] [--error-rate R] [--drop-rate R] [--late-rate R]',
  details:
    'Prints one line, "paper exchange listening on http://127.0.0.1:PORT", then serves until SIGINT,\n' +
    'SIGTERM or SIGHUP, closes its data file and exits 0. Orders and balances live in --data and survive restarts;\n' +
    'the price paths continue from the epoch stored there. Endpoints and fault injection: docs/paper-exchange.md.\n' +
    '--db is refused here (the exchange keeps its own file: --data); --json changes nothing.',
  options: {
    port: { type: 'string', value: 'N', help: `TCP port on 127.0.0.1, 0 for a free one (default ${PAPER_DEFAULTS.port}); not one fetch blocks, such as 6000` },
    data: { type: 'string', value: 'FILE', help: `the exchange's SQLite file (default ${PAPER_DEFAULTS.dataFile})` },
    seed: { type: 'string', value: 'S', help: `seed of the price paths and of the fault decisions (default ${PAPER_DEFAULTS.seed})` },
    volatility: { type: 'string', value: 'V', help: `one step's standard move, 0.01 = 1 %, 0 = flat (default ${PAPER_DEFAULTS.volatility})` },
    'step-ms': { type: 'string', value: 'MS', help: `milliseconds per price step (default ${PAPER_DEFAULTS.stepMs})` },
    'start-price': { type: 'string', value: 'P', help: `base start price in USD (default ${PAPER_DEFAULTS.startPrice})` },
    'start-spread': { type: 'string', value: 'F', help: `each token starts at start-price × [1 − F, 1 + F), 0 = exactly start-price (default ${PAPER_DEFAULTS.startPriceSpread})` },
    'initial-usd': { type: 'string', value: 'N', help: `USD balance of a new data file (default ${PAPER_DEFAULTS.initialUsd})` },
    chain: { type: 'string', value: 'NAME', help: `the chain it trades on, kept in --data; orders and prices for another are refused (400 WRONG_CHAIN) (default ${PAPER_DEFAULTS.chain})` },
    latency: { type: 'string', value: 'MS', help: 'fault: delay every request by MS (default 0)' },
    'error-rate': { type: 'string', value: 'R', help: 'fault: answer this share (0..1) of requests 503 without acting (default 0)' },
    'drop-rate': { type: 'string', value: 'R', help: 'fault: execute this share (0..1) of orders, then drop the connection unanswered (default 0)' },
    'late-rate': { type: 'string', value: 'R', help: 'fault: answer this share (0..1) of new orders 503, then execute them 50-500 ms later (default 0)' },
  },
  positionals: [0, 0],
  usesDb: false,
  async run(ctx) {
    if (ctx.values['db'] !== undefined) {
      throw new ValidationError('USAGE', "the paper exchange does not use --db: its orders and balances are in its own file", {
        hint: 'give that file with --data FILE',
      });
    }
    const port = integer(ctx, 'port', PAPER_DEFAULTS.port, 0, 65535);
    if (fetchBlocksPort(port)) {
      throw new ValidationError('USAGE', `--port ${port} is a port that fetch refuses to connect to, so no daemon could reach the exchange there`, {
        hint: `pick another port, e.g. the default ${PAPER_DEFAULTS.port}`,
      });
    }
    const seed = text(ctx, 'seed') ?? PAPER_DEFAULTS.seed;
    if (seed === '') throw new ValidationError('USAGE', '--seed must not be empty', { hint: 'see botstate paper-exchange --help' });
    const exchange = await startPaperExchange({
      port,
      dataFile: text(ctx, 'data') ?? PAPER_DEFAULTS.dataFile,
      seed,
      volatility: decimal(ctx, 'volatility', PAPER_DEFAULTS.volatility),
      stepMs: integer(ctx, 'step-ms', PAPER_DEFAULTS.stepMs, 1, 2 ** 31),
      startPrice: decimal(ctx, 'start-price', PAPER_DEFAULTS.startPrice),
      startPriceSpread: decimal(ctx, 'start-spread', PAPER_DEFAULTS.startPriceSpread),
      initialUsd: decimal(ctx, 'initial-usd', PAPER_DEFAULTS.initialUsd),
      latencyMs: integer(ctx, 'latency', 0, 0, 600_000),
      errorRate: rate(ctx, 'error-rate'),
      dropRate: rate(ctx, 'drop-rate'),
      lateRate: rate(ctx, 'late-rate'),
      chain: text(ctx, 'chain') ?? PAPER_DEFAULTS.chain,
    }).catch((e: unknown) => {
      throw asFlagError(e);
    });
    const signal = untilSignal();
    ctx.io.out(`paper exchange listening on ${exchange.url}\n`);
    await signal;
    await exchange.close();
  },
};
