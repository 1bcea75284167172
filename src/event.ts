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
const KNOWN_FIELDS = new Set([
  'topic', 'name', 'data', 'metadata', 'type', 'sender', 'id', 'time', 'account', 'workspace', 'options', 'seq',
])

export function assertTenant(tenant: unknown): Tenant {
  if (typeof tenant !== 'object' || tenant === null) throw new HeraldError('invalid_tenant', 'tenant must be { account, workspace }')
  const { account, workspace } = tenant as Record<string, unknown>
  for (const [field, value] of [['account', account], ['workspace', workspace]] as const) {
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

/** An event ready for the store, plus what the store needs to know about it. */
export interface PreparedEvent {
  event: HeraldEvent
  /** The publisher supplied the id: the store must drop a repeat within the dedupe window. */
  dedupe: boolean
  /** Set when the event waits in a group until released (metadata.eventGroupId). */
  groupId: string | undefined
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
 * Validates one input and builds its envelope. Throws a HeraldError naming the problem; the caller
 * prepares a whole batch before storing anything, so one bad event rejects the call.
 */
export function prepareEvent(input: unknown, tenant: Tenant, options: PrepareOptions, index = 0): PreparedEvent {
  const where = index > 0 ? ` (event ${index})` : ''
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new HeraldError('invalid_event', `an event must be an object${where}`)
  }
  const message = input as EventInput & Record<string, unknown>
  const topicValue = message.topic ?? message.name
  if (message.topic !== undefined && message.name !== undefined && message.topic !== message.name) {
    throw new HeraldError('invalid_event', `event gives both topic ${JSON.stringify(message.topic)} and name ${JSON.stringify(message.name)}${where}`)
  }
  if (topicValue === undefined) throw new HeraldError('invalid_topic', `event has no topic (or name)${where}`)
  const topic = assertTopic(topicValue)

  if (!('data' in message) || message.data === undefined) {
    throw new HeraldError('invalid_event', `event ${JSON.stringify(topic)} has no data; send null for an empty payload${where}`)
  }
  let size = jsonSize(message.data, 'data', topic)

  let metadata: Record<string, unknown>
  if (message.metadata === undefined || message.metadata === null) metadata = {}
  else if (isPlainObject(message.metadata)) {
    size += jsonSize(message.metadata, 'metadata', topic)
    metadata = message.metadata
  } else throw new HeraldError('invalid_event', `metadata of ${JSON.stringify(topic)} must be an object${where}`)
  if (size > options.maxPayloadBytes) {
    throw new HeraldError('payload_too_large', `event ${JSON.stringify(topic)} is about ${size} bytes of JSON; the limit is ${options.maxPayloadBytes}${where}`, {
      limit: options.maxPayloadBytes,
    })
  }

  const groupId = metadata.eventGroupId
  if (groupId !== undefined && (typeof groupId !== 'string' || groupId === '')) {
    throw new HeraldError('invalid_event', `metadata.eventGroupId must be a non-empty string${where}`)
  }

  for (const field of ['account', 'workspace'] as const) {
    const value = message[field]
    if (value !== undefined && value !== tenant[field]) {
      throw new HeraldError('invalid_tenant', `event names ${field} ${JSON.stringify(value)} but is emitted in ${tenantKey(tenant)}${where}`)
    }
  }

  let dedupe = false
  let id: string
  if (message.id !== undefined) {
    if (typeof message.id !== 'string' || message.id.length === 0 || message.id.length > MAX_ID_LENGTH || ID_FORBIDDEN.test(message.id)) {
      throw new HeraldError('invalid_event', `id must be 1-${MAX_ID_LENGTH} characters without whitespace${where}`)
    }
    id = message.id
    dedupe = true
  } else id = ulid(options.now)

  let time: string
  if (message.time !== undefined) {
    if (typeof message.time !== 'string' || Number.isNaN(Date.parse(message.time))) {
      throw new HeraldError('invalid_event', `time must be an ISO-8601 timestamp${where}`)
    }
    time = message.time
  } else time = isoTime(options.now)

  const event: HeraldEvent = {
    id,
    topic,
    data: message.data,
    metadata,
    account: tenant.account,
    workspace: tenant.workspace,
    time,
  }
  const type = optionalString(message.type, 'type', where)
  if (type !== undefined) event.type = type
  const sender = optionalString(message.sender, 'sender', where)
  if (sender !== undefined) event.sender = sender
  return { event, dedupe, groupId: groupId as string | undefined }
}

function optionalString(value: unknown, field: string, where: string): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_ID_LENGTH) {
    throw new HeraldError('invalid_event', `${field} must be a non-empty string of at most ${MAX_ID_LENGTH} characters${where}`)
  }
  return value
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false
  const proto = Object.getPrototypeOf(value)
  return proto === Object.prototype || proto === null
}

/**
 * Walks a value the way JSON.stringify would and returns an estimate of its JSON length, or
 * throws `invalid_event` for what JSON cannot carry faithfully: functions, symbols, BigInt,
 * non-finite numbers and cycles. Cheaper than stringifying, which matters on the in-memory path.
 */
function jsonSize(root: unknown, field: string, topic: string): number {
  const ancestors: object[] = []
  const fail = (path: string, what: string): never => {
    throw new HeraldError('invalid_event', `${field}${path} of ${JSON.stringify(topic)} ${what}; event data must be JSON`)
  }
  const walk = (value: unknown, path: string): number => {
    switch (typeof value) {
      case 'string':
        return value.length + 2
      case 'number':
        if (!Number.isFinite(value)) fail(path, `is ${value}`)
        return 8
      case 'boolean':
        return 5
      case 'undefined':
        return 0
      case 'bigint':
        return fail(path, 'is a BigInt')
      case 'function':
        return fail(path, 'is a function')
      case 'symbol':
        return fail(path, 'is a symbol')
    }
    if (value === null) return 4
    const object = value as object
    if (typeof (object as { toJSON?: unknown }).toJSON === 'function') return 32 // Date and friends
    if (ancestors.includes(object)) fail(path, 'contains a cycle')
    ancestors.push(object)
    let size = 2
    if (Array.isArray(object)) {
      for (let i = 0; i < object.length; i++) size += walk(object[i], `${path}[${i}]`) + 1
    } else {
      for (const key in object) {
        if (!Object.prototype.hasOwnProperty.call(object, key)) continue
        size += key.length + 4 + walk((object as Record<string, unknown>)[key], `${path}.${key}`)
      }
    }
    ancestors.pop()
    return size
  }
  return walk(root, '')
}

export function isKnownEventField(field: string): boolean {
  return KNOWN_FIELDS.has(field)
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
