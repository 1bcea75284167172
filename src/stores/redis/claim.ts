import type { HeraldEvent } from '../../event.js'
import type { Logger } from '../../logger.js'
import type { ClaimRequest, ClaimResult, Delivery } from '../store.js'
import { parseEvent, type StreamEntry } from './codec.js'
import type { SubscriptionKeys } from './keys.js'
import type { LeaseIndex } from './leases.js'
import type { LogReader } from './log.js'
import type { OwnAppends } from './own.js'
import { indexAfter, type Chunk, type RecentEvents } from './recent.js'
import type { Arg, Script } from './scripts/script.js'
import * as scripts from './scripts/index.js'
import { eventsBetween } from './seq.js'

export const DEFAULT_SCAN_LIMIT = 10_000
/** Log entries (appends) a claim reads in its first round trip, and in one round trip at most. */
const FIRST_PAGE = 4
const MAX_PAGE = 256
/** Claims that found their scan taken by another consumer try again this often before giving up for now. */
const ROUNDS = 4
/**
 * A claim that met another consumer of its subscription within this long chooses this many
 * times what it may lease: the lease takes its share from wherever the other left the cursor,
 * in the same round trip, instead of finding its whole choice taken.
 */
const CONTENDED_MS = 1000
const CONTENDED_CHOICE = 2
/** Chunks of the held stretch a claim reads from Redis in one round trip at most. */
const READ_CHUNKS = 64
/**
 * How long a claim leaves the events another process appended to that process, when the feed
 * said it claims this subscription too: it holds them, so it leases them without a read or a
 * parse, and nobody races for them. Past this, anyone takes them (their appender may be busy, or gone).
 */
const OWNER_GRACE_MS = 50
/** How long own appends may fill every claim while the cursor stands still (see `ownShare`). */
const CURSOR_STUCK_MS = 200

export type RunScript = <T>(script: Script, keys: readonly string[], args: readonly Arg[]) => Promise<T>

export interface ClaimTarget {
  /** 'account/workspace' */
  tenant: string
  subscriptionId: string
  keys: SubscriptionKeys
}

/**
 * What a scan of held chunks found: the chunks (or the subscription) are gone, or it ran; with
 * `cursor` when it stopped at a stored cursor past its start (another consumer claimed there).
 */
type ChunksScanned = { gone: true } | { gone: false; cursor?: string }

/** What one claim round looked at, before leasing. */
interface Plan {
  /** The cursor the plan starts from; the lease script compares it with the stored one. */
  expected: string
  scan: Scan
  /** Everything the log had after the cursor was looked at. */
  exhausted: boolean
}

/** Runs `match` over events in log order, up to a number chosen or a number looked at. */
class Scan {
  readonly chosen: HeraldEvent[] = []
  scanned = 0
  /** It stopped short of the end of what is known, with enough chosen (not `done`, not everything looked at). */
  stopped = false
  /** It stopped at events another process appended and claims itself; they are anyone's from this time. */
  deferredUntil: number | undefined
  looked: string

  constructor(
    cursor: string,
    private readonly target: number,
    private readonly scanLimit: number,
    private readonly match: (event: HeraldEvent) => boolean,
  ) {
    this.looked = cursor
  }

  get done(): boolean {
    return this.chosen.length >= this.target || this.scanned >= this.scanLimit
  }

  /** Events still to choose. */
  get wanted(): number {
    return this.target - this.chosen.length
  }

  take(events: readonly HeraldEvent[], from = 0): void {
    for (let i = from; i < events.length && !this.done; i++) {
      const event = events[i]!
      this.looked = event.seq!
      this.scanned++
      if (this.match(event)) this.chosen.push(event)
    }
  }
}

/**
 * Claims deliveries for durable subscriptions. `match` is JavaScript, which Lua cannot run, so a
 * claim has two halves: choose events after the cursor here, then lease them in one script that
 * moves the cursor only over the part of the choice no other claim took meanwhile (a
 * compare-and-set, widened to the overlap); a claim whose whole choice was taken chooses again.
 *
 * Where the cursor stands is usually known without asking: this process moved it last, and the
 * events after it are held in memory (recent.ts), so most claims are one round trip. Otherwise a
 * read-only script reports the cursor and the due records first.
 */
export class Claimer {
  /** Where each subscription's cursor stood after this process's last claim. */
  private readonly cursors = new Map<string, string>()
  /** When a claim of each subscription last found that another consumer had moved its cursor. */
  private readonly contended = new Map<string, number>()
  /** Subscriptions whose claims own appends fill: the cursor they start from, and since when. */
  private readonly ownFilled = new Map<string, { cursor: string; since: number }>()

