import type { Engine } from './adapter.ts';

/**
 * Statements that would end or begin a transaction behind store.transaction's back: BEGIN,
 * START TRANSACTION, COMMIT, END, ROLLBACK (not ROLLBACK [TRANSACTION | WORK] TO a savepoint),
 * ABORT and PREPARE TRANSACTION. SAVEPOINT, RELEASE and ROLLBACK TO stay allowed: inside a
 * transaction they never end it.
 */
const CONTROL = /^(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK(?!\s+(?:(?:TRANSACTION|WORK)\s+)?TO\b)|ABORT|PREPARE\s+TRANSACTION)\b/i;

/**
 * PostgreSQL statements that change the session, not the transaction: SET (but SET LOCAL, SET
 * TRANSACTION and SET CONSTRAINTS, which end with it), RESET and DISCARD. The connection goes
 * back to the pool with them, and every later call on it would run under them: another
 * search_path (another schema's tables), synchronous_commit off (the `power` durability gone),
 * another DateStyle (times no longer read).
 */
const SESSION_PG = /^(SET(?!\s+(?:LOCAL|TRANSACTION|CONSTRAINTS)\b)|RESET|DISCARD)\b/i;

/**
 * More of what a PostgreSQL statement leaves on the session: a prepared statement (PREPARE), or
 * one taken away (DEALLOCATE: botstate's own, prepared on every pooled connection, would be gone
 * for every later call on it), a LISTEN, a cursor declared WITH HOLD, and a DO block, whose body
 * (a string) this cannot read and which may run any of them, or a SET through EXECUTE. (PREPARE
 * TRANSACTION is CONTROL's.)
 */
const SESSION_PG_MORE = /^(PREPARE|DEALLOCATE|LISTEN|DECLARE\b[\s\S]*?\bWITH\s+HOLD|DO)\b/i;

/** An UPDATE of the pg_settings view: PostgreSQL's SET (of the session), written otherwise. */
const PG_SETTINGS = /^UPDATE\s+(?:ONLY\s+)?(?:pg_catalog\s*\.\s*)?pg_settings\b/i;

/**
 * A session-level advisory lock, held after the transaction until unlocked (the _xact_ ones end
 * with it). Read in the text with quoted names written plainly (see {@link withNames}), as a
 * function's name may be quoted or schema-qualified: `"pg_advisory_lock"(1)`,
 * `pg_catalog.pg_advisory_lock(1)`.
 */
const SESSION_LOCK = /\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(/i;

/** SQLite's ATTACH and DETACH: a database attached stays on the store's one connection. */
const ATTACH = /^(ATTACH|DETACH)\b/i;

/** A SQLite PRAGMA: `PRAGMA [schema.]name`, then `= value`, `(argument)` or nothing. */
const PRAGMA = /^PRAGMA\b\s*(?:\w+\s*\.\s*)?(\w*)\s*([=(])?/i;

/** Pragmas that take an argument to read something. */
const READING_PRAGMAS = new Set([
  'table_info', 'table_xinfo', 'table_list', 'index_list', 'index_info', 'index_xinfo', 'foreign_key_list',
  'foreign_key_check', 'integrity_check', 'quick_check',
]);
/**
 * Pragmas whose setting is the transaction's (defer_foreign_keys) or the database file's, written
 * and rolled back with it (user_version, application_id): in either form, `= v` or `(v)`.
 */
const TRANSACTION_PRAGMAS = new Set(['defer_foreign_keys', 'user_version', 'application_id']);

/**
 * A temporary table, view or sequence stays on the connection after the transaction, and hides a
 * table of the same name from every later call on it (temporary objects are looked up first).
 * PostgreSQL's ON COMMIT DROP ends a table with the transaction.
 */
const TEMP_PG = /^(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:GLOBAL|LOCAL)\s+)?(?:TEMP|TEMPORARY)\s+(?:(?:UNLOGGED\s+)?TABLE|VIEW|RECURSIVE\s+VIEW|SEQUENCE)\b|(?:SELECT|WITH)\b[\s\S]*?(?<!\b(?:INSERT|MERGE)\s+)\bINTO\s+(?:(?:LOCAL|GLOBAL)\s+)?(?:TEMP|TEMPORARY)\b)/i;
/**
 * The same by its schema, pg_temp (or pg_temp_N, the session's own by its real name), which may
 * be quoted: read in the text with quoted names written plainly (see {@link withNames}).
 */
