import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { HeraldError } from '../errors.js'
import { authenticate } from './auth.js'
import type { ServerContext } from './context.js'

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) })

/** `POST /v1/subscriptions`; the registry checks patterns, URL, policy and secret and names what is wrong. */
const SubscriptionBody = Type.Object(
  {
    id: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    patterns: Type.Union([Type.String(), Type.Array(Type.String(), { minItems: 1, maxItems: 1000 })]),
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    sender: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    retry: Type.Optional(Type.Object({}, { additionalProperties: true })),
    format: Type.Optional(Type.Union([Type.Literal('herald'), Type.Literal('cloudevents')])),
    secret: Type.Optional(Type.String({ maxLength: 256 })),
  },
  { additionalProperties: false },
)
type SubscriptionBody = Static<typeof SubscriptionBody>

/**
 * `/v1/subscriptions`: webhook subscriptions (admin only), one endpoint for some patterns,
 * delivered as Herald JSON or CloudEvents, signed per Standard Webhooks (docs/apps.md).
 * POST with an existing id updates it and keeps its place in the log.
 */
export const webhooksPlugin: FastifyPluginAsync<{ context: ServerContext }> = async (app, { context }) => {
  const { webhooks } = context
  app.addHook('onRequest', authenticate(context.auth, { admin: true }))

  app.post<{ Body: SubscriptionBody }>(
    '/v1/subscriptions',
    { schema: { body: SubscriptionBody } },
    async (request, reply) => {
      const { subscription, created } = await webhooks.putSubscription(request.principal.tenant, request.body)
      return reply.code(created ? 201 : 200).send(subscription)
    },
  )

  app.get('/v1/subscriptions', async (request) => ({
    subscriptions: await webhooks.listSubscriptions(request.principal.tenant),
  }))

  app.get<{ Params: { id: string } }>(
    '/v1/subscriptions/:id',
    { schema: { params: IdParams } },
    async (request) => {
      const found = await webhooks.getSubscription(request.principal.tenant, request.params.id)
      if (!found) {
        throw new HeraldError(
          'not_found',
          `no subscription ${JSON.stringify(request.params.id)} in this tenant`,
        )
      }
      return found
    },
  )

  app.delete<{ Params: { id: string } }>(
    '/v1/subscriptions/:id',
    { schema: { params: IdParams } },
    async (request, reply) => {
      if (!(await webhooks.deleteSubscription(request.principal.tenant, request.params.id))) {
        throw new HeraldError(
          'not_found',
          `no subscription ${JSON.stringify(request.params.id)} in this tenant`,
        )
      }
      return reply.code(204).send()
    },
  )
}
