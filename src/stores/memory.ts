import { HeraldError } from '../errors.js'
import type { HeraldEvent, PreparedBatch, Tenant } from '../event.js'
import { tenantKey } from '../event.js'
import type {
  AppendOptions,
  AppendResult,
  ClaimRequest,
  ClaimResult,
  DeadLetterQuery,
  Delivery,
  DeliveryRecord,
  LockOptions,
  Settlement,
  Store,
  StoredDeadLetter,
  SubscriptionRecord,
  SubscriptionSpec,
  Unlock,
} from './store.js'
import { idConflict } from './id-conflict.js'
import { lockToken, takeLock } from './lock.js'

export interface MemoryStoreOptions {
  /** Events kept per tenant for reads, status and late durable subscribers (default 1,000). Events a durable subscription still owes are kept regardless. */
  maxEvents?: number
}

export const DEFAULT_MEMORY_MAX_EVENTS = 1_000
const DEFAULT_SCAN_LIMIT = 10_000
const NONE: string[] = []
/** How often staging sweeps out groups whose TTL passed (their events would otherwise stay). */
const GROUP_SWEEP_MS = 1000
/** '000' … '999': a seq is a 13-digit block prefix plus one of these, so minting one is a join. */
const TRIPLES = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'))

interface Row extends DeliveryRecord {
  event: HeraldEvent
}

interface Subscription {
  record: SubscriptionRecord
  /** Absolute log index of the next event to look at. */
  next: number
  /** Leased and retrying records by seq. */
  active: Map<string, Row>
  dead: Map<string, Row>
  /**
   * No active record falls due before this (it may be earlier than the true earliest: records
   * settle without raising it). Claims scan the active records only once it has passed, which
   * keeps a claim's cost independent of how many deliveries are in flight.
   */
  nextDue: number
}

interface Group {
  events: HeraldEvent[]
  expiresAt: number
}

/**
 * A tenant's log in fixed-size chunks: appending is a push, and dropping old events releases
 * whole chunks instead of shifting the array, so retention costs nothing per event.
 */
class EventLog {
  private static readonly CHUNK = 1024
  private chunks: HeraldEvent[][] = []
  /** Absolute index of the first event kept. */
  start = 0
  end = 0

  push(event: HeraldEvent): void {
    const last = this.chunks[this.chunks.length - 1]
    if (last && last.length < EventLog.CHUNK) last.push(event)
    else this.chunks.push([event])
    this.end++
  }

  get length(): number {
    return this.end - this.start
  }

  /** The event at absolute index `index` (start ≤ index < end). */
  at(index: number): HeraldEvent {
    const offset = index - this.start
    return this.chunks[Math.floor(offset / EventLog.CHUNK)]![offset % EventLog.CHUNK]!
  }

  last(): HeraldEvent | undefined {
    return this.end > this.start ? this.at(this.end - 1) : undefined
  }

  /** Drops whole chunks that lie entirely before absolute index `index`. */
  dropBefore(index: number): void {
    while (this.chunks.length > 1 && this.start + EventLog.CHUNK <= index) {
      this.chunks.shift()
      this.start += EventLog.CHUNK
    }
  }

  /** Absolute index of the first event with seq > `after`. */
  indexAfter(after: string | undefined): number {
    if (after === undefined || after === '') return this.start
    let lo = this.start
    let hi = this.end
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.at(mid).seq! <= after) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  slice(from: number, to: number): HeraldEvent[] {
    const out: HeraldEvent[] = []
    for (let i = from; i < to; i++) out.push(this.at(i))
    return out
  }
}

class TenantState {
  log = new EventLog()
  subscriptions = new Map<string, Subscription>()
  groups = new Map<string, Group>()
}

/**
 * The library default: everything in process memory, nothing survives it. Implements the whole
 * contract, so durable subscriptions behave here as on the other stores (several buses sharing
 * one memoryStore share a subscription's deliveries), only without the durability.
 */
