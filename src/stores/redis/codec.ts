import type { HeraldEvent } from '../../event.js'
import type { DeliveryRecord, DeliveryRecordState, StoredDeadLetter, SubscriptionRecord } from '../store.js'
import { seqAt, seqPrefix } from './seq.js'

/**
 * A log entry as XRANGE returns it: stream id and fields ['n', count, 'i', event ids joined by
 * spaces, 'e', the events as one JSON array].
 */
export type StreamEntry = [id: string, fields: string[]]

/** The events of a log entry, with their seqs. */
export function parseEntry(entry: StreamEntry): HeraldEvent[] {
  return parseEvents(entry[0], entry[1][5]!)
}

/** The events of the log entry `id`, given its JSON array. */
export function parseEvents(id: string, json: string): HeraldEvent[] {
  const events = JSON.parse(json) as HeraldEvent[]
  const prefix = seqPrefix(id)
  for (let i = 0; i < events.length; i++) events[i]!.seq = seqAt(prefix, i)
  return events
}

/** The events of several entries after `after` (exclusive; all when undefined), in log order. */
export function parseEntries(entries: readonly StreamEntry[], after?: string): HeraldEvent[] {
  const out: HeraldEvent[] = []
  for (const entry of entries) {
    for (const event of parseEntry(entry)) if (after === undefined || event.seq! > after) out.push(event)
  }
  return out
}

export function parseEvent(json: string, seq: string): HeraldEvent {
  const event = JSON.parse(json) as HeraldEvent
  event.seq = seq
  return event
}

/** The JSON kept in the log: the envelope without its seq, which the entry's id and index give. */
export function encodeEvent(event: HeraldEvent): string {
  if (event.seq === undefined) return JSON.stringify(event)
  const { seq: _seq, ...rest } = event
  return JSON.stringify(rest)
}

/** A delivery record as the scripts keep it (see scripts.ts). */
interface RawRecord {
  s: DeliveryRecordState
  a: number
  e: string
  c?: string
  l?: number
  n?: number
  r?: string
  u: number
  v?: string
}

export function decodeRecord(subscriptionId: string, seq: string, json: string): DeliveryRecord {
  return toRecord(subscriptionId, seq, JSON.parse(json) as RawRecord)
}

/** A dead letter with its event, which dead records keep (undefined for a record that is not dead). */
export function decodeDeadLetter(
  subscriptionId: string,
  seq: string,
  json: string,
): StoredDeadLetter | undefined {
  const raw = JSON.parse(json) as RawRecord
  if (raw.s !== 'dead' || raw.v === undefined) return undefined
  return { ...toRecord(subscriptionId, seq, raw), event: parseEvent(raw.v, seq) }
}

function toRecord(subscriptionId: string, seq: string, raw: RawRecord): DeliveryRecord {
  const record: DeliveryRecord = {
    subscriptionId,
    seq,
    eventId: raw.e,
    state: raw.s,
    attempts: raw.a,
    updatedAt: raw.u,
  }
  if (raw.r !== undefined) record.lastError = raw.r
  if (raw.n !== undefined) record.nextAttemptAt = raw.n
  if (raw.l !== undefined) record.leaseUntil = raw.l
  if (raw.c !== undefined) record.consumer = raw.c
  return record
}

/** What openSubscription keeps as the subscription's spec. */
interface Spec {
  patterns: string[]
  sender?: string
  meta?: Record<string, unknown>
}

export function encodeSpec(spec: {
  patterns: readonly string[]
  sender?: string | undefined
  meta?: Record<string, unknown> | undefined
}): string {
  const out: Spec = { patterns: [...spec.patterns] }
  if (spec.sender !== undefined) out.sender = spec.sender
  if (spec.meta !== undefined) out.meta = spec.meta
  return JSON.stringify(out)
}

/** A subscription from its tenant name ('account/workspace'), id and the hash fields spec, createdAt, startSeq, cursor. */
export function decodeSubscription(
  tenantName: string,
  id: string,
  fields: readonly (string | null)[],
): SubscriptionRecord {
  const slash = tenantName.indexOf('/')
  const spec = JSON.parse(fields[0] ?? '{"patterns":[]}') as Spec
  const record: SubscriptionRecord = {
    account: tenantName.slice(0, slash),
    workspace: tenantName.slice(slash + 1),
    id,
    patterns: spec.patterns,
    createdAt: Number(fields[1]),
    startSeq: fields[2] ?? '',
    cursor: fields[3] ?? '',
  }
  if (spec.sender !== undefined) record.sender = spec.sender
  if (spec.meta !== undefined) record.meta = spec.meta
  return record
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/

/** The time in an id Herald made (a ULID: its first 10 characters), or undefined for other ids. */
export function idTime(id: string): number | undefined {
  if (!ULID.test(id)) return undefined
  let time = 0
  for (let i = 0; i < 10; i++) time = time * 32 + CROCKFORD.indexOf(id[i]!)
  return time
}
