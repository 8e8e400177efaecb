import { describe, expect, it } from 'vitest'
import { RecordCache } from './recordcache.js'
import type { StoredRecord } from './types.js'

function rec (path: string, blocks = 1, seq = 1): StoredRecord {
  return {
    path,
    type: 'file',
    mode: 0o644,
    size: blocks,
    mtimeMs: 0,
    blockSize: 1024,
    blocks: Array.from({ length: blocks }, (_v, i) => i.toString(16).padStart(64, '0')),
    hash: 'f'.repeat(64),
    target: '',
    deleted: false,
    version: { vv: { a: seq }, hlc: { wall: seq, logical: 0 }, node: 'a' },
    seq,
    have: true,
    disk: null
  }
}

describe('RecordCache', () => {
  it('keeps what a batch wrote, frozen', () => {
    const c = new RecordCache()
    c.wrote([rec('a'), rec('b')])
    expect(c.get('a')?.path).toBe('a')
    expect(c.get('c')).toBeUndefined()
    const a = c.get('a') as StoredRecord
    expect(() => { a.seq = 9 }).toThrow(TypeError)
  })

  it('a read that began before a write ended is not kept (it may hold what the write replaced)', () => {
    const c = new RecordCache()
    const since = c.writes
    c.wrote([rec('x', 1, 2)])
    c.fill([rec('y', 1, 1)], since)
    expect(c.get('y')).toBeUndefined()
    c.fill([rec('y', 1, 1), undefined], c.writes)
    expect(c.get('y')?.seq).toBe(1)
  })

  it('a read never replaces a record a write put there', () => {
    const c = new RecordCache()
    c.wrote([rec('x', 1, 2)])
    c.fill([rec('x', 1, 1)], c.writes)
    expect(c.get('x')?.seq).toBe(2)
  })

  it('is bounded by weight (a record counts 10 plus its block hashes): the oldest go first', () => {
    const c = new RecordCache(400)
    c.wrote([rec('big', 60)])
    c.wrote(Array.from({ length: 30 }, (_v, i) => rec(`s${i}`)))
    // 70 + 30 * 11 = 400
    expect(c.size).toBe(31)
    c.wrote([rec('s30')])
    // 411 > 400: the large record was the oldest
    expect(c.get('big')).toBeUndefined()
    expect(c.size).toBe(31)
    // rewriting a record moves it to the young end
    c.wrote([rec('s0', 1, 2)])
    c.wrote(Array.from({ length: 7 }, (_v, i) => rec(`t${i}`)))
    // 341 + 77 = 418 > 400: s1 and s2 go, s0 was written again after them
    expect(c.get('s0')?.seq).toBe(2)
    expect(c.get('s1')).toBeUndefined()
    expect(c.get('s2')).toBeUndefined()
    expect(c.get('s3')?.seq).toBe(1)
  })
})
