import { describe, expect, it } from 'vitest'
import {
  bumpVector,
  conflictBase,
  compareVectors,
  conflictPath,
  conflictRecord,
  isConflictPath,
  lwwCompare,
  mergeVectors,
  resolve,
  sameContent
} from './version.js'
import { isValidPath } from './paths.js'
import type { FileRecord, Version, VersionVector } from './types.js'

const A = 'aaaaaaaaaaaaa'
const B = 'bbbbbbbbbbbbb'

// 2024-03-05 07:08:09.123 UTC
const T0 = Date.UTC(2024, 2, 5, 7, 8, 9, 123)

function version (vv: Record<string, number>, wall: number, node: string, logical = 0): Version {
  return { vv, hlc: { wall, logical }, node }
}

function file (path: string, content: string, v: Version, extra: Partial<FileRecord> = {}): FileRecord {
  return {
    path,
    type: 'file',
    mode: 0o644,
    size: content.length,
    mtimeMs: 1_700_000_000_000,
    blockSize: 128 * 1024,
    blocks: [`${content}-block`],
    hash: `${content}-hash`,
    target: '',
    deleted: false,
    version: v,
    ...extra
  }
}

function tombstone (path: string, v: Version): FileRecord {
  return { ...file(path, '', v), size: 0, blockSize: 0, blocks: [], hash: '', mtimeMs: 0, deleted: true }
}

describe('compareVectors', () => {
  it('equal', () => {
    expect(compareVectors({}, {})).toBe('equal')
    expect(compareVectors({ [A]: 1, [B]: 2 }, { [B]: 2, [A]: 1 })).toBe('equal')
    // a zero entry is the same as a missing one
    expect(compareVectors({ [A]: 1, [B]: 0 }, { [A]: 1 })).toBe('equal')
    expect(compareVectors({ [A]: 1 }, { [A]: 1, [B]: 0 })).toBe('equal')
  })

  it('before', () => {
    expect(compareVectors({ [A]: 1 }, { [A]: 2 })).toBe('before')
    expect(compareVectors({ [A]: 1 }, { [A]: 1, [B]: 1 })).toBe('before')
    expect(compareVectors({}, { [B]: 1 })).toBe('before')
  })

  it('after', () => {
    expect(compareVectors({ [A]: 2 }, { [A]: 1 })).toBe('after')
    expect(compareVectors({ [A]: 1, [B]: 1 }, { [A]: 1 })).toBe('after')
    expect(compareVectors({ [B]: 1 }, {})).toBe('after')
  })

  it('concurrent', () => {
    expect(compareVectors({ [A]: 1 }, { [B]: 1 })).toBe('concurrent')
    expect(compareVectors({ [A]: 2, [B]: 1 }, { [A]: 1, [B]: 2 })).toBe('concurrent')
    expect(compareVectors({ [A]: 1, [B]: 1 }, { [A]: 1, c: 1 })).toBe('concurrent')
  })
})

describe('mergeVectors', () => {
  it('takes the largest counter per node and does not mutate its inputs', () => {
    const a = { [A]: 3, [B]: 1 }
    const b = { [B]: 4, c: 2 }
    expect(mergeVectors(a, b)).toEqual({ [A]: 3, [B]: 4, c: 2 })
    expect(mergeVectors(b, a)).toEqual({ [A]: 3, [B]: 4, c: 2 })
    expect(a).toEqual({ [A]: 3, [B]: 1 })
    expect(b).toEqual({ [B]: 4, c: 2 })
    expect(mergeVectors({}, {})).toEqual({})
  })

  it('dominates (or equals) both inputs', () => {
    const a = { [A]: 2 }
    const b = { [B]: 5 }
    const m = mergeVectors(a, b)
    expect(compareVectors(m, a)).toBe('after')
    expect(compareVectors(m, b)).toBe('after')
    expect(compareVectors(mergeVectors(a, { [A]: 1 }), a)).toBe('equal')
  })
})

describe('bumpVector', () => {
  it('bumps the writer on top of everything seen', () => {
    expect(bumpVector(A)).toEqual({ [A]: 1 })
    expect(bumpVector(A, { [A]: 3 })).toEqual({ [A]: 4 })
    expect(bumpVector(A, { [B]: 2 }, { [A]: 1, c: 7 })).toEqual({ [A]: 2, [B]: 2, c: 7 })
  })

  it('makes a vector that dominates every input', () => {
    const seen: VersionVector[] = [{ [A]: 1, [B]: 3 }, { [B]: 2, c: 1 }]
    const v = bumpVector(B, ...seen)
    for (const s of seen) expect(compareVectors(v, s)).toBe('after')
    expect(seen[0]).toEqual({ [A]: 1, [B]: 3 })
  })
})

