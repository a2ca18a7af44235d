/**
 * `botstate daemon` (the real binary: run `npm run build` first) asked to stop while it starts:
 * a first SIGTERM or SIGINT at any point of its start-up (while the CLI loads, while it opens,
 * migrates or registers, waiting for a lock another session holds, or once it has printed its
 * first line) stops it cleanly: exit 0, one line saying so (or the usual stop's lines once it
 * runs), nothing on stderr, and no registration left behind (none, or one marked stopped). Only a
 * second signal ends it at once (143 for SIGTERM), as docs/daemon.md says.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { startPaperExchange, type PaperExchangeHandle } from '../../src/engine/exchanges/paper-server.ts';
import { LATEST_VERSION } from '../../src/store/migrations/index.ts';
import { ENGINES, lockTable, TOKEN, tokenAddress, type Fixture } from '../helpers/engines.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const BIN = join(ROOT, 'bin', 'botstate.js');
const STARTUP_LINE = (signal: string) => `${signal} during start-up: stopped before the daemon started`;
/** /proc/<pid>/status says which signals a process catches (Linux). */
const PROC = existsSync(`/proc/${process.pid}/status`);

interface Run {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }>;
  lines(): string[];
}

function daemon(args: readonly string[]): Run {
  const env = { ...process.env };
  delete env['BOTSTATE_DB'];
  const t0 = performance.now();
  const child = spawn(process.execPath, [BIN, 'daemon', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; ms: number }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, ms: performance.now() - t0 })),
  );
  running.push(child);
  return { child, exited, lines: () => stdout.split('\n').filter((l) => l !== '') };
}

const running: ChildProcess[] = [];

async function waitFor<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

/**
 * Until the process listens for SIGHUP, which Node does not by default: bin/botstate.js holds
 * the stop signals before the rest of the CLI loads (SIGINT and SIGTERM Node catches from the
 * start, only to end the process, so their bits say nothing).
 */
