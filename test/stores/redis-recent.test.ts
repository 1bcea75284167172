/**
 * The Redis store's in-memory stretch of recent events: claims trust it to hold every event
 * between its ends, so it must refuse whatever would leave a gap.
 */
import { describe, expect, it } from 'vitest'
import type { HeraldEvent } from '../../src/index.js'
import { RecentEvents } from '../../src/stores/redis/recent.js'

const seq = (n: number): string => `${String(1_700_000_000_000 + n).padStart(15, '0')}-0000000000-00000`
const events = (from: number, to: number): HeraldEvent[] =>
  Array.from({ length: to - from + 1 }, (_, i) => ({ seq: seq(from + i), id: `e${from + i}` }) as HeraldEvent)
const ids = (list: readonly HeraldEvent[] | undefined): string[] | undefined => list?.map((event) => event.id)

describe('recent events held for claims', () => {
  it('keeps events that continue the stretch and hands out those after a cursor', () => {
    const recent = new RecentEvents()
    recent.claiming('t', 's', undefined, Date.now())
    recent.extend('t', '', events(1, 3))
    recent.extend('t', seq(3), events(4, 5))
    expect(recent.span('t')).toEqual({ from: '', last: seq(5) })
    expect(ids(recent.after('t', seq(2), seq(5)))).toEqual(['e3', 'e4', 'e5'])
    expect(ids(recent.range('t', seq(2), seq(4)))).toEqual(['e2', 'e3', 'e4'])
  })

  it('ignores events that do not follow its last one, unless a claim restarts it there', () => {
    const recent = new RecentEvents()
    recent.claiming('t', 's', undefined, Date.now())
    recent.extend('t', '', events(1, 3))
    recent.extend('t', seq(4), events(5, 6)) // event 4 is missing: would leave a gap
    recent.add('t', seq(4), events(5, 6), Date.now())
    expect(recent.span('t')?.last).toBe(seq(3))
    recent.extend('t', seq(4), events(5, 6), true)
    expect(recent.span('t')).toEqual({ from: seq(4), last: seq(6) })
    expect(recent.after('t', seq(3), seq(6))).toBeUndefined() // it no longer reaches back to 3
    expect(ids(recent.after('t', seq(4), seq(6)))).toEqual(['e5', 'e6'])
  })

  it('holds nothing for tenants nobody claims, and forgets everything after a gap in the feed', () => {
    const recent = new RecentEvents()
    recent.extend('other', '', events(1, 2))
    expect(recent.span('other')).toBeUndefined()
    recent.claiming('t', 's', undefined, Date.now())
    recent.add('t', '', events(1, 2), Date.now())
    expect(recent.span('t')?.last).toBe(seq(2))
    recent.forget()
    expect(recent.span('t')).toBeUndefined()
  })

  it('drops what every subscription claiming here has passed, and stops growing when full', () => {
    const recent = new RecentEvents()
    const now = Date.now()
    recent.claiming('t', 'slow', seq(100), now)
    recent.claiming('t', 'fast', seq(9000), now)
    recent.extend('t', '', events(1, 9000))
    recent.extend('t', seq(9000), events(9001, 10_050)) // over 10,000: events up to 100 go
    expect(recent.span('t')).toEqual({ from: seq(100), last: seq(10_050) })
    expect(recent.isFull('t')).toBe(false)
    recent.extend('t', seq(10_050), events(10_051, 12_000)) // the slow one still needs 101 on
    expect(recent.isFull('t')).toBe(true)
    expect(recent.span('t')?.last).toBe(seq(10_050))
  })
})
