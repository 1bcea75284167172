import { ERROR_CODES, HeraldError, type HeraldErrorCode } from '../errors.js'

/** A status the server answered with, as the code it stands for when the body names none Herald knows. */
const BY_STATUS: Record<number, HeraldErrorCode> = {
  400: 'invalid_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  429: 'rate_limited',
}

/**
 * The HeraldError a server answer (`{"error":{"code","message"}}`, in a body or a stream frame)
 * stands for, so that callers switch on the same codes as in process.
 */
export function errorFrom(status: number | undefined, body: unknown): HeraldError {
  const error = (body as { error?: { code?: unknown; message?: unknown; details?: unknown } } | null)?.error
  const given = typeof error?.code === 'string' ? error.code : undefined
  const code: HeraldErrorCode =
    given !== undefined && given in ERROR_CODES
      ? (given as HeraldErrorCode)
      : ((status !== undefined ? BY_STATUS[status] : undefined) ?? 'store_unavailable')
  const message =
    typeof error?.message === 'string' ? error.message : `the server answered ${status ?? 'an error'}`
  const details =
    typeof error?.details === 'object' && error.details !== null
      ? (error.details as Record<string, unknown>)
      : undefined
  return new HeraldError(code, message, {
    ...details,
    ...(given && given !== code ? { serverCode: given } : {}),
    ...(status !== undefined ? { status } : {}),
  })
}