describe('lwwCompare', () => {
  it('orders by HLC, then node id', () => {
    expect(lwwCompare(version({}, 2, A), version({}, 1, B))).toBe(1)
    expect(lwwCompare(version({}, 1, A, 1), version({}, 1, B, 0))).toBe(1)
    expect(lwwCompare(version({}, 1, A), version({}, 1, B))).toBe(-1)
    expect(lwwCompare(version({}, 1, B), version({}, 1, A))).toBe(1)
    expect(lwwCompare(version({}, 1, A), version({}, 1, A))).toBe(0)
  })
})

describe('resolve', () => {
  it('equal vectors → equal', () => {
    const v = version({ [A]: 1 }, T0, A)
    expect(resolve(file('x', 'one', v), file('x', 'one', v))).toEqual({ kind: 'equal' })
  })

  it('a causally later version wins even when its HLC is far behind (clock skew)', () => {
    const old = file('x', 'old', version({ [A]: 1 }, T0 + 86_400_000, A))
    // B saw A's write and wrote on top of it, but its clock is a day behind
    const later = file('x', 'new', version({ [A]: 1, [B]: 1 }, T0, B))
    expect(resolve(old, later)).toEqual({ kind: 'incoming' })
    expect(resolve(later, old)).toEqual({ kind: 'current' })
  })

  it('concurrent: LWW by HLC gives the same merged winner whatever the argument order', () => {
    const a = file('x', 'from-a', version({ [A]: 1, c: 2 }, T0, A))
    const b = file('x', 'from-b', version({ [B]: 1, c: 1 }, T0 + 5, B))
    const r1 = resolve(a, b)
    const r2 = resolve(b, a)
    expect(r1.kind).toBe('concurrent')
    expect(r2.kind).toBe('concurrent')
    if (r1.kind !== 'concurrent' || r2.kind !== 'concurrent') return
    expect(r1.winnerIs).toBe('incoming')
    expect(r2.winnerIs).toBe('current')
    expect(r1.winner).toEqual(r2.winner)
    expect(r1.loser).toEqual(r2.loser)
    expect(r1.winner.hash).toBe('from-b-hash')
    expect(r1.winner.version).toEqual({ vv: { [A]: 1, [B]: 1, c: 2 }, hlc: { wall: T0 + 5, logical: 0 }, node: B })
    expect(r1.loser).toEqual(a)
    expect(r1.conflictCopy).toBe(true)
    expect(r2.conflictCopy).toBe(true)
    // the merged winner dominates both versions: it beats either when it comes back
    expect(resolve(a, r1.winner)).toEqual({ kind: 'incoming' })
    expect(resolve(b, r1.winner)).toEqual({ kind: 'incoming' })
    // inputs are untouched
    expect(b.version.vv).toEqual({ [B]: 1, c: 1 })
  })

  it('concurrent with equal HLC: the larger node id wins, on both sides', () => {
    const a = file('x', 'from-a', version({ [A]: 1 }, T0, A, 3))
    const b = file('x', 'from-b', version({ [B]: 1 }, T0, B, 3))
    const r1 = resolve(a, b)
    const r2 = resolve(b, a)
    if (r1.kind !== 'concurrent' || r2.kind !== 'concurrent') throw new Error('expected concurrent')
    expect(r1.winner).toEqual(r2.winner)
    expect(r1.winner.version.node).toBe(B)
    expect(r1.loser.version.node).toBe(A)
  })

  it('concurrent logical counter breaks the tie before the node id', () => {
    const a = file('x', 'from-a', version({ [A]: 1 }, T0, A, 4))
    const b = file('x', 'from-b', version({ [B]: 1 }, T0, B, 3))
    const r = resolve(b, a)
    if (r.kind !== 'concurrent') throw new Error('expected concurrent')
    expect(r.winner.hash).toBe('from-a-hash')
    expect(r.winnerIs).toBe('incoming')
  })

  it('concurrent with identical content → no conflict copy', () => {
    const a = file('x', 'same', version({ [A]: 1 }, T0, A), { mtimeMs: 1 })
    const b = file('x', 'same', version({ [B]: 1 }, T0 + 1, B), { mtimeMs: 2 })
    for (const r of [resolve(a, b), resolve(b, a)]) {
      if (r.kind !== 'concurrent') throw new Error('expected concurrent')
      expect(r.conflictCopy).toBe(false)
    }
  })

  it('concurrent: a live file losing to a tombstone is kept as a conflict copy', () => {
    const a = file('x', 'data', version({ [A]: 1 }, T0, A))
    const del = tombstone('x', version({ [B]: 1 }, T0 + 1, B))
    for (const r of [resolve(a, del), resolve(del, a)]) {
      if (r.kind !== 'concurrent') throw new Error('expected concurrent')
      expect(r.winner.deleted).toBe(true)
      expect(r.conflictCopy).toBe(true)
    }
  })

  it('concurrent: a losing tombstone, directory or symlink makes no conflict copy', () => {
    const live = file('x', 'data', version({ [A]: 1 }, T0 + 10, A))
    const losers: FileRecord[] = [
      tombstone('x', version({ [B]: 1 }, T0, B)),
      { ...file('x', '', version({ [B]: 1 }, T0, B)), type: 'dir', size: 0, blocks: [], hash: '', blockSize: 0 },
      { ...file('x', '', version({ [B]: 1 }, T0, B)), type: 'symlink', size: 0, blocks: [], hash: 'h', target: 'elsewhere', blockSize: 0 }
    ]
    for (const loser of losers) {
      for (const r of [resolve(live, loser), resolve(loser, live)]) {
        if (r.kind !== 'concurrent') throw new Error('expected concurrent')
        expect(r.winner.hash).toBe('data-hash')
        expect(r.conflictCopy).toBe(false)
      }
    }
  })

  it('concurrent: two tombstones make no conflict copy', () => {
    const r = resolve(tombstone('x', version({ [A]: 1 }, T0, A)), tombstone('x', version({ [B]: 1 }, T0 + 1, B)))
    if (r.kind !== 'concurrent') throw new Error('expected concurrent')
    expect(r.conflictCopy).toBe(false)
  })
})

