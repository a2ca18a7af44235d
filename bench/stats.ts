/**
 * Percentiles and formatting for the benchmarks. Samples are nanoseconds, measured with
 * process.hrtime.bigint(); percentiles use the nearest-rank method on the sorted samples.
 */

export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  /** Only when there are enough samples for ten of them to lie above it. */
  readonly p999: number | undefined;
  readonly mean: number;
  readonly max: number;
  /** Operations per second of one caller issuing them back to back (1 / mean). */
  readonly opsPerSec: number;
}

/** The nearest-rank percentile `q` (0 < q ≤ 1) of ascending `sorted`. */
export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

export function summarize(samples: Float64Array): Summary {
  const sorted = Float64Array.from(samples).sort();
  let sum = 0;
  for (const s of sorted) sum += s;
  const n = sorted.length;
  const mean = n === 0 ? Number.NaN : sum / n;
  return {
    n,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    p999: n >= 10_000 ? percentile(sorted, 0.999) : undefined,
    mean,
    max: n === 0 ? Number.NaN : sorted[n - 1]!,
    opsPerSec: n === 0 ? Number.NaN : 1e9 / mean,
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** `12.3 µs`, `1.24 ms`. */
export function fmtTime(ns: number | undefined): string {
  if (ns === undefined || Number.isNaN(ns)) return '—';
  const us = ns / 1000;
  if (us < 10) return `${us.toFixed(2)} µs`;
  if (us < 1000) return `${us.toFixed(1)} µs`;
  return `${(us / 1000).toFixed(2)} ms`;
}

export function fmtRatio(r: number): string {
  return Number.isFinite(r) ? `${r.toFixed(2)}×` : '—';
}

export function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '—';
}

export function fmtBytes(bytes: number): string {
  const sign = bytes < 0 ? '-' : '+';
  return `${sign}${(Math.abs(bytes) / 1024 / 1024).toFixed(1)} MiB`;
}

/** A Markdown table, columns padded so that it also reads well in a terminal. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const width = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) => `| ${cells.map((c, i) => c.padEnd(width[i]!)).join(' | ')} |`;
  return [line(header), `|${width.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
