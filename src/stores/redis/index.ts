import { HeraldError, isHeraldError } from '../../errors.js'
import { tenantKey, type HeraldEvent, type PreparedEvent, type Tenant } from '../../event.js'
import { consoleLogger, type Logger } from '../../logger.js'
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
} from '../store.js'
import { decodeDeadLetter, decodeRecord, decodeSubscription, encodeEvent, encodeSpec, parseEntry, parseEvent, type StreamEntry } from './codec.js'
import { Connection, redact } from './connection.js'
import { FeedReader } from './feed.js'
import { RecentEvents } from './recent.js'
import { Keys, SUFFIX } from './keys.js'
import type { Arg, Script } from './script.js'
import * as scripts from './scripts.js'
import { idOf, seqOf } from './seq.js'

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

const DEFAULT_SCAN_LIMIT = 10_000
/** Log entries a claim reads in its first round trip at least, and in one round trip at most. */
const MIN_PAGE = 32
const MAX_PAGE = 1024
/** Claims that found their scan taken by another consumer retry this often before giving up for now. */
const CLAIM_ROUNDS = 4
const PREFIX = /^[^\s*?[\]{}]{1,128}$/
const SEQ = /^\d{15}-\d{10}$/

/**
 * The scale-out store: several Herald processes share one Redis. The log is a Redis stream per
 * tenant; durable subscriptions are a cursor plus leased delivery records; every change that
 * touches several keys is one Lua script (scripts.ts). Loads ioredis when called, not on import.
 */
export function redisStore(options: RedisStoreOptions = {}): Store {
  return new RedisStore(options)
}

