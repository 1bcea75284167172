import { readFileSync } from 'node:fs'
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { HeraldError } from '../errors.js'
import { MIN_SECRETS_KEY_LENGTH } from '../service/secret-box.js'

/**
 * The server's settings (DESIGN §7). Sources, strongest first: command-line flags, `HERALD_*`
 * environment variables, the configuration file (`--config` or `HERALD_CONFIG`), defaults.
 */
/** A misspelt key is refused: a token's `acount` silently acting in the default tenant is worse than a failed start. */
const STRICT = { additionalProperties: false } as const

const TokenSchema = Type.Object(
  {
    token: Type.String({ minLength: 16 }),
    account: Type.Optional(Type.String()),
    workspace: Type.Optional(Type.String()),
    publish: Type.Optional(Type.Array(Type.String())),
    subscribe: Type.Optional(Type.Array(Type.String())),
    admin: Type.Optional(Type.Boolean()),
    /** The app this token acts for: events it publishes carry this sender, whatever they claim. */
    sender: Type.Optional(Type.String({ minLength: 1 })),
    /** Requests (HTTP requests and stream frames) per second for this token; overrides limits.requestsPerSecond. */
    requestsPerSecond: Type.Optional(Type.Number({ minimum: 0 })),
    /** Open streams (WebSocket and SSE) this token may hold at once; overrides limits.streamsPerToken. */
    streamsPerToken: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  STRICT,
)

const LimitsSchema = Type.Object(
  {
    bodyBytes: Type.Optional(Type.Integer({ minimum: 1024 })),
    eventsPerRequest: Type.Optional(Type.Integer({ minimum: 1 })),
    wsBufferBytes: Type.Optional(Type.Integer({ minimum: 1024 })),
    requestsPerSecond: Type.Optional(Type.Number({ minimum: 0 })),
    streamsPerToken: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  STRICT,
)

const FileSchema = Type.Object(
  {
    host: Type.Optional(Type.String({ minLength: 1 })),
    port: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
    store: Type.Optional(Type.String({ minLength: 1 })),
    pingInterval: Type.Optional(Type.Integer({ minimum: 1000 })),
    sseHeartbeatInterval: Type.Optional(Type.Integer({ minimum: 1000 })),
    drainTimeout: Type.Optional(Type.Integer({ minimum: 1 })),
    logLevel: Type.Optional(
      Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l))),
    ),
    limits: Type.Optional(LimitsSchema),
    tokens: Type.Optional(Type.Array(TokenSchema)),
    /** Web origins (`https://app.example.com`) whose pages may call the server; `*` for any. */
    corsOrigins: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
    /** Seals webhook secrets in the store (a passphrase; see docs/configuration.md). */
    secretsKey: Type.Optional(Type.String({ minLength: MIN_SECRETS_KEY_LENGTH })),
  },
  STRICT,
)

export type TokenConfig = Static<typeof TokenSchema>
export type ServerConfigInput = Static<typeof FileSchema>

export interface Limits {
  /** Largest request body and WebSocket frame, in bytes. */
  bodyBytes: number
  eventsPerRequest: number
  /** Bytes queued for one stream client before it is closed as too slow. */
  wsBufferBytes: number
  /** Per token; 0 turns the limit off. */
  requestsPerSecond: number
  /** Open streams (WebSocket and SSE) per token; 0 turns the limit off. */
  streamsPerToken: number
}

export interface ServerConfig {
  host: string
  port: number
  /** `memory`, `sqlite:<path>` or `redis://…` */
  store: string
  pingInterval: number
  sseHeartbeatInterval: number
  /** How long shutdown waits for deliveries already due, in ms. */
  drainTimeout: number
  logLevel: string
  limits: Limits
  tokens: TokenConfig[]
  /** Origins answered with CORS headers; none (the default): only pages of the server's own origin. */
  corsOrigins: string[]
  /** Webhook secrets are sealed in the store with it; absent (the default): kept in plain text. */
  secretsKey?: string
}

export const DEFAULT_CONFIG: Readonly<ServerConfig> = Object.freeze({
  host: '127.0.0.1',
  port: 8080,
  store: 'sqlite:./herald-data/herald.db',
  pingInterval: 30_000,
  sseHeartbeatInterval: 15_000,
  drainTimeout: 10_000,
  logLevel: 'info',
  limits: Object.freeze({
    bodyBytes: 256 * 1024,
    eventsPerRequest: 1000,
    wsBufferBytes: 8 * 1024 * 1024,
    requestsPerSecond: 10_000,
    streamsPerToken: 1000,
  }),
  tokens: [],
  corsOrigins: [],
})

