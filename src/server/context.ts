import type { Bus } from '../bus.js'
import type { Logger } from '../logger.js'
import type { WebhookRegistry } from '../service/webhooks.js'
import type { Authenticator } from './auth.js'
import type { ServerConfig } from './config.js'
import type { Heartbeat } from './heartbeat.js'
import type { Metrics } from './metrics.js'
import type { Closable } from './ws-connection.js'

/** What every endpoint plugin is given: the one bus, the token table, metrics, limits. */
export interface ServerContext {
  readonly config: ServerConfig
  /** The root bus; endpoints act through `bus.scope(principal.tenant)`. */
  readonly bus: Bus
  readonly auth: Authenticator
  /** Apps and webhook subscriptions (`/v1/apps`, `/v1/subscriptions`), restored from the store at start. */
  readonly webhooks: WebhookRegistry
  readonly metrics: Metrics
  readonly logger: Logger
  readonly heartbeat: Heartbeat
  /** Open streams (WebSocket and SSE), closed in order at shutdown. */
  readonly streams: Set<Closable>
  /** False once shutdown began (readiness then fails). */
  accepting: boolean
}
