import type { FastifyRequest, onRequestHookHandler } from 'fastify'
import { HeraldError } from '../errors.js'
import { DEFAULT_TENANT, assertTenant, type Tenant } from '../event.js'
import { WILDCARD, compileMatcher, parsePattern, splitPatterns } from '../topic.js'
import type { TokenConfig } from './config.js'
import { TokenBucket } from './rate-limit.js'

/** Who a request acts as: a configured token, or everyone when the server runs open. */
export interface Principal {
  /** For logs: `token 2 (acme/master)`, never the token itself. */
  readonly name: string
  readonly tenant: Tenant
  readonly admin: boolean
  /** Events published with this principal carry this sender, whatever they claim. */
  readonly sender: string | undefined
  mayPublish(topic: string): boolean
  /** True when every topic `pattern` matches is inside the token's subscribe list. */
  maySubscribe(pattern: string): boolean
  /** Counts one request against the rate limit; throws `rate_limited` past it. */
  charge(): void
  /**
   * Takes one of the token's open streams until `release` is called; throws `too_many_streams`
   * when it holds as many as its limit allows.
   */
  openStream(): { release(): void }
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal
  }
}

/** Does `allowed` match every topic that `requested` matches? Both are valid patterns. */
export function patternCovers(allowed: string, requested: string): boolean {
  if (allowed === WILDCARD) return true
  if (requested === WILDCARD) return false
  const a = parsePattern(allowed)
  const r = parsePattern(requested)
  if (a.length > r.length) return false
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== WILDCARD && a[i] !== r[i]) return false
  }
  return true
}

class TokenPrincipal implements Principal {
  private readonly publishMatcher: (topic: string) => boolean
  private readonly subscribeList: string[]
  private readonly bucket: TokenBucket | undefined
  private openStreams = 0

  constructor(
    readonly name: string,
    readonly tenant: Tenant,
    readonly admin: boolean,
    readonly sender: string | undefined,
    publish: string[],
    subscribe: string[],
    requestsPerSecond: number,
    /** 0: no limit. */
    private readonly maxStreams: number,
  ) {
    this.publishMatcher = publish.length === 0 ? () => false : compileMatcher(publish)
    this.subscribeList = subscribe
    this.bucket = requestsPerSecond > 0 ? new TokenBucket(requestsPerSecond) : undefined
  }

  mayPublish(topic: string): boolean {
    return this.publishMatcher(topic)
  }

  maySubscribe(pattern: string): boolean {
    return this.subscribeList.some((allowed) => patternCovers(allowed, pattern))
  }

  charge(): void {
    if (this.bucket && !this.bucket.take()) {
      const retryAfter = this.bucket.retryAfter()
      throw new HeraldError(
        'rate_limited',
        `${this.name} exceeded its rate limit; retry in ${retryAfter} s`,
        { retryAfter },
      )
    }
  }

  openStream(): { release(): void } {
    if (this.maxStreams > 0 && this.openStreams >= this.maxStreams) {
      throw new HeraldError(
        'too_many_streams',
        `${this.name} already holds ${this.openStreams} open streams, its limit; close one first`,
        { limit: this.maxStreams },
      )
    }
    this.openStreams++
    let held = true
    return {
      release: () => {
        if (held) {
          held = false
          this.openStreams--
        }
      },
    }
  }
}

function openPrincipal(tenant: Tenant): Principal {
  return new TokenPrincipal('open server', tenant, true, undefined, [WILDCARD], [WILDCARD], 0, 0)
}

const OPEN = openPrincipal(DEFAULT_TENANT)

/**
 * The token table. Logs name a token by its position and tenant, never by its value. (Tokens
 * are Map keys: a lookup hashes the whole probe, so its timing does not reveal a prefix.)
 */
export class Authenticator {
  private readonly principals = new Map<string, Principal>()

