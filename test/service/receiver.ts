import { createHmac } from 'node:crypto'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Received {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: string
  /** Date.now() when the request arrived. */
  at: number
}

export type Reply = number | { status: number; headers: Record<string, string> }

/** A real HTTP endpoint that records each request and answers with `reply` (204 by default). */
export interface Receiver {
  url: string
  requests: Received[]
  /** Requests whose client hung up before the answer was sent. */
  abandoned: number
  /** The status to answer, or the status with headers (`retry-after`, say). */
  reply: (request: Received) => Reply | Promise<Reply>
  close(): Promise<void>
}

export async function startReceiver(): Promise<Receiver> {
  const receiver = {
    url: '',
    requests: [] as Received[],
    abandoned: 0,
    reply: (() => 204) as Receiver['reply'],
    close: async () => {},
  }
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = []
    const at = Date.now()
    response.on('close', () => {
      if (!response.writableFinished) receiver.abandoned++
    })
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', async () => {
      const received: Received = {
        method: request.method ?? '',
        url: request.url ?? '',
        headers: request.headers,
        body: Buffer.concat(chunks).toString('utf8'),
        at,
      }
      receiver.requests.push(received)
      const reply = await receiver.reply(received)
      const { status, headers } = typeof reply === 'number' ? { status: reply, headers: {} } : reply
      if (response.destroyed) return
      response.writeHead(status, { 'content-type': 'text/plain', ...headers })
      response.end(status >= 400 ? `failure ${status}` : '')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  receiver.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  return receiver
}

/**
 * Is the request signed with `secret` per Standard Webhooks, with a timestamp within a minute?
 * Written out here rather than borrowed from the code under test.
 */
export function signedWith(secret: string, request: Received): boolean {
  const id = request.headers['webhook-id'] as string
  const timestamp = request.headers['webhook-timestamp'] as string
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64')
  const expected = createHmac('sha256', key).update(`${id}.${timestamp}.${request.body}`).digest('base64')
  const listed = String(request.headers['webhook-signature']).split(' ')
  return listed.includes(`v1,${expected}`) && Math.abs(Date.now() / 1000 - Number(timestamp)) < 60
}
