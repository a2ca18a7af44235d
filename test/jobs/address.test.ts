import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { keccak_256 } from '@noble/hashes/sha3.js';
import { ValidationError } from '../../src/errors.ts';
import { isNormalizedAddress, normalizeAddress } from '../../src/jobs/address.ts';

function throwsValidation(f: () => unknown, code: string, ...patterns: RegExp[]): ValidationError {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ValidationError, `expected a ValidationError, got ${String(caught)}`);
  assert.equal(caught.code, code);
  for (const p of patterns) assert.match(caught.message, p);
  return caught;
}

// The examples of EIP-55 (https://eips.ethereum.org/EIPS/eip-55); each is its own checksum. The spec lists
// the first two as "all caps" and the next two as "all lower": their letters happen to need that case.
const EIP55_EXAMPLES = [
  '0x52908400098527886E0F7030069857D2E4169EE7',
  '0x8617E340B3D01FA5F11F306F4090FD50E238070D',
  '0xde709f2102306220921060314715629080e2fb77',
  '0x27b1fdb04752bbc536007a920d24acb045561c26',
  '0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed',
  '0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359',
  '0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB',
  '0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb',
];
const MIXED_EXAMPLES = EIP55_EXAMPLES.slice(4);

const DEMO_TOKEN = '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07';

/** Swap the case of the first letter in the 40 hex digits (a checksum typo), if there is one. */
function flipOneLetter(addr: string, nth = 0): string | undefined {
  let seen = 0;
  for (let i = 2; i < addr.length; i++) {
    const c = addr[i] as string;
    if (/[a-fA-F]/.test(c)) {
      if (seen++ === nth) {
        const flipped = c === c.toLowerCase() ? c.toUpperCase() : c.toLowerCase();
        return addr.slice(0, i) + flipped + addr.slice(i + 1);
      }
    }
  }
  return undefined;
}

describe('keccak_256 is the Ethereum Keccak (not NIST SHA3-256)', () => {
  it('hash of the empty string', () => {
    assert.equal(Buffer.from(keccak_256(new Uint8Array())).toString('hex'),
      'c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470');
  });
});

describe('normalizeAddress: EIP-55 test vectors', () => {
  for (const addr of EIP55_EXAMPLES) {
    it(addr, () => {
      assert.equal(normalizeAddress(addr), addr);
      assert.equal(normalizeAddress(addr.toLowerCase()), addr);
      assert.equal(normalizeAddress(`0x${addr.slice(2).toUpperCase()}`), addr);
      assert.equal(isNormalizedAddress(addr), true);
    });
  }

  it(`the demo token ${DEMO_TOKEN} is a valid EIP-55 checksum`, () => {
    assert.equal(normalizeAddress(DEMO_TOKEN), DEMO_TOKEN);
    assert.equal(normalizeAddress(DEMO_TOKEN.toLowerCase()), DEMO_TOKEN);
    assert.equal(isNormalizedAddress(DEMO_TOKEN), true);
  });

  it('address with digits only has one form', () => {
    const a = '0x1234567890123456789012345678901234567890';
    assert.equal(normalizeAddress(a), a);
  });

  it('zero address is well-formed', () => {
    assert.equal(normalizeAddress(`0x${'0'.repeat(40)}`), `0x${'0'.repeat(40)}`);
  });
});

