import { hostname } from 'node:os';
import { RuleError } from '../errors.ts';
import type { Executor } from '../store/adapter.ts';
import type { Fence } from '../store/context.ts';
import { databaseNow, processAlive, RUNNING_HERE, runsForRegistration } from '../store/instances.ts';
import type { Store } from '../store/store.ts';
import { ACTIVE_STATUSES } from '../jobs/lifecycle.ts';
import { paddedChunks } from '../util/chunks.ts';

/**
 * Statuses in which a job needs a daemon (besides any job with a PENDING intent to reconcile).
 * The intents are an uncorrelated IN: both engines read the PENDING trades once per statement
 * (PostgreSQL into a hashed subplan, SQLite into a temporary index) instead of probing the
 * trades once per job, which over 10,000 jobs was most of a lease sync. (PostgreSQL hashes the
 * subquery only while its rows fit in work_mem; open intents are a handful per job at most.)
 */
const OPEN = "j.id IN (SELECT t.job_id FROM trades t WHERE t.status = 'PENDING')";
const ACTIVE = `j.status IN (${ACTIVE_STATUSES.map((s) => `'${s}'`).join(', ')}) OR ${OPEN}`;

/**
 * The leases a sync left a daemon (job id → epoch), or only their number after a start-up's
 * (which does not read them all), and which of this daemon's syncs (counted) that was.
 */
export interface KnownLeases {
  readonly fences: ReadonlyMap<string, number> | undefined;
  readonly count: number;
  readonly sync: number;
}

/** What renew({ check }) finds: of the `had` leases it was given, how many are no longer at their epoch. */
export interface LeasesKept {
  readonly had: number;
  readonly lost: number;
}

/** Called with jobs whose leases a sync is about to hand back, in its transaction, while they are still held. */
export type Leaving = (jobIds: readonly string[]) => Promise<void>;

export interface LeaseOptions {
  /** How long a lease lasts without renewal; a killed daemon's jobs move after at most this. */
  readonly ttlMs: number;
  /** The most jobs one daemon runs (default: no limit beyond its fair share). */
  readonly maxJobs?: number;
  /**
   * Replaces the clock that lease times are read from (tests). By default that is the
   * database's clock on PostgreSQL, which every daemon shares whatever its host's clock says,
   * and this process's clock on SQLite, where every daemon runs on one host.
   */
  readonly now?: () => number;
}

/** Where lease times are read from: the server's clock on PostgreSQL (daemons on several hosts share it), else this host's. */
function leaseClock(store: Store): ((tx: Executor) => Promise<number>) | undefined {
  return store.capabilities.concurrentWriters ? databaseNow : undefined;
}

/**
 * The daemon that holds a job's lease now (an owner and an expiry not passed), or undefined; an
 * expired lease is released (a new epoch, no owner), so that its daemon cannot write on woken.
 * Inside the caller's transaction; on PostgreSQL the lease row stays locked until it ends, so no
 * daemon takes the lease meanwhile. A job no daemon has leased yet has no row to lock: one is
 * inserted unowned first (what a daemon's sync would insert), so that a daemon starting on the
 * job meanwhile waits for this transaction instead of claiming the job under it.
 */
export async function leaseHolder(store: Store, tx: Executor, jobId: string): Promise<{ owner: string; expiresAt: string } | undefined> {
  const clock = leaseClock(store);
  const read = () => (clock ? clock(tx) : Date.now());
  await tx.run("INSERT INTO job_leases (job_id, owner, epoch, expires_at) VALUES (?, '', 0, ?) ON CONFLICT (job_id) DO NOTHING", [
    jobId,
    new Date(await read()).toISOString(),
  ]);
  const lease = await tx.get<{ owner: string; expires_at: string }>(
    `SELECT owner, expires_at FROM job_leases WHERE job_id = ?${store.dialect.forUpdate}`,
    [jobId],
  );
  if (lease === undefined || lease.owner === '') return undefined;
  // Read once the row is locked (its holder's transaction may have been waited for).
  const now = await read();
  // Held up to its expiry, as the daemons count it (one is taken over once expires_at < now),
  // even when its daemon looks gone: a daemon in another pid namespace (a container) on a host
  // of the same name has a pid this host does not see.
  if (Date.parse(lease.expires_at) < now) {
    // Expired, yet its daemon may only be stalled (a paused VM): it would renew the lease as it
    // wakes and write its strategy state from memory over this change. Released here with a new
    // epoch, in the caller's transaction, its fence no longer holds: it reloads the job instead.
    await tx.run("UPDATE job_leases SET owner = '', epoch = epoch + 1 WHERE job_id = ?", [jobId]);
    return undefined;
  }
  return { owner: lease.owner, expiresAt: lease.expires_at };
}

