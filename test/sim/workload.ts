/**
 * A seeded random workload: create, modify, delete, rename (files and directories), mkdir,
 * rm -r and identical writes on two nodes, each on a random node's folder. Every operation
 * is synchronous (one event-loop turn: no node in this process acts in between) and goes
 * into the ledger with what the disk held at the paths it touched.
 */
import { createHash } from 'node:crypto'
import { lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { RESERVED } from '../../src/store/datafolder.js'
import { isConflictName, type Ledger, type LedgerOp } from './ledger.js'
import type { Rng } from './prng.js'
import type { SimNode } from './harness.js'

export type OpName = 'write' | 'big' | 'delete' | 'rename' | 'mkdir' | 'rmdir' | 'renameDir' | 'twin'

export const DEFAULT_WEIGHTS: Record<OpName, number> = {
  write: 44,
  big: 4,
  delete: 12,
  rename: 10,
  mkdir: 7,
  rmdir: 3,
  renameDir: 3,
  twin: 4
}

export interface WorkloadOptions {
  /** File names per directory (f0.txt ...). @default 6 */
  names?: number
  /** Top-level directories (d0 ...), each with `subdirs` subdirectories. @default 4 */
  dirs?: number
  /** @default 2 */
  subdirs?: number
  weights?: Partial<Record<OpName, number>>
  /** Small file sizes (bytes). @default 4096 */
  smallMax?: number
  /** Large file sizes (several blocks of 128 KiB). @default 256 KiB .. 1.5 MiB */
  bigMin?: number
  bigMax?: number
  /**
   * 'mixed': the random operations above on a small shared set of paths (conflicts on
   * purpose). 'creates': every operation creates a new file of `smallMax` bytes at most
   * with a name of its own (no conflicts: dissemination cost only, for scale runs).
   * @default 'mixed'
   */
  mode?: 'mixed' | 'creates'
}

export function sha256 (data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex')
}

/** What is at a path of a node's folder: a file's digest, 'dir', or null. */
/** How soon a file moved back to where it was counts as an A-B-A (see Workload.away). */
const ABA_WINDOW_MS = 6_000

function inoAt (node: SimNode, rel: string): number {
  try { return lstatSync(join(node.dataDir, rel)).ino } catch { return 0 }
}

export function stateAt (node: SimNode, rel: string): { type: 'file', digest: string } | { type: 'dir' } | null {
  const abs = join(node.dataDir, rel)
  let st
  try { st = lstatSync(abs) } catch { return null }
  if (st.isDirectory()) return { type: 'dir' }
  if (st.isFile()) return { type: 'file', digest: sha256(readFileSync(abs)) }
  return null
}

/** Files (all, conflict copies included) and directories below `rel` of a node's folder. */
export function listTree (node: SimNode, rel = ''): { files: string[], dirs: string[] } {
  const files: string[] = []
  const dirs: string[] = []
  const walk = (dir: string): void => {
    let entries
    try { entries = readdirSync(dir === '' ? node.dataDir : join(node.dataDir, dir), { withFileTypes: true }) } catch { return }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const e of entries) {
      const p = dir === '' ? e.name : `${dir}/${e.name}`
      if (p === RESERVED) continue
      if (e.isDirectory()) { dirs.push(p); walk(p) } else if (e.isFile()) files.push(p)
    }
  }
  walk(rel)
  return { files, dirs }
}

export class Workload {
  private readonly ledger: Ledger
  private readonly rng: Rng
  private readonly weights: Record<OpName, number>
  private readonly names: number
  private readonly topDirs: string[]
  private readonly subDirs: string[]
  private readonly smallMax: number
  private readonly bigMin: number
  private readonly bigMax: number
  private counter = 0
  private readonly mode: 'mixed' | 'creates'
  readonly counts: Record<OpName, number> = { write: 0, big: 0, delete: 0, rename: 0, mkdir: 0, rmdir: 0, renameDir: 0, twin: 0 }

  /**
   * Files this workload renamed away, per node and path: the inode and when. A file moved
   * away and back to the same path soon after (an A-B-A) can leave the disk exactly as the
   * node last recorded it (same inode, size, mtime, mode): the node cannot tell it from no
   * change, so that write is ambiguous, neither required to survive nor forbidden to (as
   * twins). Moved back later, the node has seen it go (the watcher settles in 50 ms, a
   * rescan runs every few seconds in the simulations) and records it as a new write.
   */
  private readonly away = new Map<string, { ino: number, at: number }>()

  private movedAway (node: SimNode, rel: string, ino: number): void {
    if (ino > 0) this.away.set(`${node.index}:${rel}`, { ino, at: performance.now() })
  }

  private movedBack (node: SimNode, rel: string, ino: number, op: LedgerOp): void {
    const was = this.away.get(`${node.index}:${rel}`)
    if (was != null && was.ino === ino && ino > 0 && performance.now() - was.at < ABA_WINDOW_MS) op.ambiguous = true
  }

