import type { Socket } from 'node:net'
import type { Writable } from 'node:stream'
import type { RawData, WebSocket } from 'ws'
import { describeError } from '../errors.js'
import type { Logger } from '../logger.js'
import type { Principal } from './auth.js'
import type { ServerContext } from './context.js'
import { CLOSE_CODES } from './close-codes.js'
import type { Heartbeat, Pingable } from './heartbeat.js'
import type { Metrics, Transport } from './metrics.js'

/** What the server needs from every open stream to shut down: finish, then say goodbye. */
export interface Closable {
  shutdown(): Promise<void>
}

export interface WsConnectionOptions {
  socket: WebSocket
  transport: Transport
  principal: Principal
  /** Bytes that may wait to be sent before the client counts as too slow. */
  bufferLimit: number
  metrics: Metrics
  heartbeat: Heartbeat
  /** The server's open streams, for shutdown. */
  registry: Set<Closable>
  logger: Logger
}

/** A frame handler of one protocol (native or Volt MX); frames of a connection are handled one at a time, in order. */
export type FrameHandler = (text: string, isBinary: boolean) => Promise<void> | void

const SEND_TEXT = { binary: false }

/** Resolves when a writable has flushed its buffer, or closed; yields to I/O when it owes no 'drain'. */
export function waitForDrain(stream: Writable): Promise<void> {
  if (!stream.writableNeedDrain) return new Promise((resolve) => setImmediate(resolve))
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off('drain', done)
      stream.off('close', done)
      resolve()
    }
    stream.on('drain', done)
    stream.on('close', done)
  })
}

/** Frames waiting to be handled past which the socket stops reading, so a flooding client is held back by TCP. */
const MAX_PENDING_FRAMES = 32
/** How long a closing socket may take to finish the close handshake before it is cut. */
const CLOSE_GRACE_MS = 5_000
/** How long shutdown waits for a connection's frames in progress. */
const SHUTDOWN_FRAME_WAIT_MS = 5_000

/**
 * One WebSocket client: bounded sending, heartbeat, in-order frame handling and closing. The
 * protocol (native or Volt MX) sits on top and only encodes and decodes frames.
 */
export class WsConnection implements Pingable, Closable {
  unansweredPings = 0
  readonly principal: Principal
  private readonly socket: WebSocket
  private readonly options: WsConnectionOptions
  private handler: FrameHandler | undefined
  private queue: Promise<void> = Promise.resolve()
  private pending = 0
  private closing = false
  private readonly closeListeners: (() => void)[] = []
  /** The TCP socket under the WebSocket, corked while a synchronous run of sends lasts. */
  private readonly tcp: Socket | undefined
  private corked = false

  constructor(options: WsConnectionOptions) {
    this.options = options
    this.socket = options.socket
    this.principal = options.principal
    // ws keeps its net.Socket private; corking it lets a run of frames (a stored batch fanned out,
    // a replay page) leave in one writev instead of one syscall each.
    this.tcp = (options.socket as unknown as { _socket?: Socket })._socket
    options.metrics.connectionOpened(options.transport)
    options.heartbeat.add(this)
    options.registry.add(this)
    this.socket.on('pong', () => {
      this.unansweredPings = 0
    })
    this.socket.on('message', (data, isBinary) => this.received(data, isBinary))
    this.socket.once('close', () => this.closed())
  }

  /** Sets the protocol's frame handler (once). */
  onFrame(handler: FrameHandler): void {
    this.handler = handler
  }

  /** Runs when the socket has closed, for whatever reason. */
  onClose(listener: () => void): void {
    this.closeListeners.push(listener)
  }

  get isOpen(): boolean {
    return !this.closing
  }

  private received(data: RawData, isBinary: boolean): void {
    if (this.closing || !this.handler) return
    const handler = this.handler
    const text = Buffer.isBuffer(data)
      ? data.toString('utf8')
      : Array.isArray(data)
        ? Buffer.concat(data).toString('utf8')
        : Buffer.from(data).toString('utf8')
    if (++this.pending >= MAX_PENDING_FRAMES) this.socket.pause()
    this.queue = this.queue
      .then(() => (this.closing ? undefined : handler(text, isBinary)))
      .catch((error: unknown) => {
        this.options.logger.error(
          { error: describeError(error), transport: this.options.transport },
          'stream frame failed',
        )
        this.close(CLOSE_CODES.internal, 'internal error')
      })
      .finally(() => {
        if (--this.pending === 0 && !this.closing) this.socket.resume()
      })
  }

