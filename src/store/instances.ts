import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { BotstateError } from '../errors.ts';
import type { Executor } from './adapter.ts';

/** Daemons registered by this process and not yet stopped. */
export const RUNNING_HERE = new Set<string>();

/** A registered daemon instance, as `daemon_instances` holds it. */
export interface InstanceRow {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly heartbeat_at: string;
}

/**
 * Whether a process of that id runs on this host (one of another user's counts). A process
 * killed but not yet reaped by its parent (a zombie) still has its pid, and does not count: a
 * daemon restarted straight after a `kill -9` is not refused because its predecessor's parent
 * has not waited for it yet.
 */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !isZombie(pid);
}

/** Linux: the process's state in /proc is Z (zombie) or X (dead). Elsewhere, or unreadable: false. */
function isZombie(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return false;
  }
  // "pid (comm) S …": comm may hold spaces and parentheses, the state follows the last ')'.
  const state = stat.charAt(stat.lastIndexOf(')') + 2);
  return state === 'Z' || state === 'X';
}

/** A daemon that heartbeated within this long (or its lease TTL, if longer: it heartbeats every third) was heard from lately. */
const DAEMON_HEARTBEAT_WINDOW_MS = 60_000;

type TimedRow = InstanceRow & { lease_ttl_ms?: number | string | null };

/** When a daemon's heartbeat stops counting as lately, at `nowMs` (ISO 8601). */
function staleBefore(row: TimedRow, nowMs: number): string {
  return new Date(nowMs - Math.max(DAEMON_HEARTBEAT_WINDOW_MS, Number(row.lease_ttl_ms ?? 0))).toISOString();
}

/**
 * Whether a daemon not marked stopped may still be running, at `nowMs` (the database's clock on
 * PostgreSQL), for `db rollback`: on this host, while its process exists however long ago it
 * heartbeated (a long tick, a stopped process); on another, while it heartbeated lately.
 */
export function heardFrom(row: TimedRow, nowMs: number): boolean {
  return row.host === hostname() ? processAlive(row) : row.heartbeat_at > staleBefore(row, nowMs);
}

/**
 * Whether a daemon not marked stopped runs now, as an operator reads it (`botstate daemons`):
 * {@link instanceAlive} with a heartbeat heard lately. A stalled process (SIGSTOP, a frozen VM) or
 * a pid reused after a kill -9 is not running, as the next daemon to register takes it to be dead.
 */
export function runsNow(row: TimedRow, nowMs: number): boolean {
  // Judged as the daemons judge each other (they heartbeat every third of their TTL): one silent
  // for longer than its TTL has lost its leases, and another daemon has taken its jobs over. A
  // daemon of an older version recorded no TTL: a minute then.
  const ttl = Number(row.lease_ttl_ms ?? 0);
  return instanceAlive(row, ttl > 0 ? new Date(nowMs - ttl).toISOString() : staleBefore(row, nowMs));
}

/**
 * Whether a registered daemon that has not marked itself stopped is alive: it heartbeated after
 * `staleBefore` (an ISO time) and, on this host, its process still exists (a pid reused by
 * another program after a crash or a reboot does not count for ever).
 */
export function instanceAlive(row: InstanceRow, staleBefore: string): boolean {
  return row.heartbeat_at > staleBefore && (row.host !== hostname() || processAlive(row));
}

/** A daemon's lease TTL unless it is given one (the daemon command's --lease-ttl, the Daemon's leaseTtlMs). */
export const DEFAULT_LEASE_TTL_MS = 15_000;

/**
 * Whether another daemon runs, as a daemon that registers judges it (and a migration up on SQLite,
 * which must not run under one): it heartbeated after `staleBefore` (its lease TTL back) and, on
 * this host, its process exists; or, a daemon of an older version with no TTL on its row, whose
 * process may exist, it holds a lease not yet expired (`holdsLease`, asked only then).
 */
export async function runsForRegistration(row: InstanceRow & { readonly lease_ttl_ms?: number | null }, staleBefore: string, holdsLease: () => Promise<boolean> | boolean): Promise<boolean> {
  if (instanceAlive(row, staleBefore)) return true;
  return (row.lease_ttl_ms === null || row.lease_ttl_ms === undefined) && (row.host !== hostname() || processAlive(row)) && (await holdsLease());
}

/** For a daemon of this host: whether its process exists (in this process, whether it registered here). */
export function processAlive(row: InstanceRow): boolean {
  return row.pid === process.pid ? RUNNING_HERE.has(row.id) : pidExists(row.pid);
}

/**
 * The database server's clock (PostgreSQL), in ms since the epoch: the one clock every daemon's
 * heartbeats and lease expiries are written with there.
 */
export async function databaseNow(tx: Executor): Promise<number> {
  const row = await tx.get<{ now: string }>('SELECT clock_timestamp() AS now');
  const ms = Date.parse(row!.now);
  if (!Number.isFinite(ms)) throw new BotstateError('INTERNAL', `the database answered an unreadable time: ${row!.now}`);
  return ms;
}
