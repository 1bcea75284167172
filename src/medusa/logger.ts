import type { Logger as MedusaLogger } from '@medusajs/framework/types'
import type { Logger } from '../logger.js'

/** The part of Medusa's logger the module writes to (Medusa's own modules fall back to `console`, which has it too). */
export type MedusaLogSink = Pick<MedusaLogger, 'info' | 'warn' | 'debug'> & { error(message: string): void }

function line(message: string, fields: Record<string, unknown>): string {
  const parts: string[] = []
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined) continue
    parts.push(`${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`)
  }
  return parts.length === 0 ? `herald: ${message}` : `herald: ${message} (${parts.join(' ')})`
}

/** Herald writes pino-style (fields, message); Medusa's logger takes one string. */
export function heraldLoggerFor(sink: MedusaLogSink): Logger {
  return {
    error: (fields, message) => sink.error(line(message, fields)),
    warn: (fields, message) => sink.warn(line(message, fields)),
    info: (fields, message) => sink.info(line(message, fields)),
    debug: (fields, message) => sink.debug(line(message, fields)),
  }
}

/**
 * The container's `logger`, or `console` when there is none. Medusa's container is an awilix
 * cradle, which throws on a name that was never registered rather than returning undefined.
 */
export function medusaLoggerFrom(cradle: unknown): MedusaLogSink {
  try {
    const logger = (cradle as { logger?: unknown } | undefined)?.logger
    if (isSink(logger)) return logger
  } catch {
    // not registered: fall through to console, as Medusa's own event modules do
  }
  return console
}

function isSink(value: unknown): value is MedusaLogSink {
  if (typeof value !== 'object' || value === null) return false
  const sink = value as Record<string, unknown>
  return ['info', 'warn', 'error', 'debug'].every((level) => typeof sink[level] === 'function')
}
