import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { HeraldEvent } from '../src/index.js'
import { waitFor } from './helpers.js'
import { startTestServer, type TestServer } from './server/helpers.js'

/** The examples of docs/apps.md, run as their README command runs them, against a real server. */
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const config = JSON.parse(
  readFileSync(new URL('../examples/herald.config.json', import.meta.url), 'utf8'),
) as {
  tokens: NonNullable<Parameters<typeof startTestServer>[0]>['tokens']
}

let server: TestServer
const children: ChildProcess[] = []

function run(example: string, env: Record<string, string>): { output: () => string } {
  let output = ''
  // `node --import tsx` is `npx tsx` in one process, which ends when killed.
  const child = spawn(process.execPath, ['--import', 'tsx', `examples/${example}/index.ts`], {
    cwd: ROOT,
    env: { ...process.env, HERALD_URL: server.url, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  children.push(child)
  return { output: () => output }
}

beforeAll(async () => {
  server = await startTestServer({ tokens: config.tokens })
})
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
  await server.close()
})

describe('examples', () => {
  it('the listener registers itself and logs what events-example fires', async () => {
    const listener = run('listener', { PORT: '0' })
    await waitFor(
      () => /registered with/.test(listener.output()),
      20_000,
      `the listener: ${listener.output()}`,
    )
    const sender = run('events-example', { INTERVAL: '0.2', COUNT: '2' })
    await waitFor(
      () => listener.output().split('RECEIVED EVENT').length - 1 === 2,
      20_000,
      `two events: ${listener.output()} / ${sender.output()}`,
    )
    expect(listener.output()).toContain('"key":"send-event","sender":"vtex.events-example"')
  })

  it('the Fastify service raises orders/received and orders/answered', async () => {
    const stored: HeraldEvent[] = []
    server.server.bus
      .scope({ account: 'acme', workspace: 'master' })
      .tail('orders', (e) => void stored.push(e))
    const service = run('fastify-auto-events', { PORT: '0' })
    let url: string | undefined
    await waitFor(
      () =>
        (url = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(service.output())?.[1]) !== undefined,
      20_000,
      `the service to listen: ${service.output()}`,
    )
    const response = await fetch(`${url}/orders/42`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ item: 'book' }),
    })
    expect(response.status).toBe(201)
    await waitFor(() => stored.length === 2, 10_000, 'the two auto events')
    expect(stored.map((e) => [e.topic, e.sender])).toEqual([
      ['orders/received', 'acme.orders-service'],
      ['orders/answered', 'acme.orders-service'],
    ])
    expect(stored[1]!.data).toMatchObject({
      status: 201,
      payload: { id: '42', item: 'book', accepted: true },
    })
  })
})
