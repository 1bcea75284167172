/**
 * `herald/service`: apps in the VTEX IO style (a `service.json` manifest plus named handlers),
 * run in process or behind HTTP; webhook delivery with Standard Webhooks signatures; auto
 * events for Fastify and plain Node HTTP (DESIGN §8).
 */
export { Service } from './service.js'
export type { AttachOptions, Attachment, ServiceConfig } from './service.js'
export type { EventContext, EventHandler, VtexFields } from './context.js'
export type { ListenOptions, ServiceServer } from './listen.js'
export { appSubscriptionId, loadManifest, parseManifest } from './manifest.js'
export type { ManifestEvent, ServiceManifest } from './manifest.js'
export { EVENT_HEADERS, eventsRoute } from './wire.js'
export {
  EndpointGoneError,
  WEBHOOK_FORMATS,
  WebhookError,
  assertWebhookTarget,
  buildWebhookRequest,
  webhookHandler,
} from './webhook.js'
export type { WebhookFormat, WebhookOptions, WebhookRequest, WebhookTarget } from './webhook.js'
export { MIN_SECRETS_KEY_LENGTH } from './secret-box.js'
export {
  DEFAULT_TOLERANCE_SECONDS,
  WEBHOOK_HEADERS,
  generateSecret,
  signatureHeaders,
  verifySignature,
} from './signature.js'
export { autoEvents } from './auto-events.js'
export type { AutoEvents, AutoEventsOptions } from './auto-events.js'
export { REDACTED_HEADERS, REDACTED_QUERY } from './auto-events-routes.js'
export type { AutoEventData, AutoEventRoute, AutoEventSpec } from './auto-events-routes.js'
export type { RequestListener } from './auto-events-http.js'
export type { EventPublisher } from './raiser.js'
export { WebhookRegistry } from './webhooks.js'
export type {
  AppHandlerInfo,
  AppRegistration,
  DisabledEndpoint,
  RegisteredApp,
  WebhookRegistryOptions,
  WebhookSubscriptionInfo,
  WebhookSubscriptionInput,
} from './webhooks.js'
