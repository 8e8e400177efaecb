/**
 * The passthrough operations: every FUSE request is served from the data folder with async fs calls on
 * real file descriptors, and every successful mutation is reported to the ChangeSink.
 *
 * Paths from FUSE are absolute inside the mount ("/a/b"); the sink gets them relative ("a/b").
 */
import fs from 'node:fs'
import type { BigIntStats, Dirent } from 'node:fs'
import type Fuse from 'fuse-native'
type FuseOps = Fuse.FuseOps
type FuseStatfs = Fuse.FuseStatfs
import { EINVAL, ENODATA, ENOENT, EPERM, ERANGE, ENOSYS, toErrno } from './errno.js'
import type { NativeHelper } from './helper.js'
import type { NativeEvents, NativeOrder, NativeTakeEvents, NativeTakeRanges, NativeUtimensat } from './hygiene.js'
import { WrittenRanges } from './ranges.js'
import type { ChangeKind, ChangeSink } from './types.js'

type FuseClass = typeof Fuse
type Signal = (result: number, ...args: unknown[]) => void
type ResultCb = (result: number) => void

const {
  O_RDONLY, O_RDWR, O_WRONLY, O_CREAT, O_EXCL, O_APPEND, O_SYNC, O_DSYNC, O_NOATIME,
  S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK
} = fs.constants
const O_ACCMODE = 3
/** open(2) flags passed on to the real file (the kernel already handled O_CREAT/O_EXCL/O_TRUNC). O_DIRECT is dropped: FUSE hands us unaligned buffers. */
const KEPT_OPEN_FLAGS = O_ACCMODE | O_APPEND | O_SYNC | O_DSYNC | (O_NOATIME ?? 0)
const TWO32 = 4294967296
/** libfuse2 names the files it keeps for unlinked-but-open nodes like this (hide_node). */
const HIDDEN_RE = /\.fuse_hidden[0-9a-f]{16}$/
/** fuse-native's handler index for utimens (op_utimens in fuse-native.c). */
const OP_UTIMENS = 12
/** UTIME_NOW / UTIME_OMIT ((1 << 30) - 1 / - 2 ns, tv_sec 0) after stock fuse-native's conversion to ms. */
const UTIME_SPECIAL_MS = 1073
/** tv_nsec values of utimensat(2) (Linux) that mean "the current time" and "leave this time as it is". */
export const UTIME_NOW = 0x3fffffff
export const UTIME_OMIT = 0x3ffffffe
/** How long a "security.capability: no such attribute" answer is reused (the kernel asks before every write(2)). */
const CAP_TTL_MS = 5000
const CAP = 'security.capability'
/** Notification kinds of the patched fuse-native (level 5; SYNCMESH_EV_* in scripts/build-fuse.mjs). */
const EV_CREATE = 1
const EV_OPEN = 2
const EV_RELEASE = 3
/**
 * While notifications keep coming, how often the addon's queue is taken (without a wake-up: see nativeWoke).
 * Each take costs the event loop a wake-up (tens of µs on this VM, more than handling the notifications), so
 * a burst of small-file creations is taken in batches; the scanner lets a path settle for 50 ms anyway, and
 * every request JS serves and isOpenForWrite take the queue first.
 */
const POLL_MS = 5
/** How often the notifications that had to wait for JS are logged (at most). */
const FALLBACK_LOG_MS = 10000

/** The mount's ordering lock is held by a FUSE thread right now (Passthrough.exclusive): try again shortly. */
export class MountBusyError extends Error {
  constructor () {
    super('a mutation through the mount is in progress')
    this.name = 'MountBusyError'
  }
}

class Handle {
  readonly ranges = new WrittenRanges()
  /** the patched fuse-native could not keep every range written: the whole file counts */
  whole = false
  constructor (readonly fd: number, public path: string) {}
}

export interface PassthroughOptions {
  dataDir: string
  reservedName: string
  /** absolute folder inside the reserved folder that holds unlinked-but-open files */
  hiddenDir: string
  sink: ChangeSink
  log: (msg: string) => void
  helper: NativeHelper
  /** utimensat(2) from Syncmesh's fuse-native patch; without it (stock prebuild) only utimens() in ms works */
  utimensat?: NativeUtimensat
}

/** A time as libfuse hands it to utimens through the patched fuse-native; nsec may be UTIME_NOW or UTIME_OMIT. */
export interface TimeSpec {
  sec: number
  nsec: number
}

function setU64 (a: Uint32Array, i: number, n: number): void {
  if (!(n > 0)) return // zero-filled already; negative times are not representable in fuse-native's format
  n = Math.floor(n)
  a[i] = n % TWO32
  a[i + 1] = Math.floor(n / TWO32)
}

const NS_PER_MS = 1000000n

/** A time in ns as whole ms at a[i], a[i + 1] (fuse-native's layout) and the ns below the ms at a[j] (read by the patched fuse-native only). */
function setTime (a: Uint32Array, i: number, j: number, ns: bigint): void {
  if (ns <= 0n) return // zero-filled already; negative times are not representable in fuse-native's format
  setU64(a, i, Number(ns / NS_PER_MS))
  a[j] = Number(ns % NS_PER_MS)
}

/**
 * fuse-native's stat layout (getStatArray: 18 uint32s, times in whole ms) plus, in entries 18-20, the
 * nanoseconds below the millisecond of atime, mtime and ctime, which the patched fuse-native adds back
 * (the stock build reads the first 18 only). Built without Date objects.
 */
export function statArray (st: BigIntStats): Uint32Array {
  const a = new Uint32Array(21)
  a[0] = Number(st.mode)
  a[1] = Number(st.uid)
  a[2] = Number(st.gid)
  setU64(a, 3, Number(st.size))
  a[5] = Number(st.dev & 0xffffffffn)
  a[6] = Number(st.nlink)
  a[7] = Number(st.ino & 0xffffffffn)
  a[8] = Number(st.rdev & 0xffffffffn)
  a[9] = Number(st.blksize)
  setU64(a, 10, Number(st.blocks))
  setTime(a, 12, 18, st.atimeNs)
  setTime(a, 14, 19, st.mtimeNs)
  setTime(a, 16, 20, st.ctimeNs)
  return a
}

