/**
 * A token bucket: `rate` requests per second on average, bursts of up to one second's worth (at
 * least one request: a rate below 1/s, such as 0.5, still lets one through every 2 s).
 * Shared by a token's HTTP requests and its stream frames, so the limit holds whichever way a
 * client talks (a Fastify rate-limit plugin would cover only the HTTP routes).
 */
export class TokenBucket {
  private tokens: number
  private updatedAt: number
  private readonly capacity: number

  constructor(private readonly rate: number) {
    this.capacity = Math.max(1, rate)
    this.tokens = this.capacity
    this.updatedAt = performance.now()
  }

  /** Takes one request's worth; false when the bucket is empty. */
  take(): boolean {
    const now = performance.now()
    this.tokens = Math.min(this.capacity, this.tokens + ((now - this.updatedAt) / 1000) * this.rate)
    this.updatedAt = now
    if (this.tokens < 1) return false
    this.tokens -= 1
    return true
  }

  /** Seconds until one request's worth is back (for `retry-after`). */
  retryAfter(): number {
    return Math.max(1, Math.ceil((1 - this.tokens) / this.rate))
  }
}
