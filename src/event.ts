import { HeraldError } from './errors.js'
import { ulid } from './ids.js'
import { assertTopic } from './topic.js'

/** The envelope every event travels in (DESIGN §3). */
export interface HeraldEvent<T = unknown> {
  /** ULID set by Herald, unless the publisher supplied one (then emits are idempotent). */
  id: string
  topic: string
  data: T
  /** Volt MX additionalMetadata / Medusa metadata; `eventGroupId` travels here. */
  metadata: Record<string, unknown>
  /** Volt MX event type: 'transaction', 'audit', ... */
  type?: string
  /** The app that fired it, e.g. 'vtex.events-example'. */
  sender?: string
  account: string
  workspace: string
  /** ISO-8601 UTC; the publisher's own time is kept, else Herald stamps the emit time. */
  time: string
  /** Position in the store's log once stored: the resume token. */
  seq?: string
}

/** What a publisher hands to `emit`: Herald's own shape or Medusa's (`name` for `topic`). */
export interface EventInput<T = unknown> {
  topic?: string
  /** Medusa's name for `topic`. */
  name?: string
  data: T
  metadata?: Record<string, unknown>
  type?: string
  sender?: string
  /** A publisher-chosen id makes the emit idempotent within the dedupe window. */
  id?: string
  time?: string
  account?: string
  workspace?: string
  /** Medusa's per-message options; accepted and ignored by the core. */
  options?: Record<string, unknown>
}

export interface Tenant {
  account: string
  workspace: string
}

export const DEFAULT_TENANT: Tenant = Object.freeze({ account: 'default', workspace: 'master' })

export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
export const MAX_ID_LENGTH = 256
const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const ID_FORBIDDEN = /[\s\u0000-\u001f\u007f]/

export function assertTenant(tenant: unknown): Tenant {
  if (typeof tenant !== 'object' || tenant === null)
    throw new HeraldError('invalid_tenant', 'tenant must be { account, workspace }')
  const { account, workspace } = tenant as Record<string, unknown>
  for (const [field, value] of [
    ['account', account],
    ['workspace', workspace],
  ] as const) {
    if (typeof value !== 'string' || !TENANT_NAME.test(value)) {
      throw new HeraldError(
        'invalid_tenant',
        `${field} ${JSON.stringify(value)} must be 1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit`,
      )
    }
  }
  return { account: account as string, workspace: workspace as string }
}

export function tenantKey(tenant: Tenant): string {
  return `${tenant.account}/${tenant.workspace}`
}

/**
 * Events validated for one append, with what the store must know about them. The per-event
 * facts that are rare (a publisher's id, a group) are kept aside, so the common batch is just
 * its events.
 */
export interface PreparedBatch {
  /** The envelopes in emit order; the store sets `seq` on those it appends. */
  events: HeraldEvent[]
  /** Present when some publisher supplied an id: per event, drop a repeat within the dedupe window. */
  dedupe: boolean[] | undefined
  /** Present when some event waits in a group until released (metadata.eventGroupId): per event, its group. */
  groups: (string | undefined)[] | undefined
}

export interface PrepareOptions {
  maxPayloadBytes: number
  /** Milliseconds since the epoch; passed in so a batch shares one clock reading. */
  now: number
}

let lastStampMs = -1
let lastStamp = ''

/** ISO time for `now`, reusing the string while the millisecond does not change. */
export function isoTime(now: number): string {
  if (now !== lastStampMs) {
    lastStampMs = now
    lastStamp = new Date(now).toISOString()
  }
  return lastStamp
}

/**
 * Validates one event or an array of them and builds their envelopes. Throws a HeraldError naming
 * the problem (and which event of an array), so one bad event rejects the whole call before
 * anything is stored.
 */
