/**
 * Runs botstate and the raw driver in alternating blocks, so that whatever else the machine is
 * doing (2 noisy cores) hits both sides alike, and collects one latency sample per operation.
 */
import { median, summarize, type Summary } from './stats.ts';

/** One way of doing an operation: botstate's API, or the raw driver doing the same SQL. */
export interface Impl {
  readonly label: string;
  /** Whether `run` returns a promise to await (botstate) or finishes synchronously (better-sqlite3). */
  readonly async: boolean;
  /**
   * Builds the inputs of operations `start … start + count - 1` (client order ids, amounts),
   * outside the timed region.
   */
  prepare(start: number, count: number): void;
  /** Performs operation `i` (prepared before). */
  run(i: number): unknown;
}

export interface Case {
  /** For example `sqlite/process/recordTrade`. */
  readonly id: string;
  readonly engine: 'sqlite' | 'postgres';
  readonly durability: 'process' | 'power';
  readonly op: 'recordTrade' | 'transition';
  readonly botstate: Impl;
  readonly raw: Impl;
}

export interface Plan {
  /** Operations per side before measuring (JIT, statement caches, page cache). */
  readonly warmup: number;
  /** Measured operations per side. */
  readonly iterations: number;
  /** Operations per block; botstate and raw alternate block by block. */
  readonly block: number;
}

export interface SideResult {
  readonly summary: Summary;
  /** Process CPU time (user + system) per measured operation, in ns: what the client side costs. */
  readonly cpuPerOp: number;
  /** p50 and p99 of each round, in order, for the per-round ratios. */
  readonly roundP50: readonly number[];
  readonly roundP99: readonly number[];
}

export interface CaseResult {
  readonly case: Case;
  readonly botstate: SideResult;
  readonly raw: SideResult;
  /**
   * Median over rounds of botstate p50 / raw p50 (and p99 / p99) within the same round: a rare
   * burst of outside noise moves one round, not the median.
   */
  readonly roundRatioP50: number;
  readonly roundRatioP99: number;
}

class Side {
  readonly impl: Impl;
  readonly samples: Float64Array;
  readonly roundP50: number[] = [];
  readonly roundP99: number[] = [];
  /** Index of the next operation (warm-up included), so that every operation gets fresh inputs. */
  next = 0;
  /** Samples recorded so far. */
  filled = 0;
  /** CPU microseconds spent in measured blocks. */
  cpu = 0;

  constructor(impl: Impl, iterations: number) {
    this.impl = impl;
    this.samples = new Float64Array(iterations);
  }
}

/** Times `count` operations of `impl`, writing samples from `out[at]`; or only runs them when `out` is undefined. */
async function block(impl: Impl, first: number, count: number, out: Float64Array | undefined, at: number): Promise<void> {
  impl.prepare(first, count);
  if (impl.async) {
    for (let k = 0; k < count; k++) {
      const t0 = process.hrtime.bigint();
      await impl.run(first + k);
      const t1 = process.hrtime.bigint();
      if (out) out[at + k] = Number(t1 - t0);
    }
  } else {
    for (let k = 0; k < count; k++) {
      const t0 = process.hrtime.bigint();
      impl.run(first + k);
      const t1 = process.hrtime.bigint();
      if (out) out[at + k] = Number(t1 - t0);
    }
  }
}

export interface Progress {
  (text: string): void;
}

/**
 * Runs several cases together, round by round: in each round every case runs one block of
 * botstate and one block of raw, the order flipped from one round to the next (ABBA).
 */
export async function runInterleaved(
  cases: readonly Case[],
  plan: Plan,
  progress: Progress,
  shouldStop: () => boolean,
): Promise<CaseResult[]> {
  const sides = cases.map((c) => ({ c, bs: new Side(c.botstate, plan.iterations), raw: new Side(c.raw, plan.iterations) }));

  const warmRounds = Math.max(1, Math.ceil(plan.warmup / plan.block));
  for (let r = 0; r < warmRounds; r++) {
    for (const s of sides) {
      const n = Math.min(plan.block, plan.warmup - r * plan.block);
      if (n <= 0) continue;
      for (const side of r % 2 === 0 ? [s.bs, s.raw] : [s.raw, s.bs]) {
        await block(side.impl, side.next, n, undefined, 0);
        side.next += n;
      }
    }
    if (shouldStop()) throw new Error('interrupted');
  }

  const rounds = Math.ceil(plan.iterations / plan.block);
  for (let r = 0; r < rounds; r++) {
    for (const s of sides) {
      const n = Math.min(plan.block, plan.iterations - r * plan.block);
      for (const side of r % 2 === 0 ? [s.bs, s.raw] : [s.raw, s.bs]) {
        const cpu = process.cpuUsage();
        await block(side.impl, side.next, n, side.samples, side.filled);
        const used = process.cpuUsage(cpu);
        side.cpu += used.user + used.system;
        const round = summarize(side.samples.subarray(side.filled, side.filled + n));
        side.roundP50.push(round.p50);
        side.roundP99.push(round.p99);
        side.next += n;
        side.filled += n;
      }
    }
    progress(`round ${r + 1}/${rounds}`);
    if (shouldStop()) throw new Error('interrupted');
  }

  return sides.map(({ c, bs, raw }) => ({
    case: c,
    botstate: { summary: summarize(bs.samples), roundP50: bs.roundP50, roundP99: bs.roundP99, cpuPerOp: (bs.cpu * 1000) / bs.filled },
    raw: { summary: summarize(raw.samples), roundP50: raw.roundP50, roundP99: raw.roundP99, cpuPerOp: (raw.cpu * 1000) / raw.filled },
    roundRatioP50: median(bs.roundP50.map((v, i) => v / raw.roundP50[i]!)),
    roundRatioP99: median(bs.roundP99.map((v, i) => v / raw.roundP99[i]!)),
  }));
}
