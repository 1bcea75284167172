import { tenantKey, type Tenant } from '../../event.js'

/**
 * Where everything lives, under one prefix (default `herald`):
 *
 *   {P}:feed                      stream: one entry per append, {t: tenant, p: seq before it, a: first seq, b: last seq,
 *                                 o: ids of the subscriptions the appending process claims (absent when none)}
 *   {P}:tenants                   set: tenants that have (or had) durable subscriptions
 *   {P}:{acct}/{ws}:log           stream: the tenant's log, one entry per append {n: count, i: ids, e: JSON array}
 *   {P}:{acct}/{ws}:meta          hash: events (how many the log holds), last (seq of the newest)
 *   {P}:{acct}/{ws}:ids           hash: event id → stream id of the entry holding its latest event (getEvent, status)
 *   {P}:{acct}/{ws}:dedupe:{id}   string: time until which a publisher-supplied id counts as a repeat
 *   {P}:{acct}/{ws}:group:{g}     list: staged events of group g, "topic\nid\nJSON"
 *   {P}:{acct}/{ws}:groupttl:{g}  string: time the group expires (the caller's clock)
 *   {P}:{acct}/{ws}:lock:{name}   string: the token of the lock's holder (TTL: the lock's)
 *   {P}:{acct}/{ws}:subs          set: subscription ids
 *   {P}:{acct}/{ws}:sub:{s}       hash: spec (JSON), createdAt, startSeq, cursor
 *   {P}:{acct}/{ws}:leases:{s}    hash: lease id → "<leased at>\n<consumer>", one per claim's batch of first deliveries
 *   {P}:{acct}/{ws}:lease:{s}:{L} set: seqs of lease L still in flight (L is the first seq it leased)
 *   {P}:{acct}/{ws}:rec:{s}       hash: seq → delivery record (JSON) — retrying, dead, or leased again
 *   {P}:{acct}/{ws}:due:{s}       sorted set: records' seqs, and leases as "~L", scored by when they fall due
 *   {P}:{acct}/{ws}:dead:{s}      sorted set (lexicographic): seqs of dead letters
 *   {P}:{acct}/{ws}:ahead:{s}     sorted set (lexicographic): "first|last|previous" ranges claimed ahead of the cursor
 *
 * Account and workspace names cannot contain ':' or '/', every per-item key has its own marker
 * before the item's name, and lease ids are fixed-width seqs at the end, so no two of these can
 * collide whatever ids users choose.
 * Scripts derive per-subscription and per-item keys from the tenant base with the same suffixes.
 */
export const SUFFIX = {
  log: 'log',
  meta: 'meta',
  ids: 'ids',
  subs: 'subs',
  sub: 'sub:',
  rec: 'rec:',
  due: 'due:',
  leases: 'leases:',
  lease: 'lease:',
  dead: 'dead:',
  ahead: 'ahead:',
  dedupe: 'dedupe:',
  group: 'group:',
  groupTtl: 'groupttl:',
  lock: 'lock:',
  trimWait: 'trimwait',
} as const

export class Keys {
  readonly feed: string
  readonly tenants: string

  constructor(readonly prefix: string) {
    this.feed = `${prefix}:feed`
    this.tenants = `${prefix}:tenants`
  }

  /** The prefix every key of this tenant starts with. */
  base(tenant: Tenant): string {
    return this.baseOf(tenantKey(tenant))
  }

  baseOf(tenantName: string): string {
    return `${this.prefix}:${tenantName}:`
  }

  log(tenant: Tenant): string {
    return this.base(tenant) + SUFFIX.log
  }

  subscription(tenant: Tenant, id: string): SubscriptionKeys {
    const base = this.base(tenant)
    return {
      base,
      sub: base + SUFFIX.sub + id,
      rec: base + SUFFIX.rec + id,
      due: base + SUFFIX.due + id,
      dead: base + SUFFIX.dead + id,
      ahead: base + SUFFIX.ahead + id,
      leases: base + SUFFIX.leases + id,
      lease: base + SUFFIX.lease + id + ':',
      log: base + SUFFIX.log,
      meta: base + SUFFIX.meta,
    }
  }
}

export interface SubscriptionKeys {
  base: string
  sub: string
  rec: string
  due: string
  dead: string
  ahead: string
  leases: string
  /** Prefix of the lease sets: append a lease id. */
  lease: string
  log: string
  meta: string
}
