import { afterEach, describe, expect, it, vi } from 'vitest'
import { TokenBucket } from '../../src/server/rate-limit.js'

afterEach(() => {
  vi.useRealTimers()
})

describe('TokenBucket', () => {
  it('lets a burst of one second’s worth through, then refills at the rate', () => {
    vi.useFakeTimers({ toFake: ['performance'] })
    const bucket = new TokenBucket(3)
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false])
    expect(bucket.retryAfter()).toBe(1)
    vi.advanceTimersByTime(340)
    expect(bucket.take()).toBe(true)
    expect(bucket.take()).toBe(false)
  })

  it('a rate below one per second still lets one request through every 1/rate seconds', () => {
    vi.useFakeTimers({ toFake: ['performance'] })
    const bucket = new TokenBucket(0.5)
    expect(bucket.take()).toBe(true)
    expect(bucket.take()).toBe(false)
    expect(bucket.retryAfter()).toBe(2)
    vi.advanceTimersByTime(1000)
    expect(bucket.take()).toBe(false)
    vi.advanceTimersByTime(1000)
    expect(bucket.take()).toBe(true)
  })
})
