import { describe, expect, it } from 'vitest'
import { DEFAULT_TENANT, HeraldError, isHeraldError } from '../src/index.js'
import { prepareBatch } from '../src/event.js'
import { ulid } from '../src/ids.js'

/** One event prepared alone, with what the batch notes about it. */
function prep(input: unknown, options: Partial<{ maxPayloadBytes: number; now: number }> = {}) {
  const batch = prepareBatch(input, DEFAULT_TENANT, { maxPayloadBytes: 1 << 20, now: Date.now(), ...options })
  return { event: batch.events[0]!, dedupe: batch.dedupe?.[0] === true, groupId: batch.groups?.[0] }
}

function errorOf(fn: () => unknown): HeraldError {
  try {
    fn()
  } catch (error) {
    if (isHeraldError(error)) return error
    throw new Error(`expected a HeraldError, got ${String(error)}`)
  }
  throw new Error('expected an error')
}

describe('ids', () => {
  it('are 26-character ULIDs that sort in creation order, even within one millisecond', () => {
    const now = Date.now()
    const ids = Array.from({ length: 5000 }, () => ulid(now))
    for (const id of ids) expect(id).toMatch(/^[0-9A-HJKMNP-TV-Z]{26}$/)
    expect([...ids].sort()).toEqual(ids)
    expect(new Set(ids).size).toBe(ids.length)
    expect(ulid(now + 1) > ids[ids.length - 1]!).toBe(true)
  })
})

