import { resolve } from 'node:path'
import { HeraldError, isHeraldError } from '../errors.js'
import type { HeraldEvent, PreparedBatch, Tenant } from '../event.js'
import { tenantKey } from '../event.js'
import { Checkpointer } from './sqlite/checkpointer.js'
import { CommitQueue } from './sqlite/commit-queue.js'
import { EventCache } from './sqlite/event-cache.js'
import { DeliveryLedger } from './sqlite/ledger.js'
import {
  resolveSqliteOptions,
  type ResolvedSqliteOptions,
  type SqliteStoreOptions,
} from './sqlite/options.js'
import { Retention } from './sqlite/retention.js'
import { parseEvent, toRecord, toSubscription } from './sqlite/rows.js'
import { messageOf, openDatabase, type Database } from './sqlite/schema.js'
import { formatSeq, parseSeq, seqBound } from './sqlite/seq.js'
import { prepare, prepareStatements, type Statement, type Statements } from './sqlite/statements.js'
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

export type { SqliteStoreOptions } from './sqlite/options.js'
export { SQLITE_DEFAULTS } from './sqlite/options.js'

/**
 * The durable embedded store (DESIGN §6): one SQLite file in WAL mode, written through group
 * commits. An append resolves once its transaction committed, so an answered emit survives the
 * process being killed; durable subscriptions, delivery state, staged groups and dedupe ids live
 * in the same file. Several processes may open one file (a second bus, the admin CLI); `watch`
 * sees only this process's appends, so live delivery across processes needs Redis.
 *
 * Loads better-sqlite3 when called, not when Herald is imported. Throws one HeraldError at once
 * when the file cannot be used: `store_unavailable` (cannot be opened or written) or
 * `store_incompatible` (not a SQLite file, another program's database, a newer schema).
 */
export function sqliteStore(options: SqliteStoreOptions): Store {
  return new SqliteStore(resolveSqliteOptions(options))
}

const DEFAULT_SCAN_LIMIT = 10_000
/** Columns of an events row, and most rows per INSERT (SQLite allows 32,766 parameters). */
const COLUMNS = 5
const ROWS_PER_INSERT = 64
/** How often the helper thread copies the write-ahead log into the database file. */
const CHECKPOINT_INTERVAL_MS = 20
/** Retention runs again after this long when its last step was cut short by its budget. */
const RETENTION_CATCH_UP_MS = 10

/** What one write transaction gathers, for the writes after it and for after its commit. */
interface Transaction {
  /** The last seq given out (read on first use). */
  lastSeq: number | undefined
  /** Rows of appended events not inserted yet, flattened: inserted many per statement. */
  rows: (string | number)[]
  appended: HeraldEvent[]
  appendedSeqs: number[]
  /** Their JSON's length: what they weigh in the event cache. */
  appendedBytes: number[]
  /** Tenants created in this transaction: cached only once it committed. */
  tenants: Map<string, number> | undefined
}

class SqliteStore implements Store {
  readonly kind = 'sqlite'
  readonly durable = true
  private readonly db: Database
  private readonly s: Statements
  private readonly ledger: DeliveryLedger
  private readonly retention: Retention
  private readonly queue: CommitQueue<Transaction>
  private readonly cache: EventCache
  private readonly checkpointer: Checkpointer
  /** INSERTs of 1..ROWS_PER_INSERT events, prepared when first needed. */
  private readonly inserts: Statement<[(string | number)[]], unknown>[] = []
  private readonly tenantIds = new Map<string, number>()
  /** The write transaction running now, if any (see `tenantId`). */
  private writing: Transaction | undefined
  private closing: Promise<void> | undefined
  private readonly listeners = new Set<(events: readonly HeraldEvent[]) => void>()
  private retentionTimer: ReturnType<typeof setTimeout> | undefined
  private closed = false

