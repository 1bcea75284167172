import type { FastifyError, FastifyInstance } from 'fastify'
import { HeraldError, isHeraldError } from '../errors.js'
import type { Logger } from '../logger.js'

/** The body of every error answer, and of a stream's `error` frame. */
export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> }
}

/** Fastify's own failures, as Herald error codes (the statuses then come from ERROR_CODES). */
const FASTIFY_CODES: Record<string, HeraldError['code']> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'payload_too_large',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_INVALID_TYPE: 'unsupported_media_type',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'invalid_request',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'invalid_request',
  FST_ERR_CTP_INVALID_JSON_BODY: 'invalid_request',
  FST_ERR_VALIDATION: 'invalid_request',
}

/** Any thrown value as a HeraldError: Herald's own pass through, the parser's and Fastify's are mapped, the rest are `internal`. */
export function toHeraldError(error: unknown): HeraldError {
  if (isHeraldError(error)) return error
  const fastify = error as Partial<FastifyError> & { validation?: unknown }
  if (fastify.validation) return new HeraldError('invalid_request', validationMessage(fastify))
  const code = fastify.code !== undefined ? FASTIFY_CODES[fastify.code] : undefined
  if (code) return new HeraldError(code, fastify.message ?? code)
  // The JSON parser's SyntaxError: its message says where the body broke.
  if (error instanceof SyntaxError || fastify.statusCode === 400)
    return new HeraldError('invalid_request', (error as Error).message)
  if (fastify.statusCode === 413) return new HeraldError('payload_too_large', (error as Error).message)
  if (fastify.statusCode === 415) return new HeraldError('unsupported_media_type', (error as Error).message)
  return new HeraldError('internal', 'internal error')
}

/**
 * The schema validator's message, naming the field where it does not: "must NOT have additional
 * properties" says nothing of which one (a misspelt `retyr`, say).
 */
function validationMessage(error: Partial<FastifyError> & { validation?: unknown }): string {
  const message = error.message ?? 'invalid request'
  const first = Array.isArray(error.validation)
    ? (error.validation[0] as { keyword?: unknown; params?: { additionalProperty?: unknown } } | undefined)
    : undefined
  const field = first?.keyword === 'additionalProperties' ? first.params?.additionalProperty : undefined
  return typeof field === 'string' ? `${message}: ${JSON.stringify(field)} is not a known field` : message
}

export function errorBody(error: HeraldError): ErrorBody {
  return { error: error.toJSON() }
}

/** Maps errors to statuses once, for every route; unknown failures are logged and answered 500. */
export function installErrorHandling(app: FastifyInstance, logger: Logger): void {
  app.setErrorHandler((error, request, reply) => {
    const herald = toHeraldError(error)
    if (herald.code === 'internal') {
      logger.error({ err: error, method: request.method, route: request.routeOptions.url }, 'request failed')
    }
    const retryAfter = herald.details?.retryAfter
    if (typeof retryAfter === 'number') void reply.header('retry-after', String(retryAfter))
    void reply.code(herald.status).send(errorBody(herald))
  })
  app.setNotFoundHandler((request, reply) => {
    const error = new HeraldError('not_found', `no route ${request.method} ${request.url.split('?')[0]}`)
    void reply.code(error.status).send(errorBody(error))
  })
}
