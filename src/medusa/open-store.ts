import { HeraldError } from '../errors.js'
import type { Logger } from '../logger.js'
import { parseStoreUrl } from '../server/store-url.js'
import { memoryStore } from '../stores/memory.js'
import { redisStore } from '../stores/redis/index.js'
import { sqliteStore } from '../stores/sqlite.js'
import type { Store } from '../stores/store.js'

/** Where the Medusa module keeps its events: a store URL from `medusa-config`, or a Store already built. */
export type StoreSpec =
  'memory' | `memory:${string}` | `sqlite:${string}` | `redis://${string}` | `rediss://${string}` | Store

export interface OpenedStore {
  store: Store
  /** The module created the store, so it closes it on shutdown; a store handed in belongs to the caller. */
  owned: boolean
}

export interface OpenStoreOptions {
  /** Redis key prefix; wins over a `?prefix=` in the URL. */
  prefix?: string
  /** Hears about a network store's connection losses and recoveries. */
  logger?: Logger
}

function isStore(value: unknown): value is Store {
  if (typeof value !== 'object' || value === null) return false
  const candidate = value as Partial<Store>
  return (
    typeof candidate.append === 'function' &&
    typeof candidate.claim === 'function' &&
    typeof candidate.watch === 'function'
  )
}

/**
 * Opens the store a module option names: a store URL as the server reads them (`memory`,
 * `sqlite:<path>`, `redis://…` / `rediss://…`), or a Store object. Synchronous, because Medusa
 * constructs module services synchronously; the stores connect and open lazily.
 */
export function openStore(spec: StoreSpec | undefined, options: OpenStoreOptions = {}): OpenedStore {
  if (spec === undefined) return { store: memoryStore(), owned: true }
  if (isStore(spec)) return { store: spec, owned: false }
  if (typeof spec !== 'string') {
    throw new HeraldError('invalid_option', `store must be a store URL or a Herald Store, got ${typeof spec}`)
  }
  const location = parseStoreUrl(spec)
  switch (location.kind) {
    case 'memory':
      return {
        store:
          location.maxEvents === undefined ? memoryStore() : memoryStore({ maxEvents: location.maxEvents }),
        owned: true,
      }
    case 'sqlite':
      return { store: sqliteStore({ path: location.path }), owned: true }
    case 'redis': {
      const prefix = options.prefix ?? location.prefix
      const store = redisStore({
        url: location.url,
        ...(prefix !== undefined ? { prefix } : {}),
        ...(options.logger ? { logger: options.logger } : {}),
      })
      return { store, owned: true }
    }
  }
}
