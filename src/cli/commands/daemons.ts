import type { DaemonInstance } from '../../store/store.ts';
import { READING, withStore, type Command } from '../command.ts';
import { jsonArrayChunks, outChunks, tableChunks } from '../output.ts';

/** running; silent (not stopped, not heard from: killed or stalled); or stopped and when. With its exchange unreachable, since when. */
function state(d: DaemonInstance): string {
  if (d.stoppedAt !== null) return `stopped ${d.stoppedAt}`;
  const unreachable = d.exchangeUnreachableSince === null ? '' : `, exchange unreachable since ${d.exchangeUnreachableSince}`;
  return `${d.running ? 'running' : 'silent'}${unreachable}`;
}

/**
 * Its --max-jobs; 0 (a --max-jobs is at least 1) while it hands its jobs over, its exchange
 * unreachable. A daemon killed meanwhile keeps the 0, and hands nothing over any more.
 */
function maxJobsOf(d: DaemonInstance): string {
  if (d.maxJobs === 0) return d.running ? '0 (handing over)' : '0';
  return d.maxJobs === null ? '-' : String(d.maxJobs);
}

function daemonsTable(daemons: readonly DaemonInstance[], all: boolean): Iterable<string> {
  if (daemons.length === 0) return [all ? 'No daemon ever registered.\n' : 'No daemons (none running, none silent).\n'];
  return tableChunks(
    ['INSTANCE', 'HOST', 'PID', 'STARTED', 'LAST HEARTBEAT', 'JOBS', 'MAX JOBS', 'EXCHANGE', 'STATE'],
    daemons.map((d) => [d.instance, d.host, String(d.pid), d.startedAt, d.heartbeatAt, String(d.jobs), maxJobsOf(d), d.exchange, state(d)]),
  );
}

export const daemonsCommand: Command = {
  name: 'daemons',
  summary: 'list the daemons on the database: running or silent, with the jobs they hold',
  usage: '[--all]',
  details:
    'STATE is running (it heartbeated within its lease TTL, as the daemons judge each other, or within a minute for a daemon of a version that did not record its TTL, and on this host its process exists), ' +
    'silent (not stopped but not heard from: killed or stalled; the next daemon to start marks it stopped), ' +
    'or, with --all, stopped and when. JOBS counts the leases it holds, not expired; EXCHANGE is the exchange it trades on, ' +
    'as its recover audit entry names it (every daemon of a database must trade on one). MAX JOBS is its --max-jobs, and reads ' +
    '0 (handing over) while the daemon, its exchange unreachable, hands its jobs to the daemons that reach theirs; STATE adds ' +
    '"exchange unreachable since T" while the daemon finds its exchange answering no call (T by its host\'s clock). Oldest first. With --json, an array of ' +
    '{ instance, host, pid, startedAt, heartbeatAt, stoppedAt, running, jobs, maxJobs, exchange, exchangeUnreachableSince }.',
  options: { all: { type: 'boolean', help: 'every daemon that ever registered, the stopped ones too' } },
  positionals: [0, 0],
  async run(ctx) {
    const all = ctx.values['all'] === true;
    const daemons = await withStore(ctx, READING, (store) => store.daemonInstances({ all }));
    outChunks(ctx.io, ctx.json ? jsonArrayChunks(daemons) : daemonsTable(daemons, all));
  },
};
