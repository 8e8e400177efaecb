import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it } from 'vitest'
import { BlockCache } from './blockcache.js'

const MiB = 1024 * 1024
const bytes = (n: number, fill: number): Uint8Array => new Uint8Array(n).fill(fill)

describe('BlockCache', () => {
  it('keeps a copy of each block by hash and length', () => {
    const c = new BlockCache()
    const src = bytes(10, 1)
    c.add('h1', src)
    src.fill(9) // the caller's buffer changes: the entry does not
    expect(Array.from(c.get('h1', 10) ?? [])).toEqual(Array.from(bytes(10, 1)))
    expect(c.get('h1', 11)).toBeNull()
    expect(c.get('h2', 10)).toBeNull()
    c.add('h2', new Uint8ArrayList(bytes(3, 2), bytes(4, 3)))
    expect(Array.from(c.get('h2', 7) ?? [])).toEqual([2, 2, 2, 3, 3, 3, 3])
    // a copy: what a caller does with it changes nothing here
    c.get('h1', 10)!.fill(5)
    c.add('h1', bytes(10, 7)) // known already: kept as it was
    expect(Array.from(c.get('h1', 10) ?? [])).toEqual(Array.from(bytes(10, 1)))
    expect(c.bytes).toBe(17)
    expect(c.stats).toEqual({ hits: 4, added: 2 })
  })

  it('makes its copy with the function given, if any', () => {
    const c = new BlockCache()
    c.add('h1', bytes(10, 1))
    const into = new Uint8Array(16)
    const got = c.get('h1', 10, (src) => { into.set(src, 4); return into.subarray(4, 14) })
    expect(got?.buffer).toBe(into.buffer)
    expect(Array.from(into)).toEqual([0, 0, 0, 0, ...Array.from(bytes(10, 1)), 0, 0])
    // a miss never calls it
    expect(c.get('h2', 10, () => { throw new Error('called') })).toBeNull()
  })

  it('skips empty blocks and blocks over its limit', () => {
    const c = new BlockCache(4 * MiB, 1000)
    c.add('e', new Uint8Array(0))
    c.add('big', bytes(1001, 1))
    c.add('ok', bytes(1000, 1))
    expect(c.count).toBe(1)
    expect(c.get('ok', 1000)).not.toBeNull()
  })

  it('takes its oldest slab again when full, its blocks dropped with it', () => {
    const c = new BlockCache(2 * MiB, 128 * 1024)
    const n = 64 // 64 blocks of 64 KiB: four slabs' worth
    for (let i = 0; i < n; i++) c.add(`h${i}`, bytes(64 * 1024, i))
    // two slabs kept: the 32 newest blocks
    expect(c.count).toBe(32)
    expect(c.bytes).toBe(2 * MiB)
    for (let i = 0; i < n; i++) {
      const got = c.get(`h${i}`, 64 * 1024)
      if (i < n - 32) expect(got).toBeNull()
      else expect(got?.[0]).toBe(i)
    }
    // an entry dropped and added again is kept again
    c.add('h0', bytes(64 * 1024, 0))
    expect(c.get('h0', 64 * 1024)?.[0]).toBe(0)
  })
})
