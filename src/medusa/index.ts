/**
 * `herald/medusa`: Herald as Medusa v2's Event Module.
 *
 * ```ts
 * // medusa-config.ts
 * modules: [{ resolve: 'herald/medusa', options: { store: process.env.HERALD_STORE } }]
 * ```
 *
 * The default export is the module definition in the shape Medusa's `Module()` builds
 * (`{ service, loaders, linkable }`, and a joiner config naming the `event_bus` key), written out
 * here so that loading it needs nothing from `@medusajs/framework` at run time: Medusa's types
 * are imported for type checking only.
 */
import type { ModuleExports } from '@medusajs/framework/types'
import { EVENT_BUS_MODULE, HeraldEventBusService } from './service.js'

export type HeraldMedusaModule = ModuleExports<typeof HeraldEventBusService> & {
  linkable: Record<string, never>
}

// Not frozen: Medusa's loader writes `discoveryPath` onto the definition it loads.
const definition: HeraldMedusaModule = { service: HeraldEventBusService, loaders: [], linkable: {} }

export default definition
export { HeraldEventBusService, EVENT_BUS_MODULE }
export type { HeraldModuleDeclaration, HeraldSubscriberContext } from './service.js'
export type { HeraldMedusaOptions } from './options.js'
export { DEFAULT_GROUPED_EVENTS_TTL_SECONDS, MEDUSA_RETRY_POLICY } from './options.js'
export type { StoreSpec } from './open-store.js'
export { subscriptionIdFor } from './names.js'
