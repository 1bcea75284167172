import { HeraldError, isHeraldError } from '../errors.js'
import type { HeraldEvent, PreparedEvent, Tenant } from '../event.js'
import { tenantKey } from '../event.js'
import { CommitQueue } from './sqlite/commit-queue.js'
import { EventCache } from './sqlite/event-cache.js'
import { Retention } from './sqlite/retention.js'
import { messageOf, openDatabase, type Database } from './sqlite/schema.js'
import { formatPosition, formatSeq, parseSeq, seqBound } from './sqlite/seq.js'
import {
  prepareStatements,
  type DeliveryRow,
  type Statements,
  type SubscriptionRow,
} from './sqlite/statements.js'
import type {
  AppendOptions,
  AppendResult,
  ClaimRequest,
  ClaimResult,
  DeadLetterQuery,
  Delivery,
  DeliveryRecord,
  DeliveryRecordState,
  Settlement,
  Store,
  StoredDeadLetter,
  SubscriptionRecord,
  SubscriptionSpec,
} from './store.js'

export interface SqliteStoreOptions {
  /** The database file; created (with its directory) when missing. */
  path: string
  /**
   * `'normal'` (default): a committed event survives the process being killed (SIGKILL, a crash),
   * but the last commits before a power loss or OS crash may be lost. `'full'`: every commit is
   * flushed to the disk first, so it survives power loss too, at a much lower commit rate.
   */
  synchronous?: 'normal' | 'full'
  /** How long a write waits for another process holding the database's write lock, in ms (default 5000). */
  busyTimeout?: number
  /** Events older than this many ms are removed, unless still owed (default 7 days; `Infinity` keeps them). */
  maxAge?: number
  /** Only the newest this many events are kept, unless still owed (default 1,000,000; `Infinity` keeps all). */
  maxEvents?: number
  /** How often retention runs, in ms (default 1000); it runs again soon after while it finds much to remove. */
  retentionInterval?: number
  /** Most events retention looks at in one step (default 2000). */
  retentionBatch?: number
  /** A group commit is written early once this many events wait (default 1000). */
  maxBatchEvents?: number
  /** Recently stored events kept as objects, so claims need not parse them again (default 20,000). */
  cachedEvents?: number
}

export const SQLITE_DEFAULTS = Object.freeze({
  synchronous: 'normal' as const,
  busyTimeout: 5000,
  maxAge: 7 * 24 * 60 * 60 * 1000,
  maxEvents: 1_000_000,
  retentionInterval: 1000,
  retentionBatch: 2000,
  maxBatchEvents: 1000,
  cachedEvents: 20_000,
})

const DEFAULT_SCAN_LIMIT = 10_000
/** Retention runs again after this long when its last step was cut short by its budget. */
const RETENTION_CATCH_UP_MS = 10

/**
 * The durable embedded store (DESIGN §6): one SQLite file in WAL mode, written through group
 * commits. An append resolves once its transaction committed, so an answered emit survives the
 * process being killed; durable subscriptions, delivery records, staged groups and dedupe ids
 * live in the same file. Several processes may open one file (a second bus, the admin CLI);
 * `watch` sees only this process's appends, so live delivery across processes needs Redis.
 */
export function sqliteStore(options: SqliteStoreOptions): Store {
  return new SqliteStore(resolveOptions(options))
}

type Resolved = Required<SqliteStoreOptions>

