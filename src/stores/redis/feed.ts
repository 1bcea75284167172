import { describeError } from '../../errors.js'
import type { HeraldEvent } from '../../event.js'
import type { Logger } from '../../logger.js'
import type { WatchOptions } from '../store.js'
import type { Connection } from './connection.js'
import type { Keys } from './keys.js'
import { SUFFIX } from './keys.js'
import { parseEntries, type StreamEntry } from './codec.js'
import type { RecentEvents } from './recent.js'
import { entryOf } from './seq.js'

type Listener = (events: readonly HeraldEvent[]) => void
type FeedEntry = [id: string, fields: string[]]

/** Feed entries read per round trip. */
const READ_COUNT = 1000
/** How long one blocking read waits before it is issued again (keeps a dead socket from hanging us). */
const BLOCK_MS = 5000
const RETRY_MS = 250

/**
 * Carries appends from every process to this process's watchers. Each append (and group release)
 * adds one entry to the shared feed stream, inside the same script as the events, so the feed's
 * order is the log's order per tenant. One dedicated connection reads the feed with a blocking
 * XREAD and fetches the events of each entry from the tenant's log when a watcher needs them;
 * events this process appended itself are taken from memory instead. After a lost connection it
 * resumes where it stopped.
 */
export class FeedReader {
  private readonly listeners = new Map<Listener, WatchOptions | undefined>()
  private connection: Connection | undefined
  private loop: Promise<void> | undefined
  /** Feed id of the last entry handed out; undefined until the reader knows where the feed ends. */
  private position: string | undefined
  /** Events this process appended that the reader has not reached yet, by feed id. */
  private readonly own = new Map<string, HeraldEvent[]>()
  private starting: Promise<void> | undefined

  constructor(
    private readonly keys: Keys,
    private readonly main: Connection,
    private readonly connect: () => Connection,
    private readonly recent: RecentEvents,
    private readonly logger: Logger,
    /** Appends of this process still waiting for their reply, if any. */
    private readonly appending: () => Promise<unknown> | undefined,
    /** This store's name in the feed's `o` fields. */
    private readonly instance: string,
  ) {}

  watch(listener: Listener, options?: WatchOptions): () => void {
    this.listeners.set(listener, options)
    if (!this.loop) this.start()
    return () => {
      this.listeners.delete(listener)
      if (this.listeners.size === 0) void this.stop()
    }
  }

  /** An append of this process: its feed id and events, so the reader need not fetch them again. */
  appended(feedId: string, events: HeraldEvent[]): void {
    if (this.loop && (this.position === undefined || compareIds(feedId, this.position) > 0))
      this.own.set(feedId, events)
  }

  private start(): void {
    const connection = this.connect()
    this.connection = connection
    this.position = undefined
    // Read the feed's end on the main connection: every append this process issues after watch()
    // goes out on that connection after this read, so its feed entry lies beyond the start.
    this.starting = this.main
      .run((redis) => redis.xrevrange(this.keys.feed, '+', '-', 'COUNT', 1))
      .then(
        (newest) => this.advance(newest[0]?.[0] ?? '0-0'),
        () => {}, // the reader asks again before its first read
      )
    this.loop = this.run(connection)
  }

  /** Where the feed ends now, asked on the reader's own connection until Redis answers. */
  private async findEnd(connection: Connection): Promise<void> {
    let failing = false
    while (this.connection === connection && this.position === undefined) {
      try {
        const newest = await connection.run((redis) => redis.xrevrange(this.keys.feed, '+', '-', 'COUNT', 1))
        this.advance(newest[0]?.[0] ?? '0-0')
      } catch (error) {
        if (!failing)
          this.logger.warn(
            { error: describeError(error) },
            'watch: reading where the feed ends failed; retrying',
          )
        failing = true
        await sleep(RETRY_MS)
      }
    }
  }

  private async stop(): Promise<void> {
    const connection = this.connection
    const loop = this.loop
    this.connection = undefined
    this.loop = undefined
    this.own.clear()
    if (connection) await connection.disconnect()
    await loop
  }

  close(): Promise<void> {
    this.listeners.clear()
    return this.stop()
  }

  private advance(id: string): void {
    if (this.position !== undefined && compareIds(id, this.position) <= 0) return
    this.position = id
    for (const key of this.own.keys()) {
      if (compareIds(key, id) > 0) break
      this.own.delete(key)
    }
  }

  private async run(connection: Connection): Promise<void> {
    await this.starting
    await this.findEnd(connection)
    let failing = false
    while (this.connection === connection) {
      let reply: [string, FeedEntry[]][] | null
      try {
        const position = this.position!
        reply = (await connection.run((redis) =>
          redis.xread('COUNT', READ_COUNT, 'BLOCK', BLOCK_MS, 'STREAMS', this.keys.feed, position),
        )) as [string, FeedEntry[]][] | null
        if (failing) {
          failing = false
          await this.checkGap(connection)
        }
      } catch (error) {
        if (this.connection !== connection) return
        if (!failing)
          this.logger.warn({ error: describeError(error) }, 'watch: reading the feed failed; retrying')
        failing = true
        await sleep(RETRY_MS)
        continue
      }
      const entries = reply?.[0]?.[1]
      if (!entries || entries.length === 0) continue
      try {
        await this.deliver(connection, entries)
      } catch (error) {
        if (this.connection !== connection) return
        this.logger.warn({ error: describeError(error) }, 'watch: fetching appended events failed; retrying')
        failing = true
        await sleep(RETRY_MS)
      }
    }
  }