describe('sameContent', () => {
  it('compares type, deletion, hash, target and size but not metadata or version', () => {
    const a = file('x', 'c', version({ [A]: 1 }, T0, A))
    expect(sameContent(a, { ...a, mode: 0o600, mtimeMs: 5, version: version({ [B]: 1 }, 1, B) })).toBe(true)
    expect(sameContent(a, { ...a, hash: 'other' })).toBe(false)
    expect(sameContent(a, { ...a, size: 99 })).toBe(false)
    expect(sameContent(a, { ...a, deleted: true })).toBe(false)
  })
})

describe('conflictPath', () => {
  const v = version({ [A]: 1 }, T0, A)

  it('gives two losing versions of one node in the same second different names (milliseconds, then the logical counter)', () => {
    const first = version({ [A]: 1 }, T0, A)
    const sameSecond = version({ [A]: 2 }, T0 + 400, A)
    const sameMs = { ...version({ [A]: 3 }, T0, A), hlc: { wall: T0, logical: 2 } }
    const names = [first, sameSecond, sameMs].map((x) => conflictPath('f.txt', x))
    expect(new Set(names).size).toBe(3)
    expect(names[2]).toBe(`f.sync-conflict-20240305-070809123-2-${A}.txt`)
    for (const n of names) {
      expect(isConflictPath(n)).toBe(true)
      expect(conflictBase(n)).toBe('f.txt')
    }
    // names made before milliseconds were added are still conflict copies of their base
    expect(isConflictPath(`f.sync-conflict-20240305-070809-${A}.txt`)).toBe(true)
    expect(conflictBase(`f.sync-conflict-20240305-070809-${A}.txt`)).toBe('f.txt')
  })

  it('puts the marker before the extension', () => {
    expect(conflictPath('notes.txt', v)).toBe(`notes.sync-conflict-20240305-070809123-${A}.txt`)
  })

  it('uses only the last extension', () => {
    expect(conflictPath('backup.tar.gz', v)).toBe(`backup.tar.sync-conflict-20240305-070809123-${A}.gz`)
  })

  it('handles names without an extension', () => {
    expect(conflictPath('Makefile', v)).toBe(`Makefile.sync-conflict-20240305-070809123-${A}`)
  })

  it('treats a leading dot as part of the name (dotfiles)', () => {
    expect(conflictPath('.bashrc', v)).toBe(`.bashrc.sync-conflict-20240305-070809123-${A}`)
    expect(conflictPath('.config.json', v)).toBe(`.config.sync-conflict-20240305-070809123-${A}.json`)
  })

  it('keeps nested directories and ignores dots in directory names', () => {
    expect(conflictPath('a/b.d/c/report.pdf', v)).toBe(`a/b.d/c/report.sync-conflict-20240305-070809123-${A}.pdf`)
    expect(conflictPath('dir.v2/README', v)).toBe(`dir.v2/README.sync-conflict-20240305-070809123-${A}`)
    expect(conflictPath('home/.profile', v)).toBe(`home/.profile.sync-conflict-20240305-070809123-${A}`)
  })

  it('uses UTC and zero-pads', () => {
    const w = Date.UTC(2031, 11, 31, 23, 59, 59, 999)
    expect(conflictPath('x.md', version({}, w, B))).toBe(`x.sync-conflict-20311231-235959999-${B}.md`)
    const e = Date.UTC(2001, 0, 2, 3, 4, 5)
    expect(conflictPath('x', version({}, e, B))).toBe(`x.sync-conflict-20010102-030405000-${B}`)
  })

  it('is deterministic: the same loser gives the same name everywhere', () => {
    expect(conflictPath('a/b.txt', v)).toBe(conflictPath('a/b.txt', { ...v, vv: { ...v.vv, [B]: 9 } }))
  })

  it('stays a valid path (segment at most 255 bytes) for long names', () => {
    const cases = [
      'x'.repeat(251) + '.txt', // a 255-byte name
      'd/' + 'y'.repeat(255), // no extension
      'é'.repeat(125) + '.md', // multi-byte characters
      'a.' + 'e'.repeat(253), // a very long extension
      Array.from({ length: 16 }, () => 's'.repeat(250)).join('/') + '/' + 'n'.repeat(60) + '.txt' // 4080 bytes in all
    ]
    for (const p of cases) {
      expect(isValidPath(p), p).toBe(true)
      const c = conflictPath(p, v)
      expect(isValidPath(c), `conflictPath of a ${p.length}-char path`).toBe(true)
      expect(isConflictPath(c)).toBe(true)
      expect(c).toContain(`.sync-conflict-20240305-070809123-${A}`)
    }
  })

  it('conflictRecord renames the loser and keeps everything else', () => {
    const loser = file('d/x.txt', 'lost', v)
    const copy = conflictRecord(loser)
    expect(copy).toEqual({ ...loser, path: `d/x.sync-conflict-20240305-070809123-${A}.txt` })
    expect(loser.path).toBe('d/x.txt')
  })
})