function resolveOptions(options: SqliteStoreOptions): Resolved {
  if (typeof options !== 'object' || options === null)
    throw new HeraldError('invalid_option', 'sqliteStore needs { path }')
  if (typeof options.path !== 'string' || options.path === '')
    throw new HeraldError('invalid_option', 'sqliteStore path must be a non-empty string')
  if (options.path === ':memory:')
    throw new HeraldError(
      'invalid_option',
      'sqliteStore is for a file; use memoryStore() for an in-memory store',
    )
  const resolved: Resolved = { ...SQLITE_DEFAULTS, ...stripUndefined(options), path: options.path }
  if (resolved.synchronous !== 'normal' && resolved.synchronous !== 'full') {
    throw new HeraldError(
      'invalid_option',
      `sqliteStore synchronous must be 'normal' or 'full', got ${JSON.stringify(resolved.synchronous)}`,
    )
  }
  const checks: [keyof Resolved, boolean][] = [
    ['busyTimeout', false],
    ['maxAge', true],
    ['maxEvents', true],
    ['retentionInterval', false],
    ['retentionBatch', false],
    ['maxBatchEvents', false],
  ]
  for (const [name, infinite] of checks) {
    const value = resolved[name] as number
    const ok =
      typeof value === 'number' && value > 0 && (Number.isInteger(value) || (infinite && value === Infinity))
    if (!ok)
      throw new HeraldError(
        'invalid_option',
        `sqliteStore ${name} must be a positive integer${infinite ? ' or Infinity' : ''}, got ${JSON.stringify(value)}`,
      )
  }
  if (!Number.isInteger(resolved.cachedEvents) || resolved.cachedEvents < 0) {
    throw new HeraldError(
      'invalid_option',
      `sqliteStore cachedEvents must be a non-negative integer, got ${JSON.stringify(resolved.cachedEvents)}`,
    )
  }
  return resolved
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** What one write transaction accumulates for after its commit. */
interface Transaction {
  /** The last seq given out (loaded on first use). */
  lastSeq: number | undefined
  appended: HeraldEvent[]
  appendedSeqs: number[]
  /** Tenants created in this transaction: cached only once it committed. */
  tenants: Map<string, number> | undefined
}

class SqliteStore implements Store {
  readonly kind = 'sqlite'
  readonly durable = true
  private readonly db: Database
  private readonly s: Statements
  private readonly queue: CommitQueue<Transaction>
  private readonly cache: EventCache
  private readonly retention: Retention
  private readonly tenantIds = new Map<string, number>()
  private readonly listeners = new Set<(events: readonly HeraldEvent[]) => void>()
  private retentionTimer: ReturnType<typeof setTimeout> | undefined
  private closed = false

  constructor(private readonly options: Resolved) {
    this.db = openDatabase(options)
    try {
      this.s = prepareStatements(this.db)
      this.retention = new Retention(this.db, {
        maxAge: options.maxAge,
        maxEvents: options.maxEvents,
        batch: options.retentionBatch,
      })
    } catch (error) {
      this.db.close()
      throw new HeraldError(
        'store_incompatible',
        `sqliteStore: ${options.path}: the database does not have the expected tables: ${messageOf(error)}`,
      )
    }
    this.cache = new EventCache(options.cachedEvents)
    this.queue = new CommitQueue<Transaction>(
      this.db,
      {
        begin: () => ({ lastSeq: undefined, appended: [], appendedSeqs: [], tenants: undefined }),
        beforeCommit: () => {},
        afterCommit: (tx) => this.committed(tx),
      },
      options.maxBatchEvents,
    )
    this.scheduleRetention(options.retentionInterval)
  }

  // ── plumbing ─────────────────────────────────────────────────────────────────────────────

  private write<T>(op: (tx: Transaction) => T, weight = 1): Promise<T> {
    if (this.closed) return Promise.reject(new HeraldError('closed', 'the store is closed'))
    return this.queue.enqueue(op, weight)
  }

  /** Reads run at once on the connection: they see every committed write. */
  private reading<T>(fn: () => T): Promise<T> {
    if (this.closed) return Promise.reject(new HeraldError('closed', 'the store is closed'))
    try {
      return Promise.resolve(fn())
    } catch (error) {
      if (isHeraldError(error)) return Promise.reject(error)
      return Promise.reject(
        new HeraldError('store_unavailable', `sqliteStore: read failed: ${messageOf(error)}`),
      )
    }
  }

  private committed(tx: Transaction): void {
    if (tx.tenants) for (const [key, id] of tx.tenants) this.tenantIds.set(key, id)
    if (tx.appended.length === 0) return
    for (let i = 0; i < tx.appended.length; i++) this.cache.add(tx.appendedSeqs[i]!, tx.appended[i]!)
    for (const listener of this.listeners) {
      try {
        listener(tx.appended)
      } catch {
        // A watcher's failure is the watcher's business; the append has happened.
      }
    }
  }

  private nextSeq(tx: Transaction): number {
    tx.lastSeq ??= this.s.lastSeq.get() ?? 0
    return ++tx.lastSeq
  }

  /** The tenant's id, or undefined when it never wrote anything here. */
  private tenantId(tenant: Tenant): number | undefined {
    const key = tenantKey(tenant)
    const cached = this.tenantIds.get(key)
    if (cached !== undefined) return cached
    const id = this.s.tenantId.get(tenant.account, tenant.workspace)
    if (id !== undefined) this.tenantIds.set(key, id)
    return id
  }

  private tenantIdForWrite(tx: Transaction, tenant: Tenant): number {
    const key = tenantKey(tenant)
    const known = this.tenantIds.get(key) ?? tx.tenants?.get(key)
    if (known !== undefined) return known
    this.s.addTenant.run(tenant.account, tenant.workspace)
    const id = this.s.tenantId.get(tenant.account, tenant.workspace)!
    ;(tx.tenants ??= new Map()).set(key, id)
    return id
  }

  /** The stored event with this seq, from the cache when this process stored it recently. */
  private eventAt(seq: number): HeraldEvent | undefined {
    const cached = this.cache.get(seq)
    if (cached) return cached
    const body = this.s.eventBody.get(seq)
    if (body === undefined) return undefined
    const event = parseEvent(seq, body)
    this.cache.add(seq, event)
    return event
  }

  private subscriptionKey(tenant: Tenant, id: string): number | undefined {
    const tenantId = this.tenantId(tenant)
    return tenantId === undefined ? undefined : this.s.subscriptionKey.get(tenantId, id)
  }

  private scheduleRetention(delay: number): void {
    this.retentionTimer = setTimeout(this.runRetention, delay)
    this.retentionTimer.unref?.()
  }

  private readonly runRetention = (): void => {
    this.retentionTimer = undefined
    if (this.closed) return
    this.write(() => this.retention.step(Date.now())).then(
      (step) => {
        if (!this.closed)
          this.scheduleRetention(step.more ? RETENTION_CATCH_UP_MS : this.options.retentionInterval)
      },
      () => {
        // The database was busy or failing; the next step tries again.
        if (!this.closed) this.scheduleRetention(this.options.retentionInterval)
      },
    )
  }

  // ── the log ──────────────────────────────────────────────────────────────────────────────

  append(tenant: Tenant, inputs: readonly PreparedEvent[], options: AppendOptions): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new HeraldError('closed', 'the store is closed'))
    // Serialized before the transaction, so the write lock is held only for the writes.
    const bodies = new Array<string>(inputs.length)
    for (let i = 0; i < inputs.length; i++) bodies[i] = JSON.stringify(inputs[i]!.event)
    return this.write((tx) => this.appendNow(tx, tenant, inputs, bodies, options), inputs.length)
  }

  private appendNow(
    tx: Transaction,
    tenant: Tenant,
    inputs: readonly PreparedEvent[],
    bodies: string[],
    options: AppendOptions,
  ): AppendResult {
    const { now } = options
    const s = this.s
    const tenantId = this.tenantIdForWrite(tx, tenant)
    const appended: HeraldEvent[] = []
    const duplicates: string[] = []
    let staged = 0
    for (let i = 0; i < inputs.length; i++) {
      const input = inputs[i]!
      const event = input.event
      if (input.dedupe) {
        const until = s.dedupeUntil.get(tenantId, event.id)
        if (until !== undefined && until > now) {
          duplicates.push(event.id)
          continue
        }
        s.remember.run(tenantId, event.id, now + options.dedupeWindowMs)
      }
      if (input.groupId !== undefined) {
        const expiresAt = s.groupExpiry.get(tenantId, input.groupId)
        if (expiresAt !== undefined && expiresAt <= now) s.deleteStaged.run(tenantId, input.groupId)
        s.upsertGroup.run(tenantId, input.groupId, now + options.groupTtlMs)
        s.stage.run(tenantId, input.groupId, event.topic, bodies[i]!)
        staged++
        continue
      }
      const seq = this.nextSeq(tx)
      s.insertEvent.run(seq, tenantId, event.id, now, bodies[i]!)
      event.seq = formatSeq(seq)
      appended.push(event)
      tx.appended.push(event)
      tx.appendedSeqs.push(seq)
    }
    return { appended, staged, duplicates }
  }

  read(tenant: Tenant, query: { after?: string; limit: number }): Promise<HeraldEvent[]> {
    return this.reading(() => {
      const tenantId = this.tenantId(tenant)
      if (tenantId === undefined || !(query.limit > 0)) return []
      const rows = this.s.readAfter.all(tenantId, seqBound(query.after), Math.floor(query.limit))
      return rows.map(([seq, body]) => this.cache.get(seq) ?? parseEvent(seq, body))
    })
  }

  getEvent(tenant: Tenant, id: string): Promise<HeraldEvent | undefined> {
    return this.reading(() => {
      const tenantId = this.tenantId(tenant)
      const row = tenantId === undefined ? undefined : this.s.eventById.get(tenantId, id)
      return row && (this.cache.get(row[0]) ?? parseEvent(row[0], row[1]))
    })
  }

  head(tenant: Tenant): Promise<string | undefined> {
    return this.reading(() => {
      const tenantId = this.tenantId(tenant)
      const seq = tenantId === undefined ? null : this.s.head.get(tenantId)
      return seq === null || seq === undefined ? undefined : formatSeq(seq)
    })
  }

  watch(listener: (events: readonly HeraldEvent[]) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  // ── staged groups ────────────────────────────────────────────────────────────────────────

  releaseGroup(tenant: Tenant, groupId: string, now: number): Promise<HeraldEvent[]> {
    return this.write((tx) => {
      const tenantId = this.tenantId(tenant)
      if (tenantId === undefined) return []
      const expiresAt = this.s.groupExpiry.get(tenantId, groupId)
      if (expiresAt === undefined) return []
      const bodies = this.s.stagedBodies.all(tenantId, groupId)
      this.s.deleteStaged.run(tenantId, groupId)
      this.s.deleteGroup.run(tenantId, groupId)
      if (expiresAt <= now) return []
      const events: HeraldEvent[] = []
      for (const body of bodies) {
        const seq = this.nextSeq(tx)
        const event = parseEvent(seq, body)
        this.s.insertEvent.run(seq, tenantId, event.id, now, body)
        events.push(event)
        tx.appended.push(event)
        tx.appendedSeqs.push(seq)
      }
      return events
    })
  }

  clearGroup(tenant: Tenant, groupId: string, topics?: readonly string[]): Promise<number> {
    return this.write(() => {
      const tenantId = this.tenantId(tenant)
      if (tenantId === undefined) return 0
      if (topics === undefined) {
        this.s.deleteGroup.run(tenantId, groupId)
        return this.s.deleteStaged.run(tenantId, groupId).changes
      }
      let cleared = 0
      for (const topic of new Set(topics))
        cleared += this.s.deleteStagedTopic.run(tenantId, groupId, topic).changes
      if (cleared > 0 && this.s.stagedCount.get(tenantId, groupId) === 0)
        this.s.deleteGroup.run(tenantId, groupId)
      return cleared
    })
  }

  // ── durable subscriptions ────────────────────────────────────────────────────────────────

  openSubscription(spec: SubscriptionSpec, now: number): Promise<SubscriptionRecord> {
    const patterns = JSON.stringify(spec.patterns)
    const meta = spec.meta === undefined ? null : JSON.stringify(spec.meta)
    return this.write((tx) => {
      const tenantId = this.tenantIdForWrite(tx, spec.tenant)
      const sender = spec.sender ?? null
      if (this.s.subscriptionKey.get(tenantId, spec.id) !== undefined) {
        this.s.updateSubscription.run(patterns, sender, meta, tenantId, spec.id)
      } else {
        const head = this.s.head.get(tenantId) ?? 0
        this.s.insertSubscription.run(tenantId, spec.id, patterns, sender, meta, now, head, head)
      }
      return toSubscription(this.s.subscription.get(tenantId, spec.id)!)
    })
  }

  deleteSubscription(tenant: Tenant, id: string): Promise<boolean> {
    return this.write(() => {
      const key = this.subscriptionKey(tenant, id)
      if (key === undefined) return false
      this.s.deleteRecordsOf.run(key)
      this.s.deleteSubscription.run(key)
      return true
    })
  }

  listSubscriptions(tenant?: Tenant): Promise<SubscriptionRecord[]> {
    return this.reading(() => {
      if (tenant === undefined) return this.s.allSubscriptions.all().map(toSubscription)
      const tenantId = this.tenantId(tenant)
      return tenantId === undefined ? [] : this.s.subscriptionsOf.all(tenantId).map(toSubscription)
    })
  }

  claim(tenant: Tenant, subscriptionId: string, request: ClaimRequest): Promise<ClaimResult> {
    return this.write(() => this.claimNow(tenant, subscriptionId, request))
  }

  private claimNow(tenant: Tenant, subscriptionId: string, request: ClaimRequest): ClaimResult {
    const s = this.s
    const tenantId = this.tenantId(tenant)
    const subscription =
      tenantId === undefined ? undefined : s.subscriptionForClaim.get(tenantId, subscriptionId)
    if (tenantId === undefined || !subscription) {
      throw new HeraldError(
        'not_found',
        `no subscription ${JSON.stringify(subscriptionId)} in ${tenantKey(tenant)}`,
      )
    }
    const { key } = subscription
    const { now, limit, consumer, match } = request
    const leaseUntil = now + request.leaseMs
    const deliveries: Delivery[] = []

    // 1. Deliveries due again: retries whose time came, leases whose consumer went quiet.
    if (limit > 0) {
      for (const [seq, attempts] of s.dueRecords.all(key, now, limit)) {
        const event = this.eventAt(seq)
        if (!event) {
          s.dropRecord.run(key, seq) // cannot happen while retention keeps owed events; never lease nothing
          continue
        }
        s.leaseAgain.run(consumer, leaseUntil, now, key, seq)
        deliveries.push({ event, attempt: attempts })
      }
    }

    // 2. New events after the cursor.
    const scanLimit = request.scanLimit ?? DEFAULT_SCAN_LIMIT
    let cursor = subscription.cursor
    let scanned = 0
    let endOfLog = false
    while (deliveries.length < limit && scanned < scanLimit) {
      const page = Math.min(scanLimit - scanned, Math.max(256, 2 * (limit - deliveries.length)))
      const seqs = s.seqsAfter.all(tenantId, cursor, page)
      let looked = 0
      for (const seq of seqs) {
        looked++
        cursor = seq
        const event = this.eventAt(seq)
        if (!event || !match(event)) continue
        s.leaseNew.run(key, seq, consumer, leaseUntil, now)
        deliveries.push({ event, attempt: 0 })
        if (deliveries.length >= limit) break
      }
      scanned += looked
      if (looked < seqs.length) break // the limit was reached
      if (seqs.length < page) {
        endOfLog = true
        break
      }
    }
    if (cursor !== subscription.cursor) s.moveCursor.run(cursor, key)

    const more = deliveries.length >= limit || (!endOfLog && s.seqsAfter.all(tenantId, cursor, 1).length > 0)
    const nextDueAt = s.nextDue.get(key, now)
    return nextDueAt === null || nextDueAt === undefined
      ? { deliveries, more }
      : { deliveries, more, nextDueAt }
  }

  renew(
    tenant: Tenant,
    subscriptionId: string,
    consumer: string,
    seqs: readonly string[],
    leaseUntil: number,
  ): Promise<string[]> {
    return this.write(() => {
      const key = this.subscriptionKey(tenant, subscriptionId)
      if (key === undefined) return [...seqs]
      return seqs.filter((seq) => {
        const n = parseSeq(seq)
        return n === undefined || this.s.renew.run(leaseUntil, key, n, consumer).changes === 0
      })
    })
  }

  settle(
    tenant: Tenant,
    subscriptionId: string,
    consumer: string,
    settlements: readonly Settlement[],
    now: number,
  ): Promise<void> {
    return this.write(() => {
      const key = this.subscriptionKey(tenant, subscriptionId)
      if (key === undefined) return // unsubscribed meanwhile: nothing is owed any more
      for (const settlement of settlements) {
        const seq = parseSeq(settlement.seq)
        if (seq === undefined) continue
        switch (settlement.outcome) {
          case 'delivered':
            this.s.delivered.run(key, seq, consumer)
            break
          case 'retry':
            this.s.retry.run(settlement.retryAt, settlement.error, now, key, seq, consumer)
            break
          case 'dead':
            this.s.dead.run(settlement.error, now, key, seq, consumer)
            break
        }
      }
    }, settlements.length)
  }

  deliveryRecords(tenant: Tenant, seq: string): Promise<DeliveryRecord[]> {
    return this.reading(() => {
      const tenantId = this.tenantId(tenant)
      const n = parseSeq(seq)
      if (tenantId === undefined || n === undefined) return []
      return this.s.recordsOfEvent.all(n, tenantId).map(toRecord)
    })
  }

  // ── dead letters ─────────────────────────────────────────────────────────────────────────

  listDeadLetters(tenant: Tenant, query: DeadLetterQuery): Promise<StoredDeadLetter[]> {
    return this.reading(() => {
      const tenantId = this.tenantId(tenant)
      if (tenantId === undefined || !(query.limit > 0)) return []
      const rows = this.s.deadLetters.all({
        tenant: tenantId,
        after: seqBound(query.after),
        subscription: query.subscriptionId ?? null,
        limit: Math.floor(query.limit),
      })
      return rows.map((row) => ({
        ...toRecord(row),
        event: this.cache.get(row.seq) ?? parseEvent(row.seq, row.body),
      }))
    })
  }

  redrive(tenant: Tenant, subscriptionId: string, seq: string, now: number): Promise<boolean> {
    return this.write(() => {
      const key = this.subscriptionKey(tenant, subscriptionId)
      const n = parseSeq(seq)
      return key !== undefined && n !== undefined && this.s.redrive.run(now, now, key, n).changes > 0
    })
  }

  deleteDeadLetter(tenant: Tenant, subscriptionId: string, seq: string): Promise<boolean> {
    return this.write(() => {
      const key = this.subscriptionKey(tenant, subscriptionId)
      const n = parseSeq(seq)
      return key !== undefined && n !== undefined && this.s.deleteDeadLetter.run(key, n).changes > 0
    })
  }

  async close(): Promise<void> {
    if (this.closed) return
    if (this.retentionTimer) clearTimeout(this.retentionTimer)
    this.retentionTimer = undefined
    // Pending writes complete first; then nothing new is accepted.
    this.queue.flush()
    this.closed = true
    this.queue.abandon(new HeraldError('closed', 'the store is closed'))
    this.listeners.clear()
    this.cache.clear()
    this.db.close()
  }
}

