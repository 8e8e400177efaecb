import { describe, expect, it } from 'vitest'
import { WrittenRanges } from './ranges.js'
import { EIO, EINVAL, ENOENT, errnoName, fromErrnoNumber, toErrno } from './errno.js'

function ranges (...pairs: Array<[number, number]>): Array<[number, number]> {
  const r = new WrittenRanges()
  for (const [s, e] of pairs) r.add(s, e)
  return r.take()
}

describe('WrittenRanges', () => {
  it('extends sequential writes into one range', () => {
    expect(ranges([0, 10], [10, 20], [20, 25])).toEqual([[0, 25]])
  })
  it('keeps disjoint ranges sorted', () => {
    expect(ranges([50, 60], [0, 10], [20, 30])).toEqual([[0, 10], [20, 30], [50, 60]])
  })
  it('merges overlapping and touching ranges', () => {
    expect(ranges([20, 30], [25, 35], [0, 5], [5, 8], [40, 50], [33, 41])).toEqual([[0, 8], [20, 50]])
    expect(ranges([10, 20], [30, 40], [50, 60], [0, 100])).toEqual([[0, 100]])
    expect(ranges([10, 20], [30, 40], [15, 30])).toEqual([[10, 40]])
  })
  it('ignores empty writes and empties on take', () => {
    const r = new WrittenRanges()
    r.add(5, 5)
    expect(r.empty).toBe(true)
    r.add(0, 1)
    expect(r.take()).toEqual([[0, 1]])
    expect(r.empty).toBe(true)
  })
})

describe('errno mapping', () => {
  it('maps Node error codes to negative errno', () => {
    expect(toErrno(Object.assign(new Error('x'), { code: 'ENOENT' }))).toBe(ENOENT)
    expect(errnoName(toErrno({ code: 'ENOTEMPTY' }))).toBe('ENOTEMPTY')
    expect(errnoName(toErrno({ code: 'EXDEV' }))).toBe('EXDEV')
    expect(toErrno({ code: 'ERR_INVALID_ARG_TYPE' })).toBe(EINVAL)
    expect(toErrno(new Error('no code'))).toBe(EIO)
    expect(toErrno({ errno: -13 })).toBe(-13)
    expect(fromErrnoNumber(61)).toBe(-61)
    expect(fromErrnoNumber(0)).toBe(EIO)
  })
})
