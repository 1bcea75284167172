import type { FastifyPluginAsync } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { HeraldError } from '../errors.js'
import { authenticate } from './auth.js'
import type { ServerContext } from './context.js'

const AppParams = Type.Object({ app: Type.String({ minLength: 1, maxLength: 100 }) })

/** `PUT /v1/apps/:app`; the registry checks the manifest, URL, policy and secret and names what is wrong. */
const AppBody = Type.Object(
  {
    url: Type.String({ minLength: 1, maxLength: 2048 }),
    manifest: Type.Object({}, { additionalProperties: true }),
    retry: Type.Optional(Type.Object({}, { additionalProperties: true })),
    secret: Type.Optional(Type.String({ maxLength: 256 })),
    credential: Type.Optional(Type.String({ maxLength: 4096 })),
  },
  { additionalProperties: false },
)
type AppBody = Static<typeof AppBody>

/**
 * `/v1/apps`: register an app's manifest and base URL (admin only). Each handler becomes the
 * durable subscription `app:<app>:<handler>` in the token's tenant, delivered with the VTEX IO
 * wire protocol (docs/apps.md).
 */
export const appsPlugin: FastifyPluginAsync<{ context: ServerContext }> = async (app, { context }) => {
  const { webhooks } = context
  app.addHook('onRequest', authenticate(context.auth, { admin: true }))

  app.put<{ Params: { app: string }; Body: AppBody }>(
    '/v1/apps/:app',
    { schema: { params: AppParams, body: AppBody } },
    async (request, reply) => {
      const { app: registered, created } = await webhooks.putApp(
        request.principal.tenant,
        request.params.app,
        request.body,
      )
      return reply.code(created ? 201 : 200).send(registered)
    },
  )

  app.get('/v1/apps', async (request) => ({ apps: await webhooks.listApps(request.principal.tenant) }))

  app.get<{ Params: { app: string } }>(
    '/v1/apps/:app',
    { schema: { params: AppParams } },
    async (request) => {
      const found = await webhooks.getApp(request.principal.tenant, request.params.app)
      if (!found)
        throw new HeraldError('not_found', `no app ${JSON.stringify(request.params.app)} in this tenant`)
      return found
    },
  )

  app.delete<{ Params: { app: string } }>(
    '/v1/apps/:app',
    { schema: { params: AppParams } },
    async (request, reply) => {
      if (!(await webhooks.deleteApp(request.principal.tenant, request.params.app))) {
        throw new HeraldError('not_found', `no app ${JSON.stringify(request.params.app)} in this tenant`)
      }
      return reply.code(204).send()
    },
  )
}