  constructor(
    private readonly run: RunScript,
    private readonly reader: LogReader,
    private readonly recent: RecentEvents,
    private readonly leases: LeaseIndex,
    private readonly own: OwnAppends,
    private readonly logger: Logger,
  ) {}

  async claim(target: ClaimTarget, request: ClaimRequest): Promise<ClaimResult> {
    const { tenant, subscriptionId, keys: k } = target
    const key = k.sub
    const { consumer, limit } = request
    const now = Math.floor(request.now)
    const leaseUntil = Math.floor(request.now + request.leaseMs)
    const scanLimit = Math.max(1, request.scanLimit ?? DEFAULT_SCAN_LIMIT)
    const clock = Date.now()
    this.recent.claiming(tenant, subscriptionId, this.cursors.get(key), clock)
    this.own.claiming(tenant, subscriptionId, clock)
    const deliveries: Delivery[] = []
    let more = false
    let nextDueAt: number | undefined
    // The cursor is known as this claim found it, not as an earlier one left it.
    let cursorChecked = false
    const share = this.ownShare(target, limit, clock)
    const cursorBefore = this.cursors.get(key) ?? ''
    const ahead =
      share > 0
        ? await this.claimOwn(target, { ...request, limit: share }, now, leaseUntil, scanLimit, deliveries)
        : undefined
    if (ahead) {
      cursorChecked = true
      more = ahead.more
      nextDueAt = ahead.nextDueAt
    }
    if (deliveries.length < limit) this.ownFilled.delete(key)
    else if (this.ownFilled.get(key)?.cursor !== cursorBefore)
      this.ownFilled.set(key, { cursor: cursorBefore, since: clock })
    for (let round = 0; round < ROUNDS; round++) {
      const want = limit - deliveries.length
      if (want <= 0) break
      const choose =
        Date.now() - (this.contended.get(key) ?? -Infinity) < CONTENDED_MS ? want * CONTENDED_CHOICE : want
      let plan = await this.planFromHeld(target, key, want, choose, scanLimit, request.match)
      if (plan && plan.scan.deferredUntil !== undefined && plan.scan.scanned === 0) {
        // Nothing to take before events their appender claims itself. Unless this process's view
        // of the cursor is stale (those may be taken already), wait for them, or for the grace to
        // end; retries and expired leases that fell due are leased all the same.
        let dueNow = false
        if (!cursorChecked) {
          cursorChecked = true
          const checked = await this.checkCursor(target, now)
          if (checked === 'stale') {
            round-- // the check is not a round: plan again from the cursor as stored
            continue
          }
          dueNow = checked === 'due'
        }
        if (!dueNow) {
          nextDueAt = Math.min(nextDueAt ?? Infinity, plan.scan.deferredUntil)
          break
        }
      }
      if (!plan) {
        const scanned = await this.planFromScan(target, now, want, scanLimit, request.match)
        nextDueAt = scanned.nextDueAt
        if (!scanned.plan) break // nothing due, nothing new
        plan = scanned.plan
      }
      const leased = await this.lease(target, plan, { now, leaseUntil, consumer, want }, deliveries)
      nextDueAt = leased.nextDueAt
      more =
        leased.truncated ||
        (!plan.exhausted && plan.scan.deferredUntil === undefined) ||
        deliveries.length >= limit
      if (ahead?.more) more = true
      if (!leased.conflict) break
      // Another consumer took what this round chose: choose again from where the cursor is now
      // (the lease reported it), from what is held if it can.
      more = true
    }
    return nextDueAt === undefined ? { deliveries, more } : { deliveries, more, nextDueAt }
  }

  /**
   * How much of a claim's limit its own appends may take: all of it, unless own appends have
   * filled its claims for a while (CURSOR_STUCK_MS) without the cursor moving. Then a share is
   * left to the ordinary round, which moves the cursor: a process that appends as fast as it
   * claims would otherwise never reach what other processes appended before its own, and the log
   * could not be trimmed behind the cursor.
   */
  private ownShare(target: ClaimTarget, limit: number, clock: number): number {
    const key = target.keys.sub
    const filled = this.ownFilled.get(key)
    if (filled === undefined || filled.cursor !== (this.cursors.get(key) ?? '')) return limit
    if (clock - filled.since < CURSOR_STUCK_MS) return limit
    return limit - Math.max(1, Math.floor(limit / 4))
  }

