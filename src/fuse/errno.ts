/**
 * The one place where errors become FUSE errno results (negative numbers).
 * Node reports fs failures with err.code ('ENOENT', ...); the python helper reports raw errno numbers.
 */
import { constants } from 'node:os'

const ERRNO: Readonly<Record<string, number>> = constants.errno

function code (name: string): number {
  const n = ERRNO[name]
  if (typeof n !== 'number') throw new Error(`unknown errno ${name}`)
  return -n
}

export const EPERM = code('EPERM')
export const ENOENT = code('ENOENT')
export const EIO = code('EIO')
export const EBADF = code('EBADF')
export const EACCES = code('EACCES')
export const EEXIST = code('EEXIST')
export const EXDEV = code('EXDEV')
export const ENOTDIR = code('ENOTDIR')
export const EISDIR = code('EISDIR')
export const EINVAL = code('EINVAL')
export const EFBIG = code('EFBIG')
export const ERANGE = code('ERANGE')
export const ENOSYS = code('ENOSYS')
export const ENODATA = code('ENODATA')
export const ENOTEMPTY = code('ENOTEMPTY')
export const ENAMETOOLONG = code('ENAMETOOLONG')
export const ENOTSUP = code('ENOTSUP')

/** Maps any error (Node fs error with .code, libuv errno, Node ERR_* validation error) to a negative errno. */
export function toErrno (err: unknown): number {
  if (err !== null && typeof err === 'object') {
    const c = (err as { code?: unknown }).code
    if (typeof c === 'string') {
      const n = ERRNO[c]
      if (typeof n === 'number') return -n
      if (c === 'ERR_FS_FILE_TOO_LARGE') return EFBIG
      if (c.startsWith('ERR_')) return EINVAL
    }
    const e = (err as { errno?: unknown }).errno
    if (typeof e === 'number' && Number.isInteger(e) && e !== 0) return e < 0 ? e : -e
  }
  return EIO
}

/** Maps a raw errno number (positive, as from errno(3)) to a FUSE result. */
export function fromErrnoNumber (n: number): number {
  return Number.isInteger(n) && n > 0 ? -n : EIO
}

/** Name of a negative errno, e.g. -2 -> 'ENOENT' (for logs and tests). */
export function errnoName (n: number): string {
  for (const [k, v] of Object.entries(ERRNO)) if (v === -n) return k
  return String(n)
}
