import { HeraldError } from '../errors.js'
import type { HeraldEvent } from '../event.js'
import { errorFrom } from './errors.js'
import { cut, watchSilence, type SilenceWatch } from './heartbeat.js'
import { frameText, type WebSocketLike } from './socket.js'

export type SubscriptionState = 'connecting' | 'live' | 'reconnecting' | 'closed'

export interface ClientSubscribeOptions {
  /** Replay events stored after this seq (exclusive), then go live. */
  since?: string
  /** A refused frame, a failed connection, a handler that threw: the subscription goes on. */
  onError?: (error: Error) => void
  onState?: (state: SubscriptionState) => void
}

export interface ReconnectPolicy {
  /** Wait before the first reconnection, in ms (default 250). */
  initialDelay: number
  /** Longest wait between attempts, in ms (default 10,000). */
  maxDelay: number
  /** Growth per failed attempt (default 2). */
  factor: number
  /**
   * With `ws` (Node): the connection counts as dropped, and is cut and resumed, after this many
   * ms without a ping or a frame from the server (default 100,000: the server pings every 30 s
   * unless configured otherwise; keep it above three of its pingIntervals). 0 turns it off.
   * Browsers do not show pings to pages, so there it has no effect.
   */
  heartbeatTimeout: number
}

export const DEFAULT_RECONNECT: Readonly<ReconnectPolicy> = Object.freeze({
  initialDelay: 250,
  maxDelay: 10_000,
  factor: 2,
  heartbeatTimeout: 100_000,
})

/**
 * The wait before a reconnection: `base` plus up to 20 % jitter, which spreads the clients of a
 * restarted server, never past `maxDelay`; at the cap the jitter goes below it instead.
 */
export function backoffWait(base: number, maxDelay: number, random: number): number {
  const wait = base + base * 0.2 * random
  return wait <= maxDelay ? wait : maxDelay * (0.8 + 0.2 * random)
}

/** Below this a failing server would be hammered: a reconnection every few milliseconds. */
const MIN_RECONNECT_DELAY = 10

/**
 * Fills a partial policy from the defaults (an `undefined` field keeps its default) and checks
 * it: `invalid_option` for delays that are not finite numbers of at least 10 ms, a `maxDelay`
 * below `initialDelay`, or a `factor` below 1.
 */
export function reconnectPolicy(partial: Partial<ReconnectPolicy> | undefined): ReconnectPolicy {
  const policy: ReconnectPolicy = { ...DEFAULT_RECONNECT }
  for (const field of ['initialDelay', 'maxDelay', 'factor', 'heartbeatTimeout'] as const) {
    const value = partial?.[field]
    if (value !== undefined) policy[field] = value
  }
  for (const field of ['initialDelay', 'maxDelay'] as const) {
    const value = policy[field]
    if (typeof value !== 'number' || !Number.isFinite(value) || value < MIN_RECONNECT_DELAY)
      throw new HeraldError(
        'invalid_option',
        `reconnect.${field} must be a number of milliseconds of at least ${MIN_RECONNECT_DELAY}, got ${String(value)}`,
      )
  }
  if (policy.maxDelay < policy.initialDelay)
    throw new HeraldError('invalid_option', 'reconnect.maxDelay must not be below reconnect.initialDelay')
  const { heartbeatTimeout } = policy
  if (
    typeof heartbeatTimeout !== 'number' ||
    !Number.isFinite(heartbeatTimeout) ||
    (heartbeatTimeout !== 0 && heartbeatTimeout < 1000)
  )
    throw new HeraldError(
      'invalid_option',
      `reconnect.heartbeatTimeout must be 0 (off) or at least 1000 ms, got ${String(heartbeatTimeout)}`,
    )
  if (typeof policy.factor !== 'number' || !Number.isFinite(policy.factor) || policy.factor < 1)
    throw new HeraldError(
      'invalid_option',
      `reconnect.factor must be a number of at least 1, got ${String(policy.factor)}`,
    )
  return policy
}

export interface ClientSubscription {
  /**
   * Resolves when the server first confirms the subscription; rejects (and the subscription
   * closes) when it cannot be: every pattern refused or malformed, the token refused at the
   * handshake, or `close()` first.
   */
  readonly ready: Promise<void>
  /** Seq of the last event handed to the handler: where a reconnection resumes. */
  readonly position: string | undefined
  readonly state: SubscriptionState
  close(): void
}