/** Directory entry for readdir: file type only (d_type), inode unknown (FUSE_UNKNOWN_INO). */
function direntArray (type: number): Uint32Array {
  const a = new Uint32Array(18)
  a[0] = type
  a[6] = 1
  a[7] = 0xffffffff
  return a
}

function direntType (d: Dirent): number {
  if (d.isFile()) return S_IFREG
  if (d.isDirectory()) return S_IFDIR
  if (d.isSymbolicLink()) return S_IFLNK
  if (d.isFIFO()) return S_IFIFO
  if (d.isSocket()) return S_IFSOCK
  if (d.isCharacterDevice()) return S_IFCHR
  if (d.isBlockDevice()) return S_IFBLK
  return 0
}

const DIR_ENTRY = direntArray(S_IFDIR)

export class Passthrough {
  readonly handles = new Map<number, Handle>()
  /** Open write handles per path (relative): such a file is recorded when the last closes. */
  readonly writers = new Map<string, number>()
  private readonly dataDir: string
  private readonly reservedPath: string
  private readonly reservedPrefix: string
  private readonly reservedName: string
  private readonly hiddenDir: string
  private readonly sink: ChangeSink
  private readonly log: (msg: string) => void
  private readonly helper: NativeHelper
  private readonly utimensat: NativeUtimensat | undefined
  /** basename of a libfuse hidden file -> its real path inside hiddenDir */
  private readonly hidden = new Map<string, string>()
  private hiddenSeq = 0
  /** mount path -> time until which "no security.capability" may be answered without asking */
  private readonly capAbsent = new Map<string, number>()
  private readonly umask: number

  constructor (opts: PassthroughOptions) {
    this.dataDir = opts.dataDir
    this.reservedName = opts.reservedName
    this.reservedPath = '/' + opts.reservedName
    this.reservedPrefix = this.reservedPath + '/'
    this.hiddenDir = opts.hiddenDir
    this.sink = opts.sink
    this.log = opts.log
    this.helper = opts.helper
    this.utimensat = opts.utimensat
    this.umask = process.umask()
  }

  // ---- paths ------------------------------------------------------------------------------------

  /** Real path in the data folder, or null for the reserved folder (which does not exist through the mount). */
  real (p: string): string | null {
    if (p === '/') return this.dataDir
    if (p.startsWith(this.reservedPath) && (p.length === this.reservedPath.length || p.startsWith(this.reservedPrefix))) return null
    if (p.includes('.fuse_hidden')) {
      const r = this.hidden.get(p.slice(p.lastIndexOf('/') + 1))
      if (r !== undefined) return r
    }
    return this.dataDir + p
  }

  private isHidden (p: string): boolean {
    return p.includes('.fuse_hidden') && this.hidden.has(p.slice(p.lastIndexOf('/') + 1))
  }

  // ---- reporting --------------------------------------------------------------------------------

  private changed (p: string, kind: ChangeKind, ranges?: Array<[number, number]>): void {
    if (p === '/') return // metadata of the data folder itself is not a synced entry
    try {
      if (ranges === undefined) this.sink.changed(p.slice(1), kind)
      else this.sink.changed(p.slice(1), kind, ranges)
    } catch (err) {
      this.log(`sink.changed threw: ${String(err)}`)
    }
  }

  private removed (p: string, isDir: boolean): void {
    try {
      this.sink.removed(p.slice(1), isDir)
    } catch (err) {
      this.log(`sink.removed threw: ${String(err)}`)
    }
  }

  private renamed (from: string, to: string): void {
    try {
      this.sink.renamed(from.slice(1), to.slice(1))
    } catch (err) {
      this.log(`sink.renamed threw: ${String(err)}`)
    }
  }

  /** With the fast paths the patched fuse-native writes, and keeps the ranges written: where to take them. */
  private nativeRanges: ((fd: number) => Float64Array | null | undefined) | undefined

  /** Writes are made (and their ranges kept) by the patched fuse-native of the mount whose fuse_thread_t is thread(). */
  useNativeWrites (take: NativeTakeRanges, thread: () => Buffer | null): void {
    this.nativeRanges = fd => {
      const t = thread()
      return t === null ? undefined : take(t, fd)
    }
  }

  /** With the patched fuse-native's notifications (level 6): where to take them. */
  private nativeEvents: (() => NativeEvents | undefined) | undefined
  private draining = false
  private drainTimer: NodeJS.Timeout | undefined
  /** closeAll ran (the mount is gone): nothing more is taken from the addon or reported */
  private closed = false
  private fallbacks = 0
  private fallbacksLoggedAt = 0

  /**
   * create, open for writing and release are served by the patched fuse-native of the mount whose
   * fuse_thread_t is thread(), which queues a notification for each and answers the kernel without waiting
   * for JS (see "Capture order" in scripts/build-fuse.mjs); drainNative() takes them.
   */
  useNativeEvents (take: NativeTakeEvents, thread: () => Buffer | null): void {
    this.nativeEvents = () => {
      const t = thread()
      return t === null ? undefined : take(t)
    }
  }

  /**
   * The addon's ordering lock, for exclusive(): wired whenever the addon serves create and open (its fast
   * paths), also when they wait for JS (SYNCMESH_FUSE_ASYNC=0): the descriptor is opened in C before JS
   * records the handle either way.
   */
  useNativeOrder (order: NativeOrder, thread: () => Buffer | null): void {
    this.nativeOrder = {
      tryLock: () => {
        const t = thread()
        return t === null ? -1 : order.tryLock(t)
      },
      release: () => {
        const t = thread()
        if (t !== null) order.release(t)
      }
    }
  }

  /** The addon's per-mount ordering lock (level 5), when it has one. */
  private nativeOrder: { tryLock: () => number, release: () => void } | undefined

  /**
   * Runs `step` (synchronous, on the data folder only) with no mutation through the mount in between: under
   * the addon's ordering lock (create, open for writing, release and every mutating request JS serves wait
   * for it), after taking what was queued, so isOpenForWrite inside `step` is exact. Throws MountBusyError
   * without running `step` when a FUSE thread holds the lock (it may be waiting for JS itself). Without the
   * addon's lock `step` just runs.
   */
  exclusive<T> (step: () => T): T {
    const order = this.nativeOrder
    const got = order === undefined ? -1 : order.tryLock()
    if (got === 0) throw new MountBusyError()
    try {
      this.drainNative()
      return step()
    } finally {
      if (got === 1) order?.release()
    }
  }

