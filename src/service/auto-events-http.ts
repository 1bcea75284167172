import type { IncomingMessage, ServerResponse } from 'node:http'
import {
  cleanHeaders,
  cleanQuery,
  decodePayload,
  raiseAll,
  type AutoEventData,
} from './auto-events-routes.js'
import type { Observer } from './auto-events.js'

/** A plain Node request handler, as `http.createServer` takes. */
export type RequestListener<
  Req extends IncomingMessage = IncomingMessage,
  Res extends ServerResponse = ServerResponse,
> = (request: Req, response: Res) => unknown

/** The content type among headers given to `writeHead` (an object, or a flat [name, value, ...] array). */
function contentTypeIn(headers: unknown): string | undefined {
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2)
      if (String(headers[i]).toLowerCase() === 'content-type') return String(headers[i + 1])
    return undefined
  }
  if (typeof headers !== 'object' || headers === null) return undefined
  for (const [name, value] of Object.entries(headers))
    if (name.toLowerCase() === 'content-type') return String(value)
  return undefined
}

/** Collects up to `limit` bytes of a body as it streams past; what is beyond is not kept. */
class Capture {
  private chunks: Buffer[] = []
  private size = 0
  truncated = false

  constructor(private readonly limit: number) {}

  add(chunk: unknown, encoding?: unknown): void {
    if (chunk === null || chunk === undefined || this.truncated) return
    const buffer = Buffer.isBuffer(chunk)
      ? chunk
      : typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : chunk instanceof Uint8Array
          ? Buffer.from(chunk)
          : undefined
    if (!buffer) return
    if (this.size + buffer.length > this.limit) {
      this.truncated = true
      this.chunks = []
      return
    }
    this.chunks.push(buffer)
    this.size += buffer.length
  }

  body(): Buffer | undefined {
    return this.truncated ? undefined : Buffer.concat(this.chunks)
  }
}

/**
 * The plain `http` side of `autoEvents`: wraps a request listener. The request's body is seen as
 * the server reads it off the socket (whoever consumes it, however), so the handler reads it
 * as usual; the request event is raised when the body is complete, the response event when the
 * response is finished. Nothing here waits or throws into the handler.
 */
export function wrapHttp<Req extends IncomingMessage, Res extends ServerResponse>(
  observer: Observer,
  handler: RequestListener<Req, Res>,
): RequestListener<Req, Res> {
  return (request, response) => {
    try {
      observe(observer, request, response)
    } catch (error) {
      observer.failed(error)
    }
    return handler(request, response)
  }
}

function observe(observer: Observer, request: IncomingMessage, response: ServerResponse): void {
  const method = request.method ?? 'GET'
  const url = request.url ?? '/'
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  const match = observer.table.byPath(method, path)
  if (!match) return
  const { spec } = match
  const started = performance.now()
  const data = (payload: unknown): AutoEventData => ({
    serviceId: observer.serviceId,
    operationId: spec.operationId ?? `${method} ${match.route}`,
    method,
    path,
    route: match.route,
    headers: cleanHeaders(request.headers, observer.redaction.headers),
    query: cleanQuery(new URLSearchParams(q === -1 ? '' : url.slice(q + 1)), observer.redaction.query),
    payload,
  })

  if (spec.request.length > 0) {
    const captured = new Capture(observer.maxPayloadBytes)
    let raised = false
    const raiseRequest = (): void => {
      if (raised) return
      raised = true
      try {
        const payload = decodePayload(captured.body(), request.headers['content-type'])
        raiseAll(spec.request, 'request', data(payload), observer.sender, observer.raise)
      } catch (error) {
        observer.failed(error)
      }
    }
    // The HTTP parser pushes every body chunk, then null, into the request stream.
    const push = request.push
    request.push = function (chunk: unknown, encoding?: BufferEncoding): boolean {
      if (chunk === null) raiseRequest()
      else captured.add(chunk, encoding)
      return push.call(this, chunk, encoding)
    }
    // A request cut short still raised its request event.
    response.once('close', raiseRequest)
  }

  if (spec.response.length > 0) {
    const captured = new Capture(observer.maxPayloadBytes)
    const write = response.write
    const end = response.end
    const writeHead = response.writeHead
    // Headers given to writeHead never reach getHeader(): note the content type on the way.
    let contentType: string | undefined
    response.writeHead = function (this: ServerResponse, ...args: unknown[]): ServerResponse {
      contentType = contentTypeIn(typeof args[1] === 'string' ? args[2] : args[1]) ?? contentType
      return (writeHead as (...a: unknown[]) => ServerResponse).apply(this, args)
    } as ServerResponse['writeHead']
    response.write = function (this: ServerResponse, chunk: unknown, ...rest: unknown[]): boolean {
      captured.add(chunk, typeof rest[0] === 'string' ? rest[0] : undefined)
      return (write as (...args: unknown[]) => boolean).call(this, chunk, ...rest)
    } as ServerResponse['write']
    response.end = function (this: ServerResponse, chunk?: unknown, ...rest: unknown[]): ServerResponse {
      if (typeof chunk !== 'function') captured.add(chunk, typeof rest[0] === 'string' ? rest[0] : undefined)
      return (end as (...args: unknown[]) => ServerResponse).call(this, chunk, ...rest)
    } as ServerResponse['end']
    response.once('finish', () => {
      try {
        const type = response.getHeader('content-type')
        const event = data(decodePayload(captured.body(), typeof type === 'string' ? type : contentType))
        event.status = response.statusCode
        event.durationMs = Math.round((performance.now() - started) * 1000) / 1000
        raiseAll(spec.response, 'response', event, observer.sender, observer.raise)
      } catch (error) {
        observer.failed(error)
      }
    })
  }
}