  /**
   * Reads the stored cursor (and whether records are due) when this process's view of it may be
   * stale: `stale` when another consumer moved it past what this process knew (now updated),
   * else `due` when retries or expired leases fell due, else `idle`.
   */
  private async checkCursor(target: ClaimTarget, now: number): Promise<'stale' | 'due' | 'idle'> {
    const k = target.keys
    const [stored, dueCount] = await this.run<[string, number]>(
      scripts.scanSubscription,
      [k.sub, k.due, k.log],
      [now, 0, '', ''],
    )
    const known = this.cursors.get(k.sub)
    if (known === undefined || stored > known) {
      this.cursors.set(k.sub, stored)
      return 'stale'
    }
    return dueCount > 0 ? 'due' : 'idle'
  }

  /**
   * Leases what `plan` chose (in one script, which also re-leases due records), adding the leased
   * events to `deliveries`. `conflict`: another consumer took part of the choice meanwhile.
   */
  private async lease(
    target: ClaimTarget,
    plan: Plan,
    lease: { now: number; leaseUntil: number; consumer: string; want: number },
    deliveries: Delivery[],
  ): Promise<{ conflict: boolean; truncated: boolean; nextDueAt: number | undefined }> {
    const { tenant, subscriptionId, keys: k } = target
    const { scan } = plan
    const { consumer } = lease
    const args: Arg[] = [
      lease.now,
      lease.leaseUntil,
      consumer,
      lease.want,
      plan.expected,
      scan.looked,
      k.lease,
    ]
    for (const event of scan.chosen) args.push(event.seq!)
    const [redue, firstTaken, taken, conflict, truncated, later, cursor, skipped] = await this.run<
      [(string | number)[], number, number, number, number, string | null, string, string[]]
    >(scripts.leaseDeliveries, [k.sub, k.rec, k.due, k.leases, k.log, k.ahead], args)
    this.cursors.set(k.sub, cursor)
    this.own.passed(tenant, subscriptionId, cursor)
    if (conflict === 1 || firstTaken > 0) this.contended.set(k.sub, Date.now())
    await this.addRedelivered(target, consumer, redue, deliveries)
    if (taken > 0) {
      const held = this.leases.of(k.sub, consumer)
      const skip = skipped.length > 0 ? new Set(skipped) : undefined
      let first: string | undefined
      for (let i = firstTaken, left = taken; left > 0 && i < scan.chosen.length; i++) {
        const event = scan.chosen[i]!
        if (skip?.has(event.seq!)) continue
        first ??= event.seq!
        held.set(event.seq!, first)
        deliveries.push({ event, attempt: 0 })
        left--
      }
    }
    return {
      conflict: conflict !== 0,
      truncated: truncated === 1,
      nextDueAt: minDue(later, scan.deferredUntil),
    }
  }

  /**
   * Leases events this process appended itself, ahead of the cursor if need be (lease-ahead),
   * adding them to `deliveries`; undefined when it holds none the subscription may still claim.
   * `more` says whether some are left for the next claim.
   */
  private async claimOwn(
    target: ClaimTarget,
    request: ClaimRequest,
    now: number,
    leaseUntil: number,
    scanLimit: number,
    deliveries: Delivery[],
  ): Promise<{ more: boolean; nextDueAt?: number } | undefined> {
    const { tenant, subscriptionId, keys: k } = target
    const parts = this.own.after(tenant, subscriptionId, this.cursors.get(k.sub))
    if (parts.length === 0) return undefined
    const ranges: { previous: string; first: string; last: string; chosen: HeraldEvent[] }[] = []
    let chosen = 0
    let looked = 0
    let left = false
    for (const part of parts) {
      if (chosen >= request.limit || looked >= scanLimit) {
        left = true
        break
      }
      const range = {
        previous: part.previous,
        first: part.events[0]!.seq!,
        last: '',
        chosen: [] as HeraldEvent[],
      }
      let i = 0
      for (; i < part.events.length && chosen < request.limit && looked < scanLimit; i++) {
        const event = part.events[i]!
        looked++
        range.last = event.seq!
        if (request.match(event)) {
          range.chosen.push(event)
          chosen++
        }
      }
      if (i < part.events.length) left = true
      ranges.push(range)
    }
    const args: Arg[] = [now, leaseUntil, request.consumer, request.limit, k.lease]
    for (const range of ranges) {
      args.push(range.previous, range.first, range.last, range.chosen.length)
      for (const event of range.chosen) args.push(event.seq!)
    }
    const [redue, results, , later, cursor] = await this.run<
      [(string | number)[], number[], number, string | null, string]
    >(scripts.leaseAhead, [k.sub, k.rec, k.due, k.leases, k.log, k.ahead], args)
    this.cursors.set(k.sub, cursor)
    await this.addRedelivered(target, request.consumer, redue, deliveries)
    const held = this.leases.of(k.sub, request.consumer)
    let lease: string | undefined
    let passed = cursor
    for (let r = 0; r < ranges.length; r++) {
      const range = ranges[r]!
      if (results[r] === 2) {
        left = true
        break
      }
      // Taken by this claim, or by another (then ordinary claims deliver what is left of it).
      if (range.last > passed) passed = range.last
      if (results[r] !== 1) continue
      for (const event of range.chosen) {
        lease ??= event.seq!
        held.set(event.seq!, lease)
        deliveries.push({ event, attempt: 0 })
      }
    }
    this.own.passed(tenant, subscriptionId, passed)
    return later === null ? { more: left } : { more: left, nextDueAt: Number(later) }
  }

