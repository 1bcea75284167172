import { HeraldError, isHeraldError } from '../../errors.js'
import { tenantKey, type HeraldEvent, type PreparedBatch, type Tenant } from '../../event.js'
import { consoleLogger, type Logger } from '../../logger.js'
import type {
  AppendOptions,
  AppendResult,
  ClaimRequest,
  ClaimResult,
  DeadLetterQuery,
  DeliveryRecord,
  LockOptions,
  Settlement,
  Store,
  StoredDeadLetter,
  SubscriptionRecord,
  SubscriptionSpec,
  Unlock,
  WatchOptions,
} from '../store.js'
import { idConflict } from '../id-conflict.js'
import { lockToken, takeLock } from '../lock.js'
import {
  decodeDeadLetter,
  decodeRecord,
  decodeSubscription,
  encodeEvent,
  encodeSpec,
  idTime,
  parseEntries,
  parseEntry,
  parseEvents,
  type StreamEntry,
} from './codec.js'
import { Connection, redact } from './connection.js'
import { Claimer } from './claim.js'
import { FeedReader } from './feed.js'
import { LeaseIndex } from './leases.js'
import { LogReader } from './log.js'
import { OwnAppends } from './own.js'
import { RecentEvents } from './recent.js'
import { Keys, SUFFIX, type SubscriptionKeys } from './keys.js'
import type { Arg, Script } from './scripts/script.js'
import * as scripts from './scripts/index.js'
import { MAX_PER_ENTRY, entryOf, isSeq, seqAt, seqPrefix } from './seq.js'

export interface RedisStoreOptions {
  /** `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS (default `redis://127.0.0.1:6379`). */
  url?: string
  /** Every key starts with `<prefix>:`; deployments sharing one Redis use different prefixes (default `herald`). */
  prefix?: string
  /**
   * Events kept in each tenant's log, for reads, status, stream replays and late durable
   * subscribers (default 100,000; `Infinity` keeps every event). Events a durable subscription
   * still owes are kept regardless.
   */
  maxEvents?: number
  /** Entries kept in the feed that carries appends to other processes' watchers (default 100,000; one entry per append). */
  feedLength?: number
  /**
   * How long a command may wait for Redis to be reachable and to answer before it fails with
   * `store_unavailable`, in ms (default 5,000). Publishers get that error instead of hanging.
   */
  timeout?: number
  /** Where connection losses and recoveries are reported (default: warnings to stderr). */
  logger?: Logger
}

export const REDIS_DEFAULTS = Object.freeze({
  url: 'redis://127.0.0.1:6379',
  prefix: 'herald',
  maxEvents: 100_000,
  feedLength: 100_000,
  timeout: 5_000,
})

/** Log entries one round trip of `read` asks for. */
const READ_PAGE = 64
const PREFIX = /^[^\s*?[\]{}]{1,128}$/

/**
 * The scale-out store: several Herald processes share one Redis (docs/stores.md). The log is a
 * Redis stream per tenant, one entry per append; a durable subscription is a cursor, leases of
 * the deliveries in flight, and records of those waiting for a retry or dead; every change that
 * touches several keys is one Lua script (scripts/). Loads ioredis when called, not on import.
 */
export function redisStore(options: RedisStoreOptions = {}): Store {
  return new RedisStore(options)
}

function positiveInteger(
  name: string,
  value: number | undefined,
  fallback: number,
  allowInfinity = false,
): number {
  if (value === undefined) return fallback
  if (allowInfinity && value === Infinity) return value
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new HeraldError(
      'invalid_option',
      `redisStore ${name} must be a positive integer${allowInfinity ? ' or Infinity' : ''}, got ${JSON.stringify(value)}`,
    )
  }
  return value
}

class RedisStore implements Store {
  readonly kind = 'redis'
  readonly durable = true
  private readonly keys: Keys
  private readonly url: string
  private readonly timeout: number
  private readonly logger: Logger
  private readonly main: Connection
  private readonly feed: FeedReader
  private readonly recent = new RecentEvents()
  private readonly reader: LogReader
  private readonly leases = new LeaseIndex()
  private readonly own = new OwnAppends()
  private readonly claimer: Claimer
  /** Events kept per tenant (0: all) and how far past that the log may grow before a trim. */
  private readonly keep: number
  private readonly chunk: number
  private readonly feedLength: number
  private closed = false
  /** Appends (and group releases) sent and not yet answered. */
  private readonly appending = new Set<Promise<unknown>>()

