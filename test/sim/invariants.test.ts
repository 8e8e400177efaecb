import { describe, expect, it } from 'vitest'
import { checkWrites, type DiskSnapshot } from './invariants.js'
import { Ledger } from './ledger.js'

const COPY = 'd/f.sync-conflict-20260101-120000000-aaaaaaaaaaaaa.txt'

function ledgerOf (writes: Array<{ path: string, digest: string }>): Ledger {
  const l = new Ledger()
  writes.forEach((w, i) => l.record({ node: i, kind: 'write', path: w.path, digest: w.digest, label: 'create' }))
  return l
}

function disk (entries: Record<string, string>): DiskSnapshot {
  return new Map(Object.entries(entries).map(([p, digest]) => [p, { type: 'file' as const, digest }]))
}

describe('sim invariants: the write checks', () => {
  it('a write held at its path is kept; one held nowhere is lost', () => {
    const l = ledgerOf([{ path: 'd/f.txt', digest: 'aa' }, { path: 'd/g.txt', digest: 'bb' }])
    const r = checkWrites(l, disk({ 'd/f.txt': 'aa' }), 'n0')
    expect(r.noLostWrites.pass).toBe(false)
    expect(r.noLostWrites.failures).toEqual([expect.stringContaining('d/g.txt')])
  })

  it('a losing write kept as a conflict copy is kept', () => {
    const l = ledgerOf([{ path: 'd/f.txt', digest: 'aa' }, { path: 'd/f.txt', digest: 'bb' }])
    const r = checkWrites(l, disk({ 'd/f.txt': 'bb', [COPY]: 'aa' }), 'n0')
    expect(r.noLostWrites.pass).toBe(true)
    expect(r.noIdenticalConflictCopies.pass).toBe(true)
  })

  it('a write under a conflict name (a renamed directory) whose content its base holds is kept, and the copy is not required', () => {
    const l = ledgerOf([{ path: 'd/f.txt', digest: 'aa' }, { path: COPY, digest: 'aa' }])
    const r = checkWrites(l, disk({ 'd/f.txt': 'aa' }), 'n0')
    expect(r.noLostWrites.pass).toBe(true)
    expect(r.noIdenticalConflictCopies.pass).toBe(true)
  })

  it('a redundant copy shares its base write\'s fate: the base moved away later, or kept as a copy itself', () => {
    const moved = ledgerOf([{ path: 'd/f.txt', digest: 'aa' }, { path: COPY, digest: 'aa' }])
    moved.saw('d/f.txt', 'aa', 'delete', 0) // a rename of d/f.txt to elsewhere
    moved.record({ node: 0, kind: 'write', path: 'e/f.txt', digest: 'aa', label: 'rename' })
    expect(checkWrites(moved, disk({ 'e/f.txt': 'aa' }), 'n0').noLostWrites.pass).toBe(true)
    const lost = ledgerOf([{ path: 'd/f.txt', digest: 'aa' }, { path: COPY, digest: 'aa' }])
    const sibling = 'd/f.sync-conflict-20260101-130000000-bbbbbbbbbbbbb.txt'
    expect(checkWrites(lost, disk({ 'd/f.txt': 'cc', [sibling]: 'aa' }), 'n0').noLostWrites.pass).toBe(true)
    // another path's move says nothing about this copy
    const other = ledgerOf([{ path: 'd/f.txt', digest: 'aa' }, { path: COPY, digest: 'aa' }])
    other.saw('d/g.txt', 'aa', 'delete', 0)
    expect(checkWrites(other, disk({}), 'n0').noLostWrites.failures).toHaveLength(2)
  })

  it('a write under a conflict name is lost when neither it nor its base holds its content', () => {
    const l = ledgerOf([{ path: 'd/f.txt', digest: 'bb' }, { path: COPY, digest: 'aa' }])
    const r = checkWrites(l, disk({ 'd/f.txt': 'bb' }), 'n0')
    expect(r.noLostWrites.pass).toBe(false)
  })

  it('a conflict copy with its base\'s content fails noIdenticalConflictCopies', () => {
    const l = ledgerOf([{ path: 'd/f.txt', digest: 'aa' }, { path: COPY, digest: 'aa' }])
    const r = checkWrites(l, disk({ 'd/f.txt': 'aa', [COPY]: 'aa' }), 'n0')
    expect(r.noIdenticalConflictCopies.pass).toBe(false)
  })
})
