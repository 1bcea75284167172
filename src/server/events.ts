import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'
import { HeraldError } from '../errors.js'
import { authenticate } from './auth.js'
import { eventsBodySchema, registerEventBodyParsers, type EventsBody } from './bodies.js'
import type { ServerContext } from './context.js'
import { publish } from './publish.js'

export const IdsSchema = Type.Object({ ids: Type.Array(Type.String()) })

/** `POST /v1/events` (every publish shape) and `GET /v1/events/:id` (the event and its delivery status). */
export const eventsPlugin: FastifyPluginAsync<{ context: ServerContext }> = async (app, { context }) => {
  const { bus, config } = context
  registerEventBodyParsers(app)
  app.addHook('onRequest', authenticate(context.auth))

  app.post<{ Body: EventsBody }>(
    '/v1/events',
    { schema: { body: eventsBodySchema(config.limits.eventsPerRequest), response: { 202: IdsSchema } } },
    async (request, reply) => {
      const ids = await publish(bus, request.principal, request.body.events, config.limits.eventsPerRequest)
      return reply.code(202).send({ ids })
    },
  )

  app.get<{ Params: { id: string } }>(
    '/v1/events/:id',
    { schema: { params: Type.Object({ id: Type.String({ minLength: 1, maxLength: 256 }) }) } },
    async (request) => {
      const { principal } = request
      const status = await bus.scope(principal.tenant).status(request.params.id)
      // An event the token may neither publish nor read is as invisible as another tenant's.
      if (
        !status ||
        !(
          principal.admin ||
          principal.maySubscribe(status.event.topic) ||
          principal.mayPublish(status.event.topic)
        )
      ) {
        throw new HeraldError('not_found', `no event ${JSON.stringify(request.params.id)} in this tenant`)
      }
      if (principal.admin) return status
      // A failure's text comes from the subscriber (a webhook's answer): only admins, who set the
      // subscriptions up, read it; a publisher sees where its event stands.
      return {
        event: status.event,
        deliveries: status.deliveries.map(({ lastError: _withheld, ...delivery }) => delivery),
      }
    },
  )
}
