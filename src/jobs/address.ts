/**
 * EVM addresses. The canonical stored form is the EIP-55 checksummed address, so one token has exactly
 * one spelling in the database whatever case the operator typed.
 *
 * Accepted input: `0x` (lower-case x) followed by exactly 40 hex digits, nothing around it.
 * - all-lower-case or all-upper-case hex digits carry no checksum and are accepted as they are;
 * - mixed case is an EIP-55 checksum and must match exactly, else `ValidationError('INVALID_CHECKSUM')`.
 * `0X…`, a missing prefix, and surrounding whitespace are refused (`INVALID_ADDRESS`): other EVM tools
 * disagree on them, so we accept only the one spelling they all agree on.
 * The zero address is well-formed and accepted here; whether it makes sense is the caller's rule.
 *
 * @example
 * normalizeAddress('0xbbd9ade16525acb4b336b6dad3b9762901522b07');
 * // '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07'
 */
import { keccak_256 } from '@noble/hashes/sha3.js';
import { ValidationError } from '../errors.ts';
import { described } from '../util/values.ts';

const HEX40_RE = /^[0-9a-fA-F]{40}$/;
const HEX_CHARS_RE = /^[0-9a-fA-F]*$/;
const LOWER_RE = /^[0-9a-f]{40}$/;
const UPPER_RE = /^[0-9A-F]{40}$/;

/** Options of {@link normalizeAddress}. */
export interface NormalizeAddressOptions {
  /** Name of the value in error messages. Default `'address'`, e.g. `'token address'`. */
  readonly field?: string;
}

/** EIP-55: upper-case each letter whose nibble of keccak256(lower-case hex, as ASCII) is ≥ 8. */
function checksum(lowerHex: string): string {
  const bytes = new Uint8Array(40);
  for (let i = 0; i < 40; i++) bytes[i] = lowerHex.charCodeAt(i);
  const hash = keccak_256(bytes);
  let out = '0x';
  for (let i = 0; i < 40; i++) {
    const c = lowerHex[i] as string;
    const byte = hash[i >> 1] as number;
    const nibble = (i & 1) === 0 ? byte >> 4 : byte & 0x0f;
    out += nibble >= 8 && c > '9' ? c.toUpperCase() : c;
  }
  return out;
}

function shown(input: string): string {
  return JSON.stringify(input.length > 60 ? `${input.slice(0, 57)}...` : input);
}

function malformed(field: string, input: string, why: string): ValidationError {
  return new ValidationError('INVALID_ADDRESS',
    `${field} ${shown(input)} is not an EVM address: expected 0x followed by 40 hex digits (${why})`, {
      hint: `Copy ${field} again from a trusted source: "0x" and 40 characters 0-9/a-f.`,
      details: { field, input: input.slice(0, 100), reason: why },
    });
}

function describeMalformed(input: string): string {
  if (input.trim() !== input) return 'remove the spaces around it';
  if (input.startsWith('0X')) return 'write the prefix as lower-case "0x"';
  if (!input.startsWith('0x')) return HEX40_RE.test(input) ? 'the "0x" prefix is missing' : 'it does not start with "0x"';
  const body = input.slice(2);
  if (!HEX_CHARS_RE.test(body)) return 'it contains a character that is not a hex digit';
  return `got ${body.length} hex digits`;
}

/**
 * Validate an EVM address and return its EIP-55 checksummed form (the canonical stored form).
 *
 * @throws ValidationError `INVALID_ADDRESS` when malformed, `INVALID_CHECKSUM` when mixed case does not
 *   match EIP-55 (likely a typo).
 */
export function normalizeAddress(input: string, opts?: NormalizeAddressOptions): string {
  const field = opts?.field ?? 'address';
  if (typeof input !== 'string') {
    throw new ValidationError('INVALID_ADDRESS', `${field} must be a string, got ${described(input)}`, {
      hint: `Pass ${field} as text: "0x" and 40 hex digits.`,
      details: { field, reason: 'type' },
    });
  }
  if (input.length !== 42 || !input.startsWith('0x') || !HEX40_RE.test(input.slice(2))) {
    throw malformed(field, input, describeMalformed(input));
  }
  const body = input.slice(2);
  const lower = LOWER_RE.test(body);
  const expected = checksum(lower ? body : body.toLowerCase());
  if (lower || UPPER_RE.test(body) || expected === input) return expected;
  // Deliberately not showing the expected spelling: copying it would "fix" a typo into a wrong address.
  throw new ValidationError('INVALID_CHECKSUM',
    `${field} ${input} fails its EIP-55 checksum: the mix of upper- and lower-case letters is wrong, so it probably contains a typo`, {
      hint: `Copy ${field} again from a trusted source, or pass it all in lower case to skip the checksum check.`,
      details: { field, input },
    });
}

/** True iff `s` is already in canonical (EIP-55 checksummed) form, i.e. `normalizeAddress(s) === s`. Never throws. */
export function isNormalizedAddress(s: unknown): s is string {
  return typeof s === 'string' && s.length === 42 && s.startsWith('0x') && HEX40_RE.test(s.slice(2))
    && checksum(s.slice(2).toLowerCase()) === s;
}
