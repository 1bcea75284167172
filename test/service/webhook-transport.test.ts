/**
 * How webhook requests travel: Herald's own `node:http` client by default, or a caller's
 * `fetch`. Both answer the same way: the status, and the start of the body of a failure.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { parseRetryAfter } from '../../src/service/webhook.js'
import { ERROR_BODY_CHARS, fetchPost, nodePost, type Post } from '../../src/service/webhook-transport.js'

interface Endpoint {
  url: string
  connections: number
  requests: { url: string; body: string; headers: IncomingMessage['headers'] }[]
  close(): Promise<void>
}

let endpoint: Endpoint | undefined
afterEach(async () => {
  await endpoint?.close()
  endpoint = undefined
})

async function serve(
  answer: (request: IncomingMessage, response: ServerResponse) => void,
): Promise<Endpoint> {
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      started.requests.push({
        url: request.url ?? '',
        body: Buffer.concat(chunks).toString(),
        headers: request.headers,
      })
      answer(request, response)
    })
  })
  server.on('connection', () => started.connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const started: Endpoint = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: 0,
    requests: [],
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  }
  endpoint = started
  return started
}

const never = new AbortController().signal
const transports: [string, Post][] = [
  ['node:http', nodePost],
  ['a caller’s fetch', fetchPost((input, init) => fetch(input, init))],
]

describe.each(transports)('webhook requests over %s', (_name, post) => {
  it('sends the body and headers, and answers 2xx with the status alone', async () => {
    const at = await serve((_request, response) => {
      response.writeHead(202).end('accepted, thanks')
    })
    const body = JSON.stringify({ ünïcode: '✓' })
    const result = await post(
      `${at.url}/hook`,
      { 'content-type': 'application/json', 'x-test': 'yes' },
      body,
      never,
    )
    expect(result).toEqual({ status: 202, snippet: '' })
    expect(at.requests).toEqual([
      expect.objectContaining({ url: '/hook', body, headers: expect.objectContaining({ 'x-test': 'yes' }) }),
    ])
    expect(at.requests[0]!.headers['content-length']).toBe(String(Buffer.byteLength(body)))
  })

  it('keeps what a failing receiver said, cut to its first characters', async () => {
    const at = await serve((_request, response) => {
      response.writeHead(500, { 'content-type': 'text/plain' }).end(`out   of\nluck ${'x'.repeat(5000)}`)
    })
    const result = await post(at.url, {}, '{}', never)
    expect(result.status).toBe(500)
    expect(result.snippet.startsWith('out of luck xxx')).toBe(true)
    expect(result.snippet).toHaveLength(ERROR_BODY_CHARS + 1)
    expect(result.snippet.endsWith('…')).toBe(true)
  })

  it("passes on a failure's Retry-After as it was sent", async () => {
    const at = await serve((_request, response) => {
      response.writeHead(429, { 'retry-after': '120' }).end('slow down')
    })
    expect(await post(at.url, {}, '{}', never)).toEqual({
      status: 429,
      snippet: 'slow down',
      retryAfter: '120',
    })
  })

  it('does not follow a redirect: the 3xx is the answer', async () => {
    const at = await serve((request, response) => {
      if (request.url === '/moved') response.writeHead(302, { location: '/elsewhere' }).end()
      else response.writeHead(204).end()
    })
    expect((await post(`${at.url}/moved`, {}, '{}', never)).status).toBe(302)
    expect(at.requests.map((request) => request.url)).toEqual(['/moved'])
  })

  it('rejects when the signal fires before the receiver answers', async () => {
    const at = await serve(() => {
      // never answers
    })
    const timeout = new AbortController()
    setTimeout(() => timeout.abort(new Error('attempt timed out')), 50)
    await expect(post(at.url, {}, '{}', timeout.signal)).rejects.toThrow()
  })
})

describe('the node:http transport', () => {
  it('reuses one kept-alive connection for deliveries one after another', async () => {
    const at = await serve((_request, response) => {
      response.writeHead(204).end()
    })
    for (let i = 0; i < 20; i++) expect((await post(at.url, {}, `{"i":${i}}`)).status).toBe(204)
    expect(at.requests).toHaveLength(20)
    expect(at.connections).toBe(1)
  })

  it('rejects with the network error when nothing listens', async () => {
    const at = await serve(() => {})
    const url = at.url
    await at.close()
    endpoint = undefined
    await expect(post(url, {}, '{}')).rejects.toThrow(/ECONNREFUSED/)
  })

  const post = (url: string, headers: Record<string, string>, body: string) =>
    nodePost(url, headers, body, never)
})

describe('Retry-After', () => {
  const now = Date.parse('2026-11-23T06:00:00Z')
  it.each([
    ['120', 120_000],
    [' 3 ', 3000],
    ['0', 0],
    ['Mon, 23 Nov 2026 06:00:30 GMT', 30_000],
    ['Mon, 23 Nov 2026 05:00:00 GMT', 0], // a date in the past: at once
  ])('%j waits %i ms', (value, ms) => {
    expect(parseRetryAfter(value, now)).toBe(ms)
  })

  it.each(['soon', '-5', '1.5', '', '2026-11-23T06:00:30Z', 'Mon, 99 Nov 2026 06:00:30 GMT'])(
    '%j is not a Retry-After: ignored',
    (value) => {
      expect(parseRetryAfter(value, now)).toBeUndefined()
    },
  )
})
