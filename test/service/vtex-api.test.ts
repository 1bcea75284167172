import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, type Server } from 'node:http'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { waitFor } from '../helpers.js'
import { ACME, ADMIN, TOKENS, request, startTestServer, type TestServer } from '../server/helpers.js'

/**
 * An unchanged `@vtex/api` 6.x app (test/fixtures/vtex-app: service.json + the events-example
 * handler) started the way VTEX IO starts it, `startApp()`, as a child process. Its runtime
 * listens on 5050, which cannot be configured: this is the only test file that uses that port.
 */
const APP_DIR = fileURLToPath(new URL('../fixtures/vtex-app/', import.meta.url))
const APP_PORT = 5050

let app: ChildProcess
let output = ''
let upListener: Server | undefined
let herald: TestServer

/** The runtime's master POSTs to 127.0.0.1:5000 once a worker is up and crashes it when refused. */
async function listenOn5000(): Promise<Server | undefined> {
  const server = createServer((_request, response) => response.end())
  return new Promise((resolve) => {
    server.once('error', () => resolve(undefined)) // something else answers there: good enough
    server.listen(5000, '127.0.0.1', () => resolve(server))
  })
}

beforeAll(async () => {
  upListener = await listenOn5000()
  app = spawn(process.execPath, ['start.js'], {
    cwd: APP_DIR,
    detached: true, // its own process group: the cluster master and its workers end together
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env.PATH,
      VTEX_APP_ID: 'vtex.events-example@0.0.1',
      VTEX_APP_NAME: 'events-example',
      VTEX_APP_VENDOR: 'vtex',
      VTEX_APP_VERSION: '0.0.1',
      VTEX_REGION: 'aws-us-east-1',
      VTEX_ACCOUNT: 'acme',
      VTEX_WORKSPACE: 'master',
    },
  })
  app.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  app.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  await waitFor(
    () => /is listening/.test(output) || app.exitCode !== null,
    30_000,
    `the @vtex/api app to listen on ${APP_PORT}`,
  )
  if (app.exitCode !== null) throw new Error(`the @vtex/api app exited: ${output}`)
  if (/EADDRINUSE/.test(output)) throw new Error(`port ${APP_PORT} is taken: ${output}`)
  herald = await startTestServer({ tokens: TOKENS })
}, 40_000)

afterAll(async () => {
  await herald?.close()
  if (app?.pid !== undefined && app.exitCode === null) {
    try {
      process.kill(-app.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  await new Promise<void>((resolve) => upListener?.close(() => resolve()) ?? resolve())
})

describe('an unchanged @vtex/api app', () => {
  it('receives a Herald event and its handler runs', async () => {
    const registered = await request(`${herald.url}/v1/apps/vtex.events-example`, {
      method: 'PUT',
      token: ADMIN,
      body: {
        url: `http://127.0.0.1:${APP_PORT}`,
        credential: 'app-token-xyz',
        manifest: { events: { example: { sender: 'vtex.events-example', keys: ['send-event'] } } },
        retry: { retries: 5, initialBackoffDelay: 200, timeout: 10_000 },
      },
    })
    expect(registered.status).toBe(201)
    // Published the way an @vtex/api app's Events client sends: PUT to the courier, its app id as user agent.
    const published = await request<{ ids: string[] }>(
      `${herald.url}/courier/v0/acme/master/events/send-event`,
      {
        method: 'PUT',
        token: ACME,
        headers: { 'user-agent': 'vtex.events-example@0.0.1' },
        body: { random: '42' },
      },
    )
    expect(published.status).toBe(202)
    const [id] = published.body.ids
    await waitFor(() => output.includes('RECEIVED EVENT'), 15_000, 'the handler to log the event')
    const line = output.split('\n').find((l) => l.includes('RECEIVED EVENT'))!
    const seen = JSON.parse(line.slice(line.indexOf('{'))) as Record<string, unknown>
    expect(seen).toMatchObject({
      body: { random: '42' },
      key: 'send-event',
      sender: 'vtex.events-example@0.0.1',
      account: 'acme',
      workspace: 'master',
      route: 'example',
      operationId: id,
      authToken: 'app-token-xyz',
    })
    expect(seen.requestId).toMatch(/^[0-9A-Z]{26}$/)
    // The runtime answered 204: the delivery is done, not retried.
    await waitFor(
      async () =>
        (
          await request<{ deliveries: { state: string }[] }>(`${herald.url}/v1/events/${id}`, {
            token: ADMIN,
          })
        ).body.deliveries[0]?.state === 'delivered',
      10_000,
      'delivered',
    )
    expect(output).toMatch(/acme\/master:example\s+\S*204/)
  })
})
