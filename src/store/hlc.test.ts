import { describe, expect, it } from 'vitest'
import { HybridClock, compareHlc } from './hlc.js'
import type { Hlc } from './types.js'

/** A wall clock the test moves by hand. */
function manualClock (start: number): { now: () => number, set: (t: number) => void } {
  let t = start
  return { now: () => t, set: (v) => { t = v } }
}

describe('HybridClock', () => {
  it('follows the wall clock when it moves forward', () => {
    const c = manualClock(1000.7)
    const hlc = new HybridClock({ now: c.now })
    expect(hlc.tick()).toEqual({ wall: 1000, logical: 0 })
    c.set(2000)
    expect(hlc.tick()).toEqual({ wall: 2000, logical: 0 })
    expect(hlc.wall()).toBe(2000)
  })

  it('stays strictly monotonic when the wall clock stands still or goes backwards', () => {
    const c = manualClock(10_000)
    const hlc = new HybridClock({ now: c.now })
    const seen: Hlc[] = [hlc.tick()]
    seen.push(hlc.tick()) // same millisecond
    c.set(5_000) // clock jumps back
    seen.push(hlc.tick())
    seen.push(hlc.tick())
    c.set(9_999)
    seen.push(hlc.tick())
    c.set(10_001)
    seen.push(hlc.tick())
    for (let i = 1; i < seen.length; i++) {
      expect(compareHlc(seen[i - 1], seen[i])).toBe(-1)
    }
    expect(seen[3]).toEqual({ wall: 10_000, logical: 3 })
    expect(seen[5]).toEqual({ wall: 10_001, logical: 0 })
  })

  it('returns copies: mutating a returned timestamp does not affect the clock', () => {
    const hlc = new HybridClock({ now: () => 100 })
    const t = hlc.tick()
    t.wall = 1e12
    expect(hlc.tick()).toEqual({ wall: 100, logical: 1 })
  })

  it('observe() of a remote timestamp ahead moves the clock past it', () => {
    const c = manualClock(1_000)
    const hlc = new HybridClock({ now: c.now })
    hlc.tick()
    const remote = { wall: 50_000, logical: 7 }
    hlc.observe(remote)
    const next = hlc.tick()
    expect(compareHlc(next, remote)).toBe(1)
    expect(next).toEqual({ wall: 50_000, logical: 9 })
    // the wall clock catches up: back to plain wall time
    c.set(60_000)
    expect(hlc.tick()).toEqual({ wall: 60_000, logical: 0 })
  })

  it('observe() of a remote timestamp at the same wall time takes the larger logical counter', () => {
    const hlc = new HybridClock({ now: () => 500 })
    hlc.tick() // {500, 0}
    hlc.tick() // {500, 1}
    hlc.observe({ wall: 500, logical: 10 })
    expect(hlc.tick()).toEqual({ wall: 500, logical: 12 })
  })

  it('observe() of a remote timestamp behind us still moves the clock forward', () => {
    const c = manualClock(1_000)
    const hlc = new HybridClock({ now: c.now })
    const a = hlc.tick()
    hlc.observe({ wall: 10, logical: 0 })
    const b = hlc.tick()
    expect(compareHlc(a, b)).toBe(-1)
  })

  it('ignores a remote timestamp more than maxForwardJumpMs ahead', () => {
    const c = manualClock(1_000)
    const hlc = new HybridClock({ now: c.now, maxForwardJumpMs: 10_000 })
    hlc.observe({ wall: 1_000 + 10_001, logical: 0 })
    expect(hlc.tick()).toEqual({ wall: 1_000, logical: 0 })
    // exactly at the limit is accepted
    hlc.observe({ wall: 11_000, logical: 3 })
    expect(hlc.tick()).toEqual({ wall: 11_000, logical: 5 })
  })

  it('defaults maxForwardJumpMs to one day', () => {
    const hlc = new HybridClock({ now: () => 1_000 })
    hlc.observe({ wall: 1_000 + 86_400_001, logical: 0 })
    expect(hlc.tick()).toEqual({ wall: 1_000, logical: 0 })
    hlc.observe({ wall: 1_000 + 86_400_000, logical: 0 })
    expect(hlc.tick()).toEqual({ wall: 1_000 + 86_400_000, logical: 2 })
  })
})

describe('compareHlc', () => {
  it('orders by wall time, then by logical counter', () => {
    expect(compareHlc({ wall: 1, logical: 9 }, { wall: 2, logical: 0 })).toBe(-1)
    expect(compareHlc({ wall: 2, logical: 0 }, { wall: 1, logical: 9 })).toBe(1)
    expect(compareHlc({ wall: 5, logical: 1 }, { wall: 5, logical: 2 })).toBe(-1)
    expect(compareHlc({ wall: 5, logical: 2 }, { wall: 5, logical: 1 })).toBe(1)
    expect(compareHlc({ wall: 5, logical: 2 }, { wall: 5, logical: 2 })).toBe(0)
  })

  it('sorts a list of timestamps', () => {
    const list: Hlc[] = [{ wall: 3, logical: 0 }, { wall: 1, logical: 1 }, { wall: 1, logical: 0 }, { wall: 2, logical: 5 }]
    expect([...list].sort(compareHlc)).toEqual([{ wall: 1, logical: 0 }, { wall: 1, logical: 1 }, { wall: 2, logical: 5 }, { wall: 3, logical: 0 }])
  })
})