  constructor(private readonly options: ResolvedSqliteOptions) {
    this.db = openDatabase(options)
    try {
      this.s = prepareStatements(this.db)
      this.ledger = new DeliveryLedger(this.db)
      this.retention = new Retention(
        this.db,
        { maxAge: options.maxAge, maxEvents: options.maxEvents, batch: options.retentionBatch },
        (tenantId, groupId) => this.dropStaged(tenantId, groupId),
      )
    } catch (error) {
      this.db.close()
      throw new HeraldError(
        'store_incompatible',
        `sqliteStore: ${options.path} lacks Herald's tables: ${messageOf(error)}`,
      )
    }
    this.cache = new EventCache(options.cachedEvents, options.cachedBytes)
    this.checkpointer = new Checkpointer(resolve(options.path), CHECKPOINT_INTERVAL_MS)
    this.queue = new CommitQueue<Transaction>(
      this.db,
      {
        begin: () =>
          (this.writing = {
            lastSeq: undefined,
            rows: [],
            appended: [],
            appendedSeqs: [],
            appendedBytes: [],
            tenants: undefined,
          }),
        beforeCommit: (tx) => this.insertRows(tx),
        afterCommit: (tx) => this.committed(tx),
        end: () => (this.writing = undefined),
      },
      options.maxBatchEvents,
    )
    this.scheduleRetention(options.retentionInterval)
  }

  // ── plumbing ─────────────────────────────────────────────────────────────────────────────