export function prepareBatch(input: unknown, tenant: Tenant, options: PrepareOptions): PreparedBatch {
  if (!Array.isArray(input)) {
    const batch: PreparedBatch = { events: NO_EVENTS, dedupe: undefined, groups: undefined }
    batch.events = [prepareEvent(input, tenant, options, batch, 0, 1, 0)]
    return batch
  }
  const count = input.length
  const batch: PreparedBatch = { events: new Array<HeraldEvent>(count), dedupe: undefined, groups: undefined }
  for (let i = 0; i < count; i++)
    batch.events[i] = prepareEvent(input[i], tenant, options, batch, i, count, i + 1)
  return batch
}

const NO_EVENTS: HeraldEvent[] = []

/**
 * Validates one input and builds its envelope, noting in `batch` (at `position` of `count`) a
 * publisher's id or a group. `index` names the event in errors (1-based; 0 for a lone event).
 */
function prepareEvent(
  input: unknown,
  tenant: Tenant,
  options: PrepareOptions,
  batch: PreparedBatch,
  position: number,
  count: number,
  index: number,
): HeraldEvent {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new HeraldError('invalid_event', `an event must be an object${where(index)}`)
  }
  const message = input as EventInput
  let topicValue: unknown = message.topic
  if (topicValue === undefined) topicValue = message.name
  else if (message.name !== undefined && message.name !== topicValue) {
    throw new HeraldError(
      'invalid_event',
      `event gives both topic ${JSON.stringify(topicValue)} and name ${JSON.stringify(message.name)}${where(index)}`,
    )
  }
  if (topicValue === undefined)
    throw new HeraldError('invalid_topic', `event has no topic (or name)${where(index)}`)
  const topic = assertTopic(topicValue)

  const data = message.data
  if (data === undefined) {
    throw new HeraldError(
      'invalid_event',
      `event ${JSON.stringify(topic)} has no data; send null for an empty payload${where(index)}`,
    )
  }
  let size = jsonSize(data, 'data', topic)

  let metadata: Record<string, unknown>
  const givenMetadata = message.metadata
  if (givenMetadata === undefined || givenMetadata === null) metadata = {}
  else if (isPlainObject(givenMetadata)) {
    size += jsonSize(givenMetadata, 'metadata', topic)
    metadata = givenMetadata
    const group = givenMetadata.eventGroupId
    if (group !== undefined) {
      if (typeof group !== 'string' || group === '') {
        throw new HeraldError(
          'invalid_event',
          `metadata.eventGroupId must be a non-empty string${where(index)}`,
        )
      }
      ;(batch.groups ??= new Array<string | undefined>(count).fill(undefined))[position] = group
    }
  } else
    throw new HeraldError(
      'invalid_event',
      `metadata of ${JSON.stringify(topic)} must be an object${where(index)}`,
    )
  if (size > options.maxPayloadBytes) {
    throw new HeraldError(
      'payload_too_large',
      `event ${JSON.stringify(topic)} is about ${size} bytes of JSON; the limit is ${options.maxPayloadBytes}${where(index)}`,
      {
        limit: options.maxPayloadBytes,
      },
    )
  }

  if (message.account !== undefined && message.account !== tenant.account)
    throw tenantMismatch('account', message.account, tenant, index)
  if (message.workspace !== undefined && message.workspace !== tenant.workspace)
    throw tenantMismatch('workspace', message.workspace, tenant, index)

  let id: string
  if (message.id === undefined) id = ulid(options.now)
  else {
    id = message.id
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH || ID_FORBIDDEN.test(id)) {
      throw new HeraldError(
        'invalid_event',
        `id must be 1-${MAX_ID_LENGTH} characters without whitespace${where(index)}`,
      )
    }
    ;(batch.dedupe ??= new Array<boolean>(count).fill(false))[position] = true
  }

  let time: string
  if (message.time === undefined) time = isoTime(options.now)
  else {
    time = message.time
    if (typeof time !== 'string' || !ISO_TIME.test(time) || Number.isNaN(Date.parse(time))) {
      throw new HeraldError('invalid_event', `time must be an ISO-8601 timestamp${where(index)}`)
    }
  }

  const event: HeraldEvent = {
    id,
    topic,
    data,
    metadata,
    account: tenant.account,
    workspace: tenant.workspace,
    time,
    // A slot for the store to fill: added later, it would cost every event a second allocation.
    seq: undefined,
  }
  if (message.type !== undefined && message.type !== null)
    event.type = optionalString(message.type, 'type', index)
  if (message.sender !== undefined && message.sender !== null)
    event.sender = optionalString(message.sender, 'sender', index)
  return event
}

