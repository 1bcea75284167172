import { afterEach, describe, expect, it } from 'vitest'
import { spawnServer, type ServerProcess } from '../support/herald-process.js'
import { useRedis } from '../support/redis.js'
import { StreamClient, request } from './helpers.js'

const redis = await useRedis('server')
const servers: ServerProcess[] = []
afterEach(() => {
  for (const server of servers.splice(0)) server.kill()
})

describe.skipIf(!redis)('herald serve on Redis', () => {
  it('serves from a redis:// store URL, and two servers sharing it stream each other’s events', async () => {
    const store = `${redis!.url}?prefix=${encodeURIComponent(redis!.subPrefix('shared'))}`
    const a = await spawnServer(['--store', store, '--log-level', 'info'])
    servers.push(a)
    const b = await spawnServer(['--store', store, '--log-level', 'info'])
    servers.push(b)
    expect((await request(`${a.url}/readyz`)).body).toEqual({ status: 'ready', store: 'redis' })
    const client = await StreamClient.open(`${b.url.replace('http', 'ws')}/v1/stream`)
    await client.call({ subscribe: ['shared'] })
    const published = await request<{ ids: string[] }>(`${a.url}/v1/events`, {
      body: [
        { topic: 'shared/1', data: 1 },
        { topic: 'shared/2', data: 2 },
      ],
    })
    expect(published.status).toBe(202)
    const events = await client.events(2, 10_000)
    expect(events.map((event) => event.id)).toEqual(published.body.ids)
    client.close()
    for (const server of [a, b]) {
      server.child.kill('SIGTERM')
      expect(await server.exited).toBe(0)
    }
  })
})
