/**
 * Pages of other origins (herald/client in a browser) may call the server only when their
 * origin is configured; the token is still checked on every request that follows a preflight.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { configFromEnv, resolveConfig } from '../../src/server/config.js'
import { ACME, TOKENS, request, startTestServer, type TestServer } from './helpers.js'

const APP = 'https://app.example.com'

function preflight(url: string, origin: string): ReturnType<typeof request> {
  return request(url, {
    method: 'OPTIONS',
    headers: {
      origin,
      'access-control-request-method': 'POST',
      'access-control-request-headers': 'authorization,content-type',
    },
  })
}

describe('with corsOrigins', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ tokens: TOKENS, corsOrigins: [APP] })
  })
  afterAll(async () => {
    await t.close()
  })

  it('answers a listed origin’s preflight without a token, allowing the headers it asks for', async () => {
    const answer = await preflight(`${t.url}/v1/events`, APP)
    expect(answer.status).toBe(204)
    expect(answer.headers.get('access-control-allow-origin')).toBe(APP)
    expect(answer.headers.get('access-control-allow-methods')).toContain('POST')
    expect(answer.headers.get('access-control-allow-headers')).toBe('authorization,content-type')
  })

  it('lets a listed origin publish with its token, and still refuses it without one', async () => {
    const published = await request<{ ids: string[] }>(`${t.url}/v1/events`, {
      token: ACME,
      body: { topic: 'orders', data: 1 },
      headers: { origin: APP },
    })
    expect(published.status).toBe(202)
    expect(published.headers.get('access-control-allow-origin')).toBe(APP)
    const refused = await request(`${t.url}/v1/events`, {
      body: { topic: 'orders', data: 1 },
      headers: { origin: APP },
    })
    expect(refused.status).toBe(401)
    // The page can read why it was refused.
    expect(refused.headers.get('access-control-allow-origin')).toBe(APP)
  })

  it('gives a listed origin’s EventSource its CORS headers on the SSE stream too', async () => {
    const abort = new AbortController()
    const answer = await fetch(`${t.url}/v1/sse?topics=orders&token=${ACME}`, {
      headers: { origin: APP },
      signal: abort.signal,
    })
    abort.abort()
    expect(answer.status).toBe(200)
    expect(answer.headers.get('content-type')).toContain('text/event-stream')
    expect(answer.headers.get('access-control-allow-origin')).toBe(APP)
  })

  it('gives an origin that is not listed no CORS headers, so its browser keeps the answer from it', async () => {
    const answer = await preflight(`${t.url}/v1/events`, 'https://evil.example')
    expect(answer.headers.get('access-control-allow-origin')).toBeNull()
    const published = await request(`${t.url}/v1/events`, {
      token: ACME,
      body: { topic: 'orders', data: 1 },
      headers: { origin: 'https://evil.example' },
    })
    expect(published.headers.get('access-control-allow-origin')).toBeNull()
  })
})

describe('without corsOrigins (the default)', () => {
  let t: TestServer
  beforeAll(async () => {
    t = await startTestServer({ tokens: TOKENS })
  })
  afterAll(async () => {
    await t.close()
  })

  it('sends no CORS headers and answers no preflight', async () => {
    const answer = await preflight(`${t.url}/v1/events`, APP)
    expect(answer.status).toBe(404)
    expect(answer.headers.get('access-control-allow-origin')).toBeNull()
  })
})

describe('corsOrigins settings', () => {
  it('accepts origins and *, from the file or HERALD_CORS_ORIGINS', () => {
    expect(resolveConfig({ corsOrigins: [APP, 'http://localhost:3000', '*'] }).corsOrigins).toEqual([
      APP,
      'http://localhost:3000',
      '*',
    ])
    expect(configFromEnv({ HERALD_CORS_ORIGINS: `${APP}, http://localhost:3000` }).corsOrigins).toEqual([
      APP,
      'http://localhost:3000',
    ])
  })

  it.each(['app.example.com', 'https://app.example.com/', 'https://app.example.com/path', 'ftp://x'])(
    'refuses %s with a line naming the setting',
    (origin) => {
      expect(() => resolveConfig({ corsOrigins: [origin] })).toThrow(/corsOrigins: .* is not an origin/)
    },
  )
})
