/**
 * The package root names every type its public API takes or returns (typechecked by `npm test`'s
 * pretest), so that a user never needs a deep import, which the package's exports map refuses.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as botstate from '../../src/index.ts';
import type {
  AccumulateConfig, Decision, Executor, LimitsConfig, LiquidityConfig, Migration, NormalizeAddressOptions, SqlParam, StateChange, Store, TradeInput,
} from '../../src/index.ts';

test('the types of the public API are named from the package root', () => {
  // Each line fails to typecheck if the root stops exporting the type or it stops matching its use.
  const params: Parameters<Executor['run']>[1] = ['x', 1, null] satisfies SqlParam[];
  const applied: Awaited<ReturnType<Store['migrate']>> = [] satisfies Migration[];
  const state: Decision['state'] = {} satisfies StateChange;
  const sections: [AccumulateConfig, LiquidityConfig, LimitsConfig] = [
    botstate.defaultConfig().accumulate, botstate.defaultConfig().liquidity, botstate.defaultConfig().limits,
  ];
  const input: TradeInput = { job: { id: 'j' }, clientOrderId: 'c-1', side: 'BUY', reason: 'DCA' };
  const options: NormalizeAddressOptions = {};
  assert.ok(params && applied && state && sections && input && options);
  assert.equal(typeof botstate.RuleError, 'function');
});