function listening(pid: number): boolean {
  try {
    const caught = /^SigCgt:\s*([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    return caught !== undefined && (BigInt(`0x${caught}`) & 1n) === 1n;
  } catch {
    return false;
  }
}

for (const engine of ENGINES) {
  describe(`botstate daemon stopped while it starts [${engine.name}]`, { skip: engine.skip, timeout: 60_000 }, () => {
    let fx: Fixture;
    let ex: PaperExchangeHandle;
    let scratch: string;
    before(async () => {
      assert.ok(existsSync(join(ROOT, 'dist', 'cli', 'main.js')), 'dist/cli/main.js is missing: run `npm run build` first');
      scratch = mkdtempSync(join(tmpdir(), 'botstate-start-signals-'));
      ex = await startPaperExchange({ port: 0, dataFile: join(scratch, 'paper.db'), volatility: '0', startPriceSpread: '0' });
    });
    after(async () => {
      await ex.close();
      rmSync(scratch, { recursive: true, force: true });
    });
    beforeEach(async () => {
      fx = await engine.create();
      const store = await fx.open();
      await store.jobs.start({ tokenAddress: TOKEN, set: ['accumulate.dcaIntervalHours=0.0001'] });
      await store.close();
    });
    afterEach(async () => {
      for (const child of running.splice(0)) {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      await fx.cleanup();
    });

    const args = () => ['--db', fx.url, '--exchange', ex.url, '--tick', '50', '--lease-ttl', '60000'];
    /** No daemon left registered: none, or every one marked stopped, and no lease held. */
    const nothingLeftRunning = async (): Promise<void> => {
      assert.deepEqual(await fx.raw('SELECT id FROM daemon_instances WHERE stopped_at IS NULL'), []);
      assert.deepEqual(await fx.raw("SELECT job_id FROM job_leases WHERE owner <> ''"), []);
    };
    /** `said`: the lines printed before the stop's. */
    const stoppedWhileStarting = (r: Awaited<Run['exited']>, signal: string, said = ''): void => {
      assert.deepEqual([r.code, r.signal, r.stderr], [0, null, ''], r.stdout);
      assert.equal(r.stdout, `${said}${STARTUP_LINE(signal)}\n`);
    };

    it('a SIGTERM as soon as the CLI listens, while it loads: exit 0, one line, nothing registered', { skip: !PROC && 'no /proc' }, async () => {
      for (let i = 0; i < 2; i++) {
        const d = daemon(args());
        await waitFor('the CLI to listen for signals', () => listening(d.child.pid!));
        d.child.kill('SIGTERM');
        stoppedWhileStarting(await d.exited, 'SIGTERM');
      }
      await nothingLeftRunning();
    });

    it('a SIGTERM after its first line: the usual clean stop, exit 0, its registration marked stopped', async () => {
      const d = daemon(args());
      await waitFor('its first line', () => d.lines().length > 0);
      assert.match(d.lines()[0]!, /^daemon \S+ on /);
      d.child.kill('SIGTERM');
      const r = await d.exited;
      assert.deepEqual([r.code, r.signal, r.stderr], [0, null, ''], r.stdout);
      assert.ok(d.lines().includes('SIGTERM: finishing the step in flight… (a second signal stops it at once, as kill -9 would)'), r.stdout);
      assert.equal(d.lines().at(-1), 'stopped cleanly');
      assert.equal((await fx.raw('SELECT count(*) AS n FROM daemon_instances'))[0]!['n']?.toString(), '1');
      await nothingLeftRunning();
    });

    // Once it said "stopped cleanly" it closes its database (a PostgreSQL pool takes a few
    // milliseconds), then Node exits, closing its signal listeners as it tears down: a signal then
    // would have Node's default (143) but for the CLI ending the process itself (exitsOnSignal).
    // Signals every 2 ms from the line on land in every part of that.
    it('SIGTERMs once it said "stopped cleanly" (closing its database, exiting) still exit 0, not 143', async () => {
      for (let i = 0; i < 5; i++) {
        const d = daemon(args());
        await waitFor('its first line', () => d.lines().length > 0);
        let again: NodeJS.Timeout | undefined;
        // From the stream's own event, as soon as the line is read.
        d.child.stdout!.on('data', (chunk: string) => {
          if (again === undefined && chunk.includes('stopped cleanly')) {
            d.child.kill('SIGTERM');
            again = setInterval(() => d.child.exitCode === null && d.child.signalCode === null && d.child.kill('SIGTERM'), 2);
          }
        });
        d.child.kill('SIGTERM');
        const r = await d.exited.finally(() => clearInterval(again));
        assert.deepEqual([r.code, r.signal, r.stderr], [0, null, ''], r.stdout);
        assert.equal(d.lines().at(-1), 'stopped cleanly');
      }
      await nothingLeftRunning();
    });

    it('stopped while its stdout is a pipe read slowly: everything it printed arrives, "stopped cleanly" last', { skip: engine.name !== 'sqlite' && 'the same on every engine' }, async () => {
      // Jobs on a chain the paper exchange does not trade: each step fails, a line each, at every
      // 10 ms tick: far more than a pipe holds, so its writes wait in the daemon's memory.
      const store = await fx.open();
      // (100 of them: on a loaded machine the ticks come late, and 60 printed under 160 KB in 4 s.)
      for (let i = 1; i <= 100; i++) await store.jobs.start({ tokenAddress: tokenAddress(100 + i), chain: 'arbitrum', tokenSymbol: `W${i}` });
      await store.close();
      const env = { ...process.env };
      delete env['BOTSTATE_DB'];
      const child = spawn(process.execPath, [BIN, 'daemon', '--db', fx.url, '--exchange', ex.url, '--tick', '10', '--lease-ttl', '60000', '--max-failures', '1000'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      running.push(child);
      // Not read for now: the pipe fills up.
      const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
      let stderr = '';
      child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      await sleep(5000);
      child.kill('SIGTERM');
      await sleep(1500);
      let stdout = '';
      child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      const exit = await closed;
      assert.deepEqual([exit.code, exit.signal, stderr], [0, null, '']);
      const lines = stdout.split('\n').filter((l) => l !== '');
      // More than the pipe (64 KiB) and this process's buffer of it (64 KiB) hold: the rest waited in the daemon.
      assert.ok(stdout.length > 150_000, `only ${stdout.length} bytes arrived: the pipe and its reader's buffer hold 128 KiB`);
      assert.equal(lines.at(-1), 'stopped cleanly', `the last of ${lines.length} lines: ${lines.at(-1)}`);
      await nothingLeftRunning();
    });

    it('a SIGTERM 0.3 to 0.75 s after launch, wherever the start-up is then: exit 0 and a clean stop, never 143', async () => {
      for (const ms of [300, 500, 750]) {
        const t0 = performance.now();
        const d = daemon(args());
        // Not before bin/botstate.js holds the signals: before that, Node's own default ends the
        // process (143, a known limit), and a loaded machine can take more than 300 ms to get there.
        if (PROC) await waitFor('the CLI to listen for signals', () => listening(d.child.pid!));
        await sleep(Math.max(0, ms - (performance.now() - t0)));
        d.child.kill('SIGTERM');
        const r = await d.exited;
        assert.deepEqual([r.code, r.signal, r.stderr], [0, null, ''], `SIGTERM after ${ms} ms: ${r.stdout}`);
        const last = d.lines().at(-1);
        assert.ok(last === STARTUP_LINE('SIGTERM') || last === 'stopped cleanly', `SIGTERM after ${ms} ms: ${r.stdout}`);
        await nothingLeftRunning();
      }
    });

    /**
     * Another session holds what registering needs (SQLite's write lock; on PostgreSQL the table
     * of daemon instances): `waiting` tells when the daemon waits for it (SQLite: <db>-wait).
     */
    const holdRegistration = async (): Promise<{ release: () => Promise<void>; waiting: () => Promise<boolean> | boolean }> => {
      if (fx.engine === 'sqlite') {
        const holder = new Database(fx.url);
        holder.prepare('BEGIN IMMEDIATE').run();
        return {
          release: async () => {
            if (holder.inTransaction) holder.prepare('ROLLBACK').run();
            holder.close();
          },
          waiting: () => existsSync(`${fx.url}-wait`),
        };
      }
      const release = await lockTable(fx, 'daemon_instances');
      return { release, waiting: () => lockAwaited('daemon_instances') };
    };
    /** Some session waits for a lock on `table` of the fixture's schema. */
    const lockAwaited = async (table: string): Promise<boolean> =>
      (await fx.raw(
        `SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT l.granted AND n.nspname = $1 AND c.relname = $2`,
        [new URL(fx.url).searchParams.get('schema')!, table],
      )).length > 0;

    it('a SIGINT while registering waits for a lock another session holds: exit 0 within a second or two, no registration left', async () => {
      const { release, waiting } = await holdRegistration();
      try {
        const d = daemon(args());
        await waitFor('the daemon to wait for the lock', waiting);
        const sent = performance.now();
        d.child.kill('SIGINT');
        const r = await d.exited;
        stoppedWhileStarting(r, 'SIGINT');
        assert.ok(performance.now() - sent < 4000, `it took ${Math.round(performance.now() - sent)} ms to stop`);
      } finally {
        await release();
      }
      assert.deepEqual(await fx.raw('SELECT id FROM daemon_instances'), [], 'the registration that waited was not committed');
    });

    if (engine.name === 'postgres') {
      it('a SIGTERM while its migration waits for a lock: exit 0, the migration step rolled back', async () => {
        const store = await fx.open({ schema: 'none' });
        // Migration 7 puts a trigger on the audit log, which waits for this lock.
        await store.rollback({ to: 6 });
        await store.close();
        const release = await lockTable(fx, 'audit_log');
        try {
          const d = daemon(args());
          await waitFor('the migration to wait for the lock', () => lockAwaited('audit_log'));
          d.child.kill('SIGTERM');
          // Said as its first step began (under the migration lock), then stopped in that step.
          stoppedWhileStarting(await d.exited, 'SIGTERM', `migrating the database from schema version 6 to ${LATEST_VERSION}…\n`);
        } finally {
          await release();
        }
        assert.deepEqual(await fx.raw('SELECT max(version) AS v FROM schema_migrations'), [{ v: 6 }]);
        assert.deepEqual(await fx.raw('SELECT id FROM daemon_instances'), []);
      });
    }

    it('a second SIGTERM while it stops ends it at once (143), leaving no registration', async () => {
      const { release, waiting } = await holdRegistration();
      try {
        const d = daemon(args());
        await waitFor('the daemon to wait for the lock', waiting);
        d.child.kill('SIGTERM');
        // The registration still waits for the lock: the first signal gives it a second.
        await sleep(200);
        d.child.kill('SIGTERM');
        const r = await d.exited;
        assert.deepEqual([r.code, r.signal], [null, 'SIGTERM'], r.stdout + r.stderr);
      } finally {
        await release();
      }
      assert.deepEqual(await fx.raw('SELECT id FROM daemon_instances'), []);
    });
  });
}
