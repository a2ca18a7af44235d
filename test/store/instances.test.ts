import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pidExists } from '../../src/store/instances.ts';

test('pidExists: a running process exists, an exited one does not', async () => {
  assert.equal(pidExists(process.pid), true);
  const child = spawn('sleep', ['30']);
  await once(child, 'spawn');
  assert.equal(pidExists(child.pid!), true);
  child.kill('SIGKILL');
  await once(child, 'exit');
  assert.equal(pidExists(child.pid!), false);
});

test('pidExists: a killed process its parent has not reaped yet (a zombie) does not count as running', { skip: process.platform !== 'linux' }, async () => {
  // `sleep 0` is started in the background, then its parent replaces itself with `sleep 30`,
  // which never waits for it: it stays a zombie until `sleep 30` ends.
  const parent = spawn('sh', ['-c', 'sleep 0 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const [line] = (await once(parent.stdout!, 'data')) as [Buffer];
    const zombie = Number(line.toString().trim());
    for (let i = 0; i < 200 && !/\) Z /.test(readFileSync(`/proc/${zombie}/stat`, 'latin1')); i++) await new Promise((r) => setTimeout(r, 10));
    assert.match(readFileSync(`/proc/${zombie}/stat`, 'latin1'), /\) Z /, 'the child became a zombie');
    assert.equal(pidExists(zombie), false);
    assert.equal(pidExists(parent.pid!), true);
  } finally {
    parent.kill('SIGKILL');
  }
});
