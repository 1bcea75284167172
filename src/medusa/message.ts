import type { Event as MedusaEvent, EventMetadata, Message } from '@medusajs/framework/types'
import { HeraldError } from '../errors.js'
import type { EventInput, HeraldEvent } from '../event.js'

/** What the module does with Medusa's loosely typed emit options. */
export interface EmitSettings {
  /** No info log for the event (Medusa's `internal`). */
  internal: boolean
  /** Store (and so deliver) the event this many ms after the emit (Medusa's `delay`). */
  delay: number
  /** BullMQ's `jobId`: becomes the Herald event id, so a repeat within the dedupe window is dropped. */
  id: string | undefined
  /** Option names Herald has no use for (BullMQ job options, per-emit `groupedEventsTTL`). */
  ignored: string[]
}

const HONOURED = new Set(['internal', 'delay', 'jobId'])

const NO_OPTIONS: EmitSettings = Object.freeze({
  internal: false,
  delay: 0,
  id: undefined,
  ignored: [] as string[],
})

/** Emit-level options, overridden by the message's own (the order Medusa's Redis module merges them in). */
export function emitSettings(emitLevel: Record<string, unknown> | undefined, message: Message): EmitSettings {
  if (emitLevel === undefined && message.options === undefined) return NO_OPTIONS
  const merged: Record<string, unknown> = { ...emitLevel, ...message.options }
  const delay = merged.delay ?? 0
  if (typeof delay !== 'number' || !Number.isFinite(delay) || delay < 0) {
    throw new HeraldError(
      'invalid_option',
      `options.delay of ${JSON.stringify(message.name)} must be a number of milliseconds >= 0`,
    )
  }
  const id = merged.jobId
  if (id !== undefined && typeof id !== 'string') {
    throw new HeraldError(
      'invalid_option',
      `options.jobId of ${JSON.stringify(message.name)} must be a string`,
    )
  }
  return {
    internal: merged.internal === true,
    delay,
    id,
    ignored: Object.keys(merged).filter((key) => !HONOURED.has(key) && merged[key] !== undefined),
  }
}

/** Medusa's message as a Herald event input, with `created_at` (and `published_at` unless grouped) as ISO strings. */
export function toEventInput(
  message: Message,
  settings: EmitSettings,
  createdAt: string,
  publishedAt: string,
): EventInput {
  if (typeof message !== 'object' || message === null)
    throw new HeraldError('invalid_event', 'a Medusa message must be an object { name, data }')
  // Medusa groups an event only when its eventGroupId is truthy; workflows pass undefined or null
  // otherwise. Built by copying rather than deleting keys, which would slow every later access.
  const source = message.metadata as Record<string, unknown> | undefined | null
  const grouped = Boolean(source?.eventGroupId)
  const metadata: Record<string, unknown> = {}
  if (source) {
    for (const key in source) {
      if (key === 'eventGroupId' ? !grouped : key === 'published_at' || key === 'created_at') continue
      metadata[key] = source[key]
    }
  }
  metadata.created_at = createdAt
  if (!grouped) metadata.published_at = publishedAt // a grouped event's is stamped when its group is released
  const input: EventInput = {
    name: message.name,
    // Herald refuses a missing payload; Medusa lets one through, so it travels as null.
    data: message.data === undefined ? null : message.data,
    metadata,
  }
  if (settings.id !== undefined) input.id = settings.id
  return input
}

/** The last ISO string parsed: events of one emit, or one millisecond, share their stamps. */
let lastIso = ''
let lastMs = 0

function asDate(value: unknown): Date | undefined {
  if (value instanceof Date) return value
  if (typeof value === 'string') {
    // Parsing an ISO string costs ten times copying a Date, and stamps repeat.
    if (value === lastIso) return new Date(lastMs)
    const ms = Date.parse(value)
    if (Number.isNaN(ms)) return undefined
    lastIso = value
    lastMs = ms
    return new Date(ms)
  }
  if (typeof value === 'number') {
    const date = new Date(value)
    if (!Number.isNaN(date.getTime())) return date
  }
  return undefined
}

/**
 * The event as Medusa subscribers and interceptors receive it: `{ name, data, metadata }`, with
 * the timestamps as Dates whatever the store did to them (JSON stores turn Dates into strings).
 */
export function toMedusaEvent(event: HeraldEvent, publishedAt: () => Date): MedusaEvent {
  const metadata: EventMetadata = { ...event.metadata }
  const created = asDate(metadata.created_at)
  if (created) metadata.created_at = created
  metadata.published_at = asDate(metadata.published_at) ?? publishedAt()
  return { name: event.topic, data: event.data, metadata }
}