const TEMP_PG_SCHEMA = /^(?:CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNLOGGED\s+)?(?:TABLE|VIEW|RECURSIVE\s+VIEW|SEQUENCE|MATERIALIZED\s+VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?|(?:SELECT|WITH)\b[\s\S]*?(?<!\b(?:INSERT|MERGE)\s+)\bINTO\s+(?:UNLOGGED\s+)?(?:TABLE\s+)?)pg_temp(?:_\d+)?\s*\./i;

/**
 * The settings botstate's own statements in a transaction depend on: the schema its tables are
 * found in (search_path, or SET SCHEMA), how its times are read (TimeZone, DateStyle), how text
 * is decoded (client_encoding, or SET NAMES), and whether its commit is durable in `power` mode
 * (synchronous_commit). Changed even for the transaction alone (SET LOCAL, set_config(…, true)),
 * the store's next call in it would read and write another schema's tables, misread times or
 * commit without waiting for the disk. PostgreSQL's names are case-insensitive.
 */
const BOTSTATE_SETTING = /^(?:search_path|schema|time\s+zone|timezone|datestyle|client_encoding|names|synchronous_commit)$/i;

/** A SET LOCAL (the setting it names is read after it in the statement's own text: see setLocalAt). */
const SET_LOCAL = /^SET\s+LOCAL\b/i;
/** SQLite's, read in the text with quoted names written plainly: `"temp".t`, `[temp].t` and `'temp'.t` are temp.t. */
const TEMP_SQLITE = /^CREATE\s+(?:(?:TEMP|TEMPORARY)\s+(?:TABLE|VIEW|TRIGGER)\b|(?:VIRTUAL\s+)?(?:TABLE|VIEW|TRIGGER|INDEX)\s+(?:IF\s+NOT\s+EXISTS\s+)?temp\s*\.)/i;

/**
 * What a tx refuses among the calls of set_config in `sql`: one whose third argument is not
 * written `true` (SET LOCAL's equivalent) changes the session ('set_config(…, false)'): false is a
 * SET by function call, and anything else (a parameter, an expression, a column "true") may be
 * false. One written `true` is refused too when its first argument, a string, names a setting of
 * BOTSTATE_SETTING (but for a synchronous_commit raised, see {@link lowersBotstateSetting}); a name
 * given otherwise (a parameter, an expression) cannot be read here, as a function's body cannot.
 * The call is found in `named` (its name may be quoted: `"set_config"(`, `pg_catalog."set_config"(`),
 * its arguments cut in `plain`, where every quoted name and string is blank, and read in `sql`.
 */
function setConfigRefused(named: string, plain: string, sql: string): string | undefined {
  const call = /\bset_config\s*\(/gi;
  for (let m = call.exec(named); m !== null; m = call.exec(named)) {
    let depth = 1;
    let i = call.lastIndex;
    const commas: number[] = [];
    for (; i < plain.length && depth > 0; i++) {
      if (plain[i] === '(') depth++;
      else if (plain[i] === ')') depth--;
      else if (plain[i] === ',' && depth === 1) commas.push(i);
    }
    const args = plain.slice(call.lastIndex, depth === 0 ? i - 1 : i);
    if (!/,\s*true\s*$/i.test(args)) return 'set_config(…, false)';
    if (commas.length < 2) continue;
    const name = stringLiteral(sql.slice(call.lastIndex, commas[0]));
    if (name === undefined || !BOTSTATE_SETTING.test(name)) continue;
    if (lowersBotstateSetting(name, stringLiteral(sql.slice(commas[0]! + 1, commas[1])))) return `set_config('${name}', …, true)`;
  }
  return undefined;
}

/** The text of a PostgreSQL string literal written alone ('x', E'x', 'x'::text), or undefined. */
function stringLiteral(text: string): string | undefined {
  const m = /^\s*[eE]?'((?:[^']|'')*)'\s*(?:::\s*[A-Za-z][\w ]*)?$/.exec(text);
  return m === null ? undefined : m[1]!.replace(/''/g, "'");
}

