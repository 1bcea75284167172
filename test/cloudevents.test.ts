import { describe, expect, it } from 'vitest'
import { fromBinaryCloudEvent, fromCloudEvent, toCloudEvent } from '../src/cloudevents.js'
import { HeraldError, type HeraldEvent } from '../src/index.js'

describe('CloudEvents 1.0 mapping', () => {
  it('maps type to topic, source to sender, and the herald extensions to tenant, metadata and type', () => {
    expect(
      fromCloudEvent({
        specversion: '1.0',
        id: 'e-1',
        source: 'acme.orders',
        type: 'order/paid',
        time: '2026-01-01T00:00:00Z',
        data: { n: 1 },
        heraldaccount: 'acme',
        heraldworkspace: 'dev',
        heraldmetadata: '{"eventGroupId":"g"}',
        heraldtype: 'transaction',
        unknownext: 'ignored',
      }),
    ).toEqual({
      id: 'e-1',
      topic: 'order/paid',
      sender: 'acme.orders',
      time: '2026-01-01T00:00:00Z',
      data: { n: 1 },
      account: 'acme',
      workspace: 'dev',
      metadata: { eventGroupId: 'g' },
      type: 'transaction',
    })
  })

  it('gives absent data as null and leaves id and source optional', () => {
    expect(fromCloudEvent({ specversion: '1.0', type: 't' })).toEqual({ topic: 't', data: null })
  })

  it('refuses other spec versions, a missing type, data_base64 and non-object metadata', () => {
    const code = (input: unknown) => {
      try {
        fromCloudEvent(input)
      } catch (error) {
        return (error as HeraldError).code
      }
      return 'accepted'
    }
    expect(code({ specversion: '0.3', type: 't' })).toBe('invalid_event')
    expect(code({ specversion: '1.0' })).toBe('invalid_topic')
    expect(code({ specversion: '1.0', type: 't', data_base64: 'AA==' })).toBe('invalid_event')
    expect(code({ specversion: '1.0', type: 't', heraldmetadata: '[1]' })).toBe('invalid_event')
    expect(code({ specversion: '1.0', type: 't', heraldmetadata: '{' })).toBe('invalid_event')
    expect(code([])).toBe('invalid_event')
  })

  it('reads binary mode from ce-* headers, percent-decoding values', () => {
    expect(
      fromBinaryCloudEvent(
        {
          'ce-specversion': '1.0',
          'ce-type': 'x/y',
          'ce-id': 'b-1',
          'ce-source': 'caf%C3%A9.app',
          'content-type': 'application/json',
          host: 'h',
        },
        { v: 1 },
      ),
    ).toEqual({ topic: 'x/y', id: 'b-1', sender: 'café.app', data: { v: 1 } })
  })

  it('writes a stored event as a structured CloudEvent, and reads it back to the same event', () => {
    const event: HeraldEvent = {
      id: '01J',
      topic: 'order/paid',
      data: { n: 1 },
      metadata: { k: 'v' },
      type: 'transaction',
      sender: 'acme.orders',
      account: 'acme',
      workspace: 'master',
      time: '2026-01-01T00:00:00.000Z',
      seq: '0000000000000007',
    }
    const ce = toCloudEvent(event)
    expect(ce).toEqual({
      specversion: '1.0',
      id: '01J',
      source: 'acme.orders',
      type: 'order/paid',
      time: '2026-01-01T00:00:00.000Z',
      datacontenttype: 'application/json',
      data: { n: 1 },
      heraldaccount: 'acme',
      heraldworkspace: 'master',
      heraldmetadata: '{"k":"v"}',
      heraldtype: 'transaction',
      heraldseq: '0000000000000007',
    })
    const { seq: _seq, ...input } = event
    expect(fromCloudEvent(ce)).toEqual(input)
  })

  it('names a source for events without a sender', () => {
    const ce = toCloudEvent({
      id: 'i',
      topic: 't',
      data: null,
      metadata: {},
      account: 'a',
      workspace: 'w',
      time: 'x',
    })
    expect(ce.source).toBe('/herald/a/w')
    expect(ce).not.toHaveProperty('heraldmetadata')
  })
})
