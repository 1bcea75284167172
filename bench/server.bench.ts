/**
 * `npm run bench server`: the server against bare Fastify and raw `ws`, side by side.
 * 1. `POST /v1/events` (one event, with a token) vs a bare Fastify route that parses the same JSON
 *    and answers 204 (goal ≥ 0.80×): each server in a process of its own (lib/http-target.ts),
 *    autocannon in another.
 * 2. Batch publish: arrays of 100 events per request, events/s.
 * 3. WebSocket fan-out to 100 clients (in another process) vs raw `ws` broadcasting the same
 *    frames, deliveries/s, same flow control for both (goal ≥ 0.70×).
 * 4. Publish-to-client latency at 10,000 events/s over HTTP, p50/p99 (goal p99 < 5 ms).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import type { Socket } from 'node:net'
import { WebSocketServer, type WebSocket } from 'ws'
import { createServer, type HeraldServer } from '../src/server/index.js'
import { BENCH_TOKEN } from './lib/http-target.js'
import { header, table } from './lib/report.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 3)
const DURATION = Number(process.env.BENCH_DURATION ?? 5)
const FANOUT_CLIENTS = 100
const FANOUT_EVENTS = Number(process.env.BENCH_FANOUT_EVENTS ?? 10_000)
const LATENCY_RATE = 10_000
/** Which parts to run (default all): BENCH_SECTIONS=http,fanout,latency */
const SECTIONS = new Set((process.env.BENCH_SECTIONS ?? 'http,fanout,latency').split(','))
const TOKEN = BENCH_TOKEN
const EVENT = JSON.stringify({
  topic: 'orders.created',
  data: { orderId: 123, customer: 'c-0001234', amount: 129.95 },
})
const BATCH = JSON.stringify(
  Array.from({ length: 100 }, (_, i) => ({
    topic: 'orders.created',
    data: { orderId: i, customer: 'c-0001234', amount: 129.95 },
  })),
)
const require = createRequire(new URL('./package.json', import.meta.url))
const autocannonBin = require.resolve('autocannon/autocannon.js')
const clientsScript = fileURLToPath(new URL('./lib/ws-clients.mjs', import.meta.url))

function startHerald(store = process.env.BENCH_STORE ?? 'memory'): Promise<HeraldServer> {
  return createServer({
    host: '127.0.0.1',
    port: 0,
    store,
    logLevel: 'silent',
    limits: { requestsPerSecond: 0, wsBufferBytes: 64 * 1024 * 1024 },
    tokens: [{ token: TOKEN, account: 'bench', workspace: 'master' }],
  })
}

