import type { HeraldEvent, PreparedBatch, Tenant } from '../event.js'

/**
 * The Store contract. A store is a translation of this contract to one engine, nothing more:
 * matching, retry decisions, timers and status derivation live above it (Bus and Dispatcher).
 * `test/stores/contract.ts` is the one suite every store passes.
 *
 * Model
 * - **Log.** Each tenant has an append-only log of events. `append` gives every stored event a
 *   `seq`: a string that, within one tenant of one store, is greater (plain `<` on strings) for
 *   every later event. Stores use fixed-width seqs to make that true.
 * - **Durable subscriptions** are consumers of a tenant's log. Each has a `cursor`: every
 *   matching event at or before the cursor was claimed once (and is now settled, or has a
 *   delivery record). A new subscription starts at the log's head: it owes only later events.
 * - **Delivery records** exist only for deliveries that are not simply done: `leased` (in flight,
 *   owned by a consumer until `leaseUntil`), `retrying` (waiting for `nextAttemptAt`) and
 *   `dead` (a dead letter). A delivered event leaves no record; the cursor says it was handled.
 * - **Staged groups** hold events emitted with a group id until they are released into the log
 *   or cleared; they expire after their TTL.
 *
 * Every method is tenant-scoped: nothing in one tenant is visible through another.
 * Every time is milliseconds since the epoch, passed in by the caller (`now`), so tests can
 * reason about expiry and stores agree across processes.
 */
export interface Store {
  /** 'memory' | 'sqlite' | 'redis' | ... */
  readonly kind: string
  /** True when an event whose append resolved survives the process (and a crash). */
  readonly durable: boolean

  // ── the log ──────────────────────────────────────────────────────────────────────────────
  /**
   * Appends the batch's events to the tenant's log and stages those with a group (`groups[i]`),
   * in one atomic step. An event marked `dedupe[i]` whose id was appended or staged in this tenant
   * within `dedupeWindowMs` is skipped. Resolves once the change is as durable as the store can
   * make it. The batch's arrays belong to the store from here on (it may return `events` itself
   * as `appended`).
   */
  append(tenant: Tenant, batch: PreparedBatch, options: AppendOptions): Promise<AppendResult>
  /**
   * Optional: the same as `append`, completed synchronously, for stores that append without I/O
   * (the memory store); returns only the appended events. The bus uses it when present to save a
   * promise, a tick and a result object per emit.
   */
  appendNow?(tenant: Tenant, batch: PreparedBatch, options: AppendOptions): HeraldEvent[]
  /** Events after `after` (exclusive; from the start when absent), oldest first, at most `limit`. */
  read(tenant: Tenant, query: { after?: string; limit: number }): Promise<HeraldEvent[]>
  /** The stored event with this id (the latest, should an id repeat beyond the dedupe window). */
  getEvent(tenant: Tenant, id: string): Promise<HeraldEvent | undefined>
  /** The seq of the newest stored event, or undefined for an empty log. */
  head(tenant: Tenant): Promise<string | undefined>
  /**
   * A seq at or above every seq this store has handed out in the tenant's log, or undefined when
   * it has handed out none: a position above it was never given to anyone. Stores whose retention
   * can remove a log's newest events (SQLite's, by age) answer a high-water mark here; absent,
   * `head` serves.
   */
  issuedUpTo?(tenant: Tenant): Promise<string | undefined>
  /**
   * Calls `listener` with events as they are appended to any tenant, by this process or (for a
   * store shared by several processes) any other, in log order per tenant. Returns a function
   * that stops the calls. With `options`, a store that would have to read events back to hand
   * them over (those another process appended) may skip the tenants `needs` declines and tell
   * `appended` instead; other stores hand over every event as usual.
   */
  watch(listener: (events: readonly HeraldEvent[]) => void, options?: WatchOptions): () => void

  // ── staged groups ────────────────────────────────────────────────────────────────────────
  /**
   * Moves the group's unexpired staged events into the log, in the order they were emitted, and
   * returns them stored; atomic: a crash leaves them either staged or appended. An unknown or
   * expired group gives [].
   */
  releaseGroup(tenant: Tenant, groupId: string, now: number): Promise<HeraldEvent[]>
  /** Drops the group's staged events (only those with these topics, if given); returns how many. */
  clearGroup(tenant: Tenant, groupId: string, topics?: readonly string[]): Promise<number>

  // ── durable subscriptions ────────────────────────────────────────────────────────────────
  /**
   * Creates the subscription at the log's head, or updates patterns, sender and meta of an
   * existing one (its cursor is kept).
   */
  openSubscription(spec: SubscriptionSpec, now: number): Promise<SubscriptionRecord>
  /** Removes the subscription and all its delivery records; false when it did not exist. */
  deleteSubscription(tenant: Tenant, id: string): Promise<boolean>
  /** The tenant's subscriptions; every tenant's when `tenant` is omitted. Ordered by tenant, then id. */
  listSubscriptions(tenant?: Tenant): Promise<SubscriptionRecord[]>
  /**
   * Leases deliveries for one subscription to `consumer`, atomically, so that concurrent claims
   * (in this or another process) never lease the same delivery twice:
   * 1. records that are due — `retrying` with `nextAttemptAt ≤ now`, or `leased` with
   *    `leaseUntil ≤ now` (their consumer died) — oldest seq first;
   * 2. then events after the cursor, in log order, keeping those `match` accepts and moving the
   *    cursor past every event it looked at (at most `scanLimit`).
   * Each leased delivery's record becomes `leased` with `leaseUntil = now + leaseMs` and its
   * `attempts` incremented; `Delivery.attempt` is the 0-based index of the attempt now starting.
   * Returns at most `limit` deliveries.
   */
  claim(tenant: Tenant, subscriptionId: string, request: ClaimRequest): Promise<ClaimResult>
  /** Pushes `leaseUntil` of deliveries still leased by `consumer`; returns the seqs it no longer holds. */
  renew(
    tenant: Tenant,
    subscriptionId: string,
    consumer: string,
    seqs: readonly string[],
    leaseUntil: number,
  ): Promise<string[]>
  /**
   * Records how leased deliveries ended: `delivered` removes the record, `retry` makes it
   * `retrying` until `retryAt`, `dead` makes it a dead letter. A settlement for a delivery no
   * longer leased by `consumer` (its lease expired and another consumer took it) is ignored.
   */
  settle(
    tenant: Tenant,
    subscriptionId: string,
    consumer: string,
    settlements: readonly Settlement[],
    now: number,
  ): Promise<void>
  /** Every delivery record of the event with this seq, across the tenant's subscriptions. */
  deliveryRecords(tenant: Tenant, seq: string): Promise<DeliveryRecord[]>

