import { HeraldError } from '../errors.js'
import { memoryStore } from '../stores/memory.js'
import { redisStore } from '../stores/redis/index.js'
import { sqliteStore } from '../stores/sqlite.js'
import type { Logger } from '../logger.js'
import type { Store } from '../stores/store.js'

/**
 * Store URLs, the one place the server turns its `store` setting into a Store:
 * - `memory` or `memory:?maxEvents=N`: nothing survives the process (tests, ephemeral use);
 * - `sqlite:<path>` (the server default, `sqlite:./herald-data/herald.db`);
 * - `redis://…` / `rediss://…` (with an optional `?prefix=` for the key prefix).
 */
export type StoreLocation =
  | { kind: 'memory'; maxEvents?: number }
  | { kind: 'sqlite'; path: string }
  | { kind: 'redis'; url: string; prefix?: string }

export function parseStoreUrl(url: string): StoreLocation {
  const text = url.trim()
  if (text === 'memory' || text.startsWith('memory:')) {
    const query = text.indexOf('?')
    const params = new URLSearchParams(query === -1 ? '' : text.slice(query + 1))
    const maxEvents = params.get('maxEvents')
    if (maxEvents === null) return { kind: 'memory' }
    const value = Number(maxEvents)
    if (!Number.isInteger(value) || value < 1)
      throw new HeraldError('invalid_option', `store ${url}: maxEvents must be a positive integer`)
    return { kind: 'memory', maxEvents: value }
  }
  if (text.startsWith('sqlite:')) {
    const path = text.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '')
    if (path === '')
      throw new HeraldError(
        'invalid_option',
        `store ${url}: give a file path, as in sqlite:./herald-data/herald.db`,
      )
    return { kind: 'sqlite', path }
  }
  if (text.startsWith('redis://') || text.startsWith('rediss://')) {
    const parsed = new URL(text)
    const prefix = parsed.searchParams.get('prefix') ?? undefined
    parsed.searchParams.delete('prefix')
    return prefix === undefined
      ? { kind: 'redis', url: parsed.toString() }
      : { kind: 'redis', url: parsed.toString(), prefix }
  }
  throw new HeraldError(
    'invalid_option',
    `store ${JSON.stringify(url)} is not a store URL: use memory, sqlite:<path> or redis://host:port`,
  )
}

/** Opens the store a URL names; `logger` hears about a network store's connection losses and recoveries. */
export async function openStore(url: string, logger?: Logger): Promise<Store> {
  const location = parseStoreUrl(url)
  switch (location.kind) {
    case 'memory':
      return location.maxEvents === undefined ? memoryStore() : memoryStore({ maxEvents: location.maxEvents })
    case 'sqlite':
      return sqliteStore({ path: location.path })
    case 'redis':
      return redisStore({
        url: location.url,
        ...(location.prefix !== undefined ? { prefix: location.prefix } : {}),
        ...(logger ? { logger } : {}),
      })
  }
}
