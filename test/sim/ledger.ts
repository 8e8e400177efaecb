/**
 * The ledger: every change the workload made and what the node's disk held at that path
 * when it made it. A write whose content the disk still showed to a later operation on the
 * same path is superseded by it (that operation saw it, so the node orders it after);
 * every other acknowledged write must survive, at its path or as a conflict copy.
 *
 * Operations run synchronously on a node's folder (the whole read-then-change is one
 * event-loop turn), so no node in this process can change the path in between: what the
 * ledger says an operation saw is exactly what was on disk when it ran.
 */

import { conflictBase } from '../../src/store/version.js'

export { conflictBase }

/** A conflict marker anywhere in the path (conflictBase strips the last one). */
export function isConflictName (path: string): boolean {
  return conflictBase(path) !== path
}

export type OpKind = 'write' | 'delete' | 'mkdir' | 'rmdir'

export interface LedgerOp {
  id: number
  node: number
  kind: OpKind
  path: string
  /** Content digest (sha256 hex) for writes. */
  digest: string
  /** performance.now() when it ran. */
  at: number
  /** Why it happened ('create', 'modify', 'rename', 'twin', ...), for reports. */
  label: string
  /** For writes: the id of the first operation that saw this write on disk. */
  supersededBy: number | null
  /** ... and what that operation did there. */
  supersededHow: 'write' | 'delete' | null
  /**
   * An identical write on two nodes ("twin"): a later operation on a third node that saw
   * this content may have seen either write, so this one is neither required to survive
   * nor forbidden to.
   */
  ambiguous: boolean
}

export class Ledger {
  readonly ops: LedgerOp[] = []
  /** path -> writes at that path. */
  private readonly writesAt = new Map<string, LedgerOp[]>()
  /** base path -> the conflict-named paths written under it (at any level). */
  private readonly copiesOf = new Map<string, Set<string>>()
  /** Every content digest ever written (to tell corrupt content from real). */
  readonly digests = new Set<string>()
  /** Digests written identically on two nodes (they must never make a conflict copy). */
  readonly twins = new Set<string>()
  private nextId = 1
  lastWriteAt = 0
  firstWriteAt = 0

  /** Workload operations (one rename or rm -r is one operation, several entries). */
  operations = 0

  /**
   * Record that the next operation saw `digest` on disk at `path` (a file it is about to
   * change or remove): the writes of that content at that path are superseded. A
   * conflict copy seen is the preserved write at its base path, and a base path seen
   * stands for its copies of the same content (redundant copies, which nodes drop).
   */
  saw (path: string, digest: string, how: 'write' | 'delete', node: number): void {
    const opId = this.nextId
    const twin = this.twins.has(digest)
    const sup = (p: string): void => {
      const same = (this.writesAt.get(p) ?? []).filter((w) => w.digest === digest && w.supersededBy == null && w.id < opId)
      // the same content written at the path by two nodes (a directory renamed back, a
      // file copied where it was): this node saw one of them, and which is not known
      const several = new Set(same.map((w) => w.node)).size > 1
      for (const w of same) {
        if ((twin || several) && w.node !== node) { w.ambiguous = true; continue }
        w.supersededBy = opId
        w.supersededHow = how
      }
    }
    sup(path)
    if (isConflictName(path)) sup(conflictBase(path))
    // a write under a conflict name with the content of its base path is a redundant copy,
    // which the nodes drop: its content is the base's, and shares the base write's fate
    for (const copy of this.copiesOf.get(path) ?? []) sup(copy)
  }

  record (op: Omit<LedgerOp, 'supersededBy' | 'supersededHow' | 'ambiguous' | 'at' | 'id'> & { at?: number }): LedgerOp {
    const full: LedgerOp = { ...op, id: this.nextId++, at: op.at ?? performance.now(), supersededBy: null, supersededHow: null, ambiguous: false }
    this.ops.push(full)
    if (full.kind === 'write') {
      let list = this.writesAt.get(full.path)
      if (list == null) { list = []; this.writesAt.set(full.path, list) }
      list.push(full)
      this.digests.add(full.digest)
      for (let b = full.path; isConflictName(b);) {
        b = conflictBase(b)
        const copies = this.copiesOf.get(b) ?? new Set<string>()
        copies.add(full.path)
        this.copiesOf.set(b, copies)
      }
    }
    if (full.label !== 'implicit-mkdir') {
      this.lastWriteAt = full.at
      if (this.firstWriteAt === 0) this.firstWriteAt = full.at
    }
    return full
  }

  writes (): LedgerOp[] {
    return this.ops.filter((o) => o.kind === 'write')
  }

  writesAtPath (path: string): LedgerOp[] {
    return this.writesAt.get(path) ?? []
  }
}
