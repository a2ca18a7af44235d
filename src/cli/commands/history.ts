import { CHAIN_OPTION, READING, tokenRef, WINDOW_OPTIONS, windowOf, withStore, type Command } from '../command.ts';
import { errorInJson, HISTORY_LISTING, historyTable, json, jsonArrayChunks, jsonError, outChunks, outPaged, pagedChunks, table } from '../output.ts';
import { StorageError } from '../../errors.ts';

const history: Command = {
  name: 'history',
  summary: "show a job's audit log: every transition, config change and trade",
  usage: '<token> [--chain C] [--since T] [--limit N]',
  options: { ...CHAIN_OPTION, ...WINDOW_OPTIONS },
  positionals: [1, 1],
  async run(ctx) {
    const ref = tokenRef(ctx);
    const window = windowOf(ctx);
    if (window.since !== undefined || window.limit !== undefined) {
      const entries = await withStore(ctx, READING, (store) => store.history(ref, window));
      outChunks(ctx.io, ctx.json ? jsonArrayChunks(entries) : historyTable(entries));
      return;
    }
    // The whole history, however long: read a page at a time (see pagedChunks).
    await withStore(ctx, READING, (store) => outPaged(ctx.io, pagedChunks(HISTORY_LISTING, () => store.historyPages(ref), ctx.json)));
  },
};

const verify: Command = {
  name: 'verify',
  summary: "check the audit log's hash chains against the jobs",
  usage: '',
  details:
    'Checks every hash and link, replays each job\'s entries against the job, checks every trade against the entry ' +
    'that last recorded it, and checks that each job\'s balances add up to its executed trades. Exits 0 when all of it holds, 5 (storage) when an entry, a job or a trade was altered, ' +
    'removed or added, or a row cannot be read. A deletion that leaves the rest consistent is not found: a job removed with its whole stream ' +
    'and trades, a stream\'s last entries removed with the job row set back to match them, a daemon\'s stream. --json also lists each ' +
    'stream\'s head (seq and hash): the chain has no secret, so only heads kept elsewhere show such a deletion, or a history rewritten ' +
    'with every hash recomputed.',
  options: {},
  positionals: [0, 0],
  async run(ctx) {
    const report = await withStore(ctx, READING, (store) => store.verifyAudit());
    const failure = report.problems.length === 0
      ? undefined
      : new StorageError('STORAGE_CORRUPT', `the audit log has ${report.problems.length} problem(s)`, {
        hint: 'restore the database from a backup and investigate who changed it',
      });
    if (ctx.json) {
      // One document: the report, and the error beside it when there is one.
      ctx.io.out(json(failure ? { ...report, error: jsonError(failure) } : report));
      if (failure) errorInJson.add(failure);
    } else if (failure) {
      ctx.io.out(table(['STREAM', 'SEQ', 'PROBLEM'], report.problems.map((p) => [p.stream, p.seq, p.problem])));
    } else {
      ctx.io.out(`Audit log intact: ${plural(report.entries, 'entry', 'entries')} in ${plural(report.streams, 'stream', 'streams')}.\n`);
    }
    if (failure) throw failure;
  },
};

export const historyCommands: readonly Command[] = [history, verify];

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}
