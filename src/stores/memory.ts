import { HeraldError } from '../errors.js'
import type { HeraldEvent, PreparedEvent, Tenant } from '../event.js'
import { tenantKey } from '../event.js'
import type {
  AppendOptions,
  AppendResult,
  ClaimRequest,
  ClaimResult,
  DeadLetterQuery,
  Delivery,
  DeliveryRecord,
  Settlement,
  Store,
  StoredDeadLetter,
  SubscriptionRecord,
  SubscriptionSpec,
} from './store.js'

export interface MemoryStoreOptions {
  /** Events kept per tenant for reads, status and late durable subscribers (default 50,000). Events a durable subscription still owes are kept regardless. */
  maxEvents?: number
}

export const DEFAULT_MEMORY_MAX_EVENTS = 50_000
const SEQ_WIDTH = 16
const DEFAULT_SCAN_LIMIT = 10_000

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
}

interface Group {
  events: HeraldEvent[]
  expiresAt: number
}

class TenantState {
  /** The log; `events[i]` has absolute index `base + i`. */
  events: HeraldEvent[] = []
  base = 0
  subscriptions = new Map<string, Subscription>()
  groups = new Map<string, Group>()

  get end(): number {
    return this.base + this.events.length
  }

  /** Absolute index of the first event with seq > `after`. */
  indexAfter(after: string | undefined): number {
    if (after === undefined || after === '') return this.base
    let lo = 0
    let hi = this.events.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.events[mid]!.seq! <= after) lo = mid + 1
      else hi = mid
    }
    return this.base + lo
  }

  at(index: number): HeraldEvent {
    return this.events[index - this.base]!
  }
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
  private readonly listeners = new Set<(events: readonly HeraldEvent[]) => void>()
  /** tenant + id → time the id may be reused; in insertion (= expiry) order. */
  private readonly seenIds = new Map<string, number>()
  private counter = 0
  private closed = false

  constructor(options: MemoryStoreOptions) {
    const maxEvents = options.maxEvents ?? DEFAULT_MEMORY_MAX_EVENTS
    if (!Number.isInteger(maxEvents) || maxEvents < 1) {
      throw new HeraldError('invalid_option', `memoryStore maxEvents must be a positive integer, got ${maxEvents}`)
    }
    this.maxEvents = maxEvents
  }

  private tenant(tenant: Tenant): TenantState {
    const key = tenantKey(tenant)
    let state = this.tenants.get(key)
    if (!state) this.tenants.set(key, (state = new TenantState()))
    return state
  }

  private open(): void {
    if (this.closed) throw new HeraldError('closed', 'the store is closed')
  }

  private nextSeq(): string {
    return String(++this.counter).padStart(SEQ_WIDTH, '0')
  }

  append(tenant: Tenant, inputs: readonly PreparedEvent[], options: AppendOptions): Promise<AppendResult> {
    try {
      this.open()
      const state = this.tenant(tenant)
      const key = tenantKey(tenant)
      const appended: HeraldEvent[] = []
      const duplicates: string[] = []
      let staged = 0
      if (this.seenIds.size > 0) this.forgetExpiredIds(options.now)
      for (const input of inputs) {
        if (input.dedupe) {
          const idKey = `${key}\n${input.event.id}`
          const until = this.seenIds.get(idKey)
          if (until !== undefined && until > options.now) {
            duplicates.push(input.event.id)
            continue
          }
          this.seenIds.delete(idKey)
          this.seenIds.set(idKey, options.now + options.dedupeWindowMs)
        }
        if (input.groupId !== undefined) {
          let group = state.groups.get(input.groupId)
          if (!group || group.expiresAt <= options.now) state.groups.set(input.groupId, (group = { events: [], expiresAt: 0 }))
          group.events.push(input.event)
          group.expiresAt = options.now + options.groupTtlMs
          staged++
          continue
        }
        const event = input.event
        event.seq = this.nextSeq()
        state.events.push(event)
        appended.push(event)
      }
      if (appended.length > 0) {
        this.trim(state)
        this.notify(appended)
      }
      return Promise.resolve({ appended, staged, duplicates })
    } catch (error) {
      return Promise.reject(error)
    }
  }

  private forgetExpiredIds(now: number): void {
    for (const [key, until] of this.seenIds) {
      if (until > now) break
      this.seenIds.delete(key)
    }
  }

  /** Drops the oldest events beyond `maxEvents`, never one a durable subscription has yet to look at. */
  private trim(state: TenantState): void {
    // Trim in chunks so that the cost of shifting the array is spread over many appends.
    if (state.events.length <= this.maxEvents + Math.max(64, this.maxEvents >>> 3)) return
    let keepFrom = state.end - this.maxEvents
    for (const subscription of state.subscriptions.values()) keepFrom = Math.min(keepFrom, subscription.next)
    const drop = keepFrom - state.base
    if (drop <= 0) return
    state.events.splice(0, drop)
    state.base += drop
  }

  private notify(events: readonly HeraldEvent[]): void {
    for (const listener of this.listeners) {
      try {
        listener(events)
      } catch {
        // A watcher's failure is the watcher's business; the append has happened.
      }
    }
  }

  async read(tenant: Tenant, query: { after?: string; limit: number }): Promise<HeraldEvent[]> {
    this.open()
    const state = this.tenant(tenant)
    const from = state.indexAfter(query.after)
    const to = Math.min(state.end, from + Math.max(0, query.limit))
    return state.events.slice(from - state.base, to - state.base)
  }

  async getEvent(tenant: Tenant, id: string): Promise<HeraldEvent | undefined> {
    this.open()
    const events = this.tenant(tenant).events
    for (let i = events.length - 1; i >= 0; i--) if (events[i]!.id === id) return events[i]
    return undefined
  }

  async head(tenant: Tenant): Promise<string | undefined> {
    this.open()
    const events = this.tenant(tenant).events
    return events.length > 0 ? events[events.length - 1]!.seq : undefined
  }

  watch(listener: (events: readonly HeraldEvent[]) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  async releaseGroup(tenant: Tenant, groupId: string, now: number): Promise<HeraldEvent[]> {
    this.open()
    const state = this.tenant(tenant)
    const group = state.groups.get(groupId)
    if (!group) return []
    state.groups.delete(groupId)
    if (group.expiresAt <= now) return []
    for (const event of group.events) {
      event.seq = this.nextSeq()
      state.events.push(event)
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
    const group = state.groups.get(groupId)
    if (!group) return 0
    if (topics === undefined) {
      state.groups.delete(groupId)
      return group.events.length
    }
    const before = group.events.length
    group.events = group.events.filter((event) => !topics.includes(event.topic))
    if (group.events.length === 0) state.groups.delete(groupId)
    return before - group.events.length
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
    const head = state.events.length > 0 ? state.events[state.events.length - 1]!.seq! : ''
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
    state.subscriptions.set(spec.id, { record, next: state.end, active: new Map(), dead: new Map() })
    return copyRecord(record)
  }

  async deleteSubscription(tenant: Tenant, id: string): Promise<boolean> {
    this.open()
    return this.tenant(tenant).subscriptions.delete(id)
  }

  async listSubscriptions(tenant?: Tenant): Promise<SubscriptionRecord[]> {
    this.open()
    const states = tenant ? [this.tenant(tenant)] : [...this.tenants.values()]
    const records = states.flatMap((state) => [...state.subscriptions.values()].map((s) => copyRecord(s.record)))
    return records.sort((a, b) => compareKeys([a.account, a.workspace, a.id], [b.account, b.workspace, b.id]))
  }

  private subscription(tenant: Tenant, id: string): Subscription {
    const subscription = this.tenant(tenant).subscriptions.get(id)
    if (!subscription) throw new HeraldError('not_found', `no subscription ${JSON.stringify(id)} in ${tenantKey(tenant)}`)
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
      delete row.nextAttemptAt
    }

    if (subscription.active.size > 0) {
      const due = [...subscription.active.values()]
        .filter((row) => (row.state === 'retrying' ? row.nextAttemptAt! <= now : row.leaseUntil! <= now))
        .sort((a, b) => (a.seq < b.seq ? -1 : 1))
      for (const row of due) {
        if (deliveries.length >= limit) break
        lease(row)
      }
    }

    let scanned = 0
    const scanLimit = request.scanLimit ?? DEFAULT_SCAN_LIMIT
    while (deliveries.length < limit && subscription.next < state.end && scanned < scanLimit) {
      const event = state.at(subscription.next++)
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
        event,
      }
      subscription.active.set(row.seq, row)
      lease(row)
    }

    let nextDueAt: number | undefined
    for (const row of subscription.active.values()) {
      const at = row.state === 'retrying' ? row.nextAttemptAt! : row.leaseUntil!
      if (at > now && (nextDueAt === undefined || at < nextDueAt)) nextDueAt = at
    }
    const more = deliveries.length >= limit || subscription.next < state.end
    return nextDueAt === undefined ? { deliveries, more } : { deliveries, more, nextDueAt }
  }

  async renew(tenant: Tenant, subscriptionId: string, consumer: string, seqs: readonly string[], leaseUntil: number): Promise<string[]> {
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

  async settle(tenant: Tenant, subscriptionId: string, consumer: string, settlements: readonly Settlement[], now: number): Promise<void> {
    this.open()
    const subscription = this.tenant(tenant).subscriptions.get(subscriptionId)
    if (!subscription) return // unsubscribed meanwhile: nothing is owed any more
    for (const settlement of settlements) {
      const row = subscription.active.get(settlement.seq)
      if (!row || row.state !== 'leased' || row.consumer !== consumer) continue
      row.updatedAt = now
      delete row.leaseUntil
      delete row.consumer
      switch (settlement.outcome) {
        case 'delivered':
          subscription.active.delete(settlement.seq)
          break
        case 'retry':
          row.state = 'retrying'
          row.nextAttemptAt = settlement.retryAt
          row.lastError = settlement.error
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
      for (const row of subscription.dead.values()) if (query.after === undefined || row.seq > query.after) rows.push(row)
    }
    rows.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : a.subscriptionId < b.subscriptionId ? -1 : 1))
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
    return true
  }

  async deleteDeadLetter(tenant: Tenant, subscriptionId: string, seq: string): Promise<boolean> {
    this.open()
    return this.tenant(tenant).subscriptions.get(subscriptionId)?.dead.delete(seq) ?? false
  }

  async close(): Promise<void> {
    this.closed = true
    this.listeners.clear()
  }
}

function copyRecord(record: SubscriptionRecord): SubscriptionRecord {
  return structuredClone(record)
}

function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1
  return 0
}

function publicRecord(row: Row): DeliveryRecord {
  const { event: _event, ...record } = row
  return { ...record }
}
