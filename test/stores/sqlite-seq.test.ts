import { describe, expect, it } from 'vitest'
import { formatSeq, parseSeq, seqBound } from '../../src/stores/sqlite/seq.js'

describe('SQLite seqs', () => {
  it('are 16-digit strings that sort like their integers', () => {
    const seqs = [1, 9, 10, 99, 100, 123_456_789, 2 ** 53 - 1].map(formatSeq)
    expect(seqs.every((seq) => seq.length === 16)).toBe(true)
    expect([...seqs].sort()).toEqual(seqs)
    expect(seqs.map(parseSeq)).toEqual([1, 9, 10, 99, 100, 123_456_789, 2 ** 53 - 1])
  })

  it('reads only seqs this store gives out', () => {
    for (const text of [
      '',
      '1',
      '000000000000001',
      '00000000000000001',
      '000000000000000x',
      '-000000000000001',
      ' 000000000000001',
    ]) {
      expect(parseSeq(text), JSON.stringify(text)).toBeUndefined()
    }
  })

  it('turns any resume token into the integer bound that string comparison implies', () => {
    const candidates = [
      0,
      1,
      5,
      9,
      10,
      11,
      99,
      100,
      101,
      4_999,
      5_000,
      5_001,
      10 ** 12,
      10 ** 12 + 7,
      10 ** 15 - 1,
      10 ** 15,
      2 ** 53 - 1,
    ]
    const tokens = [
      '',
      '0',
      '00000000000000',
      '000000000000005',
      '0000000000000050',
      '00000000000000500',
      '0000000000005000x',
      '000000000000500!',
      '0000000000000099',
      '000000000001',
      '000000000001~',
      '000000000001 ',
      '1',
      '9',
      'a',
      '~',
      '0000000000000010.5',
      '0000000000000000',
      '9999999999999999',
      '99999999999999999',
    ]
    for (const token of tokens) {
      const bound = seqBound(token)
      for (const n of candidates)
        expect(n > bound, `${formatSeq(n)} after ${JSON.stringify(token)}`).toBe(formatSeq(n) > token)
    }
    expect(seqBound(undefined)).toBe(-1)
  })
})
