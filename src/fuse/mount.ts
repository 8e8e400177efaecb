/**
 * SyncMount: mounts a node's data folder at a mount point as a passthrough FUSE file system
 * (fuse-native over libfuse2) and reports every mutation made through it to a ChangeSink.
 *
 * Notes on libfuse2 / fuse-native behaviour this relies on or works around:
 * - utimens: with the addon built by scripts/build-fuse.mjs (Syncmesh's patch of fuse-native, loaded
 *   when `binding.patch` >= 1) libfuse2 calls utimens also when one time is omitted (flag_utime_omit_ok)
 *   and hands both timespecs through unrounded, UTIME_OMIT/UTIME_NOW included; they are set with one
 *   utimensat(2). getattr carries nanoseconds too. With fuse-native's stock prebuild (no compiler at install)
 *   a request with one time omitted (UTIME_OMIT, e.g. `touch -m`, `tar x`) never reaches the callback — it
 *   succeeds without changing anything — times are whole ms, and the stock addon hands the callback atime
 *   twice: the real mtime is read from its native per-thread buffer (see passthrough.ts).
 * - With that addon (level 4) plain paths are mostly served in its FUSE threads (getattr, fgetattr,
 *   getxattr, read, write; the open(2) of create/open, the close(2) after release): see FuseTuning.fastPaths
 *   and scripts/build-fuse.mjs. SYNCMESH_FUSE_FASTPATHS=0 keeps everything in JS. From level 5 create, open
 *   for writing and release do not wait for JS: they queue a notification, in order (FuseTuning.events);
 *   SYNCMESH_FUSE_ASYNC=0 makes them wait as at level 4, SYNCMESH_FUSE_QUEUE_MAX bounds the queue. From
 *   level 6 the addon also has a request loop of its own (one thread reads and serves, and hands the reading
 *   over before it waits for JS, the order lock or the disk): SYNCMESH_FUSE_LOOP=lead serves with it instead
 *   of libfuse's fuse_loop_mt, the default (faster here for sequential writes, as fast for creations).
 * - Files unlinked while open: libfuse2 renames them to .fuse_hiddenXXXX; they are moved into
 *   <dataDir>/<reservedName>/fuse-hidden instead, so the data folder only shows the removal.
 * - Extended attributes and mknod of fifos/devices go through a python3 helper (Node has no API for them).
 */
import fsp from 'node:fs/promises'
import path from 'node:path'
import { NativeHelper } from './helper.js'
import {
  MountError, canonicalMountPoint, checkFuseAvailable, checkFusermount, lazyUnmount, loadFuseNative, mountsAt,
  prepareMountPoint
} from './hygiene.js'
import type { FuseBinding } from './hygiene.js'
import { Passthrough, createFuse, type SyncFuseInstance } from './passthrough.js'
import type { ChangeSink, SyncMountComponents, SyncMountInit } from './types.js'

export { MountError } from './hygiene.js'
export { MountBusyError } from './passthrough.js'
export type { ChangeKind, ChangeSink, SyncMountComponents, SyncMountInit } from './types.js'

const HIDDEN_SUBDIR = 'fuse-hidden'

function pidAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** SYNCMESH_FUSE_QUEUE_MAX: notifications the addon queues at most (a test sets 1 to exercise the fallback). */
function queueMaxFromEnv (): number | undefined {
  const v = process.env.SYNCMESH_FUSE_QUEUE_MAX
  if (v === undefined || v === '') return undefined
  const n = Number(v)
  return Number.isInteger(n) && n > 0 ? n : undefined
}

export class SyncMount {
  private readonly sink: ChangeSink
  private readonly log: (msg: string) => void
  private readonly init: Required<SyncMountInit>
  private fuse: SyncFuseInstance | undefined
  private pt: Passthrough | undefined
  /** the addon's fast paths opened the files of this mount: its release closes them, never closeAll */
  private addonOwnsHandles = false
  private helper: NativeHelper | undefined
  private fuseBinding: FuseBinding | undefined
  private mountedAt: string | undefined
  private hiddenDir: string | undefined
  private starting: Promise<void> | undefined
  private stopping: Promise<void> | undefined