export function memoryStore(options: MemoryStoreOptions = {}): Store {
  return new MemoryStore(options)
}

class MemoryStore implements Store {
  readonly kind = 'memory'
  readonly durable = false
  private readonly maxEvents: number
  private readonly tenants = new Map<string, TenantState>()
  private listeners: ((events: readonly HeraldEvent[]) => void)[] = []
  /** tenant + id → time the id may be reused; in insertion (= expiry) order. */
  private readonly seenIds = new Map<string, { until: number; topic: string }>()
  private nextGroupSweep = 0
  /** No staged group expires before this (a lower bound: staging again only moves a TTL later). */
  private groupsExpireFrom = Infinity
  private counter = 0
  private seqBlock = -1
  private seqPrefix = ''
  private closed = false
  /** The last tenant object looked up: a scoped bus passes the same object every time. */
  private lastTenant: Tenant | undefined
  private lastState: TenantState | undefined

  constructor(options: MemoryStoreOptions) {
    const maxEvents = options.maxEvents ?? DEFAULT_MEMORY_MAX_EVENTS
    if (!Number.isInteger(maxEvents) || maxEvents < 1) {
      throw new HeraldError(
        'invalid_option',
        `memoryStore maxEvents must be a positive integer, got ${maxEvents}`,
      )
    }
    this.maxEvents = maxEvents
  }

  private tenant(tenant: Tenant): TenantState {
    if (tenant === this.lastTenant) return this.lastState!
    const key = tenantKey(tenant)
    let state = this.tenants.get(key)
    if (!state) this.tenants.set(key, (state = new TenantState()))
    this.lastTenant = tenant
    this.lastState = state
    return state
  }

  private open(): void {
    if (this.closed) throw new HeraldError('closed', 'the store is closed')
  }

  /** 16 digits, zero-padded: fixed width, so seqs sort as strings. */
  private nextSeq(): string {
    const n = ++this.counter
    const block = Math.floor(n / 1000)
    if (block !== this.seqBlock) {
      this.seqBlock = block
      this.seqPrefix = String(block).padStart(13, '0')
    }
    return this.seqPrefix + TRIPLES[n - block * 1000]
  }

  append(tenant: Tenant, batch: PreparedBatch, options: AppendOptions): Promise<AppendResult> {
    try {
      return Promise.resolve(this.appendBatch(tenant, batch, options))
    } catch (error) {
      return Promise.reject(error)
    }
  }

