import type { HeraldEvent } from '../../event.js'

/** Events kept per tenant, and for all tenants together; claims further on read (and parse) from Redis. */
const KEEP = 10_000
const KEEP_TOTAL = 50_000
/** Stretches of the log known per tenant (with their events or not): bounds a tenant nobody claims far. */
const KEEP_CHUNKS = 10_000
/** A tenant, or one of its subscriptions, nobody claimed for this long no longer counts. */
const IDLE_MS = 60_000

/**
 * One stretch of the log: every event after `previous` up to `last`, in one append (or group
 * release, or read). `events` is undefined until somebody needs them: the feed says that another
 * process appended, and where, without this process reading what it appended.
 */
export interface Chunk {
  /** The seq just before `first` ('' for the log's start). */
  readonly previous: string
  readonly first: string
  readonly last: string
  events: HeraldEvent[] | undefined
  /** The subscriptions its appender (another process) claims itself, as the feed said (own.ts). */
  readonly owners?: readonly string[]
  /** When the feed brought word of it (this process's clock). */
  readonly seenAt?: number
}

interface Window {
  /** Contiguous: each chunk's `previous` is the `last` of the one before it. */
  chunks: Chunk[]
  /** Events held in `chunks`. */
  held: number
  claimedAt: number
  /** Where each subscription claiming here stood at its last claim, and when. */
  cursors: Map<string, { cursor: string; at: number }>
  /** Something could not join because the stretch was as long as it may be. */
  full: boolean
}

