import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { chromium, type Browser, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ACME, TOKENS, request, startTestServer, type TestServer } from '../server/helpers.js'
import { startProxy, type Proxy } from './proxy.js'

/**
 * herald/client in headless Chromium (Debian's `chromium` package; `.ci/run` installs it). The
 * client is bundled for the browser as it is; the page comes from the origin it talks to, a TCP
 * proxy in front of the Herald server that serves the page itself and that the test cuts to drop
 * the page's connection.
 */
const CHROMIUM = '/usr/bin/chromium'
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
]

const HAVE_CHROMIUM = existsSync(CHROMIUM)
if (!HAVE_CHROMIUM) {
  const message = `${CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)`
  if (process.env.CI === 'true') throw new Error(message)
  console.warn(`\n*** SKIPPING the browser test of herald/client: ${message} ***\n`)
}

let server: TestServer
let proxy: Proxy
let browser: Browser
let page: Page

beforeAll(async () => {
  if (!HAVE_CHROMIUM) return
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('../../src/client/index.ts', import.meta.url))],
    bundle: true,
    format: 'esm',
    // A Node built-in anywhere in the client's imports fails this build.
    platform: 'browser',
    target: 'es2022',
    write: false,
  })
  const script = bundle.outputFiles[0]!.text
  server = await startTestServer({ tokens: TOKENS })
  proxy = await startProxy(Number(new URL(server.url).port), {
    '/app/client.js': { contentType: 'text/javascript', body: script },
    '/app/index.html': {
      contentType: 'text/html',
      body: `<!doctype html><script type="module">
        import { HeraldClient } from '/app/client.js'
        window.HeraldClient = HeraldClient
        window.received = []
        window.states = []
      </script>`,
    },
  })
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true })
  page = await browser.newPage()
  await page.goto(`${proxy.url}/app/index.html`)
  await page.waitForFunction(() => 'HeraldClient' in window)
}, 60_000)

afterAll(async () => {
  await browser?.close()
  await proxy?.close()
  await server?.close()
})

describe.skipIf(!HAVE_CHROMIUM)('herald/client in headless Chromium', () => {
  it('publishes, subscribes, and resumes after its connection drops without missing anything', async () => {
    await page.evaluate(
      async ({ origin, token }) => {
        const { HeraldClient } = window as unknown as {
          HeraldClient: typeof import('../../src/client/index.js').HeraldClient
        }
        const state = window as unknown as { received: unknown[]; states: string[] }
        const publisher = new HeraldClient({ url: origin, token })
        // Browsers have WebSocket built in: no option needed.
        const subscriber = new HeraldClient({
          url: origin,
          token,
          reconnect: { initialDelay: 50, maxDelay: 200 },
        })
        const subscription = subscriber.subscribe('orders', (event) => void state.received.push(event.data), {
          onState: (s) => state.states.push(s),
        })
        await subscription.ready
        await publisher.publish({ topic: 'orders/1', data: 'from the page' })
      },
      { origin: proxy.url, token: ACME },
    )
    const publishFromNode = (data: string) =>
      request(`${server.url}/v1/events`, { token: ACME, body: { topic: 'orders/2', data } })
    expect((await publishFromNode('from node')).status).toBe(202)
    await page.waitForFunction(() => (window as unknown as { received: unknown[] }).received.length === 2)

    proxy.down()
    proxy.cut()
    await page.waitForFunction(() =>
      (window as unknown as { states: string[] }).states.includes('reconnecting'),
    )
    await publishFromNode('while away 1')
    await publishFromNode('while away 2')
    proxy.up()
    await page.waitForFunction(
      () => (window as unknown as { received: unknown[] }).received.length === 4,
      null,
      {
        timeout: 10_000,
      },
    )
    expect(await page.evaluate(() => (window as unknown as { received: unknown[] }).received)).toEqual([
      'from the page',
      'from node',
      'while away 1',
      'while away 2',
    ])
  })
})