  /**
   * Handles, in order, what the FUSE threads did and queued for JS: records the handles of files created
   * or opened for writing and reports the creations, and at release forgets the handle and reports the
   * writes (their ranges travel in the notification; the descriptor is already closed). Called when the
   * addon wakes the event loop, at the start of every request JS serves (the addon holds its ordering lock
   * across those that mutate, so what was queued before is handled first), and before isOpenForWrite answers.
   */
  drainNative (): void {
    const take = this.nativeEvents
    if (take === undefined || this.draining || this.closed) return
    this.draining = true
    try {
      const ev = take()
      if (ev === undefined) return
      const [fallbacks, meta, joined, ranges] = ev
      const n = meta.length / 3
      // the addon will not wake the event loop again until a take finds its queue empty: take it again soon
      // (armed first: whatever below throws, the notifications still queued are taken)
      if (n > 0) this.armPollTimer()
      if (fallbacks > 0) this.noteFallbacks(fallbacks)
      if (n === 0) return
      const paths = joined.split('\0')
      let r = 0
      for (let i = 0; i < n; i++) {
        const op = meta[3 * i]
        const fd = meta[3 * i + 1]
        const p = paths[i]
        if (op === EV_CREATE) this.recordCreated(p, fd, false)
        else if (op === EV_OPEN) this.addHandle(fd, p)
        else if (op === EV_RELEASE) {
          const pairs = meta[3 * i + 2]
          this.released(p, fd, ranges, r, pairs)
          if (pairs > 0) r += 2 * pairs
        }
      }
    } finally {
      this.draining = false
    }
  }

  /**
   * The addon queued something after a take that found its queue empty (it wakes the event loop only
   * then): taken at once, so that a lone mutation is reported without delay. A take that finds
   * notifications leaves the addon's wake-up off and takes again POLL_MS later (drainNative), until one
   * finds the queue empty: a burst costs one wake-up of the event loop per POLL_MS, not one per take.
   */
  nativeWoke (): void {
    this.drainNative()
  }

  private armPollTimer (): void {
    if (this.drainTimer !== undefined || this.closed) return
    this.drainTimer = setTimeout(() => {
      this.drainTimer = undefined
      this.drainNative()
    }, POLL_MS)
    this.drainTimer.unref()
  }

  /** Notifications the addon could not queue (JS behind, or no memory) waited for JS instead: nothing is lost, but say so. */
  private noteFallbacks (n: number): void {
    this.fallbacks += n
    const now = Date.now()
    if (now - this.fallbacksLoggedAt < FALLBACK_LOG_MS) return
    this.fallbacksLoggedAt = now
    this.log(`${this.fallbacks} create/open/release notification(s) could not be queued (the event loop is behind, or no memory): those requests waited for JS instead`)
    this.fallbacks = 0
  }

  /** `native` false: the ranges were handed over already (a release notification), the addon's table is not asked. */
  private reportWrites (p: string, h: Handle, native = true): void {
    if (native && this.nativeRanges !== undefined) {
      const r = this.nativeRanges(h.fd)
      if (r === null) h.whole = true
      else if (r !== undefined) for (let i = 0; i < r.length; i += 2) h.ranges.add(r[i], r[i + 1])
    }
    // reported under the path the handle followed through the renames JS reported (the release's own path
    // was looked up by libfuse when it took the request, maybe before a rename JS had already handled)
    const at = '/' + h.path
    if (h.whole) {
      h.whole = false
      h.ranges.take()
      if (!this.isHidden(p)) this.changed(at, 'write')
      return
    }
    if (h.ranges.empty) return
    const ranges = h.ranges.take()
    if (!this.isHidden(p)) this.changed(at, 'write', ranges)
  }

  /** Paths open for writing (diagnostics: none should be left once every program closed its files). */
  get openForWriteCount (): number {
    this.drainNative()
    return this.writers.size
  }

  /** After creating with `mode`, undo the bits our own umask took away (the kernel already applied the caller's umask). */
  private needsChmod (mode: number): boolean {
    return (mode & this.umask & 0o7777) !== 0
  }

  // ---- attributes -------------------------------------------------------------------------------

  getattr (p: string, signal: Signal): void {
    const r = this.real(p)
    if (r === null) { signal(ENOENT); return }
    fs.lstat(r, { bigint: true }, (err, st) => {
      if (err !== null) signal(toErrno(err))
      else signal(0, statArray(st))
    })
  }

  fgetattr (p: string, fd: number, signal: Signal): void {
    if (fd === 0) { this.getattr(p, signal); return } // no file handle (fuse-native passes 0): by path
    fs.fstat(fd, { bigint: true }, (err, st) => {
      if (err !== null) this.getattr(p, signal)
      else signal(0, statArray(st))
    })
  }

  access (p: string, mode: number, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    fs.access(r, mode, err => cb(err === null ? 0 : toErrno(err)))
  }

  statfs (_p: string, cb: (res: number, st?: FuseStatfs) => void): void {
    fs.statfs(this.dataDir, (err, s) => {
      if (err !== null) { cb(toErrno(err)); return }
      // fuse-native passes 32-bit counts: scale the block size up until they fit
      let bsize = s.bsize
      let blocks = s.blocks
      let bfree = s.bfree
      let bavail = s.bavail
      while (blocks > 0xffffffff) {
        bsize *= 2
        blocks = Math.floor(blocks / 2)
        bfree = Math.floor(bfree / 2)
        bavail = Math.floor(bavail / 2)
      }
      const files = Math.min(s.files, 0xffffffff)
      const ffree = Math.min(s.ffree, 0xffffffff)
      cb(0, { bsize, frsize: bsize, blocks, bfree, bavail, files, ffree, favail: ffree, fsid: 0, flag: 0, namemax: 255 })
    })
  }