/**
 * A contiguous stretch of the log of each tenant this process claims for, so that an event is
 * parsed at most once per process, and only if this process needs it. The stretch is a chain of
 * chunks, each with the seq of the event just before it: from this process's appends (with their
 * events), from the feed (with the events when a live subscriber here wanted them, else just
 * where they lie) and from its claims' own reads. A chunk joins only when it follows the last
 * one; a claim whose cursor lies inside the stretch takes the events after it from here, reading
 * the chunks it has no events for from Redis (and keeping them).
 *
 * The stretch follows the slowest subscription claiming here: chunks before its cursor are
 * dropped first; beyond KEEP events, chunks join without their events; when it has KEEP_CHUNKS
 * chunks it stops growing, and claims past its end read from Redis and start it again there.
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
        (window = { chunks: [], held: 0, claimedAt: now, cursors: new Map(), full: false }),
      )
    window.claimedAt = now
    if (cursor !== undefined) window.cursors.set(subscriptionId, { cursor, at: now })
  }

  /**
   * Events that follow the log entry `previous` without a gap: kept when they continue the
   * stretch (or start it), and given to the chunks they cover that have no events yet. With
   * `restart`, a claim's read that does not continue the stretch replaces it, since the claims
   * are where the stretch is needed.
   */
  extend(tenant: string, previous: string, events: readonly HeraldEvent[], restart = false): void {
    const window = this.tenants.get(tenant)
    if (!window || events.length === 0) return
    const chunks = window.chunks
    if (chunks.length > 0) {
      const last = chunks[chunks.length - 1]!.last
      if (last !== previous) {
        if (previous >= chunks[0]!.previous && previous < last) {
          this.merge(window, previous, events)
          return
        }
        if (!restart) return
        this.clear(window)
      }
    }
    this.push(window, previous, events[0]!.seq!, events[events.length - 1]!.seq!, [...events])
  }

  /**
   * The events of one feed entry, which follow `previous` (the feed says so), with its `owners`
   * (see `note`); forgets idle tenants.
   */
  add(
    tenant: string,
    previous: string,
    events: readonly HeraldEvent[],
    now: number,
    owners?: readonly string[],
  ): void {
    if (events.length === 0) return
    this.note(tenant, previous, events[0]!.seq!, events[events.length - 1]!.seq!, now, events, owners)
  }

  /**
   * One feed entry: events from `first` to `last` follow `previous`; with their events if this
   * process has them, else only where they lie, for a claim to read them when it gets there;
   * with `owners` when the feed said that another process claims them itself.
   */
  note(
    tenant: string,
    previous: string,
    first: string,
    last: string,
    now: number,
    events?: readonly HeraldEvent[],
    owners?: readonly string[],
  ): void {
    const window = this.tenants.get(tenant)
    if (!window) return
    if (now - window.claimedAt > IDLE_MS) {
      this.drop(tenant, window)
      return
    }
    const chunks = window.chunks
    if (chunks.length > 0 && chunks[chunks.length - 1]!.last !== previous) {
      // Already known (a claim read it first): take the events if that chunk lacks them.
      if (events && previous >= chunks[0]!.previous && previous < chunks[chunks.length - 1]!.last)
        this.merge(window, previous, events)
      return
    }
    this.push(window, previous, first, last, events ? [...events] : undefined, owners, now)
  }

  /** Gives a chunk read from Redis its events (if it is still held, they count against the limits). */
  fill(tenant: string, chunk: Chunk, events: HeraldEvent[]): void {
    if (chunk.events) return
    chunk.events = events
    const window = this.tenants.get(tenant)
    if (!window) return
    const at = chunkAt(window.chunks, chunk.first)
    if (window.chunks[at] !== chunk) return
    window.held += events.length
    this.held += events.length
    if (window.held > KEEP) this.dropClaimed(window)
    if (this.held > KEEP_TOTAL) this.makeRoom(window)
  }

  /** Gives the chunks after `previous` that `events` (contiguous after it) cover their events; appends what goes past the end. */
  private merge(window: Window, previous: string, events: readonly HeraldEvent[]): void {
    const chunks = window.chunks
    const lastSeq = events[events.length - 1]!.seq!
    for (let c = chunkAt(chunks, previous); c < chunks.length; c++) {
      const chunk = chunks[c]!
      if (chunk.last > lastSeq) return
      if (chunk.events || chunk.previous < previous) continue
      const from = indexAfter(events, chunk.first, true)
      const to = indexAfter(events, chunk.last, false)
      if (events[from]?.seq !== chunk.first || events[to - 1]?.seq !== chunk.last) continue
      chunk.events = events.slice(from, to)
      window.held += to - from
      this.held += to - from
    }
    const end = chunks[chunks.length - 1]!.last
    const rest = events.slice(indexAfter(events, end, false))
    if (rest.length > 0) this.push(window, end, rest[0]!.seq!, rest[rest.length - 1]!.seq!, rest)
    else if (this.held > KEEP_TOTAL) this.makeRoom(window)
  }

  private clear(window: Window): void {
    this.held -= window.held
    window.held = 0
    window.chunks = []
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

  /**
   * Appends a chunk unless the stretch has as many as it may (then it stops growing); over the
   * events limit it joins without its events, to be read again if a claim gets there.
   */
  private push(
    window: Window,
    previous: string,
    first: string,
    last: string,
    events: HeraldEvent[] | undefined,
    owners?: readonly string[],
    seenAt?: number,
  ): void {
    const count = events?.length ?? 0
    if (window.chunks.length >= KEEP_CHUNKS || window.held + count > KEEP) this.dropClaimed(window)
    window.full = window.chunks.length >= KEEP_CHUNKS
    if (window.full) return
    const keep = events !== undefined && window.held + count <= KEEP
    const chunk: Chunk = { previous, first, last, events: keep ? events : undefined }
    window.chunks.push(owners === undefined ? chunk : { ...chunk, owners, seenAt })
    if (!keep) return
    window.held += count
    this.held += count
    if (this.held > KEEP_TOTAL) this.makeRoom(window)
  }

  /** Over the total: empties the stretches of the tenants claimed least recently (not `keep`). */
  private makeRoom(keep: Window): void {
    const others = [...this.tenants.values()].filter((window) => window !== keep && window.chunks.length > 0)
    others.sort((a, b) => a.claimedAt - b.claimedAt)
    for (const window of others) {
      if (this.held <= KEEP_TOTAL) break
      this.clear(window)
    }
  }

  /** Drops the chunks every subscription claiming here has passed. */
  private dropClaimed(window: Window): void {
    const now = Date.now()
    let slowest: string | undefined
    for (const [id, { cursor, at }] of window.cursors) {
      if (now - at > IDLE_MS) window.cursors.delete(id)
      else if (slowest === undefined || cursor < slowest) slowest = cursor
    }
    if (slowest === undefined) return
    const chunks = window.chunks
    let drop = 0
    let dropped = 0
    while (drop < chunks.length && chunks[drop]!.last <= slowest)
      dropped += chunks[drop++]!.events?.length ?? 0
    if (drop === 0) return
    chunks.splice(0, drop)
    window.held -= dropped
    this.held -= dropped
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

  /** Forgets one tenant's stretch (its log lost events this process expected to read). */
  forgetTenant(tenant: string): void {
    const window = this.tenants.get(tenant)
    if (window) this.clear(window)
  }

  /** The stretch held for this tenant: every event after `from` up to `last`. */
  span(tenant: string): { from: string; last: string } | undefined {
    const chunks = this.tenants.get(tenant)?.chunks
    if (!chunks || chunks.length === 0) return undefined
    return { from: chunks[0]!.previous, last: chunks[chunks.length - 1]!.last }
  }

  /**
   * The chunks holding the events after `cursor`, to the end of the stretch (the first may hold
   * `cursor` and events before it too), or undefined when the stretch does not reach back to it.
   */
  chunksAfter(tenant: string, cursor: string): Chunk[] | undefined {
    const chunks = this.tenants.get(tenant)?.chunks
    if (!chunks || chunks.length === 0 || cursor < chunks[0]!.previous) return undefined
    if (cursor > chunks[chunks.length - 1]!.last) return undefined
    let at = chunkAt(chunks, cursor)
    if (chunks[at]?.last === cursor) at++
    return chunks.slice(at)
  }

  /**
   * The kept events after `cursor` up to `last`, or undefined when the stretch does not reach
   * from the cursor to `last` (any more: it may have been dropped or restarted since), or lacks
   * the events of part of it.
   */
  after(tenant: string, cursor: string, last: string): HeraldEvent[] | undefined {
    const chunks = this.chunksAfter(tenant, cursor)
    if (!chunks) return undefined
    if (chunks.length === 0) return cursor >= last ? [] : undefined
    if (chunks[chunks.length - 1]!.last < last) return undefined
    return collect(chunks, cursor, last, false)
  }

  /** The held events from `first` to `last` (both included), if all of them are held. */
  range(tenant: string, first: string, last: string): HeraldEvent[] | undefined {
    const chunks = this.tenants.get(tenant)?.chunks
    if (!chunks || chunks.length === 0 || chunks[0]!.first > first || chunks[chunks.length - 1]!.last < last)
      return undefined
    const events = collect(chunks.slice(chunkAt(chunks, first)), first, last, true)
    return events && events[0]?.seq === first && events[events.length - 1]?.seq === last ? events : undefined
  }
}

/** The events of these chunks after `from` (or from it, with `inclusive`) up to `last`; undefined if one lacks its events. */
function collect(
  chunks: readonly Chunk[],
  from: string,
  last: string,
  inclusive: boolean,
): HeraldEvent[] | undefined {
  const out: HeraldEvent[] = []
  for (const chunk of chunks) {
    if (chunk.first > last) break
    const events = chunk.events
    if (!events) return undefined
    const start = chunk.first > from ? 0 : indexAfter(events, from, inclusive)
    const end = chunk.last <= last ? events.length : indexAfter(events, last, false)
    for (let i = start; i < end; i++) out.push(events[i]!)
  }
  return out
}

/** Index of the first chunk whose last seq is not less than `seq`. */
function chunkAt(chunks: readonly Chunk[], seq: string): number {
  let lo = 0
  let hi = chunks.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (chunks[mid]!.last < seq) lo = mid + 1
    else hi = mid
  }
  return lo
}

/** Index of the first event whose seq is greater than `seq` (or, with `inclusive`, not less). */
export function indexAfter(events: readonly HeraldEvent[], seq: string, inclusive: boolean): number {
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
