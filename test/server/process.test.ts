import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { spawnServer, type ServerProcess } from '../support/herald-process.js'
import { waitFor } from '../helpers.js'
import { StreamClient, request } from './helpers.js'

let server: ServerProcess | undefined
afterEach(() => {
  server?.kill()
  server = undefined
})
const dir = mkdtempSync(join(tmpdir(), 'herald-serve-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

async function metric(url: string, name: string): Promise<number> {
  const answer = await request<string>(`${url}/metrics`)
  const line = answer.body.split('\n').find((l) => l.startsWith(name))
  return line === undefined ? NaN : Number(line.split(' ').pop())
}

/**
 * 40 requests of 25 events each, with SIGTERM sent once the first was answered; resolves, after
 * every request ended, with the ids the server answered 202 for.
 */
async function publishThroughSigterm(target: NonNullable<typeof server>, root: string): Promise<string[]> {
  const accepted: string[] = []
  const publishers = Array.from({ length: 40 }, (_, i) =>
    request<{ ids: string[] }>(`${target.url}/v1/events`, {
      body: Array.from({ length: 25 }, (_, j) => ({ topic: `${root}/${i}`, data: j })),
    })
      .then((answer) => {
        if (answer.status === 202) accepted.push(...answer.body.ids)
      })
      .catch(() => {}),
  )
  await waitFor(() => accepted.length > 0, 10_000, 'a first publish')
  target.child.kill('SIGTERM')
  await Promise.all(publishers)
  return accepted
}

describe('herald serve as a process', () => {
  it('on SIGTERM delivers every event it answered 202 for, closes streams with 1001, and exits 0', async () => {
    server = await spawnServer(['--store', 'memory', '--log-level', 'info'])
    const client = await StreamClient.open(`${server.url.replace('http', 'ws')}/v1/stream`)
    await client.call({ subscribe: ['*'] })
    const accepted = await publishThroughSigterm(server, 'shutdown')
    const closed = await client.closed
    expect(closed).toEqual({ code: 1001, reason: 'server shutting down' })
    expect(await server.exited).toBe(0)
    const received = new Set(client.takeEvents().map((event) => event.id))
    expect(accepted.length).toBeGreaterThan(0)
    expect(accepted.filter((id) => !received.has(id))).toEqual([])
  })

  it('closes a client that stops reading with 4008 and keeps its memory bounded while 50,000 events are published', async () => {
    server = await spawnServer(['--store', 'memory:?maxEvents=1000', '--log-level', 'info'], {
      env: {
        HERALD_WS_BUFFER_BYTES: String(256 * 1024),
        HERALD_BODY_BYTES: String(4 * 1024 * 1024),
        HERALD_EVENTS_PER_REQUEST: '1000',
      },
    })
    const payload = 'x'.repeat(2000)
    const publishBatch = async (from: number) => {
      const answer = await request(`${server!.url}/v1/events`, {
        body: Array.from({ length: 1000 }, (_, i) => ({ topic: 'flood', data: { i: from + i, payload } })),
      })
      expect(answer.status).toBe(202)
    }
    // Warm up the publish path so the baseline includes its steady-state memory.
    for (let i = 0; i < 5; i++) await publishBatch(-5000 + i * 1000)
    const rssBefore = await metric(server.url, 'process_resident_memory_bytes')
    const externalBefore = await metric(server.url, 'nodejs_external_memory_bytes')

    const client = await StreamClient.open(`${server.url.replace('http', 'ws')}/v1/stream`)
    await client.call({ subscribe: ['flood'] })
    client.socket.pause()
    let resumed = false
    for (let i = 0; i < 50; i++) {
      await publishBatch(i * 1000)
      // Once the server has given up on the client, let it read again: it then finds the close
      // frame behind what was buffered (a client that stays away is cut after a grace period).
      if (
        !resumed &&
        (await metric(server.url, 'herald_stream_slow_closed_total{transport="websocket"}')) === 1
      ) {
        client.socket.resume()
        resumed = true
      }
    }
    const rssAfter = await metric(server.url, 'process_resident_memory_bytes')
    const externalAfter = await metric(server.url, 'nodejs_external_memory_bytes')
    expect(resumed).toBe(true)
    expect(await metric(server.url, 'herald_stream_slow_closed_total{transport="websocket"}')).toBe(1)
    const closed = await client.closed
    expect(closed.code).toBe(4008)
    expect(closed.reason).toMatch(/slow consumer/)
    // Unbounded (wsBufferBytes of 1 GiB), the 50,000 frames (~2 KB each) sat in the socket's
    // buffers: external memory grew by about 120 MB, the resident set by about 180 MB. Bounded,
    // external memory stays within a few MB; the resident set grows by 15-75 MB, as the heap
    // grows with the 2 MB request bodies and is not handed back at once.
    expect(externalAfter - externalBefore).toBeLessThan(40 * 1024 * 1024)
    expect(rssAfter - rssBefore).toBeLessThan(120 * 1024 * 1024)
    expect(client.takeEvents().length).toBeLessThan(50_000)
  }, 60_000)

  it('starts with no configuration on the SQLite store in ./herald-data, on 127.0.0.1', async () => {
    const cwd = mkdtempSync(join(dir, 'defaults-'))
    server = await spawnServer([], { cwd })
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect((await request(`${server.url}/readyz`)).body).toEqual({ status: 'ready', store: 'sqlite' })
    expect(existsSync(join(cwd, 'herald-data', 'herald.db'))).toBe(true)
    server.child.kill('SIGTERM')
    expect(await server.exited).toBe(0)
  })

  it('on SIGTERM keeps every event it answered 202 for in the SQLite store, for streams that resume after a restart', async () => {
    const store = `sqlite:${join(dir, 'shutdown.db')}`
    server = await spawnServer(['--store', store, '--log-level', 'info'])
    const first = await StreamClient.open(`${server.url.replace('http', 'ws')}/v1/stream`)
    await first.call({ subscribe: ['kept'] })
    const accepted = await publishThroughSigterm(server, 'kept')
    expect((await first.closed).code).toBe(1001)
    expect(await server.exited).toBe(0)
    const live = first.takeEvents()

    server = await spawnServer(['--store', store, '--log-level', 'info'])
    const again = await StreamClient.open(`${server.url.replace('http', 'ws')}/v1/stream`)
    await again.call({ subscribe: ['kept'], since: '' })
    const stored = new Set<unknown>()
    await waitFor(
      () => {
        for (const event of again.takeEvents()) stored.add(event.id)
        return accepted.every((id) => stored.has(id))
      },
      10_000,
      'every accepted event in the replay',
    )
    // What the first stream saw live before the close is the start of the log, in order.
    expect(live.map((event) => event.seq)).toEqual([...live.map((event) => event.seq)].sort())
    expect(live.every((event) => stored.has(event.id))).toBe(true)
    again.close()
  })
})