/** Runs autocannon in a child process; resolves with mean requests/s and the requests answered. */
async function autocannon(
  url: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ rate: number; total: number }> {
  const args = [autocannonBin, '-c', '50', '-d', String(DURATION), '-m', 'POST', '-b', body, '--json']
  for (const [name, value] of Object.entries({ 'content-type': 'application/json', ...headers }))
    args.push('-H', `${name}=${value}`)
  const child = spawn(process.execPath, [...args, url], { stdio: ['ignore', 'pipe', 'ignore'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
  await once(child, 'exit')
  const result = JSON.parse(out) as {
    requests: { average: number; total: number }
    non2xx: number
    errors: number
  }
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`autocannon saw ${result.non2xx} non-2xx answers and ${result.errors} errors`)
  return { rate: result.requests.average, total: result.requests.total }
}

/**
 * CPU seconds (user, system) a process has used so far, from /proc (Linux; undefined elsewhere).
 * /proc counts in USER_HZ, which is 100 on Linux.
 */
function cpuSeconds(pid: number | undefined): { user: number; system: number } | undefined {
  try {
    // Fields after "pid (comm) " start at the 3rd; utime and stime are the 14th and 15th.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 }
  } catch {
    return undefined
  }
}

/**
 * The server process's CPU per request (µs, user + system, kernel included) in each HTTP run, by
 * contender: steadier than requests/s when the load generator shares the cores, and it splits
 * what the server does from what the kernel does for it.
 */
const cpuPerRequest = new Map<string, { user: number; system: number }[]>()

/** `user + system µs/request` of a contender's runs after the warm-up round (medians of each). */
function cpuNote(label: string): string {
  const runs = (cpuPerRequest.get(label) ?? []).slice(1)
  if (runs.length === 0) return ''
  const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!
  const user = median(runs.map((run) => run.user))
  const system = median(runs.map((run) => run.system))
  return `server CPU ${(user + system).toFixed(1)} µs/request (user ${user.toFixed(1)} + system ${system.toFixed(1)})`
}

const targetScript = fileURLToPath(new URL('./lib/http-target.ts', import.meta.url))

/**
 * Starts one contender in its own process, loads it with autocannon from another, and stops it:
 * the server, the load and this orchestrating process never share an event loop.
 */
async function rateOf(
  label: string,
  kind: string,
  body: string,
  headers: Record<string, string> = {},
): Promise<number> {
  const target = await startTarget(kind)
  try {
    const before = cpuSeconds(target.pid)
    const { rate, total } = await autocannon(`${target.url}/v1/events`, body, headers)
    const after = cpuSeconds(target.pid)
    if (before && after && total > 0) {
      const runs = cpuPerRequest.get(label) ?? []
      runs.push({
        user: ((after.user - before.user) * 1e6) / total,
        system: ((after.system - before.system) * 1e6) / total,
      })
      cpuPerRequest.set(label, runs)
    }
    return rate
  } finally {
    await target.stop()
  }
}

/** Starts one contender (see lib/http-target.ts) in a process of its own; resolves once it serves. */
async function startTarget(
  kind: string,
): Promise<{ url: string; pid: number | undefined; stop: () => Promise<void> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', targetScript, kind], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const url = await new Promise<string>((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
      const end = out.indexOf('\n')
      if (end !== -1) resolve(out.slice(0, end))
    })
    child.once('exit', (code) => reject(new Error(`${kind} exited (${code}) before serving`)))
  })
  return {
    url,
    pid: child.pid,
    stop: async () => {
      child.removeAllListeners('exit')
      const exited = once(child, 'exit')
      child.stdin!.end()
      await exited
    },
  }
}

const bareFastifyRate = (withIds = false): Promise<number> =>
  rateOf(withIds ? 'bare-ids' : 'bare', withIds ? 'bare-ids' : 'bare', EVENT)
const heraldRate = (body: string, store: 'memory' | 'sqlite'): Promise<number> =>
  rateOf(`herald:${store}${body === EVENT ? '' : ':batch'}`, `herald:${store}`, body, {
    authorization: `Bearer ${TOKEN}`,
  })

/** Starts the client process; resolves once its clients are connected. */
async function clients(
  spec: Record<string, unknown>,
): Promise<{ child: ChildProcess; line: () => Promise<string> }> {
  const child = spawn(process.execPath, [clientsScript, JSON.stringify(spec)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines: string[] = []
  const waiting: ((line: string) => void)[] = []
  let buffer = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString()
    let end: number
    while ((end = buffer.indexOf('\n')) !== -1) {
      const line = buffer.slice(0, end)
      buffer = buffer.slice(end + 1)
      const waiter = waiting.shift()
      if (waiter) waiter(line)
      else lines.push(line)
    }
  })
  const line = () =>
    lines.length > 0
      ? Promise.resolve(lines.shift()!)
      : new Promise<string>((resolve) => waiting.push(resolve))
  const ready = await line()
  if (ready !== 'ready') throw new Error(`client process said ${ready}`)
  return { child, line }
}

/**
 * Both contenders yield to the event loop every 256 events. Neither needs more flow control here:
 * the whole run is about 2.5 MB per client, under the buffer limits of both.
 */
function pace(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}

function tcp(socket: WebSocket): Socket {
  return (socket as unknown as { _socket: Socket })._socket
}

function sampleEvent(i: number): Record<string, unknown> {
  return {
    id: `01JBENCH${String(i).padStart(18, '0')}`,
    topic: 'fanout/event',
    data: { orderId: i, customer: 'c-0001234', amount: 129.95 },
    metadata: {},
    account: 'bench',
    workspace: 'master',
    time: new Date().toISOString(),
    seq: String(i).padStart(16, '0'),
  }
}

