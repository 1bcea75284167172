/**
 * Notices a connection that went silent without closing: a half-open TCP connection (a NAT that
 * forgot it, a laptop that slept, a proxy that died) gives neither side a close, and the server,
 * having dropped it after three unanswered pings, sends nothing more. The server pings every
 * `pingInterval` (30 s by default) and `ws` emits 'ping' for each; after `timeout` ms with
 * neither a ping nor a frame, `onSilent` runs (the caller cuts the socket and reconnects).
 *
 * Browsers keep pings from pages, so there (a socket without `on`) nothing is watched: a quiet
 * stream would look dead. A half-open connection then lasts until the browser's TCP gives up.
 */
export interface SilenceWatch {
  /** Something arrived: the connection is alive. */
  heard(): void
  stop(): void
}

/** Ping events of `ws`'s WebSocket; absent from the browser's. */
interface PingEmitter {
  on(event: 'ping', listener: () => void): unknown
  off?(event: 'ping', listener: () => void): unknown
}

export function watchSilence(
  socket: object,
  timeout: number,
  onSilent: () => void,
): SilenceWatch | undefined {
  if (timeout <= 0 || typeof (socket as Partial<PingEmitter>).on !== 'function') return undefined
  const emitter = socket as PingEmitter
  let timer: ReturnType<typeof setTimeout> | undefined
  const arm = (): void => {
    if (timer !== undefined) clearTimeout(timer)
    timer = setTimeout(onSilent, timeout)
  }
  emitter.on('ping', arm)
  arm()
  return {
    heard: arm,
    stop: () => {
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
      emitter.off?.('ping', arm)
    },
  }
}

/** Cuts a socket at once: a half-open connection would never finish a close handshake. */
export function cut(socket: object): void {
  const { terminate, close } = socket as { terminate?: () => void; close?: () => void }
  if (typeof terminate === 'function') terminate.call(socket)
  else close?.call(socket)
}
