import { ValidationError } from '../errors.ts';
import { isIsoTime } from '../util/time.ts';
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

/** `--FLAG T`: a UTC time, seconds and milliseconds optional (`2026-11-26T12:00Z`), as botstate stores times. */
export function timeFlag(ctx: CommandContext, flag: string): string | undefined {
  const value = ctx.values[flag];
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,3}))?)?Z$/.exec(value);
  const at = m ? `${m[1]}T${m[2]}:${m[3]}:${m[4] ?? '00'}.${(m[5] ?? '').padEnd(3, '0')}Z` : undefined;
  if (at === undefined || !isIsoTime(at)) {
    throw new ValidationError('USAGE', `--${flag} ${JSON.stringify(value)} is not a UTC time`, {
      hint: `write it as history shows times, e.g. --${flag} 2026-11-26T12:00:00Z; seconds and milliseconds may be left out`,
    });
  }
  return at;
}

/** The options of a listing (trades, history): rows since a time, and only the last N. */
export const WINDOW_OPTIONS = {
  since: { type: 'string', value: 'T', help: 'only rows from this UTC time on (a trade by its createdAt: when its order was decided, or for one recorded by hand its --executed-at; an entry by the time it was written), e.g. 2026-11-26T12:00Z' },
  limit: { type: 'string', value: 'N', help: 'only the last N rows (the most recent), still listed oldest first' },
} as const;

/** --since and --limit, checked. */
export function windowOf(ctx: CommandContext): { since?: string; limit?: number } {
  const since = timeFlag(ctx, 'since');
  const raw = ctx.values['limit'];
  let limit: number | undefined;
  if (typeof raw === 'string') {
    limit = /^[1-9][0-9]{0,8}$/.test(raw) ? Number(raw) : undefined;
    if (limit === undefined) throw new ValidationError('USAGE', `--limit must be a whole number from 1 to 999999999, got ${JSON.stringify(raw)}`, { hint: 'e.g. --limit 100' });
  }
  return { ...(since !== undefined ? { since } : {}), ...(limit !== undefined ? { limit } : {}) };
}

/** A flag's value among `allowed`, in any case (`-` read as `_`); refused when missing or not one of them. */
export function oneOf<T extends string>(ctx: CommandContext, command: string, flag: string, allowed: readonly T[]): T {
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
