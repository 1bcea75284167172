import type { HandlerContext } from '../delivery/attempt.js'
import { HeraldError, NonRetriableError, RetryLaterError } from '../errors.js'
import type { HeraldEvent } from '../event.js'
import { ulid } from '../ids.js'
import { CLOUDEVENTS_JSON, toCloudEvent } from '../cloudevents.js'
import { secretKey, signatureHeaders } from './signature.js'
import { fetchPost, nodePost } from './webhook-transport.js'
import { EVENT_HEADERS, deliveryId, eventsRoute, operationIdOf, subjectOf, toHeader } from './wire.js'

/**
 * How a webhook request carries an event:
 * - `vtex`: the VTEX IO app protocol, so an `@vtex/api` app receives it unchanged:
 *   `POST {url}/{account}/{workspace}/_events`, body = the event's data, `x-event-*` headers.
 * - `herald`: `POST {url}`, body = the whole Herald event as JSON (with its `seq`).
 * - `cloudevents`: `POST {url}`, body = a CloudEvents 1.0 structured-mode event.
 */
export type WebhookFormat = 'vtex' | 'herald' | 'cloudevents'
export const WEBHOOK_FORMATS: readonly WebhookFormat[] = ['vtex', 'herald', 'cloudevents']

export interface WebhookTarget {
  /** The endpoint; in `vtex` format the app's base URL (`http://127.0.0.1:5050`). */
  url: string
  format: WebhookFormat
  /** `whsec_...`: every request is signed with it (Standard Webhooks). */
  secret: string
  /** `vtex` format: the handler name sent as `x-event-handler-id`. */
  handler?: string
  /** `vtex` format: sent as `x-vtex-credential` (the token an app uses to call back). */
  credential?: string
}

export interface WebhookOptions {
  /**
   * Sends the requests through this `fetch` (a proxy's, or a test's) instead of Herald's own
   * `node:http` client, which keeps connections alive and costs far less CPU per delivery.
   */
  fetch?: typeof fetch
  /** Sent as `user-agent`. */
  userAgent?: string
  /**
   * Called when the endpoint answers 410 Gone, before the delivery becomes a dead letter: the
   * receiver says it is gone for good (Standard Webhooks), so the caller may stop delivering to it.
   */
  onGone?: (error: EndpointGoneError, event: HeraldEvent) => void
}

export interface WebhookRequest {
  url: string
  headers: Record<string, string>
  body: string
}