describe('normalizeAddress refuses', () => {
  it('a mixed-case address whose checksum is wrong, without suggesting the "right" spelling', () => {
    for (const addr of [...MIXED_EXAMPLES, DEMO_TOKEN]) {
      const typo = flipOneLetter(addr) as string;
      const e = throwsValidation(() => normalizeAddress(typo, { field: 'token address' }), 'INVALID_CHECKSUM',
        /^token address 0x[0-9a-fA-F]{40} fails its EIP-55 checksum/, /typo/);
      assert.ok(e.message.includes(typo));
      assert.ok(!e.message.includes(addr), 'must not show the expected checksum');
      assert.ok(!JSON.stringify(e.details).includes(addr));
      assert.match(e.hint ?? '', /trusted source/);
      assert.match(e.hint ?? '', /lower case/);
    }
  });

  it('a checksummed address with any single letter flipped', () => {
    const letters = DEMO_TOKEN.slice(2).replace(/[0-9]/g, '').length;
    for (let n = 0; n < letters; n++) {
      throwsValidation(() => normalizeAddress(flipOneLetter(DEMO_TOKEN, n) as string), 'INVALID_CHECKSUM');
    }
  });

  const malformed: Array<[string, RegExp]> = [
    ['', /got 0|does not start/],
    ['0x', /got 0 hex digits/],
    ['0x123', /got 3 hex digits/],
    [`0x${'a'.repeat(39)}`, /got 39 hex digits/],
    [`0x${'a'.repeat(41)}`, /got 41 hex digits/],
    [`0x${'g'.repeat(40)}`, /not a hex digit/],
    [`0x${'a'.repeat(39)}z`, /not a hex digit/],
    [`0X${'a'.repeat(40)}`, /lower-case "0x"/],
    ['a'.repeat(40), /"0x" prefix is missing/],
    [` 0x${'a'.repeat(40)}`, /spaces/],
    [`0x${'a'.repeat(40)}\n`, /spaces/],
    ['hello', /does not start with "0x"/],
    [`0x${'a'.repeat(38)}é1`, /not a hex digit/],
    [`0x${'a'.repeat(20)}-${'a'.repeat(19)}`, /not a hex digit/],
  ];
  for (const [input, why] of malformed) {
    it(`malformed ${JSON.stringify(input)}`, () => {
      const e = throwsValidation(() => normalizeAddress(input, { field: 'token address' }), 'INVALID_ADDRESS',
        /^token address ".*" is not an EVM address: expected 0x followed by 40 hex digits/, why);
      assert.equal(typeof e.hint, 'string');
    });
  }

  it('non-strings', () => {
    throwsValidation(() => normalizeAddress(42 as unknown as string), 'INVALID_ADDRESS', /must be a string, got the number 42/);
    throwsValidation(() => normalizeAddress(null as unknown as string), 'INVALID_ADDRESS', /must be a string/);
  });

  it('defaults the field name to address', () => {
    throwsValidation(() => normalizeAddress('0x1'), 'INVALID_ADDRESS', /^address "0x1"/);
  });
});

describe('properties', () => {
  const hex40 = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((b) => Buffer.from(b).toString('hex'));

  it('the checksummed form is a fixed point, case-insensitive, and differs from the input only in case', () => {
    fc.assert(fc.property(hex40, (h) => {
      const c = normalizeAddress(`0x${h}`);
      assert.equal(c.toLowerCase(), `0x${h}`);
      assert.equal(normalizeAddress(c), c);
      assert.equal(normalizeAddress(`0x${h.toUpperCase()}`), c);
      assert.equal(isNormalizedAddress(c), true);
      // Independent restatement of EIP-55 for each character.
      const hash = keccak_256(new TextEncoder().encode(h));
      for (let i = 0; i < 40; i++) {
        const nibble = ((hash[i >> 1] as number) >> (i % 2 === 0 ? 4 : 0)) & 15;
        const ch = c[i + 2] as string;
        if (/[0-9]/.test(ch)) continue;
        assert.equal(ch === ch.toUpperCase(), nibble >= 8, `char ${i} of ${c}`);
      }
    }), { numRuns: 500 });
  });

  it('a random mixed-case spelling is accepted iff it is the checksum', () => {
    fc.assert(fc.property(hex40, fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }), (h, upper) => {
      const spelled = `0x${[...h].map((c, i) => (upper[i] ? c.toUpperCase() : c)).join('')}`;
      const body = spelled.slice(2);
      const c = normalizeAddress(`0x${h}`);
      const uniformCase = body === body.toLowerCase() || body === body.toUpperCase();
      if (uniformCase || spelled === c) {
        assert.equal(normalizeAddress(spelled), c);
      } else {
        throwsValidation(() => normalizeAddress(spelled), 'INVALID_CHECKSUM');
        assert.equal(isNormalizedAddress(spelled), false);
      }
    }), { numRuns: 500 });
  });

  it('isNormalizedAddress is false for non-canonical spellings and junk', () => {
    assert.equal(isNormalizedAddress(DEMO_TOKEN.toLowerCase()), false);
    assert.equal(isNormalizedAddress(`0X${DEMO_TOKEN.slice(2)}`), false);
    assert.equal(isNormalizedAddress(DEMO_TOKEN.slice(2)), false);
    assert.equal(isNormalizedAddress(42), false);
    assert.equal(isNormalizedAddress(`${DEMO_TOKEN} `), false);
  });
});
