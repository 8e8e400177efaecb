/**
 * The invariants checked once the mesh is quiet, as pure functions of the ledger and of
 * what the nodes hold.
 */
import { conflictBase, isConflictName, type Ledger, type LedgerOp } from './ledger.js'

export type DiskEntry = { type: 'file', digest: string } | { type: 'dir' }
export type DiskSnapshot = Map<string, DiskEntry>

export interface InvariantResult {
  pass: boolean
  /** How many things were checked. */
  checked: number
  /** The first failures (at most `MAX_FAILURES`), in words. */
  failures: string[]
}

const MAX_FAILURES = 20

export class Check {
  checked = 0
  readonly failures: string[] = []
  private failed = 0

  ok (): void { this.checked++ }

  fail (msg: string): void {
    this.checked++
    this.failed++
    if (this.failures.length < MAX_FAILURES) this.failures.push(msg)
  }

  result (): InvariantResult {
    const failures = this.failed > this.failures.length ? [...this.failures, `... ${this.failed - this.failures.length} more`] : this.failures
    return { pass: this.failed === 0, checked: this.checked, failures }
  }
}

function describe (w: LedgerOp): string {
  return `write #${w.id} (${w.label}) of ${w.path} on n${w.node} [${w.digest.slice(0, 8)}]`
}

/**
 * The write invariants on one node's final disk:
 * - noLostWrites: every acknowledged write nothing superseded is at its path or in a
 *   conflict copy of its path (a write under a conflict name whose content its base path
 *   holds counts as kept: such a copy is redundant, and the nodes drop it);
 * - causalOrder: no path holds a write that a later write on that path superseded (a
 *   causally later write wins, whatever the clocks say);
 * - noResurrection: no path holds a write that a delete superseded;
 * - finalStateExplained: every file is a live write at its path or a copy of a write at
 *   its base path (nothing appears from nowhere);
 * - noIdenticalConflictCopies: no conflict copy has the content of its base path, and no
 *   two copies of one path have the same content.
 */
export function checkWrites (ledger: Ledger, disk: DiskSnapshot, where: string): Record<'noLostWrites' | 'causalOrder' | 'noResurrection' | 'finalStateExplained' | 'noIdenticalConflictCopies', InvariantResult> {
  const copies = new Map<string, Map<string, string[]>>()
  for (const [path, e] of disk) {
    if (e.type !== 'file' || !isConflictName(path)) continue
    // indexed under every level of base: a copy of a copy also preserves the original
    for (let base = path; isConflictName(base);) {
      base = conflictBase(base)
      let m = copies.get(base)
      if (m == null) { m = new Map(); copies.set(base, m) }
      const list = m.get(e.digest) ?? []
      list.push(path)
      m.set(e.digest, list)
    }
  }

  const lost = new Check()
  for (const w of ledger.writes()) {
    if (w.supersededBy != null || w.ambiguous) continue
    const at = disk.get(w.path)
    if (at?.type === 'file' && at.digest === w.digest) { lost.ok(); continue }
    if (copies.get(w.path)?.has(w.digest) === true) { lost.ok(); continue }
    // a write under a conflict name (a renamed directory carries its copies) whose content
    // its base path holds (or a copy of it): the copy was redundant, and nodes drop those
    if (heldAtBase(w.path, w.digest, disk, copies)) { lost.ok(); continue }
    lost.fail(`${where}: ${describe(w)} is lost (${w.path} holds ${at == null ? 'nothing' : at.type === 'dir' ? 'a directory' : at.digest.slice(0, 8)})`)
  }

  const causal = new Check()
  const resurrect = new Check()
  const explained = new Check()
  const identical = new Check()
  for (const [path, e] of disk) {
    if (e.type !== 'file') continue
    if (isConflictName(path)) {
      const base = conflictBase(path)
      // a copy of a copy (a delete of a copy concurrent with a merge of it elsewhere keeps
      // the copy as a copy): look through every level down to the original path
      let fromBase = false
      for (let b = path; isConflictName(b) && !fromBase;) {
        b = conflictBase(b)
        fromBase = ledger.writesAtPath(b).some((w) => w.digest === e.digest)
      }
      const moved = ledger.writesAtPath(path).some((w) => w.digest === e.digest)
      if (fromBase || moved) explained.ok()
      else explained.fail(`${where}: conflict copy ${path} [${e.digest.slice(0, 8)}] is no write of ${base}`)
      const baseEntry = disk.get(base)
      if (baseEntry?.type === 'file' && baseEntry.digest === e.digest) identical.fail(`${where}: conflict copy ${path} has the content of ${base}`)
      else {
        const same = (copies.get(base)?.get(e.digest) ?? []).filter((q) => conflictBase(q) === base)
        // (two identical writes on two nodes may each lose to a third write: two copies)
        if (same.length > 1 && !ledger.twins.has(e.digest)) {
          if (same[0] === path) identical.fail(`${where}: conflict copies ${same.join(', ')} have the same content`)
        } else identical.ok()
      }
      continue
    }
    const writes = ledger.writesAtPath(path).filter((w) => w.digest === e.digest)
    if (writes.some((w) => w.supersededBy == null)) {
      // (a live write, or an identical write whose fate the ledger cannot tell)
      explained.ok()
      causal.ok()
      resurrect.ok()
      continue
    }
    if (writes.length === 0) {
      explained.fail(`${where}: ${path} holds [${e.digest.slice(0, 8)}], which no write put there`)
      continue
    }
    explained.ok()
    const w = writes[0]
    if (w.supersededHow === 'delete') resurrect.fail(`${where}: ${path} holds ${describe(w)}, deleted by op #${w.supersededBy ?? '?'}`)
    else causal.fail(`${where}: ${path} holds ${describe(w)}, overwritten by the causally later op #${w.supersededBy ?? '?'}`)
  }
  return {
    noLostWrites: lost.result(),
    causalOrder: causal.result(),
    noResurrection: resurrect.result(),
    finalStateExplained: explained.result(),
    noIdenticalConflictCopies: identical.result()
  }
}

/**
 * Whether a path of the chain of bases below conflict-named `path`, or a conflict copy of
 * one, holds `digest` (a redundant copy is dropped; its content stays at the base, which
 * may itself have lost a conflict since and be kept as a copy).
 */
function heldAtBase (path: string, digest: string, disk: DiskSnapshot, copies: Map<string, Map<string, string[]>>): boolean {
  for (let b = path; isConflictName(b);) {
    b = conflictBase(b)
    const e = disk.get(b)
    if (e?.type === 'file' && e.digest === digest) return true
    if (copies.get(b)?.has(digest) === true) return true
  }
  return false
}

/** Every file any node holds has content some write made (nothing corrupt installed). */
export function checkContent (ledger: Ledger, disks: Array<{ name: string, disk: DiskSnapshot }>, into = new Check()): Check {
  for (const { name, disk } of disks) {
    for (const [path, e] of disk) {
      if (e.type !== 'file') continue
      if (ledger.digests.has(e.digest)) into.ok()
      else into.fail(`${name}: ${path} holds content [${e.digest.slice(0, 8)}] that no write made`)
    }
  }
  return into
}

export function mergeResults (results: InvariantResult[]): InvariantResult {
  const c = new Check()
  for (const r of results) {
    c.checked += r.checked
    for (const f of r.failures) c.failures.push(f)
  }
  const pass = results.every((r) => r.pass)
  return { pass, checked: c.checked, failures: c.failures.slice(0, MAX_FAILURES) }
}