  constructor(options: RedisStoreOptions) {
    const url = options.url ?? REDIS_DEFAULTS.url
    if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) {
      throw new HeraldError(
        'invalid_option',
        `redisStore url must start with redis:// or rediss://, got ${JSON.stringify(redact(String(url)))}`,
      )
    }
    const prefix = options.prefix ?? REDIS_DEFAULTS.prefix
    if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
      throw new HeraldError(
        'invalid_option',
        `redisStore prefix must be 1-128 characters without whitespace or * ? [ ] { }, got ${JSON.stringify(prefix)}`,
      )
    }
    const maxEvents = positiveInteger('maxEvents', options.maxEvents, REDIS_DEFAULTS.maxEvents, true)
    this.keep = maxEvents === Infinity ? 0 : maxEvents
    this.chunk = Math.max(1, Math.min(1000, Math.ceil(maxEvents / 10)))
    this.feedLength = positiveInteger('feedLength', options.feedLength, REDIS_DEFAULTS.feedLength)
    this.timeout = positiveInteger('timeout', options.timeout, REDIS_DEFAULTS.timeout)
    this.url = url
    this.logger = options.logger ?? consoleLogger
    this.keys = new Keys(prefix)
    this.main = this.connection('commands')
    this.feed = new FeedReader(
      this.keys,
      this.main,
      () => this.connection('feed', true),
      this.recent,
      this.logger,
      () => (this.appending.size === 0 ? undefined : Promise.allSettled([...this.appending])),
      this.own.instance,
    )
    this.reader = new LogReader(this.main, this.recent)
    this.claimer = new Claimer(
      (script, keys, args) => this.run(script, keys, args),
      this.reader,
      this.recent,
      this.leases,
      this.own,
      this.logger,
    )
  }

  private connection(name: string, blocking = false): Connection {
    return new Connection({ url: this.url, name, timeout: this.timeout, blocking, logger: this.logger })
  }

  private open(): void {
    if (this.closed) throw new HeraldError('closed', 'the store is closed')
  }

  private run<T>(script: Script, keys: readonly string[], args: readonly Arg[]): Promise<T> {
    this.open()
    return this.main.run((redis) => script.run(redis, keys, args)) as Promise<T>
  }

  // ── the log ────────────────────────────────────────────────────────────────────────────────

  async append(tenant: Tenant, batch: PreparedBatch, options: AppendOptions): Promise<AppendResult> {
    this.open()
    const { events, dedupe, groups } = batch
    if (events.length === 0) return { appended: [], staged: 0, duplicates: [] }
    const base = this.keys.base(tenant)
    const args: Arg[] = [
      base,
      tenantKey(tenant),
      Math.floor(options.now),
      Math.max(1, Math.ceil(options.dedupeWindowMs)),
      Math.max(1, Math.ceil(options.groupTtlMs)),
      this.feedLength,
      this.keep,
      this.chunk,
    ]
    const keys = [base + SUFFIX.log, base + SUFFIX.ids, this.keys.feed, base + SUFFIX.meta]
    // The common case (ids Herald made, nothing to dedupe or stage) travels as one JSON array and
    // one string of ids: two arguments and one stream entry for the whole batch.
    if (events.length <= MAX_PER_ENTRY && dedupe === undefined && groups === undefined) {
      const name = tenantKey(tenant)
      // Subscriptions claiming here lease these events themselves (claim.ts): the feed says so.
      const claimers = this.own.claimers(name, Date.now())
      args.push(
        'batch',
        JSON.stringify(events),
        events.map((event) => event.id).join(' '),
        events.length,
        claimers ?? '',
      )
      const [feedId, previous, entryId] = await this.tracked(
        this.run<[string, string, string]>(scripts.appendEvents, keys, args),
      )
      const prefix = seqPrefix(entryId)
      for (let i = 0; i < events.length; i++) events[i]!.seq = seqAt(prefix, i)
      if (claimers !== undefined) this.own.add(name, previous, events)
      this.appended(tenant, feedId, previous, events)
      return { appended: events, staged: 0, duplicates: [] }
    }
    args.push('each')
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!
      const groupId = groups?.[i]
      args.push(
        dedupe?.[i] === true ? '1' : '',
        groupId ?? '',
        event.id,
        groupId !== undefined || dedupe?.[i] === true ? event.topic : '',
        encodeEvent(event),
      )
    }
    const reply = await this.tracked(this.run<string[]>(scripts.appendEvents, keys, args))
    if (reply[0] === 'conflict') {
      const id = reply[1]!
      throw idConflict(id, reply[2], events.find((event) => event.id === id)?.topic ?? '')
    }
    const appended: HeraldEvent[] = []
    const duplicates: string[] = []
    let staged = 0
    for (let i = 0; i < events.length; i++) {
      const result = reply[i + 2]!
      const event = events[i]!
      if (result === 'D') duplicates.push(event.id)
      else if (result === 'S') staged++
      else {
        event.seq = result
        appended.push(event)
      }
    }
    if (reply[0]) this.appended(tenant, reply[0], reply[1]!, appended)
    return { appended, staged, duplicates }
  }

  private tracked<T>(append: Promise<T>): Promise<T> {
    this.appending.add(append)
    const done = (): void => {
      this.appending.delete(append)
    }
    append.then(done, done)
    return append
  }

  /** Events this process stored: watchers and claims here need not read them back from Redis. */
  private appended(tenant: Tenant, feedId: string, previous: string, events: HeraldEvent[]): void {
    this.feed.appended(feedId, events)
    this.recent.extend(tenantKey(tenant), previous, events)
  }

  async read(tenant: Tenant, query: { after?: string; limit: number }): Promise<HeraldEvent[]> {
    this.open()
    const limit = Math.floor(query.limit)
    if (!(limit >= 1)) return []
    const after = query.after === undefined || query.after === '' ? undefined : checkSeq(query.after)
    const log = this.keys.log(tenant)
    const out: HeraldEvent[] = []
    let start = after === undefined ? '-' : entryOf(after)
    for (;;) {
      const count = Math.min(READ_PAGE, limit)
      const entries = (await this.main.run((redis) =>
        redis.xrange(log, start, '+', 'COUNT', count),
      )) as StreamEntry[]
      for (const event of parseEntries(entries, after)) {
        out.push(event)
        if (out.length >= limit) return out
      }
      if (entries.length < count) return out
      start = `(${entries[entries.length - 1]![0]}`
    }
  }

  async getEvent(tenant: Tenant, id: string): Promise<HeraldEvent | undefined> {
    const base = this.keys.base(tenant)
    const time = idTime(id) ?? ''
    // A search through many entries (clocks far apart, a busy log) goes on in rounds of bounded
    // length, each from where the last stopped, so that other clients get Redis between them.
    let from = ''
    for (;;) {
      const reply = await this.run<StreamEntry | string | null>(
        scripts.getEvent,
        [base + SUFFIX.ids, base + SUFFIX.log],
        [id, time, from],
      )
      if (!reply) return undefined
      if (typeof reply === 'string') {
        from = reply
        continue
      }
      const events = parseEntry(reply)
      for (let i = events.length - 1; i >= 0; i--) if (events[i]!.id === id) return events[i]
      return undefined
    }
  }

  async head(tenant: Tenant): Promise<string | undefined> {
    this.open()
    const last = await this.main.run((redis) => redis.hget(this.keys.base(tenant) + SUFFIX.meta, 'last'))
    return last || undefined
  }

  watch(listener: (events: readonly HeraldEvent[]) => void, options?: WatchOptions): () => void {
    if (this.closed) return () => {}
    return this.feed.watch(listener, options)
  }

  // ── staged groups ──────────────────────────────────────────────────────────────────────────

  async releaseGroup(tenant: Tenant, groupId: string, now: number): Promise<HeraldEvent[]> {
    const base = this.keys.base(tenant)
    const reply = await this.tracked(
      this.run<string[]>(
        scripts.releaseGroup,
        [base + SUFFIX.log, base + SUFFIX.ids, this.keys.feed, base + SUFFIX.meta],
        [base, tenantKey(tenant), groupId, Math.floor(now), this.feedLength, this.keep, this.chunk],
      ),
    )
    const events: HeraldEvent[] = []
    for (let i = 2; i + 1 < reply.length; i += 2) events.push(...parseEvents(reply[i]!, reply[i + 1]!))
    if (reply[0]) this.appended(tenant, reply[0], reply[1]!, events)
    return events
  }

  async clearGroup(tenant: Tenant, groupId: string, topics?: readonly string[]): Promise<number> {
    if (topics !== undefined && topics.length === 0) return 0
    return this.run<number>(scripts.clearGroup, [], [this.keys.base(tenant), groupId, ...(topics ?? [])])
  }

  // ── durable subscriptions ──────────────────────────────────────────────────────────────────

  async openSubscription(spec: SubscriptionSpec, now: number): Promise<SubscriptionRecord> {
    const base = this.keys.base(spec.tenant)
    const name = tenantKey(spec.tenant)
    const fields = await this.run<(string | null)[]>(
      scripts.openSubscription,
      [base + SUFFIX.sub + spec.id, base + SUFFIX.subs, this.keys.tenants, base + SUFFIX.meta],
      [spec.id, name, encodeSpec(spec), Math.floor(now)],
    )
    return decodeSubscription(name, spec.id, fields)
  }

  async deleteSubscription(tenant: Tenant, id: string): Promise<boolean> {
    const k = this.keys.subscription(tenant, id)
    return (
      (await this.run<number>(
        scripts.deleteSubscription,
        [k.sub, k.rec, k.due, k.dead, k.base + SUFFIX.subs, k.leases, k.ahead, this.keys.tenants],
        [id, k.lease, tenantKey(tenant)],
      )) === 1
    )
  }

  async listSubscriptions(tenant?: Tenant): Promise<SubscriptionRecord[]> {
    const reply = await this.run<(string | null)[]>(
      scripts.listSubscriptions,
      [],
      [this.keys.prefix, tenant ? tenantKey(tenant) : ''],
    )
    const records: SubscriptionRecord[] = []
    for (let i = 0; i + 5 < reply.length; i += 6)
      records.push(decodeSubscription(reply[i]!, reply[i + 1]!, reply.slice(i + 2, i + 6)))
    return records.sort((a, b) => compareKeys([a.account, a.workspace, a.id], [b.account, b.workspace, b.id]))
  }

  async claim(tenant: Tenant, subscriptionId: string, request: ClaimRequest): Promise<ClaimResult> {
    this.open()
    try {
      return await this.claimer.claim(
        { tenant: tenantKey(tenant), subscriptionId, keys: this.keys.subscription(tenant, subscriptionId) },
        request,
      )
    } catch (error) {
      if (isHeraldError(error, 'not_found'))
        throw new HeraldError(
          'not_found',
          `no subscription ${JSON.stringify(subscriptionId)} in ${tenantKey(tenant)}`,
        )
      throw error
    }
  }

  async renew(
    tenant: Tenant,
    subscriptionId: string,
    consumer: string,
    seqs: readonly string[],
    leaseUntil: number,
  ): Promise<string[]> {
    if (seqs.length === 0) return []
    const k = this.keys.subscription(tenant, subscriptionId)
    const args: Arg[] = [consumer, Math.floor(leaseUntil), k.lease]
    const held = this.leases.of(k.sub, consumer)
    for (const seq of seqs) args.push(seq, held.get(seq) ?? '')
    return this.run<string[]>(scripts.renewLeases, [k.rec, k.due, k.leases], args)
  }

  async settle(
    tenant: Tenant,
    subscriptionId: string,
    consumer: string,
    settlements: readonly Settlement[],
    now: number,
  ): Promise<void> {
    if (settlements.length === 0) return
    const k = this.keys.subscription(tenant, subscriptionId)
    const held = this.leases.of(k.sub, consumer)
    // Deliveries settled as delivered under a lease this process took travel grouped by lease,
    // one argument each; everything else is spelled out (see the script).
    const byLease = new Map<string, string[]>()
    const others: Settlement[] = []
    for (const settlement of settlements) {
      const lease = held.get(settlement.seq)
      if (lease !== undefined && settlement.outcome === 'delivered') {
        const seqs = byLease.get(lease)
        if (seqs) seqs.push(settlement.seq)
        else byLease.set(lease, [settlement.seq])
      } else others.push(settlement)
    }
    const args: Arg[] = [Math.floor(now), consumer, k.lease]
    for (const [lease, seqs] of byLease) args.push('L', lease, seqs.length, ...seqs)
    if (others.length > 0) {
      const deadSeqs = others
        .filter((settlement) => settlement.outcome === 'dead')
        .map((settlement) => settlement.seq)
      const dead = deadSeqs.length > 0 ? await this.deadEvents(k, tenantKey(tenant), deadSeqs) : undefined
      for (const settlement of others) {
        const lease = held.get(settlement.seq) ?? ''
        if (settlement.outcome === 'delivered') args.push('R', settlement.seq, 'delivered', '', '', lease)
        else if (settlement.outcome === 'retry')
          args.push('R', settlement.seq, 'retry', Math.floor(settlement.retryAt), settlement.error, lease)
        else args.push('R', settlement.seq, 'dead', dead?.get(settlement.seq) ?? '', settlement.error, lease)
      }
    }
    await this.run(scripts.settleDeliveries, [k.sub, k.rec, k.due, k.dead, k.leases, k.log], args)
    for (const settlement of settlements) held.delete(settlement.seq)
    this.leases.prune(k.sub, consumer)
  }

  /** The JSON a dead letter keeps of each event. */
  private async deadEvents(
    k: SubscriptionKeys,
    tenant: string,
    seqs: readonly string[],
  ): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    for (const [seq, event] of await this.reader.eventsAt(k.log, tenant, seqs))
      out.set(seq, encodeEvent(event))
    return out
  }

  async deliveryRecords(tenant: Tenant, seq: string): Promise<DeliveryRecord[]> {
    const base = this.keys.base(tenant)
    const reply = await this.run<string[]>(scripts.deliveryRecords, [base + SUFFIX.subs], [base, seq])
    const records: DeliveryRecord[] = []
    for (let i = 0; i + 1 < reply.length; i += 2) records.push(decodeRecord(reply[i]!, seq, reply[i + 1]!))
    return records.sort((a, b) => (a.subscriptionId < b.subscriptionId ? -1 : 1))
  }

  // ── dead letters ───────────────────────────────────────────────────────────────────────────

  async listDeadLetters(tenant: Tenant, query: DeadLetterQuery): Promise<StoredDeadLetter[]> {
    if (!(query.limit >= 1)) return []
    const base = this.keys.base(tenant)
    const reply = await this.run<string[]>(
      scripts.listDeadLetters,
      [base + SUFFIX.subs],
      [base, query.subscriptionId ?? '', query.after ?? '', Math.floor(query.limit)],
    )
    const letters: StoredDeadLetter[] = []
    for (let i = 0; i + 2 < reply.length; i += 3) {
      const letter = decodeDeadLetter(reply[i]!, reply[i + 1]!, reply[i + 2]!)
      if (letter) letters.push(letter)
    }
    letters.sort((a, b) =>
      a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : a.subscriptionId < b.subscriptionId ? -1 : 1,
    )
    return letters.slice(0, query.limit)
  }

  async redrive(tenant: Tenant, subscriptionId: string, seq: string, now: number): Promise<boolean> {
    const k = this.keys.subscription(tenant, subscriptionId)
    return (await this.run<number>(scripts.redrive, [k.rec, k.due, k.dead], [seq, Math.floor(now)])) === 1
  }

  async deleteDeadLetter(tenant: Tenant, subscriptionId: string, seq: string): Promise<boolean> {
    const k = this.keys.subscription(tenant, subscriptionId)
    return (await this.run<number>(scripts.deleteDeadLetter, [k.rec, k.dead], [seq])) === 1
  }

  async lock(tenant: Tenant, name: string, options: LockOptions): Promise<Unlock> {
    this.open()
    const key = this.keys.base(tenant) + SUFFIX.lock + name
    const token = lockToken()
    const ttl = Math.max(1, Math.ceil(options.ttlMs))
    await takeLock(
      async () => {
        this.open()
        return (await this.main.run((redis) => redis.set(key, token, 'PX', ttl, 'NX'))) === 'OK'
      },
      name,
      options,
    )
    return async () => {
      if (!this.closed) await this.run(scripts.releaseLock, [key], [token])
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.feed.close()
    await this.main.close()
  }
}

function checkSeq(seq: string): string {
  if (!isSeq(seq))
    throw new HeraldError('invalid_request', `${JSON.stringify(seq)} is not a position in this store's log`)
  return seq
}

function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1
  return 0
}