  chmod (p: string, mode: number, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    fs.chmod(r, mode & 0o7777, err => {
      if (err !== null) { cb(toErrno(err)); return }
      if (!this.isHidden(p)) this.changed(p, 'chmod')
      cb(0)
    })
  }

  chown (p: string, uid: number, gid: number, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    // (uid_t)-1 means "leave unchanged"; fuse-native hands it over as an unsigned 32-bit number
    fs.lchown(r, uid === 0xffffffff ? -1 : uid, gid === 0xffffffff ? -1 : gid, err => {
      if (err !== null) { cb(toErrno(err)); return }
      if (!this.isHidden(p)) this.changed(p, 'chown')
      cb(0)
    })
  }

  /** What the patched fuse-native (level 3) needs to serve plain paths itself (see FuseTuning.fastPaths). */
  get fastPathConfig (): FastPathConfig {
    return { dataDir: this.dataDir, reservedName: this.reservedName, umask: this.umask, queueMax: 0 }
  }

  /** Whether utimensNs can be used (the patched fuse-native is loaded). */
  get nsTimes (): boolean {
    return this.utimensat !== undefined
  }

  /**
   * utimens through the patched fuse-native: both times to the nanosecond, either of them UTIME_OMIT (kept
   * as it is) or UTIME_NOW (the current time), set with one utimensat(2) on the real path, not following
   * a final symlink (lutimes semantics): no lstat first, no rounding through a double.
   */
  utimensNs (p: string, atime: TimeSpec, mtime: TimeSpec, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    const utimensat = this.utimensat
    if (utimensat === undefined) { cb(ENOSYS); return }
    utimensat(r, atime.sec, atime.nsec, mtime.sec, mtime.nsec, res => {
      if (res < 0) { cb(res); return }
      if ((atime.nsec !== UTIME_OMIT || mtime.nsec !== UTIME_OMIT) && !this.isHidden(p)) this.changed(p, 'utimens')
      cb(0)
    })
  }

  /**
   * utimens through the stock fuse-native prebuild: atime/mtime in ms since the epoch. UTIME_NOW/UTIME_OMIT
   * never reach us then (libfuse2 without flag_utime_omit_ok, see mount.ts); if a special value does
   * arrive, the existing time is kept.
   */
  utimens (p: string, atime: number, mtime: number, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    const set = (a: number, m: number): void => {
      fs.lutimes(r, a / 1000, m / 1000, err => {
        if (err !== null) { cb(toErrno(err)); return }
        if (!this.isHidden(p)) this.changed(p, 'utimens')
        cb(0)
      })
    }
    if (atime !== UTIME_SPECIAL_MS && mtime !== UTIME_SPECIAL_MS) { set(atime, mtime); return }
    fs.lstat(r, (err, st) => {
      if (err !== null) { cb(toErrno(err)); return }
      set(atime === UTIME_SPECIAL_MS ? st.atimeMs : atime, mtime === UTIME_SPECIAL_MS ? st.mtimeMs : mtime)
    })
  }

  truncate (p: string, size: number, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    fs.truncate(r, size, err => {
      if (err !== null) { cb(toErrno(err)); return }
      if (!this.isHidden(p)) this.changed(p, 'truncate')
      cb(0)
    })
  }

  ftruncate (p: string, fd: number, size: number, cb: ResultCb): void {
    fs.ftruncate(fd, size, err => {
      if (err !== null) { cb(toErrno(err)); return }
      if (!this.isHidden(p)) this.changed(p, 'truncate')
      cb(0)
    })
  }

  // ---- files ------------------------------------------------------------------------------------

