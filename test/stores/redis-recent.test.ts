/**
 * The Redis store's in-memory stretch of recent events: claims trust it to cover every event
 * between its ends (held, or known to lie there and read when needed), so it must refuse
 * whatever would leave a gap.
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

  it('drops what every subscription claiming here has passed; past its events limit, chunks join without events', () => {
    const recent = new RecentEvents()
    const now = Date.now()
    recent.claiming('t', 'slow', seq(100), now)
    recent.claiming('t', 'fast', seq(9000), now)
    recent.extend('t', '', events(1, 100))
    recent.extend('t', seq(100), events(101, 9000))
    recent.extend('t', seq(9000), events(9001, 10_050)) // over 10,000 events: the chunk up to 100 goes
    expect(recent.span('t')).toEqual({ from: seq(100), last: seq(10_050) })
    recent.extend('t', seq(10_050), events(10_051, 12_000)) // the slow one still needs 101 on
    expect(recent.isFull('t')).toBe(false)
    expect(recent.span('t')?.last).toBe(seq(12_000)) // known, but without its events
    expect(recent.after('t', seq(10_050), seq(12_000))).toBeUndefined()
    expect(recent.chunksAfter('t', seq(10_050))?.map((chunk) => chunk.events === undefined)).toEqual([true])
  })

  it('knows where other processes’ appends lie without their events, and takes them when read', () => {
    const recent = new RecentEvents()
    recent.claiming('t', 's', undefined, Date.now())
    recent.add('t', '', events(1, 3), Date.now())
    recent.note('t', seq(3), seq(4), seq(6), Date.now())
    recent.note('t', seq(6), seq(7), seq(8), Date.now())
    expect(recent.span('t')).toEqual({ from: '', last: seq(8) })
    expect(recent.after('t', seq(1), seq(8))).toBeUndefined() // 4 to 8 not read yet
    const [chunk] = recent.chunksAfter('t', seq(3))!
    expect(chunk).toMatchObject({ previous: seq(3), first: seq(4), last: seq(6), events: undefined })
    recent.fill('t', chunk!, events(4, 6))
    expect(ids(recent.range('t', seq(2), seq(6)))).toEqual(['e2', 'e3', 'e4', 'e5', 'e6'])
    // This process's own append, noted before its reply came, gets its events from the reply.
    recent.extend('t', seq(6), events(7, 8))
    expect(ids(recent.after('t', seq(5), seq(8)))).toEqual(['e6', 'e7', 'e8'])
    // A claim's read over the stretch fills what it covers and adds what goes past the end.
    recent.note('t', seq(8), seq(9), seq(10), Date.now())
    recent.extend('t', seq(7), events(8, 12), true)
    expect(ids(recent.after('t', seq(8), seq(12)))).toEqual(['e9', 'e10', 'e11', 'e12'])
  })
})
