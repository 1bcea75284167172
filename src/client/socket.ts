/**
 * The part of the WebSocket API the client uses: the browser's `WebSocket` has it, and so does
 * the `ws` package's (Node 20 has no global WebSocket; pass `ws` there).
 */
export interface WebSocketLike {
  readonly readyState: number
  send(data: string): void
  close(code?: number, reason?: string): void
  onopen: ((event: unknown) => void) | null
  onmessage: ((event: { data: unknown }) => void) | null
  onclose: ((event: { code: number; reason: string }) => void) | null
  onerror: ((event: unknown) => void) | null
}

/**
 * Any WebSocket class. Typed loosely on purpose: the DOM's and `ws`'s handler types differ in
 * their event classes, and the client touches only what WebSocketLike lists.
 */
export type WebSocketConstructor = new (url: string) => object

export const OPEN = 1

/** The WebSocket implementation to use: the one given, else the platform's. */
export function resolveWebSocket(
  given: WebSocketConstructor | undefined,
): new (url: string) => WebSocketLike {
  const found = given ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket
  if (typeof found !== 'function') {
    throw new TypeError(
      'no WebSocket implementation: pass one as the WebSocket option (in Node 20: `import WebSocket from "ws"`)',
    )
  }
  return found as new (url: string) => WebSocketLike
}

/** A frame's text, whichever way the implementation hands it over. */
export function frameText(data: unknown): string | undefined {
  if (typeof data === 'string') return data
  if (data instanceof ArrayBuffer) return new TextDecoder().decode(data)
  if (ArrayBuffer.isView(data)) return new TextDecoder().decode(data)
  return undefined
}