function parseEvent(seq: number, body: string): HeraldEvent {
  const event = JSON.parse(body) as HeraldEvent
  event.seq = formatSeq(seq)
  return event
}

function toSubscription(row: SubscriptionRow): SubscriptionRecord {
  const record: SubscriptionRecord = {
    account: row.account,
    workspace: row.workspace,
    id: row.id,
    patterns: JSON.parse(row.patterns) as string[],
    createdAt: row.created_at,
    startSeq: formatPosition(row.start_seq),
    cursor: formatPosition(row.cursor),
  }
  if (row.sender !== null) record.sender = row.sender
  if (row.meta !== null) record.meta = JSON.parse(row.meta) as Record<string, unknown>
  return record
}

function toRecord(row: DeliveryRow): DeliveryRecord {
  const record: DeliveryRecord = {
    subscriptionId: row.subscription,
    seq: formatSeq(row.seq),
    eventId: row.event_id ?? '',
    state: row.state as DeliveryRecordState,
    attempts: row.attempts,
    updatedAt: row.updated_at,
  }
  if (row.last_error !== null) record.lastError = row.last_error
  if (row.state === 'leased') {
    if (row.due_at !== null) record.leaseUntil = row.due_at
    if (row.consumer !== null) record.consumer = row.consumer
  } else if (row.state === 'retrying' && row.due_at !== null) record.nextAttemptAt = row.due_at
  return record
}
