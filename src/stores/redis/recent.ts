import type { HeraldEvent } from '../../event.js'

/** Events kept per tenant; older ones are read from Redis when a claim needs them. */
const KEEP = 5000
/** A tenant nobody claimed for this long is no longer kept. */
const IDLE_MS = 60_000

interface Window {
  /** Contiguous: every event of the tenant's log from events[0] to the last one, in log order. */
  events: HeraldEvent[]
  claimedAt: number
}

/**
 * The newest events of the tenants this process claims for, as the feed delivered them. The feed
 * carries every append of a tenant, in log order, so what it delivered from some point on is a
 * contiguous stretch of the log: a claim whose cursor lies inside it takes the events after the
 * cursor from here instead of reading and parsing them from Redis again.
 */
export class RecentEvents {
  private readonly tenants = new Map<string, Window>()

  /** A claim for this tenant: keep its events from the next feed entry on. */
  claiming(tenant: string, now: number): void {
    const window = this.tenants.get(tenant)
    if (window) window.claimedAt = now
    else this.tenants.set(tenant, { events: [], claimedAt: now })
  }

  /**
   * Events that follow the log entry `previous` ('' when unknown) without a gap: kept when they
   * continue what is held (or start it). Appends of this process, reads of its claims and the
   * feed all land here, so each event is parsed once per process at most.
   */
  extend(tenant: string, previous: string, events: readonly HeraldEvent[]): void {
    const window = this.tenants.get(tenant)
    if (!window || events.length === 0) return
    const kept = window.events
    if (kept.length > 0 && kept[kept.length - 1]!.seq !== previous) return
    for (const event of events) kept.push(event)
    this.bound(window)
  }

  /**
   * The events of one feed entry, in feed order. The feed brings every append of a tenant in log
   * order, so anything newer than what is held continues it; older events are here already.
   */
  add(tenant: string, events: readonly HeraldEvent[], now: number): void {
    const window = this.tenants.get(tenant)
    if (!window) return
    if (now - window.claimedAt > IDLE_MS) {
      this.tenants.delete(tenant)
      return
    }
    const kept = window.events
    const last = kept.length > 0 ? kept[kept.length - 1]!.seq! : ''
    for (const event of events) if (event.seq! > last) kept.push(event)
    this.bound(window)
  }

  /** The held events from `first` to `last` (both included), if all of them are held. */
  range(tenant: string, first: string, last: string): HeraldEvent[] | undefined {
    const events = this.tenants.get(tenant)?.events
    if (!events || events.length === 0 || events[0]!.seq! > first || events[events.length - 1]!.seq! < last) return undefined
    const from = indexAfter(events, first, true)
    const to = indexAfter(events, last, false)
    return events[from]?.seq === first && events[to - 1]?.seq === last ? events.slice(from, to) : undefined
  }

  private bound(window: Window): void {
    if (window.events.length > KEEP + (KEEP >> 2)) window.events.splice(0, window.events.length - KEEP)
  }

  /** The feed skipped something: nothing kept is known to be contiguous any more. */
  forget(): void {
    for (const window of this.tenants.values()) window.events = []
  }

  /** First and last seq of the stretch kept for this tenant, if any. */
  span(tenant: string): { first: string; last: string } | undefined {
    const events = this.tenants.get(tenant)?.events
    if (!events || events.length === 0) return undefined
    return { first: events[0]!.seq!, last: events[events.length - 1]!.seq! }
  }

  /**
   * The kept events after `cursor` up to `last` (the end of the span a scan was told about), or
   * undefined when what is kept no longer reaches back to the cursor (trimmed or forgotten since).
   */
  after(tenant: string, cursor: string, last: string): HeraldEvent[] | undefined {
    const events = this.tenants.get(tenant)?.events
    if (!events || events.length === 0 || events[0]!.seq! > cursor || events[events.length - 1]!.seq! < last) return undefined
    const from = indexAfter(events, cursor, false)
    let end = events.length
    while (end > from && events[end - 1]!.seq! > last) end--
    return events.slice(from, end)
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
