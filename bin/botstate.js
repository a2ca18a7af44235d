#!/usr/bin/env node
// The botstate CLI. npm scripts and npx put the project's pinned Node 24 first on PATH.
const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  const message = `needs Node.js 24 or newer, found ${process.version}`;
  const hint = "install Node 24; in botstate's own repository, npm start and npx botstate use the Node it pins";
  process.stderr.write(`botstate: ${message} (${hint})\n`);
  // As every error with --json (before a `--`): the document on stdout too.
  const args = process.argv.slice(2);
  const end = args.indexOf('--');
  if ((end < 0 ? args : args.slice(0, end)).includes('--json')) {
    process.stdout.write(`${JSON.stringify({ error: { code: 'NODE_TOO_OLD', message, hint } }, null, 2)}\n`);
  }
  process.exit(1);
}
// First, before the rest loads (which takes hundreds of milliseconds on a busy machine): a stop
// signal meanwhile is kept for the command, so that a daemon asked to stop while it starts stops
// cleanly, and any other command ends as it would have (see src/cli/signals.ts).
const { holdSignals } = await import('../dist/cli/signals.js');
holdSignals();
const { run } = await import('../dist/cli/main.js');
process.exitCode = await run(process.argv.slice(2));
// A daemon that has stopped: ended now, so that a signal while Node tears down cannot end it
// with 128 + the signal's number (see exitsOnSignal), once its output is written: a pipe whose
// reader is slow (| less, a log shipper) leaves it in memory, which process.exit() would drop.
// A signal meanwhile still ends it with its own exit code.
const { exitsOnSignal } = await import('../dist/cli/signals.js');
if (exitsOnSignal()) {
  // An empty write's callback comes once everything written before it is (or the stream failed).
  const flushed = (stream) => new Promise((resolve) => (stream.destroyed ? resolve() : stream.write('', () => resolve())));
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit();
}