  // ── dead letters ─────────────────────────────────────────────────────────────────────────
  listDeadLetters(tenant: Tenant, query: DeadLetterQuery): Promise<StoredDeadLetter[]>
  /** Makes a dead letter `retrying`, due at `now`, with its attempts reset; false if there is none. */
  redrive(tenant: Tenant, subscriptionId: string, seq: string, now: number): Promise<boolean>
  deleteDeadLetter(tenant: Tenant, subscriptionId: string, seq: string): Promise<boolean>

  // ── locks ────────────────────────────────────────────────────────────────────────────────
  /**
   * Holds `name` in `tenant`, across every process sharing the store, until the returned function
   * is called or `ttlMs` passes (a holder that died). Waits up to `waitMs` for another holder to
   * let go, then fails with `store_unavailable`. For changes that read several records and then
   * write them (registering an app), which two processes must not interleave.
   */
  lock(tenant: Tenant, name: string, options: LockOptions): Promise<Unlock>

  /** Releases the engine (connections, file handles). Pending appends complete first. */
  close(): Promise<void>
}

export interface LockOptions {
  /** How long the lock outlives a holder that never lets go, in ms. */
  ttlMs: number
  /** How long to wait for another holder to let go, in ms. */
  waitMs: number
}

/** Lets go of a lock; does nothing once it lapsed (it may be someone else's by then). */
export type Unlock = () => Promise<void>

export interface AppendOptions {
  now: number
  /** How long a publisher-supplied id is remembered for deduplication. */
  dedupeWindowMs: number
  /** How long staged events wait for release before they expire. */
  groupTtlMs: number
}

export interface AppendResult {
  /** The events appended to the log, in input order, each with its `seq`. */
  appended: HeraldEvent[]
  /** How many inputs were staged in groups. */
  staged: number
  /** Ids of inputs skipped as repeats within the dedupe window. */
  duplicates: string[]
}

export interface SubscriptionSpec {
  tenant: Tenant
  id: string
  patterns: readonly string[]
  sender?: string
  /** Opaque JSON kept with the subscription (a webhook's URL and format, say). */
  meta?: Record<string, unknown>
}

export interface SubscriptionRecord {
  account: string
  workspace: string
  id: string
  patterns: string[]
  sender?: string
  meta?: Record<string, unknown>
  createdAt: number
  /** The log's head when the subscription was created ('' for an empty log): it owes only events after it. */
  startSeq: string
  /** Every matching event up to here was claimed ('' before any). */
  cursor: string
}

export interface ClaimRequest {
  consumer: string
  limit: number
  leaseMs: number
  now: number
  match: (event: HeraldEvent) => boolean
  /** How many new log events one claim may look at; defaults to a store-chosen bound. */
  scanLimit?: number
}

export interface Delivery {
  event: HeraldEvent
  /** 0-based index of the attempt this lease is for (attempts already started before it). */
  attempt: number
}

export interface ClaimResult {
  deliveries: Delivery[]
  /** More work may be available right now (limit or scanLimit reached). */
  more: boolean
  /**
   * When the subscription's earliest retrying or leased record falls due, if it has any. A store
   * may answer earlier than that (a record settled since): the caller then just claims again.
   */
  nextDueAt?: number
}

export type Settlement =
  | { seq: string; outcome: 'delivered' }
  | { seq: string; outcome: 'retry'; retryAt: number; error: string }
  | { seq: string; outcome: 'dead'; error: string }

/**
 * `delivered` is reported only by a store whose claims may take events ahead of the cursor
 * (Redis: a process leases what it appended itself first): a delivery done there, until the
 * cursor passes it and says so by itself.
 */
export type DeliveryRecordState = 'leased' | 'retrying' | 'dead' | 'delivered'

export interface DeliveryRecord {
  subscriptionId: string
  seq: string
  eventId: string
  state: DeliveryRecordState
  /** Attempts started so far (0 after a redrive). */
  attempts: number
  lastError?: string
  nextAttemptAt?: number
  leaseUntil?: number
  consumer?: string
  updatedAt: number
}

export interface DeadLetterQuery {
  subscriptionId?: string
  /** Paging: only dead letters whose seq is greater. */
  after?: string
  limit: number
}

export interface StoredDeadLetter extends DeliveryRecord {
  event: HeraldEvent
}

export interface WatchOptions {
  /**
   * Whether the watcher needs the events appended to this tenant ('account/workspace'), or only
   * to hear that there are some. Asked for every append it could skip: keep it cheap.
   */
  needs?(tenant: string): boolean
  /** Events were appended to this tenant and not handed to the listener, as `needs` declined them. */
  appended?(tenant: string): void
}
