/* global performance, setTimeout */
// The client side of `npm run bench server`, in its own process so that clients and server do
// not share an event loop. Modes (argv[2] is a JSON spec):
// - count:   open `clients` WebSockets (sending `subscribe`, if given, and waiting for its
//            reply), print "ready", then print "done" once every client has `expected` frames.
// - latency: one WebSocket subscribed to `subscribe`; print "ready"; then publish `rate` events/s
//            over HTTP for `warmupMs` (not counted: a fresh server compiles its hot paths then)
//            and `durationMs`, each stamped with its send time, and print the publish-to-receipt
//            latencies' p50/p99 of the events sent after the warm-up as JSON.
import { Agent, request } from 'node:http'
import WebSocket from 'ws'

const spec = JSON.parse(process.argv[2])
const headers = spec.token ? { authorization: `Bearer ${spec.token}` } : {}
const now = () => performance.timeOrigin + performance.now()

function open(onFrame) {
  return new Promise((resolve, reject) => {
    const socket = new WebSocket(spec.url, { headers, perMessageDeflate: false })
    socket.once('error', reject)
    socket.once('open', () => {
      if (!spec.subscribe) {
        socket.on('message', onFrame)
        return resolve(socket)
      }
      socket.once('message', () => {
        socket.on('message', onFrame)
        resolve(socket)
      })
      socket.send(JSON.stringify(spec.subscribe))
    })
  })
}

if (spec.mode === 'count') {
  const total = spec.clients * spec.expected
  let received = 0
  const onFrame = () => {
    if (++received === total) console.log('done')
  }
  const sockets = []
  for (let i = 0; i < spec.clients; i++) sockets.push(await open(onFrame))
  console.log('ready')
  process.stdin.on('data', () => {})
  process.stdin.on('end', () => {
    for (const socket of sockets) socket.terminate()
    process.exit(0)
  })
} else {
  const latencies = []
  let received = 0
  let measureFrom = Infinity
  let expected = Infinity
  let finish
  const finished = new Promise((resolve) => (finish = resolve))
  const socket = await open((data) => {
    const frame = JSON.parse(data.toString())
    const t = frame.event.data.t
    if (t >= measureFrom) latencies.push(now() - t)
    if (++received >= expected) finish()
  })
  console.log('ready')
  const agent = new Agent({ keepAlive: true, maxSockets: 16 })
  const post = (body) =>
    new Promise((resolve, reject) => {
      const call = request(
        spec.publishUrl,
        { method: 'POST', agent, headers: { ...headers, 'content-type': 'application/json' } },
        (response) => {
          response.resume()
          response.on('end', resolve)
        },
      )
      call.on('error', reject)
      call.end(body)
    })
  const perRequest = spec.eventsPerRequest
  const interval = (1000 * perRequest) / spec.rate
  const warmupMs = spec.warmupMs ?? 0
  const start = now()
  measureFrom = start + warmupMs
  let sent = 0
  let measuredRequests = 0
  const requests = []
  while (now() - start < warmupMs + spec.durationMs) {
    const due = Math.floor((now() - start) / interval) + 1
    while (sent < due) {
      const t = now()
      const body = JSON.stringify(
        Array.from({ length: perRequest }, (_, i) => ({ topic: 'latency', data: { t, i } })),
      )
      requests.push(post(body))
      sent++
      if (t >= measureFrom) measuredRequests++
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, start + sent * interval - now())))
  }
  await Promise.all(requests)
  expected = sent * perRequest
  if (received < expected) await finished
  latencies.sort((a, b) => a - b)
  const at = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))]
  console.log(
    JSON.stringify({
      count: latencies.length,
      p50: at(50),
      p99: at(99),
      rate: (measuredRequests * perRequest) / ((now() - measureFrom) / 1000),
    }),
  )
  socket.terminate()
  process.exit(0)
}