  /** The file handle is the real file's descriptor (the patched fuse-native's fgetattr fstat()s it). */
  open (p: string, flags: number, cb: (res: number, fd?: number) => void): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    fs.open(r, flags & KEPT_OPEN_FLAGS, (err, fd) => {
      if (err !== null) { cb(toErrno(err)); return }
      if ((flags & O_ACCMODE) !== O_RDONLY) this.addHandle(fd, p)
      cb(0, fd)
    })
  }

  /** create() done in the FUSE thread (patched fuse-native): the file is open as `fd`; record it. */
  createdFd (p: string, fd: number, cb: (res: number, fd?: number) => void): void {
    this.recordCreated(p, fd)
    cb(0, fd)
  }

  /** `cacheCap` false: the addon answers getxattr for this path, JS's cache of it would never be read. */
  private recordCreated (p: string, fd: number, cacheCap = true): void {
    this.addHandle(fd, p)
    if (cacheCap) this.capAbsent.set(p, Date.now() + CAP_TTL_MS)
    this.changed(p, 'create')
  }

  /** open() for writing done in the FUSE thread (patched fuse-native): record the handle. */
  openedFd (p: string, flags: number, fd: number, cb: (res: number, fd?: number) => void): void {
    if ((flags & O_ACCMODE) !== O_RDONLY) this.addHandle(fd, p)
    cb(0, fd)
  }

  /** libfuse2 gives create() no open flags: the real file is opened read-write (O_CREAT, no O_EXCL: the kernel only calls create after a lookup found nothing). */
  create (p: string, mode: number, cb: (res: number, fd?: number) => void): void {
    const r = this.real(p)
    if (r === null) { cb(EPERM); return }
    fs.open(r, O_CREAT | O_RDWR, mode & 0o7777, (err, fd) => {
      if (err !== null) { cb(toErrno(err)); return }
      const done = (): void => {
        this.addHandle(fd, p)
        this.capAbsent.set(p, Date.now() + CAP_TTL_MS)
        this.changed(p, 'create')
        cb(0, fd)
      }
      if (!this.needsChmod(mode)) { done(); return }
      fs.fchmod(fd, mode & 0o7777, () => done())
    })
  }

  read (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: ResultCb): void {
    fs.read(fd, buf, 0, len, pos, (err, n) => cb(err !== null ? toErrno(err) : n))
  }

  write (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: ResultCb): void {
    fs.write(fd, buf, 0, len, pos, (err, n) => {
      if (err !== null) { cb(toErrno(err)); return }
      const h = this.handles.get(fd)
      if (h !== undefined) h.ranges.add(pos, pos + n)
      cb(n)
    })
  }

  fsync (p: string, datasync: number, fd: number, cb: ResultCb): void {
    const done = (err: NodeJS.ErrnoException | null): void => {
      if (err !== null) { cb(toErrno(err)); return }
      const h = this.handles.get(fd)
      if (h !== undefined) this.reportWrites(p, h)
      cb(0)
    }
    if (datasync !== 0) fs.fdatasync(fd, done)
    else fs.fsync(fd, done)
  }

  private addHandle (fd: number, p: string): void {
    const rel = p.slice(1)
    this.handles.set(fd, new Handle(fd, rel))
    this.writers.set(rel, (this.writers.get(rel) ?? 0) + 1)
  }

  /** Open write handles follow their file (and files below a renamed directory). */
  private moveWriters (from: string, to: string): void {
    if (this.writers.size === 0) return
    const moved = (p: string): string | null => p === from ? to : p.startsWith(from + '/') ? to + p.slice(from.length) : null
    for (const h of this.handles.values()) {
      const m = moved(h.path)
      if (m !== null) h.path = m
    }
    this.writers.clear()
    for (const h of this.handles.values()) this.writers.set(h.path, (this.writers.get(h.path) ?? 0) + 1)
  }

  /**
   * Whether a program has `rel` open for writing through the mount. What the FUSE threads queued is taken
   * first, so a file created or opened there before this call counts even if the event loop has not been
   * woken for it yet (the scanner asks this before recording a path, also when the puller asks it to).
   */
  isOpenForWrite (rel: string): boolean {
    this.drainNative()
    return this.writers.has(rel)
  }

  private forgetHandle (fd: number): Handle | undefined {
    const h = this.handles.get(fd)
    this.handles.delete(fd)
    if (h !== undefined) {
      const n = (this.writers.get(h.path) ?? 0) - 1
      if (n > 0) this.writers.set(h.path, n)
      else this.writers.delete(h.path)
    }
    return h
  }

  /**
   * A release notification: the addon took the ranges written into it (the `pairs` [start, end) pairs at
   * ranges[at]; -1: the whole file counts) and closed the descriptor.
   */
  private released (p: string, fd: number, ranges: Float64Array, at: number, pairs: number): void {
    const h = this.forgetHandle(fd)
    if (h === undefined) return
    if (pairs < 0) h.whole = true
    else for (let i = at; i < at + 2 * pairs; i += 2) h.ranges.add(ranges[i], ranges[i + 1])
    this.reportWrites(p, h, false)
  }

  /** `close` false: the patched fuse-native closes the descriptor itself once this answers. */
  release (p: string, fd: number, cb: ResultCb, close = true): void {
    const h = this.forgetHandle(fd)
    if (!close) {
      if (h !== undefined) this.reportWrites(p, h)
      cb(0)
      return
    }
    fs.close(fd, err => {
      if (h !== undefined) this.reportWrites(p, h)
      cb(err !== null ? toErrno(err) : 0)
    })
  }

  // ---- directories ------------------------------------------------------------------------------

  opendir (p: string, _flags: number, cb: (res: number, fd?: number) => void): void {
    cb(this.real(p) === null ? ENOENT : 0, 0)
  }

  releasedir (_p: string, _fd: number, cb: ResultCb): void {
    cb(0)
  }

  readdir (p: string, signal: Signal): void {
    const r = this.real(p)
    if (r === null) { signal(ENOENT); return }
    fs.readdir(r, { withFileTypes: true }, (err, ents) => {
      if (err !== null) { signal(toErrno(err)); return }
      const names: string[] = ['.', '..']
      const stats: Uint32Array[] = [DIR_ENTRY, DIR_ENTRY]
      const root = p === '/'
      for (const d of ents) {
        if (root && d.name === this.reservedName) continue
        names.push(d.name)
        stats.push(direntArray(direntType(d)))
      }
      signal(0, names, stats)
    })
  }

  fsyncdir (p: string, datasync: number, _fd: number, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    fs.open(r, O_RDONLY, (err, fd) => {
      if (err !== null) { cb(toErrno(err)); return }
      const sync = datasync !== 0 ? fs.fdatasync : fs.fsync
      sync(fd, serr => fs.close(fd, () => cb(serr !== null ? toErrno(serr) : 0)))
    })
  }

  mkdir (p: string, mode: number, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(EPERM); return }
    fs.mkdir(r, { mode: mode & 0o7777 }, err => {
      if (err !== null) { cb(toErrno(err)); return }
      const done = (): void => { this.changed(p, 'mkdir'); cb(0) }
      if (!this.needsChmod(mode)) { done(); return }
      fs.chmod(r, mode & 0o7777, () => done())
    })
  }

  rmdir (p: string, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    fs.rmdir(r, err => {
      if (err !== null) { cb(toErrno(err)); return }
      this.removed(p, true)
      cb(0)
    })
  }

  // ---- names ------------------------------------------------------------------------------------

  mknod (p: string, mode: number, dev: number, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(EPERM); return }
    const type = mode & S_IFMT
    const perm = mode & 0o7777
    const done = (res: number): void => {
      if (res < 0) { cb(res); return }
      const report = (): void => { this.changed(p, 'mknod'); cb(0) }
      if (!this.needsChmod(mode)) { report(); return }
      fs.chmod(r, perm, () => report())
    }
    if (type === 0 || type === S_IFREG) {
      fs.open(r, O_CREAT | O_EXCL | O_WRONLY, perm, (err, fd) => {
        if (err !== null) { done(toErrno(err)); return }
        fs.close(fd, () => done(0))
      })
      return
    }
    if (type !== S_IFIFO && type !== S_IFSOCK && type !== S_IFCHR && type !== S_IFBLK) { cb(EINVAL); return }
    this.helper.mknod(r, mode, dev, done)
  }

  unlink (p: string, cb: ResultCb): void {
    const base = p.slice(p.lastIndexOf('/') + 1)
    const hiddenReal = this.hidden.get(base)
    if (hiddenReal !== undefined) {
      // libfuse removing the file it kept for an unlinked-but-open node: already reported as removed
      fs.unlink(hiddenReal, err => {
        if (err === null || err.code === 'ENOENT') this.hidden.delete(base)
        cb(err !== null ? toErrno(err) : 0)
      })
      return
    }
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    fs.unlink(r, err => {
      if (err !== null) { cb(toErrno(err)); return }
      this.capAbsent.delete(p)
      this.removed(p, false)
      cb(0)
    })
  }

  rename (src: string, dest: string, cb: ResultCb): void {
    const rs = this.real(src)
    if (rs === null) { cb(ENOENT); return }
    const rd = this.real(dest)
    if (rd === null) { cb(EPERM); return }
    const base = dest.slice(dest.lastIndexOf('/') + 1)
    if (HIDDEN_RE.test(base) && !this.hidden.has(base)) {
      this.hide(src, rs, base, rd, cb)
      return
    }
    fs.rename(rs, rd, err => {
      if (err !== null) { cb(toErrno(err)); return }
      this.capAbsent.clear()
      this.moveWriters(src.slice(1), dest.slice(1))
      this.renamed(src, dest)
      cb(0)
    })
  }

  /**
   * libfuse2 keeps a file that is unlinked (or renamed over) while open by renaming it to .fuse_hiddenXXXX
   * in its folder. We move it into the reserved folder instead, so the data folder only shows the removal.
   */
  private hide (src: string, rs: string, base: string, rd: string, cb: ResultCb): void {
    const target = `${this.hiddenDir}/${process.pid}-${++this.hiddenSeq}`
    fs.rename(rs, target, err => {
      if (err !== null && err.code === 'EXDEV') {
        // reserved folder on another file system: keep libfuse's own scheme
        fs.rename(rs, rd, err2 => {
          if (err2 !== null) { cb(toErrno(err2)); return }
          this.removed(src, false)
          cb(0)
        })
        return
      }
      if (err !== null) { cb(toErrno(err)); return }
      this.hidden.set(base, target)
      this.capAbsent.delete(src)
      this.removed(src, false)
      cb(0)
    })
  }

  link (src: string, dest: string, cb: ResultCb): void {
    const rs = this.real(src)
    if (rs === null) { cb(ENOENT); return }
    const rd = this.real(dest)
    if (rd === null) { cb(EPERM); return }
    fs.link(rs, rd, err => {
      if (err !== null) { cb(toErrno(err)); return }
      this.changed(dest, 'link')
      cb(0)
    })
  }

  symlink (target: string, p: string, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(EPERM); return }
    fs.symlink(target, r, err => {
      if (err !== null) { cb(toErrno(err)); return }
      this.changed(p, 'symlink')
      cb(0)
    })
  }

  readlink (p: string, cb: (res: number, target?: string) => void): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    fs.readlink(r, (err, target) => {
      if (err !== null) cb(toErrno(err))
      else cb(0, target)
    })
  }

  // ---- extended attributes ----------------------------------------------------------------------

  getxattr (p: string, name: string, cb: (res: number, value?: Buffer) => void): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    if (name === CAP) {
      // asked by the kernel before every write(2) (file_remove_privs): answer from a short-lived cache
      const until = this.capAbsent.get(p)
      if (until !== undefined && until > Date.now()) { cb(ENODATA); return }
    }
    this.helper.getxattr(r, name, (res, value) => {
      if (res === ENODATA && name === CAP) {
        if (this.capAbsent.size > 100000) this.capAbsent.clear()
        this.capAbsent.set(p, Date.now() + CAP_TTL_MS)
      }
      cb(res, value)
    })
  }

  setxattr (p: string, name: string, value: Buffer, flags: number, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    this.helper.setxattr(r, name, value, flags, res => {
      this.capAbsent.delete(p)
      if (res === 0 && !this.isHidden(p)) this.changed(p, 'xattr')
      cb(res)
    })
  }

  listxattr (p: string, cb: (res: number, names?: string[]) => void): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    this.helper.listxattr(r, cb)
  }

  removexattr (p: string, name: string, cb: ResultCb): void {
    const r = this.real(p)
    if (r === null) { cb(ENOENT); return }
    this.helper.removexattr(r, name, res => {
      this.capAbsent.delete(p)
      if (res === 0 && !this.isHidden(p)) this.changed(p, 'xattr')
      cb(res)
    })
  }

  /**
   * Forgets every file still open (after unmount), and closes their descriptors unless the addon owns them
   * (`ownedByAddon`: its fast paths opened them, and its release closes them). A lazy unmount only detaches
   * the mount: a program that still has a file open goes on writing through the addon's threads, so closing
   * such a descriptor here would let the node's next open(2) get its number, and the program's writes (and
   * the addon's close at release) would hit that file instead.
   */
  closeAll (ownedByAddon = false): Promise<void> {
    // the poll of the addon's queue (drainNative) must not fire after stop and report to the sink
    this.closed = true
    if (this.drainTimer !== undefined) clearTimeout(this.drainTimer)
    this.drainTimer = undefined
    const fds = [...this.handles.keys()]
    this.handles.clear()
    if (ownedByAddon) return Promise.resolve()
    return Promise.all(fds.map(fd => new Promise<void>(resolve => fs.close(fd, () => resolve())))).then(() => {})
  }
}

