/**
 * A child process for the store-location tests:
 *   node test/helpers/open-child.ts [url]
 * opens the store (with no URL when none is given, so that $BOTSTATE_DB and the default apply),
 * writes one job so that the database really is used, and prints where it lives as JSON.
 */
import { openStore } from '../../src/store/store.ts';

const url = process.argv[2];
const store = await openStore(url);
try {
  const job = await store.jobs.start({ tokenAddress: '0xbbd9aDe16525acb4B336b6dAd3b9762901522B07' });
  process.stdout.write(JSON.stringify({ engine: store.engine, location: store.location, jobs: (await store.jobs.list()).length, status: job.status }) + '\n');
} finally {
  await store.close();
}
