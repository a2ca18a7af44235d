/**
 * PostgreSQL URL parameters: node-postgres reads the ones it knows and ignores the rest without a
 * word, and misreads some values rather than refusing them. botstate refuses those before
 * connecting (USAGE, exit 2 in the CLI), and reads connect_timeout itself.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { isBotstateError } from '../../src/errors.ts';
import { openStore } from '../../src/index.ts';
import { describeLocation, parseLocation } from '../../src/store/location.ts';

const BASE = 'postgres://u@127.0.0.1:1/x';
const refused = (query: string, message: RegExp) =>
  assert.throws(() => parseLocation(`${BASE}?${query}`), (e: unknown) => isBotstateError(e, 'USAGE') && message.test(e.message), query);

describe('PostgreSQL URL parameters', () => {
  it('an unknown or misspelt parameter is refused, naming it, rather than ignored (a misspelt sslmode would connect without SSL)', () => {
    refused('sslmdoe=require', /parameter "sslmdoe" is not one botstate or node-postgres reads/);
    refused('schema=a&sslmdoe=require&b=1', /parameter "sslmdoe" is not one/);
    refused('dbname=b', /"dbname" is a libpq parameter/);
    refused('constructor=1', /parameter "constructor" is not one botstate or node-postgres reads/);
  });

  it("libpq's parameters that node-postgres does not implement are refused as such (a URL copied from a provider names them)", () => {
    refused('keepalives=1', /"keepalives" is a libpq parameter that node-postgres, botstate's driver, does not implement$/);
    refused('target_session_attrs=read-write', /"target_session_attrs" is a libpq parameter/);
    refused('sslmode=verify-full&channel_binding=require', /channel_binding "require" is not disable or prefer$/);
    refused('gssencmode=require', /gssencmode "require" is not disable or prefer/);
    assert.throws(() => parseLocation(`${BASE}?channel_binding=require`), (e: unknown) => isBotstateError(e, 'USAGE') && /cannot require it: write channel_binding=prefer$/.test(e.hint ?? ''));
    const neon = parseLocation(`${BASE}?sslmode=verify-full&channel_binding=prefer&gssencmode=disable`);
    assert.ok(neon.engine === 'postgres' && neon.channelBinding === true && !new URL(neon.connectionString).searchParams.has('channel_binding'));
    const none = parseLocation(`${BASE}?channel_binding=disable`);
    assert.ok(none.engine === 'postgres' && none.channelBinding === undefined);
  });

  it('parameters that would change what the session is or reads are refused, each saying why', () => {
    refused('binary=true', /may not set "binary": botstate reads every value as text/);
    refused('replication=database', /may not set "replication"/);
    refused('client_encoding=LATIN1', /may not set "client_encoding": botstate exchanges text in UTF-8/);
    refused('idle_in_transaction_session_timeout=100', /may not set "idle_in_transaction_session_timeout": botstate sets it itself/);
    refused('query_timeout=100', /may not set "query_timeout".*in doubt/);
  });

  it('values node-postgres would misread are refused: timeouts with units, ssl=false, a bad port or sslnegotiation', () => {
    refused('statement_timeout=5s', /statement_timeout "5s" is not a whole number of milliseconds/);
    refused('lock_timeout=abc', /lock_timeout "abc" is not a whole number of milliseconds/);
    refused('ssl=false', /ssl "false" is not one of true, 1, 0, no-verify/);
    refused('sslnegotiation=tls', /sslnegotiation "tls" is not postgres or direct/);
    refused('port=0', /port "0" is not a port from 1 to 65535/);
    refused('port=5432x', /port "5432x" is not a port/);
    refused('connect_timeout=abc', /connect_timeout "abc" is not a whole number of seconds from 1 to 600/);
    refused('connect_timeout=0', /connect_timeout "0" is not a whole number of seconds from 1 to 600/);
    refused('connect_timeout=601', /connect_timeout "601"/);
    refused('application_name=a&application_name=b', /gives application_name more than once/);
    refused('uselibpqcompat=1&sslmode=verify-ca', /uselibpqcompat "1" is not true or false/);
  });

  it('SSL settings that node-postgres would resolve silently against what was written are refused', () => {
    refused('ssl=0&sslmode=require', /gives both ssl and sslmode, which decide SSL over ssl/);
    refused('ssl=1&sslmode=disable', /gives both ssl and sslmode/);
    refused('ssl=0&sslrootcert=/etc/hostname', /gives both ssl and sslrootcert/);
    refused('sslnegotiation=direct', /sslnegotiation=direct needs SSL/);
    refused('sslnegotiation=direct&sslmode=disable', /sslnegotiation=direct needs SSL/);
    refused('sslnegotiation=direct&ssl=0', /sslnegotiation=direct needs SSL/);
    assert.equal(parseLocation(`${BASE}?sslnegotiation=direct&sslmode=verify-full`).engine, 'postgres');
    // node-postgres reads these files when it connects: a missing one was an "unexpected error" (exit 1).
    refused('sslmode=verify-full&sslrootcert=/nonexistent/ca.pem', /sslrootcert \/nonexistent\/ca\.pem cannot be read \(ENOENT\)/);
    refused('sslmode=verify-full&sslcert=/nonexistent/c.pem', /sslcert \/nonexistent\/c\.pem cannot be read/);
    refused('port=5433', /gives the port twice, after the host \(1\) and as port=5433/);
    assert.equal(parseLocation('postgres://u@127.0.0.1/x?port=5433').engine, 'postgres');
  });

  it('a password given as a parameter is kept out of messages, as one in the user part is', () => {
    const loc = parseLocation('postgres://u:secret1@127.0.0.1:1/x?password=secret2');
    assert.doesNotMatch(describeLocation(loc), /secret/);
    assert.match(describeLocation(loc), /password=\*\*\*/);
  });

  it('the parameters node-postgres reads as they are written are passed on; connect_timeout is read by botstate', () => {
    const loc = parseLocation(`postgres://u@127.0.0.1/x?schema=s1&application_name=bot&statement_timeout=5000&lock_timeout=0&ssl=0&port=5433&connect_timeout=3`);
    assert.equal(loc.engine, 'postgres');
    if (loc.engine !== 'postgres') return;
    assert.equal(loc.schema, 's1');
    assert.equal(loc.connectTimeoutMs, 3000);
    const passed = new URL(loc.connectionString).searchParams;
    assert.deepEqual([...passed.keys()], ['application_name', 'statement_timeout', 'lock_timeout', 'ssl', 'port']);
    assert.equal(parseLocation(BASE).engine === 'postgres' && (parseLocation(BASE) as { connectTimeoutMs?: number }).connectTimeoutMs, undefined);
  });

  it("connect_timeout bounds the wait for a server that accepts the connection and never answers (the store option, when given, wins)", async () => {
    const server = createServer(() => {}).listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as { port: number }).port;
    const timedOut = (e: unknown) => isBotstateError(e) && /connection timeout/.test(e.message);
    try {
      // Bounds far apart (1 s against the default 5 s, and the option's 1 ms): which timeout applied, not how fast.
      const wait = async (url: string, options = {}) => {
        const t0 = performance.now();
        await assert.rejects(openStore(url, options), timedOut);
        return performance.now() - t0;
      };
      const byUrl = await wait(`postgres://u@127.0.0.1:${port}/x?connect_timeout=1`);
      assert.ok(byUrl >= 950 && byUrl < 4000, `connect_timeout=1 waited ${byUrl.toFixed(0)} ms`);
      const byOption = await wait(`postgres://u@127.0.0.1:${port}/x?connect_timeout=1`, { connectTimeoutMs: 100 });
      assert.ok(byOption < 900, `connectTimeoutMs 100 waited ${byOption.toFixed(0)} ms`);
    } finally {
      server.close();
    }
  });
});

