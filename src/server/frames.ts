import type { HeraldEvent } from '../event.js'
import type { HeraldError } from '../errors.js'

/**
 * Encodings of outgoing stream frames. A stored event is handed to every matching stream one
 * after the other, so each encoding keeps the last event it encoded: with a hundred clients the
 * event is serialised once, not a hundred times.
 */
function lastOne<T>(encode: (event: HeraldEvent) => T): (event: HeraldEvent) => T {
  let lastEvent: HeraldEvent | undefined
  let lastValue: T
  return (event) => {
    if (event !== lastEvent) {
      lastValue = encode(event)
      lastEvent = event
    }
    return lastValue
  }
}

/** The event as JSON, `seq` included. */
export const eventJson = lastOne((event) => JSON.stringify(event))

/** Native stream: `{"event":{...}}`, as bytes ready for every socket. */
export const nativeEventFrame = lastOne((event) => Buffer.from(`{"event":${eventJson(event)}}`))

/** Native stream, batch mode: `{"events":[...]}`. */
export function nativeBatchFrame(jsons: readonly string[]): string {
  return `{"events":[${jsons.join(',')}]}`
}

/** SSE: one message per event, `id:` its seq, no `event:` line. */
export const sseMessage = lastOne((event) => Buffer.from(`id: ${event.seq}\ndata: ${eventJson(event)}\n\n`))

/** Volt MX stream: `{"code":620010,"eventId","topic","data"}`. */
export const voltmxEventFrame = lastOne((event) =>
  Buffer.from(JSON.stringify({ code: 620010, eventId: event.id, topic: event.topic, data: event.data })),
)

/** A refused native frame: `{"error":{code,message},"ref"}`. */
export function errorFrame(error: HeraldError, ref: unknown): string {
  return JSON.stringify(ref === undefined ? { error: error.toJSON() } : { error: error.toJSON(), ref })
}

/** A native reply, with the frame's `ref` echoed. */
export function replyFrame(body: Record<string, unknown>, ref: unknown): string {
  return JSON.stringify(ref === undefined ? body : { ...body, ref })
}
