/**
 * A writer that never pauses, as a busy daemon is:
 *   node test/helpers/sustained-writer.ts <db> <seconds> [power|process]
 * 64 jobs trading back to back (intent, then fill) through one store; prints "ready" once it
 * writes, then the number of trades when the time is up.
 */
import { openStore } from '../../src/store/store.ts';

const [path, seconds, durability = 'power'] = process.argv.slice(2);
const store = await openStore(path!, { durability: durability as 'power' | 'process', groupCommit: true });
try {
  const ids: string[] = [];
  await store.transaction(async () => {
    for (let i = 1; i <= 64; i++) ids.push((await store.jobs.start({ tokenAddress: `0x${(0xa000 + i).toString(16).padStart(40, '0')}` })).id);
  });
  const end = Date.now() + Number(seconds) * 1000;
  let trades = 0;
  process.stdout.write('ready\n');
  await Promise.all(
    ids.map(async (id) => {
      while (Date.now() < end) {
        const { trade } = await store.ledger.recordIntent({ job: { id }, side: 'BUY', reason: 'DCA', quoteAmount: '10' });
        await store.ledger.settle(trade.clientOrderId, { status: 'EXECUTED', baseAmount: '1', quoteAmount: '10', priceUsd: '10' });
        trades++;
      }
    }),
  );
  process.stdout.write(`${trades}\n`);
} finally {
  await store.close();
}
