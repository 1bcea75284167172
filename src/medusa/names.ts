import { createHash } from 'node:crypto'
import { HeraldError } from '../errors.js'
import { assertTopic, WILDCARD } from '../topic.js'

/**
 * A Medusa event name as a Herald topic. Medusa names (`order.placed`) are single-segment topics;
 * `'*'` is Medusa's wildcard and Herald's match-all pattern alike. Anything else with a `*`
 * ('order.*') never matched an event in Medusa either, so it is refused rather than kept silently.
 */
export function eventNameOf(eventName: unknown): string {
  if (typeof eventName === 'symbol') {
    throw new HeraldError(
      'invalid_topic',
      `Herald event names are strings; ${String(eventName)} cannot be stored`,
    )
  }
  if (eventName === WILDCARD) return WILDCARD
  return assertTopic(eventName)
}

/** What the bus accepts as a subscriber id: 1-256 characters, no whitespace or control characters. */
function acceptableId(id: string): boolean {
  if (id.length === 0 || id.length > 256 || /\s/.test(id)) return false
  for (let i = 0; i < id.length; i++) if (id.charCodeAt(i) < 0x20) return false
  return true
}

/**
 * The durable Herald subscription behind one Medusa subscriber. Medusa's ids are unique per event
 * (a subscriber file listening to two events has one id for both), Herald's per tenant, so the
 * event is part of the id. Ids Herald cannot take as they are (too long, whitespace) are hashed.
 */
export function subscriptionIdFor(eventName: string, subscriberId: string): string {
  const readable = `medusa:${eventName}:${subscriberId}`
  if (acceptableId(readable)) return readable
  return `medusa:${createHash('sha256').update(`${eventName}\n${subscriberId}`).digest('hex').slice(0, 40)}`
}
