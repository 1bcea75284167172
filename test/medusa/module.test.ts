import type { IEventBusModuleService } from '@medusajs/framework/types'
import { Module, Modules } from '@medusajs/framework/utils'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { isHeraldError, memoryStore } from '../../src/index.js'
import definition, { EVENT_BUS_MODULE, HeraldEventBusService } from '../../src/medusa/index.js'
import { openStore } from '../../src/medusa/open-store.js'
import { installPackaged, type Packaged } from './packaged.js'
import { captureLogger } from './support.js'

/** The last stdout line of a child script is its JSON report; Medusa may log before it. */
function report<T>(stdout: string): T {
  const lines = stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1]!) as T
}

function construct(options: unknown): HeraldEventBusService {
  return new HeraldEventBusService({ logger: captureLogger().sink }, options as never, {
    worker_mode: 'shared',
  })
}

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (error) {
    return isHeraldError(error) ? error.code : `not a HeraldError: ${String(error)}`
  }
  return undefined
}

describe('herald/medusa module definition', () => {
  it("has the shape Medusa's Module() builds for the event bus, under the event_bus key", () => {
    class Probe {}
    const reference = Module(Modules.EVENT_BUS, { service: Probe }) as Record<string, unknown>
    expect(Object.keys(definition).sort()).toEqual(Object.keys(reference).sort())
    expect(definition.linkable).toEqual(reference.linkable)
    expect(EVENT_BUS_MODULE).toBe(Modules.EVENT_BUS)
    const { idPrefixToEntityName: _ignored, ...expected } = (
      Probe.prototype as { __joinerConfig(): Record<string, unknown> }
    ).__joinerConfig()
    expect(HeraldEventBusService.prototype.__joinerConfig()).toEqual(expected)
  })

  it('can also be wrapped by Module() itself, keeping its own joiner config', () => {
    const wrapped = Module(Modules.EVENT_BUS, { service: HeraldEventBusService })
    expect(wrapped.service).toBe(HeraldEventBusService)
    expect(wrapped.service.prototype.__joinerConfig().serviceName).toBe('event_bus')
  })

  it('constructs as Medusa constructs module services and satisfies IEventBusModuleService', async () => {
    const service: IEventBusModuleService = new HeraldEventBusService(
      { logger: captureLogger().sink },
      {},
      { worker_mode: 'worker' },
    )
    for (const method of [
      'emit',
      'subscribe',
      'unsubscribe',
      'releaseGroupedEvents',
      'clearGroupedEvents',
      'addInterceptor',
      'removeInterceptor',
    ]) {
      expect(typeof (service as unknown as Record<string, unknown>)[method]).toBe('function')
    }
    await (service as HeraldEventBusService).__hooks.onApplicationShutdown()
  })

  it('constructs without a module declaration or a registered logger, falling back to console', async () => {
    // An awilix cradle throws on names that were never registered.
    const cradle = new Proxy(
      {},
      {
        get: (_, name) => {
          throw new Error(`${String(name)} is not registered`)
        },
      },
    )
    const service = new HeraldEventBusService(cradle, undefined, undefined)
    await service.__hooks.onApplicationShutdown()
  })
})

describe('herald/medusa logging', () => {
  it("writes no info line when Medusa's logger says info is off", async () => {
    const logs = captureLogger()
    const sink = { ...logs.sink, shouldLog: (level: string) => level !== 'info' }
    const service = new HeraldEventBusService(
      { logger: sink },
      { retry: { retries: 0 } },
      { worker_mode: 'shared' },
    )
    await service.emit({ name: 'quiet.event', data: 1 })
    expect(logs.info).toEqual([])
    await service.__hooks.onApplicationShutdown()
  })
})

