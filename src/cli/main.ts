import { readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { coerceError, EXIT_CODES, exitCodeFor, ValidationError } from '../errors.ts';
import { openStore } from '../store/store.ts';
import { parseLocation } from '../store/location.ts';
import { GLOBAL_OPTIONS, parse, renderOptions } from './args.ts';
import type { Command, CommandContext } from './command.ts';
import { daemonCommand } from './commands/daemon.ts';
import { daemonsCommand } from './commands/daemons.ts';
import { dbCommands } from './commands/db.ts';
import { historyCommands } from './commands/history.ts';
import { jobCommands } from './commands/jobs.ts';
import { paperExchangeCommand } from './commands/paper-exchange.ts';
import { tradeCommands } from './commands/trades.ts';
import { releaseSignals } from './signals.ts';
import { escapeControls } from '../util/text.ts';
import { errorInJson, hintText, json, jsonError, OUTPUT_FAILED, outputFailed, processIo, type Io } from './output.ts';

const COMMANDS: readonly Command[] = [...jobCommands, ...tradeCommands, ...historyCommands, ...dbCommands, daemonCommand, daemonsCommand, paperExchangeCommand];
const BY_NAME = new Map(COMMANDS.map((c) => [c.name, c]));

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

const EXIT_HELP = `Exit codes:
  0  success
  ${EXIT_CODES.internal}  a bug in botstate (BOTSTATE_DEBUG=1 prints its stack trace; please report it), or a Node.js older than 24
  ${EXIT_CODES.usage}  usage: an unknown command or flag, or a malformed value (address, amount, config)
  ${EXIT_CODES.rule}  rule: not allowed now (an invalid transition, a conflicting clientOrderId, a sell beyond the balance, another daemon running)
  ${EXIT_CODES.not_found}  not found: no such job, trade or database file
  ${EXIT_CODES.storage}  storage: the database is unreachable, locked, damaged or not botstate's
  ${EXIT_CODES.schema}  schema: the database schema is newer than this botstate, outdated, has a gap, or a migration changed or failed
  ${OUTPUT_FAILED}  a command that succeeded could not write its output (stdout to a full disk): said on stderr; a change it made stays made
  129, 130, 143  daemon or paper-exchange ended at once by a second SIGHUP, SIGINT or SIGTERM while it stopped
A failed command changes nothing, unless it says the connection was lost while committing (PostgreSQL):
then the change may have been made; look before doing it again. (db migrate and db rollback keep the
steps before a failed one; daemon records as it runs.)`;

function generalHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `botstate ${version()} — crash-safe state for trading bots

Usage: botstate <command> [arguments] [--db URL] [--json]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}

Global flags:
${renderOptions(GLOBAL_OPTIONS)}

Run botstate <command> --help for a command's arguments, botstate --version for the version.

${EXIT_HELP}
`;
}

function commandHelp(c: Command): string {
  return `Usage: botstate ${c.name}${c.usage ? ` ${c.usage}` : ''}

${c.summary.charAt(0).toUpperCase()}${c.summary.slice(1)}.
${c.details ? `\n${c.details}\n` : ''}
Flags:
${renderOptions({ ...c.options, ...(c.usesDb === false ? { help: GLOBAL_OPTIONS.help } : GLOBAL_OPTIONS) })}

${EXIT_HELP}
`;
}

/** Every flag that takes a value, in any command: its value is never taken for the command's name. */
const VALUE_FLAGS = new Set(
  [GLOBAL_OPTIONS, ...COMMANDS.map((c) => c.options)].flatMap((options) =>
    Object.entries(options as Record<string, { type: string }>).filter(([, o]) => o.type === 'string').map(([name]) => `--${name}`),
  ),
);

/** Every flag some command takes (long and short), and --version: others are no one's. */
const ANY_FLAG = new Set([
  '--version',
  ...[GLOBAL_OPTIONS, ...COMMANDS.map((c) => c.options)].flatMap((options) =>
    Object.entries(options as Record<string, { short?: string }>).flatMap(([name, o]) => [`--${name}`, ...(o.short ? [`-${o.short}`] : [])]),
  ),
]);

