import WebSocket from 'ws'
import { cut, watchSilence } from '../client/heartbeat.js'

/** A failure the CLI reports as one line and a non-zero exit. */
export class CliError extends Error {
  override readonly name = 'CliError'
}

export interface Target {
  /** Base URL of the server, e.g. http://127.0.0.1:8080 */
  url: string
  token: string | undefined
}

function headers(target: Target, json: boolean): Record<string, string> {
  const out: Record<string, string> = {}
  if (target.token) out.authorization = `Bearer ${target.token}`
  if (json) out['content-type'] = 'application/json'
  return out
}

function endpoint(target: Target, path: string): string {
  try {
    return new URL(path, target.url.endsWith('/') ? target.url : `${target.url}/`).toString()
  } catch {
    throw new CliError(`${JSON.stringify(target.url)} is not a URL (set --url or HERALD_URL)`)
  }
}

/**
 * Calls the server's HTTP API; an error answer becomes a CliError with its code and message, and
 * so does a success that is not Herald's JSON (a proxy's page, another service at that URL).
 */
export async function call<T>(target: Target, method: string, path: string, body?: unknown): Promise<T> {
  const url = endpoint(target, path)
  let response: Response
  try {
    response = await fetch(url, {
      method,
      headers: headers(target, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause
    throw new CliError(
      `cannot reach ${target.url}: ${cause?.code ?? cause?.message ?? (error as Error).message}`,
    )
  }
  const text = await response.text()
  let parsed: unknown
  try {
    parsed = text === '' ? undefined : JSON.parse(text)
  } catch {
    parsed = text
  }
  if (!response.ok) {
    const error = (parsed as { error?: { code?: string; message?: string } } | undefined)?.error
    throw new CliError(
      error
        ? `${response.status} ${error.code}: ${error.message}`
        : `${response.status} ${response.statusText}`,
    )
  }
  if (text !== '' && (typeof parsed !== 'object' || parsed === null)) {
    throw new CliError(
      `unexpected answer from ${url} (${response.status} ${response.headers.get('content-type') ?? 'no content type'}): is --url a Herald server?`,
    )
  }
  return parsed as T
}

export interface TailHandlers {
  onEvent(event: Record<string, unknown>): void
  /** Ms without an event or a ping after which the connection counts as gone (0: never). */
  heartbeatTimeout?: number
}

/**
 * Streams events matching `patterns` over the native WebSocket until the server closes it;
 * rejects with a CliError when the handshake, a subscribe, or the connection fails.
 */
export function tail(
  target: Target,
  patterns: string[],
  since: string | undefined,
  handlers: TailHandlers,
): { done: Promise<void>; stop(): void } {
  const url = endpoint(target, 'v1/stream').replace(/^http/, 'ws')
  const socket = new WebSocket(url, { headers: headers(target, false) })
  let stop = (): void => {}
  const done = new Promise<void>((resolve, reject) => {
    let stopped = false
    const timeout = handlers.heartbeatTimeout ?? 0
    // A connection gone half-open says nothing: the server's pings stop coming, and that is all.
    const silence = watchSilence(socket, timeout, () => {
      stopped = true
      cut(socket)
      reject(
        new CliError(
          `nothing from the server for ${timeout / 1000} s, not even a ping: the connection is gone`,
        ),
      )
    })
    socket.on('unexpected-response', (_request, response) => {
      let body = ''
      response.on('data', (chunk: Buffer) => (body += chunk.toString()))
      response.on('end', () => {
        let message = `${response.statusCode}`
        try {
          const error = (JSON.parse(body) as { error: { code: string; message: string } }).error
          message = `${response.statusCode} ${error.code}: ${error.message}`
        } catch {
          // keep the status alone
        }
        silence?.stop()
        reject(new CliError(message))
      })
    })
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // Stopped (Ctrl-C) while still connecting: `ws` reports the abort as an error.
      silence?.stop()
      if (stopped) return resolve()
      reject(new CliError(`cannot reach ${target.url}: ${error.code ?? error.message}`))
    })
    socket.on('open', () =>
      socket.send(
        JSON.stringify(since === undefined ? { subscribe: patterns } : { subscribe: patterns, since }),
      ),
    )
    socket.on('message', (data) => {
      silence?.heard()
      const frame = JSON.parse(data.toString()) as Record<string, unknown>
      if (frame.event) handlers.onEvent(frame.event as Record<string, unknown>)
      else if (frame.error) {
        const error = frame.error as { code: string; message: string }
        stopped = true
        socket.close()
        reject(new CliError(`${error.code}: ${error.message}`))
      }
    })
    socket.on('close', (code, reason) => {
      silence?.stop()
      if (stopped) return resolve()
      reject(
        new CliError(`the server closed the stream (${code}${reason.length ? ` ${reason.toString()}` : ''})`),
      )
    })
    stop = () => {
      stopped = true
      silence?.stop()
      socket.close()
    }
  })
  return { done, stop: () => stop() }
}
