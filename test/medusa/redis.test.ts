import { describe } from 'vitest'
import { useRedis } from '../support/redis.js'
import { describeMedusaEventBus } from './suite.js'

const redis = await useRedis('medusa-event-module')

describe.skipIf(!redis)('on Redis', () => {
  describeMedusaEventBus({
    name: 'redis',
    shared: true,
    place() {
      // A keyspace per test; every service the test starts connects anew, as a restarted process would.
      const prefix = redis!.subPrefix('medusa')
      return {
        options: () => ({ store: redis!.url as `redis://${string}`, prefix }),
        cleanup: async () => {},
      }
    },
  })
})
