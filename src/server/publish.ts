import type { EventBus } from '../bus.js'
import { HeraldError } from '../errors.js'
import { assertTopic } from '../topic.js'
import type { Principal } from './auth.js'

/** An event as it arrives over the wire, before the bus validates it. */
export type WireEvent = Record<string, unknown>

/** The topic an input names (`topic`, or Medusa's `name`), validated; undefined when it names none (the bus then says so). */
function topicOf(input: WireEvent): string | undefined {
  if (typeof input !== 'object' || input === null) return undefined
  const topic = input.topic ?? input.name
  return topic === undefined ? undefined : assertTopic(topic)
}

/** Throws `forbidden` unless the principal may publish every event's topic. */
export function assertMayPublish(principal: Principal, inputs: readonly WireEvent[]): void {
  for (const input of inputs) {
    const topic = topicOf(input)
    if (topic !== undefined && !principal.mayPublish(topic)) {
      throw new HeraldError('forbidden', `${principal.name} may not publish ${JSON.stringify(topic)}`, {
        topic,
      })
    }
  }
}

/** Splits inputs into those the principal may publish and the topics of the rest (Volt MX answers partially). */
export function partitionByPermission(
  principal: Principal,
  inputs: readonly WireEvent[],
): { allowed: WireEvent[]; refusedTopics: string[] } {
  const allowed: WireEvent[] = []
  const refusedTopics: string[] = []
  for (const input of inputs) {
    const topic = typeof input === 'object' && input !== null ? (input.topic ?? input.name) : undefined
    if (typeof topic === 'string' && !principal.mayPublish(topic)) refusedTopics.push(topic)
    else allowed.push(input)
  }
  return { allowed, refusedTopics }
}

/**
 * Publishes for a principal: every transport's door to `emit`. Checks the count and the
 * publish list (all or nothing), stamps the token's sender, and resolves with the ids once the
 * store has the events.
 */
export function publish(
  bus: EventBus,
  principal: Principal,
  inputs: WireEvent[],
  eventsPerRequest: number,
): Promise<string[]> {
  if (inputs.length > eventsPerRequest) {
    return Promise.reject(
      new HeraldError(
        'invalid_request',
        `${inputs.length} events in one request; the limit is ${eventsPerRequest}`,
      ),
    )
  }
  try {
    assertMayPublish(principal, inputs)
  } catch (error) {
    return Promise.reject(error)
  }
  if (principal.sender !== undefined)
    for (const input of inputs)
      if (typeof input === 'object' && input !== null) input.sender = principal.sender
  return bus.scope(principal.tenant).emit(inputs as never[])
}
