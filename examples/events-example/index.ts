/**
 * The sender of VTEX's events-example, on Herald: fires `send-event` with a random number every
 * INTERVAL seconds (VTEX's fires every 30 s). Its token names its app, so every event it
 * publishes carries the sender `vtex.events-example` and the listener's sender filter matches.
 *
 *   npx tsx examples/events-example/index.ts        (env: HERALD_URL, HERALD_TOKEN, INTERVAL, COUNT)
 *
 * Outside this repository the import is `herald/client`.
 */
import { HeraldClient } from '../../src/client/index.js'

const client = new HeraldClient({
  url: process.env.HERALD_URL ?? 'http://127.0.0.1:8080',
  token: process.env.HERALD_TOKEN ?? 'events-example-token-0001',
})
const seconds = Number(process.env.INTERVAL ?? 30)
const count = Number(process.env.COUNT ?? Infinity)
let fired = 0

async function fire(): Promise<void> {
  const random = String(Math.floor(Math.random() * 101))
  try {
    const [id] = await client.publish({ topic: 'send-event', data: { random } })
    console.log(`fired send-event ${id} {"random":"${random}"}`)
  } catch (error) {
    console.error(`could not fire: ${error instanceof Error ? error.message : String(error)}`)
  }
  if (++fired >= count) process.exit(0)
}

console.log(`events-example: firing send-event every ${seconds} s`)
void fire()
setInterval(() => void fire(), seconds * 1000)