/**
 * A publisher's time, kept as given: an RFC 3339 date-time (`2026-11-23T07:40:00Z`, fractions
 * and offsets allowed). Date.parse alone takes `1` or `May 5`, which no consumer could read back.
 */
const ISO_TIME = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/

function where(index: number): string {
  return index > 0 ? ` (event ${index})` : ''
}

function tenantMismatch(field: string, value: unknown, tenant: Tenant, index: number): HeraldError {
  return new HeraldError(
    'invalid_tenant',
    `event names ${field} ${JSON.stringify(value)} but is emitted in ${tenantKey(tenant)}${where(index)}`,
  )
}

function optionalString(value: unknown, field: string, index: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) {
    throw new HeraldError(
      'invalid_event',
      `${field} must be a non-empty string of at most ${MAX_ID_LENGTH} characters${where(index)}`,
    )
  }
  return value
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/** Thrown inside the precise walk; turned into an `invalid_event` that names the field and topic. */
class NotJson {
  path = ''
  constructor(readonly what: string) {}
}

/** Thrown by the fast walk: it only says that something is wrong; the precise walk says what. */
const NOT_JSON = Symbol('not JSON')

/**
 * Nesting the fast walk goes before it starts tracking ancestors. A cycle repeats forever, so
 * it is still caught, a few levels below this; shallow data, nearly all of it, pays nothing.
 */
const TRACK_ANCESTORS_BELOW = 16

/**
 * Estimates the JSON length of `root`, or throws `invalid_event` for what JSON cannot carry
 * faithfully: functions, symbols, BigInt, non-finite numbers, cycles, Maps and Sets (JSON would
 * send `{}`), and whatever cannot even be read (a getter or a `toJSON` that throws, nesting too
 * deep for the stack). Cheaper than stringifying, which matters on the in-memory path where
 * nothing else serializes the event.
 */
function jsonSize(root: unknown, field: string, topic: string): number {
  try {
    return sizeOf(root, 0)
  } catch {
    // Whatever stopped the fast walk, the precise one says where and why.
    ancestors.length = 0
  }
  try {
    walk(root)
  } catch (error) {
    // A throw skips the pops on its way out; the next walk must start with an empty path.
    ancestors.length = 0
    throw notJson(error, field, topic)
  }
  // Unreachable: the precise walk rejects whatever the fast one did.
  throw new HeraldError('invalid_event', `${field} of ${JSON.stringify(topic)} is not JSON`)
}

/** The objects on the path to the value being walked, for cycle detection; reused (the walk is synchronous). */
const ancestors: object[] = []

function notJson(error: unknown, field: string, topic: string): HeraldError {
  if (!(error instanceof NotJson)) {
    // A getter or a Proxy that throws, or nesting deeper than the stack: not data JSON can carry.
    return new HeraldError(
      'invalid_event',
      `${field} of ${JSON.stringify(topic)} cannot be read as JSON (${error instanceof Error ? error.message : String(error)}); event data must be JSON`,
    )
  }
  return new HeraldError(
    'invalid_event',
    `${field}${error.path} of ${JSON.stringify(topic)} ${error.what}; event data must be JSON`,
  )
}