  /** Adds the deliveries of records the lease re-leased (their earlier lease, if any, is over). */
  private async addRedelivered(
    target: ClaimTarget,
    consumer: string,
    redue: (string | number)[],
    deliveries: Delivery[],
  ): Promise<void> {
    if (redue.length === 0) return
    const held = this.leases.of(target.keys.sub, consumer)
    for (let i = 0; i < redue.length; i += 3) held.delete(String(redue[i]))
    deliveries.push(...(await this.redelivered(target, redue)))
  }

  /**
   * A plan from the stretch held after where this process left the cursor, if it holds any. The
   * first read of chunks from Redis brings the stored cursor too: another process may have
   * claimed past this process's view meanwhile, and then the plan starts again from there.
   */
  private async planFromHeld(
    target: ClaimTarget,
    key: string,
    want: number,
    choose: number,
    scanLimit: number,
    match: (event: HeraldEvent) => boolean,
  ): Promise<Plan | undefined> {
    let cursor = this.cursors.get(key)
    for (let pass = 0; cursor !== undefined && pass < 2; pass++) {
      const chunks = this.recent.chunksAfter(target.tenant, cursor)
      if (!chunks || chunks.length === 0) return undefined
      const scan = new Scan(cursor, choose, scanLimit, match)
      const scanned = await this.scanChunks(target, chunks, scan, pass === 0, want)
      if (scanned.gone) return undefined // from the log, or the subscription is: scan the store
      if (scanned.cursor !== undefined && scanned.cursor > cursor) {
        this.contended.set(key, Date.now())
        this.cursors.set(key, scanned.cursor)
        cursor = scanned.cursor
        continue
      }
      // Past what is held the log may go on only if the stretch stopped growing; what other
      // processes append reaches it through the feed and wakes the subscription again.
      return {
        expected: cursor,
        scan,
        exhausted: !scan.done && !scan.stopped && !this.recent.isFull(target.tenant),
      }
    }
    return undefined
  }

  /**
   * Runs the scan over held chunks (after its cursor), reading those without events from Redis
   * as it gets to them, no more than it may need, and none once `readUpTo` events are chosen (a
   * choice beyond what the lease may take is made from what is in hand). With `checkCursor`, the
   * first read brings the stored cursor, and the scan stops there if it is past the scan's
   * start, answering that cursor. `gone` when the log no longer has the chunks or the
   * subscription is gone.
   */
  private async scanChunks(
    target: ClaimTarget,
    chunks: readonly Chunk[],
    scan: Scan,
    checkCursor = false,
    readUpTo = Infinity,
  ): Promise<ChunksScanned> {
    const start = scan.looked
    const now = Date.now()
    for (let i = 0; i < chunks.length && !scan.done; i++) {
      const owned = ownersGrace(chunks[i]!, target.subscriptionId, now)
      if (owned !== undefined) {
        scan.stopped = true
        scan.deferredUntil = owned
        break
      }
      if (!chunks[i]!.events) {
        const wanted = Math.min(scan.wanted, readUpTo - scan.chosen.length)
        if (wanted <= 0) {
          scan.stopped = true
          break
        }
        const missing: Chunk[] = []
        let expected = 0
        for (let j = i; j < chunks.length && missing.length < READ_CHUNKS && expected < wanted; j++) {
          const chunk = chunks[j]!
          if (chunk.events) expected += chunk.events.length
          else {
            missing.push(chunk)
            expected += eventsBetween(chunk.first, chunk.last) ?? wanted
          }
        }
        const read = await this.reader.readChunks(
          target.keys.log,
          target.tenant,
          missing,
          checkCursor ? target.keys.sub : undefined,
        )
        if (read.gone || read.cursor === null) return { gone: true }
        if (checkCursor) {
          checkCursor = false
          if (read.cursor !== undefined && read.cursor > start) return { gone: false, cursor: read.cursor }
        }
      }
      const chunk = chunks[i]!
      const events = chunk.events!
      scan.take(events, chunk.first > scan.looked ? 0 : indexAfter(events, scan.looked, false))
    }
    return { gone: false }
  }

