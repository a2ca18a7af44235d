/**
 * Free text stored in a row and hashed into the audit log (a failure reason, an exchange's error,
 * an actor): what both engines store exactly as given. Lone UTF-16 surrogates become U+FFFD (the
 * drivers would write U+FFFD anyway, so the stored text would differ from the hashed one and
 * `verifyAudit` would report tampering) and NUL becomes U+FFFD (PostgreSQL refuses it in text).
 * Cut to at most `max` UTF-16 units, never inside a surrogate pair.
 */
export function storableText(text: string, max: number): string {
  let s = text.toWellFormed().replaceAll('\u0000', '\uFFFD');
  if (s.length > max) {
    s = s.slice(0, max);
    const last = s.charCodeAt(s.length - 1);
    if (last >= 0xd800 && last <= 0xdbff) s = s.slice(0, -1);
  }
  return s;
}

/** Whether `text` is stored exactly as given (see {@link storableText}). */
export function isStorableText(text: string): boolean {
  return text.isWellFormed() && !text.includes('\u0000');
}

/**
 * Control characters written as `\xNN`: text from outside (an exchange's error, a reason given
 * to a job) cannot move the cursor, recolour the terminal or forge a line of output.
 */
export function escapeControls(text: string): string {
  return text
    .replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
    // Bidirectional overrides and isolates would reorder what follows them on the line; the line
    // and paragraph separators break it in some log viewers.
    .replace(/[\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