/** Read by the patched fuse-native at mount time (`_syncmeshPassthrough`). */
export interface FastPathConfig {
  dataDir: string
  reservedName: string
  /** our process umask: bits it took from a create's mode are given back with fchmod */
  umask: number
  /** level 5: notifications queued at most (0: create/open/release call JS and wait, as at level 4) */
  queueMax: number
  /** level 5: called when the addon queued notifications (it takes them: Passthrough.drainNative) */
  onEvents?: () => void
  /**
   * level 6: serve with the addon's own request loop (one thread reads and serves what C answers, handing
   * the reading over to another thread before it waits for JS, the order lock or the disk) instead of
   * libfuse's fuse_loop_mt (see "The request loop" in scripts/build-fuse.mjs)
   */
  leadLoop?: boolean
}

export interface FuseTuning {
  attrTimeout: number
  entryTimeout: number
  log: (msg: string) => void
  /** count requests per operation (diagnostics: SYNCMESH_FUSE_STATS=1; not those answered in C, see fastPaths) */
  countOps?: boolean
  /**
   * let the patched fuse-native (level 4) serve plain paths in its FUSE threads: getattr, fgetattr and
   * getxattr (lstat, fstat of the handle, lgetxattr), read and write (pread, pwrite; it keeps the ranges
   * written, taken at fsync and release) with no round trip into JS; create and open (open(2)) there too,
   * JS only recording the handle; release calls JS, then closes the descriptor. File handles are the real
   * descriptors.
   */
  fastPaths?: NativeTakeRanges
  /**
   * with fastPaths, patched fuse-native level 5: create, open for writing and release are answered in the
   * FUSE thread, which queues a notification for JS (in the order of the system calls, under one lock with
   * the mutating operations JS serves) instead of waiting for it; at most `queueMax` queued (default 65536),
   * beyond that they wait for JS as before.
   */
  events?: NativeTakeEvents
  queueMax?: number
  /** with events: the addon's ordering lock, for Passthrough.exclusive */
  order?: NativeOrder
  /** with fastPaths, patched fuse-native level 6: its own request loop instead of fuse_loop_mt (default false) */
  leadLoop?: boolean
}