async function heraldFanout(): Promise<number> {
  const server = await startHerald()
  const url = await server.listen()
  const { child, line } = await clients({
    mode: 'count',
    url: `${url.replace('http', 'ws')}/v1/stream`,
    token: TOKEN,
    clients: FANOUT_CLIENTS,
    expected: FANOUT_EVENTS,
    subscribe: { subscribe: ['fanout'] },
  })
  const bus = server.bus.scope({ account: 'bench', workspace: 'master' })
  const start = performance.now()
  for (let i = 0; i < FANOUT_EVENTS; i += 256) {
    const batch = []
    for (let j = i; j < Math.min(FANOUT_EVENTS, i + 256); j++)
      batch.push({ topic: 'fanout/event', data: { orderId: j, customer: 'c-0001234', amount: 129.95 } })
    await bus.emit(batch)
    await pace()
  }
  await line()
  const rate = (FANOUT_CLIENTS * FANOUT_EVENTS) / ((performance.now() - start) / 1000)
  child.stdin!.end()
  await server.close()
  return rate
}

/** Raw ws; `corked` also corks each socket per run of frames, as Herald does. */
async function rawWsFanout(corked = false): Promise<number> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  await once(wss, 'listening')
  const { port } = wss.address() as { port: number }
  const { child, line } = await clients({
    mode: 'count',
    url: `ws://127.0.0.1:${port}`,
    clients: FANOUT_CLIENTS,
    expected: FANOUT_EVENTS,
  })
  const start = performance.now()
  for (let i = 0; i < FANOUT_EVENTS; i += 256) {
    if (corked) for (const socket of wss.clients) tcp(socket).cork()
    for (let j = i; j < Math.min(FANOUT_EVENTS, i + 256); j++) {
      const frame = Buffer.from(JSON.stringify({ event: sampleEvent(j) }))
      for (const socket of wss.clients) socket.send(frame, { binary: false })
    }
    if (corked) for (const socket of wss.clients) tcp(socket).uncork()
    await pace()
  }
  await line()
  const rate = (FANOUT_CLIENTS * FANOUT_EVENTS) / ((performance.now() - start) / 1000)
  child.stdin!.end()
  for (const socket of wss.clients) socket.terminate()
  wss.close()
  return rate
}

/** The server in a process of its own (as in the HTTP section), the client process publishing and reading. */
async function latency(store: 'memory' | 'sqlite'): Promise<{ p50: number; p99: number; rate: number }> {
  const target = await startTarget(`herald:${store}`)
  try {
    const { child, line } = await clients({
      mode: 'latency',
      url: `${target.url.replace('http', 'ws')}/v1/stream`,
      publishUrl: `${target.url}/v1/events`,
      token: TOKEN,
      subscribe: { subscribe: ['latency'] },
      rate: LATENCY_RATE,
      eventsPerRequest: 10,
      warmupMs: 1000,
      durationMs: DURATION * 1000,
    })
    const result = JSON.parse(await line()) as { p50: number; p99: number; rate: number }
    await once(child, 'exit')
    return result
  } finally {
    await target.stop()
  }
}

/**
 * Medians of `runs` rounds after one warm-up round, the contenders taking turns within each round,
 * so that load from elsewhere on a shared machine falls on all of them alike.
 */
async function interleaved<T extends (() => Promise<number>)[]>(
  runs: number,
  contenders: [...T],
): Promise<{ [K in keyof T]: number }> {
  const results = contenders.map(() => [] as number[])
  for (let round = 0; round <= runs; round++) {
    for (let i = 0; i < contenders.length; i++) {
      globalThis.gc?.()
      const value = await contenders[i]!()
      if (round > 0) results[i]!.push(value)
    }
  }
  return results.map((values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)]!) as {
    [K in keyof T]: number
  }
}

