import { HeraldError } from './errors.js'
import type { EventInput, HeraldEvent } from './event.js'

/**
 * CloudEvents 1.0 ↔ Herald events (DESIGN §3): `type` ↔ topic, `source` ↔ sender, `id`, `time`,
 * `data`; the tenant travels as the extensions `heraldaccount` / `heraldworkspace`, metadata as
 * one JSON string in `heraldmetadata`, Herald's own event `type` as `heraldtype` and the log
 * position as `heraldseq` (extension names: lower-case letters and digits, per the spec).
 */
export interface CloudEvent {
  specversion: '1.0'
  id: string
  source: string
  type: string
  time?: string
  datacontenttype?: string
  data?: unknown
  subject?: string
  heraldaccount?: string
  heraldworkspace?: string
  heraldmetadata?: string
  heraldtype?: string
  heraldseq?: string
  [extension: string]: unknown
}

export const CLOUDEVENTS_JSON = 'application/cloudevents+json'
export const CLOUDEVENTS_BATCH_JSON = 'application/cloudevents-batch+json'
export const SPEC_VERSION = '1.0'

/** A header naming a CloudEvents attribute in binary mode (`ce-type`, ...). */
const BINARY_PREFIX = 'ce-'

function stringAttribute(ce: Record<string, unknown>, name: string, where: string): string | undefined {
  const value = ce[name]
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string' || value === '') {
    throw new HeraldError('invalid_event', `CloudEvents attribute ${name} must be a non-empty string${where}`)
  }
  return value
}

function parseMetadata(text: string | undefined, where: string): Record<string, unknown> | undefined {
  if (text === undefined) return undefined
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new HeraldError(
      'invalid_event',
      `heraldmetadata must be a JSON object: ${(error as Error).message}${where}`,
    )
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new HeraldError('invalid_event', `heraldmetadata must be a JSON object${where}`)
  }
  return value as Record<string, unknown>
}

/**
 * The Herald event input a structured-mode CloudEvent stands for. `specversion` must be 1.0 and
 * `type` present; `id` and `source` are optional here (Herald stamps an id; no source, no
 * sender). `data_base64` is refused: Herald events carry JSON.
 */
export function fromCloudEvent(input: unknown, index = 0): EventInput {
  const where = index > 0 ? ` (event ${index})` : ''
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new HeraldError('invalid_event', `a CloudEvent must be a JSON object${where}`)
  }
  const ce = input as Record<string, unknown>
  if (ce.specversion !== SPEC_VERSION) {
    throw new HeraldError(
      'invalid_event',
      `CloudEvents specversion must be "1.0", got ${JSON.stringify(ce.specversion)}${where}`,
    )
  }
  const type = stringAttribute(ce, 'type', where)
  if (type === undefined)
    throw new HeraldError('invalid_topic', `a CloudEvent needs a type (its topic)${where}`)
  if (ce.data_base64 !== undefined) {
    throw new HeraldError(
      'invalid_event',
      `data_base64 is not accepted: Herald events carry JSON data${where}`,
    )
  }
  const event: EventInput = { topic: type, data: ce.data === undefined ? null : ce.data }
  const id = stringAttribute(ce, 'id', where)
  if (id !== undefined) event.id = id
  const source = stringAttribute(ce, 'source', where)
  if (source !== undefined) event.sender = source
  const time = stringAttribute(ce, 'time', where)
  if (time !== undefined) event.time = time
  const account = stringAttribute(ce, 'heraldaccount', where)
  if (account !== undefined) event.account = account
  const workspace = stringAttribute(ce, 'heraldworkspace', where)
  if (workspace !== undefined) event.workspace = workspace
  const heraldType = stringAttribute(ce, 'heraldtype', where)
  if (heraldType !== undefined) event.type = heraldType
  const metadata = parseMetadata(stringAttribute(ce, 'heraldmetadata', where), where)
  if (metadata !== undefined) event.metadata = metadata
  return event
}

/** True when a request is a CloudEvent in binary mode (attributes in `ce-*` headers). */
export function isBinaryCloudEvent(headers: Record<string, string | string[] | undefined>): boolean {
  return headers['ce-specversion'] !== undefined
}

/**
 * The event input of a binary-mode request: attributes from its `ce-*` headers, `data` from
 * its body (already decoded by the caller from the content type).
 */
export function fromBinaryCloudEvent(
  headers: Record<string, string | string[] | undefined>,
  data: unknown,
): EventInput {
  const ce: Record<string, unknown> = { data }
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(BINARY_PREFIX) || value === undefined) continue
    ce[name.slice(BINARY_PREFIX.length)] = Array.isArray(value) ? value.join(',') : decodeHeaderValue(value)
  }
  return fromCloudEvent(ce)
}

/** The HTTP binding percent-encodes characters outside printable ASCII in header values. */
function decodeHeaderValue(value: string): string {
  if (!value.includes('%')) return value
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

/** A stored Herald event as a structured-mode CloudEvent. */
export function toCloudEvent(event: HeraldEvent): CloudEvent {
  const ce: CloudEvent = {
    specversion: SPEC_VERSION,
    id: event.id,
    source: event.sender ?? `/herald/${event.account}/${event.workspace}`,
    type: event.topic,
    time: event.time,
    datacontenttype: 'application/json',
    data: event.data,
    heraldaccount: event.account,
    heraldworkspace: event.workspace,
  }
  if (Object.keys(event.metadata).length > 0) ce.heraldmetadata = JSON.stringify(event.metadata)
  if (event.type !== undefined) ce.heraldtype = event.type
  if (event.seq !== undefined) ce.heraldseq = event.seq
  return ce
}