let warnedStock = false

/** fuse-native's opcode numbers (fuse-native.c), for diagnostics. */
export const OP_NAMES = ['init', 'error', 'access', 'statfs', 'fgetattr', 'getattr', 'flush', 'fsync', 'fsyncdir', 'readdir',
  'truncate', 'ftruncate', 'utimens', 'readlink', 'chown', 'chmod', 'mknod', 'setxattr', 'getxattr', 'listxattr',
  'removexattr', 'open', 'opendir', 'read', 'write', 'release', 'releasedir', 'create', 'unlink', 'rename', 'link',
  'symlink', 'mkdir', 'rmdir']

/** A mounted-able Fuse instance plus request counters. */
export interface SyncFuseInstance extends Fuse {
  readonly opCounts: Map<string, number>
}

/**
 * Builds fuse-native's Fuse subclass for a Passthrough:
 * - mount options fuse-native cannot express (big_writes, max_write, use_ino, zero timeouts, ...)
 * - fixes for fuse-native 2.2.6 bugs: fgetattr ignoring the file handle, getxattr/listxattr not answering
 *   ERANGE / exact sizes
 * - utimens: with Syncmesh's patched fuse-native (pt.nsTimes) both timespecs as they came, UTIME_OMIT and
 *   UTIME_NOW included; with the stock prebuild, ms times with its atime-twice bug worked around
 * - getattr/readdir stat arrays built without Date objects
 */