  /** A write in the next group commit; the appends queued before it are in the log when it runs. */
  private write<T>(op: (tx: Transaction) => T, weight = 1): Promise<T> {
    if (this.closed) return Promise.reject(new HeraldError('closed', 'the store is closed'))
    return this.queue.enqueue((tx) => {
      this.insertRows(tx)
      return op(tx)
    }, weight)
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

  /** Inserts the events appended so far in this transaction, many rows per statement. */
  private insertRows(tx: Transaction): void {
    const rows = tx.rows
    if (rows.length === 0) return
    tx.rows = []
    const count = rows.length / COLUMNS
    for (let from = 0; from < count; from += ROWS_PER_INSERT) {
      const n = Math.min(ROWS_PER_INSERT, count - from)
      const values = `(?, ?, ?, ?, ?)${', (?, ?, ?, ?, ?)'.repeat(n - 1)}`
      const insert = (this.inserts[n] ??= prepare(
        this.db,
        `INSERT INTO events (seq, tenant, id, at, body) VALUES ${values}`,
      ))
      insert.run(n === count ? rows : rows.slice(from * COLUMNS, (from + n) * COLUMNS))
    }
  }

  private committed(tx: Transaction): void {
    if (tx.tenants) for (const [key, id] of tx.tenants) this.tenantIds.set(key, id)
    if (tx.appended.length === 0) return
    for (let i = 0; i < tx.appended.length; i++)
      this.cache.add(tx.appendedSeqs[i]!, tx.appended[i]!, tx.appendedBytes[i]!)
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

  /** Drops a staged group, forgetting its events' publisher ids; returns how many events went. */
  private dropStaged(tenantId: number, groupId: string): number {
    this.s.forgetStagedIds.run(tenantId, tenantId, groupId)
    this.s.deleteGroup.run(tenantId, groupId)
    return this.s.deleteStaged.run(tenantId, groupId).changes
  }

  /** The tenant's id, or undefined when it never wrote anything here. */
  private tenantId(tenant: Tenant): number | undefined {
    const key = tenantKey(tenant)
    const cached = this.tenantIds.get(key)
    if (cached !== undefined) return cached
    // Created by the transaction running now: not cached before it commits. Were it cached and
    // the transaction rolled back, the id could go to another tenant, along with this one's data.
    const created = this.writing?.tenants?.get(key)
    if (created !== undefined) return created
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

  private subscriptionKey(tenant: Tenant, id: string): number | undefined {
    const tenantId = this.tenantId(tenant)
    return tenantId === undefined ? undefined : this.s.subscriptionKey.get(tenantId, id)
  }

  /**
   * The stored event with this seq: appended in this transaction, or cached because this process
   * stored or read it lately, or else read from the database.
   */
  private eventAt(seq: number, tx?: Transaction): HeraldEvent | undefined {
    if (tx && tx.appendedSeqs.length > 0) {
      const index = seq - tx.appendedSeqs[0]! // seqs given out in one transaction are consecutive
      if (index >= 0 && index < tx.appended.length) return tx.appended[index]
    }
    const cached = this.cache.get(seq)
    if (cached) return cached
    const body = this.s.eventBody.get(seq)
    if (body === undefined) return undefined
    const event = parseEvent(seq, body)
    this.cache.add(seq, event, body.length)
    return event
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

  append(tenant: Tenant, batch: PreparedBatch, options: AppendOptions): Promise<AppendResult> {
    if (this.closed) return Promise.reject(new HeraldError('closed', 'the store is closed'))
    const { events } = batch
    // Serialized outside the transaction, so that the write lock is held for the writes only.
    const bodies = new Array<string>(events.length)
    for (let i = 0; i < events.length; i++) bodies[i] = JSON.stringify(events[i])
    return this.queue.enqueue(
      (tx) => this.appendInTransaction(tx, tenant, batch, bodies, options),
      events.length,
    )
  }

  private appendInTransaction(
    tx: Transaction,
    tenant: Tenant,
    batch: PreparedBatch,
    bodies: string[],
    options: AppendOptions,
  ): AppendResult {
    const { now } = options
    const s = this.s
    const { events, dedupe, groups } = batch
    if (dedupe !== undefined) this.assertNoIdConflict(tenant, batch, now)
    const tenantId = this.tenantIdForWrite(tx, tenant)
    const appended: HeraldEvent[] = []
    const duplicates: string[] = []
    let staged = 0
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      const groupId = groups?.[i]
      if (groupId !== undefined) {
        // A group whose TTL passed is gone: its events (and their ids) go before this one is checked.
        const expiresAt = s.groupExpiry.get(tenantId, groupId)
        if (expiresAt !== undefined && expiresAt <= now) this.dropStaged(tenantId, groupId)
      }
      if (dedupe?.[i] === true) {
        const until = s.dedupeUntil.get(tenantId, event.id)
        if (until !== undefined && until > now) {
          duplicates.push(event.id)
          continue
        }
        s.remember.run(tenantId, event.id, now + options.dedupeWindowMs)
      }
      if (groupId !== undefined) {
        s.upsertGroup.run(tenantId, groupId, now + options.groupTtlMs)
        s.stage.run(tenantId, groupId, event.topic, bodies[i]!)
        staged++
        continue
      }
      const seq = this.nextSeq(tx)
      tx.rows.push(seq, tenantId, event.id, now, bodies[i]!)
      event.seq = formatSeq(seq)
      appended.push(event)
      tx.appended.push(event)
      tx.appendedSeqs.push(seq)
      tx.appendedBytes.push(bodies[i]!.length)
    }
    return { appended, staged, duplicates }
  }

  /**
   * A publisher id names one event for its dedupe window: used again for another topic, the emit
   * is refused before anything of it is written, rather than dropped as a repeat it is not.
   */
  private assertNoIdConflict(tenant: Tenant, batch: PreparedBatch, now: number): void {
    const s = this.s
    const tenantId = this.tenantId(tenant)
    let swept = false
    let inBatch: Map<string, string> | undefined
    for (let i = 0; i < batch.events.length; i++) {
      if (batch.dedupe?.[i] !== true) continue
      const { id, topic } = batch.events[i]!
      let earlier = inBatch?.get(id)
      const until = tenantId === undefined ? undefined : s.dedupeUntil.get(tenantId, id)
      if (earlier === undefined && tenantId !== undefined && until !== undefined && until > now) {
        // The id may be one of a group whose TTL passed that retention has not dropped yet: its
        // event was never stored, so it counts for nothing (a publisher retrying a dead transaction).
        if (!swept) {
          swept = true
          for (const group of s.expiredGroupsOf.all(tenantId, now)) this.dropStaged(tenantId, group)
        }
        if (s.dedupeUntil.get(tenantId, id) !== undefined)
          earlier = s.storedTopic.get(tenantId, id) ?? s.stagedTopic.get(tenantId, id)
      }
      if (earlier !== undefined && earlier !== topic) throw idConflict(id, earlier, topic)
      ;(inBatch ??= new Map()).set(id, topic)
    }
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
      const seq = tenantId === undefined ? null : (this.s.head.get(tenantId) ?? null)
      return seq === null ? undefined : formatSeq(seq)
    })
  }

  /** Seqs are one counter for every tenant, kept in herald_meta even when retention empties the log. */
  issuedUpTo(_tenant: Tenant): Promise<string | undefined> {
    return this.reading(() => {
      const last = this.s.lastSeq.get() ?? 0
      return last === 0 ? undefined : formatSeq(last)
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
      const expiresAt = tenantId === undefined ? undefined : this.s.groupExpiry.get(tenantId, groupId)
      if (tenantId === undefined || expiresAt === undefined) return []
      if (expiresAt <= now) {
        this.dropStaged(tenantId, groupId)
        return []
      }
      const bodies = this.s.stagedBodies.all(tenantId, groupId)
      this.s.deleteStaged.run(tenantId, groupId)
      this.s.deleteGroup.run(tenantId, groupId)
      const events: HeraldEvent[] = []
      for (const body of bodies) {
        const seq = this.nextSeq(tx)
        const event = parseEvent(seq, body)
        tx.rows.push(seq, tenantId, event.id, now, body)
        events.push(event)
        tx.appended.push(event)
        tx.appendedSeqs.push(seq)
        tx.appendedBytes.push(body.length)
      }
      return events
    })
  }

  clearGroup(tenant: Tenant, groupId: string, topics?: readonly string[]): Promise<number> {
    return this.write(() => {
      const tenantId = this.tenantId(tenant)
      if (tenantId === undefined) return 0
      if (topics === undefined) return this.dropStaged(tenantId, groupId)
      let cleared = 0
      for (const topic of new Set(topics)) {
        this.s.forgetStagedTopicIds.run(tenantId, tenantId, groupId, topic)
        cleared += this.s.deleteStagedTopic.run(tenantId, groupId, topic).changes
      }
      if (cleared > 0 && this.s.stagedCount.get(tenantId, groupId) === 0)
        this.s.deleteGroup.run(tenantId, groupId)
      return cleared
    })
  }

  // ── durable subscriptions ────────────────────────────────────────────────────────────────

  openSubscription(spec: SubscriptionSpec, now: number): Promise<SubscriptionRecord> {
    const patterns = JSON.stringify(spec.patterns)
    const meta = spec.meta === undefined ? null : JSON.stringify(spec.meta)
    const sender = spec.sender ?? null
    return this.write((tx) => {
      const tenantId = this.tenantIdForWrite(tx, spec.tenant)
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
      this.ledger.removeAll(key)
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
    return this.write((tx) => this.claimNow(tx, tenant, subscriptionId, request))
  }

  private claimNow(
    tx: Transaction,
    tenant: Tenant,
    subscriptionId: string,
    request: ClaimRequest,
  ): ClaimResult {
    const tenantId = this.tenantId(tenant)
    const subscription =
      tenantId === undefined ? undefined : this.s.subscriptionForClaim.get(tenantId, subscriptionId)
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
    const { due, nextDueAt: dueLater } = this.ledger.leaseDue(
      key,
      consumer,
      now,
      leaseUntil,
      Math.max(0, limit),
    )
    for (const [seq, attempts] of due) {
      const event = this.eventAt(seq, tx)
      if (event) deliveries.push({ event, attempt: attempts })
      else this.ledger.drop(key, seq) // cannot happen while retention keeps owed events; never lease nothing
    }

    // 2. New events after the cursor, leased as one batch.
    const scanLimit = request.scanLimit ?? DEFAULT_SCAN_LIMIT
    const fresh: number[] = []
    let cursor = subscription.cursor
    let scanned = 0
    let endOfLog = false
    while (deliveries.length < limit && scanned < scanLimit) {
      const page = Math.min(scanLimit - scanned, Math.max(256, 2 * (limit - deliveries.length)))
      const seqs = this.s.seqsAfter.all(tenantId, cursor, page)
      let looked = 0
      for (const seq of seqs) {
        looked++
        cursor = seq
        const event = this.eventAt(seq, tx)
        if (!event || !match(event)) continue
        fresh.push(seq)
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
    this.ledger.leaseNew(key, fresh, consumer, leaseUntil, now)
    if (cursor !== subscription.cursor) this.s.moveCursor.run(cursor, key)

    const more =
      deliveries.length >= limit || (!endOfLog && this.s.seqsAfter.all(tenantId, cursor, 1).length > 0)
    const nextDueAt = fresh.length > 0 ? Math.min(leaseUntil, dueLater ?? Infinity) : dueLater
    return nextDueAt === undefined ? { deliveries, more } : { deliveries, more, nextDueAt }
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
      return key === undefined ? [...seqs] : this.ledger.renew(key, consumer, seqs, leaseUntil)
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
      // Unsubscribed meanwhile: nothing is owed any more.
      if (key !== undefined) this.ledger.settle(key, consumer, settlements, now)
    }, settlements.length)
  }

  deliveryRecords(tenant: Tenant, seq: string): Promise<DeliveryRecord[]> {
    return this.reading(() => {
      const tenantId = this.tenantId(tenant)
      const n = parseSeq(seq)
      if (tenantId === undefined || n === undefined) return []
      const records = this.s.recordsOfEvent.all(n, tenantId).map(toRecord)
      for (const [key, subscriptionId] of this.s.subscriptionKeysOf.all(tenantId)) {
        const lease = this.ledger.batchOf(key, n)
        if (!lease) continue
        records.push({
          subscriptionId,
          seq,
          eventId: this.eventAt(n)?.id ?? '',
          state: 'leased',
          attempts: 1,
          consumer: lease.consumer,
          leaseUntil: lease.leaseUntil,
          updatedAt: lease.claimedAt,
        })
      }
      return records.sort((a, b) =>
        a.subscriptionId < b.subscriptionId ? -1 : a.subscriptionId > b.subscriptionId ? 1 : 0,
      )
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

  async lock(tenant: Tenant, name: string, options: LockOptions): Promise<Unlock> {
    // In the write transaction: processes sharing the file take turns there (BEGIN IMMEDIATE).
    const key = `lock:${tenantKey(tenant)}\n${name}`
    const token = lockToken()
    await takeLock(
      () =>
        this.write(() => {
          const now = Date.now()
          const held = this.s.lockHolder.get(key)
          if (held !== undefined && Number(held.slice(held.indexOf(' ') + 1)) > now) return false
          this.s.setLock.run(key, `${token} ${now + options.ttlMs}`)
          return true
        }),
      name,
      options,
    )
    return async () => {
      if (!this.closed) await this.write(() => this.s.dropLock.run(key, `${token} %`))
    }
  }

  close(): Promise<void> {
    // A second call waits for the first: the file is closed only once both resolve.
    this.closing ??= this.closeOnce()
    return this.closing
  }

  private async closeOnce(): Promise<void> {
    if (this.retentionTimer) clearTimeout(this.retentionTimer)
    this.retentionTimer = undefined
    this.queue.flush() // pending writes complete first
    this.closed = true
    this.queue.abandon(new HeraldError('closed', 'the store is closed'))
    this.listeners.clear()
    this.cache.clear()
    await this.checkpointer.close()
    this.db.close()
  }
}
