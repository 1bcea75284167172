import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { NonRetriableError } from '../../src/index.js'
import { waitFor } from '../helpers.js'
import {
  ACME,
  ADMIN,
  GLOBEX,
  SseClient,
  StreamClient,
  TOKENS,
  request,
  startTestServer,
  type TestServer,
} from './helpers.js'

/** Tenant A = acme (ACME, ADMIN), tenant B = globex (GLOBEX, GLOBEX_ADMIN). */
const GLOBEX_ADMIN = 'globex-admin-token-0123456789'
let t: TestServer
let bWatcher: StreamClient
let aWatcher: StreamClient
let aSse: SseClient
let aVoltmx: StreamClient

beforeAll(async () => {
  t = await startTestServer({
    tokens: [...TOKENS!, { token: GLOBEX_ADMIN, account: 'globex', workspace: 'master', admin: true }],
  })
  bWatcher = await StreamClient.open(`${t.wsUrl}/v1/stream?token=${GLOBEX}`)
  await bWatcher.call({ subscribe: ['*'] })
  aWatcher = await StreamClient.open(`${t.wsUrl}/v1/stream?token=${ACME}`)
  await aWatcher.call({ subscribe: ['*'], since: '' })
  aSse = await SseClient.open(`${t.url}/v1/sse?topics=*&token=${ACME}`)
  aVoltmx = await StreamClient.open(`${t.wsUrl}/services/ServerEvents/Stream?X-Voltmx-Authorization=${ACME}`)
  aVoltmx.send({ subscribe: ['secret'] })
  expect(await aVoltmx.next()).toMatchObject({ code: 620001 })
})
afterAll(async () => {
  for (const client of [bWatcher, aWatcher, aVoltmx]) client.close()
  aSse.close()
  await t.close()
})

describe('tenant isolation: a token of tenant A can neither publish into nor read from tenant B', () => {
  it('refuses every way of publishing into B with an A token', async () => {
    const body = { topic: 'secret', data: 1, account: 'globex', workspace: 'master' }
    expect((await request(`${t.url}/v1/events`, { token: ACME, body })).status).toBe(400)
    expect(
      (await request(`${t.url}/services/ServerEvents`, { token: ACME, body: { events: [body] } })).status,
    ).toBe(400)
    const ce = await request(`${t.url}/v1/events`, {
      token: ACME,
      headers: { 'content-type': 'application/cloudevents+json' },
      body: {
        specversion: '1.0',
        id: 'iso-ce',
        source: 's',
        type: 'secret',
        data: 1,
        heraldaccount: 'globex',
      },
    })
    expect(ce.status).toBe(400)
    const courier = await request(`${t.url}/courier/v0/globex/master/events/secret`, {
      method: 'PUT',
      token: ACME,
      body: { n: 1 },
    })
    expect(courier.status).toBe(403)
    const ws = await StreamClient.open(`${t.wsUrl}/v1/stream?token=${ACME}`)
    expect(await ws.call({ events: [body] })).toMatchObject({ error: { code: 'invalid_tenant' } })
    ws.close()
    const vmx = await StreamClient.open(
      `${t.wsUrl}/services/ServerEvents/Stream?X-Voltmx-Authorization=${ACME}`,
    )
    vmx.send({ events: [body] })
    expect(await vmx.next()).toMatchObject({ code: 620005 })
    vmx.close()
    // B saw none of it: the next event B sees is B's own.
    const own = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: GLOBEX,
      body: { topic: 'marker', data: 0 },
    })
    const [first] = await bWatcher.events(1)
    expect(first!.id).toBe(own.body.ids[0])
  })

  it("never shows B's events to A: not on a stream, not by id, not in a replay", async () => {
    const b = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: GLOBEX,
      body: { topic: 'secret', data: { b: true } },
    })
    const a = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      body: { topic: 'secret', data: { a: true } },
    })
    const [seen] = await aWatcher.events(1)
    expect(seen!.id).toBe(a.body.ids[0])
    await waitFor(() => aSse.messages.length >= 1)
    expect(aSse.messages.map((message) => message.data.id)).toEqual(a.body.ids)
    const vmxEvent = await aVoltmx.next()
    expect(vmxEvent).toMatchObject({ code: 620010, eventId: a.body.ids[0] })

    const byId = await request(`${t.url}/v1/events/${b.body.ids[0]}`, { token: ADMIN })
    expect(byId.status).toBe(404)
    expect((await request(`${t.url}/v1/events/${b.body.ids[0]}`, { token: GLOBEX })).status).toBe(200)

    const replay = await StreamClient.open(`${t.wsUrl}/v1/stream?token=${ACME}`)
    await replay.call({ subscribe: ['*'], since: '' })
    // A marker published after the replay began arrives after everything replayed.
    const marker = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      body: { topic: 'marker', data: 0 },
    })
    const all: Record<string, unknown>[] = []
    await waitFor(() => {
      all.push(...replay.takeEvents())
      return all.some((event) => event.id === marker.body.ids[0])
    })
    expect(all.every((event) => event.account === 'acme')).toBe(true)
    expect(all.map((event) => event.id)).not.toContain(b.body.ids[0])
    replay.close()
  })

  it("keeps B's dead letters out of A's reach", async () => {
    t.server.bus.scope({ account: 'globex', workspace: 'master' }).subscribe('doomed', async () => {
      throw new NonRetriableError('no')
    })
    await request(`${t.url}/v1/events`, { token: GLOBEX, body: { topic: 'doomed', data: 1 } })
    let ids: string[] = []
    await waitFor(async () => {
      const list = await request<{ deadLetters: { id: string }[] }>(`${t.url}/v1/dead-letters`, {
        token: GLOBEX_ADMIN,
      })
      ids = list.body.deadLetters.map((dead) => dead.id)
      return ids.length === 1
    })
    const mine = await request<{ deadLetters: unknown[] }>(`${t.url}/v1/dead-letters`, { token: ADMIN })
    expect(mine.body.deadLetters).toEqual([])
    expect(
      (await request(`${t.url}/v1/dead-letters/${ids[0]}/redrive`, { method: 'POST', token: ADMIN })).status,
    ).toBe(404)
    expect(
      (await request(`${t.url}/v1/dead-letters/${ids[0]}`, { method: 'DELETE', token: ADMIN })).status,
    ).toBe(404)
    expect(
      (await request(`${t.url}/v1/dead-letters/${ids[0]}`, { method: 'DELETE', token: GLOBEX_ADMIN })).status,
    ).toBe(204)
  })
})
