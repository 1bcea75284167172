import pino, { type Logger as PinoLogger } from 'pino'

/**
 * The server's structured log (pino, JSON lines on stdout). Tokens never reach it: headers that
 * carry them are redacted, stream URLs have their token parameters masked, and principals are
 * logged by name (`token 2 (acme/master)`).
 */
export function createLogger(level: string, destination?: pino.DestinationStream): PinoLogger {
  const options: pino.LoggerOptions = {
    level,
    base: { name: 'herald' },
    serializers: {
      req: (request: { method?: string; url?: string; id?: unknown }) => ({
        id: request.id,
        method: request.method,
        url: request.url && redactUrl(request.url),
      }),
      // @fastify/websocket logs an upgrade aimed at a plain route by its raw URL, query included.
      path: (path: unknown) => (typeof path === 'string' ? redactUrl(path) : path),
    },
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers["x-voltmx-authorization"]',
        'headers.authorization',
        'headers["x-voltmx-authorization"]',
      ],
      censor: '[redacted]',
    },
  }
  return destination ? pino(options, destination) : pino(options)
}

/** Query parameters that carry tokens (streams); their values never reach a log. */
const SECRET_QUERY = /([?&](?:token|x-voltmx-authorization)=)[^&]*/gi

export function redactUrl(url: string): string {
  return url.replace(SECRET_QUERY, '$1[redacted]')
}
