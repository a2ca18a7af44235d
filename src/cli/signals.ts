/**
 * The signals that ask a long-running command (the daemon, the paper exchange) to stop cleanly:
 * Ctrl-C, a supervisor's stop, and the terminal it runs in closing (SIGHUP), whose default would
 * end the process at once, leaving a daemon's leases held until they expire.
 */
const STOPPING: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Resolves when the process gets SIGINT, SIGTERM or SIGHUP (and stops listening for them). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals): void => {
      for (const s of STOPPING) process.off(s, stop);
      resolve(signal);
    };
    for (const s of STOPPING) process.on(s, stop);
  });
}
