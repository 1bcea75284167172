import { describeError } from '../errors.js'
import type { HeraldEvent } from '../event.js'
import type { Logger } from '../logger.js'

/**
 * What an app's event handler receives, in process and over HTTP alike. The top-level names are
 * those of an `@vtex/api` event context (`body`, `key`, `sender`, `subject`, `state`, and `vtex`
 * with account, workspace, ids and route), so a VTEX handler's code ports as it is.
 */
export interface EventContext<T = unknown> {
  /** The handler name (the key under `events`). */
  readonly handler: string
  /** The event's data. */
  body: T
  /** The event's topic. */
  readonly key: string
  readonly sender: string | undefined
  readonly subject: string
  readonly account: string
  readonly workspace: string
  readonly eventId: string
  /** Names this delivery attempt. */
  readonly requestId: string
  /** Names the operation the event belongs to (propagated by VTEX from call to call). */
  readonly operationId: string
  /** 0-based: 0 for the first attempt, 1 for the first retry, ... */
  readonly attempt: number
  /** Fires when the attempt times out or the deliverer gives up on it; stop work then. */
  readonly signal: AbortSignal
  /** Shared by the middlewares of one handler array; `state.body` is the body, as `@vtex/api` sets it. */
  state: Record<string, unknown>
  readonly vtex: VtexFields
  /** The app's clients: an instance of the Service's `clients.implementation`, made per delivery (else `{}`). */
  clients: unknown
  /** As `@vtex/api` has them, for handler code that records into them. */
  timings: Record<string, [number, number]>
  metrics: Record<string, [number, number]>
  /** In process only: the whole event (metadata, time, seq). */
  readonly event: HeraldEvent<T> | undefined
}

export interface VtexFields {
  readonly account: string
  readonly workspace: string
  readonly requestId: string
  readonly operationId: string
  /** `x-vtex-credential`: the token the app uses for calls back (remote delivery only). */
  readonly authToken: string | undefined
  readonly route: { readonly id: string; readonly type: 'event' }
  /** `@vtex/api`'s logger surface; lines go to the Service's logger with the delivery's ids. */
  readonly logger: VtexLogger
  readonly eventInfo: { readonly sender: string; readonly subject: string; readonly key: string }
  /** `x-vtex-workspace-is-production: true` (remote delivery); false in process. */
  readonly production: boolean
  /** `user-agent` of the delivery (remote) or `herald` (in process). */
  readonly userAgent: string
}

export interface VtexLogger {
  debug(message: unknown): void
  info(message: unknown): void
  warn(warning: unknown): void
  error(error: unknown): void
}

/** A handler, or one middleware of a handler array: call `next()` to run the rest. */
export type EventHandler<T = unknown> = (ctx: EventContext<T>, next: () => Promise<void>) => unknown

export interface ContextFields<T> {
  handler: string
  body: T
  key: string
  sender: string | undefined
  subject: string
  account: string
  workspace: string
  eventId: string
  requestId: string
  operationId: string
  attempt: number
  /** Called when the handler first reads `ctx.signal`: an AbortController is not free. */
  signal: () => AbortSignal
  authToken: string | undefined
  event: HeraldEvent<T> | undefined
  production: boolean
  userAgent: string
  /** Where `ctx.vtex.logger` writes. */
  logger: Logger
}

export function createContext<T>(fields: ContextFields<T>): EventContext<T> {
  const { authToken, signal, production, userAgent, logger, ...rest } = fields
  return {
    ...rest,
    get signal() {
      return signal()
    },
    state: { body: fields.body },
    clients: {},
    timings: {},
    metrics: {},
    vtex: {
      account: fields.account,
      workspace: fields.workspace,
      requestId: fields.requestId,
      operationId: fields.operationId,
      authToken,
      route: { id: fields.handler, type: 'event' },
      logger: vtexLogger(logger, {
        handler: fields.handler,
        account: fields.account,
        workspace: fields.workspace,
        requestId: fields.requestId,
        operationId: fields.operationId,
      }),
      eventInfo: { sender: fields.sender ?? '', subject: fields.subject, key: fields.key },
      production,
      userAgent,
    },
  }
}

/** `ctx.vtex.logger`: a message (string, object or Error) per call, with the delivery's ids. */
function vtexLogger(logger: Logger, fields: Record<string, string>): VtexLogger {
  const line =
    (level: keyof Logger) =>
    (message: unknown): void => {
      const text =
        typeof message === 'string'
          ? message
          : message instanceof Error
            ? describeError(message)
            : (JSON.stringify(message) ?? String(message))
      logger[level]({ ...fields, app: true }, text)
    }
  return { debug: line('debug'), info: line('info'), warn: line('warn'), error: line('error') }
}

/** Runs an array of middlewares as one handler (each decides whether to call `next`). */
export function compose<T>(handlers: readonly EventHandler<T>[]): (ctx: EventContext<T>) => Promise<void> {
  return (ctx) => {
    let last = -1
    const step = async (i: number): Promise<void> => {
      if (i <= last) throw new Error('next() called more than once in an event handler')
      last = i
      const handler = handlers[i]
      if (handler) await handler(ctx, () => step(i + 1))
    }
    return step(0)
  }
}
