/**
 * Every error code Herald raises, in one place. Codes are stable: users and transports switch on
 * them. `status` is the HTTP status the server answers with; the WebSocket close codes live next
 * to the stream protocol.
 */
export const ERROR_CODES = {
  invalid_topic: {
    status: 400,
    meaning: 'a topic is empty, too long, or has an empty segment, whitespace or `*`',
  },
  invalid_pattern: { status: 400, meaning: 'a subscription pattern is malformed' },
  invalid_event: { status: 400, meaning: 'an event is not an object, lacks data, or its data is not JSON' },
  invalid_tenant: {
    status: 400,
    meaning: 'an account or workspace name is malformed, or does not match the scope',
  },
  invalid_option: { status: 400, meaning: 'an option (retry policy, limit, store setting) is out of range' },
  invalid_request: {
    status: 400,
    meaning: 'a request is malformed (bad JSON, too many events, missing field)',
  },
  payload_too_large: { status: 413, meaning: 'an event or request body exceeds the configured size limit' },
  unsupported_media_type: {
    status: 415,
    meaning: 'the request body has a content type Herald does not accept',
  },
  unauthorized: { status: 401, meaning: 'a token is missing or unknown' },
  forbidden: {
    status: 403,
    meaning: 'the token may not publish or subscribe to that pattern, or act as admin',
  },
  not_found: { status: 404, meaning: 'no such event, subscription or dead letter in this tenant' },
  id_conflict: {
    status: 409,
    meaning:
      'a publisher-supplied event id was already used, within the dedupe window, for an event of another topic',
  },
  duplicate_subscription: {
    status: 409,
    meaning: 'a subscription with that id is already attached in this process',
  },
  rate_limited: { status: 429, meaning: 'the token exceeded its request rate' },
  too_many_streams: {
    status: 429,
    meaning: 'the token already holds as many open streams (WebSocket and SSE) as its limit allows',
  },
  closed: { status: 503, meaning: 'the bus or store is closed' },
  store_unavailable: { status: 503, meaning: 'the store cannot be reached or written' },
  store_incompatible: {
    status: 500,
    meaning: 'the store holds data Herald cannot use (not a Herald database, wrong schema version)',
  },
  internal: { status: 500, meaning: 'an unexpected failure inside the server; its log has the details' },
} as const satisfies Record<string, { status: number; meaning: string }>

export type HeraldErrorCode = keyof typeof ERROR_CODES

export class HeraldError extends Error {
  override readonly name = 'HeraldError'
  readonly code: HeraldErrorCode
  readonly details: Record<string, unknown> | undefined

  constructor(code: HeraldErrorCode, message: string, details?: Record<string, unknown>) {
    super(message)
    this.code = code
    this.details = details
  }

  /** The HTTP status the server maps this error to. */
  get status(): number {
    return ERROR_CODES[this.code].status
  }

  toJSON(): { code: HeraldErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details
      ? { code: this.code, message: this.message, details: this.details }
      : { code: this.code, message: this.message }
  }
}

/**
 * Thrown by a handler to say "do not retry this": the delivery goes straight to the dead letters.
 * Mirrors a webhook's 4xx.
 */
export class NonRetriableError extends Error {
  override readonly name: string = 'NonRetriableError'
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options)
  }
}

/**
 * Thrown by a handler to say "not now, and not before `retryAfterMs`": the failure counts as an
 * attempt like any other, and the next one waits the policy's backoff or `retryAfterMs`,
 * whichever is longer (never more than a day). Mirrors an answer's `Retry-After`.
 */
export class RetryLaterError extends Error {
  override readonly name: string = 'RetryLaterError'
  /** Milliseconds, at least 0 (a negative or non-finite request counts as 0). */
  readonly retryAfterMs: number
  constructor(message: string, retryAfterMs: number, options?: { cause?: unknown }) {
    super(message, options)
    this.retryAfterMs = Number.isFinite(retryAfterMs) && retryAfterMs > 0 ? retryAfterMs : 0
  }
}

export function isHeraldError(error: unknown, code?: HeraldErrorCode): error is HeraldError {
  return error instanceof HeraldError && (code === undefined || error.code === code)
}

/** One line describing any thrown value, for logs and `lastError`. */
export function describeError(error: unknown): string {
  if (error instanceof Error) return error.message ? `${error.name}: ${error.message}` : error.name
  if (typeof error === 'string') return error
  try {
    return JSON.stringify(error) ?? String(error)
  } catch {
    return String(error)
  }
}
