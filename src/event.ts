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
export function prepareEvent(
  input: unknown,
  tenant: Tenant,
  options: PrepareOptions,
  index = 0,
): PreparedEvent {
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
  let groupId: string | undefined
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
      groupId = group
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

  let dedupe = false
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
    dedupe = true
  }

  let time: string
  if (message.time === undefined) time = isoTime(options.now)
  else {
    time = message.time
    if (typeof time !== 'string' || Number.isNaN(Date.parse(time))) {
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
  }
  if (message.type !== undefined && message.type !== null)
    event.type = optionalString(message.type, 'type', index)
  if (message.sender !== undefined && message.sender !== null)
    event.sender = optionalString(message.sender, 'sender', index)
  return { event, dedupe, groupId }
}

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

/** Thrown inside the walk; turned into an `invalid_event` that names the field and topic. */
class NotJson {
  path = ''
  constructor(readonly what: string) {}
}

/**
 * Estimates the JSON length of `root`, or throws `invalid_event` for what JSON cannot carry
 * faithfully: functions, symbols, BigInt, non-finite numbers and cycles. Cheaper than
 * stringifying, which matters on the in-memory path where nothing else serializes the event.
 */
function jsonSize(root: unknown, field: string, topic: string): number {
  try {
    return walk(root)
  } catch (error) {
    // A throw skips the pops on its way out; the next walk must start with an empty path.
    ancestors.length = 0
    throw notJson(error, field, topic)
  }
}

/** The objects on the path to the value being walked, for cycle detection; reused (the walk is synchronous). */
const ancestors: object[] = []

function notJson(error: unknown, field: string, topic: string): unknown {
  if (!(error instanceof NotJson)) return error
  return new HeraldError(
    'invalid_event',
    `${field}${error.path} of ${JSON.stringify(topic)} ${error.what}; event data must be JSON`,
  )
}

function walk(value: unknown): number {
  switch (typeof value) {
    case 'string':
      return value.length + 2
    case 'number':
      if (value !== value || value === Infinity || value === -Infinity) throw new NotJson(`is ${value}`)
      return 8
    case 'boolean':
      return 5
    case 'undefined':
      return 0
    case 'bigint':
      throw new NotJson('is a BigInt')
    case 'function':
      throw new NotJson('is a function')
    case 'symbol':
      throw new NotJson('is a symbol')
  }
  if (value === null) return 4
  const object = value as object
  if (typeof (object as { toJSON?: unknown }).toJSON === 'function') return 32 // Date and friends
  if (ancestors.includes(object)) throw new NotJson('contains a cycle')
  ancestors.push(object)
  let size = 2
  // The path of a bad value is built only when one is found, by each level on the way out.
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) {
      try {
        size += walk(object[i]) + 1
      } catch (error) {
        if (error instanceof NotJson) error.path = `[${i}]${error.path}`
        throw error
      }
    }
  } else {
    // for-in also visits inherited enumerable keys, which JSON skips; plain objects have none.
    const plain = Object.getPrototypeOf(object) === Object.prototype
    for (const key in object) {
      if (!plain && !Object.prototype.hasOwnProperty.call(object, key)) continue
      try {
        size += key.length + 4 + walk((object as Record<string, unknown>)[key])
      } catch (error) {
        if (error instanceof NotJson) error.path = `.${key}${error.path}`
        throw error
      }
    }
  }
  ancestors.pop()
  return size
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