header(
  `bench server: autocannon -c 50 -d ${DURATION}, median of ${RUNS} interleaved rounds after a warm-up round`,
)
if (SECTIONS.has('http')) {
  const [bare, bareIds, durable, single] = await interleaved(RUNS, [
    () => bareFastifyRate(),
    () => bareFastifyRate(true),
    () => heraldRate(EVENT, 'sqlite'),
    () => heraldRate(EVENT, 'memory'),
  ])
  table(
    'POST /v1/events, one event per request',
    [
      { name: 'bare fastify (parse JSON, 204)', value: bare, unit: 'req/s', note: cpuNote('bare') },
      {
        name: 'bare fastify (parse JSON, 202 {"ids":[…]})',
        value: bareIds,
        unit: 'req/s',
        note: `what answering with the ids costs alone; ${cpuNote('bare-ids')}`,
      },
      {
        name: 'herald (sqlite store, token)',
        value: durable,
        unit: 'req/s',
        note: `the server as it ships (default store); goal ≥ 0.80×; ${cpuNote('herald:sqlite')}`,
      },
      {
        name: 'herald (memory store, token)',
        value: single,
        unit: 'req/s',
        note: `answers each request alone, in its own turn; ${cpuNote('herald:memory')}`,
      },
    ],
    'bare fastify (parse JSON, 204)',
  )
  const [batch, durableBatch] = await interleaved(RUNS, [
    () => heraldRate(BATCH, 'memory'),
    () => heraldRate(BATCH, 'sqlite'),
  ])
  table(
    'POST /v1/events, arrays of 100 events',
    [
      {
        name: 'herald (memory store, token)',
        value: batch * 100,
        unit: 'events/s',
        note: `${batch.toFixed(0)} req/s; ${cpuNote('herald:memory:batch')}`,
      },
      {
        name: 'herald (sqlite store, token)',
        value: durableBatch * 100,
        unit: 'events/s',
        note: `${durableBatch.toFixed(0)} req/s; ${cpuNote('herald:sqlite:batch')}`,
      },
    ],
    'herald (memory store, token)',
  )
}

if (SECTIONS.has('fanout')) {
  const [raw, rawCorked, fanout] = await interleaved(RUNS, [
    () => rawWsFanout(),
    () => rawWsFanout(true),
    heraldFanout,
  ])
  table(
    `WebSocket fan-out: ${FANOUT_EVENTS.toLocaleString('en')} events to ${FANOUT_CLIENTS} clients`,
    [
      { name: 'raw ws broadcast', value: raw, unit: 'deliveries/s' },
      {
        name: 'raw ws broadcast, corked per run',
        value: rawCorked,
        unit: 'deliveries/s',
        note: 'the same trick Herald uses',
      },
      { name: 'herald /v1/stream', value: fanout, unit: 'deliveries/s', note: 'goal ≥ 0.70×' },
    ],
    'raw ws broadcast',
  )
}

if (SECTIONS.has('latency')) {
  // The stores take turns, a warm-up round first; for each, the run with the median p99.
  const stores = ['sqlite', 'memory'] as const
  const runs = new Map<string, { p50: number; p99: number; rate: number }[]>(
    stores.map((store) => [store, []]),
  )
  for (let round = 0; round <= RUNS; round++) {
    for (const store of stores) {
      const result = await latency(store)
      if (round > 0) runs.get(store)!.push(result)
    }
  }
  const rows = stores.flatMap((store) => {
    const sorted = runs.get(store)!.sort((a, b) => a.p99 - b.p99)
    const measured = sorted[Math.floor(sorted.length / 2)]!
    const name = store === 'sqlite' ? 'sqlite store (as shipped)' : 'memory store'
    return [
      { name: `${name}, p50`, value: measured.p50, unit: 'ms' },
      {
        name: `${name}, p99`,
        value: measured.p99,
        unit: 'ms',
        note: `${store === 'sqlite' ? 'goal < 5 ms; ' : ''}p99 of the ${RUNS} runs: ${sorted.map((run) => run.p99.toFixed(2)).join(', ')}; ${measured.rate.toFixed(0)} events/s`,
      },
    ]
  })
  table(
    `publish-to-client latency at ${LATENCY_RATE.toLocaleString('en')} events/s (HTTP arrays of 10 → one WebSocket client; each server in a process of its own), the run with the median p99 of ${RUNS} per store`,
    rows,
    'sqlite store (as shipped), p50',
    { lowerIsBetter: true },
  )
}
