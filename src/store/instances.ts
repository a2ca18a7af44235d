import { hostname } from 'node:os';

/** Daemons registered by this process and not yet stopped. */
export const RUNNING_HERE = new Set<string>();

/** A registered daemon instance, as `daemon_instances` holds it. */
export interface InstanceRow {
  readonly id: string;
  readonly host: string;
  readonly pid: number;
  readonly heartbeat_at: string;
}

function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether a registered daemon that has not marked itself stopped is alive: it heartbeated after
 * `staleBefore` (an ISO time) and, on this host, its process still exists (a pid reused by
 * another program after a crash or a reboot does not count for ever).
 */
export function instanceAlive(row: InstanceRow, staleBefore: string): boolean {
  if (!(row.heartbeat_at > staleBefore)) return false;
  if (row.host !== hostname()) return true;
  return row.pid === process.pid ? RUNNING_HERE.has(row.id) : pidExists(row.pid);
}
