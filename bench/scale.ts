/**
 * `npm run bench:scale [-- [--trades N] [--jobs J] [--rounds R]]`
 *
 * Reads on a large SQLite database: one job with N trades (default 200,000, each recorded through
 * the library, so every audit entry is real and chained) among J jobs (default 1,000, one trade
 * each). Each read runs in a child process of its own, R times (default 5), and reports the
 * median and the slowest wall time and the child's peak resident memory; the raw driver doing the
 * same reads (the same SQL, none of botstate's checks, hashing or objects) runs beside it in the
 * same way. Prints Markdown (stdout) and progress (stderr).
 *
 * Not a test: nothing here fails a build.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { openStore, type Store } from '../src/store/store.ts';
import { median } from './stats.ts';

const { values: args } = parseArgs({
  options: {
    trades: { type: 'string', default: '200000' },
    jobs: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '5' },
    child: { type: 'string' },
    db: { type: 'string' },
  },
  strict: true,
});

const BIG = `0x${'1'.padStart(40, '0')}`;

/** What each read does, in a child: botstate's call, and the raw driver's same SQL. */
const READS: Record<string, { botstate: (db: string) => Promise<number>; raw: (db: string) => Promise<number> }> = {
  'verify (the whole audit log)': {
    botstate: (db) => reading(db, async (store) => (await store.verifyAudit()).entries),
    // The floor: every row read and hashed once, nothing kept.
    raw: async (db) => {
      const { default: Database } = await import('better-sqlite3');
      const { hash } = await import('node:crypto');
      const d = new Database(db, { readonly: true });
      let n = 0;
      for (const row of d.prepare('SELECT * FROM audit_log ORDER BY stream, seq').iterate() as Iterable<Record<string, unknown>>) {
        hash('sha256', `${String(row['stream'])}${String(row['before'])}${String(row['after'])}${String(row['prev_hash'])}`, 'hex');
        n++;
      }
      d.close();
      return n;
    },
  },
  'trades --limit 100 (the big job)': {
    botstate: (db) => reading(db, async (store) => (await store.ledger.trades({ tokenAddress: BIG }, { limit: 100 })).length),
    raw: async (db) => rawAll(db, 'SELECT * FROM trades WHERE job_id = (SELECT id FROM jobs WHERE token_address = ?) ORDER BY created_at DESC, id DESC LIMIT 100', [BIG]),
  },
  'history --limit 100 (the big job)': {
    botstate: (db) => reading(db, async (store) => (await store.history({ tokenAddress: BIG }, { limit: 100 })).length),
    raw: async (db) => rawAll(db, "SELECT * FROM audit_log WHERE stream = 'job:' || (SELECT id FROM jobs WHERE token_address = ?) ORDER BY seq DESC LIMIT 100", [BIG]),
  },
  'open orders (status; the big job)': {
    botstate: (db) => reading(db, async (store) => 1 + (await store.ledger.trades({ tokenAddress: BIG }, { status: 'PENDING' })).length),
    raw: async (db) => 1 + (await rawAll(db, "SELECT * FROM trades INDEXED BY trades_pending WHERE job_id = (SELECT id FROM jobs WHERE token_address = ?) AND status = 'PENDING' ORDER BY created_at, id", [BIG])),
  },
  'every trade of the big job': {
    botstate: (db) => reading(db, async (store) => (await store.ledger.trades({ tokenAddress: BIG })).length),
    raw: async (db) => rawAll(db, 'SELECT * FROM trades WHERE job_id = (SELECT id FROM jobs WHERE token_address = ?) ORDER BY created_at, id', [BIG]),
  },
};

/** botstate's side of a read: a store opened for it (read-only), as a command opens one. */
async function reading(db: string, read: (store: Store) => Promise<number>): Promise<number> {
  const store = await openStore(db, { readOnly: true });
  try {
    return await read(store);
  } finally {
    await store.close();
  }
}

async function rawAll(db: string, sql: string, params: unknown[]): Promise<number> {
  const { default: Database } = await import('better-sqlite3');
  const d = new Database(db, { readonly: true });
  const n = d.prepare(sql).all(...params).length;
  d.close();
  return n;
}

