/**
 * The signals that ask a long-running command (the daemon, the paper exchange) to stop cleanly:
 * Ctrl-C, a supervisor's stop, and the terminal it runs in closing (SIGHUP), whose default would
 * end the process at once, leaving a daemon's leases held until they expire.
 */
const STOPPING: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Set from holdSignals() until a command takes the signals over (watchSignals) or lets them go (releaseSignals). */
let holding = false;
/** The signal that came while they were held, for the command. */
let held: NodeJS.Signals | undefined;

function hold(signal: NodeJS.Signals): void {
  held = signal;
  // A second one ends the process at once, as it would while the command stops.
  for (const s of STOPPING) process.off(s, hold);
}

/**
 * Called first thing by the CLI (bin/botstate.js), before the rest of it loads (hundreds of
 * milliseconds on a busy machine): a stop signal that comes meanwhile is kept for the command,
 * instead of ending the process at once (exit 143 for SIGTERM), which a daemon that was asked to
 * stop while it started would otherwise do, saying nothing. A command that stops on a signal
 * takes it over with watchSignals (a signal kept stops it at once, cleanly); any other lets it go
 * with releaseSignals, and a signal kept then ends the process as it would have.
 */
export function holdSignals(): void {
  if (holding) return;
  holding = true;
  held = undefined;
  for (const s of STOPPING) process.on(s, hold);
}

/**
 * Two turns of the event loop, after which a signal the process got while it ran without yielding
 * (loading the CLI, which can take hundreds of milliseconds) has been handed to its listeners: it
 * waits in libuv until a turn's poll phase reads it, and the turn under way may have read before it
 * came. Until then it is lost if the last listener of its signal goes, which stops listening.
 */
export async function signalsDelivered(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** Ends holdSignals: a signal kept is raised again, with its default action (the process ends). */
export async function releaseSignals(): Promise<void> {
  if (!holding) return;
  await signalsDelivered();
  if (!holding) return;
  holding = false;
  for (const s of STOPPING) process.off(s, hold);
  const signal = held;
  held = undefined;
  if (signal !== undefined) process.kill(process.pid, signal);
}

export interface SignalWatch {
  /** Resolves with the first SIGINT, SIGTERM or SIGHUP (one kept by holdSignals included). */
  readonly signal: Promise<NodeJS.Signals>;
  /** That signal, once it has come. */
  readonly received: NodeJS.Signals | undefined;
  /** Stops listening (the signals' default actions are back), whether one came or not. */
  close(): void;
}

/**
 * Listens for SIGINT, SIGTERM and SIGHUP until the first of them (or close()), taking over from
 * holdSignals: a signal it kept counts as the first, and so does one on its way to it (received
 * once signalsDelivered() has resolved). Once one has come the process no longer listens, so
 * that a second ends it at once (128 + the signal's number).
 */
export function watchSignals(): SignalWatch {
  const { promise, resolve } = Promise.withResolvers<NodeJS.Signals>();
  let received: NodeJS.Signals | undefined;
  const stop = (signal: NodeJS.Signals): void => {
    for (const s of STOPPING) process.off(s, stop);
    received ??= signal;
    resolve(signal);
  };
  // Listening before holdSignals' listeners go: the process keeps listening throughout, so that a
  // signal it got but has not handed to a listener yet (see signalsDelivered) comes here.
  for (const s of STOPPING) process.on(s, stop);
  if (holding) {
    holding = false;
    for (const s of STOPPING) process.off(s, hold);
  }
  const kept = held;
  held = undefined;
  if (kept !== undefined) stop(kept);
  return {
    signal: promise,
    get received() {
      return received;
    },
    close: () => {
      for (const s of STOPPING) process.off(s, stop);
    },
  };
}

/**
 * Whether a command waits for a stop signal now (watchSignals, untilSignal): holdSignals' own
 * listener, which only keeps a signal for later, does not count.
 */
export function stopsOnSignal(): boolean {
  return process.listeners('SIGTERM').some((listener) => listener !== hold);
}

/** Resolves when the process gets SIGINT, SIGTERM or SIGHUP (and stops listening for them). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return watchSignals().signal;
}

/**
 * Once a command has stopped what a signal would cut short (the daemon: every step recorded, its
 * leases handed back), a further SIGINT, SIGTERM or SIGHUP while it exits (closing its database)
 * ends it at once with `code`, the exit code it stops with, not 128 + the signal's number: a
 * supervisor would take that for a crash.
 */
export function exitOnSignal(code: number): void {
  const exit = (): void => process.exit(typeof process.exitCode === 'number' && process.exitCode !== 0 ? process.exitCode : code);
  for (const s of STOPPING) process.on(s, exit);
  exiting = true;
}

let exiting = false;

/**
 * Whether exitOnSignal was called: the CLI then ends the process with process.exit() once the
 * command has returned. Left to end by itself, Node would close its signal listeners as it tears
 * down (tens of milliseconds on a busy machine), and a signal in that window would end it with
 * 128 + the signal's number after all.
 */
export function exitsOnSignal(): boolean {
  return exiting;
}