/** The fast walk: sizes valid JSON, throws NOT_JSON at the first thing that is not. */
function sizeOf(value: unknown, depth: number): number {
  switch (typeof value) {
    case 'string':
      return value.length + 2
    case 'number':
      if (value - value !== 0) throw NOT_JSON // NaN and ±Infinity
      return 8
    case 'boolean':
      return 5
    case 'undefined':
      return 0
    case 'object':
      break
    default:
      throw NOT_JSON
  }
  if (value === null) return 4
  const object = value as object
  const toJSON = (object as { toJSON?: unknown }).toJSON
  // JSON sends what toJSON returns (a Date's string, a Buffer's bytes): that is what counts.
  if (typeof toJSON === 'function') return sizeOf(toJSON.call(object, ''), depth + 1)
  const tracked = depth >= TRACK_ANCESTORS_BELOW
  if (tracked) {
    if (ancestors.includes(object)) throw NOT_JSON
    ancestors.push(object)
  }
  let size = 2
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) size += sizeOf(object[i], depth + 1) + 1
  } else {
    // for-in also visits inherited enumerable keys, which JSON skips; plain objects have none.
    const plain = Object.getPrototypeOf(object) === Object.prototype
    // Checked only off the plain path, where nearly all data goes.
    if (!plain && (object instanceof Map || object instanceof Set)) throw NOT_JSON
    for (const key in object) {
      if (!plain && !Object.prototype.hasOwnProperty.call(object, key)) continue
      size += key.length + 4 + sizeOf((object as Record<string, unknown>)[key], depth + 1)
    }
  }
  if (tracked) ancestors.pop()
  return size
}

/** The precise walk, run only on data the fast walk refused: throws a NotJson with the path. */
function walk(value: unknown): void {
  switch (typeof value) {
    case 'number':
      if (value !== value || value === Infinity || value === -Infinity) throw new NotJson(`is ${value}`)
      return
    case 'bigint':
      throw new NotJson('is a BigInt')
    case 'function':
      throw new NotJson('is a function')
    case 'symbol':
      throw new NotJson('is a symbol')
    case 'object':
      break
    default:
      return
  }
  if (value === null) return
  const object = value as object
  if (ancestors.includes(object)) throw new NotJson('contains a cycle')
  const toJSON = (object as { toJSON?: unknown }).toJSON
  if (typeof toJSON === 'function') {
    let json: unknown
    try {
      json = toJSON.call(object, '')
    } catch (error) {
      throw new NotJson(
        `has a toJSON that throws (${error instanceof Error ? error.message : String(error)})`,
      )
    }
    ancestors.push(object)
    walk(json)
    ancestors.pop()
    return
  }
  if (object instanceof Map) throw new NotJson('is a Map, which JSON would send as {}')
  if (object instanceof Set) throw new NotJson('is a Set, which JSON would send as {}')
  ancestors.push(object)
  // The path of a bad value is built only when one is found, by each level on the way out.
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) {
      try {
        walk(object[i])
      } catch (error) {
        if (error instanceof NotJson) error.path = `[${i}]${error.path}`
        throw error
      }
    }
  } else {
    const plain = Object.getPrototypeOf(object) === Object.prototype
    for (const key in object) {
      if (!plain && !Object.prototype.hasOwnProperty.call(object, key)) continue
      try {
        walk((object as Record<string, unknown>)[key])
      } catch (error) {
        if (error instanceof NotJson) error.path = `.${key}${error.path}`
        throw error
      }
    }
  }
  ancestors.pop()
}

/** Sender names compare without an `@version` suffix on either side (`vtex.app@1.2.3` = `vtex.app`). */
export function senderName(sender: string): string {
  const at = sender.indexOf('@', 1)
  return at === -1 ? sender : sender.slice(0, at)
}

export function senderMatches(filter: string | undefined, sender: string | undefined): boolean {
  if (filter === undefined) return true
  if (sender === undefined) return false
  return senderName(filter) === senderName(sender)
}