describe('SQLite paths', () => {
  it("refuses a database's -wal, -shm, -journal or -wait file while the database is there, and reads sqlite: in any case", () => {
    const dir = mkdtempSync(join(tmpdir(), 'botstate-location-'));
    try {
      const db = join(dir, 'x.db');
      for (const suffix of ['-wal', '-shm', '-journal', '-wait']) {
        // Nothing beside it: a name like any other.
        assert.deepEqual(parseLocation(`${db}${suffix}`), { engine: 'sqlite', path: `${db}${suffix}` });
      }
      // Another kind of file at the shorter name (a script called `trading` beside `trading-journal`): a name like any other.
      writeFileSync(db, '#!/bin/sh\necho hi\n');
      for (const suffix of ['-wal', '-shm', '-journal', '-wait']) assert.equal(parseLocation(`${db}${suffix}`).engine, 'sqlite');
      // A database there, written or not yet: its companions are refused.
      writeFileSync(db, '');
      for (const suffix of ['-wal', '-shm', '-journal', '-wait']) {
        for (const url of [`${db}${suffix}`, `sqlite:${db}${suffix}`]) {
          assert.throws(() => parseLocation(url), (e: unknown) => isBotstateError(e, 'USAGE') && e.message === `${db}${suffix} is the ${suffix} file of the database ${db}, which SQLite or botstate would delete`, url);
        }
      }
      writeFileSync(db, 'SQLite format 3\u0000 and the rest of a page');
      assert.throws(() => parseLocation(`${db}-wal`), (e: unknown) => isBotstateError(e, 'USAGE'));
      assert.deepEqual(parseLocation(`SQLite:${db}`), { engine: 'sqlite', path: db });
      assert.deepEqual(parseLocation(`${dir}/trading-journal`), { engine: 'sqlite', path: `${dir}/trading-journal` });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
