/** The botstate side of every case: the public API, called as an application would. */
import type { RecordTradeInput } from '../src/ledger/ledger.ts';
import type { Store } from '../src/store/store.ts';
import type { Impl } from './harness.ts';
import { tradeAmounts } from './workload.ts';

/** `store.ledger.recordTrade`: a BUY (DCA) with a new clientOrderId and 18-decimal amounts each time. */
export function botstateTrade(store: Store, jobId: string, prefix: string): Impl {
  let first = 0;
  let inputs: RecordTradeInput[] = [];
  return {
    label: 'botstate',
    async: true,
    prepare(start, count) {
      first = start;
      inputs = [];
      for (let k = 0; k < count; k++) {
        inputs.push({ job: { id: jobId }, clientOrderId: `${prefix}-${start + k}`, side: 'BUY', reason: 'DCA', ...tradeAmounts(start + k) });
      }
    },
    run(i) {
      return store.ledger.recordTrade(inputs[i - first]!);
    },
  };
}

/** One lifecycle transition: `pause` and `resume` of the same job, alternately. */
export function botstateTransition(store: Store, jobId: string): Impl {
  let paused = false;
  const ref = { id: jobId };
  return {
    label: 'botstate',
    async: true,
    prepare() {},
    run() {
      // A failure aborts the run, so flipping before the outcome is known is safe.
      const done = paused ? store.jobs.resume(ref) : store.jobs.pause(ref);
      paused = !paused;
      return done;
    },
  };
}