/**
 * Whether setting `name` (one of BOTSTATE_SETTING) to `value` (undefined: not read) would change
 * what botstate's statements rely on. Only synchronous_commit may be set, and only to a level at
 * least as durable as `power` mode's (on, remote_apply): one transaction of a `process` store made
 * durable.
 */
function lowersBotstateSetting(name: string, value: string | undefined): boolean {
  return !(/^synchronous_commit$/i.test(name) && value !== undefined && /^(?:on|remote_apply|true|yes|1)$/i.test(value.trim()));
}

/** Where the next token begins in `sql` from `i`, past blanks and comments. */
function skipBlanks(sql: string, i: number): number {
  for (;;) {
    const blank = /\s+|--[^\n\r]*|\/\*[\s\S]*?\*\//y;
    blank.lastIndex = i;
    if (blank.exec(sql) === null) return i;
    i = blank.lastIndex;
  }
}

/**
 * The setting a `SET LOCAL` names at `sql[i]`, and the value it is given, as PostgreSQL reads them:
 * a name in any case, or quoted ("Search_Path" is search_path: setting names are
 * case-insensitive), or U&"…"; TIME ZONE; a dotted custom setting (app.user). Undefined if none.
 */
function setLocalAt(sql: string, i: number): { name: string; value: string | undefined } | undefined {
  let name: string | undefined;
  let at = i;
  const quoted = /(U&)?"((?:[^"]|"")*)"/iy;
  quoted.lastIndex = i;
  const q = quoted.exec(sql);
  if (q !== null) {
    const text = q[2]!.replace(/""/g, '"');
    name = q[1] !== undefined ? unicodeEscaped(text, '\\') : text;
    at = quoted.lastIndex;
  } else {
    const plainName = /time\s+zone\b|[A-Za-z_][\w$]*(?:\s*\.\s*(?:[A-Za-z_][\w$]*|"(?:[^"]|"")*"))*/iy;
    plainName.lastIndex = i;
    const p = plainName.exec(sql);
    if (p === null) return undefined;
    name = p[0].replace(/\s+/g, ' ');
    at = plainName.lastIndex;
  }
  if (name === undefined) return undefined; // a U&"…" name with a bad escape
  const v = /\s*(?:=|\bTO\b)?\s*(?:[eE]?'((?:[^']|'')*)'|([\w.-]+))/iy;
  v.lastIndex = at;
  const value = v.exec(sql);
  return { name, value: value === null ? undefined : (value[1]?.replace(/''/g, "'") ?? value[2]) };
}

/**
 * A SQLite trigger's body (`CREATE TRIGGER … BEGIN stmt; … END`): its statements are not the
 * script's, and its closing END, after a `;`, is not a statement. The BEGIN comes before the
 * trigger statement's first `;`, and no statement of a body starts with END, so the first `; END`
 * after it closes the body.
 */
const TRIGGER_BODY = /\bCREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TRIGGER\b[^;]*?\bBEGIN\b[\s\S]*?;\s*END\b/gi;

/**
 * A PostgreSQL SQL-standard function or procedure body (`BEGIN ATOMIC stmt; … END`, or empty:
 * `BEGIN ATOMIC END`): its statements are the routine's, as a SQLite trigger's are the
 * trigger's. Only in the CREATE FUNCTION or PROCEDURE statement itself (`begin` and `atomic`
 * elsewhere may be a column and an alias), and ended at its own END.
 */
const ATOMIC_BODY = /\bCREATE\s+(?:OR\s+REPLACE\s+)?(?:FUNCTION|PROCEDURE)\b[^;]*?\bBEGIN\s+ATOMIC\b(?:\s+END\b|[\s\S]*?;\s*END\b)/gi;

/** A PostgreSQL dollar quote's opening tag ($$ or $tag$: letters, non-ASCII ones too), not a $1 parameter. */
const DOLLAR_TAG = /\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$/y;

/** A character that continues an identifier (non-ASCII letters included, as PostgreSQL reads them). */
const IDENTIFIER_CHAR = /[\w$\u0080-\uffff]/;