  constructor (ledger: Ledger, rng: Rng, opts: WorkloadOptions = {}) {
    this.ledger = ledger
    this.rng = rng
    this.weights = { ...DEFAULT_WEIGHTS, ...(opts.weights ?? {}) }
    this.names = opts.names ?? 6
    const dirs = opts.dirs ?? 4
    const subdirs = opts.subdirs ?? 2
    this.topDirs = Array.from({ length: dirs }, (_, i) => `d${i}`)
    this.subDirs = this.topDirs.flatMap((d) => Array.from({ length: subdirs }, (_, j) => `${d}/s${j}`))
    this.smallMax = opts.smallMax ?? 4096
    this.bigMin = opts.bigMin ?? 256 * 1024
    this.bigMax = opts.bigMax ?? 1536 * 1024
    this.mode = opts.mode ?? 'mixed'
  }

  private poolFile (): string {
    const loc = this.rng.pick(['', ...this.topDirs, ...this.subDirs])
    const name = `f${this.rng.int(0, this.names - 1)}.txt`
    return loc === '' ? name : `${loc}/${name}`
  }

  /** Unique content: a header naming the write, then pseudo-random bytes. */
  content (size: number, label: string): Buffer {
    const head = Buffer.from(`${label} #${++this.counter} seed ${this.rng.seed}\n`)
    return Buffer.concat([head, this.rng.bytes(Math.max(0, size - head.byteLength))])
  }

  /** mkdir -p the parents of `rel` on `node`, recording each directory made. */
  private parents (node: SimNode, rel: string): void {
    const parts = rel.split('/').slice(0, -1)
    let cur = ''
    for (const part of parts) {
      cur = cur === '' ? part : `${cur}/${part}`
      const st = stateAt(node, cur)
      if (st?.type === 'dir') continue
      if (st?.type === 'file') {
        this.ledger.saw(cur, st.digest, 'delete', node.index)
        unlinkSync(join(node.dataDir, cur))
        this.ledger.record({ node: node.index, kind: 'delete', path: cur, digest: '', label: 'implicit-mkdir' })
      }
      mkdirSync(join(node.dataDir, cur))
      this.ledger.record({ node: node.index, kind: 'mkdir', path: cur, digest: '', label: 'implicit-mkdir' })
    }
  }

  /** Write `data` at `rel` on `node` (synchronously), in place or by atomic replace. */
  write (node: SimNode, rel: string, data: Buffer, label: string, atomic = false): void {
    this.parents(node, rel)
    const abs = join(node.dataDir, rel)
    const cur = stateAt(node, rel)
    if (cur?.type === 'file') this.ledger.saw(rel, cur.digest, 'write', node.index)
    if (cur?.type === 'dir') this.removeTree(node, rel)
    if (atomic) {
      const tmp = join(node.home, `.sim-write-${this.counter}`)
      writeFileSync(tmp, data)
      renameSync(tmp, abs)
    } else {
      writeFileSync(abs, data)
    }
    this.ledger.record({ node: node.index, kind: 'write', path: rel, digest: sha256(data), label })
  }

  /** rm -r `rel`, recording every file it removed as seen. */
  private removeTree (node: SimNode, rel: string): void {
    const { files } = listTree(node, rel)
    for (const f of files) {
      const st = stateAt(node, f)
      if (st?.type === 'file') this.ledger.saw(f, st.digest, 'delete', node.index)
    }
    rmSync(join(node.dataDir, rel), { recursive: true, force: true })
    for (const f of files) this.ledger.record({ node: node.index, kind: 'delete', path: f, digest: '', label: 'rmdir' })
    this.ledger.record({ node: node.index, kind: 'rmdir', path: rel, digest: '', label: 'rmdir' })
  }

