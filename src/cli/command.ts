import { ValidationError } from '../errors.ts';
import { normalizeAddress } from '../jobs/address.ts';
import { normalizeChain, type JobRef } from '../jobs/job-rows.ts';
import type { Store, StoreOptions } from '../store/store.ts';
import type { OptionSpecs, Parsed } from './args.ts';
import type { Io } from './output.ts';

/** What a command gets: its parsed arguments, where to write, and a way to open the store. */
export interface CommandContext {
  readonly values: Parsed['values'];
  readonly positionals: readonly string[];
  readonly io: Io;
  readonly json: boolean;
  /** Opens the store named by --db / $BOTSTATE_DB / ./botstate.db. The caller closes it. */
  open(options?: StoreOptions): Promise<Store>;
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Arguments after the command name, for --help (`<token> [--chain C]`). */
  readonly usage: string;
  /** More lines for --help. */
  readonly details?: string;
  readonly options: OptionSpecs;
  /** How many positional arguments it takes. */
  readonly positionals: readonly [min: number, max: number];
  /** False for a command that uses no database: it refuses --db, and its --help lists neither --db nor --json. */
  readonly usesDb?: false;
  run(ctx: CommandContext): Promise<void>;
}

export const CHAIN_OPTION = {
  chain: { type: 'string', value: 'C', help: 'the chain the token is on (default base)' },
} as const satisfies OptionSpecs;

/** The job named by `<token>` and --chain, validated before the database is opened. */
export function tokenRef(ctx: CommandContext): JobRef {
  const token = ctx.positionals[0];
  if (token === undefined) throw new ValidationError('USAGE', 'missing <token>', { hint: 'pass the token address, e.g. 0xbbd9aDe16525acb4B336b6dAd3b9762901522B07' });
  const chain = ctx.values['chain'];
  return { tokenAddress: normalizeAddress(token), chain: normalizeChain(typeof chain === 'string' ? chain : undefined) };
}

/** Opens the store, runs `fn`, and always closes it. */
export async function withStore<T>(ctx: CommandContext, options: StoreOptions, fn: (store: Store) => Promise<T>): Promise<T> {
  const store = await ctx.open(options);
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/**
 * An existing database at the current schema: neither created nor migrated. Every command but
 * start, daemon and db migrate opens it so, the read-only ones and those that change a job
 * (pause, resume, liquidate, config, record, settle) alike: a typo or a refused command cannot
 * create a database or start a long migration. (start creates and migrates only a new one.)
 */
export const EXISTING: StoreOptions = Object.freeze({ create: false, schema: 'check' });
/** For a command that only reads: a database this user may not write is read as it is. */
export const READING: StoreOptions = Object.freeze({ ...EXISTING, readOnly: true });
