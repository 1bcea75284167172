import { HeraldError } from '../errors.js'
import * as herald from '../index.js'
import { memoryStore } from '../stores/memory.js'
import { sqliteStore } from '../stores/sqlite.js'
import type { Store } from '../stores/store.js'

/** Where the Medusa module keeps its events: a store URL from `medusa-config`, or a Store already built. */
export type StoreSpec = 'memory' | `sqlite:${string}` | `redis://${string}` | `rediss://${string}` | Store

export interface OpenedStore {
  store: Store
  /** The module created the store, so it closes it on shutdown; a store handed in belongs to the caller. */
  owned: boolean
}

type StoreFactory = (options: Record<string, unknown>) => Store

/**
 * The Redis store is looked up by export name rather than imported by name: the module then
 * builds whether or not this build of Herald includes it, and says so clearly when a URL asks
 * for it while it is missing.
 */
function factory(name: 'redisStore', kind: string): StoreFactory {
  const found = (herald as unknown as Record<string, unknown>)[name]
  if (typeof found !== 'function') {
    throw new HeraldError(
      'invalid_option',
      `store: the ${kind} store is not part of this build of Herald yet; use store: 'memory' or 'sqlite:<path>'`,
    )
  }
  return found as StoreFactory
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
 * Opens the store a module option names: `memory`, `sqlite:<path>`, `redis://…` / `rediss://…`
 * (with `prefix` for the Redis keys), or a Store object. Throws `invalid_option` for anything else.
 */
export function openStore(spec: StoreSpec | undefined, options: { prefix?: string } = {}): OpenedStore {
  if (spec === undefined || spec === 'memory') return { store: memoryStore(), owned: true }
  if (isStore(spec)) return { store: spec, owned: false }
  if (typeof spec === 'string') {
    if (spec.startsWith('sqlite:')) {
      const path = spec.slice('sqlite:'.length)
      if (path === '')
        throw new HeraldError(
          'invalid_option',
          "store: 'sqlite:' needs a file path, as in 'sqlite:./herald-data/medusa.db'",
        )
      return { store: sqliteStore({ path }), owned: true }
    }
    if (spec.startsWith('redis://') || spec.startsWith('rediss://')) {
      const redisOptions: Record<string, unknown> = { url: spec }
      if (options.prefix !== undefined) redisOptions.prefix = options.prefix
      return { store: factory('redisStore', 'Redis')(redisOptions), owned: true }
    }
  }
  throw new HeraldError(
    'invalid_option',
    `store must be 'memory', 'sqlite:<path>', 'redis://…' or a Herald Store, got ${typeof spec === 'string' ? JSON.stringify(spec) : typeof spec}`,
  )
}