  constructor (components: SyncMountComponents, init: SyncMountInit) {
    this.sink = components.sink
    this.log = components.log ?? (() => {})
    const reservedName = init.reservedName ?? '.syncmesh'
    if (reservedName === '' || reservedName === '.' || reservedName === '..' || reservedName.includes('/')) {
      throw new MountError(`invalid reservedName ${JSON.stringify(reservedName)}: must be a single file name`)
    }
    this.init = {
      dataDir: init.dataDir,
      mountPoint: init.mountPoint,
      reservedName,
      attrTimeout: init.attrTimeout ?? 0,
      entryTimeout: init.entryTimeout ?? 0
    }
  }

  /**
   * Runs `step` (synchronous; on the data folder, never the mount) with no mutation through the mount
   * landing in between, and with isOpenForWrite exact inside it (see Passthrough.exclusive). Throws
   * MountBusyError when a mutation through the mount is in progress: try again a moment later.
   */
  exclusive<T> (step: () => T): T {
    const pt = this.pt
    return pt === undefined ? step() : pt.exclusive(step)
  }

  /** Paths still open for writing when the last stop unmounted (diagnostics). */
  lastOpenForWrite = 0

  /** Whether a program has `rel` (relative to the data folder) open for writing through the mount. */
  isOpenForWrite (rel: string): boolean {
    return this.pt?.isOpenForWrite(rel) ?? false
  }

  /** The fuse-native addon in use (known once started): its file and Syncmesh patch level (0: stock prebuild). */
  get binding (): { file: string, patch: number } | undefined {
    return this.fuseBinding === undefined ? undefined : { file: this.fuseBinding.file, patch: this.fuseBinding.patch }
  }

  /** True while mounted. */
  get mounted (): boolean {
    return this.mountedAt !== undefined
  }

  /** Mounts; resolves once the kernel has initialised the file system. Idempotent. Rejects with MountError. */
  start (): Promise<void> {
    if (this.mountedAt !== undefined && this.stopping === undefined) return Promise.resolve()
    if (this.starting !== undefined) return this.starting
    const run = async (): Promise<void> => {
      if (this.stopping !== undefined) await this.stopping.catch(() => {})
      if (this.mountedAt !== undefined) return
      await this.doStart()
    }
    const p = run().finally(() => { this.starting = undefined })
    this.starting = p
    return p
  }

  /** Unmounts (fuse-native/fusermount -uz, falling back to umount -l) and closes every open file. Idempotent. */
  stop (): Promise<void> {
    if (this.stopping !== undefined) return this.stopping
    if (this.mountedAt === undefined && this.starting === undefined) return Promise.resolve()
    const run = async (): Promise<void> => {
      if (this.starting !== undefined) await this.starting.catch(() => {})
      if (this.mountedAt === undefined) return
      await this.doStop()
    }
    const p = run().finally(() => { this.stopping = undefined })
    this.stopping = p
    return p
  }

