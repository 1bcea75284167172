import type { HeraldEvent } from '../../event.js'

/** Events kept per tenant, and for all tenants together; claims further on read (and parse) from Redis. */
const KEEP = 10_000
const KEEP_TOTAL = 50_000
/** A tenant, or one of its subscriptions, nobody claimed for this long no longer counts. */
const IDLE_MS = 60_000

interface Window {
  /** Contiguous: every event of the tenant's log after `base` up to the last one, in log order. */
  events: HeraldEvent[]
  /** The seq just before events[0] ('' for the log's start), or events[0]'s own seq when that is not known. */
  base: string
  claimedAt: number
  /** Where each subscription claiming here stood at its last claim, and when. */
  cursors: Map<string, { cursor: string; at: number }>
  /** Something could not join because the stretch was as long as it may be. */
  full: boolean
}

/**
 * A contiguous stretch of the log of each tenant this process claims for, so that an event is
 * parsed at most once per process: events arrive from this process's appends, from the feed and
 * from its claims' own reads, each with the seq of the event just before them, and join the
 * stretch only when that is its last event; a claim whose cursor lies inside the stretch takes
 * the events after it from here.
 *
 * The stretch follows the slowest subscription claiming here: events before its cursor are
 * dropped first; when it is full it stops growing, and claims past its end read from Redis and
 * start it again where they are.
 */
export class RecentEvents {
  private readonly tenants = new Map<string, Window>()
  /** Events held across all tenants. */
  private held = 0
  private sweptAt = 0

  /** A claim for this tenant and subscription, whose cursor stood at `cursor`. */
  claiming(tenant: string, subscriptionId: string, cursor: string | undefined, now: number): void {
    if (now - this.sweptAt > IDLE_MS) this.sweep(now)
    let window = this.tenants.get(tenant)
    if (!window)
      this.tenants.set(
        tenant,
        (window = { events: [], base: '', claimedAt: now, cursors: new Map(), full: false }),
      )
    window.claimedAt = now
    if (cursor !== undefined) window.cursors.set(subscriptionId, { cursor, at: now })
  }

  /**
   * Events that follow the log entry `previous` without a gap: kept when they continue the
   * stretch (or start it). With `restart`, a claim's read that does not continue the stretch
   * replaces it, since the claims are where the stretch is needed.
   */
  extend(tenant: string, previous: string, events: readonly HeraldEvent[], restart = false): void {
    const window = this.tenants.get(tenant)
    if (!window || events.length === 0) return
    const kept = window.events
    if (kept.length > 0 && kept[kept.length - 1]!.seq !== previous) {
      if (!restart) return
      this.clear(window)
    }
    if (window.events.length === 0) window.base = previous
    if (!this.push(window, events) && window.events.length === 0) window.base = ''
  }

  /** The events of one feed entry, which follow `previous` (the feed says so); forgets idle tenants. */
  add(tenant: string, previous: string, events: readonly HeraldEvent[], now: number): void {
    const window = this.tenants.get(tenant)
    if (!window) return
    if (now - window.claimedAt > IDLE_MS) this.drop(tenant, window)
    else this.extend(tenant, previous, events)
  }

  private clear(window: Window): void {
    this.held -= window.events.length
    window.events = []
    window.full = false
  }

  private drop(tenant: string, window: Window): void {
    this.clear(window)
    this.tenants.delete(tenant)
  }

  /** Forgets tenants nobody claimed for a while. */
  private sweep(now: number): void {
    this.sweptAt = now
    for (const [tenant, window] of this.tenants)
      if (now - window.claimedAt > IDLE_MS) this.drop(tenant, window)
  }

  /** Appends to the stretch unless that makes it too long (then it stops growing); true if appended. */
  private push(window: Window, events: readonly HeraldEvent[]): boolean {
    if (window.events.length + events.length > KEEP) this.dropClaimed(window)
    window.full = window.events.length + events.length > KEEP
    if (window.full) return false
    for (const event of events) window.events.push(event)
    this.held += events.length
    if (this.held > KEEP_TOTAL) this.makeRoom(window)
    return true
  }

  /** Over the total: empties the stretches of the tenants claimed least recently (not `keep`). */
  private makeRoom(keep: Window): void {
    const others = [...this.tenants.values()].filter((window) => window !== keep && window.events.length > 0)
    others.sort((a, b) => a.claimedAt - b.claimedAt)
    for (const window of others) {
      if (this.held <= KEEP_TOTAL) break
      this.clear(window)
    }
  }

  /** Drops the events every subscription claiming here has passed. */
  private dropClaimed(window: Window): void {
    const now = Date.now()
    let slowest: string | undefined
    for (const [id, { cursor, at }] of window.cursors) {
      if (now - at > IDLE_MS) window.cursors.delete(id)
      else if (slowest === undefined || cursor < slowest) slowest = cursor
    }
    if (slowest === undefined) return
    const drop = indexAfter(window.events, slowest, false)
    if (drop === 0) return
    window.base = window.events[drop - 1]!.seq!
    window.events.splice(0, drop)
    this.held -= drop
  }

  /** True when the stretch stopped growing (it is as long as it may be): the log may go on past it. */
  isFull(tenant: string): boolean {
    const window = this.tenants.get(tenant)
    return window !== undefined && window.full
  }

  /** The feed skipped something: nothing kept is known to be contiguous any more. */
  forget(): void {
    for (const window of this.tenants.values()) this.clear(window)
  }

  /** First and last seq of the stretch kept for this tenant, if any. */
  /** The stretch held for this tenant: every event after `from` up to `last`. */
  span(tenant: string): { from: string; last: string } | undefined {
    const window = this.tenants.get(tenant)
    if (!window || window.events.length === 0) return undefined
    return { from: window.base, last: window.events[window.events.length - 1]!.seq! }
  }

  /**
   * The kept events after `cursor` up to `last`, or undefined when the stretch does not reach
   * from the cursor to `last` (any more: it may have been dropped or restarted since).
   */
  after(tenant: string, cursor: string, last: string): HeraldEvent[] | undefined {
    const window = this.tenants.get(tenant)
    const events = window?.events
    if (!events || events.length === 0 || cursor < window.base || events[events.length - 1]!.seq! < last)
      return undefined
    const from = indexAfter(events, cursor, false)
    const to = indexAfter(events, last, false)
    return events.slice(from, to)
  }

  /** The held events from `first` to `last` (both included), if all of them are held. */
  range(tenant: string, first: string, last: string): HeraldEvent[] | undefined {
    const events = this.tenants.get(tenant)?.events
    if (!events || events.length === 0 || events[0]!.seq! > first || events[events.length - 1]!.seq! < last)
      return undefined
    const from = indexAfter(events, first, true)
    const to = indexAfter(events, last, false)
    return events[from]?.seq === first && events[to - 1]?.seq === last ? events.slice(from, to) : undefined
  }
}

/** Index of the first event whose seq is greater than `seq` (or, with `inclusive`, not less). */
function indexAfter(events: readonly HeraldEvent[], seq: string, inclusive: boolean): number {
  let lo = 0
  let hi = events.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    const at = events[mid]!.seq!
    if (at < seq || (!inclusive && at === seq)) lo = mid + 1
    else hi = mid
  }
  return lo
}