/** Checks a target once, up front, so a bad registration fails at once and not at every delivery. */
export function assertWebhookTarget(target: WebhookTarget): void {
  let url: URL
  try {
    url = new URL(target.url)
  } catch {
    throw new HeraldError('invalid_option', `url ${JSON.stringify(target.url)} is not a URL`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new HeraldError('invalid_option', `url must be http or https, got ${url.protocol}`)
  }
  if (!WEBHOOK_FORMATS.includes(target.format)) {
    throw new HeraldError('invalid_option', `format must be one of ${WEBHOOK_FORMATS.join(', ')}`)
  }
  secretKey(target.secret)
  if (target.format === 'vtex' && (typeof target.handler !== 'string' || target.handler === '')) {
    throw new HeraldError('invalid_option', 'a vtex-format webhook needs the handler name')
  }
}

/** The request that delivers `event` to `target` (attempt `attempt`, 0-based). */
export function buildWebhookRequest(
  target: WebhookTarget,
  event: HeraldEvent,
  ctx: Pick<HandlerContext, 'attempt' | 'subscriptionId'>,
  key: Buffer = secretKey(target.secret),
): WebhookRequest {
  let url = target.url
  let body: string
  const headers: Record<string, string> = {
    [EVENT_HEADERS.eventId]: toHeader(event.id),
    [EVENT_HEADERS.attempt]: String(ctx.attempt),
    [EVENT_HEADERS.subscription]: toHeader(ctx.subscriptionId),
  }
  if (target.format === 'vtex') {
    url = eventsRoute(target.url, event.account, event.workspace)
    body = JSON.stringify(event.data)
    headers['content-type'] = 'application/json'
    headers[EVENT_HEADERS.handler] = target.handler ?? ''
    headers[EVENT_HEADERS.sender] = toHeader(event.sender ?? '')
    headers[EVENT_HEADERS.key] = toHeader(event.topic)
    headers[EVENT_HEADERS.subject] = toHeader(subjectOf(event))
    headers[EVENT_HEADERS.account] = event.account
    headers[EVENT_HEADERS.workspace] = event.workspace
    headers[EVENT_HEADERS.credential] = target.credential ?? ''
    headers[EVENT_HEADERS.requestId] = ulid()
    headers[EVENT_HEADERS.operationId] = toHeader(operationIdOf(event))
  } else if (target.format === 'cloudevents') {
    body = JSON.stringify(toCloudEvent(event))
    headers['content-type'] = CLOUDEVENTS_JSON
  } else {
    body = JSON.stringify(event)
    headers['content-type'] = 'application/json'
  }
  Object.assign(
    headers,
    signatureHeaders(key, deliveryId(event, toHeader(ctx.subscriptionId), toHeader(event.id)), body),
  )
  return { url, headers, body }
}

/**
 * A failed delivery the Dispatcher retries (5xx, 408, 429, 3xx), not before the receiver's
 * `Retry-After` when it sent one (`retryAfterMs` is 0 when it did not).
 */
export class WebhookError extends RetryLaterError {
  override readonly name = 'WebhookError'
  constructor(
    message: string,
    readonly status: number,
    retryAfterMs = 0,
  ) {
    super(message, retryAfterMs)
  }
}

/**
 * The URL as failures name it (in logs, `lastError`, dead letters): without credentials in its
 * user part or its query (`?apikey=…`), which do not help anyone find the fault.
 */
export function shownUrl(url: string): string {
  try {
    const parsed = new URL(url)
    return `${parsed.origin}${parsed.pathname}${parsed.search ? '?…' : ''}`
  } catch {
    return '(the webhook URL)'
  }
}

/** The endpoint answered 410 Gone: this delivery is dead, and so (to a registry) is the endpoint. */
export class EndpointGoneError extends NonRetriableError {
  override readonly name = 'EndpointGoneError'
  readonly status = 410
}

/**
 * A `Retry-After` value in milliseconds from `now`: delay-seconds (`120`) or an HTTP date
 * (`Wed, 21 Oct 2026 07:28:00 GMT`); a date in the past is 0. Anything else is undefined (ignored).
 */
export function parseRetryAfter(value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined
  const text = value.trim()
  if (/^\d+$/.test(text)) return Number(text) * 1000
  // Date.parse also reads bare numbers and other shapes; an HTTP date names its weekday and zone.
  if (!/^[A-Za-z]{3}, /.test(text)) return undefined
  const at = Date.parse(text)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}

/** 408 and 429 say "later"; every other 4xx says the request itself is wrong: retrying cannot help. */
function retriable(status: number): boolean {
  return status < 400 || status >= 500 || status === 408 || status === 429
}

/**
 * A delivery handler for a durable subscription that POSTs each event to a URL. It only maps
 * outcomes: 2xx is delivered; a network error, a timeout (the attempt's signal), a 5xx, 408 or
 * 429 throws so the Dispatcher retries on the subscription's policy (waiting at least what a
 * `Retry-After` in the answer asks); any other 4xx throws
 * `NonRetriableError`, which makes the delivery a dead letter at once (410 Gone throws its
 * subclass `EndpointGoneError`, after telling `options.onGone`). Redirects are not followed
 * (Standard Webhooks counts a 3xx as a failure).
 */
export function webhookHandler(
  target: WebhookTarget,
  options: WebhookOptions = {},
): (event: HeraldEvent, ctx: HandlerContext) => Promise<void> {
  assertWebhookTarget(target)
  const key = secretKey(target.secret)
  const post = options.fetch ? fetchPost(options.fetch) : nodePost
  const userAgent = options.userAgent ?? 'herald-webhook'
  const onGone = options.onGone
  return async (event, ctx) => {
    const request = buildWebhookRequest(target, event, ctx, key)
    request.headers['user-agent'] = userAgent
    const { status, snippet, retryAfter } = await post(request.url, request.headers, request.body, ctx.signal)
    if (status >= 200 && status < 300) return
    const message = `POST ${shownUrl(request.url)} answered ${status}${snippet ? `: ${snippet}` : ''}`
    if (retriable(status)) throw new WebhookError(message, status, parseRetryAfter(retryAfter, Date.now()))
    if (status === 410) {
      const gone = new EndpointGoneError(message)
      try {
        onGone?.(gone, event)
      } catch {
        // The hook's failure must not turn a dead delivery into a retried one.
      }
      throw gone
    }
    throw new NonRetriableError(message)
  }
}
