import { HeraldError } from '../errors.js'
import type { EventInput, HeraldEvent } from '../event.js'
import { errorFrom } from './errors.js'
import { resolveWebSocket, type WebSocketConstructor } from './socket.js'
import {
  reconnectPolicy,
  StreamSubscription,
  type ClientSubscribeOptions,
  type ClientSubscription,
  type ReconnectPolicy,
} from './subscription.js'

export interface HeraldClientOptions {
  /** The server's base URL: `http://127.0.0.1:8080`. */
  url: string
  /** A token from the server's configuration; its tenant is the client's. */
  token?: string
  /** The WebSocket implementation (default `globalThis.WebSocket`; in Node 20, pass `ws`). */
  WebSocket?: WebSocketConstructor
  /** Default `globalThis.fetch`. */
  fetch?: typeof fetch
  reconnect?: Partial<ReconnectPolicy>
}

/**
 * Talks to a Herald server from Node or a browser: `publish` over HTTP, `subscribe` over the
 * native WebSocket stream with reconnection and resume. Uses only web-platform APIs.
 */
/** How long the HTTP question about a refused handshake may take before reconnecting goes on. */
const PROBE_TIMEOUT_MS = 5000

export class HeraldClient {
  private readonly base: URL
  private readonly token: string | undefined
  private readonly WebSocket: WebSocketConstructor | undefined
  private readonly fetch: typeof fetch
  private readonly reconnect: ReconnectPolicy
  private readonly subscriptions = new Set<ClientSubscription>()

  constructor(options: HeraldClientOptions) {
    if (typeof options?.url !== 'string') throw new HeraldError('invalid_option', 'HeraldClient needs a url')
    try {
      this.base = new URL(options.url)
    } catch {
      throw new HeraldError('invalid_option', `url ${JSON.stringify(options.url)} is not a URL`)
    }
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') {
      throw new HeraldError('invalid_option', 'url must be http: or https:')
    }
    this.token = options.token
    this.WebSocket = options.WebSocket
    this.fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
    this.reconnect = reconnectPolicy(options.reconnect)
  }

  private endpoint(path: string): URL {
    return new URL(path, this.base.href.endsWith('/') ? this.base.href : `${this.base.href}/`)
  }

  /** Publishes one event or several (`POST /v1/events`); resolves with their ids once stored. */
  async publish<T = unknown>(events: EventInput<T> | readonly EventInput<T>[]): Promise<string[]> {
    const headers: Record<string, string> = { 'content-type': 'application/json' }
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`
    const url = this.endpoint('v1/events').href
    let response: Response
    try {
      response = await this.fetch(url, { method: 'POST', headers, body: JSON.stringify(events) })
    } catch (error) {
      // As a HeraldError, so callers switch on one code: a server out of reach is as unavailable
      // as one whose store is, and publishing again later may succeed.
      const cause = (error as { cause?: { code?: unknown; message?: unknown } } | null)?.cause
      const why = String(cause?.code ?? cause?.message ?? (error as Error).message)
      throw new HeraldError('store_unavailable', `cannot reach the server at ${url}: ${why}`, { url })
    }
    const text = await response.text()
    let body: unknown
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      body = undefined
    }
    if (!response.ok) throw errorFrom(response.status, body)
    const ids = (body as { ids?: unknown } | undefined)?.ids
    if (!Array.isArray(ids))
      throw errorFrom(response.status, { error: { message: 'the server answered without ids' } })
    return ids as string[]
  }

  /**
   * Subscribes to patterns over WebSocket (`/v1/stream`). Each event reaches `onEvent` once, in
   * log order; after a dropped connection the subscription resumes from the last seq it saw.
   */
  subscribe<T = unknown>(
    patterns: string | readonly string[],
    onEvent: (event: HeraldEvent<T>) => unknown,
    options: ClientSubscribeOptions = {},
  ): ClientSubscription {
    const list = (typeof patterns === 'string' ? [patterns] : [...patterns]).flatMap((entry) =>
      entry
        .split(';')
        .map((pattern) => pattern.trim())
        .filter((pattern) => pattern !== ''),
    )
    if (list.length === 0) throw new HeraldError('invalid_pattern', 'at least one pattern is required')
    if (typeof onEvent !== 'function') throw new HeraldError('invalid_option', 'onEvent must be a function')
    const url = this.endpoint('v1/stream')
    url.protocol = this.base.protocol === 'https:' ? 'wss:' : 'ws:'
    // Browsers cannot set headers on a WebSocket: the token travels as the `token` query parameter.
    if (this.token !== undefined) url.searchParams.set('token', this.token)
    const probeUrl = new URL(url.href)
    probeUrl.protocol = this.base.protocol
    const subscription = new StreamSubscription<T>(
      url.href,
      resolveWebSocket(this.WebSocket),
      list,
      onEvent,
      {
        ...options,
        onState: (state) => {
          if (state === 'closed') this.subscriptions.delete(subscription)
          options.onState?.(state)
        },
      },
      this.reconnect,
      () => this.refusalOf(probeUrl.href),
    )
    this.subscriptions.add(subscription)
    return subscription
  }

  /**
   * Why the server refuses the stream's handshake, asked over HTTP: a browser's WebSocket says
   * nothing of a refused handshake, not even its status. The stream's URL without the upgrade
   * goes through the same token check; a refusal no reconnection would get past (401, 403) comes
   * back as its error, anything else (a 404 for the missing upgrade, a network failure, a page
   * of another origin the server does not serve CORS to) as undefined.
   */
  private async refusalOf(url: string): Promise<HeraldError | undefined> {
    try {
      // Bounded: a probe that hangs would hold the reconnection up with it.
      const response = await this.fetch(url, { method: 'GET', signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) })
      if (response.status !== 401 && response.status !== 403) {
        await response.body?.cancel()
        return undefined
      }
      const body = JSON.parse(await response.text()) as { error?: { code?: unknown } }
      // Herald's own answer only: a proxy's or a gateway's 401 says nothing of the token.
      return typeof body.error?.code === 'string' ? errorFrom(response.status, body) : undefined
    } catch {
      return undefined
    }
  }

  /** Closes every subscription. */
  close(): void {
    for (const subscription of [...this.subscriptions]) subscription.close()
  }
}