/**
 * The statement a tx refuses in `sql` (a statement, or a script of several separated by `;`):
 * one that begins or ends a transaction (see CONTROL) or, since the connection outlives the
 * transaction, one that changes the connection (see changesSession): PostgreSQL's SET, RESET,
 * DISCARD and set_config, a SQLite PRAGMA that sets something, ATTACH or DETACH, a temporary
 * object; or, on PostgreSQL, one that changes for the rest of the transaction a setting botstate's
 * own statements depend on (see changesBotstateSetting). Its first words, or undefined if it has none. Quoted text and comments, as `engine`
 * reads them, SQLite trigger bodies and PostgreSQL BEGIN ATOMIC bodies are skipped, but a quoted
 * name is the name it quotes (`"set_config"(…)`, `[temp].t`); text this cannot read is left to
 * the database.
 */
export function transactionControl(sql: string, engine: Engine): string | undefined {
  // Every statement of a store call joined to a caller's transaction passes here: botstate's own
  // SQL is a few constant texts, scanned once (~3.5 µs for a 300-character SELECT) and then looked up.
  const seen = SEEN[engine];
  const known = seen.get(sql);
  if (known !== undefined) return known === '' ? undefined : known;
  const control = scan(sql, engine);
  if (seen.size >= SEEN_MAX) seen.clear(); // SQL with values written into it is seldom seen twice
  seen.set(sql, control ?? '');
  return control;
}

/** What transactionControl found in each text already scanned ('' for nothing), per engine. */
const SEEN: Record<Engine, Map<string, string>> = { sqlite: new Map(), postgres: new Map() };
const SEEN_MAX = 1000;

function scan(sql: string, engine: Engine): string | undefined {
  const pg = engine === 'postgres';
  const parts = segments(sql, engine);
  // Two readings of the same length, so that a place in one is the same place in the other:
  // `plain`, where every string, quoted name and comment is blank (for keywords, which are never
  // quoted), and `named`, where a quoted name is written plainly (for the names of a function or a
  // schema, which may be quoted).
  let plain = blanked(parts);
  let named = withNames(parts, sql, engine);
  // Before trigger bodies are blanked, with their CREATE: a TEMP trigger stays on the connection too.
  if (!pg && named.split(';').some((s) => TEMP_SQLITE.test(s.trimStart()))) return 'CREATE TEMP';
  for (const m of plain.matchAll(pg ? ATOMIC_BODY : TRIGGER_BODY)) {
    const blank = ' '.repeat(m[0].length);
    const end = m.index + m[0].length;
    plain = plain.slice(0, m.index) + blank + plain.slice(end);
    named = named.slice(0, m.index) + blank + named.slice(end);
  }
  const setConfig = pg ? setConfigRefused(named, plain, sql) : undefined;
  if (setConfig !== undefined) return setConfig;
  if (pg && SESSION_LOCK.test(named)) return 'pg_advisory_lock';
  // A quoted name holds no `;`: the statements are cut at the same places in both, and in `sql`.
  const namedStatements = named.split(';');
  let from = 0;
  for (const [k, statement] of plain.split(';').entries()) {
    const text = statement.trimStart();
    const names = namedStatements[k]!.trimStart();
    const start = from + statement.length - text.length;
    from += statement.length + 1;
    const m = CONTROL.exec(text) ?? (pg ? (SESSION_PG.exec(text) ?? SESSION_PG_MORE.exec(text)) : ATTACH.exec(text));
    if (m) return /^DECLARE\b/i.test(m[1]!) ? 'DECLARE … WITH HOLD' : m[1]!.replace(/\s+/g, ' ').toUpperCase();
    const local = pg ? SET_LOCAL.exec(text) : null;
    const setting = local === null ? undefined : setLocalAt(sql, skipBlanks(sql, start + local[0].length));
    if (setting !== undefined && BOTSTATE_SETTING.test(setting.name) && lowersBotstateSetting(setting.name, setting.value)) return `SET LOCAL ${setting.name}`;
    if (pg && (TEMP_PG.test(text) || TEMP_PG_SCHEMA.test(names)) && !/\bON\s+COMMIT\s+DROP\b/i.test(text)) return 'CREATE TEMP';
    if (pg && PG_SETTINGS.test(names)) return 'UPDATE pg_settings';
    const pragma = pg ? null : PRAGMA.exec(names);
    if (pragma) {
      const name = pragma[1]!.toLowerCase();
      const sets = pragma[2] !== undefined && !TRANSACTION_PRAGMAS.has(name) && !(pragma[2] === '(' && READING_PRAGMAS.has(name));
      if (sets) return 'PRAGMA';
    }
  }
  return undefined;
}

