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

  it('the same content written at a path by two nodes: a later write that saw it may have seen either, so holding it is no causal error', () => {
    // n0 writes aa; n1 writes bb over it; n2, which never saw bb, puts aa back (a directory
    // renamed back) concurrently, later by its clock, and wins: the path holds aa
    const twice = new Ledger()
    twice.record({ node: 0, kind: 'write', path: 'd/f.txt', digest: 'aa', label: 'create' })
    twice.record({ node: 2, kind: 'write', path: 'd/f.txt', digest: 'aa', label: 'rename' })
    twice.saw('d/f.txt', 'aa', 'write', 1)
    twice.record({ node: 1, kind: 'write', path: 'd/f.txt', digest: 'bb', label: 'modify' })
    const r = checkWrites(twice, disk({ 'd/f.txt': 'aa', [COPY]: 'bb' }), 'n0')
    expect(r.causalOrder.pass).toBe(true)
    expect(r.noLostWrites.pass).toBe(true)
    // written by one node only, it was superseded
    const once = new Ledger()
    once.record({ node: 0, kind: 'write', path: 'd/f.txt', digest: 'aa', label: 'create' })
    once.saw('d/f.txt', 'aa', 'write', 1)
    once.record({ node: 1, kind: 'write', path: 'd/f.txt', digest: 'bb', label: 'modify' })
    expect(checkWrites(once, disk({ 'd/f.txt': 'aa', [COPY]: 'bb' }), 'n0').causalOrder.pass).toBe(false)
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
