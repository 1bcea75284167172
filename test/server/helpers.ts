import WebSocket from 'ws'
import { Writable } from 'node:stream'
import { createServer, type HeraldServer, type ServerConfigInput } from '../../src/server/index.js'
import { createLogger } from '../../src/server/logger.js'
import type { Store } from '../../src/stores/store.js'

export const ADMIN = 'admin-token-0123456789abcdef'
export const ACME = 'acme-token-0123456789abcdef'
export const GLOBEX = 'globex-token-0123456789abcdef'
export const ORDERS_ONLY = 'orders-only-token-0123456789'

/** Tokens of two tenants, an admin, and one limited to `orders`. */
export const TOKENS: ServerConfigInput['tokens'] = [
  { token: ADMIN, account: 'acme', workspace: 'master', admin: true },
  { token: ACME, account: 'acme', workspace: 'master' },
  { token: GLOBEX, account: 'globex', workspace: 'master' },
  {
    token: ORDERS_ONLY,
    account: 'acme',
    workspace: 'master',
    publish: ['orders'],
    subscribe: ['orders'],
    sender: 'acme.orders',
  },
]

export interface TestServer {
  server: HeraldServer
  url: string
  wsUrl: string
  /** Everything the server logged, as text. */
  logs: () => string
  close(): Promise<void>
}

/** A server on an ephemeral loopback port with the memory store (or the store given). */
export async function startTestServer(
  config: ServerConfigInput = {},
  options: { store?: Store } = {},
): Promise<TestServer> {
  let logs = ''
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      logs += chunk.toString()
      callback()
    },
  })
  const server = await createServer(
    { host: '127.0.0.1', port: 0, store: 'memory', logLevel: 'info', drainTimeout: 500, ...config },
    { logger: createLogger(config.logLevel ?? 'info', sink), ...options },
  )
  const url = await server.listen()
  return { server, url, wsUrl: url.replace(/^http/, 'ws'), logs: () => logs, close: () => server.close() }
}

export interface Answer<T = unknown> {
  status: number
  headers: Headers
  body: T
}

export async function request<T = Record<string, unknown>>(
  url: string,
  options: {
    method?: string
    token?: string
    body?: unknown
    raw?: string
    headers?: Record<string, string>
  } = {},
): Promise<Answer<T>> {
  const headers: Record<string, string> = { ...options.headers }
  if (options.token) headers.authorization = `Bearer ${options.token}`
  let body: string | undefined = options.raw
  if (options.body !== undefined) {
    body = JSON.stringify(options.body)
    headers['content-type'] ??= 'application/json'
  }
  const response = await fetch(url, {
    method: options.method ?? (body !== undefined ? 'POST' : 'GET'),
    headers,
    body,
  })
  const text = await response.text()
  let parsed: unknown = text
  try {
    parsed = text === '' ? undefined : JSON.parse(text)
  } catch {
    // not JSON: keep the text
  }
  return { status: response.status, headers: response.headers, body: parsed as T }
}

export type Frame = Record<string, unknown>

/** A WebSocket test client that queues the frames it receives. */
export class StreamClient {
  readonly frames: Frame[] = []
  readonly closed: Promise<{ code: number; reason: string }>
  private waiters: (() => void)[] = []

  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data) => {
      this.frames.push(JSON.parse(data.toString()) as Frame)
      for (const wake of this.waiters.splice(0)) wake()
    })
    this.closed = new Promise((resolve) =>
      socket.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    )
    socket.on('error', () => {})
  }

  static open(url: string, options: WebSocket.ClientOptions = {}): Promise<StreamClient> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url, options)
      socket.once('open', () => resolve(new StreamClient(socket)))
      socket.once('unexpected-response', (_request, response) =>
        reject(new Error(`handshake refused: ${response.statusCode}`)),
      )
      socket.once('error', reject)
    })
  }

  send(frame: unknown): void {
    this.socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame))
  }

  /** Removes and returns the first frame matching `match`, waiting for it. */
  async next(match: (frame: Frame) => boolean = () => true, timeout = 5000): Promise<Frame> {
    const until = Date.now() + timeout
    for (;;) {
      const index = this.frames.findIndex(match)
      if (index !== -1) return this.frames.splice(index, 1)[0]!
      const left = until - Date.now()
      if (left <= 0)
        throw new Error(
          `no matching frame within ${timeout} ms; have ${JSON.stringify(this.frames).slice(0, 500)}`,
        )
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
      })
    }
  }

  /** Sends a frame with a ref and waits for the reply carrying it. */
  async call(frame: Frame, ref = `r${Math.random()}`): Promise<Frame> {
    this.send({ ...frame, ref })
    return this.next((reply) => reply.ref === ref)
  }

  /** Events received so far (from `event` and batch `events` frames), removing those frames. */
  takeEvents(): Frame[] {
    const out: Frame[] = []
    for (let i = 0; i < this.frames.length;) {
      const frame = this.frames[i]!
      if (frame.event) out.push(frame.event as Frame)
      else if (Array.isArray(frame.events)) out.push(...(frame.events as Frame[]))
      else {
        i++
        continue
      }
      this.frames.splice(i, 1)
    }
    return out
  }

  /** Waits until `count` events arrived in total and returns them. */
  async events(count: number, timeout = 5000): Promise<Frame[]> {
    const got: Frame[] = []
    const until = Date.now() + timeout
    while (got.length < count) {
      got.push(...this.takeEvents())
      if (got.length >= count) break
      if (Date.now() > until) throw new Error(`got ${got.length} of ${count} events`)
      await this.next(
        (frame) => frame.event !== undefined || Array.isArray(frame.events),
        until - Date.now(),
      ).then((frame) => this.frames.unshift(frame))
    }
    return got
  }

  close(): void {
    this.socket.close()
  }
}

export interface SseMessage {
  id: string | undefined
  data: Frame
}

/** A minimal SSE reader over fetch: messages and comment lines as they arrive. */
export class SseClient {
  readonly messages: SseMessage[] = []
  readonly comments: string[] = []
  readonly ended: Promise<void>
  private readonly controller = new AbortController()

  private constructor(readonly response: Response) {
    this.ended = this.read()
  }

  static async open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const client = new AbortController()
    const response = await fetch(url, { headers, signal: client.signal })
    const sse = new SseClient(response)
    sse.controller.signal.addEventListener('abort', () => client.abort())
    return sse
  }

  private async read(): Promise<void> {
    if (!this.response.body) return
    const decoder = new TextDecoder()
    let buffer = ''
    try {
      const reader = this.response.body.getReader()
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        buffer += decoder.decode(value, { stream: true })
        let end: number
        while ((end = buffer.indexOf('\n\n')) !== -1) {
          const block = buffer.slice(0, end)
          buffer = buffer.slice(end + 2)
          let id: string | undefined
          let data: string | undefined
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) this.comments.push(line.slice(1).trim())
            else if (line.startsWith('id: ')) id = line.slice(4)
            else if (line.startsWith('data: ')) data = line.slice(6)
          }
          if (data !== undefined) this.messages.push({ id, data: JSON.parse(data) as Frame })
        }
      }
    } catch {
      // aborted or cut
    }
  }

  close(): void {
    this.controller.abort()
  }
}