function positiveInteger(name: string, value: number | undefined, fallback: number, allowInfinity = false): number {
  if (value === undefined) return fallback
  if (allowInfinity && value === Infinity) return value
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new HeraldError('invalid_option', `redisStore ${name} must be a positive integer${allowInfinity ? ' or Infinity' : ''}, got ${JSON.stringify(value)}`)
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
  /** Log entries kept per tenant (0: all) and how far past that the log may grow before a trim. */
  private readonly keep: number
  private readonly chunk: number
  private readonly feedLength: number
  private closed = false

  constructor(options: RedisStoreOptions) {
    const url = options.url ?? REDIS_DEFAULTS.url
    if (typeof url !== 'string' || !/^rediss?:\/\//.test(url)) {
      throw new HeraldError('invalid_option', `redisStore url must start with redis:// or rediss://, got ${JSON.stringify(redact(String(url)))}`)
    }
    const prefix = options.prefix ?? REDIS_DEFAULTS.prefix
    if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
      throw new HeraldError('invalid_option', `redisStore prefix must be 1-128 characters without whitespace or * ? [ ] { }, got ${JSON.stringify(prefix)}`)
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
    this.feed = new FeedReader(this.keys, this.main, () => this.connection('feed', true), this.recent, this.logger)
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

  async append(tenant: Tenant, inputs: readonly PreparedEvent[], options: AppendOptions): Promise<AppendResult> {
    this.open()
    if (inputs.length === 0) return { appended: [], staged: 0, duplicates: [] }
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
    for (const input of inputs) {
      const grouped = input.groupId !== undefined
      args.push(input.dedupe ? '1' : '', input.groupId ?? '', input.event.id, grouped ? input.event.topic : '', encodeEvent(input.event))
    }
    const reply = await this.run<string[]>(scripts.appendEvents, [base + SUFFIX.log, base + SUFFIX.ids, this.keys.feed], args)
    const appended: HeraldEvent[] = []
    const duplicates: string[] = []
    let staged = 0
    for (let i = 0; i < inputs.length; i++) {
      const result = reply[i + 2]!
      const event = inputs[i]!.event
      if (result === 'D') duplicates.push(event.id)
      else if (result === 'S') staged++
      else {
        event.seq = seqOf(result)
        appended.push(event)
      }
    }
    if (reply[0]) this.appended(tenant, reply[0], reply[1]!, appended)
    return { appended, staged, duplicates }
  }

  /** Events this process stored: watchers and claims here need not read them back from Redis. */
  private appended(tenant: Tenant, feedId: string, previousId: string, events: HeraldEvent[]): void {
    this.feed.appended(feedId, events)
    this.recent.extend(tenantKey(tenant), previousId === '' ? '' : seqOf(previousId), events)
  }

  async read(tenant: Tenant, query: { after?: string; limit: number }): Promise<HeraldEvent[]> {
    this.open()
    if (!(query.limit >= 1)) return []
    const start = query.after === undefined || query.after === '' ? '-' : `(${idOf(checkSeq(query.after))}`
    const entries = (await this.main.run((redis) => redis.xrange(this.keys.log(tenant), start, '+', 'COUNT', Math.floor(query.limit)))) as StreamEntry[]
    return entries.map(parseEntry)
  }

  async getEvent(tenant: Tenant, id: string): Promise<HeraldEvent | undefined> {
    const base = this.keys.base(tenant)
    const reply = await this.run<[string, string] | null>(scripts.getEvent, [base + SUFFIX.ids, base + SUFFIX.log], [id])
    return reply ? parseEvent(reply[1], seqOf(reply[0])) : undefined
  }

  async head(tenant: Tenant): Promise<string | undefined> {
    this.open()
    const newest = await this.main.run((redis) => redis.xrevrange(this.keys.log(tenant), '+', '-', 'COUNT', 1))
    return newest[0] ? seqOf(newest[0][0]) : undefined
  }

  watch(listener: (events: readonly HeraldEvent[]) => void): () => void {
    if (this.closed) return () => {}
    return this.feed.watch(listener)
  }

  // ── staged groups ──────────────────────────────────────────────────────────────────────────

  async releaseGroup(tenant: Tenant, groupId: string, now: number): Promise<HeraldEvent[]> {
    const base = this.keys.base(tenant)
    const reply = await this.run<string[]>(
      scripts.releaseGroup,
      [base + SUFFIX.log, base + SUFFIX.ids, this.keys.feed],
      [base, tenantKey(tenant), groupId, Math.floor(now), this.feedLength, this.keep, this.chunk],
    )
    const events: HeraldEvent[] = []
    for (let i = 2; i + 1 < reply.length; i += 2) events.push(parseEvent(reply[i + 1]!, seqOf(reply[i]!)))
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
      [base + SUFFIX.sub + spec.id, base + SUFFIX.subs, this.keys.tenants, base + SUFFIX.log],
      [spec.id, name, encodeSpec(spec), Math.floor(now)],
    )
    return decodeSubscription(name, spec.id, fields)
  }

  async deleteSubscription(tenant: Tenant, id: string): Promise<boolean> {
    const k = this.keys.subscription(tenant, id)
    return (await this.run<number>(scripts.deleteSubscription, [k.sub, k.rec, k.due, k.dead, k.base + SUFFIX.subs], [id])) === 1
  }

  async listSubscriptions(tenant?: Tenant): Promise<SubscriptionRecord[]> {
    const reply = await this.run<(string | null)[]>(scripts.listSubscriptions, [], [this.keys.prefix, tenant ? tenantKey(tenant) : ''])
    const records: SubscriptionRecord[] = []
    for (let i = 0; i + 5 < reply.length; i += 6) records.push(decodeSubscription(reply[i]!, reply[i + 1]!, reply.slice(i + 2, i + 6)))
    return records.sort((a, b) => compareKeys([a.account, a.workspace, a.id], [b.account, b.workspace, b.id]))
  }

  /**
   * Two steps, because `match` is JavaScript: read the cursor and the events after it, choose
   * with `match` here, then lease the chosen ones in one script that moves the cursor only over
   * the part of the scan no other claim took meanwhile; a claim whose whole scan was taken
   * scans again from the new cursor.
   */
  async claim(tenant: Tenant, subscriptionId: string, request: ClaimRequest): Promise<ClaimResult> {
    try {
      return await this.claimOnce(tenant, subscriptionId, request)
    } catch (error) {
      if (isHeraldError(error, 'not_found')) throw new HeraldError('not_found', `no subscription ${JSON.stringify(subscriptionId)} in ${tenantKey(tenant)}`)
      throw error
    }
  }

  private async claimOnce(tenant: Tenant, subscriptionId: string, request: ClaimRequest): Promise<ClaimResult> {
    this.open()
    const k = this.keys.subscription(tenant, subscriptionId)
    const name = tenantKey(tenant)
    const { consumer, limit, match } = request
    const now = Math.floor(request.now)
    const leaseUntil = Math.floor(request.now + request.leaseMs)
    const scanLimit = Math.max(1, request.scanLimit ?? DEFAULT_SCAN_LIMIT)
    this.recent.claiming(name, Date.now())
    const deliveries: Delivery[] = []
    let more = false
    let nextDueAt: number | undefined
    let useHeld = true
    for (let round = 0; round < CLAIM_ROUNDS; round++) {
      const want = limit - deliveries.length
      if (want <= 0) break
      let page = Math.min(scanLimit, Math.max(want, MIN_PAGE))
      const held = useHeld ? this.recent.span(name) : undefined
      const [cursor, dueCount, later, firstEntries, readAfterHeld] = await this.run<[string, number, string | null, StreamEntry[], number]>(
        scripts.scanSubscription,
        [k.sub, k.due, k.log],
        [now, page, held?.first ?? '', held?.last ?? ''],
      )
      nextDueAt = later === null ? undefined : Number(later)
      let events: HeraldEvent[] = firstEntries.map(parseEntry)
      if (readAfterHeld === 1) {
        const kept = this.recent.after(name, cursor, held!.last)
        if (!kept) {
          // What this process held was trimmed meanwhile: read this round from Redis instead.
          useHeld = false
          round--
          continue
        }
        this.recent.extend(name, held!.last, events)
        events = kept.concat(events)
      } else this.recent.extend(name, cursor, events)
      // Choose at most what the lease can take after the due records, so the cursor stops at the last one chosen.
      const target = Math.max(0, want - dueCount)
      const chosen: HeraldEvent[] = []
      let looked = cursor
      let scanned = 0
      let exhausted = false
      let lastReadFull = firstEntries.length === page
      for (;;) {
        let i = 0
        for (; i < events.length && chosen.length < target && scanned < scanLimit; i++) {
          const event = events[i]!
          looked = event.seq!
          scanned++
          if (match(event)) chosen.push(event)
        }
        if (i < events.length || chosen.length >= target || scanned >= scanLimit) break
        if (!lastReadFull) {
          exhausted = true
          break
        }
        page = Math.min(scanLimit - scanned, Math.max(page * 2, MIN_PAGE), MAX_PAGE)
        const after = `(${idOf(looked)}`
        const next = (await this.main.run((redis) => redis.xrange(k.log, after, '+', 'COUNT', page))) as StreamEntry[]
        events = next.map(parseEntry)
        this.recent.extend(name, looked, events)
        lastReadFull = next.length === page
      }
      if (dueCount === 0 && scanned === 0) break // nothing due, nothing new
      const args: Arg[] = [now, leaseUntil, consumer, want, cursor, looked]
      for (const event of chosen) args.push(event.seq!, event.id)
      const [redue, firstTaken, taken, conflict, truncated, dueLater] = await this.run<
        [(string | number)[], number, number, number, number, string | null]
      >(scripts.leaseDeliveries, [k.sub, k.rec, k.due, k.log], args)
      nextDueAt = dueLater === null ? undefined : Number(dueLater)
      for (let i = 0; i + 2 < redue.length; i += 3) {
        deliveries.push({ event: parseEvent(String(redue[i + 2]), String(redue[i])), attempt: Number(redue[i + 1]) })
      }
      for (let i = firstTaken; i < firstTaken + taken; i++) deliveries.push({ event: chosen[i]!, attempt: 0 })
      more = truncated === 1 || !exhausted || deliveries.length >= limit
      if (conflict === 0) break
      more = true
    }
    return nextDueAt === undefined ? { deliveries, more } : { deliveries, more, nextDueAt }
  }

  async renew(tenant: Tenant, subscriptionId: string, consumer: string, seqs: readonly string[], leaseUntil: number): Promise<string[]> {
    if (seqs.length === 0) return []
    const k = this.keys.subscription(tenant, subscriptionId)
    return this.run<string[]>(scripts.renewLeases, [k.rec, k.due], [consumer, Math.floor(leaseUntil), ...seqs])
  }

  async settle(tenant: Tenant, subscriptionId: string, consumer: string, settlements: readonly Settlement[], now: number): Promise<void> {
    if (settlements.length === 0) return
    const k = this.keys.subscription(tenant, subscriptionId)
    const args: Arg[] = [Math.floor(now), consumer]
    for (const settlement of settlements) {
      switch (settlement.outcome) {
        case 'delivered':
          args.push(settlement.seq, 'delivered', '', '')
          break
        case 'retry':
          args.push(settlement.seq, 'retry', Math.floor(settlement.retryAt), settlement.error)
          break
        case 'dead':
          args.push(settlement.seq, 'dead', '', settlement.error)
          break
      }
    }
    await this.run(scripts.settleDeliveries, [k.sub, k.rec, k.due, k.dead, k.log], args)
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
    letters.sort((a, b) => (a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : a.subscriptionId < b.subscriptionId ? -1 : 1))
    return letters.slice(0, query.limit)
  }

  async redrive(tenant: Tenant, subscriptionId: string, seq: string, now: number): Promise<boolean> {
    const k = this.keys.subscription(tenant, subscriptionId)
    return (await this.run<number>(scripts.redrive, [k.rec, k.due, k.dead], [seq, Math.floor(now)])) === 1
  }

  async deleteDeadLetter(tenant: Tenant, subscriptionId: string, seq: string): Promise<boolean> {
    const k = this.keys.subscription(tenant, subscriptionId)
    return (await this.run<number>(scripts.deleteDeadLetter, [k.rec, k.due, k.dead], [seq])) === 1
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.feed.close()
    await this.main.close()
  }
}

function checkSeq(seq: string): string {
  if (!SEQ.test(seq)) throw new HeraldError('invalid_request', `${JSON.stringify(seq)} is not a position in this store's log`)
  return seq
}

function compareKeys(a: string[], b: string[]): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1
  return 0
}
