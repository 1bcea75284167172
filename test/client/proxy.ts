import { createServer, connect, type Server, type Socket } from 'node:net'
import type { AddressInfo } from 'node:net'

/** A page the proxy answers itself (`GET` of that path), on a connection it then closes. */
export type Pages = Record<string, { contentType: string; body: string }>

/**
 * A TCP proxy in front of a server, to break the network between a client and it: `cut()` drops
 * every connection, `down()` refuses new ones until `up()`. It can also serve a few pages itself,
 * so that a browser page and the server it talks to share one origin.
 */
export interface Proxy {
  port: number
  url: string
  cut(): void
  /**
   * A half-open network: nothing more passes either way, and neither side learns of it (no FIN,
   * no reset), even when the other closes. As a NAT that forgot the connection, or a sleeping laptop.
   */
  freeze(): void
  down(): void
  up(): void
  /** Connections accepted while up, so far. */
  readonly connections: number
  close(): Promise<void>
}

export async function startProxy(targetPort: number, pages: Pages = {}, host = '127.0.0.1'): Promise<Proxy> {
  const open = new Set<Socket>()
  const pairs: [Socket, Socket][] = []
  const frozen = new Set<Socket>()
  let refusing = false
  let connections = 0
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy()
      return
    }
    connections++
    open.add(client)
    client.on('error', () => client.destroy()).on('close', () => open.delete(client))
    client.once('data', (first: Buffer) => {
      const path = /^GET (\S+) HTTP/.exec(first.toString('latin1'))?.[1]
      const page = path === undefined ? undefined : pages[path]
      if (page) {
        const body = Buffer.from(page.body)
        client.end(
          Buffer.concat([
            Buffer.from(
              `HTTP/1.1 200 OK\r\ncontent-type: ${page.contentType}\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`,
            ),
            body,
          ]),
        )
        return
      }
      const upstream = connect(targetPort, host)
      open.add(upstream)
      const drop = (): void => {
        if (frozen.has(client)) return
        client.destroy()
        upstream.destroy()
        open.delete(client)
        open.delete(upstream)
      }
      client.on('close', drop)
      upstream.on('error', drop).on('close', drop)
      upstream.write(first)
      client.pipe(upstream)
      upstream.pipe(client)
      pairs.push([client, upstream])
    })
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
    freeze: () => {
      for (const [client, upstream] of pairs) {
        frozen.add(client)
        client.unpipe(upstream)
        upstream.unpipe(client)
        client.pause()
        upstream.pause()
      }
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
