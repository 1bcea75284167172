import type { HeraldEvent, Tenant } from '../event.js'

/**
 * The VTEX IO inbound event protocol (platform → app), as `@vtex/api` reads it, plus Herald's
 * own additions. Shared by the webhook sender and by `Service.listen`, so both ends agree.
 */
export const EVENT_HEADERS = {
  handler: 'x-event-handler-id',
  sender: 'x-event-sender',
  key: 'x-event-key',
  subject: 'x-event-subject',
  account: 'x-vtex-account',
  workspace: 'x-vtex-workspace',
  credential: 'x-vtex-credential',
  requestId: 'x-request-id',
  operationId: 'x-vtex-operation-id',
  eventId: 'x-herald-event-id',
  /** 0-based attempt number of this delivery (Herald's addition). */
  attempt: 'x-herald-attempt',
  subscription: 'x-herald-subscription-id',
} as const

/**
 * A value as a header can carry it. Topics, senders and publisher ids may hold any character, but
 * a header only printable ASCII: such a value (or one with a `%`, to stay unambiguous) travels
 * percent-encoded; `fromHeader` reads it back. Plain ASCII values, nearly all, are sent as they are.
 */
export function toHeader(value: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(value) ? value : encodeURIComponent(value)
}

export function fromHeader(value: string): string {
  if (!value.includes('%')) return value
  try {
    return decodeURIComponent(value)
  } catch {
    return value
  }
}

/** `POST {baseUrl}/{account}/{workspace}/_events`: the route `@vtex/api` serves (any method). */
export function eventsRoute(baseUrl: string, account: string, workspace: string): string {
  return `${baseUrl.replace(/\/+$/, '')}/${encodeURIComponent(account)}/${encodeURIComponent(workspace)}/_events`
}

function metadataString(event: HeraldEvent, field: string): string | undefined {
  const value = event.metadata[field]
  return typeof value === 'string' && value !== '' ? value : undefined
}

/**
 * The operation an event belongs to, which VTEX propagates from call to call: the publisher's
 * `metadata.operationId` when it set one, else the event id.
 */
export function operationIdOf(event: HeraldEvent): string {
  return metadataString(event, 'operationId') ?? event.id
}

/** What the event is about: the publisher's `metadata.subject`, else its sender, else its topic. */
export function subjectOf(event: HeraldEvent): string {
  return metadataString(event, 'subject') ?? event.sender ?? event.topic
}

/**
 * Names one delivery of one event to one subscription, the same on every retry:
 * `<account>/<workspace>/<subscription id>:<event id>`. Subscription ids are unique only within
 * a tenant, and a publisher may choose its event ids, so without the tenant one app registered
 * in two tenants could be sent two different events under one id (and drop the second as a
 * repeat). Tenant names hold no `/`.
 */
export function deliveryId(tenant: Tenant, subscriptionId: string, eventId: string): string {
  return `${tenant.account}/${tenant.workspace}/${subscriptionId}:${eventId}`
}
