/**
 * WebSocket close codes the server uses (documented in docs/protocol.md). Codes 4000–4999 are
 * the range RFC 6455 leaves to applications.
 */
export const CLOSE_CODES = {
  /** The server is shutting down; reconnect (to another instance) and resume from your last seq. */
  goingAway: 1001,
  /** A frame was larger than `limits.bodyBytes` (sent by `ws` itself). */
  tooBig: 1009,
  /** An unexpected failure inside the server. */
  internal: 1011,
  /** Three pings in a row went unanswered. */
  pingTimeout: 4000,
  /** More than `limits.wsBufferBytes` waited to be sent: the client reads too slowly. Resume from your last seq. */
  slowConsumer: 4008,
} as const

export type CloseCode = (typeof CLOSE_CODES)[keyof typeof CLOSE_CODES]