/**
 * True for what {@link transactionControl} returns for a statement that changes the connection
 * past the transaction: whatever it returns but a transaction's own control (CONTROL reads its
 * words again), so that no list of the others has to be kept beside scan's.
 */
export function changesSession(statement: string): boolean {
  return !CONTROL.test(statement) && !changesBotstateSetting(statement);
}

/**
 * True for what {@link transactionControl} returns for a statement that changes, for the rest of
 * the transaction, a setting botstate's own statements in it depend on (see BOTSTATE_SETTING).
 */
export function changesBotstateSetting(statement: string): boolean {
  return /^(?:SET LOCAL |set_config\((?!…, false\)))/.test(statement);
}

/**
 * The text of `parts` (see {@link segments}) with every string, quoted identifier and comment
 * replaced by as many blanks, as the engine reads them: SQLite's `…`, […] and '' escapes;
 * PostgreSQL's E'…' backslash escapes, dollar quotes and nested block comments.
 */
function blanked(parts: ReadonlyArray<Segment>): string {
  return parts.map((s) => (s.plain ? s.text : ' '.repeat(s.text.length))).join('');
}

/**
 * As {@link blanked}, but with each quoted name that is the same name written plainly put back
 * plainly, between blanks, in the same length: PostgreSQL's "set_config" (not "SET_CONFIG",
 * which PostgreSQL does not fold to lower case, so another name) and U&"…" with its escapes
 * read; SQLite's "temp", [temp], `temp` and 'temp' (a string where a name must be is a name),
 * in any case. Strings, comments and other quoted names stay blank.
 */
function withNames(parts: ReadonlyArray<Segment>, sql: string, engine: Engine): string {
  let at = 0;
  return parts
    .map((s, k) => {
      const from = at;
      at += s.text.length;
      if (s.plain) {
        // The UESCAPE after a U&"…" name is the name's (its 'c' is a string, blank already).
        const uescape = engine === 'postgres' && unicodeName(parts, k - 1) ? /^\s*UESCAPE\b/i.exec(s.text) : null;
        return uescape ? ' '.repeat(uescape[0].length) + s.text.slice(uescape[0].length) : s.text;
      }
      const name = quotedName(s.text, engine, unicodeName(parts, k), sql, from + s.text.length);
      return name === undefined || name.length + 2 > s.text.length ? ' '.repeat(s.text.length) : ` ${name}`.padEnd(s.text.length);
    })
    .join('');
}

/** A name written plainly (letters, digits, _ and $, not first): what a quoted one must be to be read as one. */
const PLAIN_NAME = { postgres: /^[a-z_\u0080-\uffff][a-z0-9_$\u0080-\uffff]*$/, sqlite: /^[A-Za-z_\u0080-\uffff][\w$\u0080-\uffff]*$/ };

/** Whether `parts[k]` is a PostgreSQL U&"…" name: a quoted name right after U& (not the end of another word). */
function unicodeName(parts: ReadonlyArray<Segment>, k: number): boolean {
  const before = parts[k - 1];
  return parts[k]?.text[0] === '"' && before !== undefined && before.plain && /(?:^|[^\w$\u0080-\uffff])U&$/i.test(before.text);
}

/**
 * The name a quoted segment `text` stands for, if it is one that could be written plainly;
 * undefined for a comment, a string (on PostgreSQL), or anything else. `unicode` for a U&"…"
 * name on PostgreSQL, `end` where it ends in `sql` (for a UESCAPE after it).
 */
function quotedName(text: string, engine: Engine, unicode: boolean, sql: string, end: number): string | undefined {
  const open = text[0]!;
  const close = open === '[' ? ']' : open;
  if (text.length < 2 || !text.endsWith(close)) return undefined;
  if (engine === 'sqlite') {
    if (!'"`[\''.includes(open)) return undefined;
    const name = text.slice(1, -1);
    return PLAIN_NAME.sqlite.test(name) ? name : undefined;
  }
  if (open !== '"') return undefined;
  let name: string | undefined = text.slice(1, -1).replace(/""/g, '"');
  if (unicode) {
    const uescape = /\s*UESCAPE\s*'([^'])'/iy;
    uescape.lastIndex = end;
    name = unicodeEscaped(name, uescape.exec(sql)?.[1] ?? '\\');
  }
  return name !== undefined && PLAIN_NAME.postgres.test(name) ? name : undefined;
}

