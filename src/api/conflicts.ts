/**
 * `GET /v1/conflicts`: the live conflict copies a node knows, each beside the current
 * version of the path it was made from, so an operator can compare the two and decide.
 */
import type { Store } from '../store/store.js'
import type { StoredRecord } from '../store/types.js'
import { conflictBase } from '../store/version.js'

/** One version of a file, as the dashboard shows it. */
export interface ConflictVersion {
  size: number
  mtimeMs: number
  /** Content id (see FileRecord.hash). */
  hash: string
  /** The node that wrote this version, and when (its HLC wall clock, ms). */
  node: string
  wall: number
  /** Whether this node holds the content (false: still pulling it). */
  have: boolean
}

export interface ConflictEntry {
  /** The conflict copy's path. */
  path: string
  /** The path the copy was made from. */
  base: string
  /** The losing version, kept as the copy. */
  copy: ConflictVersion
  /** The base path's current version (null: deleted or not a file now). */
  current: ConflictVersion | null
}

export interface ConflictList {
  conflicts: ConflictEntry[]
  /** How many there are in all (more than listed when `limit` cut the list). */
  total: number
}

function versionOf (r: StoredRecord): ConflictVersion {
  return { size: r.size, mtimeMs: r.mtimeMs, hash: r.hash, node: r.version.node, wall: r.version.hlc.wall, have: r.have }
}

/** Every live conflict copy in path order, at most `limit` of them listed. */
export async function listConflicts (store: Store, limit = 1000): Promise<ConflictList> {
  const conflicts: ConflictEntry[] = []
  const paths = store.conflictCopies()
  for (const path of paths.slice(0, limit)) {
    const [r, cur] = await store.getMany([path, conflictBase(path)])
    if (r == null || r.type !== 'file' || r.deleted) continue
    conflicts.push({ path, base: conflictBase(path), copy: versionOf(r), current: cur != null && cur.type === 'file' && !cur.deleted ? versionOf(cur) : null })
  }
  return { conflicts, total: paths.length }
}