describe('isConflictPath', () => {
  const v = version({ [A]: 1 }, T0, A)

  it('recognises every name conflictPath makes', () => {
    for (const p of ['notes.txt', 'Makefile', '.bashrc', 'a/b.d/c/report.pdf', 'backup.tar.gz', 'x/.profile']) {
      expect(isConflictPath(conflictPath(p, v))).toBe(true)
    }
  })

  it('rejects ordinary names and malformed markers', () => {
    expect(isConflictPath('notes.txt')).toBe(false)
    expect(isConflictPath('a.sync-conflict.txt')).toBe(false)
    expect(isConflictPath(`a.sync-conflict-2024035-070809-${A}.txt`)).toBe(false)
    expect(isConflictPath('a.sync-conflict-20240305-070809-short.txt')).toBe(false)
    // a conflict-named directory does not make its children conflict copies
    expect(isConflictPath(`d.sync-conflict-20240305-070809-${A}/file.txt`)).toBe(false)
  })
})

describe('conflictBase', () => {
  const v = version({ [A]: 1 }, T0, A)

  it('gives back the path conflictPath started from', () => {
    for (const p of ['notes.txt', 'Makefile', '.bashrc', 'a/b.d/c/report.pdf', 'backup.tar.gz', 'x/.profile']) {
      expect(conflictBase(conflictPath(p, v))).toBe(p)
    }
  })

  it('strips only the last marker, and leaves other names alone', () => {
    const once = conflictPath('doc.txt', v)
    const twice = conflictPath(once, version({ [B]: 1 }, T0, B))
    expect(conflictBase(twice)).toBe(once)
    expect(conflictBase('notes.txt')).toBe('notes.txt')
  })
})
