import { createBus, redisStore, silentLogger } from './src/index.js'
import { Redis } from 'ioredis'
const N = Number(process.env.N ?? 20000), BATCH = 100
const prefix = `dbg-${Date.now()}`
const bus = createBus({ store: redisStore({ prefix, logger: silentLogger }), logger: silentLogger })
const seen = new Set<number>()
bus.subscribe('bench/event', async (e) => { seen.add((e.data as { i: number }).i) }, { subscriberId: 'bench', retry: { concurrency: 100 } })
while ((await bus.subscriptions()).length === 0) await new Promise((r) => setTimeout(r, 5))
for (let i = 0; i < N; i += BATCH) await bus.emit(Array.from({ length: BATCH }, (_, j) => ({ topic: 'bench/event', data: { i: i + j } })))
const until = Date.now() + 15000
while (seen.size < N && Date.now() < until) await new Promise((r) => setTimeout(r, 100))
const missing = []; for (let i = 0; i < N; i++) if (!seen.has(i)) missing.push(i)
console.log('seen', seen.size, 'missing', missing.length, missing.slice(0, 20))
console.log(await bus.subscriptions())
await bus.close()
const admin = new Redis()
let cursor = '0'
do { const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000); cursor = next; if (keys.length) await admin.unlink(...keys) } while (cursor !== '0')
admin.disconnect()
