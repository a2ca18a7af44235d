/**
 * A child process for the concurrent-migration test:
 *   node test/helpers/migrate-child.ts <url> <startAtEpochMs>
 * waits until startAt (so that several children start at the same moment), opens the store
 * without touching the schema, migrates it, and prints the versions this process applied as JSON.
 */
import { openStore } from '../../src/store/store.ts';

const [url, startAt] = process.argv.slice(2);
if (url === undefined) throw new Error('usage: migrate-child.ts <url> [startAtEpochMs]');
const wait = Number(startAt ?? 0) - Date.now();
if (wait > 0) await new Promise((r) => setTimeout(r, wait));
const store = await openStore(url, { schema: 'none' });
try {
  const applied = await store.migrate();
  const status = await store.schemaStatus();
  process.stdout.write(JSON.stringify({ applied: applied.map((m) => m.version), current: status.current }) + '\n');
} finally {
  await store.close();
}