/** Splits argv into the command's name and the rest, skipping flags and their values. */
function findCommand(argv: readonly string[]): { name: string | undefined; rest: string[] } {
  const rest: string[] = [];
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (VALUE_FLAGS.has(a)) {
      // `botstate --chain base pause …`, `botstate db --to 2 migrate`: flags may come first.
      rest.push(a);
      if (i + 1 < argv.length) rest.push(argv[++i]!);
      else if (words.length === 0) throw new ValidationError('USAGE', `${a} needs a value`, { hint: 'see botstate --help' });
    } else if (a.startsWith('-') || words.length >= (words[0] === 'db' ? 2 : 1)) {
      rest.push(a);
    } else {
      words.push(a);
    }
  }
  return { name: words.length === 0 ? undefined : words.join(' '), rest };
}

/** The flags in argv: not the values of flags that take one, nor the words after `--`. */
function flagsOf(argv: readonly string[]): string[] {
  const flags: string[] = [];
  for (let i = 0; i < argv.length && argv[i] !== '--'; i++) {
    const a = argv[i]!;
    if (VALUE_FLAGS.has(a)) i++;
    else if (a.startsWith('-')) flags.push(a);
  }
  return flags;
}

function closest(name: string): string | undefined {
  const distance = (a: string, b: string): number => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0]![j] = j;
    for (let i = 1; i <= a.length; i++) {
      for (let j = 1; j <= b.length; j++) {
        d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      }
    }
    return d[a.length]![b.length]!;
  };
  const best = COMMANDS.map((c) => ({ c: c.name, d: distance(name, c.name) })).sort((x, y) => x.d - y.d)[0];
  return best && best.d <= 2 ? best.c : undefined;
}

function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return 'cli';
  }
}

/**
 * Runs the botstate CLI and returns its exit code. Never throws: every failure becomes one
 * line on stderr (and, with --json, an `{ "error": … }` document on stdout).
 */
export async function run(argv: readonly string[], io: Io = processIo): Promise<number> {
  const code = await runCommand(argv, io);
  // A stop signal bin/botstate.js kept that no command took: the process ends as it would have.
  await releaseSignals();
  // Writing the output failed (said on stderr when it did): a success would be claimed for a lost output.
  return code === 0 && io === processIo && outputFailed() ? OUTPUT_FAILED : code;
}

