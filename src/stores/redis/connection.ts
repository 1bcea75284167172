import { createRequire } from 'node:module'
import type { Redis, RedisOptions } from 'ioredis'
import { HeraldError, describeError } from '../../errors.js'
import type { Logger } from '../../logger.js'
import { NOT_FOUND_REPLY } from './scripts/lua.js'

type IORedis = typeof import('ioredis')

let driver: IORedis | undefined

/** Loads ioredis on first use, so that importing 'herald' loads no network module. */
function loadDriver(): IORedis {
  if (!driver) {
    try {
      driver = createRequire(import.meta.url)('ioredis') as IORedis
    } catch (error) {
      throw new HeraldError(
        'invalid_option',
        `redisStore needs the 'ioredis' package (npm install ioredis@^5): ${describeError(error)}`,
      )
    }
  }
  return driver
}

export interface ConnectionOptions {
  url: string
  /** What this connection is for, in logs and CLIENT LIST. */
  name: string
  /** How long a command may wait for a connection and for its reply. */
  timeout: number
  /** For a connection that runs blocking reads: no per-command timeout (the read's own BLOCK bounds it). */
  blocking?: boolean
  logger: Logger
}

/**
 * One ioredis connection with the failure behaviour Herald promises: a command waits at most
 * `timeout` for Redis to be reachable and to answer, then fails with `store_unavailable`; a
 * command in flight when the connection drops fails at once (it may or may not have been
 * applied; it is never sent twice behind the caller's back); the connection comes back by itself.
 */
export class Connection {
  readonly redis: Redis
  private readonly inFlight = new Set<(error: Error) => void>()
  private readyWaiters = new Set<() => void>()
  private lastError = ''
  private down = false
  private closing = false
  private idleWaiters: (() => void)[] = []

  constructor(private readonly options: ConnectionOptions) {
    const { Redis: RedisClient } = loadDriver()
    const settings: RedisOptions = {
      connectionName: `herald:${options.name}`,
      // Commands are never queued while disconnected: `run` waits for the connection itself,
      // with a deadline, and knows that a command refused this way was never sent.
      enableOfflineQueue: false,
      autoResendUnfulfilledCommands: false,
      maxRetriesPerRequest: null,
      enableAutoPipelining: !options.blocking,
      connectTimeout: Math.min(options.timeout, 10_000),
      keepAlive: 10_000,
      // Reconnect forever, backing off to one attempt every 2 s.
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), 2000),
    }
    if (options.blocking) {
      settings.blockingTimeout = 1
      settings.blockingTimeoutGrace = options.timeout
    } else settings.commandTimeout = options.timeout
    this.redis = new RedisClient(options.url, settings)
    this.redis.on('error', (error: Error) => {
      this.lastError = error.message
    })
    this.redis.on('close', () => {
      if (!this.down && !this.closing) {
        this.down = true
        options.logger.warn(
          { redis: redact(options.url), connection: options.name, error: this.lastError || undefined },
          'lost the connection to Redis; reconnecting',
        )
      }
      if (this.inFlight.size === 0) return
      const lost = new HeraldError(
        'store_unavailable',
        'the connection to Redis closed while this command was in flight; it may or may not have been applied',
      )
      for (const fail of [...this.inFlight]) fail(lost)
    })
    this.redis.on('ready', () => {
      if (this.down)
        options.logger.info({ redis: redact(options.url), connection: options.name }, 'reconnected to Redis')
      this.down = false
      const waiters = this.readyWaiters
      this.readyWaiters = new Set()
      for (const resolve of waiters) resolve()
    })
  }

  get ready(): boolean {
    return this.redis.status === 'ready'
  }

  /** Runs `command` once the connection is ready; maps failures to HeraldErrors. */
  run<T>(command: (redis: Redis) => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.options.timeout
    return new Promise<T>((resolve, reject) => {
      const attempt = (): void => {
        if (!this.ready) {
          this.whenReady(deadline).then(attempt, reject)
          return
        }
        let settled = false
        const fail = (error: Error): void => {
          if (settled) return
          settled = true
          this.finish(fail)
          // Refused before it was sent (the connection dropped just now): safe to try again.
          if (isNotSent(error) && Date.now() < deadline) attempt()
          else reject(toStoreError(error))
        }
        this.inFlight.add(fail)
        command(this.redis).then((value) => {
          if (settled) return
          settled = true
          this.finish(fail)
          resolve(value)
        }, fail)
      }
      attempt()
    })
  }

  private finish(fail: (error: Error) => void): void {
    this.inFlight.delete(fail)
    if (this.inFlight.size === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters
      this.idleWaiters = []
      for (const resolve of waiters) resolve()
    }
  }

  private whenReady(deadline: number): Promise<void> {
    if (this.closing) return Promise.reject(new HeraldError('closed', 'the store is closed'))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.readyWaiters.delete(done)
          reject(
            new HeraldError(
              'store_unavailable',
              `Redis at ${redact(this.options.url)} is unreachable (${this.lastError || this.redis.status}); gave up after ${this.options.timeout} ms`,
            ),
          )
        },
        Math.max(0, deadline - Date.now()),
      )
      const done = (): void => {
        clearTimeout(timer)
        resolve()
      }
      this.readyWaiters.add(done)
    })
  }

  /** Waits for commands in flight, then closes the connection. */
  async close(): Promise<void> {
    if (this.inFlight.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve))
    await this.disconnect()
  }

  /** Closes the connection now; commands in flight fail. */
  async disconnect(): Promise<void> {
    this.closing = true
    for (const resolve of this.readyWaiters) resolve()
    this.readyWaiters.clear()
    if (this.redis.status === 'end') return
    if (!this.ready) {
      // Between reconnection attempts there is no socket to close, and ioredis says nothing more.
      this.redis.disconnect()
      return
    }
    const ended = new Promise<void>((resolve) => this.redis.once('end', () => resolve()))
    await this.redis.quit().catch(() => this.redis.disconnect())
    await ended
  }
}

function isNotSent(error: Error): boolean {
  return error.message.startsWith("Stream isn't writeable")
}

const UNAVAILABLE_REPLY = /^(LOADING|BUSY|MASTERDOWN|READONLY|OOM|TRYAGAIN|NOREPLICAS|MISCONF|CLUSTERDOWN)\b/

/** Maps what ioredis and Redis throw to Herald's error codes. */
export function toStoreError(error: unknown): Error {
  if (error instanceof HeraldError) return error
  const message = describeError(error)
  if (error instanceof Error && error.name === 'ReplyError') {
    // Redis puts 'ERR ' before a script's own error reply.
    if (error.message.includes(NOT_FOUND_REPLY)) return new HeraldError('not_found', 'no such subscription')
    if (error.message.startsWith('WRONGTYPE')) {
      return new HeraldError(
        'store_incompatible',
        `a key under the store's prefix holds data Herald did not write: ${error.message}`,
      )
    }
    if (UNAVAILABLE_REPLY.test(error.message))
      return new HeraldError('store_unavailable', `Redis cannot serve this now: ${error.message}`)
    // Anything else Redis refused (a script's own failure, say) still reaches callers with a code.
    return new HeraldError('store_unavailable', `Redis refused a command: ${error.message}`)
  }
  return new HeraldError('store_unavailable', `Redis did not answer: ${message}`)
}

/** The URL without its password, for logs and error messages. */
export function redact(url: string): string {
  return url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')
}