  /** Sends a reply or error frame. */
  reply(frame: string): void {
    this.send(frame)
  }

  /** Sends a frame carrying `count` events. */
  sendEvents(frame: string | Buffer, count: number): void {
    this.options.metrics.eventsStreamed(this.options.transport, count)
    this.send(frame)
  }

  private send(frame: string | Buffer): void {
    if (this.closing) return
    if (!this.corked && this.tcp) {
      this.corked = true
      this.tcp.cork()
      queueMicrotask(this.uncork)
    }
    this.socket.send(frame, SEND_TEXT)
    if (this.socket.bufferedAmount > this.options.bufferLimit)
      this.closeAsSlow(`more than ${this.options.bufferLimit} bytes waiting to be sent`)
  }

  /** Closes a client that reads too slowly (4008); it resumes from its last seq. */
  closeAsSlow(why: string): void {
    if (this.closing) return
    this.options.metrics.slowClientClosed(this.options.transport)
    this.options.logger.warn(
      {
        principal: this.principal.name,
        transport: this.options.transport,
        buffered: this.socket.bufferedAmount,
        why,
      },
      'closing a stream client that reads too slowly',
    )
    this.close(CLOSE_CODES.slowConsumer, `slow consumer: ${why}`)
  }

  private readonly uncork = (): void => {
    this.corked = false
    this.tcp?.uncork()
  }

  /**
   * For replays: while more than a quarter of the buffer limit waits to be sent, a promise that
   * resolves once the socket has flushed (or closed); the replay then goes on.
   */
  readonly backpressure = (): Promise<void> | undefined => {
    const tcp = this.tcp
    if (this.closing || !tcp || this.socket.bufferedAmount <= this.options.bufferLimit / 4) return undefined
    return waitForDrain(tcp)
  }

  ping(): void {
    if (!this.closing) this.socket.ping()
  }

  timeout(): void {
    this.close(CLOSE_CODES.pingTimeout, 'no pong to 3 pings')
  }

  /**
   * Closes with a code and reason. The close frame queues behind what is already buffered, so a
   * client catching up reads every event sent before it; the socket is cut if the handshake
   * does not finish within a grace period.
   */
  close(code: number, reason: string): void {
    if (this.closing) return
    this.closing = true
    this.options.heartbeat.delete(this)
    for (const listener of this.closeListeners.splice(0)) listener()
    this.socket.close(code, reason)
    setTimeout(() => this.socket.terminate(), CLOSE_GRACE_MS).unref()
  }

  /** Server shutdown: let frames in progress finish (a publish gets its answer), then close with 1001. */
  async shutdown(): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined
    await Promise.race([
      this.queue,
      new Promise<void>((resolve) => (timer = setTimeout(resolve, SHUTDOWN_FRAME_WAIT_MS))),
    ])
    clearTimeout(timer)
    this.close(CLOSE_CODES.goingAway, 'server shutting down')
    if (this.socket.readyState === this.socket.CLOSED) return
    await new Promise<void>((resolve) => {
      this.socket.once('close', () => resolve())
      setTimeout(() => {
        this.socket.terminate()
        resolve()
      }, CLOSE_GRACE_MS).unref()
    })
  }

  private closed(): void {
    if (!this.closing) {
      this.closing = true
      this.options.heartbeat.delete(this)
      for (const listener of this.closeListeners.splice(0)) listener()
    }
    this.options.registry.delete(this)
    this.options.metrics.connectionClosed(this.options.transport)
  }
}

/** A connection with the server's limits, metrics and heartbeat. */
export function openConnection(
  context: ServerContext,
  socket: WebSocket,
  principal: Principal,
  transport: Transport,
): WsConnection {
  return new WsConnection({
    socket,
    transport,
    principal,
    bufferLimit: context.config.limits.wsBufferBytes,
    metrics: context.metrics,
    heartbeat: context.heartbeat,
    registry: context.streams,
    logger: context.logger,
  })
}
