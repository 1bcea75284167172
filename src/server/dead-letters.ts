import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'
import { HeraldError } from '../errors.js'
import { authenticate } from './auth.js'
import type { ServerContext } from './context.js'

const ListQuery = Type.Object(
  {
    subscriptionId: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    // Any whole number passes here: the bus says which are allowed (1 to 10,000), in its words.
    limit: Type.Optional(Type.String({ pattern: '^[0-9]+$', maxLength: 16 })),
  },
  { additionalProperties: true },
)
const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 2048 }) })

/** `/v1/dead-letters`: list, redrive, delete, in the admin token's tenant. */
export const deadLettersPlugin: FastifyPluginAsync<{ context: ServerContext }> = async (app, { context }) => {
  app.addHook('onRequest', authenticate(context.auth, { admin: true }))
  const deadLetters = (tenant: Parameters<typeof context.bus.scope>[0]) =>
    context.bus.scope(tenant).deadLetters

  app.get<{ Querystring: { subscriptionId?: string; limit?: string } }>(
    '/v1/dead-letters',
    { schema: { querystring: ListQuery } },
    async (request) => {
      const { subscriptionId, limit } = request.query
      const list = await deadLetters(request.principal.tenant).list({
        ...(subscriptionId !== undefined ? { subscriptionId } : {}),
        ...(limit !== undefined ? { limit: Number(limit) } : {}),
      })
      return { deadLetters: list }
    },
  )

  app.post<{ Params: { id: string } }>(
    '/v1/dead-letters/:id/redrive',
    { schema: { params: IdParams } },
    async (request) => {
      if (!(await deadLetters(request.principal.tenant).redrive(request.params.id))) {
        throw new HeraldError(
          'not_found',
          `no dead letter ${JSON.stringify(request.params.id)} in this tenant`,
        )
      }
      return { redriven: true }
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/v1/dead-letters/:id',
    { schema: { params: IdParams } },
    async (request, reply) => {
      if (!(await deadLetters(request.principal.tenant).delete(request.params.id))) {
        throw new HeraldError(
          'not_found',
          `no dead letter ${JSON.stringify(request.params.id)} in this tenant`,
        )
      }
      return reply.code(204).send()
    },
  )
}