  constructor(
    tokens: readonly TokenConfig[],
    defaults: { requestsPerSecond: number; streamsPerToken: number },
  ) {
    tokens.forEach((entry, i) => {
      const where = `tokens[${i}]`
      let tenant: Tenant
      try {
        tenant = assertTenant({
          account: entry.account ?? DEFAULT_TENANT.account,
          workspace: entry.workspace ?? DEFAULT_TENANT.workspace,
        })
      } catch (error) {
        throw new HeraldError('invalid_option', `${where}: ${(error as Error).message}`)
      }
      const patterns = (field: 'publish' | 'subscribe'): string[] => {
        const list = entry[field] ?? [WILDCARD]
        try {
          return list.length === 0 ? [] : splitPatterns(list)
        } catch (error) {
          throw new HeraldError('invalid_option', `${where}.${field}: ${(error as Error).message}`)
        }
      }
      if (this.principals.has(entry.token))
        throw new HeraldError('invalid_option', `${where} repeats an earlier token`)
      const principal = new TokenPrincipal(
        `token ${i} (${tenant.account}/${tenant.workspace})`,
        tenant,
        entry.admin === true,
        entry.sender,
        patterns('publish'),
        patterns('subscribe'),
        entry.requestsPerSecond ?? defaults.requestsPerSecond,
        entry.streamsPerToken ?? defaults.streamsPerToken,
      )
      this.principals.set(entry.token, principal)
    })
  }

  /** No tokens configured: every request acts in the default tenant with every right. */
  get open(): boolean {
    return this.principals.size === 0
  }

  /**
   * The principal acting in a tenant a request names (in its path): an open server acts in any
   * tenant; a token only in its own (`forbidden` otherwise).
   */
  inTenant(principal: Principal, tenant: Tenant): Principal {
    if (this.open) return openPrincipal(tenant)
    if (principal.tenant.account !== tenant.account || principal.tenant.workspace !== tenant.workspace) {
      throw new HeraldError(
        'forbidden',
        `${principal.name} may not act in ${tenant.account}/${tenant.workspace}`,
      )
    }
    return principal
  }

  /** The principal a token stands for; `unauthorized` when it is missing or unknown. */
  resolve(token: string | undefined): Principal {
    if (this.open) return OPEN
    if (token === undefined || token === '') {
      throw new HeraldError(
        'unauthorized',
        'a token is required: send Authorization: Bearer <token> or X-VoltMX-Authorization',
      )
    }
    const principal = this.principals.get(token)
    if (!principal) throw new HeraldError('unauthorized', 'unknown token')
    return principal
  }
}

const QUERY_TOKEN_NAMES = ['token', 'x-voltmx-authorization']

/**
 * The token a request carries: `Authorization: Bearer`, `X-VoltMX-Authorization`, and, where
 * `fromQuery` (WebSocket and SSE, which browsers open without headers), the `token` or
 * `X-Voltmx-Authorization` query parameter.
 */
export function requestToken(request: FastifyRequest, fromQuery: boolean): string | undefined {
  // Another scheme there (a proxy's Basic credentials, say) is not Herald's: look on.
  const bearer = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')
  if (bearer) return bearer[1]
  const voltmx = request.headers['x-voltmx-authorization']
  if (typeof voltmx === 'string') return voltmx.trim()
  if (fromQuery) {
    const query = request.query as Record<string, unknown> | undefined
    for (const [name, value] of Object.entries(query ?? {})) {
      if (typeof value === 'string' && QUERY_TOKEN_NAMES.includes(name.toLowerCase())) return value
    }
  }
  return undefined
}

export interface AuthOptions {
  /** Accept the token as a query parameter (streams only). */
  query?: boolean
  /** Only admin tokens. */
  admin?: boolean
}

/** An onRequest hook: resolves the principal, charges its rate limit, checks admin. */
export function authenticate(auth: Authenticator, options: AuthOptions = {}): onRequestHookHandler {
  const fromQuery = options.query === true
  const admin = options.admin === true
  return function checkToken(request, _reply, done) {
    try {
      const principal = auth.resolve(requestToken(request, fromQuery))
      if (admin && !principal.admin) throw new HeraldError('forbidden', 'this endpoint needs an admin token')
      principal.charge()
      request.principal = principal
      done()
    } catch (error) {
      done(error as Error)
    }
  }
}
