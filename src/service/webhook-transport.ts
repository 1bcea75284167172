import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'

/** The start of an error answer's body that is kept (for `lastError`); the rest is not read. */
export const ERROR_BODY_CHARS = 300

/** What a receiver answered: its status and, for answers outside 2xx, the start of its body and its `Retry-After`. */
export interface PostResult {
  status: number
  snippet: string
  /** Its `Retry-After` header as sent, if it sent one (undefined on 2xx). */
  retryAfter: string | undefined
}

/** Sends one webhook request; rejects on network errors and when `signal` fires. */
export type Post = (
  url: string,
  headers: Record<string, string>,
  body: string,
  signal: AbortSignal,
) => Promise<PostResult>

/**
 * Idle connections are kept for reuse, and closed after 4 s: before the 5 s after which Node's
 * own HTTP servers (and many others) drop an idle connection, so a delivery rarely lands on a
 * connection the receiver is closing.
 */
const AGENT_OPTIONS = { keepAlive: true, timeout: 4000 }
let agents: { http: HttpAgent; https: HttpsAgent } | undefined

/**
 * The default transport: `node:http` / `node:https` over keep-alive connections. It costs a
 * fraction of the CPU of the global `fetch` per delivery (no WHATWG streams or transferable
 * objects per request), which bounds how many deliveries one process can make. Redirects are not
 * followed: a 3xx is the answer.
 */
export const nodePost: Post = (url, headers, body, signal) =>
  new Promise<PostResult>((resolve, reject) => {
    agents ??= { http: new HttpAgent(AGENT_OPTIONS), https: new HttpsAgent(AGENT_OPTIONS) }
    const secure = url.startsWith('https:')
    const send = secure ? httpsRequest : httpRequest
    const request = send(url, {
      method: 'POST',
      agent: secure ? agents.https : agents.http,
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      signal,
    })
    // `on`, not `once`: a connection reset while an answer is drained may raise a second error,
    // which must not go unheard (an unheard 'error' would end the process).
    request.on('error', reject)
    request.once('response', (response: IncomingMessage) => {
      const status = response.statusCode ?? 0
      if (status >= 200 && status < 300) {
        // Drained unread, so that the connection goes back to the pool; the answer is already known.
        response.on('error', () => undefined)
        response.resume()
        resolve({ status, snippet: '', retryAfter: undefined })
        return
      }
      const retryAfter = response.headers['retry-after']
      readSnippet(response).then((snippet) => resolve({ status, snippet, retryAfter }), reject)
    })
    request.end(body)
  })

/** A transport over a `fetch` (the caller's own, for tests or proxies). */
export function fetchPost(doFetch: typeof fetch): Post {
  return async (url, headers, body, signal) => {
    const response = await doFetch(url, { method: 'POST', headers, body, signal, redirect: 'manual' })
    if (response.status >= 200 && response.status < 300) {
      await response.body?.cancel().catch(() => undefined)
      return { status: response.status, snippet: '', retryAfter: undefined }
    }
    // Node's web streams are async iterable (the DOM typings do not say so), and leaving the
    // loop early cancels the stream, so the rest is not read.
    const stream = response.body as unknown as AsyncIterable<Uint8Array> | null
    const snippet = stream ? await readSnippet(stream) : ''
    return { status: response.status, snippet, retryAfter: response.headers.get('retry-after') ?? undefined }
  }
}

/** Reads at most about ERROR_BODY_CHARS characters of a body, then stops reading it. */
async function readSnippet(body: AsyncIterable<Uint8Array | string>): Promise<string> {
  const decoder = new TextDecoder()
  let text = ''
  try {
    for await (const chunk of body) {
      text += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true })
      if (text.length > ERROR_BODY_CHARS) break
    }
  } catch {
    // a body cut short still says what it said so far
  }
  const trimmed = text.trim().replace(/\s+/g, ' ')
  return trimmed.length > ERROR_BODY_CHARS ? `${trimmed.slice(0, ERROR_BODY_CHARS)}…` : trimmed
}
