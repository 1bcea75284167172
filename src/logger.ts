/**
 * The logging surface Herald writes to: pino's argument order (fields first), so a pino logger
 * can be passed as it is.
 */
export interface Logger {
  error(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  info(fields: Record<string, unknown>, message: string): void
  debug(fields: Record<string, unknown>, message: string): void
}

const noop = (): void => {}

/** Discards everything. */
export const silentLogger: Logger = { error: noop, warn: noop, info: noop, debug: noop }

/** The library default: warnings and errors to stderr, one line each; quieter levels dropped. */
export const consoleLogger: Logger = {
  error: (fields, message) => console.error(`herald error: ${message}`, fields),
  warn: (fields, message) => console.error(`herald warn: ${message}`, fields),
  info: noop,
  debug: noop,
}