  /**
   * One random operation on `node` (`others`: running nodes for the two-node operations).
   * Returns a short description.
   */
  step (node: SimNode, others: SimNode[]): string {
    if (this.mode === 'creates') {
      this.ledger.operations++
      // at the top: one record per change (no directories to make)
      const rel = `c${node.index}-f${this.counter + 1}.txt`
      this.counts.write++
      this.write(node, rel, this.content(this.rng.int(1, this.smallMax), `create ${rel}`), 'create')
      return `create ${rel}`
    }
    const kind = this.rng.weighted(this.weights)
    const { files: all, dirs } = listTree(node)
    const files = all.filter((f) => !isConflictName(f))
    this.ledger.operations++
    switch (kind) {
      case 'write': {
        const rel = files.length > 0 && this.rng.chance(0.6) ? this.rng.pick(files) : this.poolFile()
        this.counts.write++
        this.write(node, rel, this.content(this.rng.int(1, this.smallMax), `write ${rel} on ${node.name}`), 'write', this.rng.chance(0.3))
        return `write ${rel}`
      }
      case 'big': {
        const rel = this.poolFile()
        this.counts.big++
        this.write(node, rel, this.content(this.rng.int(this.bigMin, this.bigMax), `big ${rel} on ${node.name}`), 'big', this.rng.chance(0.5))
        return `big ${rel}`
      }
      case 'delete': {
        if (files.length === 0) return this.fallback(node)
        const rel = this.rng.pick(files)
        const st = stateAt(node, rel)
        if (st?.type === 'file') this.ledger.saw(rel, st.digest, 'delete', node.index)
        unlinkSync(join(node.dataDir, rel))
        this.ledger.record({ node: node.index, kind: 'delete', path: rel, digest: '', label: 'delete' })
        this.counts.delete++
        return `delete ${rel}`
      }
      case 'rename': {
        if (files.length === 0) return this.fallback(node)
        const from = this.rng.pick(files)
        const to = this.poolFile()
        if (to === from) return this.fallback(node)
        const st = stateAt(node, from)
        if (st?.type !== 'file') return this.fallback(node)
        this.parents(node, to)
        const target = stateAt(node, to)
        if (target?.type === 'dir') return this.fallback(node)
        this.ledger.saw(from, st.digest, 'delete', node.index)
        if (target?.type === 'file') this.ledger.saw(to, target.digest, 'write', node.index)
        const ino = inoAt(node, from)
        renameSync(join(node.dataDir, from), join(node.dataDir, to))
        this.ledger.record({ node: node.index, kind: 'delete', path: from, digest: '', label: 'rename' })
        this.movedBack(node, to, ino, this.ledger.record({ node: node.index, kind: 'write', path: to, digest: st.digest, label: 'rename' }))
        this.movedAway(node, from, ino)
        this.counts.rename++
        return `rename ${from} -> ${to}`
      }
      case 'mkdir': {
        const rel = this.rng.pick([...this.topDirs, ...this.subDirs])
        if (stateAt(node, rel) != null) return this.fallback(node)
        this.parents(node, rel)
        mkdirSync(join(node.dataDir, rel))
        this.ledger.record({ node: node.index, kind: 'mkdir', path: rel, digest: '', label: 'mkdir' })
        this.counts.mkdir++
        return `mkdir ${rel}`
      }
      case 'rmdir': {
        if (dirs.length === 0) return this.fallback(node)
        const rel = this.rng.pick(dirs)
        this.removeTree(node, rel)
        this.counts.rmdir++
        return `rm -r ${rel}`
      }
      case 'renameDir': {
        if (dirs.length === 0) return this.fallback(node)
        const from = this.rng.pick(dirs)
        const depth = from.split('/').length
        const choices = (depth === 1 ? this.topDirs : this.subDirs).filter((d) => d !== from && !d.startsWith(`${from}/`) && stateAt(node, d) == null)
        if (choices.length === 0) return this.fallback(node)
        const to = this.rng.pick(choices)
        this.parents(node, to)
        const { files: moved } = listTree(node, from)
        const digests = new Map<string, { digest: string, ino: number }>()
        for (const f of moved) {
          const st = stateAt(node, f)
          if (st?.type === 'file') { digests.set(f, { digest: st.digest, ino: inoAt(node, f) }); this.ledger.saw(f, st.digest, 'delete', node.index) }
        }
        renameSync(join(node.dataDir, from), join(node.dataDir, to))
        for (const [f, { digest: d, ino }] of digests) {
          const dest = `${to}${f.slice(from.length)}`
          this.ledger.record({ node: node.index, kind: 'delete', path: f, digest: '', label: 'rename-dir' })
          this.movedBack(node, dest, ino, this.ledger.record({ node: node.index, kind: 'write', path: dest, digest: d, label: 'rename-dir' }))
          this.movedAway(node, f, ino)
        }
        this.ledger.record({ node: node.index, kind: 'rmdir', path: from, digest: '', label: 'rename-dir' })
        this.ledger.record({ node: node.index, kind: 'mkdir', path: to, digest: '', label: 'rename-dir' })
        this.counts.renameDir++
        return `mv ${from} ${to}`
      }
      case 'twin': {
        const second = others.filter((o) => o !== node)
        if (second.length === 0) return this.fallback(node)
        const other = this.rng.pick(second)
        const rel = this.poolFile()
        const data = this.content(this.rng.int(1, this.smallMax), `twin ${rel}`)
        this.ledger.twins.add(sha256(data))
        this.write(node, rel, data, 'twin')
        this.write(other, rel, data, 'twin')
        this.counts.twin++
        return `twin ${rel} on ${node.name} and ${other.name}`
      }
    }
  }

  /** The chosen operation made no sense here: create a file instead. */
  private fallback (node: SimNode): string {
    const rel = this.poolFile()
    this.counts.write++
    this.write(node, rel, this.content(this.rng.int(1, this.smallMax), `write ${rel} on ${node.name}`), 'write')
    return `write ${rel}`
  }
}
