import { readFile } from 'node:fs/promises'
import { HeraldError } from '../errors.js'
import { WILDCARD, splitPatterns } from '../topic.js'

/**
 * A `service.json` `events` block (VTEX IO): handler names mapped to the events they listen to.
 * `topics` is accepted for `keys` (orders-feed-example and availability-notify use it). Fields only
 * the VTEX runtime reads (`settingsType`, `rateLimitPerReplica`, `subject`) are ignored.
 */
export interface ManifestEvent {
  /** Only events from this app (an `@version` suffix is ignored on either side). */
  sender?: string
  /** The topics (patterns) the handler listens to; given as `keys` or `topics`. */
  keys: string[]
}

export interface ServiceManifest {
  events: Record<string, ManifestEvent>
}

/**
 * A handler name travels as the `x-event-handler-id` header and inside the subscription id
 * `app:<app>:<handler>`: printable, no whitespace, no `:`.
 */
const HANDLER_NAME = /^[A-Za-z0-9_$.-]{1,128}$/
/** Likewise an app name (`vendor.app`, `acme-orders`). */
const APP_NAME = /^[A-Za-z0-9_.@-]{1,100}$/

function invalid(message: string): HeraldError {
  return new HeraldError('invalid_option', message)
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Checks a handler name (a key of `events`); throws `invalid_option`. */
export function assertHandlerName(name: string, where = 'events'): string {
  if (!HANDLER_NAME.test(name)) {
    throw invalid(
      `${where}: handler name ${JSON.stringify(name)} must be 1-128 letters, digits, '_', '$', '.' or '-'`,
    )
  }
  return name
}

/** Checks an app name for `app:<app>:<handler>` ids and the `/v1/apps/:app` path. */
export function assertAppName(app: unknown): string {
  if (typeof app !== 'string' || !APP_NAME.test(app)) {
    throw invalid(
      `app name ${JSON.stringify(app)} must be 1-100 characters of letters, digits, '.', '_', '-' or '@'`,
    )
  }
  return app
}

/** The durable subscription id of one handler of an app. */
export function appSubscriptionId(app: string, handler: string): string {
  return `app:${app}:${handler}`
}

function parseKeys(handler: string, entry: Record<string, unknown>): string[] {
  const { keys, topics } = entry
  if (keys !== undefined && topics !== undefined) {
    throw invalid(`events.${handler}: give "keys" or "topics", not both`)
  }
  const field = keys !== undefined ? 'keys' : 'topics'
  const value = keys ?? topics
  if (value === undefined) {
    // VTEX's ServiceEvent leaves keys optional: a sender alone means every event of that sender.
    if (entry.sender !== undefined) return [WILDCARD]
    throw invalid(`events.${handler} needs keys (the topics it listens to), a sender, or both`)
  }
  if (!Array.isArray(value) || value.length === 0) {
    throw invalid(`events.${handler}.${field} must be a non-empty array of topics`)
  }
  const out: string[] = []
  value.forEach((key: unknown, i) => {
    try {
      for (const pattern of splitPatterns(typeof key === 'string' ? key : [key as string]))
        if (!out.includes(pattern)) out.push(pattern)
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error)
      throw invalid(`events.${handler}.${field}[${i}]: ${reason}`)
    }
  })
  return out
}

function parseSender(handler: string, entry: Record<string, unknown>): string | undefined {
  const value = entry.sender
  if (value === undefined) return undefined
  if (typeof value !== 'string' || value.length === 0 || value.length > 256 || /\s/.test(value)) {
    throw invalid(`events.${handler}.sender must be a non-empty string without whitespace`)
  }
  return value
}

/**
 * Validates a manifest: a whole `service.json` or just `{ events: {...} }`. Every error is an
 * `invalid_option` HeraldError naming the bad field (`events.onOrder.keys[1]: ...`).
 */
export function parseManifest(input: unknown): ServiceManifest {
  if (!isObject(input)) throw invalid('manifest must be an object with an "events" block')
  const block = input.events
  if (!isObject(block))
    throw invalid('manifest.events must be an object mapping handler names to { sender, keys }')
  const names = Object.keys(block)
  if (names.length === 0) throw invalid('manifest.events declares no handler')
  const events: Record<string, ManifestEvent> = {}
  for (const handler of names) {
    assertHandlerName(handler)
    const entry = block[handler]
    if (!isObject(entry)) throw invalid(`events.${handler} must be an object { sender, keys }`)
    const parsed: ManifestEvent = { keys: parseKeys(handler, entry) }
    const sender = parseSender(handler, entry)
    if (sender !== undefined) parsed.sender = sender
    events[handler] = parsed
  }
  return { events }
}

/** Reads and validates a `service.json` file. */
export async function loadManifest(path: string): Promise<ServiceManifest> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw invalid(`cannot read manifest ${path}: ${error instanceof Error ? error.message : String(error)}`)
  }
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch (error) {
    throw invalid(`manifest ${path} is not JSON: ${error instanceof Error ? error.message : String(error)}`)
  }
  return parseManifest(json)
}
