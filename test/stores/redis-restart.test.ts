/**
 * Redis goes away mid-stream: a redis-server of this test's own, with the append-only file
 * fsynced on every write, is killed (SIGKILL) and started again while a publisher keeps emitting.
 * Every emit either resolves (and its event is then delivered) or fails with a clear
 * store_unavailable error; the same bus carries on once Redis is back.
 */
import { describe, expect, it } from 'vitest'
import { createBus, isHeraldError, redisStore, type HeraldEvent, type Logger } from '../../src/index.js'
import { sleep, waitFor } from '../helpers.js'
import { canStartRedisServer, startRedisServer } from '../support/redis.js'

const recordingLogger = (lines: string[]): Logger => {
  const log = (message: string): void => {
    lines.push(message)
  }
  return { error: (_f, m) => log(m), warn: (_f, m) => log(m), info: (_f, m) => log(m), debug: () => {} }
}

describe.skipIf(!canStartRedisServer())('Redis restart', () => {
  it('delivers every acknowledged event after Redis is killed and restarted mid-stream, without restarting Herald', async () => {
    const server = await startRedisServer({ appendonly: true, appendfsync: 'always' })
    const logs: string[] = []
    const logger = recordingLogger(logs)
    const bus = createBus({
      store: redisStore({ url: server.url, prefix: 'restart', timeout: 3000, logger }),
      leaseTime: 1000,
      pollInterval: 100,
      logger,
    })
    const delivered = new Set<string>()
    const live: HeraldEvent[] = []
    bus.subscribe(
      'orders',
      async (event) => {
        delivered.add(event.id)
      },
      { subscriberId: 'ledger', retry: { concurrency: 20 } },
    )
    bus.subscribe('orders', async (event) => {
      live.push(event)
    })
    await waitFor(async () => (await bus.subscriptions()).length === 1, 5000, 'the durable subscription')

    const acknowledged: string[] = []
    const refused: unknown[] = []
    let publishing = true
    const publisher = (async () => {
      for (let i = 0; publishing; i++) {
        try {
          acknowledged.push(
            ...(await bus.emit([
              { topic: `orders/${i}`, data: { i } },
              { topic: `orders/${i}/b`, data: { i } },
            ])),
          )
        } catch (error) {
          refused.push(error)
          await sleep(20)
        }
      }
    })()

    await waitFor(() => acknowledged.length >= 300, 20_000, 'events before the restart')
    await server.restart({ kill: true })
    const restartedAt = acknowledged.length
    await waitFor(() => acknowledged.length >= restartedAt + 300, 20_000, 'events after the restart')
    publishing = false
    await publisher

    await waitFor(
      () => acknowledged.every((id) => delivered.has(id)),
      30_000,
      'every acknowledged event delivered',
    )
    // Publishers were told, in the store's own words, and never hung.
    for (const error of refused) expect(isHeraldError(error, 'store_unavailable'), String(error)).toBe(true)
    // Live delivery came back on its own too: the last event published reached the live subscriber.
    const last = acknowledged.at(-1)!
    await waitFor(() => live.some((event) => event.id === last), 10_000, 'live delivery after the restart')
    expect(logs).toContain('lost the connection to Redis; reconnecting')
    await bus.close()
    await server.stop()
  })
})