/**
 * A daemon's registration and its job leases (docs/daemon.md, "Several daemons").
 *
 * Every tick, {@link sync} heartbeats the instance, renews its leases, claims unowned or
 * expired ones up to its fair share (`ceil(active jobs / live daemons)`) with
 * `FOR UPDATE … SKIP LOCKED` (or hands back what it holds beyond that share), and returns the
 * leases it holds with their fencing epochs.
 * A claim increments the epoch, and every write of a job's runner is checked against it
 * (CallOptions.fence), so a daemon that lost a job cannot write to it any more.
 */
export class Leases {
  readonly instanceId: string;
  readonly #store: Store;
  readonly #ttlMs: number;
  readonly #maxJobs: number;
  readonly #now: ((tx: Executor) => Promise<number>) | undefined;
  readonly #host = hostname();
  #unrun = 0;
  /**
   * Set by the daemon before each sync while its exchange answers no call: since when (an ISO
   * time), and whether it is to hand its jobs over (unreachable for long, or never reached since
   * it started). Published on its instance row. A daemon that hands over takes no job and hands
   * back those it holds, open intents included, so that a daemon that can trade runs them; only
   * while another live daemon reaches its exchange and takes jobs. One that does not hand over
   * yet keeps its jobs but claims no more while such a daemon is there; and a daemon that
   * reaches its exchange gives no more jobs to one that does not.
   */
  exchangeUnreachable: { readonly since: string; readonly handOver: boolean } | undefined;
  #handingOver = false;
  /**
   * The leases the last sync that committed left this daemon (job id → epoch), or only their
   * number after a start-up's (which does not read them all): what renew({ check }) compares with.
   */
  #known: KnownLeases = { fences: new Map(), count: 0, sync: 0 };
  /** This daemon's syncs that committed, counted. */
  #syncs = 0;
  /** The jobs this daemon's syncs handed back (paused, finished, shed), with the last such sync. */
  readonly #handedBack = new Map<string, number>();
  /** The jobs the sync under way hands back (its transaction's last run). */
  #handingBack: string[] = [];

  constructor(store: Store, instanceId: string, options: LeaseOptions) {
    this.#store = store;
    this.instanceId = instanceId;
    this.#ttlMs = options.ttlMs;
    this.#maxJobs = options.maxJobs ?? Number.MAX_SAFE_INTEGER;
    const now = options.now;
    this.#now = now ? async () => now() : leaseClock(store);
  }

