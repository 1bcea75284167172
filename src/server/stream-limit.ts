import type { FastifyInstance } from 'fastify'

/**
 * Counts the streams (WebSocket and SSE) each token holds open and refuses one past its limit
 * (`limits.streamsPerToken`) at the handshake, with 429 `too_many_streams`: every open stream
 * costs the server a subscription, buffers and a heartbeat, so one leaked or hostile token must
 * not be able to open them without end.
 *
 * Registered after the plugin's `authenticate` hook. The slot is held from the handshake, so
 * handshakes racing each other cannot overshoot the limit, until the stream's transport ends:
 * the TCP socket of a WebSocket (which a refused upgrade also closes), the response of an SSE
 * stream (which a refused request, 403 say, finishes at once).
 */
export function limitOpenStreams(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    let slot: { release(): void }
    try {
      slot = request.principal.openStream()
    } catch (error) {
      return done(error as Error)
    }
    const transport = request.ws ? request.raw.socket : reply.raw
    if (transport.destroyed) slot.release()
    else transport.once('close', slot.release)
    done()
  })
}
