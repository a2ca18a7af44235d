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
 * More of what a PostgreSQL statement leaves on the session: a prepared statement (PREPARE), a
 * LISTEN, a cursor declared WITH HOLD, and a DO block, whose body (a string) this cannot read
 * and which may run any of them, or a SET through EXECUTE. (PREPARE TRANSACTION is CONTROL's.)
 */
const SESSION_PG_MORE = /^(PREPARE|LISTEN|DECLARE\b[\s\S]*?\bWITH\s+HOLD|DO)\b/i;

/** A session-level advisory lock, held after the transaction until unlocked (the _xact_ ones end with it). */
const SESSION_LOCK = /\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(/i;

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
const TEMP_PG = new RegExp(
  '^(?:CREATE\\s+(?:OR\\s+REPLACE\\s+)?(?:(?:GLOBAL|LOCAL)\\s+)?(?:TEMP|TEMPORARY)\\s+(?:(?:UNLOGGED\\s+)?TABLE|VIEW|RECURSIVE\\s+VIEW|SEQUENCE)\\b' +
    '|CREATE\\s+(?:OR\\s+REPLACE\\s+)?(?:UNLOGGED\\s+)?(?:TABLE|VIEW|RECURSIVE\\s+VIEW|SEQUENCE|MATERIALIZED\\s+VIEW)\\s+(?:IF\\s+NOT\\s+EXISTS\\s+)?pg_temp\\s*\\.' +
    '|SELECT\\b[\\s\\S]*?\\bINTO\\s+(?:TEMP|TEMPORARY)\\b)',
  'i',
);
const TEMP_SQLITE = /^CREATE\s+(?:(?:TEMP|TEMPORARY)\s+(?:TABLE|VIEW|TRIGGER)\b|(?:VIRTUAL\s+)?(?:TABLE|VIEW|TRIGGER|INDEX)\s+(?:IF\s+NOT\s+EXISTS\s+)?temp\s*\.)/i;

/**
 * A call of set_config whose third argument is not written `true` (SET LOCAL's equivalent): false
 * is a SET by function call, and anything else (a parameter, an expression) may be false.
 */
function setConfigForSession(plain: string): boolean {
  const call = /\bset_config\s*\(/gi;
  for (let m = call.exec(plain); m !== null; m = call.exec(plain)) {
    let depth = 1;
    let i = call.lastIndex;
    for (; i < plain.length && depth > 0; i++) {
      if (plain[i] === '(') depth++;
      else if (plain[i] === ')') depth--;
    }
    const args = plain.slice(call.lastIndex, depth === 0 ? i - 1 : i);
    if (!/,\s*true\s*$/i.test(args)) return true;
  }
  return false;
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
 * DISCARD and set_config, a SQLite PRAGMA that sets something, a temporary object. Its first
 * words, or undefined if it has none. Quoted text and comments, as `engine` reads them, SQLite
 * trigger bodies and PostgreSQL BEGIN ATOMIC bodies are skipped; text this cannot read is left to
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
  let plain = blanked(sql, engine);
  // Before trigger bodies are blanked, with their CREATE: a TEMP trigger stays on the connection too.
  if (engine === 'sqlite' && plain.split(';').some((s) => TEMP_SQLITE.test(s.trimStart()))) return 'CREATE TEMP';
  plain = plain.replace(engine === 'sqlite' ? TRIGGER_BODY : ATOMIC_BODY, ' ');
  if (engine === 'postgres' && setConfigForSession(plain)) return 'set_config(…, false)';
  if (engine === 'postgres' && SESSION_LOCK.test(plain)) return 'pg_advisory_lock';
  for (const statement of plain.split(';')) {
    const text = statement.trimStart();
    const m = CONTROL.exec(text) ?? (engine === 'postgres' ? (SESSION_PG.exec(text) ?? SESSION_PG_MORE.exec(text)) : undefined);
    if (m) return /^DECLARE\b/i.test(m[1]!) ? 'DECLARE … WITH HOLD' : m[1]!.replace(/\s+/g, ' ').toUpperCase();
    if (engine === 'postgres' && TEMP_PG.test(text) && !/\bON\s+COMMIT\s+DROP\b/i.test(text)) return 'CREATE TEMP';
    const pragma = engine === 'sqlite' ? PRAGMA.exec(text) : null;
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
  return !CONTROL.test(statement);
}

/**
 * `sql` with every string, quoted identifier and comment replaced by a blank, as the engine
 * reads them: SQLite's `…`, […] and '' escapes; PostgreSQL's E'…' backslash escapes, dollar quotes
 * and nested block comments.
 */
function blanked(sql: string, engine: Engine): string {
  return segments(sql, engine)
    .map((s) => (s.plain ? s.text : ' '))
    .join('');
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

/** `sql` cut into the parts the engine reads as SQL (`plain`) and its strings, quoted identifiers and comments. */
function segments(sql: string, engine: Engine): Array<{ plain: boolean; text: string }> {
  const pg = engine === 'postgres';
  const out: Array<{ plain: boolean; text: string }> = [];
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
