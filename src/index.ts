/**
 * Herald's public API. Importing this module loads no native or network driver: the SQLite and
 * Redis stores load theirs when they are created.
 */
export { createBus, BUS_DEFAULTS } from './bus.js'
export type {
  Bus,
  BusObserver,
  BusOptions,
  DeadLetter,
  DeadLetterQuery,
  DeadLetters,
  EmitInput,
  EmitOptions,
  EventBus,
  EventStatus,
  SubscribeOptions,
  SubscriptionInfo,
  UnsubscribeOptions,
} from './bus.js'
export type { Tail, TailOptions } from './tail.js'
export { HeraldError, NonRetriableError, RetryLaterError, ERROR_CODES, isHeraldError } from './errors.js'
export type { HeraldErrorCode } from './errors.js'
export { DEFAULT_TENANT } from './event.js'
export type { EventInput, HeraldEvent, PreparedBatch, Tenant } from './event.js'
export type { Handler, HandlerContext } from './delivery/attempt.js'
export { AttemptTimeoutError } from './delivery/attempt.js'
export type { AttemptReport, DeliveryState, DeliveryStatus } from './delivery/worker.js'
export { DEFAULT_RETRY_POLICY } from './delivery/policy.js'
export type { RetryPolicy } from './delivery/policy.js'
export type { Logger } from './logger.js'
export { silentLogger } from './logger.js'
export { memoryStore } from './stores/memory.js'
export type { MemoryStoreOptions } from './stores/memory.js'
export { sqliteStore } from './stores/sqlite.js'
export type { SqliteStoreOptions } from './stores/sqlite.js'
export { redisStore, type RedisStoreOptions } from './stores/redis/index.js'
export type * from './stores/store.js'
export { WILDCARD, patternMatches } from './topic.js'
