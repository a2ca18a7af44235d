/**
 * `node test/helpers/wal-sync-close-child.ts <dir>`: a WalSync closed while a wait for an fsync
 * that has already returned is still pending (its answer not yet delivered to this thread).
 * Nothing else keeps this process alive: if that late answer let the fsync thread go unref'd
 * while close() waits for the thread to exit, Node ends the process with exit code 13 (an
 * unsettled top-level await) instead of printing "closed".
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WalSync } from '../../src/store/sqlite/wal-sync.ts';

const db = join(process.argv[2]!, 'close.db');
const wal = `${db}-wal`;
writeFileSync(wal, '');
writeFileSync(`${wal}.mode`, 'gate');
const sync = new WalSync(db, new URL('./wal-sync-workers.ts', import.meta.url));
sync.startThread();
for (let i = 0; !sync.threaded; i++) {
  if (i > 2000) throw new Error('the fsync thread did not come up');
  await sleep(5);
}
writeFileSync(`${wal}.armed`, ''); // from here each fsync waits for <wal>.release
const n = sync.request();
const waiter = sync.durable(n); // waits on DONE (the thread is ref'd while it does)
writeFileSync(`${wal}.release`, '');
// The fsync returns while this thread is busy: the wait's answer is queued, not yet delivered.
while (sync.done < n);
await sync.close();
await waiter;
process.stdout.write('closed\n');