  /** A plan from the stored cursor, read with the due records in one script; undefined when there is nothing to lease. */
  private async planFromScan(
    target: ClaimTarget,
    now: number,
    want: number,
    scanLimit: number,
    match: (event: HeraldEvent) => boolean,
  ): Promise<{ plan?: Plan; nextDueAt?: number }> {
    const { tenant, subscriptionId, keys: k } = target
    for (;;) {
      const span = this.recent.span(tenant)
      let page = FIRST_PAGE
      const [cursor, dueCount, later, entries, cursorHeld] = await this.run<
        [string, number, string | null, StreamEntry[], number]
      >(
        scripts.scanSubscription,
        [k.sub, k.due, k.log],
        [now, page, span ? span.from : '', span ? span.last : ''],
      )
      this.recent.claiming(tenant, subscriptionId, cursor, Date.now())
      // Choose at most what the lease can take after the due records, so the cursor stops at the last one chosen.
      const scan = new Scan(cursor, Math.max(0, want - dueCount), scanLimit, match)
      let full: boolean
      if (cursorHeld === 1) {
        const held = this.recent.chunksAfter(tenant, cursor)
        // The stretch moved on meanwhile, or lost events: scan again.
        if (!held || (await this.scanChunks(target, held, scan)).gone) continue
        // Reading on from the log starts after the entry the scan ended in, which is right only
        // when the scan went to the end of what is held, not when it stopped at events deferred
        // to their appender (it may have stopped inside an entry).
        full = scan.deferredUntil === undefined
      } else {
        scan.take(this.reader.known(tenant, cursor, entries))
        full = entries.length === page
      }
      let events: HeraldEvent[]
      while (!scan.done && full) {
        page = Math.min(page * 2, MAX_PAGE)
        ;({ events, full } = await this.reader.readAfter(k.log, tenant, scan.looked, page))
        scan.take(events)
      }
      const wakeAt = minDue(later, scan.deferredUntil)
      if (dueCount === 0 && scan.scanned === 0) return wakeAt === undefined ? {} : { nextDueAt: wakeAt }
      const plan = { expected: cursor, scan, exhausted: !scan.done && !full }
      return wakeAt === undefined ? { plan } : { plan, nextDueAt: wakeAt }
    }
  }

  /** Deliveries of the due records the lease re-leased, with their events (kept by the record, held, or read). */
  private async redelivered(target: ClaimTarget, redue: (string | number)[]): Promise<Delivery[]> {
    const parsed: { seq: string; attempt: number; json: string }[] = []
    for (let i = 0; i + 2 < redue.length; i += 3)
      parsed.push({ seq: String(redue[i]), attempt: Number(redue[i + 1]), json: String(redue[i + 2]) })
    const fromLog = parsed.filter((due) => due.json === '').map((due) => due.seq)
    const found =
      fromLog.length > 0 ? await this.reader.eventsAt(target.keys.log, target.tenant, fromLog) : undefined
    const deliveries: Delivery[] = []
    const lost: string[] = []
    for (const due of parsed) {
      const event = due.json !== '' ? parseEvent(due.json, due.seq) : found?.get(due.seq)
      if (event) deliveries.push({ event, attempt: due.attempt })
      else lost.push(due.seq)
    }
    // Trimming keeps what a record needs, so this means entries were removed by hand: say so
    // rather than hand a handler half an event. The records stay until their subscription goes.
    if (lost.length > 0)
      this.logger.error(
        { tenant: target.tenant, subscriptionId: target.subscriptionId, seqs: lost },
        'deliveries whose events are gone from the log',
      )
    return deliveries
  }
}

/** The earlier of a script's next due time (nil as null) and a deferral, if any. */
function minDue(later: string | null, deferredUntil: number | undefined): number | undefined {
  const due = later === null ? undefined : Number(later)
  if (deferredUntil === undefined) return due
  return due === undefined ? deferredUntil : Math.min(due, deferredUntil)
}

/**
 * When a chunk's events become anyone's: undefined if they are already, else the end of the
 * grace its appender has, when the feed said it claims `subscriptionId` itself.
 */
function ownersGrace(chunk: Chunk, subscriptionId: string, now: number): number | undefined {
  const { owners, seenAt } = chunk
  if (owners === undefined || seenAt === undefined || now - seenAt >= OWNER_GRACE_MS) return undefined
  return owners.includes(subscriptionId) ? seenAt + OWNER_GRACE_MS : undefined
}