/**
 * A PostgreSQL U&"…" name's text read: `c` then four hex digits, or `c+` then six, is that code
 * point, and `cc` is `c` (a backslash, unless UESCAPE names another). Undefined if it is not valid.
 */
function unicodeEscaped(text: string, c: string): string | undefined {
  let out = '';
  for (let i = 0; i < text.length; ) {
    if (text[i] !== c) {
      out += text[i++];
    } else if (text[i + 1] === c) {
      out += c;
      i += 2;
    } else {
      const m = /^(?:([0-9A-Fa-f]{4})|\+([0-9A-Fa-f]{6}))/.exec(text.slice(i + 1));
      const code = m === null ? NaN : Number.parseInt(m[1] ?? m[2]!, 16);
      if (!(code <= 0x10ffff)) return undefined;
      out += String.fromCodePoint(code);
      i += 1 + m![0].length;
    }
  }
  return out;
}

/**
 * PostgreSQL: `sql` with each `?` placeholder numbered `$1`, `$2`, … (the driver's form), but only
 * outside strings, quoted identifiers and comments: a `?` written in a literal ('why?') is text.
 * (PostgreSQL's jsonb operators ?, ?| and ?& are placeholders here too: write jsonb_exists,
 * jsonb_exists_any and jsonb_exists_all instead.)
 */
export function numberedPlaceholders(sql: string): string {
  let n = 0;
  return segments(sql, 'postgres')
    .map((s) => (s.plain ? s.text.replace(/\?/g, () => `$${++n}`) : s.text))
    .join('');
}

/** A part of a statement's text: SQL the engine reads (`plain`), or a string, quoted identifier or comment. */
interface Segment {
  readonly plain: boolean;
  readonly text: string;
}

/** `sql` cut into the parts the engine reads as SQL (`plain`) and its strings, quoted identifiers and comments. */
function segments(sql: string, engine: Engine): Segment[] {
  const pg = engine === 'postgres';
  const out: Segment[] = [];
  let plainFrom = 0;
  let i = 0;
  const skipTo = (close: string, doubled: boolean): void => {
    for (;;) {
      const at = sql.indexOf(close, i);
      if (at < 0) {
        i = sql.length;
        return;
      }
      i = at + close.length;
      if (!(doubled && sql.startsWith(close, i))) return;
      i += close.length;
    }
  };
  while (i < sql.length) {
    const c = sql[i]!;
    const next = sql[i + 1];
    const start = i;
    if (c === '-' && next === '-') {
      // To the end of the line: a newline, or for PostgreSQL a carriage return as well.
      i += 2;
      while (i < sql.length && sql[i] !== '\n' && !(pg && sql[i] === '\r')) i++;
    } else if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < sql.length && depth > 0) {
        if (pg && sql.startsWith('/*', i)) (depth++, (i += 2));
        else if (sql.startsWith('*/', i)) (depth--, (i += 2));
        else i++;
      }
    } else if (c === "'") {
      const escapes = pg && /[eE]/.test(sql[i - 1] ?? '') && !IDENTIFIER_CHAR.test(sql[i - 2] ?? '');
      i++;
      while (i < sql.length) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i++] === "'") break;
      }
    } else if (c === '"') {
      i++;
      skipTo('"', true);
    } else if (!pg && c === '`') {
      i++;
      skipTo('`', true);
    } else if (!pg && c === '[') {
      i++;
      skipTo(']', false);
    } else if (pg && c === '$' && !IDENTIFIER_CHAR.test(sql[i - 1] ?? '')) {
      DOLLAR_TAG.lastIndex = i;
      const tag = DOLLAR_TAG.exec(sql)?.[0];
      if (tag === undefined) {
        i++;
        continue;
      }
      i += tag.length;
      skipTo(tag, false);
    } else {
      i++;
      continue;
    }
    if (start > plainFrom) out.push({ plain: true, text: sql.slice(plainFrom, start) });
    out.push({ plain: false, text: sql.slice(start, i) });
    plainFrom = i;
  }
  if (plainFrom < sql.length) out.push({ plain: true, text: sql.slice(plainFrom) });
  return out;
}