interface ServerFrame {
  event?: HeraldEvent
  events?: HeraldEvent[]
  subscribed?: string[]
  /** The stream's position at subscription time, when the server tells it. */
  position?: string
  error?: { code?: unknown; message?: unknown }
}

/** Answers to a subscribe that another attempt may get past (the server is busy or restarting). */
const PASSING = new Set(['rate_limited', 'store_unavailable', 'closed', 'internal'])

/**
 * One subscription over the native stream protocol (DESIGN §7), on its own connection. When the
 * connection drops it reconnects with exponential backoff (plus jitter) and subscribes again
 * with `since` = the last seq it handed over, so nothing stored meanwhile is missed; events at or
 * before that seq (a replay overlapping what was seen) are skipped, so none is handed over twice.
 * What no reconnection can mend (patterns refused or malformed, the token refused) closes it.
 */
export class StreamSubscription<T = unknown> implements ClientSubscription {
  readonly ready: Promise<void>
  position: string | undefined
  state: SubscriptionState = 'connecting'
  private socket: WebSocketLike | undefined
  private failures = 0
  private timer: ReturnType<typeof setTimeout> | undefined
  private resolveReady!: () => void
  private rejectReady!: (error: Error) => void
  /** The server confirmed the subscription on the current connection. */
  private confirmed = false
  /** The server confirmed it on some connection: a later `since` is this client's own position. */
  private everConfirmed = false
  /** A refusal that came before the confirmation (some patterns forbidden, say). */
  private refusal: HeraldError | undefined
  /** Watches the current connection for silence (`ws` only). */
  private silence: SilenceWatch | undefined

  constructor(
    private readonly url: string,
    private readonly WebSocket: new (url: string) => WebSocketLike,
    private readonly patterns: string[],
    private readonly onEvent: (event: HeraldEvent<T>) => unknown,
    private readonly options: ClientSubscribeOptions,
    private readonly reconnect: ReconnectPolicy,
    /** Asks the server, over HTTP, why it refuses the handshake (when the WebSocket does not tell). */
    private readonly probe?: () => Promise<HeraldError | undefined>,
  ) {
    this.position = options.since
    this.ready = new Promise((resolve, reject) => {
      this.resolveReady = resolve
      this.rejectReady = reject
    })
    // Whoever does not await `ready` learns of a failure through onError; no unhandled rejection.
    this.ready.catch(() => {})
    this.connect()
  }

  close(): void {
    this.end(new HeraldError('closed', 'the subscription was closed before the server confirmed it'))
  }

  /** Closes for good; `ready`, if still pending, rejects with `reason`. */
  private end(reason: Error): void {
    if (this.state === 'closed') return
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    this.silence?.stop()
    const socket = this.socket
    this.socket = undefined
    if (socket) {
      socket.onclose = socket.onmessage = socket.onopen = null
      // Kept: `ws` reports closing a socket that is still connecting as an error, a tick later.
      socket.onerror = () => {}
      try {
        socket.close(1000, 'closed by the client')
      } catch {
        // not open yet: it is dropped all the same
      }
    }
    this.rejectReady(reason)
    this.setState('closed')
  }

  private setState(state: SubscriptionState): void {
    if (this.state === state) return
    this.state = state
    try {
      this.options.onState?.(state)
    } catch (error) {
      this.report(asError(error))
    }
  }

  private report(error: Error): void {
    try {
      this.options.onError?.(error)
    } catch {
      // an error reporter that throws has nobody left to tell
    }
  }