/** `*`, or an origin: scheme, host and port only, as a browser sends it in `Origin`. */
const ORIGIN = /^https?:\/\/[^/\s?#]+$/

function checkOrigins(origins: readonly string[], where: string): void {
  for (const origin of origins) {
    if (origin !== '*' && !ORIGIN.test(origin))
      throw new HeraldError(
        'invalid_option',
        `${where}: ${JSON.stringify(origin)} is not an origin like https://app.example.com (scheme, host and port, no path) or *`,
      )
  }
}

function check(input: unknown, origin: string): ServerConfigInput {
  if (Value.Check(FileSchema, input)) {
    if (input.corsOrigins) checkOrigins(input.corsOrigins, `${origin}: corsOrigins`)
    return input
  }
  const first = Value.Errors(FileSchema, input).First()
  // A choice of words (logLevel) says which: "Expected union value" does not.
  const choices = (first?.schema as { anyOf?: { const?: unknown }[] } | undefined)?.anyOf
  const message =
    choices && choices.length > 0 && choices.every((choice) => typeof choice.const === 'string')
      ? `must be one of ${choices.map((choice) => String(choice.const)).join(', ')}`
      : first?.message
  const where = first ? `${first.path || '/'}: ${message}` : 'invalid'
  throw new HeraldError('invalid_option', `${origin}: ${where}`)
}

/** Reads and validates a configuration file. */
export function readConfigFile(path: string): ServerConfigInput {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw new HeraldError(
      'invalid_option',
      `cannot read the configuration file ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`,
    )
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new HeraldError('invalid_option', `${path} is not JSON: ${(error as Error).message}`)
  }
  return check(parsed, path)
}

const ENV_NUMBERS = {
  HERALD_PORT: ['port'],
  HERALD_PING_INTERVAL: ['pingInterval'],
  HERALD_SSE_HEARTBEAT_INTERVAL: ['sseHeartbeatInterval'],
  HERALD_DRAIN_TIMEOUT: ['drainTimeout'],
  HERALD_BODY_BYTES: ['limits', 'bodyBytes'],
  HERALD_EVENTS_PER_REQUEST: ['limits', 'eventsPerRequest'],
  HERALD_WS_BUFFER_BYTES: ['limits', 'wsBufferBytes'],
  HERALD_REQUESTS_PER_SECOND: ['limits', 'requestsPerSecond'],
  HERALD_STREAMS_PER_TOKEN: ['limits', 'streamsPerToken'],
} as const

const ENV_STRINGS = {
  HERALD_HOST: 'host',
  HERALD_STORE: 'store',
  HERALD_LOG_LEVEL: 'logLevel',
  HERALD_SECRETS_KEY: 'secretsKey',
} as const

/** The settings `HERALD_*` variables give (HERALD_TOKENS is a JSON array of tokens). */
export function configFromEnv(env: NodeJS.ProcessEnv): ServerConfigInput {
  const out: Record<string, unknown> = {}
  const limits: Record<string, unknown> = {}
  for (const [name, key] of Object.entries(ENV_STRINGS)) {
    const value = env[name]
    if (value !== undefined && value !== '') out[key] = value
  }
  for (const [name, path] of Object.entries(ENV_NUMBERS)) {
    const value = env[name]
    if (value === undefined || value === '') continue
    const number = Number(value)
    if (!Number.isFinite(number))
      throw new HeraldError('invalid_option', `${name} must be a number, got ${JSON.stringify(value)}`)
    if (path.length === 2) limits[path[1]] = number
    else out[path[0]] = number
  }
  if (Object.keys(limits).length > 0) out.limits = limits
  if (env.HERALD_CORS_ORIGINS !== undefined && env.HERALD_CORS_ORIGINS !== '')
    out.corsOrigins = env.HERALD_CORS_ORIGINS.split(',')
      .map((origin) => origin.trim())
      .filter((origin) => origin !== '')
  if (env.HERALD_TOKENS !== undefined && env.HERALD_TOKENS !== '') {
    try {
      out.tokens = JSON.parse(env.HERALD_TOKENS)
    } catch (error) {
      throw new HeraldError(
        'invalid_option',
        `HERALD_TOKENS must be a JSON array of tokens: ${(error as Error).message}`,
      )
    }
  }
  return check(out, 'environment')
}

/** Later sources win, key by key (limits merge field by field; a tokens list replaces the earlier one). */
export function resolveConfig(...layers: (ServerConfigInput | undefined)[]): ServerConfig {
  const config: ServerConfig = {
    ...DEFAULT_CONFIG,
    limits: { ...DEFAULT_CONFIG.limits },
    tokens: [],
    corsOrigins: [],
  }
  for (const layer of layers) {
    if (!layer) continue
    const { limits, tokens, ...rest } = check(layer, 'configuration')
    for (const [key, value] of Object.entries(rest))
      if (value !== undefined) (config as unknown as Record<string, unknown>)[key] = value
    if (limits)
      for (const [key, value] of Object.entries(limits))
        if (value !== undefined) (config.limits as unknown as Record<string, unknown>)[key] = value
    if (tokens) config.tokens = tokens
  }
  return config
}

export interface LoadOptions {
  /** Settings from command-line flags (strongest). */
  flags?: ServerConfigInput
  /** A configuration file; else HERALD_CONFIG; else none. */
  configPath?: string
  env?: NodeJS.ProcessEnv
}

/** Flags > environment > file > defaults. */
export function loadConfig(options: LoadOptions = {}): ServerConfig {
  const env = options.env ?? process.env
  const path = options.configPath ?? (env.HERALD_CONFIG || undefined)
  const file = path !== undefined ? readConfigFile(path) : undefined
  return resolveConfig(file, configFromEnv(env), options.flags)
}
