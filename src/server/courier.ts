import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'
import { assertTenant } from '../event.js'
import { authenticate, type Principal } from './auth.js'
import { explainingJsonParser } from './bodies.js'
import type { ServerContext } from './context.js'
import { IdsSchema } from './events.js'
import { publish } from './publish.js'

/** `@vtex/api` sends its app id as the user agent: `vendor.app@version`. */
const APP_USER_AGENT = /^([A-Za-z0-9-]+\.[A-Za-z0-9-]+@[0-9][^\s]*)/

/** The sender of a courier event: the token's app, else the `vendor.app@version` of the user agent. */
export function courierSender(principal: Principal, userAgent: string | undefined): string | undefined {
  if (principal.sender !== undefined) return principal.sender
  return userAgent === undefined ? undefined : APP_USER_AGENT.exec(userAgent)?.[1]
}

const CourierParams = Type.Object({
  account: Type.String(),
  workspace: Type.String(),
  key: Type.String({ minLength: 1 }),
})

/**
 * `PUT /courier/v0/:account/:workspace/events/:key` (VTEX IO compatible): the body is the
 * event's data, the key its topic. The path's tenant must be the token's (an open server takes it as given).
 */
export const courierPlugin: FastifyPluginAsync<{ context: ServerContext }> = async (app, { context }) => {
  const json = explainingJsonParser(app)
  app.removeAllContentTypeParsers()
  // The bodies VTEX's courier takes (co-body's JSON, form and text). `sendEvent` without a message
  // sends an empty form: like an empty body of any kind it is `{}`, which is what VTEX hands on
  // (an app built on @vtex/api refuses anything but an object or an array).
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if ((body as string).trim() === '') return done(null, {})
    json(request, body as string, done)
  })
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
  )
  app.addContentTypeParser(/^text\//, { parseAs: 'string' }, (_request, body, done) =>
    done(null, (body as string) === '' ? {} : body),
  )
  app.addHook('onRequest', authenticate(context.auth))

  app.put<{ Params: { account: string; workspace: string; key: string } }>(
    '/courier/v0/:account/:workspace/events/:key',
    { schema: { params: CourierParams, response: { 202: IdsSchema } } },
    async (request, reply) => {
      const { principal } = request
      const tenant = assertTenant({ account: request.params.account, workspace: request.params.workspace })
      const acting = context.auth.inTenant(principal, tenant)
      const sender = courierSender(principal, request.headers['user-agent'])
      // The operation the event belongs to, which apps pass on from the event that made them send it.
      const operationId = request.headers['x-vtex-operation-id']
      const event = {
        topic: request.params.key,
        data: request.body === undefined || request.body === null ? {} : request.body,
        ...(sender ? { sender } : {}),
        ...(typeof operationId === 'string' && operationId !== '' ? { metadata: { operationId } } : {}),
      }
      const ids = await publish(context.bus, acting, [event], 1)
      return reply.code(202).send({ ids })
    },
  )
}
