/** Every Lua script of the Redis store, by what it does. */
export { NOT_FOUND_REPLY } from './lua.js'
export { appendEvents, clearGroup, getEvent, releaseGroup } from './log.js'
export { releaseLock } from './locks.js'
export { deleteSubscription, listSubscriptions, openSubscription } from './subscriptions.js'
export {
  deleteDeadLetter,
  deliveryRecords,
  leaseAhead,
  leaseDeliveries,
  listDeadLetters,
  redrive,
  renewLeases,
  scanSubscription,
  settleDeliveries,
} from './deliveries.js'