  /**
   * The clock of this transaction's lease times, as a function of an offset. Daemons on several
   * hosts compare each other's heartbeats and expiries: on PostgreSQL they all read the
   * server's clock, so that a host whose clock is off by more than the TTL neither takes a live
   * daemon for dead nor has its own leases taken for expired.
   */
  async #clock(tx: Executor): Promise<(offsetMs?: number) => string> {
    const base = this.#now ? await this.#now(tx) : Date.now();
    return (offsetMs = 0) => new Date(base + offsetMs).toISOString();
  }

  /**
   * Registers this daemon. Where the engine has one writer (SQLite), a second live daemon on
   * the same database is refused: one whose process still exists on this host, or that
   * heartbeated within the TTL from another host. Instances that died are marked stopped.
   */
  async register(): Promise<void> {
    await this.#store.transaction(async (tx) => {
      const iso = await this.#clock(tx);
      const now = iso();
      const others = await tx.all<{ id: string; host: string; pid: number; heartbeat_at: string; lease_ttl_ms: number | null }>(
        'SELECT id, host, pid, heartbeat_at, lease_ttl_ms FROM daemon_instances WHERE stopped_at IS NULL AND id <> ?',
        [this.instanceId],
      );
      const dead: string[] = [];
      for (const other of others) {
        // Live: it heartbeated within its own TTL (it heartbeats every third of it) and, on this
        // host, its process exists (a pid reused by another program after a crash or a reboot
        // does not count for ever). A daemon of an older version, which did not store its TTL,
        // is judged by this one's, or by a lease it still holds (unexpired, by its own TTL).
        const staleBefore = iso(-this.#ttlOf(other));
        const live = await runsForRegistration(other, staleBefore, async () =>
          (await tx.get('SELECT 1 AS held FROM job_leases WHERE owner = ? AND expires_at >= ? LIMIT 1', [other.id, now])) !== undefined);
        if (!live) {
          // A daemon that died: its jobs need not wait for their TTL. They come straight to
          // this one, each at a new epoch (one statement; the next sync hands back whatever is
          // beyond this daemon's fair share). One judged by its heartbeat alone (on another host)
          // is judged again as its row is locked: on PostgreSQL a renewal it committed since the
          // SELECT above shows here (the row is read anew), and it is then left running.
          const gone = other.host === this.#host && !processAlive(other);
          const marked = gone
            ? await tx.run(`UPDATE daemon_instances SET ${MARK_STOPPED} WHERE id = ? AND stopped_at IS NULL`, [now, other.id])
            : await tx.run(`UPDATE daemon_instances SET ${MARK_STOPPED} WHERE id = ? AND stopped_at IS NULL AND heartbeat_at <= ?`, [now, other.id, staleBefore]);
          if (marked > 0) dead.push(other.id);
        } else if (!this.#store.capabilities.concurrentWriters) {
          throw new RuleError('DAEMON_RUNNING', `another daemon (pid ${other.pid} on ${other.host}) is running on ${this.#store.location}`, {
            hint: 'run one daemon per SQLite file; stop the other first, or use PostgreSQL to run several',
            details: { instance: other.id, pid: other.pid, host: other.host },
          });
        }
      }
      for (const id of dead) {
        await tx.run('UPDATE job_leases SET owner = ?, epoch = epoch + 1, expires_at = ? WHERE owner = ?', [this.instanceId, iso(this.#ttlMs), id]);
      }
      await tx.run(
        `INSERT INTO daemon_instances (id, host, pid, started_at, heartbeat_at, stopped_at, max_jobs, lease_ttl_ms, exchange_unreachable_since) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?)
         ON CONFLICT (id) DO UPDATE SET host = excluded.host, pid = excluded.pid, started_at = excluded.started_at,
           heartbeat_at = excluded.heartbeat_at, stopped_at = NULL, max_jobs = excluded.max_jobs, lease_ttl_ms = excluded.lease_ttl_ms,
           exchange_unreachable_since = excluded.exchange_unreachable_since`,
        // An exchange already found unreachable (the daemon's first probe) is said from the start:
        // a daemon syncing meanwhile gives this one no share.
        [this.instanceId, this.#host, process.pid, now, now, storedMax(this.#maxJobs), this.#ttlMs, this.exchangeUnreachable?.since ?? null],
      );
    });
    RUNNING_HERE.add(this.instanceId);
  }

  /**
   * Heartbeats and renews, between ticks: a tick slowed down (a slow exchange) must not cost the
   * daemon its leases. With `check` (a {@link known} of before), says how many of those leases are no longer at their epoch.
   */
  async renew(options: { check?: KnownLeases } = {}): Promise<LeasesKept | undefined> {
    return this.#store.transaction(async (tx) => {
      const iso = await this.#clock(tx);
      await this.#heartbeat(tx, iso());
      await tx.run('UPDATE job_leases SET expires_at = ? WHERE owner = ? AND expires_at < ?', [iso(this.#ttlMs), this.instanceId, iso(this.#ttlMs / 2)]);
      const known = options.check;
      if (known === undefined) return undefined;
      // After it could not renew them for a while, some may have run out and been taken by another
      // daemon (a claim moves the epoch on), or released by an operator's command (so does that).
      // Not lost: a lease it holds at the epoch it had or its last sync took it at (a job paused
      // and resumed meanwhile), and one its own syncs handed back meanwhile (a job paused, or
      // shed to another daemon), which kept its epoch until another took it.
      if (known.fences === undefined) {
        const row = await tx.get<{ n: number | string }>('SELECT count(*) AS n FROM job_leases WHERE owner = ?', [this.instanceId]);
        return { had: known.count, lost: Math.max(0, known.count - Number(row?.n ?? 0)) };
      }
      // Only a lease of this daemon's or of none can be at the epoch it had: every claim moves it on.
      const rows = await tx.all<{ job_id: string; epoch: number | string; owner: string }>("SELECT job_id, epoch, owner FROM job_leases WHERE owner IN (?, '')", [this.instanceId]);
      const now = new Map(rows.map((r) => [r.job_id, r]));
      const latest = this.#known.fences;
      let lost = 0;
      for (const [id, epoch] of known.fences) {
        if ((this.#handedBack.get(id) ?? 0) > known.sync) continue;
        const row = now.get(id);
        const at = row === undefined ? undefined : Number(row.epoch);
        if (at !== epoch && !(row?.owner === this.instanceId && latest?.get(id) === at)) lost++;
      }
      return { had: known.fences.size, lost };
    });
  }

  /** The leases the last sync that committed left this daemon, for a later renew({ check }). */
  get known(): KnownLeases {
    return this.#known;
  }

  /**
   * How many active jobs no live daemon may run, at the last sync: the active jobs beyond the sum
   * of every live daemon's `--max-jobs` (0 when one of them has none).
   */
  get unrun(): number {
    return this.#unrun;
  }

  /** Whether the last sync that committed handed this daemon's jobs over (see {@link exchangeUnreachable}). */
  get handingOver(): boolean {
    return this.#handingOver;
  }

  /**
   * Heartbeats, renews, claims; returns every lease this daemon holds (job id → fence).
   * `leaving` is called, in the sync's transaction, with the jobs about to be handed back (no
   * longer active, or shed to another daemon) while their leases are still held: what the caller
   * keeps of them and has not written yet can still be written under its fence.
   */
  async sync(busy: ReadonlySet<string> = NO_JOBS, leaving?: Leaving): Promise<Map<string, Fence>> {
    const { handingOver, held } = await this.#store.transaction(async (tx) => {
      const handingOver = await this.#refresh(tx, busy, leaving);
      const held = await tx.all<{ job_id: string; epoch: number }>('SELECT job_id, epoch FROM job_leases WHERE owner = ?', [this.instanceId]);
      return { handingOver, held };
    });
    // Once committed: a sync rolled back (or run again by the adapter) published nothing.
    this.#handingOver = handingOver;
    this.#committed();
    this.#known = { fences: new Map(held.map((l) => [l.job_id, Number(l.epoch)])), count: held.length, sync: this.#syncs };
    return new Map(held.map((l) => [l.job_id, { owner: this.instanceId, epoch: l.epoch }]));
  }

  /**
   * The same heartbeat, renewal and claims as {@link sync}, for a start-up: returns the fences of
   * the held jobs that have an open (PENDING) intent, which recovery reconciles now, and only the
   * number of the others (reading every lease back, 10,000 rows for 10,000 jobs, was the largest
   * part of a lease sync, and the first tick's sync reads them anyway). The intents must be read
   * after this has committed: from then on no other daemon can settle them.
   */
  async syncForRecovery(): Promise<{ fences: Map<string, Fence>; held: number }> {
    const { handingOver, ...synced } = await this.#store.transaction(async (tx) => {
      const handingOver = await this.#refresh(tx);
      const count = await tx.get<{ held: number }>('SELECT count(*) AS held FROM job_leases WHERE owner = ?', [this.instanceId]);
      const open = await tx.all<{ job_id: string; epoch: number }>(
        "SELECT job_id, epoch FROM job_leases WHERE owner = ? AND job_id IN (SELECT t.job_id FROM trades t WHERE t.status = 'PENDING')",
        [this.instanceId],
      );
      return { handingOver, fences: new Map(open.map((l) => [l.job_id, { owner: this.instanceId, epoch: l.epoch }])), held: Number(count?.held ?? 0) };
    });
    this.#handingOver = handingOver;
    this.#committed();
    this.#known = { fences: undefined, count: synced.held, sync: this.#syncs };
    return synced;
  }

  /**
   * Heartbeats this daemon's row. Where several daemons may run (PostgreSQL), a row another daemon
   * marked stopped (it took this one for dead) is revived, so that it counts again in the fair
   * share. On SQLite, where one daemon runs per file, this daemon was stalled past its TTL and
   * another one has taken the file over: it must stop (DAEMON_RUNNING), not run beside it.
   */
  async #heartbeat(tx: Executor, now: string): Promise<void> {
    if (this.#store.capabilities.concurrentWriters) {
      // With since when its exchange answers no call, as the daemon last found it: published
      // between ticks too, so that a daemon whose tick waits for a probe (an exchange that hangs
      // until the timeout) is not counted as reaching its exchange meanwhile, and handed jobs.
      await tx.run('UPDATE daemon_instances SET heartbeat_at = ?, stopped_at = NULL, exchange_unreachable_since = ? WHERE id = ?', [
        now,
        this.exchangeUnreachable?.since ?? null,
        this.instanceId,
      ]);
      return;
    }
    // One statement on the hot path; only when it changes nothing is the row looked at.
    if ((await tx.run('UPDATE daemon_instances SET heartbeat_at = ? WHERE id = ? AND stopped_at IS NULL', [now, this.instanceId])) > 0) return;
    const mine = await tx.get<{ stopped_at: string | null }>('SELECT stopped_at FROM daemon_instances WHERE id = ?', [this.instanceId]);
    if (mine?.stopped_at == null) return; // not registered (a Leases used for its leases alone)
    const other = await tx.get<{ host: string; pid: number }>(
      'SELECT host, pid FROM daemon_instances WHERE stopped_at IS NULL AND id <> ? ORDER BY started_at DESC LIMIT 1',
      [this.instanceId],
    );
    throw new RuleError('DAEMON_RUNNING', `another daemon${other ? ` (pid ${other.pid} on ${other.host})` : ''} took ${this.#store.location} over while this one was stalled past its lease TTL`, {
      hint: 'this daemon stops; one daemon runs per SQLite file',
      details: { instance: this.instanceId, ...(other ? { pid: other.pid, host: other.host } : {}) },
    });
  }

  /** Counts a sync that committed, and the jobs it handed back. */
  #committed(): void {
    this.#syncs++;
    for (const id of this.#handingBack) this.#handedBack.set(id, this.#syncs);
    this.#handingBack = [];
  }

  /**
   * sync's writes: heartbeat, renewal, lease rows for new active jobs, hand-backs, claims or sheds.
   * `busy`: jobs whose step is running in this daemon, never shed (see #shed). Returns whether
   * this daemon hands its jobs over (see {@link exchangeUnreachable}).
   */
  async #refresh(tx: Executor, busy: ReadonlySet<string> = NO_JOBS, leaving?: Leaving): Promise<boolean> {
    this.#handingBack = [];
    // What this sync may still write of the jobs it hands back (see #handBack), over both hand-backs below.
    const budget = { left: LEAVING_MAX };
    const started = await this.#clock(tx);
    const t0 = performance.now();
    // The statement that reads every job comes first: a lock someone holds on them (a table
    // lock, a long transaction) is waited for here, before this daemon's own rows are locked.
    // With its instance row and its leases locked first, renew() between ticks waited behind
    // this transaction, so the heartbeats stopped and the leases ran out while the daemon waited.
    // The rows it inserts are new and unowned: no one else waits for them.
    await tx.run(
      `INSERT INTO job_leases (job_id, owner, epoch, expires_at)
       SELECT j.id, '', 0, ? FROM jobs j
       WHERE (${ACTIVE}) AND NOT EXISTS (SELECT 1 FROM job_leases l WHERE l.job_id = j.id)
       ON CONFLICT (job_id) DO NOTHING`,
      [started()],
    );
    // The clock read again after a wait (no second round trip otherwise), so that a renewal
    // written after a long wait is not already near its end.
    const iso = performance.now() - t0 > CLOCK_STALE_MS ? await this.#clock(tx) : started;
    const now = iso();
    const expires = iso(this.#ttlMs);
    // Then the instance row and this daemon's leases, in the order renew() locks them (the
    // instance first), so that the two never wait for each other in a cycle.
    await this.#heartbeat(tx, now);
    // Renewed when half the TTL is left, not every tick: a thousand jobs need not be rewritten each second.
    await tx.run('UPDATE job_leases SET expires_at = ? WHERE owner = ? AND expires_at < ?', [expires, this.instanceId, iso(this.#ttlMs / 2)]);
    // Jobs that no longer need a daemon (paused, idle, failed, nothing pending) are handed back.
    if (leaving === undefined) {
      const done = await tx.all<{ job_id: string }>(
        `UPDATE job_leases SET owner = '', expires_at = ?
         WHERE owner = ? AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = job_leases.job_id AND (${ACTIVE})) RETURNING job_id`,
        [now, this.instanceId],
      );
      this.#handingBack.push(...done.map((d) => d.job_id));
    } else {
      const done = await tx.all<{ job_id: string }>(
        `SELECT l.job_id FROM job_leases l WHERE l.owner = ? AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = l.job_id AND (${ACTIVE}))`,
        [this.instanceId],
      );
      // A job whose step is running is handed back all the same: its stale step's writes are then
      // refused (LEASE_LOST), as they must be (it decided from the job as it was before the pause).
      await this.#handBack(tx, done.map((d) => d.job_id), now, leaving, budget);
    }
    const { want, handOver } = await this.#wanted(tx, now);
    if (want > 0) await this.#claim(tx, want, now, expires);
    else if (want < 0) await this.#shed(tx, -want, now, busy, leaving, budget, handOver);
    return handOver;
  }

  /**
   * Hands `ids` back, once `leaving` (if given) has had as many of them as `budget` has left (of
   * LEAVING_MAX per sync) while they are still held. Where rows
   * are locked (PostgreSQL), `leaving` gets only the jobs whose rows it can lock at once: this
   * transaction holds the daemon's instance row and leases, and waiting here for a job row another
   * session holds would stop the heartbeats (renew() waits behind it) until every lease ran out.
   */
  async #handBack(tx: Executor, ids: readonly string[], now: string, leaving: Leaving | undefined, budget: { left: number }): Promise<void> {
    if (ids.length === 0) return;
    if (leaving !== undefined) {
      const dialect = this.#store.dialect;
      // At most LEAVING_MAX jobs are written per sync, over both hand-backs (the rest are handed back unwritten): the
      // writes hold up renew() for as long as they take, and a shed can count thousands of jobs.
      let free = ids.slice(0, budget.left);
      budget.left -= free.length;
      if (dialect.forUpdate !== '') {
        const locked = new Set<string>();
        for (const chunk of paddedChunks(free, SHED_CHUNK)) {
          const rows = await tx.all<{ id: string }>(`SELECT j.id FROM jobs j WHERE j.id IN (${JOB_IDS})${dialect.skipLocked('j')}`, chunk);
          for (const row of rows) locked.add(row.id);
        }
        free = free.filter((id) => locked.has(id));
      }
      if (free.length > 0) await leaving(free);
    }
    for (const chunk of paddedChunks(ids, SHED_CHUNK)) await tx.run(SHED, [now, this.instanceId, ...chunk]);
    this.#handingBack.push(...ids);
  }

  /**
   * How many more leases to take (or, below zero, to hand back): this daemon's share of the
   * active jobs among the live daemons. Daemons whose `--max-jobs` is below an even split take
   * their maximum, and the others share the rest evenly (rounded up), so that no active job is
   * left without a daemon while one has room.
   */
  async #wanted(tx: Executor, now: string): Promise<{ want: number; handOver: boolean }> {
    // Both counts from one statement, over the active jobs alike: on PostgreSQL each statement of
    // the sync sees the commits made before it began, and a job that went IDLE after the hand-back
    // above was counted in `mine` but not in `active`, so the daemon shed a job it needed (and
    // took it again at the next tick, at a new epoch).
    const row = await tx.get<{ active: number; mine: number }>(
      `SELECT
         (SELECT count(*) FROM jobs j WHERE ${ACTIVE}) AS active,
         (SELECT count(*) FROM job_leases l JOIN jobs j ON j.id = l.job_id WHERE l.owner = ? AND l.expires_at >= ? AND (${ACTIVE})) AS mine`,
      [this.instanceId, now],
    );
    // Live: heartbeated within its own TTL, as register() judges it (a daemon of an older
    // version, which did not store it, within this one's). Few rows: filtered here.
    const nowMs = Date.parse(now);
    const rows = await tx.all<InstanceRow>(
      'SELECT id, max_jobs, heartbeat_at, lease_ttl_ms, exchange_unreachable_since FROM daemon_instances WHERE stopped_at IS NULL',
    );
    const live = rows.filter((d) => Date.parse(d.heartbeat_at) >= nowMs - this.#ttlOf(d));
    const unreachable = this.exchangeUnreachable; // read once: the daemon may set it again meanwhile
    const others = live.filter((d) => d.id !== this.instanceId);
    // Daemons that take jobs and reach their exchange (a maximum of 0 is one handing its own
    // over: a --max-jobs is at least 1).
    const reaching = others.filter((d) => d.exchange_unreachable_since === null && maxOf(d) > 0);
    // Handed over to a daemon that reaches its exchange, and kept so until this one's answers
    // (or no other daemon is left): taking the jobs back when the others find the exchange down
    // too would move them twice for one outage.
    const handOver = unreachable !== undefined && unreachable.handOver && (reaching.length > 0 || (this.#handingOver && others.length > 0));
    const mine = handOver ? 0 : this.#maxJobs;
    await this.#publish(tx, rows.find((d) => d.id === this.instanceId), mine, unreachable?.since ?? null);
    const active = Number(row?.active ?? 0);
    const held = Number(row?.mine ?? 0);
    // The jobs every live daemon may hold, as published: this daemon's as it is now.
    const published = live.map((d) => (d.id === this.instanceId ? mine : maxOf(d)));
    // This daemon counts whether its row is seen live or not (its heartbeat was just written).
    const capacity = published.length === 0 ? mine : published.reduce((a, b) => a + b, 0);
    this.#unrun = Math.max(0, active - capacity);
    if (unreachable !== undefined) {
      const want = shareOf(active, published, mine) - held;
      // Cut off, beside a daemon that trades: no job more (handing over, none at all). With none
      // that trades, none handed to another daemon cut off too: jobs move for no outage.
      return { want: reaching.length > 0 || handOver ? Math.min(0, want) : Math.max(0, want), handOver };
    }
    // Reaching its exchange, this daemon gives no share to one that does not: the jobs that one
    // lets go, or that were never claimed, come to the daemons that can trade them.
    const maxima = live.map((d, i) => (d.id !== this.instanceId && d.exchange_unreachable_since !== null ? 0 : published[i]!));
    return { want: shareOf(active, maxima, mine) - held, handOver };
  }

  /**
   * Writes this daemon's maximum (0 while it hands over) and since when its exchange answers no
   * call onto its row, when the row says otherwise: compared with the row, not with what an
   * earlier sync wrote, which a rollback may have undone.
   */
  async #publish(tx: Executor, own: InstanceRow | undefined, mine: number, since: string | null): Promise<void> {
    if (own === undefined) return; // not registered (a Leases used for its leases alone)
    const maxJobs = storedMax(mine);
    if ((own.max_jobs === null ? null : Number(own.max_jobs)) === maxJobs && own.exchange_unreachable_since === since) return;
    await tx.run('UPDATE daemon_instances SET max_jobs = ?, exchange_unreachable_since = ? WHERE id = ?', [maxJobs, since, this.instanceId]);
  }

  /**
   * Takes up to `want` unowned or expired leases in one statement, each at a new epoch. Jobs with
   * an open intent first: when the daemons' `--max-jobs` leave some jobs without a daemon, an
   * order whose outcome is unknown is not among them (its job's balance waits on it).
   */
  async #claim(tx: Executor, want: number, now: string, expires: string): Promise<void> {
    await tx.run(
      `UPDATE job_leases SET owner = ?, epoch = epoch + 1, expires_at = ?
       WHERE job_id IN (
         SELECT l.job_id FROM job_leases l JOIN jobs j ON j.id = l.job_id
         WHERE (${ACTIVE}) AND (l.owner = '' OR l.expires_at < ?)
         ORDER BY CASE WHEN ${OPEN} THEN 0 ELSE 1 END, l.expires_at, l.job_id LIMIT ?${this.#store.dialect.skipLocked('l')})`,
      [this.instanceId, expires, now, want],
    );
  }

  /**
   * Hands back leases held beyond the fair share (a daemon that started alone took every job),
   * so that daemons started later get their share at their next tick. Jobs with an open intent
   * are kept: their reconciliation is under way here. So are the `busy` jobs, whose step is
   * running: one may be committing an intent now, which this statement's snapshot (on
   * PostgreSQL) would not show, and the step would then place its order with no lease held.
   * A daemon handing its jobs over (`withOpen`) hands back those with an open intent too: it
   * cannot reconcile them, and the daemon that takes one looks its order up as after a takeover.
   */
  async #shed(tx: Executor, surplus: number, now: string, busy: ReadonlySet<string>, leaving: Leaving | undefined, budget: { left: number }, withOpen: boolean): Promise<void> {
    const candidates = await tx.all<{ job_id: string }>(
      `SELECT l.job_id FROM job_leases l
       WHERE l.owner = ?${withOpen ? '' : " AND NOT EXISTS (SELECT 1 FROM trades t WHERE t.job_id = l.job_id AND t.status = 'PENDING')"}
       ORDER BY l.job_id DESC LIMIT ?`,
      [this.instanceId, surplus + busy.size],
    );
    const ids = candidates.map((c) => c.job_id).filter((id) => !busy.has(id)).slice(0, surplus);
    await this.#handBack(tx, ids, now, leaving, budget);
  }

  /** Gives one job back (it no longer needs a daemon), so that nobody waits for its TTL. */
  async releaseJob(jobId: string, fence: Fence): Promise<void> {
    await this.#store.transaction(async (tx) => {
      const iso = await this.#clock(tx);
      await tx.run(`UPDATE job_leases SET owner = '', expires_at = ? WHERE job_id = ? AND owner = ? AND epoch = ?`, [iso(), jobId, fence.owner, fence.epoch]);
    });
  }

  /** Whether a daemon other than this one holds the job's lease now (an owner, not expired). */
  async heldByAnother(jobId: string): Promise<boolean> {
    return this.#store.transaction(async (tx) => {
      const now = (await this.#clock(tx))();
      const row = await tx.get<{ owner: string }>('SELECT owner FROM job_leases WHERE job_id = ? AND expires_at >= ?', [jobId, now]);
      return row !== undefined && row.owner !== '' && row.owner !== this.instanceId;
    });
  }

  /** Another daemon's lease TTL, as stored on its row; this daemon's for a row of an older version, which has none. */
  #ttlOf(row: { lease_ttl_ms: number | null }): number {
    return row.lease_ttl_ms === null ? this.#ttlMs : Number(row.lease_ttl_ms);
  }

  /**
   * For a daemon that runs no more but could not {@link release} (its store closed or failed
   * under it): in this process it stops counting as running, so that a daemon started here next
   * takes its jobs over at once. Another process sees it alive until its last heartbeat is older
   * than the TTL.
   */
  forget(): void {
    RUNNING_HERE.delete(this.instanceId);
  }

  /**
   * On a graceful stop: hands every lease back at once and marks the instance stopped. Resolves to
   * the number of PENDING intents of the jobs it held, left for the next start to reconcile, and
   * how many of them are of jobs in ERROR.
   */
  async release(): Promise<{ pending: number; inError: number }> {
    const left = await this.#store.transaction(async (tx) => {
      const now = (await this.#clock(tx))();
      // The instance row before the leases, as every other transaction of this daemon's, and as
      // another daemon's register() that finds it dead: no two of them wait for each other in a cycle.
      // Its own maximum again, not the 0 of a hand-over, and no outage: a stopped daemon has none.
      await tx.run('UPDATE daemon_instances SET stopped_at = ?, heartbeat_at = ?, max_jobs = ?, exchange_unreachable_since = NULL WHERE id = ?', [
        now,
        now,
        storedMax(this.#maxJobs),
        this.instanceId,
      ]);
      const pending = await tx.get<{ n: number | string; in_error: number | string | null }>(
        `SELECT count(*) AS n, sum(CASE WHEN j.status = 'ERROR' THEN 1 ELSE 0 END) AS in_error
           FROM trades t JOIN job_leases l ON l.job_id = t.job_id JOIN jobs j ON j.id = t.job_id
          WHERE l.owner = ? AND t.status = 'PENDING'`,
        [this.instanceId],
      );
      await tx.run(`UPDATE job_leases SET owner = '', expires_at = ? WHERE owner = ?`, [now, this.instanceId]);
      return { pending: Number(pending?.n ?? 0), inError: Number(pending?.in_error ?? 0) };
    });
    RUNNING_HERE.delete(this.instanceId);
    return left;
  }
}