async function runCommand(argv: readonly string[], io: Io): Promise<number> {
  // After `--` every word is an argument, `--json` too.
  const end = argv.indexOf('--');
  const wantsJson = (end < 0 ? argv : argv.slice(0, end)).includes('--json');
  try {
    const { name, rest } = findCommand(argv);
    if (name === undefined) {
      // `botstate -v`: the flag is the mistake, not the command left out; beside --version or
      // --help too (`--version --verbose` is refused as any command refuses a flag it does not know).
      const unknown = flagsOf(argv).find((a) => !ANY_FLAG.has(a.split('=')[0]!));
      if (unknown !== undefined) {
        throw new ValidationError('USAGE', `unknown option '${unknown}', and no command`, { hint: 'see botstate --help for the commands and flags; botstate --version prints the version' });
      }
      if (argv.includes('--version')) return io.out(wantsJson ? `${JSON.stringify({ version: version() })}\n` : `${version()}\n`), 0;
      if (argv.includes('--help') || argv.includes('-h')) return io.out(generalHelp()), 0;
      throw new ValidationError('USAGE', 'missing command', { hint: 'see botstate --help for the commands' });
    }
    const command = BY_NAME.get(name);
    if (!command && name === 'db' && (rest.includes('--help') || rest.includes('-h'))) {
      // The db commands' group: its commands, as in the general help.
      const db = COMMANDS.filter((c) => c.name.startsWith('db '));
      const width = Math.max(...db.map((c) => c.name.length));
      return io.out(`Usage: botstate db status|migrate|rollback|backup [arguments] [--db URL] [--json]\n\nCommands:\n${db.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join('\n')}\n\nRun botstate db <command> --help for a command's arguments.\n`), 0;
    }
    if (!command) {
      const guess = closest(name);
      const hint = name === 'db' ? 'use botstate db status|migrate|rollback|backup' : guess ? `did you mean ${guess}? See botstate --help` : 'see botstate --help';
      throw new ValidationError('USAGE', `unknown command "${name}"`, { hint });
    }
    // Only the commands that stop on a signal take over one kept while the CLI loaded (see
    // holdSignals); for any other it has its default action now, as it would have had then.
    if (command !== daemonCommand && command !== paperExchangeCommand) await releaseSignals();
    const { values, positionals } = parse(rest, command.options, command.name);
    if (values['help']) return io.out(commandHelp(command)), 0;
    const [min, max] = command.positionals;
    if (positionals.length > max) {
      throw new ValidationError('USAGE', `unexpected argument "${positionals[max]}"`, { hint: `see botstate ${command.name} --help` });
    }
    if (positionals.length < min) {
      throw new ValidationError('USAGE', `missing ${command.usage.split(' ')[0]}`, { hint: `see botstate ${command.name} --help` });
    }
    const db = values['db'];
    const ctx: CommandContext = {
      values,
      positionals,
      io,
      json: values['json'] === true,
      open: (options = {}) => {
        // Checked when a command opens its database (paper-exchange opens none).
        const url = typeof db === 'string' ? db : process.env['BOTSTATE_DB'] || undefined;
        if (url !== undefined && isInMemory(url)) {
          throw new ValidationError('USAGE', 'an in-memory database (:memory:) keeps nothing once the command ends', {
            hint: 'give --db a file path, e.g. ./botstate.db',
          });
        }
        // A command waits for a row another session has locked (PostgreSQL) as long as for
        // SQLite's write lock, then exits 5, rather than without end behind a stalled program.
        return openStore(typeof db === 'string' ? db : undefined, { actor: cliActor(), lockTimeoutMs: 5000, ...options });
      },
    };
    await command.run(ctx);
    return 0;
  } catch (e) {
    const error = coerceError(e);
    const hint = error.hint ? ` (${hintText(error.hint)})` : '';
    const line = terminalSafe(`botstate: ${error.message}${hint}`.replace(/\s*\n\s*/g, ' '));
    io.err(`${line}\n`);
    if (wantsJson && !errorInJson.has(error)) io.out(json({ error: jsonError(error) }));
    if (error.code === 'INTERNAL' && process.env['BOTSTATE_DEBUG']) io.err(`${(error.cause as Error)?.stack ?? ''}\n`);
    return exitCodeFor(error);
  }
}

/** A SQLite in-memory database: the CLI refuses it, since it keeps nothing once the command ends. */
function isInMemory(url: string): boolean {
  try {
    const location = parseLocation(url);
    return location.engine === 'sqlite' && location.path === ':memory:';
  } catch {
    return false; // a malformed URL: said by the command that opens it
  }
}

/**
 * A word longer than this in an error line (a pasted id, a value) is shown cut in the middle;
 * one with a `/` in it (a path, a URL the operator typed and may need to copy) only past
 * LONGEST_PATH.
 */
const LONGEST_WORD = 120;
const LONGEST_PATH = 1000;

/**
 * An error line as it is safe to print on a terminal: control characters (an ESC that would
 * start a colour or move the cursor, a carriage return) are shown escaped, and a very long word
 * (a 5,000-character value echoed back) is cut in the middle, so that the line stays one line
 * that can be read.
 */
export function terminalSafe(line: string): string {
  const escaped = escapeControls(line);
  return escaped.replace(/\S+/g, (word) => {
    const chars = [...word];
    const longest = word.includes('/') ? LONGEST_PATH : LONGEST_WORD;
    return chars.length <= longest ? word : `${chars.slice(0, longest - 40).join('')}…${chars.slice(-20).join('')}`;
  });
}