describe('herald/medusa options', () => {
  it('refuses options of the Redis module with a pointer to the Herald equivalent', () => {
    expect(() => construct({ redisUrl: 'redis://localhost:6379' })).toThrow(
      /unknown option "redisUrl": give the Redis URL as store/,
    )
    expect(codeOf(() => construct({ jobOptions: {} }))).toBe('invalid_option')
  })

  it('refuses a bad retry policy, TTL, tenant or store URL at construction', () => {
    expect(() => construct({ retry: { retries: -1 } })).toThrow(/retry\.retries/)
    expect(codeOf(() => construct({ groupedEventsTTL: 0 }))).toBe('invalid_option')
    expect(codeOf(() => construct({ account: 'bad account' }))).toBe('invalid_tenant')
    expect(() => construct({ store: 'postgres://localhost/db' })).toThrow(/is not a store URL/)
    expect(codeOf(() => construct({ store: 'sqlite:' }))).toBe('invalid_option')
  })

  it('opens the store each URL names, with the prefix option over the URL', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'herald-medusa-open-'))
    const opened = [
      openStore('memory'),
      openStore(`sqlite:${join(dir, 'm.db')}`),
      openStore('redis://127.0.0.1:6379/?prefix=from-url', { prefix: 'from-option' }),
    ]
    expect(opened.map(({ store, owned }) => [store.kind, owned])).toEqual([
      ['memory', true],
      ['sqlite', true],
      ['redis', true],
    ])
    await Promise.all(opened.map(({ store }) => store.close()))
    rmSync(dir, { recursive: true, force: true })
  })

  it('uses a Store object handed in without closing it at shutdown', async () => {
    const store = memoryStore()
    const service = construct({ store })
    await service.emit({ name: 'kept', data: 1 })
    await service.__hooks.onApplicationShutdown()
    expect(await store.head({ account: 'default', workspace: 'master' })).toBeDefined()
    await store.close()
  })

  it('keeps tenants apart: two apps on one store see only their own events', async () => {
    const store = memoryStore()
    const shop = construct({ store, account: 'shop' })
    const outlet = construct({ store, account: 'outlet' })
    const seen: string[] = []
    outlet.subscribe('*', async (event) => void seen.push(event.name))
    await shop.emit({ name: 'shop.only', data: 1 })
    await outlet.emit({ name: 'outlet.only', data: 2 })
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(seen).toEqual(['outlet.only'])
    await Promise.all([shop.__hooks.onApplicationShutdown(), outlet.__hooks.onApplicationShutdown()])
    await store.close()
  })
})

describe("herald/medusa with its defaults, where apps' tests hold it to Medusa's local module", () => {
  it('has started every subscriber, ids or not, when emit resolves, calling each with the event alone', async () => {
    const service = construct({})
    const withId = vi.fn(async () => {})
    const withoutId = vi.fn(async () => {})
    service.subscribe('order.placed', withId, { subscriberId: 'notify' })
    service.subscribe('order.placed', withoutId)
    await service.emit({ name: 'order.placed', data: { id: 'o1' } })
    for (const subscriber of [withId, withoutId]) {
      expect(subscriber).toHaveBeenCalledWith({
        name: 'order.placed',
        data: { id: 'o1' },
        metadata: expect.objectContaining({ created_at: expect.any(Date) }),
      })
    }
    await service.__hooks.onApplicationShutdown()
  })

  it("passes Herald's context to a subscriber declared with a second parameter", async () => {
    const service = construct({})
    let signal: unknown
    service.subscribe('order.placed', async (_event: unknown, ctx?: { signal: AbortSignal }) => {
      signal = ctx?.signal
    })
    await service.emit({ name: 'order.placed', data: {} })
    expect(signal).toBeInstanceOf(AbortSignal)
    await service.__hooks.onApplicationShutdown()
  })

  it('releases and clears nothing, without an error, for a missing group id', async () => {
    const service = construct({})
    for (const id of [undefined, null, '']) {
      await service.releaseGroupedEvents(id as never)
      await service.clearGroupedEvents(id as never)
    }
    await service.__hooks.onApplicationShutdown()
  })

  it("takes an event of every id a bulk change touched (over the core's 1 MiB); maxPayloadBytes sets the limit", async () => {
    const ids = Array.from({ length: 60_000 }, (_, i) => `variant_${String(i).padStart(20, '0')}`)
    const service = construct({})
    const seen = vi.fn(async () => {})
    service.subscribe('product-variant.deleted', seen)
    await service.emit({ name: 'product-variant.deleted', data: { id: ids }, options: { internal: true } })
    expect(seen).toHaveBeenCalledTimes(1)
    await service.__hooks.onApplicationShutdown()

    const strict = construct({ maxPayloadBytes: 1024 })
    const error = await strict.emit({ name: 'big', data: { id: ids } }).catch((e: unknown) => e)
    expect(isHeraldError(error) && error.code).toBe('payload_too_large')
    await strict.__hooks.onApplicationShutdown()
    expect(codeOf(() => construct({ maxPayloadBytes: 0 }))).toBe('invalid_option')
  })
})

