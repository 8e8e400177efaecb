import { hash } from 'node:crypto'
import { constants as FS, lstatSync } from 'node:fs'
import { copyFile, lstat, mkdir, rename, rm, rmdir, unlink, utimes } from 'node:fs/promises'
import { dirname, join, sep } from 'node:path'
import type { DiskType } from './types.js'

/** The folder inside the data folder where the node keeps partial and temp files. */
export const RESERVED = '.syncmesh'

export class UnsafePathError extends Error {
  override name = 'UnsafePathError'
}

/** What lstat says about a path, reduced to what the sync cares about. */
export interface Observed {
  type: DiskType
  mode: number
  size: number
  mtimeMs: number
  ino: number
}

export function isErrno (err: unknown, ...codes: string[]): boolean {
  return err instanceof Error && codes.includes((err as NodeJS.ErrnoException).code ?? '')
}

/** Same content and metadata as far as a stat can tell (mtime to the millisecond). */
export function sameObserved (a: Observed | null, b: Omit<Observed, 'ino'> & { ino?: number } | null): boolean {
  if (a == null || b == null) return a == null && b == null
  if (a.type !== b.type) return false
  if (a.type === 'dir') return a.mode === b.mode
  if (a.type === 'symlink') return a.ino === b.ino && Math.abs(a.mtimeMs - b.mtimeMs) < 1
  return a.size === b.size && a.mode === b.mode && Math.abs(a.mtimeMs - b.mtimeMs) < 1 && (b.ino == null || a.ino === b.ino)
}

/**
 * The data folder: the synced files, plus `.syncmesh/` for partial downloads. Every
 * path given to it is relative and already validated; it never follows a symlink that
 * points outside (all operations are lstat/rename/unlink on the path itself).
 */
export class DataFolder {
  readonly root: string
  readonly tmpDir: string

  constructor (root: string) {
    this.root = root
    this.tmpDir = join(root, RESERVED, 'tmp')
  }

  async init (): Promise<void> {
    await mkdir(this.tmpDir, { recursive: true })
  }

  abs (rel: string): string {
    return this.root + sep + rel
  }

  /** Where the partial download of a content id lives (kept across restarts). */
  partialPath (contentId: string, rel: string): string {
    // tmpDir is normalized and the name has no separator: join's normalizing (about half of
    // this call's 1-2 µs, once per pulled file) would change nothing
    return this.tmpDir + sep + `${contentId.slice(0, 32)}-${hash('sha256', rel).slice(0, 16)}.part`
  }

  async observe (rel: string): Promise<Observed | null> {
    try {
      const st = await lstat(this.abs(rel))
      return observedFromStat(st)
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return null
      throw err
    }
  }

  /**
   * lstat without yielding: the puller's last check before it changes a path, done in the
   * same synchronous step as the change (a local write cannot land in between). The data
   * folder is a local file system, never our own mount.
   */
  observeSync (rel: string): Observed | null {
    try {
      // a missing path is common (every new file the puller installs): no error made for it
      const st = lstatSync(this.abs(rel), { throwIfNoEntry: false })
      return st === undefined ? null : observedFromStat(st)
    } catch (err) {
      if (isErrno(err, 'ENOENT', 'ENOTDIR')) return null
      throw err
    }
  }

  async ensureParent (rel: string): Promise<void> {
    await this.checkParents(rel)
    const parent = dirname(this.abs(rel))
    if (parent !== this.root) await mkdir(parent, { recursive: true })
  }

  /**
   * Refuse to work below a symlink: a record `link/x`, where `link` is a symlink to
   * somewhere else, must not make the node write outside its data folder.
   */
  async checkParents (rel: string): Promise<void> {
    let i = rel.indexOf('/')
    while (i > 0) {
      const parent = rel.slice(0, i)
      const obs = await this.observe(parent)
      if (obs == null) return
      if (obs.type !== 'dir') throw new UnsafePathError(`${parent} is not a directory here (a ${obs.type}): not writing ${rel} through it`)
      i = rel.indexOf('/', i + 1)
    }
  }

  /**
   * Keep the current content of `rel` under `copyRel` as well (a conflict copy). A copy,
   * not a hard link: a link shares the inode, so an in-place write to `rel` would change
   * the conflict copy too (a reflink where the file system has them, else a real copy).
   * It is copied to a temp file and renamed into place, so the copy is whole or absent.
   * `mtimeMs`: the copy record's mtime, which the copy gets (as it does on the nodes that
   * pull it), else the source's times.
   */
  async preserve (rel: string, copyRel: string, mtimeMs?: number): Promise<void> {
    await this.ensureParent(copyRel)
    const tmp = join(this.tmpDir, `conflict-${process.pid}-${Math.random().toString(36).slice(2)}`)
    try {
      await copyFile(this.abs(rel), tmp, FS.COPYFILE_FICLONE)
      if (mtimeMs != null) {
        await utimes(tmp, mtimeMs / 1000, mtimeMs / 1000)
      } else {
        const st = await lstat(this.abs(rel))
        await utimes(tmp, st.atime, st.mtime)
      }
      await rename(tmp, this.abs(copyRel))
    } catch (err) {
      await rm(tmp, { force: true })
      throw err
    }
  }

  /** Remove a file, symlink or empty directory; a missing path is fine. */
  async remove (rel: string): Promise<void> {
    await this.checkParents(rel)
    const obs = await this.observe(rel)
    if (obs == null) return
    if (obs.type === 'dir') {
      await rmdir(this.abs(rel))
    } else {
      await unlink(this.abs(rel))
    }
  }
}

export function observedFromStat (st: import('node:fs').Stats): Observed | null {
  const type: DiskType | null = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : null
  if (type == null) return null
  return {
    type,
    mode: st.mode & 0o7777,
    size: type === 'file' ? st.size : 0,
    mtimeMs: Math.floor(st.mtimeMs),
    ino: st.ino
  }
}
