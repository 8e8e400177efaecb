/**
 * Validation of the relative paths that name entries of the data folder.
 *
 * A valid path is a relative POSIX path ("a/b.txt"): non-empty, no leading '/', no '\',
 * no control characters, no empty / '.' / '..' segments, each segment at most 255 UTF-8
 * bytes, the whole path at most 4096 UTF-8 bytes, well-formed Unicode, and not inside the
 * reserved folder `.syncmesh` (where temporary and partial files live).
 */
import path from 'node:path'

/** Name of the reserved folder at the top of the data folder. */
export const RESERVED_DIR = '.syncmesh'
/** Largest path, in UTF-8 bytes. */
export const MAX_PATH_BYTES = 4096
/** Largest path segment (file or directory name), in UTF-8 bytes. */
export const MAX_SEGMENT_BYTES = 255

/** Thrown when a path is not a valid relative path of the data folder. */
export class PathError extends Error {
  override name = 'PathError'
}

/** JSON-quotes a path for an error message, cut to 200 characters. */
export function quotePath (p: unknown): string {
  if (typeof p !== 'string') return `(${typeof p})`
  return p.length > 200 ? `${JSON.stringify(p.slice(0, 200))}…` : JSON.stringify(p)
}

const CONTROL = /[\u0000-\u001f\u007f]/
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** True when `s` has no lone UTF-16 surrogate, so it encodes to valid UTF-8. */
export function isWellFormed (s: string): boolean {
  return !LONE_SURROGATE.test(s)
}

/**
 * The common case in one pass, without regular expressions, splitting or UTF-8 lengths:
 * a path of printable ASCII (no '\\') whose segments are all valid. True only for paths
 * the full check accepts; false sends every other path to it (and its message). Paths
 * are checked where they come in (records, requests, watcher events), several times per
 * file on a receiver: 2-3% of its event loop with the full check alone.
 */
export function isPlainValidPath (p: string): boolean {
  const n = p.length
  if (n === 0 || n > MAX_PATH_BYTES) return false
  let start = 0
  for (let i = 0; i <= n; i++) {
    const c = i === n ? 47 : p.charCodeAt(i)
    if (c === 47) {
      const len = i - start
      if (len === 0 || len > MAX_SEGMENT_BYTES) return false
      if (p.charCodeAt(start) === 46 && (len === 1 || (len === 2 && p.charCodeAt(start + 1) === 46))) return false
      if (start === 0 && len === RESERVED_DIR.length && p.slice(0, len).toLowerCase() === RESERVED_DIR) return false
      start = i + 1
    } else if (c < 32 || c > 126 || c === 92) {
      return false
    }
  }
  return true
}

/** Why `p` is not a valid path, or undefined when it is. */
function pathProblem (p: unknown): string | undefined {
  return typeof p === 'string' && isPlainValidPath(p) ? undefined : fullPathProblem(p)
}

/** Why `p` is not a valid path, or undefined when it is: every rule, one by one. */
export function fullPathProblem (p: unknown): string | undefined {
  if (typeof p !== 'string') return 'not a string'
  if (p === '') return 'empty'
  if (!isWellFormed(p)) return 'not valid Unicode (lone surrogate)'
  if (CONTROL.test(p)) return 'contains a control character'
  if (p.includes('\\')) return "contains '\\'"
  if (p.startsWith('/')) return "starts with '/'"
  if (Buffer.byteLength(p, 'utf8') > MAX_PATH_BYTES) return `longer than ${MAX_PATH_BYTES} bytes`
  const segments = p.split('/')
  for (const seg of segments) {
    if (seg === '') return 'has an empty segment'
    if (seg === '.' || seg === '..') return `has a '${seg}' segment`
    if (Buffer.byteLength(seg, 'utf8') > MAX_SEGMENT_BYTES) return `has a segment longer than ${MAX_SEGMENT_BYTES} bytes`
  }
  // Compared case-insensitively: on a case-insensitive file system ".SyncMesh" is the
  // reserved folder too.
  if (segments[0].toLowerCase() === RESERVED_DIR) return `is inside the reserved folder ${RESERVED_DIR}`
  return undefined
}

/** Returns `p` when it is a valid relative path of the data folder, else throws PathError. */
export function validatePath (p: string): string {
  const problem = pathProblem(p)
  if (problem !== undefined) throw new PathError(`invalid path ${quotePath(p)}: ${problem}`)
  return p
}

/** True when `p` is a valid relative path of the data folder. */
export function isValidPath (p: string): boolean {
  return pathProblem(p) === undefined
}

/**
 * Validates `rel` and returns path.join(root, rel), after checking that the result lies
 * strictly inside `root` once both are normalised. Throws PathError otherwise.
 */
export function joinInside (root: string, rel: string): string {
  validatePath(rel)
  const joined = path.join(root, rel)
  const base = path.resolve(root)
  const full = path.resolve(joined)
  const prefix = base.endsWith(path.sep) ? base : base + path.sep
  if (!full.startsWith(prefix) || full.length === prefix.length) {
    throw new PathError(`invalid path ${quotePath(rel)}: escapes the data folder ${quotePath(root)}`)
  }
  return joined
}