if (args.child !== undefined) {
  // In a child: one read, then its wall time and this process's peak memory on stdout.
  const [name, side] = JSON.parse(args.child) as [string, 'botstate' | 'raw'];
  const t0 = performance.now();
  const rows = await READS[name]![side](args.db!);
  const ms = performance.now() - t0;
  process.stdout.write(JSON.stringify({ ms, rows, maxRssKb: process.resourceUsage().maxRSS }));
  process.exit(0);
}

const trades = Number(args.trades);
const jobs = Number(args.jobs);
const rounds = Number(args.rounds);
const dir = mkdtempSync(join(tmpdir(), 'botstate-scale-'));
const db = join(dir, 'scale.db');
try {
  process.stderr.write(`building ${jobs} jobs, one of them with ${trades} trades…\n`);
  const t0 = performance.now();
  const store = await openStore(db);
  const big = await store.jobs.start({ tokenAddress: BIG, tokenSymbol: 'BIG' });
  await store.transaction(async () => {
    for (let j = 2; j <= jobs; j++) {
      const job = await store.jobs.start({ tokenAddress: `0x${j.toString(16).padStart(40, '0')}` });
      await store.ledger.recordTrade({ job: { id: job.id }, clientOrderId: `small-${j}`, side: 'BUY', reason: 'DCA', baseAmount: '2', quoteAmount: '3', priceUsd: '1.5' });
    }
  });
  for (let start = 0; start < trades; start += 2000) {
    await store.transaction(async () => {
      for (let i = start; i < Math.min(start + 2000, trades); i++) {
        const sell = i % 3 === 2;
        await store.ledger.recordTrade({
          job: { id: big.id },
          clientOrderId: `big-${i}`,
          side: sell ? 'SELL' : 'BUY',
          reason: sell ? 'TAKE_PROFIT' : 'DCA',
          baseAmount: sell ? '1' : '1.000000000000000001',
          quoteAmount: '2.25',
          priceUsd: '1.5',
        });
      }
    });
    if (start % 50_000 === 0) process.stderr.write(`  ${start} trades\n`);
  }
  await store.close();
  process.stderr.write(`built in ${((performance.now() - t0) / 1000).toFixed(0)} s\n`);

  const self = fileURLToPath(import.meta.url);
  const run = (name: string, side: 'botstate' | 'raw') =>
    JSON.parse(execFileSync(process.execPath, [self, '--child', JSON.stringify([name, side]), '--db', db], { encoding: 'utf8', maxBuffer: 1 << 20 })) as { ms: number; rows: number; maxRssKb: number };
  const lines: string[] = [];
  for (const name of Object.keys(READS)) {
    process.stderr.write(`${name}…\n`);
    const b: Array<{ ms: number; maxRssKb: number }> = [];
    const r: Array<{ ms: number; maxRssKb: number }> = [];
    // Alternating, so that noise hits both alike.
    for (let i = 0; i < rounds; i++) {
      b.push(run(name, 'botstate'));
      r.push(run(name, 'raw'));
    }
    const ms = (xs: Array<{ ms: number }>) => median(xs.map((x) => x.ms));
    const worst = (xs: Array<{ ms: number }>) => Math.max(...xs.map((x) => x.ms));
    const rss = (xs: Array<{ maxRssKb: number }>) => Math.max(...xs.map((x) => x.maxRssKb)) / 1024;
    lines.push(`| ${name} | ${ms(b).toFixed(0)} ms (max ${worst(b).toFixed(0)}) | ${rss(b).toFixed(0)} MB | ${ms(r).toFixed(0)} ms (max ${worst(r).toFixed(0)}) | ${rss(r).toFixed(0)} MB | ${(ms(b) / ms(r)).toFixed(1)}× |`);
  }
  process.stdout.write(`### Reads on a large SQLite database: ${jobs} jobs, one with ${trades} trades (${rounds} rounds, each read in a fresh process)\n\n`);
  process.stdout.write('| read | botstate: wall (median) | botstate: peak RSS | raw driver: wall (median) | raw: peak RSS | ratio |\n|---|---|---|---|---|---|\n');
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
