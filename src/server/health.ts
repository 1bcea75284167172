import type { FastifyPluginAsync } from 'fastify'
import { HeraldError } from '../errors.js'
import { authenticate } from './auth.js'
import type { ServerContext } from './context.js'
import { errorBody } from './errors.js'
import { StoreProbe } from './readiness.js'

/**
 * `/healthz` (the process answers), `/readyz` (it takes work: not shutting down, and the store
 * answers), `/metrics` (admin).
 */
export const healthPlugin: FastifyPluginAsync<{ context: ServerContext }> = async (app, { context }) => {
  const probe = new StoreProbe(context.bus.store)
  app.get('/healthz', async () => ({ status: 'ok' }))
  app.get('/readyz', async (_request, reply) => {
    // Once shutdown began, the root hook answers 503 `closed` before this route runs (app.ts).
    try {
      await probe.check()
    } catch (error) {
      return reply.code(503).send(errorBody(error as HeraldError))
    }
    return { status: 'ready', store: context.bus.store.kind }
  })
  app.register(async (admin) => {
    admin.addHook('onRequest', authenticate(context.auth, { admin: true }))
    admin.get('/metrics', async (_request, reply) =>
      reply.type(context.metrics.contentType).send(await context.metrics.render()),
    )
  })
}