  private connect(): void {
    if (this.state === 'closed') return
    let socket: WebSocketLike
    try {
      socket = new this.WebSocket(this.url)
    } catch (error) {
      this.report(error instanceof Error ? error : new Error(String(error)))
      this.scheduleReconnect()
      return
    }
    this.socket = socket
    this.confirmed = false
    this.refusal = undefined
    this.silence?.stop()
    const silence = watchSilence(socket, this.reconnect.heartbeatTimeout, () => {
      this.report(
        new Error(
          `nothing from the server for ${this.reconnect.heartbeatTimeout} ms, not even a ping: the connection is gone; reconnecting`,
        ),
      )
      cut(socket)
    })
    this.silence = silence
    let opened = false
    socket.onopen = () => {
      opened = true
      const frame: Record<string, unknown> = { subscribe: this.patterns }
      if (this.position !== undefined) frame.since = this.position
      socket.send(JSON.stringify(frame))
    }
    socket.onmessage = (message) => {
      silence?.heard()
      this.frame(message.data)
    }
    let failure = ''
    socket.onerror = (event) => {
      // A browser tells nothing here (the close that follows says what it can); `ws` names the
      // cause: a refused handshake (401 and 403, which no reconnection would get past; 404, 429),
      // a connection refused.
      const message = (event as { message?: unknown } | null)?.message
      failure = typeof message === 'string' ? message : ''
      const refused = /Unexpected server response: (401|403)\b/.exec(failure)
      if (refused) {
        const error = new HeraldError(
          refused[1] === '401' ? 'unauthorized' : 'forbidden',
          `the server refused the stream's handshake (${refused[1]}): check the token`,
        )
        this.report(error)
        this.end(error)
      }
    }
    socket.onclose = (event) => {
      silence?.stop()
      if (this.socket !== socket) return
      this.socket = undefined
      if (this.state === 'closed') return
      const why = event.reason || failure
      this.report(new Error(`the stream closed (${event.code}${why ? ` ${why}` : ''}); reconnecting`))
      if (opened || failure !== '' || !this.probe) {
        this.scheduleReconnect()
        return
      }
      // The handshake failed and the WebSocket kept why (a browser's does): ask over HTTP, so that
      // a refused token ends the subscription instead of being retried for ever.
      this.setState('reconnecting')
      void this.probe().then((refusal) => {
        if (this.state === 'closed') return
        if (refusal && (refusal.code === 'unauthorized' || refusal.code === 'forbidden')) {
          this.report(refusal)
          this.end(refusal)
        } else this.scheduleReconnect()
      })
    }
  }

  private scheduleReconnect(): void {
    if (this.state === 'closed') return
    this.setState('reconnecting')
    const { initialDelay, maxDelay, factor } = this.reconnect
    const base = Math.min(initialDelay * factor ** this.failures, maxDelay)
    this.failures++
    this.timer = setTimeout(
      () => {
        this.timer = undefined
        this.connect()
      },
      backoffWait(base, maxDelay, Math.random()),
    )
  }

  private frame(data: unknown): void {
    const text = frameText(data)
    if (text === undefined) return
    let frame: ServerFrame
    try {
      frame = JSON.parse(text) as ServerFrame
    } catch {
      this.report(new Error('the server sent a frame that is not JSON'))
      return
    }
    if (frame.event) this.deliver(frame.event)
    else if (Array.isArray(frame.events)) for (const event of frame.events) this.deliver(event)
    if (frame.error) {
      const error = errorFrom(undefined, frame)
      // A resume past a wiped log's head is reported once, below, with what is done about it.
      const wiped = !this.confirmed && this.everConfirmed && error.details?.since !== undefined
      if (!wiped) this.report(error)
      if (!this.confirmed) {
        // An answer to the subscribe itself. Forbidden patterns come before the confirmation of
        // the others; anything else means no confirmation is coming on this connection.
        if (error.code === 'forbidden') this.refusal = error
        else if (PASSING.has(error.code)) this.socket?.close(4000, 'subscribing again')
        else if (wiped) {
          // Resuming from a position the server's log does not reach: the log was wiped (a memory
          // store restarted, say). Nothing before its head can be replayed; start again there.
          this.report(
            new HeraldError(
              'invalid_request',
              `the server's log does not reach this subscription's position ${this.position ?? ''} (it was wiped or replaced); resuming from its head, so events it held before are not replayed`,
              error.details,
            ),
          )
          this.position = undefined
          this.socket?.close(4000, 'subscribing again from the head')
        } else this.end(error)
      }
    }
    if (frame.subscribed) {
      if (frame.subscribed.length === 0) {
        this.end(this.refusal ?? new HeraldError('forbidden', 'no pattern of the subscription was allowed'))
        return
      }
      this.confirmed = true
      this.everConfirmed = true
      if (
        typeof frame.position === 'string' &&
        (this.position === undefined || frame.position > this.position)
      )
        this.position = frame.position
      this.failures = 0
      this.setState('live')
      this.resolveReady()
    }
  }

  private deliver(event: HeraldEvent): void {
    if (this.state === 'closed') return
    const seq = event.seq
    if (seq !== undefined) {
      // Seqs of one tenant's log compare as strings (fixed width): at or before the position was handed over already.
      if (this.position !== undefined && seq <= this.position) return
      this.position = seq
    }
    try {
      const result = this.onEvent(event as HeraldEvent<T>)
      if (result instanceof Promise) result.catch((error: unknown) => this.report(asError(error)))
    } catch (error) {
      this.report(asError(error))
    }
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error))
}
