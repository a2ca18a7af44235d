import { parseArgs, type ParseArgsOptionDescriptor } from 'node:util';
import { ValidationError } from '../errors.ts';

export interface OptionSpec extends ParseArgsOptionDescriptor {
  /** One line for --help. */
  readonly help: string;
  /** The value's name in --help (`--db URL`). */
  readonly value?: string;
}

export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

/** Flags every command accepts. */
export const GLOBAL_OPTIONS = {
  db: { type: 'string', value: 'URL', help: 'database: a SQLite path, sqlite:PATH or postgres://… (default $BOTSTATE_DB or ./botstate.db)' },
  json: { type: 'boolean', help: 'print one JSON document on stdout' },
  help: { type: 'boolean', short: 'h', help: 'show help for this command' },
} as const satisfies OptionSpecs;

export interface Parsed {
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly positionals: string[];
}

/** Strict parsing: an unknown flag or a missing value is a usage error naming it. */
export function parse(args: readonly string[], options: OptionSpecs, command: string): Parsed {
  const all = { ...GLOBAL_OPTIONS, ...options } as Record<string, ParseArgsOptionDescriptor>;
  try {
    const { values, positionals, tokens } = parseArgs({ args: [...args], options: all, strict: true, allowPositionals: true, tokens: true });
    // Node keeps the last of a repeated flag: `record --side buy --side sell` would record a sell.
    const seen = new Map<string, string>();
    for (const t of tokens) {
      if (t.kind !== 'option' || all[t.name]?.type !== 'string' || all[t.name]?.multiple) continue;
      const earlier = seen.get(t.name);
      if (earlier !== undefined) {
        throw new ValidationError('USAGE', `--${t.name} is given twice ("${earlier}" and "${t.value ?? ''}")`, { hint: `give --${t.name} once` });
      }
      seen.set(t.name, t.value ?? '');
    }
    return { values: values as Parsed['values'], positionals };
  } catch (e) {
    if (e instanceof ValidationError) throw e;
    const ambiguous = /^Option '(--[\w-]+)' argument is ambiguous/.exec((e as Error).message);
    if (ambiguous) {
      // `--base -1`: Node's own message says "ambiguous" and little else.
      const flag = ambiguous[1]!;
      // Given twice (`--quote 1 … --quote -1`): said as such, as a repeat parsed without error is.
      const uses = args.filter((a) => a === flag || a.startsWith(`${flag}=`)).length;
      if (uses > 1 && !all[flag.slice(2)]?.multiple) throw new ValidationError('USAGE', `${flag} is given twice`, { hint: `give ${flag} once` });
      // The occurrence Node refused: the one followed by a word starting with "-".
      const at = args.findIndex((a, i) => a === flag && (args[i + 1] ?? '').startsWith('-'));
      const value = args[at + 1] ?? '';
      // `--chain --json`: the value was left out (the next word is one of the command's flags),
      // not given with a dash (`--error "-x: refused"`, `--base -1`).
      const name = /^--([\w-]+)(?:=|$)/.exec(value)?.[1];
      const short = /^-(\w)$/.exec(value)?.[1];
      const isFlag = (name !== undefined && Object.hasOwn(all, name)) || (short !== undefined && Object.values(all).some((o) => o.short === short));
      if (isFlag) throw new ValidationError('USAGE', `${flag} needs a value (${value} after it is a flag)`, { hint: `see botstate ${command} --help` });
      const numeric = /^-[\d.]/.test(value);
      throw new ValidationError('USAGE', `${flag} ${value}: a value starting with "-" is taken for a flag`, {
        hint: `${numeric ? 'amounts and counts cannot be negative; ' : ''}to pass such a value anyway write ${flag}=${shellWord(value)}`,
      });
    }
    const message = (e as Error).message.replace(/\. To specify a positional argument.*$/s, '').replace(/\s+/g, ' ');
    throw new ValidationError('USAGE', message.charAt(0).toLowerCase() + message.slice(1), {
      hint: `see botstate ${command} --help`,
    });
  }
}

export function renderOptions(options: OptionSpecs): string {
  const rows = Object.entries(options).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.value ? ` ${o.value}` : ''}`;
    return [flag, o.help + (o.multiple ? ' (repeatable)' : '')] as const;
  });
  const width = Math.max(...rows.map(([f]) => f.length));
  return rows.map(([f, h]) => `  ${f.padEnd(width)}  ${h}`).join('\n');
}

/** `value` as one shell word: as it is when it needs no quoting, else in single quotes. */
function shellWord(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replaceAll("'", "'\\''")}'`;
}