describe('the envelope', () => {
  it('stamps id, time and tenant, and keeps data and metadata', () => {
    const now = Date.parse('2026-01-02T03:04:05.006Z')
    const { event, dedupe, groupId } = prep(
      { topic: 'orders/created', data: { n: 1 }, metadata: { a: 'b' } },
      { now },
    )
    expect(event).toEqual({
      id: expect.stringMatching(/^[0-9A-Z]{26}$/),
      topic: 'orders/created',
      data: { n: 1 },
      metadata: { a: 'b' },
      account: 'default',
      workspace: 'master',
      time: '2026-01-02T03:04:05.006Z',
    })
    expect(dedupe).toBe(false)
    expect(groupId).toBeUndefined()
  })

  it("accepts Medusa's `name` for the topic, and refuses both when they differ", () => {
    expect(prep({ name: 'product.created', data: null }).event.topic).toBe('product.created')
    expect(prep({ name: 'a', topic: 'a', data: 1 }).event.topic).toBe('a')
    expect(errorOf(() => prep({ name: 'a', topic: 'b', data: 1 })).code).toBe('invalid_event')
    expect(errorOf(() => prep({ data: 1 })).code).toBe('invalid_topic')
  })

  it("keeps a publisher's id (marking it for deduplication), time, type and sender", () => {
    const { event, dedupe } = prep({
      id: 'order-42',
      topic: 't',
      data: 1,
      time: '2020-05-05T00:00:00Z',
      type: 'audit',
      sender: 'vtex.app@1.0.0',
    })
    expect(event).toMatchObject({
      id: 'order-42',
      time: '2020-05-05T00:00:00Z',
      type: 'audit',
      sender: 'vtex.app@1.0.0',
    })
    expect(dedupe).toBe(true)
    // Fractions and offsets are ISO-8601 too, and kept as given.
    expect(prep({ topic: 't', data: 1, time: '2026-11-23T08:40:00.123+01:00' }).event.time).toBe(
      '2026-11-23T08:40:00.123+01:00',
    )
  })

  it('takes the group from metadata.eventGroupId', () => {
    expect(prep({ topic: 't', data: 1, metadata: { eventGroupId: 'tx-1' } }).groupId).toBe('tx-1')
    expect(errorOf(() => prep({ topic: 't', data: 1, metadata: { eventGroupId: 7 } })).code).toBe(
      'invalid_event',
    )
  })

  it.each([
    ['a function', { f: () => 1 }, 'data.f'],
    ['a BigInt', { n: 10n }, 'data.n'],
    ['a symbol', [Symbol('s')], 'data[0]'],
    ['NaN', { deep: { x: [1, NaN] } }, 'data.deep.x[1]'],
    ['Infinity', Infinity, 'data'],
  ])('rejects data holding %s with invalid_event naming where', (_what, data, path) => {
    const error = errorOf(() => prep({ topic: 't', data }))
    expect(error.code).toBe('invalid_event')
    expect(error.message).toContain(path)
  })

  it('rejects cyclic data', () => {
    const data: Record<string, unknown> = { a: 1 }
    data.self = { back: data }
    expect(errorOf(() => prep({ topic: 't', data })).message).toMatch(/cycle/)
  })

  it('rejects missing or undefined data, but accepts null, numbers, strings and Dates', () => {
    expect(errorOf(() => prep({ topic: 't' })).code).toBe('invalid_event')
    expect(errorOf(() => prep({ topic: 't', data: undefined })).code).toBe('invalid_event')
    for (const data of [null, 0, 'text', false, [], {}, { when: new Date() }])
      expect(prep({ topic: 't', data }).event.data).toBe(data)
  })

  it('sizes and checks what toJSON returns, as JSON would send it', () => {
    const big = { toJSON: () => 'x'.repeat(5000) }
    expect(errorOf(() => prep({ topic: 't', data: { big } }, { maxPayloadBytes: 1000 })).code).toBe(
      'payload_too_large',
    )
    expect(
      errorOf(() => prep({ topic: 't', data: Buffer.alloc(2000) }, { maxPayloadBytes: 1000 })).code,
    ).toBe('payload_too_large')
    const throwing = errorOf(() =>
      prep({
        topic: 't',
        data: {
          bad: {
            toJSON: () => {
              throw new Error('no')
            },
          },
        },
      }),
    )
    expect(throwing).toMatchObject({ code: 'invalid_event' })
    expect(throwing.message).toContain('data.bad of "t" has a toJSON that throws (no)')
    expect(errorOf(() => prep({ topic: 't', data: { n: { toJSON: () => 10n } } })).message).toContain(
      'data.n of "t" is a BigInt',
    )
    const self = {
      toJSON(): unknown {
        return this
      },
    }
    expect(errorOf(() => prep({ topic: 't', data: self })).code).toBe('invalid_event')
  })

  it('refuses Maps and Sets, which JSON would send as {}, and data it cannot even read', () => {
    expect(errorOf(() => prep({ topic: 't', data: { m: new Map([[1, 2]]) } })).message).toContain(
      'data.m of "t" is a Map',
    )
    expect(errorOf(() => prep({ topic: 't', data: [new Set([1])] })).message).toContain(
      'data[0] of "t" is a Set',
    )
    const getter = {
      get boom(): never {
        throw new Error('getter failed')
      },
    }
    expect(errorOf(() => prep({ topic: 't', data: getter }))).toMatchObject({
      code: 'invalid_event',
      message: expect.stringContaining('cannot be read as JSON (getter failed)'),
    })
    let deep: unknown = 1
    for (let i = 0; i < 100_000; i++) deep = [deep]
    expect(errorOf(() => prep({ topic: 't', data: deep })).code).toBe('invalid_event')
  })

  it('rejects a payload over the limit with payload_too_large', () => {
    const error = errorOf(() => prep({ topic: 't', data: 'x'.repeat(2000) }, { maxPayloadBytes: 1000 }))
    expect(error.code).toBe('payload_too_large')
    expect(error.status).toBe(413)
  })

  it.each([
    ['not an object', 'hello', 'invalid_event'],
    ['an array', [1], 'invalid_event'],
    ['metadata not an object', { topic: 't', data: 1, metadata: [1] }, 'invalid_event'],
    ['an empty id', { topic: 't', data: 1, id: '' }, 'invalid_event'],
    ['an id with spaces', { topic: 't', data: 1, id: 'a b' }, 'invalid_event'],
    ['a time that is not a date', { topic: 't', data: 1, time: 'yesterday' }, 'invalid_event'],
    [
      'a time Date.parse takes but is not ISO-8601 (a bare number)',
      { topic: 't', data: 1, time: '1' },
      'invalid_event',
    ],
    ['a time without a zone', { topic: 't', data: 1, time: '2026-11-23T07:40:00' }, 'invalid_event'],
    ['a time as a month and day', { topic: 't', data: 1, time: 'May 5' }, 'invalid_event'],
    ['an empty sender', { topic: 't', data: 1, sender: '' }, 'invalid_event'],
    ['another account', { topic: 't', data: 1, account: 'other' }, 'invalid_tenant'],
    ['another workspace', { topic: 't', data: 1, workspace: 'dev' }, 'invalid_tenant'],
  ])('rejects %s', (_what, input, code) => {
    expect(errorOf(() => prep(input)).code).toBe(code)
  })
})
