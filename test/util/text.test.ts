import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hideCredentials } from '../../src/store/location.ts';
import { escapeControls } from '../../src/util/text.ts';

test('escapeControls shows what could move the cursor, recolour, reorder or break a line, and leaves the rest', () => {
  assert.equal(escapeControls('a\nb\r\u001b[31mc\u0000'), 'a\\x0ab\\x0d\\x1b[31mc\\x00');
  assert.equal(escapeControls('x\u202ey\u2066z'), 'x\\u202ey\\u2066z');
  // The line and paragraph separators break a line in some log viewers.
  assert.equal(escapeControls('one\u2028two\u2029three'), 'one\\u2028two\\u2029three');
  assert.equal(escapeControls('plain ünïcode 価格 → 1.5'), 'plain ünïcode 価格 → 1.5');
});

test('hideCredentials hides the password of a user:password@ in a URL, with or without its //', () => {
  assert.equal(hideCredentials('postgres://bob:s3cret@h:5432/db'), 'postgres://bob:***@h:5432/db');
  assert.equal(hideCredentials('postgres:bob:s3cret@h/db'), 'postgres:bob:***@h/db');
  assert.equal(hideCredentials('sqlite:postgres://bob:s3cret@h/db'), 'sqlite:postgres:***@h/db');
  // A password holding / or @.
  assert.equal(hideCredentials('postgres:u:se/cret@h/db'), 'postgres:u:***@h/db');
  assert.equal(hideCredentials('postgres:u:p@ss@h/db'), 'postgres:u:***@h/db');
  assert.equal(hideCredentials('postgres://u:p@ss/w@h:5432/db'), 'postgres://u:***@h:5432/db');
  assert.equal(hideCredentials('postgres://bob@h/db'), 'postgres://bob@h/db');
  assert.equal(hideCredentials('./my.db'), './my.db');
});