  private async doStart (): Promise<void> {
    const { reservedName } = this.init
    let dataDir = path.resolve(this.init.dataDir)
    try {
      const st = await fsp.stat(dataDir)
      if (!st.isDirectory()) throw new MountError(`data folder ${dataDir} is not a directory`)
      dataDir = await fsp.realpath(dataDir)
    } catch (err) {
      if (err instanceof MountError) throw err
      throw new MountError(`data folder ${dataDir} cannot be used (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
    }
    const mountPoint = await canonicalMountPoint(this.init.mountPoint)
    if (mountPoint === dataDir || mountPoint.startsWith(dataDir + '/') || dataDir.startsWith(mountPoint + '/')) {
      throw new MountError(`mount point ${mountPoint} must be outside the data folder ${dataDir} (and not contain it)`)
    }
    await checkFuseAvailable()
    const { Fuse: FuseBase, binding } = await loadFuseNative()
    await checkFusermount()
    await prepareMountPoint(mountPoint, this.log)

    const hiddenDir = path.join(dataDir, reservedName, HIDDEN_SUBDIR)
    await fsp.mkdir(hiddenDir, { recursive: true })
    await this.cleanHidden(hiddenDir, false)

    const helper = new NativeHelper(this.log)
    await helper.init()
    const pt = new Passthrough({ dataDir, reservedName, hiddenDir, sink: this.sink, log: this.log, helper, utimensat: binding.utimensat })
    const fastPaths = process.env.SYNCMESH_FUSE_FASTPATHS !== '0' ? binding.takeRanges : undefined
    this.addonOwnsHandles = fastPaths !== undefined
    const fuse = createFuse(FuseBase, pt, mountPoint, {
      attrTimeout: this.init.attrTimeout,
      entryTimeout: this.init.entryTimeout,
      log: this.log,
      countOps: process.env.SYNCMESH_FUSE_STATS === '1',
      fastPaths,
      events: process.env.SYNCMESH_FUSE_ASYNC !== '0' ? binding.takeEvents : undefined,
      queueMax: queueMaxFromEnv(),
      order: binding.order,
      leadLoop: process.env.SYNCMESH_FUSE_LOOP === 'lead'
    })
    await new Promise<void>((resolve, reject) => {
      fuse.mount(err => {
        if (err === null || err === undefined) resolve()
        else reject(new MountError(`mounting ${mountPoint} failed: ${err.message} (needs root or the fuse package's setuid fusermount)`))
      })
    })
    this.fuse = fuse
    this.pt = pt
    this.helper = helper
    this.hiddenDir = hiddenDir
    this.mountedAt = mountPoint
    this.fuseBinding = binding
    this.log(`mounted ${dataDir} at ${mountPoint} (fuse-native ${binding.patch > 0 ? `with the syncmesh patch ${binding.patch}` : 'stock prebuild'}: ${binding.file})`)
  }

  private async doStop (): Promise<void> {
    const mountPoint = this.mountedAt
    const fuse = this.fuse
    if (mountPoint === undefined || fuse === undefined) return
    if (fuse.opCounts.size > 0) this.log(`requests: ${[...fuse.opCounts].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(' ')}`)
    const unmounted = await new Promise<boolean>(resolve => {
      const timer = setTimeout(() => resolve(false), 10000)
      fuse.unmount(err => {
        clearTimeout(timer)
        if (err !== null && err !== undefined) this.log(`unmount of ${mountPoint} failed: ${err.message}; trying umount -l`)
        resolve(err === null || err === undefined)
      })
    })
    if (!unmounted || (await mountsAt(mountPoint)).some(m => m.fstype.startsWith('fuse'))) {
      await lazyUnmount(mountPoint)
    }
    if ((await mountsAt(mountPoint)).some(m => m.fstype.startsWith('fuse'))) {
      throw new MountError(`could not unmount ${mountPoint}`)
    }
    this.mountedAt = undefined
    this.fuse = undefined
    // what the FUSE threads queued before the unmount is handled (openForWriteCount drains the addon's
    // queue) before the last handles are closed (a release notification's descriptor is closed already)
    // and before the node stops recording
    this.lastOpenForWrite = this.pt?.openForWriteCount ?? 0
    if (this.lastOpenForWrite > 0) this.log(`${this.lastOpenForWrite} path(s) still open for writing at unmount`)
    await this.pt?.closeAll(this.addonOwnsHandles)
    this.pt = undefined
    this.helper?.stop()
    this.helper = undefined
    if (this.hiddenDir !== undefined) await this.cleanHidden(this.hiddenDir, true)
    this.log(`unmounted ${mountPoint}`)
  }

  /** Removes files kept for unlinked-but-open nodes: ours (on stop) or those of processes that are gone. */
  private async cleanHidden (dir: string, own: boolean): Promise<void> {
    let names: string[]
    try {
      names = await fsp.readdir(dir)
    } catch {
      return
    }
    await Promise.all(names.map(async name => {
      const pid = Number.parseInt(name, 10)
      const mine = pid === process.pid
      if (mine ? !own : (Number.isInteger(pid) && pidAlive(pid))) return
      await fsp.rm(path.join(dir, name), { force: true, recursive: true }).catch(() => {})
    }))
  }
}
