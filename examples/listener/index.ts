/**
 * The listener of VTEX's events-example, on Herald: a `service.json` declaring the handler
 * `example` for `send-event` from `vtex.events-example`, and a Service that logs what it gets.
 * It serves the VTEX IO event protocol on PORT and registers itself with Herald
 * (`PUT /v1/apps/listener`), which then delivers to it, signed, with the app's retry policy.
 *
 *   npx tsx examples/listener/index.ts        (env: HERALD_URL, HERALD_ADMIN_TOKEN, PORT)
 *
 * Outside this repository the import is `herald/service`.
 */
import { fileURLToPath } from 'node:url'
import { Service, generateSecret, loadManifest } from '../../src/service/index.js'

const heraldUrl = process.env.HERALD_URL ?? 'http://127.0.0.1:8080'
const adminToken = process.env.HERALD_ADMIN_TOKEN ?? 'example-admin-token-0001'
const manifest = await loadManifest(fileURLToPath(new URL('./service.json', import.meta.url)))

const service = new Service({
  clients: {
    options: {
      events: { retries: 2, timeout: 3000, initialBackoffDelay: 50, exponentialBackoffCoefficient: 2 },
    },
  },
  events: {
    example: async (ctx) => {
      console.log(
        `RECEIVED EVENT ${JSON.stringify({ key: ctx.key, sender: ctx.sender, body: ctx.body, eventId: ctx.eventId })}`,
      )
    },
  },
})

// Herald signs every delivery with this secret; the service refuses anything unsigned.
const secret = generateSecret()
const server = await service.listen(Number(process.env.PORT ?? 5051), { secret })
const response = await fetch(`${heraldUrl}/v1/apps/listener`, {
  method: 'PUT',
  headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
  body: JSON.stringify({ url: server.url, manifest, retry: service.retry, secret }),
})
if (!response.ok) {
  console.error(`registering with Herald failed: ${response.status} ${await response.text()}`)
  await server.close()
  process.exit(1)
}
console.log(`listener: serving ${server.url}, registered with ${heraldUrl} as app "listener"`)