describe('herald/medusa as an installed package', () => {
  let packaged: Packaged

  beforeAll(async () => {
    packaged = await installPackaged()
  }, 120_000)

  afterAll(async () => {
    await packaged?.remove()
  })

  it('loads with require() and import() and works without @medusajs/framework installed', async () => {
    const result = report<{ same: boolean; got: string[]; medusaLoaded: boolean; medusaResolvable: boolean }>(
      await packaged.bare.run(`
        ;(async () => {
          const required = require('herald/medusa')
          const imported = await import('herald/medusa')
          const Service = required.default.service
          const service = new Service({}, { store: 'memory' }, { worker_mode: 'shared' })
          const got = []
          service.subscribe('order.placed', async (event) => { got.push(event.name) }, { subscriberId: 'probe' })
          await service.emit({ name: 'order.placed', data: { id: 1 } })
          while (got.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
          await service.__hooks.onApplicationShutdown()
          // The SQLite store loads better-sqlite3 from herald's own dependencies.
          const path = require('node:path').join(process.cwd(), 'medusa.db')
          const durable = new Service({}, { store: 'sqlite:' + path }, { worker_mode: 'shared' })
          durable.subscribe('order.placed', async (event) => { got.push('sqlite:' + event.name) }, { subscriberId: 'probe' })
          await durable.emit({ name: 'order.placed', data: { id: 2 } })
          while (got.length === 1) await new Promise((resolve) => setTimeout(resolve, 5))
          await durable.__hooks.onApplicationShutdown()
          let medusaResolvable = true
          try { require.resolve('@medusajs/framework') } catch { medusaResolvable = false }
          console.log(JSON.stringify({
            same: imported.default === required.default,
            got,
            medusaLoaded: Object.keys(require.cache).some((path) => path.includes('@medusajs')),
            medusaResolvable,
          }))
        })().catch((error) => { console.error(error); process.exit(1) })
      `),
    )
    expect(result).toEqual({
      same: true,
      got: ['order.placed', 'sqlite:order.placed'],
      medusaLoaded: false,
      medusaResolvable: false,
    })
  })

  it("is found by Medusa's defineConfig under event_bus and loaded by MedusaModule.bootstrap with its lifecycle", async () => {
    interface Report {
      arrayForm: unknown
      objectForm: unknown
      className: string
      key: string
      got: unknown[]
      afterShutdown: string
      injectedLogger: boolean
    }
    const result = report<Report>(
      await packaged.medusa.run(`
        const { MedusaModule } = require('@medusajs/framework/modules-sdk')
        const { defineConfig, Modules } = require('@medusajs/framework/utils')
        ;(async () => {
          const options = { store: 'memory', retry: { retries: 1 } }
          const arrayForm = defineConfig({ modules: [{ resolve: 'herald/medusa', options }] }).modules[Modules.EVENT_BUS]
          const objectForm = defineConfig({ modules: { [Modules.EVENT_BUS]: { resolve: 'herald/medusa', options } } }).modules[Modules.EVENT_BUS]
          const lines = []
          const logger = { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m), debug: () => {} }
          const loaded = await MedusaModule.bootstrap({
            moduleKey: Modules.EVENT_BUS,
            defaultPath: arrayForm.resolve,
            declaration: arrayForm,
            injectedDependencies: { logger },
            workerMode: 'worker',
          })
          const service = loaded[Modules.EVENT_BUS]
          const got = []
          service.subscribe('product.created', async (event) => { got.push({ name: event.name, data: event.data }) }, { subscriberId: 'probe' })
          await MedusaModule.onApplicationStart()
          await service.emit({ name: 'product.created', data: { id: 'prod_1' } })
          while (got.length === 0) await new Promise((resolve) => setTimeout(resolve, 5))
          await MedusaModule.onApplicationPrepareShutdown()
          await MedusaModule.onApplicationShutdown()
          let afterShutdown = 'accepted'
          try { await service.emit({ name: 'product.created', data: {} }) } catch (error) { afterShutdown = error.code }
          console.log(JSON.stringify({
            arrayForm, objectForm,
            className: service.constructor.name,
            key: service.__definition.key,
            got, afterShutdown,
            injectedLogger: lines.some((line) => line.includes('herald: emitted product.created')),
          }))
        })().catch((error) => { console.error(error); process.exit(1) })
      `),
    )
    const declared = { resolve: 'herald/medusa', options: { store: 'memory', retry: { retries: 1 } } }
    expect(result).toEqual({
      arrayForm: declared,
      objectForm: declared,
      className: 'HeraldEventBusService',
      key: 'event_bus',
      got: [{ name: 'product.created', data: { id: 'prod_1' } }],
      afterShutdown: 'closed',
      injectedLogger: true,
    })
  })
})
