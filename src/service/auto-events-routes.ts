import { HeraldError } from '../errors.js'
import type { EventInput } from '../event.js'
import { assertTopic } from '../topic.js'

/** Which events one route raises (Volt MX "raise event on incoming request / outgoing response"). */
export interface AutoEventSpec {
  /** Topics raised when a request arrives; one `;`-separated string or an array. */
  request?: string | readonly string[]
  /** Topics raised once the response is sent. */
  response?: string | readonly string[]
  /** Names the operation in the payload; default: the route's schema `operationId`, else `METHOD /path`. */
  operationId?: string
}

export interface AutoEventRoute extends AutoEventSpec {
  /** The route as it was declared (`/orders/:id`); `:name` and `*` segments match any value. */
  path: string
  /** Default: every method. */
  method?: string | readonly string[]
}

/** A route's events, checked and ready. */
export interface CompiledSpec {
  request: string[]
  response: string[]
  operationId: string | undefined
}

/** What an auto event carries as its data (DESIGN §8). */
export interface AutoEventData {
  serviceId: string
  operationId: string
  method: string
  /** The request's path, without the query. */
  path: string
  /** The route it matched, as declared (`/orders/:id`). */
  route: string
  /** Request headers, minus credentials. */
  headers: Record<string, string | string[]>
  query: Record<string, string | string[]>
  /** The request's body (request events) or the response's (response events); JSON when it was JSON. */
  payload: unknown
  /** Response events only. */
  status?: number
  /** Response events only: from the request's arrival to the response's end. */
  durationMs?: number
}

/** Headers that carry credentials never travel in an event. */
export const REDACTED_HEADERS: readonly string[] = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-voltmx-authorization',
  'x-kony-authorization',
  'x-api-key',
  'x-auth-token',
  'x-csrf-token',
  'x-xsrf-token',
  'x-vtex-credential',
  'x-vtex-api-appkey',
  'x-vtex-api-apptoken',
  'webhook-signature',
]

/** Query parameters that carry credentials (browsers pass tokens there, OAuth its codes). */
export const REDACTED_QUERY: readonly string[] = [
  'token',
  'access_token',
  'refresh_token',
  'id_token',
  'api_key',
  'apikey',
  'x-voltmx-authorization',
  'password',
  'passwd',
  'secret',
  'client_secret',
  'code',
  'sig',
  'signature',
]

function topicsOf(value: unknown, field: string): string[] {
  if (value === undefined) return []
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list))
    throw new HeraldError('invalid_option', `${field} must be topics (a string or an array)`)
  const out: string[] = []
  for (const entry of list) {
    if (typeof entry !== 'string')
      throw new HeraldError('invalid_option', `${field} must list topics as strings`)
    for (const part of entry.split(';')) {
      const topic = part.trim()
      if (topic === '') continue
      try {
        assertTopic(topic)
      } catch (error) {
        throw new HeraldError('invalid_option', `${field}: ${(error as Error).message}`)
      }
      if (!out.includes(topic)) out.push(topic)
    }
  }
  return out
}

/** Checks a spec (from the plugin's routes or a Fastify route's `config.autoEvents`). */
export function compileSpec(spec: AutoEventSpec, where: string): CompiledSpec {
  if (typeof spec !== 'object' || spec === null) {
    throw new HeraldError(
      'invalid_option',
      `${where} must be an object { request?, response?, operationId? }`,
    )
  }
  const operationId = spec.operationId
  if (operationId !== undefined && (typeof operationId !== 'string' || operationId === '')) {
    throw new HeraldError('invalid_option', `${where}.operationId must be a non-empty string`)
  }
  return {
    request: topicsOf(spec.request, `${where}.request`),
    response: topicsOf(spec.response, `${where}.response`),
    operationId,
  }
}

interface CompiledRoute {
  route: string
  segments: string[]
  methods: Set<string> | undefined
  spec: CompiledSpec
}

