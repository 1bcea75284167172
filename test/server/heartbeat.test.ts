import { afterAll, beforeAll, expect, it } from 'vitest'
import { StreamClient, startTestServer, type TestServer } from './helpers.js'

let t: TestServer
beforeAll(async () => {
  t = await startTestServer({ pingInterval: 1000 })
})
afterAll(async () => {
  await t.close()
})

it('says at start that it runs open when no tokens are configured', () => {
  expect(t.logs()).toMatch(/no tokens configured: serving OPEN/)
})

it('closes a client that never answers pings after about 3 intervals with 4000, and keeps one that answers', async () => {
  const answering = await StreamClient.open(`${t.wsUrl}/v1/stream`)
  const voltmxSilent = await StreamClient.open(`${t.wsUrl}/services/ServerEvents/Stream`, { autoPong: false })
  const silent = await StreamClient.open(`${t.wsUrl}/v1/stream`, { autoPong: false })
  // Counted from the open event on: no ping can arrive before this line runs.
  let pings = 0
  silent.socket.on('ping', () => pings++)
  const start = Date.now()
  const closed = await silent.closed
  const elapsed = Date.now() - start
  expect(closed).toEqual({ code: 4000, reason: 'no pong to 3 pings' })
  expect(pings).toBe(3)
  // Pinged on a shared 1 s timer: closed on the tick after the third unanswered ping.
  expect(elapsed).toBeGreaterThan(2500)
  expect(elapsed).toBeLessThan(6000)
  expect((await voltmxSilent.closed).code).toBe(4000)
  expect(answering.socket.readyState).toBe(answering.socket.OPEN)
  expect(await answering.call({ subscribe: ['still-here'] })).toMatchObject({ subscribed: ['still-here'] })
  answering.close()
})
