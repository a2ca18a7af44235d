/** A job's status. */
export const JobStatus = Object.freeze({
  IDLE: 'IDLE',
  RUNNING: 'RUNNING',
  PAUSED: 'PAUSED',
  LIQUIDATING: 'LIQUIDATING',
  ERROR: 'ERROR',
} as const);
export type JobStatus = (typeof JobStatus)[keyof typeof JobStatus];
export const JOB_STATUSES: readonly JobStatus[] = Object.freeze(Object.values(JobStatus));
/** The statuses a daemon runs a job in (a job in another is taken by one only for an open intent). */
export const ACTIVE_STATUSES: readonly JobStatus[] = Object.freeze(['RUNNING', 'LIQUIDATING'] as const);

/** How a job trades. */
export const JobMode = Object.freeze({ ACCUMULATE: 'ACCUMULATE', LIQUIDITY: 'LIQUIDITY' } as const);
export type JobMode = (typeof JobMode)[keyof typeof JobMode];
export const JOB_MODES: readonly JobMode[] = Object.freeze(Object.values(JobMode));

/** The table and everything in it frozen: the library enforces the lifecycle from it, so no caller may change it. */
function deepFreeze<T extends Record<string, Transition>>(table: T): T {
  for (const t of Object.values(table)) Object.freeze(Object.freeze(t).from);
  return Object.freeze(table);
}

/** A lifecycle action and the statuses it may be taken from. */
export interface Transition {
  readonly from: readonly JobStatus[];
  readonly to: JobStatus;
}

/**
 * The lifecycle (seed 000). Enforced twice: here, for a precise error, and in the database by
 * a guarded `UPDATE … WHERE status = <expected>`, so that a concurrent writer cannot slip
 * between the check and the write.
 */
export const TRANSITIONS = deepFreeze({
  start: { from: ['IDLE'], to: 'RUNNING' },
  pause: { from: ['RUNNING'], to: 'PAUSED' },
  resume: { from: ['PAUSED', 'ERROR'], to: 'RUNNING' },
  liquidate: { from: ['RUNNING', 'PAUSED', 'ERROR'], to: 'LIQUIDATING' },
  completeLiquidation: { from: ['LIQUIDATING'], to: 'IDLE' },
  fail: { from: JOB_STATUSES, to: 'ERROR' },
} as const satisfies Record<string, Transition>);
export type LifecycleAction = keyof typeof TRANSITIONS;
export const LIFECYCLE_ACTIONS = Object.freeze(Object.keys(TRANSITIONS) as LifecycleAction[]);

/** The actions allowed from `status`, in table order. */
export function allowedActions(status: JobStatus): LifecycleAction[] {
  return LIFECYCLE_ACTIONS.filter((a) => (TRANSITIONS[a].from as readonly JobStatus[]).includes(status));
}