export function createFuse (Base: FuseClass, pt: Passthrough, mountPoint: string, tuning: FuseTuning): SyncFuseInstance {
  const unused = (): void => {}
  const ops: FuseOps = {
    getattr: unused, // overridden in the subclass
    fgetattr: unused,
    readdir: unused,
    utimens: unused,
    getxattr: unused,
    setxattr: unused,
    listxattr: unused,
    access: (p, mode, cb) => pt.access(p, mode, cb),
    statfs: (p, cb) => pt.statfs(p, cb),
    // flush is deliberately not registered: writes go straight to the real file, so there is nothing to
    // flush at close(2). libfuse2 answers the first FLUSH with ENOSYS, the kernel then stops sending it and
    // close() succeeds: one request (two thread hand-offs) less per close.
    fsync: (p, datasync, fd, cb) => pt.fsync(p, datasync, fd, cb),
    fsyncdir: (p, datasync, fd, cb) => pt.fsyncdir(p, datasync, fd, cb),
    truncate: (p, size, cb) => pt.truncate(p, size, cb),
    ftruncate: (p, fd, size, cb) => pt.ftruncate(p, fd, size, cb),
    readlink: (p, cb) => pt.readlink(p, cb),
    chown: (p, uid, gid, cb) => pt.chown(p, uid, gid, cb),
    chmod: (p, mode, cb) => pt.chmod(p, mode, cb),
    mknod: (p, mode, dev, cb) => pt.mknod(p, mode, dev, cb),
    removexattr: (p, name, cb) => pt.removexattr(p, name, cb),
    open: (p, flags, cb) => pt.open(p, flags, cb),
    opendir: (p, flags, cb) => pt.opendir(p, flags, cb),
    read: (p, fd, buf, len, pos, cb) => pt.read(p, fd, buf, len, pos, cb),
    write: (p, fd, buf, len, pos, cb) => pt.write(p, fd, buf, len, pos, cb),
    release: (p, fd, cb) => pt.release(p, fd, cb, tuning.fastPaths === undefined),
    releasedir: (p, fd, cb) => pt.releasedir(p, fd, cb),
    create: (p, mode, cb) => pt.create(p, mode, cb),
    unlink: (p, cb) => pt.unlink(p, cb),
    rename: (src, dest, cb) => pt.rename(src, dest, cb),
    link: (src, dest, cb) => pt.link(src, dest, cb),
    symlink: (target, p, cb) => pt.symlink(target, p, cb),
    mkdir: (p, mode, cb) => pt.mkdir(p, mode, cb),
    rmdir: (p, cb) => pt.rmdir(p, cb)
  }

  class SyncFuse extends Base {
    /** real mtime of the utimens request being dispatched (read from fuse-native's thread locals) */
    private pendingMtime: number | undefined = undefined
    private warnedLayout = false
    readonly opCounts = new Map<string, number>()

    /** read by the patched fuse-native at mount time (fuse_native_mount: syncmesh_setup) */
    readonly _syncmeshPassthrough: FastPathConfig | undefined

    constructor () {
      super(mountPoint, ops, { timeout: false })
      const take = tuning.fastPaths
      const events = take !== undefined ? tuning.events : undefined
      const leadLoop = tuning.leadLoop ?? false
      this._syncmeshPassthrough = take === undefined
        ? undefined
        : events === undefined
          ? { ...pt.fastPathConfig, leadLoop }
          : { ...pt.fastPathConfig, leadLoop, queueMax: tuning.queueMax ?? 65536, onEvents: () => { pt.nativeWoke() } }
      if (take !== undefined) pt.useNativeWrites(take, () => this._thread)
      if (take !== undefined && tuning.order !== undefined) pt.useNativeOrder(tuning.order, () => this._thread)
      if (events !== undefined) {
        pt.useNativeEvents(events, () => this._thread)
        // what the FUSE threads queued comes first: the addon holds its ordering lock across every mutating
        // request that reaches JS, so nothing can be queued between this and the request's own report
        this._handlers = this._handlers.map(h => typeof h !== 'function'
          ? h
          : (nh: Buffer, opCode: number, ...args: unknown[]) => {
              pt.drainNative()
              h(nh, opCode, ...args)
            })
      }
      if (tuning.countOps === true) {
        this._handlers = this._handlers.map((h, op) => {
          if (typeof h !== 'function') return h
          const name = OP_NAMES[op] ?? String(op)
          return (nh: Buffer, opCode: number, ...args: unknown[]) => {
            this.opCounts.set(name, (this.opCounts.get(name) ?? 0) + 1)
            h(nh, opCode, ...args)
          }
        })
      }
      const orig = this._handlers[OP_UTIMENS]
      if (!pt.nsTimes && !warnedStock) {
        warnedStock = true
        tuning.log('fuse-native\'s stock prebuild is loaded: utimens with one time omitted (UTIME_OMIT: touch -m, touch -a, tar x) changes nothing and times have ms precision through the mount; build the patched addon with `node scripts/build-fuse.mjs`')
      }
      if (!pt.nsTimes && typeof orig === 'function') {
        this._handlers[OP_UTIMENS] = (nh: Buffer, opCode: number, ...args: unknown[]) => {
          this.pendingMtime = opCode === OP_UTIMENS ? this.realMtime(nh, args) : undefined
          orig(nh, opCode, ...args)
        }
      }
    }

    /**
     * fuse-native.c passes l->atime for both times (FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)).
     * The native handler Buffer is its fuse_thread_locals_t; on x86-64 atime is the size_t at offset 104 and
     * mtime the one at 112. Used only when the atime there matches the atime argument.
     */
    private realMtime (nh: Buffer, args: unknown[]): number | undefined {
      const aLow = args[1]
      const aHigh = args[2]
      if (Buffer.isBuffer(nh) && nh.length >= 120 && nh.readUInt32LE(104) === aLow && nh.readUInt32LE(108) === aHigh) {
        return nh.readUInt32LE(112) + nh.readUInt32LE(116) * TWO32
      }
      if (!this.warnedLayout) {
        this.warnedLayout = true
        tuning.log('fuse-native thread-locals layout not recognised: utimens will set mtime = atime (fuse-native bug)')
      }
      return undefined
    }

    override _fuseOptions (): string {
      const base = super._fuseOptions()
      const extra = [
        'big_writes',
        'max_write=131072',
        'max_read=131072',
        'use_ino',
        `attr_timeout=${tuning.attrTimeout}`,
        `entry_timeout=${tuning.entryTimeout}`,
        'negative_timeout=0',
        'fsname=syncmesh',
        'subtype=syncmesh'
      ].join(',')
      return base === '' ? '-o' + extra : base + ',' + extra
    }

    override _op_getattr (signal: Signal, p: string): void {
      pt.getattr(p, signal)
    }

    override _op_fgetattr (signal: Signal, p: string, fd: number): void {
      pt.fgetattr(p, fd, signal)
    }

    override _op_readdir (signal: Signal, p: string): void {
      pt.readdir(p, signal)
    }

    /** patched fuse-native: (atime sec, atime nsec, mtime sec, mtime nsec); stock: (atime ms low, high, atime ms again, see realMtime) */
    override _op_utimens (signal: Signal, p: string, aLow: number, aHigh: number, mLow: number, mHigh: number): void {
      if (pt.nsTimes) {
        pt.utimensNs(p, { sec: aLow, nsec: aHigh }, { sec: mLow, nsec: mHigh }, res => signal(res))
        return
      }
      const mtime = this.pendingMtime ?? (mLow + mHigh * TWO32)
      this.pendingMtime = undefined
      pt.utimens(p, aLow + aHigh * TWO32, mtime, res => signal(res))
    }

    /** preFd: the patched fuse-native created the file itself (fast paths) */
    override _op_create (signal: Signal, p: string, mode: number, preFd?: number): void {
      if (typeof preFd === 'number') pt.createdFd(p, preFd, (res, fd) => signal(res, fd))
      else pt.create(p, mode, (res, fd) => signal(res, fd))
    }

    /** preFd: the patched fuse-native opened the file itself (fast paths; it only asks JS about opens for writing) */
    override _op_open (signal: Signal, p: string, flags: number, preFd?: number): void {
      if (typeof preFd === 'number') pt.openedFd(p, flags, preFd, (res, fd) => signal(res, fd))
      else pt.open(p, flags, (res, fd) => signal(res, fd))
    }

    override _op_getxattr (signal: Signal, p: string, name: string, valueBuf: Buffer, _position: number): void {
      pt.getxattr(p, name, (res, value) => {
        if (res < 0 || value === undefined) { signal(res < 0 ? res : ENOSYS, valueBuf.buffer); return }
        if (valueBuf.length === 0) { signal(value.length, valueBuf.buffer); return }
        if (value.length > valueBuf.length) { signal(ERANGE, valueBuf.buffer); return }
        value.copy(valueBuf)
        signal(value.length, valueBuf.buffer)
      })
    }

    override _op_setxattr (signal: Signal, p: string, name: string, value: Buffer, _position: number, flags: number): void {
      pt.setxattr(p, name, value, flags, res => signal(res, value.buffer))
    }

    override _op_listxattr (signal: Signal, p: string, listBuf: Buffer): void {
      pt.listxattr(p, (res, names) => {
        if (res < 0 || names === undefined) { signal(res < 0 ? res : ENOSYS, listBuf.buffer); return }
        let size = 0
        for (const n of names) size += Buffer.byteLength(n) + 1
        if (listBuf.length === 0) { signal(size, listBuf.buffer); return }
        if (size > listBuf.length) { signal(ERANGE, listBuf.buffer); return }
        let off = 0
        for (const n of names) {
          off += listBuf.write(n, off)
          listBuf[off++] = 0
        }
        signal(off, listBuf.buffer)
      })
    }
  }

  return new SyncFuse()
}
