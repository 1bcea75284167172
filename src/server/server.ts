import type { FastifyInstance } from 'fastify'
import type { Logger as PinoLogger } from 'pino'
import { createBus, type Bus } from '../bus.js'
import { HeraldError } from '../errors.js'
import { WebhookRegistry } from '../service/webhooks.js'
import type { Store } from '../stores/store.js'
import { buildApp } from './app.js'
import { Authenticator } from './auth.js'
import {
  loadConfig,
  resolveConfig,
  type LoadOptions,
  type ServerConfig,
  type ServerConfigInput,
} from './config.js'
import type { ServerContext } from './context.js'
import { Heartbeat } from './heartbeat.js'
import { createLogger } from './logger.js'
import { Metrics } from './metrics.js'
import { openStore } from './store-url.js'

export interface HeraldServer {
  readonly config: ServerConfig
  readonly app: FastifyInstance
  readonly bus: Bus
  readonly logger: PinoLogger
  /** `http://host:port` once listening. */
  readonly url: string | undefined
  /** Binds host and port (port 0: any free one); resolves with the base URL. */
  listen(): Promise<string>
  /** Stops accepting, lets in-flight requests and stream frames finish, closes streams with 1001, drains the bus, closes the store. */
  close(): Promise<void>
}

export interface CreateServerOptions {
  /** A pino logger (default: JSON lines on stdout at `config.logLevel`). */
  logger?: PinoLogger
  /** A store to use instead of opening `config.store`; it is closed with the server. */
  store?: Store
}

/** How often the server re-reads webhook registrations from the store (other processes may change them). */
export const WEBHOOK_SYNC_INTERVAL = 5000

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost|\[::1\])$/

export function isLoopback(host: string): boolean {
  return LOOPBACK.test(host)
}

/** Builds a server from settings (defaults filled in); it listens once `listen()` is called. */
export async function createServer(
  input: ServerConfigInput | ServerConfig = {},
  options: CreateServerOptions = {},
): Promise<HeraldServer> {
  const config = resolveConfig(input)
  const logger = options.logger ?? createLogger(config.logLevel)
  const auth = new Authenticator(config.tokens, config.limits)
  const store = options.store ?? (await openStore(config.store, logger))
  const metrics = new Metrics()
  const bus = createBus({
    store,
    logger,
    observer: metrics.observer,
    drainTimeout: config.drainTimeout,
    maxPayloadBytes: config.limits.bodyBytes,
  })
  const heartbeat = new Heartbeat(config.pingInterval)
  const webhooks = new WebhookRegistry(bus, {
    logger,
    userAgent: 'herald',
    ...(config.secretsKey !== undefined ? { secretsKey: config.secretsKey } : {}),
  })
  const context: ServerContext = {
    config,
    bus,
    auth,
    webhooks,
    metrics,
    logger,
    heartbeat,
    streams: new Set(),
    accepting: true,
  }
  let app: FastifyInstance
  try {
    app = await buildApp(context, logger)
    // Webhooks registered before (this process or another) deliver again, from where they were.
    const restored = await webhooks.restore()
    if (restored > 0) logger.info({ restored }, 'webhook subscriptions restored')
  } catch (error) {
    heartbeat.stop()
    await bus.close()
    throw error
  }
  // Registrations made through other processes sharing the store reach this one within this time.
  const stopSync = webhooks.syncEvery(WEBHOOK_SYNC_INTERVAL)
  app.addHook('onClose', async () => {
    stopSync()
    heartbeat.stop()
    await bus.close()
  })

  let url: string | undefined
  let closing: Promise<void> | undefined
  return {
    config,
    app,
    bus,
    logger,
    get url() {
      return url
    },
    async listen() {
      if (auth.open && !isLoopback(config.host)) {
        throw new HeraldError(
          'invalid_option',
          `no tokens are configured, so the server only listens on loopback; ${config.host} needs tokens (see docs/configuration.md)`,
        )
      }
      const address = await app.listen({ host: config.host, port: config.port })
      url = address
      if (auth.open)
        logger.warn(
          { host: config.host },
          'no tokens configured: serving OPEN (every request acts as admin in default/master), on loopback only',
        )
      logger.info(
        {
          url: address,
          store: store.kind,
          tokens: config.tokens.length,
          webhookSecrets: config.secretsKey !== undefined ? 'sealed' : 'plain text',
        },
        'herald listening',
      )
      return address
    },
    close() {
      closing ??= (async () => {
        context.accepting = false
        // A connection that never sends a request (a preconnecting client) would hold the
        // shutdown until the client gives up: past the drain timeout, every connection is cut.
        const deadline = setTimeout(() => app.server.closeAllConnections(), config.drainTimeout)
        deadline.unref()
        try {
          await app.close()
        } finally {
          clearTimeout(deadline)
        }
      })()
      return closing
    },
  }
}

/**
 * `herald serve`: loads settings (flags > HERALD_* > file > defaults), listens, and on SIGTERM
 * or SIGINT shuts down gracefully and exits 0 (a second signal exits at once with 1).
 */
export async function startServer(options: LoadOptions & CreateServerOptions = {}): Promise<HeraldServer> {
  const config = loadConfig(options)
  const server = await createServer(config, options)
  try {
    await server.listen()
  } catch (error) {
    await server.close()
    throw error
  }
  let stopping = false
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) {
      server.logger.warn({ signal }, 'second signal: exiting without finishing the shutdown')
      process.exit(1)
    }
    stopping = true
    server.logger.info({ signal }, 'shutting down: finishing in-flight work')
    server.close().then(
      () => {
        server.logger.info({}, 'herald stopped')
        process.exit(0)
      },
      (error: unknown) => {
        server.logger.error({ err: error }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  return server
}
