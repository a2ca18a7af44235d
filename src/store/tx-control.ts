/**
 * Statements that would end or begin a transaction behind store.transaction's back: BEGIN,
 * START TRANSACTION, COMMIT, END, ROLLBACK (not ROLLBACK TO a savepoint), ABORT and PREPARE
 * TRANSACTION. SAVEPOINT, RELEASE and ROLLBACK TO stay allowed: inside a transaction they never
 * end it.
 */
const CONTROL = /^(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK(?!\s+TO\b)|ABORT|PREPARE\s+TRANSACTION)\b/i;

/**
 * Quoted text and comments, which may hold any word: SQL strings ('' escapes a quote), quoted
 * identifiers ("…", `…`, […]), PostgreSQL dollar quotes ($$…$$, $tag$…$tag$), -- and /* comments.
 */
const QUOTED = /'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?\$\1\$|--[^\n]*|\/\*[\s\S]*?\*\//g;

/**
 * A SQLite trigger's body (`CREATE TRIGGER … BEGIN stmt; … END`): its statements are not the
 * script's, and its closing END, after a `;`, is not a statement. No statement of a body starts
 * with END, so the first `; END` closes it.
 */
const TRIGGER_BODY = /\bCREATE\s+(?:TEMP\s+|TEMPORARY\s+)?TRIGGER\b[\s\S]*?\bBEGIN\b[\s\S]*?;\s*END\b/gi;

/**
 * The transaction-control statement in `sql` (a statement, or a script of several separated by
 * `;`), as written, or undefined if it has none. Quoted text, comments and trigger bodies are
 * skipped; text this cannot read is left to the database.
 */
export function transactionControl(sql: string): string | undefined {
  const plain = sql.replace(QUOTED, ' ').replace(TRIGGER_BODY, ' ');
  for (const statement of plain.split(';')) {
    const m = CONTROL.exec(statement.trimStart());
    if (m) return m[1]!.replace(/\s+/g, ' ').toUpperCase();
  }
  return undefined;
}