  /** Hands the events of these feed entries to the listeners, in feed order. */
  private async deliver(connection: Connection, entries: FeedEntry[]): Promise<void> {
    const batches: (HeraldEvent[] | undefined)[] = new Array(entries.length)
    // Another process's appends are read back only for tenants a watcher needs the events of
    // (a live subscriber or stream here); the others' watchers hear of them, and claims read
    // what they reach (recent.ts), so a process parses only the events it uses.
    const needed = new Map<string, boolean>()
    const wanted = (i: number): boolean => {
      const { t } = fieldsOf(entries[i]![1])
      let needs = needed.get(t)
      if (needs === undefined) needed.set(t, (needs = this.needs(t)))
      return needs
    }
    let missing = this.lookUp(entries, batches).filter(wanted)
    const appending = missing.length > 0 ? this.appending() : undefined
    if (appending) {
      // The feed can bring this process's own appends before their replies do: wait for those
      // rather than read back events this process has in hand. (Not for the others: an own
      // append noted without its events gets them when its reply comes, see recent.ts.)
      await appending.catch(() => {})
      missing = this.lookUp(entries, batches).filter(wanted)
    }
    let skipped: Set<string> | undefined
    for (let i = 0; i < entries.length; i++)
      if (!batches[i] && !missing.includes(i)) (skipped ??= new Set()).add(fieldsOf(entries[i]![1]).t)
    if (missing.length > 0) {
      const fetched = await connection.run((redis) => {
        const pipeline = redis.pipeline()
        for (const i of missing) {
          const { t, a, b } = fieldsOf(entries[i]![1])
          pipeline.xrange(this.keys.baseOf(t) + SUFFIX.log, entryOf(a), entryOf(b))
        }
        return pipeline.exec()
      })
      for (let j = 0; j < missing.length; j++) {
        const [error, result] = fetched?.[j] ?? [new Error('no reply')]
        if (error) throw error
        const i = missing[j]!
        const { t, a, b } = fieldsOf(entries[i]![1])
        const events = parseEntries(result as StreamEntry[]).filter(
          (event) => event.seq! >= a && event.seq! <= b,
        )
        if (events.length === 0 || events[0]!.seq !== a || events.at(-1)!.seq !== b) {
          this.recent.forget()
          this.logger.warn(
            { tenant: t, from: a, to: b, found: events.length },
            'watch: some appended events left the log before this process read them; live subscribers missed them',
          )
        }
        batches[i] = events
      }
    }
    if (this.connection !== connection) return
    const now = Date.now()
    for (let i = 0; i < entries.length; i++) {
      const { t, p, a, b, o } = fieldsOf(entries[i]![1])
      // Claims here leave what another process appended to it for a moment, if it claims too.
      const owners = o === undefined || o.startsWith(this.instance) ? undefined : claimedBy(o)
      const batch = batches[i]
      if (batch) this.recent.add(t, p, batch, now, owners)
      else this.recent.note(t, p, a, b, now, undefined, owners)
    }
    this.advance(entries.at(-1)![0])
    const events = batches.length === 1 ? (batches[0] ?? []) : batches.flatMap((batch) => batch ?? [])
    for (const [listener, options] of this.listeners) {
      try {
        if (events.length > 0) listener(events)
        if (skipped && options?.appended) for (const tenant of skipped) options.appended(tenant)
      } catch {
        // A watcher's failure is the watcher's business; the events are stored.
      }
    }
  }

  /** Does some watcher need the events appended to this tenant? */
  private needs(tenant: string): boolean {
    for (const options of this.listeners.values()) if (!options?.needs || options.needs(tenant)) return true
    return false
  }

  /** Fills in the events of the entries this process has in hand; returns the indexes of the others. */
  private lookUp(entries: readonly FeedEntry[], batches: (HeraldEvent[] | undefined)[]): number[] {
    const missing: number[] = []
    for (let i = 0; i < entries.length; i++) {
      if (batches[i]) continue
      const { t, a, b } = fieldsOf(entries[i]![1])
      const known = this.own.get(entries[i]![0]) ?? this.recent.range(t, a, b)
      if (known) batches[i] = known
      else missing.push(i)
    }
    return missing
  }

  /** After an outage: says so if the feed was trimmed past this reader's position. */
  private async checkGap(connection: Connection): Promise<void> {
    if (this.position === undefined || this.position === '0-0') return
    const oldest = await connection.run((redis) => redis.xrange(this.keys.feed, '-', '+', 'COUNT', 1))
    if (oldest[0] && compareIds(oldest[0][0], this.position) > 0) {
      this.recent.forget()
      this.logger.warn(
        { position: this.position, oldest: oldest[0][0] },
        'watch: the feed moved on while Redis was unreachable; live subscribers may have missed events (durable subscriptions did not)',
      )
    }
  }
}

/**
 * A feed entry's fields: tenant, the tenant's newest seq before the append, first and last seq
 * of the append, and the appender's claims (own.ts), if it has any there.
 */
function fieldsOf(fields: string[]): { t: string; p: string; a: string; b: string; o?: string } {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < fields.length; i += 2) out[fields[i]!] = fields[i + 1]!
  const entry = { t: out.t ?? '', p: out.p ?? '', a: out.a ?? '', b: out.b ?? '' }
  return out.o === undefined ? entry : { ...entry, o: out.o }
}

/** The subscription ids of an `o` field: after the appender's name and a newline, space-separated. */
function claimedBy(o: string): string[] {
  return o.slice(o.indexOf('\n') + 1).split(' ')
}

/** Orders two stream ids numerically. */
export function compareIds(a: string, b: string): number {
  const da = a.indexOf('-')
  const db = b.indexOf('-')
  const ma = Number(a.slice(0, da))
  const mb = Number(b.slice(0, db))
  if (ma !== mb) return ma < mb ? -1 : 1
  const na = Number(a.slice(da + 1))
  const nb = Number(b.slice(db + 1))
  return na === nb ? 0 : na < nb ? -1 : 1
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
