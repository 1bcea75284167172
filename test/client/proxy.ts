import { createServer, connect, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'

/**
 * A TCP proxy in front of a server, to break the network between a client and it: `cut()` drops
 * every connection, `down()` refuses new ones until `up()`.
 */
export interface Proxy {
  port: number
  url: string
  cut(): void
  down(): void
  up(): void
  /** Connections accepted while up, so far. */
  readonly connections: number
  close(): Promise<void>
}

export async function startProxy(targetPort: number, host = '127.0.0.1'): Promise<Proxy> {
  const open = new Set<Socket>()
  let refusing = false
  let connections = 0
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy()
      return
    }
    connections++
    const upstream = connect(targetPort, host)
    open.add(client)
    open.add(upstream)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      open.delete(client)
      open.delete(upstream)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    url: `http://${host}:${port}`,
    cut: () => {
      for (const socket of [...open]) socket.destroy()
      open.clear()
    },
    down: () => {
      refusing = true
    },
    up: () => {
      refusing = false
    },
    get connections() {
      return connections
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy()
        server.close(() => resolve())
      }),
  }
}
