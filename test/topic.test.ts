import { describe, expect, it } from 'vitest'
import { isHeraldError } from '../src/index.js'
import { TopicIndex, assertTopic, compileMatcher, patternMatches, splitPatterns } from '../src/topic.js'

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (error) {
    return isHeraldError(error) ? error.code : 'not a HeraldError'
  }
  return undefined
}

describe('topics', () => {
  it('accepts segments joined by slashes, dots being ordinary characters', () => {
    for (const topic of ['orders', 'transaction/credit', 'user.created', 'a/b.c/d-e_f', 'ünïcode/✓'])
      expect(assertTopic(topic)).toBe(topic)
  })

  it.each([
    ['an empty topic', ''],
    ['an empty segment', 'a//b'],
    ['a leading slash', '/a'],
    ['a trailing slash', 'a/'],
    ['a space', 'order created'],
    ['a tab', 'a\tb'],
    ['a newline', 'a\nb'],
    ['a wildcard', 'order/*/paid'],
    ['a list separator', 'a;b'],
    ['more than 1,024 characters', 'x'.repeat(1025)],
    ['more than 32 segments', Array.from({ length: 33 }, () => 'a').join('/')],
    ['a non-string', 42],
  ])('rejects %s with invalid_topic', (_what, topic) => {
    expect(codeOf(() => assertTopic(topic))).toBe('invalid_topic')
  })

  it('accepts exactly 1,024 characters and 32 segments', () => {
    expect(codeOf(() => assertTopic('x'.repeat(1024)))).toBeUndefined()
    expect(codeOf(() => assertTopic(Array.from({ length: 32 }, () => 'a').join('/')))).toBeUndefined()
  })
})

describe('patterns', () => {
  it('a pattern matches its own topic and every descendant', () => {
    expect(patternMatches('transaction', 'transaction')).toBe(true)
    expect(patternMatches('transaction', 'transaction/credit')).toBe(true)
    expect(patternMatches('transaction', 'transactions')).toBe(false)
    expect(patternMatches('transaction/credit', 'transaction')).toBe(false)
  })

  it('`*` stands for exactly one segment, and alone matches everything', () => {
    expect(patternMatches('order/*/paid', 'order/1/paid')).toBe(true)
    expect(patternMatches('order/*/paid', 'order/1/paid/partial')).toBe(true)
    expect(patternMatches('order/*/paid', 'order/1/refunded')).toBe(false)
    expect(patternMatches('order/*/paid', 'order/paid')).toBe(false)
    expect(patternMatches('*', 'anything/at/all')).toBe(true)
    expect(patternMatches('*/created', 'user.created')).toBe(false)
  })

  it('a dot does not split segments', () => {
    expect(patternMatches('user', 'user.created')).toBe(false)
    expect(patternMatches('user.created', 'user.created')).toBe(true)
  })

  it('rejects a wildcard inside a segment', () => {
    expect(codeOf(() => splitPatterns('ord*'))).toBe('invalid_pattern')
    expect(codeOf(() => splitPatterns('a/b*/c'))).toBe('invalid_pattern')
  })

  it('splits `;`-separated lists, trims, drops repeats, and refuses an empty list', () => {
    expect(splitPatterns('a; b/c ;a')).toEqual(['a', 'b/c'])
    expect(splitPatterns(['x;y', 'z'])).toEqual(['x', 'y', 'z'])
    expect(codeOf(() => splitPatterns(' ; '))).toBe('invalid_pattern')
    expect(codeOf(() => splitPatterns([]))).toBe('invalid_pattern')
  })

  it('refuses more distinct patterns than a given bound, counting a repeat once', () => {
    expect(splitPatterns('a;b;a;b;c', 3)).toEqual(['a', 'b', 'c'])
    expect(codeOf(() => splitPatterns('a;b;c;d', 3))).toBe('invalid_request')
  })
})

describe('a compiled list of patterns', () => {
  it('answers as its patterns do, whether it scans a few or walks a trie of many', () => {
    const few = ['order/*/paid', 'invoice']
    const many = [...Array.from({ length: 999 }, (_, i) => `order/${i}/x/y/z/long-segment`), ...few]
    const topics = [
      'order/1/paid',
      'order/1/paid/partial',
      'order/1/refunded',
      'invoice',
      'invoice/9',
      'order/7/x/y/z/long-segment/deeper',
      'order/1000/x/y/z/long-segment',
      'other',
    ]
    for (const patterns of [few, many]) {
      const matches = compileMatcher(patterns)
      for (const topic of topics)
        expect([topic, matches(topic)]).toEqual([
          topic,
          patterns.some((pattern) => patternMatches(pattern, topic)),
        ])
    }
    expect(compileMatcher([...many, '*'])('anything')).toBe(true)
  })
})

describe('the matching index', () => {
  it('finds every entry whose pattern matches a topic, each once', () => {
    const index = new TopicIndex<string>()
    index.add('*', 'all')
    index.add('order', 'orders')
    index.add('order/*/paid', 'paid')
    index.add('order/1', 'one')
    index.add('order/1/paid', 'one-paid')
    index.add('order/1', 'one') // the same entry twice is one entry
    index.add('invoice', 'invoices')
    expect([...index.match('order/1/paid/partial')].sort()).toEqual([
      'all',
      'one',
      'one-paid',
      'orders',
      'paid',
    ])
    expect([...index.match('order/2/refunded')].sort()).toEqual(['all', 'orders'])
    expect([...index.match('user.created')]).toEqual(['all'])
  })

  it('forgets removed entries, including in topics it looked up before', () => {
    const index = new TopicIndex<string>()
    index.add('a/*', 'x')
    index.add('a/b', 'y')
    expect([...index.match('a/b')].sort()).toEqual(['x', 'y'])
    index.remove('a/*', 'x')
    expect(index.match('a/b')).toEqual(['y'])
    index.remove('a/b', 'y')
    expect(index.match('a/b')).toEqual([])
    expect(index.size).toBe(0)
  })
})
