import { createHash } from 'node:crypto'
import { compareHlc } from './hlc.js'
import { MAX_PATH_BYTES, MAX_SEGMENT_BYTES } from './paths.js'
import type { FileRecord, Version, VersionVector } from './types.js'

export type Causality = 'equal' | 'before' | 'after' | 'concurrent'

/** How `a` relates to `b`: 'before' means b has seen everything a has, and more. */
export function compareVectors (a: VersionVector, b: VersionVector): Causality {
  let aAhead = false
  let bAhead = false
  for (const [node, n] of Object.entries(a)) {
    const m = b[node] ?? 0
    if (n > m) aAhead = true
    else if (n < m) bAhead = true
  }
  for (const [node, m] of Object.entries(b)) {
    if (!(node in a) && m > 0) bAhead = true
  }
  if (aAhead && bAhead) return 'concurrent'
  if (aAhead) return 'after'
  if (bAhead) return 'before'
  return 'equal'
}

export function mergeVectors (a: VersionVector, b: VersionVector): VersionVector {
  const out: VersionVector = { ...a }
  for (const [node, m] of Object.entries(b)) {
    if ((out[node] ?? 0) < m) out[node] = m
  }
  return out
}

/** The next vector for a write by `node` on top of every version in `seen`. */
export function bumpVector (node: string, ...seen: VersionVector[]): VersionVector {
  let out: VersionVector = {}
  for (const v of seen) out = mergeVectors(out, v)
  out[node] = (out[node] ?? 0) + 1
  return out
}

/** Last-writer-wins order between concurrent versions: (HLC, node id). */
export function lwwCompare (a: Version, b: Version): number {
  const c = compareHlc(a.hlc, b.hlc)
  if (c !== 0) return c
  return a.node < b.node ? -1 : a.node > b.node ? 1 : 0
}

export function sameContent (a: FileRecord, b: FileRecord): boolean {
  return a.type === b.type && a.deleted === b.deleted && a.hash === b.hash && a.target === b.target && a.size === b.size
}

export type Resolution =
  | { kind: 'equal' }
  /** The incoming version has seen ours: take it. */
  | { kind: 'incoming' }
  /** Ours has seen the incoming one: keep ours. */
  | { kind: 'current' }
  /**
   * Concurrent. `winner` is the merged record everyone will store (the LWW winner with
   * both vectors merged, so it dominates both); `loser` is the version that lost, and
   * `conflictCopy` says whether it must be preserved under a conflict name.
   */
  | { kind: 'concurrent', winner: FileRecord, loser: FileRecord, winnerIs: 'incoming' | 'current', conflictCopy: boolean }

/**
 * The conflict rule. A causally later version always wins, whatever the clocks say.
 * Concurrent versions: last writer wins by (HLC, node id), the same on every node; the
 * loser is kept as a conflict copy when it is a file whose content differs from the
 * winner's. Identical content never makes a conflict copy.
 */
export function resolve (current: FileRecord, incoming: FileRecord): Resolution {
  switch (compareVectors(incoming.version.vv, current.version.vv)) {
    case 'equal': return { kind: 'equal' }
    case 'after': return { kind: 'incoming' }
    case 'before': return { kind: 'current' }
    case 'concurrent': break
  }
  const incomingWins = lwwCompare(incoming.version, current.version) > 0
  const w = incomingWins ? incoming : current
  const loser = incomingWins ? current : incoming
  const winner: FileRecord = {
    ...w,
    version: { ...w.version, vv: mergeVectors(incoming.version.vv, current.version.vv) }
  }
  const conflictCopy = loser.type === 'file' && !loser.deleted && !sameContent(loser, w)
  return { kind: 'concurrent', winner, loser, winnerIs: incomingWins ? 'incoming' : 'current', conflictCopy }
}

function pad (n: number, w = 2): string {
  return String(n).padStart(w, '0')
}

/**
 * `dir/name.sync-conflict-<date>-<time>-<node>.ext`, from the losing version's own clock
 * and node, so every node derives the same name for the same loser. The time has
 * milliseconds and, when not 0, the clock's logical counter (`HHMMSSmmm[-L]`): a node's
 * hybrid clock never repeats, so two losing versions from one node never share a name
 * (with seconds only, a node's second loser within the same second took the first one's
 * name, and the first copy was lost). Names with seconds only are still recognised.
 */
export function conflictPath (path: string, version: Version): string {
  const { dir, base, stem: fullStem, ext: fullExt } = splitName(path)
  let stem = fullStem
  let ext = fullExt
  const d = new Date(version.hlc.wall)
  const date = `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}`
  const time = `${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}${pad(d.getUTCMilliseconds(), 3)}` +
    (version.hlc.logical > 0 ? `-${version.hlc.logical}` : '')
  const marker = `.sync-conflict-${date}-${time}-${version.node}`
  // the copy must be a path the mesh can carry: shorten the name to fit a segment (and
  // the whole path), keeping it unique with a short hash of the original name
  const room = Math.min(MAX_SEGMENT_BYTES, MAX_PATH_BYTES - utf8Len(dir)) - utf8Len(marker)
  if (utf8Len(stem) + utf8Len(ext) > room) {
    if (utf8Len(ext) > room / 2) ext = ''
    const tag = '~' + createHash('sha256').update(base).digest('hex').slice(0, 8)
    stem = cutUtf8(stem, Math.max(0, room - utf8Len(ext) - tag.length)) + tag
  }
  return `${dir}${stem}${marker}${ext}`
}

/** `a/b/name.ext` -> dir `a/b/`, base `name.ext`, stem `name`, ext `.ext` (a leading dot is part of the stem). */
function splitName (path: string): { dir: string, base: string, stem: string, ext: string } {
  const slash = path.lastIndexOf('/')
  const dir = slash >= 0 ? path.slice(0, slash + 1) : ''
  const base = path.slice(slash + 1)
  const dot = base.lastIndexOf('.')
  return { dir, base, stem: dot > 0 ? base.slice(0, dot) : base, ext: dot > 0 ? base.slice(dot) : '' }
}

function utf8Len (s: string): number {
  return Buffer.byteLength(s, 'utf8')
}

/** The longest prefix of `s` of at most `max` UTF-8 bytes, never splitting a character. */
function cutUtf8 (s: string, max: number): string {
  let out = ''
  let n = 0
  for (const ch of s) {
    n += utf8Len(ch)
    if (n > max) break
    out += ch
  }
  return out
}

export function isConflictPath (path: string): boolean {
  return /\.sync-conflict-\d{8}-\d{6}(?:\d{3}(?:-\d+)?)?-[a-z2-7]{13}(\.[^/]*)?$/.test(path)
}

/** The last `.sync-conflict-<date>-<time>-<node>` marker in a path. */
const CONFLICT_MARKER = /\.sync-conflict-\d{8}-\d{6}(?:\d{3}(?:-\d+)?)?-[a-z2-7]{13}(?!.*\.sync-conflict-)/

/**
 * The path a conflict copy was made from: `name.sync-conflict-<date>-<time>-<node>.ext` ->
 * `name.ext` (the last marker only; a copy of a copy gives the first copy). A name that was
 * shortened to fit (conflictPath) keeps its `~hash` tag, so it maps to no existing path.
 */
export function conflictBase (path: string): string {
  return path.replace(CONFLICT_MARKER, '')
}

/** The conflict copy record of a losing version: deterministic, so all nodes agree. */
export function conflictRecord (loser: FileRecord): FileRecord {
  return { ...loser, path: conflictPath(loser.path, loser.version) }
}
