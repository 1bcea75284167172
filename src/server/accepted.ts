import type { OutgoingHttpHeaders } from 'node:http'
import type { FastifyReply } from 'fastify'

/**
 * Answers a publish: 202 with `{"ids":[...]}`, written to the socket directly.
 *
 * The answer has one fixed shape, and Fastify's generic send path (its serializer, the onSend
 * chain, the listeners it puts on every response) cost about 1.8 µs of a one-event publish's
 * ~20 µs of CPU (`npm run bench server`, BENCHMARKS.md). Headers set earlier in the request
 * (CORS, by its onRequest hook) are kept. Herald registers no onSend or onResponse hooks, which
 * a hijacked reply would skip.
 */
export function answerIds(reply: FastifyReply, ids: readonly string[]): void {
  // Publisher-supplied ids may hold any non-space character: JSON.stringify escapes them.
  const body = `{"ids":${JSON.stringify(ids)}}`
  reply.hijack()
  const headers = reply.getHeaders() as OutgoingHttpHeaders
  headers['content-type'] = 'application/json; charset=utf-8'
  headers['content-length'] = Buffer.byteLength(body)
  reply.raw.writeHead(202, headers)
  reply.raw.end(body)
}
