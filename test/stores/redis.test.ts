import { describe } from 'vitest'
import { redisStore, silentLogger } from '../../src/index.js'
import { useRedis } from '../support/redis.js'
import { describeStoreContract } from './contract.js'

const redis = await useRedis('store-contract')

describe.skipIf(!redis)('redis store', () => {
  describeStoreContract('redis', {
    create: () => redisStore({ url: redis!.url, prefix: redis!.prefix, logger: silentLogger }),
  })
})
