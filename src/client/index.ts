/**
 * `herald/client`: publish and subscribe to a Herald server from Node or a browser (DESIGN §9).
 * Uses only web-platform APIs (fetch, WebSocket, URL); in Node 20, pass `ws` as `WebSocket`.
 */
export { HeraldClient } from './client.js'
export type { HeraldClientOptions } from './client.js'
export { DEFAULT_RECONNECT } from './subscription.js'
export type {
  ClientSubscribeOptions,
  ClientSubscription,
  ReconnectPolicy,
  SubscriptionState,
} from './subscription.js'
export type { WebSocketConstructor, WebSocketLike } from './socket.js'
export { HeraldError } from '../errors.js'
export type { HeraldErrorCode } from '../errors.js'
export type { EventInput, HeraldEvent } from '../event.js'