  appendNow(tenant: Tenant, batch: PreparedBatch, options: AppendOptions): HeraldEvent[] {
    if (batch.dedupe !== undefined || batch.groups !== undefined)
      return this.appendBatch(tenant, batch, options).appended
    this.open()
    const state = this.tenant(tenant)
    // The common batch: every event goes to the log, so the batch's own array is the answer.
    const events = batch.events
    const log = state.log
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      event.seq = this.nextSeq()
      log.push(event)
    }
    if (events.length > 0) {
      this.trim(state)
      this.notify(events)
    }
    return events
  }

  private appendBatch(tenant: Tenant, batch: PreparedBatch, options: AppendOptions): AppendResult {
    this.open()
    const state = this.tenant(tenant)
    const { events, dedupe, groups } = batch
    const appended: HeraldEvent[] = []
    let duplicates: string[] = NONE
    let staged = 0
    if (this.seenIds.size > 0) this.forgetExpiredIds(options.now)
    if (groups !== undefined) this.sweepGroups(options.now)
    if (dedupe !== undefined) this.assertNoIdConflict(tenant, batch, options.now)
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      const groupId = groups?.[i]
      if (groupId !== undefined) {
        // A group whose TTL passed is gone: its events (and their ids) go before this one is checked.
        const expired = state.groups.get(groupId)
        if (expired && expired.expiresAt <= options.now) this.dropGroup(tenantKey(tenant), state, groupId)
      }
      if (dedupe?.[i] === true) {
        const idKey = `${tenantKey(tenant)}\n${event.id}`
        const seen = this.seenIds.get(idKey)
        if (seen !== undefined && seen.until > options.now) {
          if (duplicates === NONE) duplicates = []
          duplicates.push(event.id)
          continue
        }
        this.seenIds.delete(idKey)
        this.seenIds.set(idKey, { until: options.now + options.dedupeWindowMs, topic: event.topic })
      }
      if (groupId !== undefined) {
        let group = state.groups.get(groupId)
        if (!group) state.groups.set(groupId, (group = { events: [], expiresAt: 0 }))
        group.events.push(event)
        group.expiresAt = options.now + options.groupTtlMs
        if (group.expiresAt < this.groupsExpireFrom) this.groupsExpireFrom = group.expiresAt
        staged++
        continue
      }
      event.seq = this.nextSeq()
      state.log.push(event)
      appended.push(event)
    }
    if (appended.length > 0) {
      this.trim(state)
      this.notify(appended)
    }
    return { appended, staged, duplicates }
  }

  /**
   * Drops a staged group and forgets the publisher ids of its events: they were never stored,
   * so publishing them again is no repeat.
   */
  private dropGroup(tenant: string, state: TenantState, groupId: string, topics?: readonly string[]): number {
    const group = state.groups.get(groupId)
    if (!group) return 0
    const dropped: HeraldEvent[] = []
    const kept: HeraldEvent[] = []
    for (const event of group.events)
      (topics === undefined || topics.includes(event.topic) ? dropped : kept).push(event)
    if (this.seenIds.size > 0) for (const event of dropped) this.seenIds.delete(`${tenant}\n${event.id}`)
    if (kept.length === 0) state.groups.delete(groupId)
    else group.events = kept
    return dropped.length
  }

  /**
   * Groups whose TTL passed, in every tenant: at most once a second when something is staged, or
   * at once (`force`) when a publisher id may be one of theirs.
   */
  private sweepGroups(now: number, force = false): void {
    if (!force && now < this.nextGroupSweep) return
    this.nextGroupSweep = now + GROUP_SWEEP_MS
    let earliest = Infinity
    for (const [key, state] of this.tenants)
      for (const [groupId, group] of state.groups)
        if (group.expiresAt <= now) this.dropGroup(key, state, groupId)
        else if (group.expiresAt < earliest) earliest = group.expiresAt
    this.groupsExpireFrom = earliest
  }

  /**
   * A publisher id names one event for its dedupe window: used again for another topic, the whole
   * emit is refused (before anything of it changes) rather than dropped as a repeat it is not.
   */
  private assertNoIdConflict(tenant: Tenant, batch: PreparedBatch, now: number): void {
    // The id may be one of a group whose TTL passed and that no sweep has dropped yet: its event
    // was never stored, so it counts for nothing (a publisher retrying a dead transaction).
    if (this.groupsExpireFrom <= now) this.sweepGroups(now, true)
    const key = tenantKey(tenant)
    let inBatch: Map<string, string> | undefined
    for (let i = 0; i < batch.events.length; i++) {
      if (batch.dedupe?.[i] !== true) continue
      const { id, topic } = batch.events[i]!
      const seen = this.seenIds.get(`${key}\n${id}`)
      const earlier = seen !== undefined && seen.until > now ? seen.topic : inBatch?.get(id)
      if (earlier !== undefined && earlier !== topic) throw idConflict(id, earlier, topic)
      ;(inBatch ??= new Map()).set(id, topic)
    }
  }

  private forgetExpiredIds(now: number): void {
    for (const [key, { until }] of this.seenIds) {
      if (until > now) break
      this.seenIds.delete(key)
    }
  }

  /** Drops the oldest events beyond `maxEvents`, never one a durable subscription has yet to look at. */
  private trim(state: TenantState): void {
    const log = state.log
    if (log.length <= this.maxEvents + 1024) return
    let keepFrom = log.end - this.maxEvents
    for (const subscription of state.subscriptions.values()) keepFrom = Math.min(keepFrom, subscription.next)
    log.dropBefore(keepFrom)
  }

  private notify(events: readonly HeraldEvent[]): void {
    const listeners = this.listeners
    for (let i = 0; i < listeners.length; i++) {
      const listener = listeners[i]!
      try {
        listener(events)
      } catch {
        // A watcher's failure is the watcher's business; the append has happened.
      }
    }
  }

  async read(tenant: Tenant, query: { after?: string; limit: number }): Promise<HeraldEvent[]> {
    this.open()
    const log = this.tenant(tenant).log
    const from = log.indexAfter(query.after)
    return log.slice(from, Math.min(log.end, from + Math.max(0, query.limit)))
  }

  async getEvent(tenant: Tenant, id: string): Promise<HeraldEvent | undefined> {
    this.open()
    const log = this.tenant(tenant).log
    for (let i = log.end - 1; i >= log.start; i--) if (log.at(i).id === id) return log.at(i)
    return undefined
  }

  async head(tenant: Tenant): Promise<string | undefined> {
    this.open()
    return this.tenant(tenant).log.last()?.seq
  }

  watch(listener: (events: readonly HeraldEvent[]) => void): () => void {
    this.listeners = [...this.listeners, listener]
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener)
    }
  }

  async releaseGroup(tenant: Tenant, groupId: string, now: number): Promise<HeraldEvent[]> {
    this.open()
    const state = this.tenant(tenant)
    const group = state.groups.get(groupId)
    if (!group) return []
    if (group.expiresAt <= now) {
      this.dropGroup(tenantKey(tenant), state, groupId)
      return []
    }
    state.groups.delete(groupId)
    for (const event of group.events) {
      event.seq = this.nextSeq()
      state.log.push(event)
    }
    if (group.events.length > 0) {
      this.trim(state)
      this.notify(group.events)
    }
    return group.events
  }

  async clearGroup(tenant: Tenant, groupId: string, topics?: readonly string[]): Promise<number> {
    this.open()
    const state = this.tenant(tenant)
    return this.dropGroup(tenantKey(tenant), state, groupId, topics)
  }

  async openSubscription(spec: SubscriptionSpec, now: number): Promise<SubscriptionRecord> {
    this.open()
    const state = this.tenant(spec.tenant)
    const existing = state.subscriptions.get(spec.id)
    if (existing) {
      existing.record.patterns = [...spec.patterns]
      if (spec.sender === undefined) delete existing.record.sender
      else existing.record.sender = spec.sender
      if (spec.meta === undefined) delete existing.record.meta
      else existing.record.meta = structuredClone(spec.meta)
      return copyRecord(existing.record)
    }
    const head = state.log.last()?.seq ?? ''
    const record: SubscriptionRecord = {
      account: spec.tenant.account,
      workspace: spec.tenant.workspace,
      id: spec.id,
      patterns: [...spec.patterns],
      createdAt: now,
      startSeq: head,
      cursor: head,
    }
    if (spec.sender !== undefined) record.sender = spec.sender
    if (spec.meta !== undefined) record.meta = structuredClone(spec.meta)
    state.subscriptions.set(spec.id, {
      record,
      next: state.log.end,
      active: new Map(),
      dead: new Map(),
      nextDue: Infinity,
    })
    return copyRecord(record)
  }

  async deleteSubscription(tenant: Tenant, id: string): Promise<boolean> {
    this.open()
    return this.tenant(tenant).subscriptions.delete(id)
  }

  async listSubscriptions(tenant?: Tenant): Promise<SubscriptionRecord[]> {
    this.open()
    const states = tenant ? [this.tenant(tenant)] : [...this.tenants.values()]
    const records = states.flatMap((state) =>
      [...state.subscriptions.values()].map((s) => copyRecord(s.record)),
    )
    return records.sort((a, b) => compareKeys([a.account, a.workspace, a.id], [b.account, b.workspace, b.id]))
  }

  private subscription(tenant: Tenant, id: string): Subscription {
    const subscription = this.tenant(tenant).subscriptions.get(id)
    if (!subscription)
      throw new HeraldError('not_found', `no subscription ${JSON.stringify(id)} in ${tenantKey(tenant)}`)
    return subscription
  }

  async claim(tenant: Tenant, subscriptionId: string, request: ClaimRequest): Promise<ClaimResult> {
    this.open()
    const state = this.tenant(tenant)
    const subscription = this.subscription(tenant, subscriptionId)
    const { now, limit, consumer } = request
    const leaseUntil = now + request.leaseMs
    const deliveries: Delivery[] = []
    const lease = (row: Row): void => {
      deliveries.push({ event: row.event, attempt: row.attempts })
      row.attempts++
      row.state = 'leased'
      row.leaseUntil = leaseUntil
      row.consumer = consumer
      row.updatedAt = now
      row.nextAttemptAt = undefined
    }

    if (subscription.nextDue <= now) {
      const due = [...subscription.active.values()]
        .filter((row) => dueAt(row) <= now)
        .sort((a, b) => (a.seq < b.seq ? -1 : 1))
      for (const row of due) {
        if (deliveries.length >= limit) break
        lease(row)
      }
      subscription.nextDue = Infinity
      for (const row of subscription.active.values())
        subscription.nextDue = Math.min(subscription.nextDue, dueAt(row))
    }

    let scanned = 0
    const scanLimit = request.scanLimit ?? DEFAULT_SCAN_LIMIT
    const log = state.log
    while (deliveries.length < limit && subscription.next < log.end && scanned < scanLimit) {
      const event = log.at(subscription.next++)
      scanned++
      subscription.record.cursor = event.seq!
      if (!request.match(event)) continue
      const row: Row = {
        subscriptionId,
        seq: event.seq!,
        eventId: event.id,
        state: 'leased',
        attempts: 0,
        updatedAt: now,
        // Every field from the start: one object shape for all rows.
        lastError: undefined,
        nextAttemptAt: undefined,
        leaseUntil: undefined,
        consumer: undefined,
        event,
      }
      subscription.active.set(row.seq, row)
      lease(row)
    }
    if (deliveries.length > 0) subscription.nextDue = Math.min(subscription.nextDue, leaseUntil)

    const more = deliveries.length >= limit || subscription.next < log.end
    const nextDueAt = subscription.nextDue
    return nextDueAt === Infinity ? { deliveries, more } : { deliveries, more, nextDueAt }
  }

  async renew(
    tenant: Tenant,
    subscriptionId: string,
    consumer: string,
    seqs: readonly string[],
    leaseUntil: number,
  ): Promise<string[]> {
    this.open()
    const subscription = this.subscription(tenant, subscriptionId)
    const lost: string[] = []
    for (const seq of seqs) {
      const row = subscription.active.get(seq)
      if (row && row.state === 'leased' && row.consumer === consumer) row.leaseUntil = leaseUntil
      else lost.push(seq)
    }
    return lost
  }

  async settle(
    tenant: Tenant,
    subscriptionId: string,
    consumer: string,
    settlements: readonly Settlement[],
    now: number,
  ): Promise<void> {
    this.open()
    const subscription = this.tenant(tenant).subscriptions.get(subscriptionId)
    if (!subscription) return // unsubscribed meanwhile: nothing is owed any more
    for (const settlement of settlements) {
      const row = subscription.active.get(settlement.seq)
      if (!row || row.state !== 'leased' || row.consumer !== consumer) continue
      row.updatedAt = now
      row.leaseUntil = undefined
      row.consumer = undefined
      switch (settlement.outcome) {
        case 'delivered':
          subscription.active.delete(settlement.seq)
          break
        case 'retry':
          row.state = 'retrying'
          row.nextAttemptAt = settlement.retryAt
          row.lastError = settlement.error
          subscription.nextDue = Math.min(subscription.nextDue, settlement.retryAt)
          break
        case 'dead':
          row.state = 'dead'
          row.lastError = settlement.error
          subscription.active.delete(settlement.seq)
          subscription.dead.set(settlement.seq, row)
          break
      }
    }
  }

  async deliveryRecords(tenant: Tenant, seq: string): Promise<DeliveryRecord[]> {
    this.open()
    const out: DeliveryRecord[] = []
    for (const subscription of this.tenant(tenant).subscriptions.values()) {
      const row = subscription.active.get(seq) ?? subscription.dead.get(seq)
      if (row) out.push(publicRecord(row))
    }
    return out
  }

  async listDeadLetters(tenant: Tenant, query: DeadLetterQuery): Promise<StoredDeadLetter[]> {
    this.open()
    const rows: Row[] = []
    for (const subscription of this.tenant(tenant).subscriptions.values()) {
      if (query.subscriptionId !== undefined && subscription.record.id !== query.subscriptionId) continue
      for (const row of subscription.dead.values())
        if (query.after === undefined || row.seq > query.after) rows.push(row)
    }
    rows.sort((a, b) =>
      a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : a.subscriptionId < b.subscriptionId ? -1 : 1,
    )
    return rows.slice(0, query.limit).map((row) => ({ ...publicRecord(row), event: row.event }))
  }

  async redrive(tenant: Tenant, subscriptionId: string, seq: string, now: number): Promise<boolean> {
    this.open()
    const subscription = this.tenant(tenant).subscriptions.get(subscriptionId)
    const row = subscription?.dead.get(seq)
    if (!subscription || !row) return false
    subscription.dead.delete(seq)
    row.state = 'retrying'
    row.attempts = 0
    row.nextAttemptAt = now
    row.updatedAt = now
    subscription.active.set(seq, row)
    subscription.nextDue = Math.min(subscription.nextDue, now)
    return true
  }

  async deleteDeadLetter(tenant: Tenant, subscriptionId: string, seq: string): Promise<boolean> {
    this.open()
    return this.tenant(tenant).subscriptions.get(subscriptionId)?.dead.delete(seq) ?? false
  }

  /** tenant + name → its holder and when the lock lapses. */
  private readonly locks = new Map<string, { token: string; until: number }>()

  async lock(tenant: Tenant, name: string, options: LockOptions): Promise<Unlock> {
    this.open()
    const key = `${tenantKey(tenant)}\n${name}`
    const token = lockToken()
    await takeLock(
      () => {
        this.open()
        const held = this.locks.get(key)
        if (held && held.until > Date.now()) return false
        this.locks.set(key, { token, until: Date.now() + options.ttlMs })
        return true
      },
      name,
      options,
    )
    return async () => {
      if (this.locks.get(key)?.token === token) this.locks.delete(key)
    }
  }

  async close(): Promise<void> {
    this.closed = true
    this.listeners = []
  }
}

function copyRecord(record: SubscriptionRecord): SubscriptionRecord {
  return structuredClone(record)
}

function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1
  return 0
}

/** When a leased or retrying record falls due. */
function dueAt(row: Row): number {
  return row.state === 'retrying' ? row.nextAttemptAt! : row.leaseUntil!
}

/** A record as the contract shows it: absent fields left out (rows keep every field, for speed). */
function publicRecord(row: Row): DeliveryRecord {
  const record: DeliveryRecord = {
    subscriptionId: row.subscriptionId,
    seq: row.seq,
    eventId: row.eventId,
    state: row.state,
    attempts: row.attempts,
    updatedAt: row.updatedAt,
  }
  if (row.lastError !== undefined) record.lastError = row.lastError
  if (row.nextAttemptAt !== undefined) record.nextAttemptAt = row.nextAttemptAt
  if (row.leaseUntil !== undefined) record.leaseUntil = row.leaseUntil
  if (row.consumer !== undefined) record.consumer = row.consumer
  return record
}