/** The routes table: matches a method and a path (or a declared route) to its events. */
export class RouteTable {
  private readonly routes: CompiledRoute[]

  constructor(routes: readonly AutoEventRoute[]) {
    if (!Array.isArray(routes)) throw new HeraldError('invalid_option', 'routes must be an array')
    this.routes = routes.map((route: AutoEventRoute, i): CompiledRoute => {
      const where = `routes[${i}]`
      if (typeof route?.path !== 'string' || !route.path.startsWith('/')) {
        throw new HeraldError('invalid_option', `${where}.path must be a path starting with '/'`)
      }
      const listed: readonly string[] | undefined =
        typeof route.method === 'string' ? [route.method] : route.method
      const methods = listed === undefined ? undefined : new Set(listed.map((m) => String(m).toUpperCase()))
      return { route: route.path, segments: route.path.split('/'), methods, spec: compileSpec(route, where) }
    })
  }

  /** The first route declared as `declared` (Fastify knows the route a request matched). */
  byDeclaration(method: string, declared: string): { route: string; spec: CompiledSpec } | undefined {
    return this.routes.find((r) => r.route === declared && (!r.methods || r.methods.has(method)))
  }

  /** The first route whose pattern matches the request's path (plain `http`). */
  byPath(method: string, path: string): { route: string; spec: CompiledSpec } | undefined {
    const segments = path.split('/')
    return this.routes.find(
      (r) =>
        (!r.methods || r.methods.has(method)) &&
        (r.segments.length === segments.length || r.segments.at(-1) === '*') &&
        r.segments.every(
          (segment, i) =>
            segment === segments[i] ||
            (segments[i] !== undefined && segments[i] !== '' && (segment.startsWith(':') || segment === '*')),
        ),
    )
  }
}

export interface Redaction {
  headers: Set<string>
  query: Set<string>
}

export function redaction(
  extraHeaders: readonly string[] = [],
  extraQuery: readonly string[] = [],
): Redaction {
  return {
    headers: new Set([...REDACTED_HEADERS, ...extraHeaders.map((h) => h.toLowerCase())]),
    query: new Set([...REDACTED_QUERY, ...extraQuery.map((q) => q.toLowerCase())]),
  }
}

export function cleanHeaders(
  headers: Record<string, string | string[] | number | undefined>,
  redacted: Set<string>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || redacted.has(name.toLowerCase())) continue
    out[name] = typeof value === 'number' ? String(value) : value
  }
  return out
}

export function cleanQuery(
  search: URLSearchParams,
  redacted: Set<string>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of search) {
    // `token[]` and `token[0]` (PHP and Rails arrays) name the same secret as `token`.
    const lower = name.toLowerCase()
    const bracket = lower.indexOf('[')
    if (redacted.has(lower) || (bracket > 0 && redacted.has(lower.slice(0, bracket)))) continue
    const had = out[name]
    out[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value]
  }
  return out
}

/** A body as an event can carry it: parsed JSON, text, or null for nothing or binary. */
export function decodePayload(body: Buffer | string | undefined, contentType: string | undefined): unknown {
  if (body === undefined || body.length === 0) return null
  const text = typeof body === 'string' ? body : body.toString('utf8')
  const type = (contentType ?? '').toLowerCase()
  if (type.includes('json')) {
    try {
      return JSON.parse(text)
    } catch {
      return text
    }
  }
  if (type === '' || type.startsWith('text/') || type.includes('xml') || type.includes('form-urlencoded'))
    return text
  return null
}

/** Turns one observed request or response into the events its route raises. */
export function raiseAll(
  topics: readonly string[],
  type: 'request' | 'response',
  data: AutoEventData,
  sender: string | undefined,
  raise: (event: EventInput) => void,
): void {
  for (const topic of topics) {
    const event: EventInput = { topic, type, data }
    if (sender !== undefined) event.sender = sender
    raise(event)
  }
}
