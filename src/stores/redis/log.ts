import type { HeraldEvent } from '../../event.js'
import { parseEntries, parseEntry, type StreamEntry } from './codec.js'
import { toStoreError, type Connection } from './connection.js'
import type { Chunk, RecentEvents } from './recent.js'
import { entryOf, seqOf } from './seq.js'

/**
 * What `readChunks` found: the chunks are gone from the log, or were read. `cursor` is there
 * when it was asked for: the subscription's stored cursor ('' before any claim), null when the
 * subscription does not exist.
 */
export type ChunksRead = { gone: true } | { gone: false; cursor?: string | null }

/**
 * Reads a tenant's log for claims and dead letters, through the events this process already
 * holds (recent.ts), so that what it reads from Redis it parses once and keeps for the next read.
 */
export class LogReader {
  constructor(
    private readonly main: Connection,
    private readonly recent: RecentEvents,
  ) {}

  /**
   * The events after `after` in these log entries, read right after it (the first entry may hold
   * `after` and older events too): the ones held when they are, else parsed and then held.
   */
  known(tenant: string, after: string, entries: readonly StreamEntry[]): HeraldEvent[] {
    if (entries.length === 0) return []
    const lastEntry = entries[entries.length - 1]!
    const last = seqOf(lastEntry[0], Number(lastEntry[1][1]) - 1)
    const held = this.recent.after(tenant, after, last)
    if (held && held.length > 0 && held[held.length - 1]!.seq === last) return held
    const events = parseEntries(entries, after === '' ? undefined : after)
    this.recent.extend(tenant, after, events, true)
    return events
  }

  /** Up to `count` log entries after the one holding `after` (all of whose events `after` passed). */
  async readAfter(
    log: string,
    tenant: string,
    after: string,
    count: number,
  ): Promise<{ events: HeraldEvent[]; full: boolean }> {
    const start = after === '' ? '-' : `(${entryOf(after)}`
    const entries = (await this.main.run((redis) =>
      redis.xrange(log, start, '+', 'COUNT', count),
    )) as StreamEntry[]
    return { events: this.known(tenant, after, entries), full: entries.length === count }
  }

  /**
   * Reads the events of held chunks that have none yet (the feed said where another process's
   * append lies, not what it holds), in one round trip. With `sub`, reads the subscription's
   * cursor in the same trip and parses only the chunks after it: what another process claimed
   * meanwhile this one does not need. When the log no longer has some of them, the tenant's
   * stretch is forgotten and the answer is `gone`.
   */
  async readChunks(log: string, tenant: string, chunks: readonly Chunk[], sub?: string): Promise<ChunksRead> {
    const replies = await this.main.run((redis) => {
      const pipeline = redis.pipeline()
      if (sub !== undefined) pipeline.hget(sub, 'cursor')
      for (const chunk of chunks) pipeline.xrange(log, entryOf(chunk.first), entryOf(chunk.last))
      return pipeline.exec()
    })
    const reply = (i: number): unknown => {
      const [error, result] = replies?.[i] ?? [new Error('no reply')]
      if (error) throw toStoreError(error)
      return result
    }
    const cursor = sub === undefined ? undefined : (reply(0) as string | null)
    const offset = sub === undefined ? 0 : 1
    for (let i = 0; i < chunks.length; i++) {
      const chunk = chunks[i]!
      const entries = reply(i + offset) as StreamEntry[]
      if (cursor !== undefined && (cursor === null || chunk.last <= cursor)) continue
      const events = parseEntries(entries).filter(
        (event) => event.seq! >= chunk.first && event.seq! <= chunk.last,
      )
      if (events.length === 0 || events[0]!.seq !== chunk.first || events.at(-1)!.seq !== chunk.last) {
        this.recent.forgetTenant(tenant)
        return { gone: true }
      }
      this.recent.fill(tenant, chunk, events)
    }
    return cursor === undefined ? { gone: false } : { gone: false, cursor }
  }

  /** The events at these seqs: held ones from memory, the others from the log entries holding them. */
  async eventsAt(log: string, tenant: string, seqs: readonly string[]): Promise<Map<string, HeraldEvent>> {
    const found = new Map<string, HeraldEvent>()
    const missing: string[] = []
    for (const seq of seqs) {
      const event = this.recent.range(tenant, seq, seq)?.[0]
      if (event) found.set(seq, event)
      else missing.push(seq)
    }
    if (missing.length === 0) return found
    const entries = [...new Set(missing.map(entryOf))]
    const replies = await this.main.run((redis) => {
      const pipeline = redis.pipeline()
      for (const id of entries) pipeline.xrange(log, id, id)
      return pipeline.exec()
    })
    const wanted = new Set(missing)
    for (const [error, result] of replies ?? []) {
      if (error) throw toStoreError(error)
      for (const entry of result as StreamEntry[]) {
        for (const event of parseEntry(entry)) if (wanted.has(event.seq!)) found.set(event.seq!, event)
      }
    }
    return found
  }
}