/** A daemon's instance row, as the lease sync reads it. */
interface InstanceRow {
  id: string;
  max_jobs: number | null;
  heartbeat_at: string;
  lease_ttl_ms: number | null;
  exchange_unreachable_since: string | null;
}

/** A maximum as the instance row stores it: null for none (Number.MAX_SAFE_INTEGER here). */
function storedMax(max: number): number | null {
  return max === Number.MAX_SAFE_INTEGER ? null : max;
}

/** A daemon's published maximum: Infinity when it has none. */
function maxOf(d: InstanceRow): number {
  return d.max_jobs === null ? Infinity : Number(d.max_jobs);
}

/**
 * One daemon's share of `active` jobs among live daemons with these maxima (Infinity: none; this
 * daemon's among them): daemons whose maximum is below the even split take their maximum, and
 * the rest is split evenly among the others, rounded up.
 */
export function shareOf(active: number, maxima: readonly number[], mine: number): number {
  let remaining = active;
  let n = Math.max(1, maxima.length);
  for (const max of [...maxima].sort((a, b) => a - b)) {
    if (n === 0 || max >= Math.ceil(remaining / n)) break;
    remaining -= max;
    n--;
  }
  const level = n > 0 ? Math.ceil(Math.max(0, remaining) / n) : Infinity;
  return Math.min(mine, level);
}

/**
 * A dead daemon marked stopped: no outage of its exchange is current any more. A maximum of 0 it
 * published while handing its jobs over stays (its own is not known here).
 */
const MARK_STOPPED = 'stopped_at = ?, exchange_unreachable_since = NULL';
/** A wait in a lease sync after which its clock is read again: short beside any lease TTL. */
const CLOCK_STALE_MS = 250;
const NO_JOBS: ReadonlySet<string> = new Set();
const SHED_CHUNK = 64;
const JOB_IDS = Array(SHED_CHUNK).fill('?').join(', ');
/** The most jobs whose unwritten state one sync writes before handing them back. */
const LEAVING_MAX = 128;
const SHED = `UPDATE job_leases SET owner = '', expires_at = ? WHERE owner = ? AND job_id IN (${JOB_IDS})`;
