import { Redis } from 'ioredis'
import { redisStore, silentLogger } from './src/index.js'
import { prepared } from './test/helpers.js'
const admin = new Redis()
const prefix = `mb-${Date.now()}`
const store = redisStore({ prefix, logger: silentLogger })
const tenant = { account: 'a', workspace: 'w' }
await store.openSubscription({ tenant, id: 's', patterns: ['*'] }, Date.now())
const stat = async (label: string, fn: () => Promise<unknown>, reps = 200) => {
  await admin.config('RESETSTAT')
  const c0 = process.cpuUsage()
  for (let i = 0; i < reps; i++) await fn()
  const c = process.cpuUsage(c0)
  const s = await admin.info('commandstats')
  const ev = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(s)
  const inner = [...s.matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g)].filter(m => !['evalsha', 'config|resetstat', 'info'].includes(m[1]!)).map(m => `${m[1]}=${(Number(m[3]) / reps).toFixed(0)}`).join(' ')
  console.log(label.padEnd(8), `node ${((c.user + c.system) / reps).toFixed(0)}µs/call`, ev ? `redis evalsha ${(Number(ev[2]) / reps).toFixed(0)}µs per call` : '', 'inner:', inner)
}
const mk = () => prepared(tenant, Array.from({ length: 100 }, (_, j) => ({ topic: 'bench/event', data: { orderId: `order-${j}`, customer: 'c-0001234', amount: 129.95, currency: 'EUR', items: [{ sku: 'sku-0001', qty: 2 }], note: 'n'.repeat(64) } })))
await stat('append', () => store.append(tenant, mk(), { now: Date.now(), dedupeWindowMs: 1000, groupTtlMs: 1000 }))
const all = () => true
let claimed: string[] = []
await stat('claim', async () => { const r = await store.claim(tenant, 's', { consumer: 'c', limit: 100, leaseMs: 30000, now: Date.now(), match: all }); claimed.push(...r.deliveries.map(d => d.event.seq!)) })
console.log('claimed', claimed.length)
await stat('settle', async () => { const batch = claimed.splice(0, 100); await store.settle(tenant, 's', 'c', batch.map(seq => ({ seq, outcome: 'delivered' as const })), Date.now()) })
await store.close()
let cursor = '0'
do { const [next, keys] = await admin.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000); cursor = next; if (keys.length) await admin.unlink(...keys) } while (cursor !== '0')
admin.disconnect()
