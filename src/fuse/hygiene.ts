/**
 * Checks before mounting and after unmounting: missing FUSE support, a bad mount point, stale mounts left
 * by a killed process (cleared), live mounts (refused).
 */
import { execFile } from 'node:child_process'
import { constants } from 'node:fs'
import fsp from 'node:fs/promises'
import { createRequire } from 'node:module'
import path from 'node:path'
import type Fuse from 'fuse-native'

/** A reason the mount cannot be made, as one line. */
export class MountError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'MountError'
  }
}

export interface MountInfoEntry {
  mountPoint: string
  fstype: string
  source: string
}

function unescapeMountInfo (s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)))
}

/** Parses /proc/self/mountinfo (mount point, file-system type, source of every mount). */
export async function readMountInfo (): Promise<MountInfoEntry[]> {
  let text: string
  try {
    text = await fsp.readFile('/proc/self/mountinfo', 'utf8')
  } catch {
    return []
  }
  const out: MountInfoEntry[] = []
  for (const line of text.split('\n')) {
    if (line === '') continue
    const sep = line.indexOf(' - ')
    if (sep === -1) continue
    const left = line.slice(0, sep).split(' ')
    const right = line.slice(sep + 3).split(' ')
    if (left.length < 5 || right.length < 2) continue
    out.push({ mountPoint: unescapeMountInfo(left[4]), fstype: right[0], source: unescapeMountInfo(right[1]) })
  }
  return out
}

/** Mounts stacked at `mountPoint`, topmost last. */
export async function mountsAt (mountPoint: string): Promise<MountInfoEntry[]> {
  return (await readMountInfo()).filter(m => m.mountPoint === mountPoint)
}

function run (cmd: string, args: string[], timeoutMs = 10000): Promise<{ ok: boolean, out: string }> {
  return new Promise(resolve => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', env: { ...process.env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      resolve({ ok: err === null, out: `${String(stdout)}${String(stderr)}`.trim() || (err?.message ?? '') })
    })
  })
}

/** Lazily unmounts whatever is mounted at `mountPoint` (fusermount -uz, then umount -l). */
export async function lazyUnmount (mountPoint: string): Promise<boolean> {
  const a = await run('fusermount', ['-uz', mountPoint])
  if (a.ok) return true
  const b = await run('umount', ['-l', mountPoint])
  return b.ok
}

export type Probe = { kind: 'dir' } | { kind: 'notdir' } | { kind: 'missing' } | { kind: 'stale', code: string } | { kind: 'error', code: string }

const STALE_CODES = new Set(['ENOTCONN', 'ECONNABORTED', 'EIO', 'ENXIO', 'TIMEOUT'])

/**
 * stat(2) of a possible FUSE mount point in a child process, so that a mount whose server hangs cannot
 * block this process or its thread pool; a timeout counts as stale.
 */
export async function probeIsolated (mountPoint: string): Promise<Probe> {
  const script = 'require("fs").stat(process.argv[1],(e,s)=>process.stdout.write(JSON.stringify(e?{code:e.code}:{dir:s.isDirectory()})))'
  return await new Promise(resolve => {
    execFile(process.execPath, ['-e', script, mountPoint], { timeout: 5000, killSignal: 'SIGKILL' }, (err, stdout) => {
      if (err !== null && (err as { killed?: boolean }).killed === true) { resolve({ kind: 'stale', code: 'TIMEOUT' }); return }
      try {
        const r = JSON.parse(String(stdout)) as { code?: string, dir?: boolean }
        resolve(classify(r.code, r.dir))
      } catch {
        resolve({ kind: 'error', code: err?.message ?? 'unknown' })
      }
    })
  })
}

async function probeHere (mountPoint: string): Promise<Probe> {
  try {
    const st = await fsp.stat(mountPoint)
    return classify(undefined, st.isDirectory())
  } catch (err) {
    return classify((err as NodeJS.ErrnoException).code ?? 'EIO', undefined)
  }
}

function classify (code: string | undefined, dir: boolean | undefined): Probe {
  if (code === undefined) return dir === true ? { kind: 'dir' } : { kind: 'notdir' }
  if (code === 'ENOENT') return { kind: 'missing' }
  if (code === 'ENOTDIR') return { kind: 'notdir' }
  if (STALE_CODES.has(code)) return { kind: 'stale', code }
  return { kind: 'error', code }
}

/** Absolute path as the kernel lists it: parent resolved through symlinks (the mount point itself may be dead). */
export async function canonicalMountPoint (mountPoint: string): Promise<string> {
  const abs = path.resolve(mountPoint)
  try {
    return path.join(await fsp.realpath(path.dirname(abs)), path.basename(abs))
  } catch {
    return abs
  }
}

/** Throws MountError unless FUSE can be used at all on this machine. */
export async function checkFuseAvailable (): Promise<void> {
  try {
    await fsp.access('/dev/fuse', constants.R_OK | constants.W_OK)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') throw new MountError('no /dev/fuse: the FUSE kernel module is not available (modprobe fuse, or run the container with --device /dev/fuse --cap-add SYS_ADMIN)')
    throw new MountError(`cannot open /dev/fuse (${code ?? String(err)}): FUSE needs read/write access to /dev/fuse`)
  }
}

/**
 * Makes `mountPoint` ready for mounting: clears stale mounts left by a killed process and refuses, with a
 * MountError, a missing or non-directory mount point, a live mount there, or a non-empty directory.
 */
export async function prepareMountPoint (mountPoint: string, log: (msg: string) => void): Promise<void> {
  for (let attempt = 0; attempt < 8; attempt++) {
    const stacked = await mountsAt(mountPoint)
    const top = stacked[stacked.length - 1]
    const isFuse = top !== undefined && top.fstype.startsWith('fuse')
    const probe = isFuse ? await probeIsolated(mountPoint) : await probeHere(mountPoint)
    if (probe.kind === 'stale') {
      log(`clearing stale mount at ${mountPoint} (${probe.code}${top !== undefined ? `, ${top.fstype} from ${top.source}` : ''})`)
      if (!await lazyUnmount(mountPoint)) throw new MountError(`stale mount at ${mountPoint} could not be removed (fusermount -uz and umount -l failed)`)
      continue
    }
    if (top !== undefined) {
      throw new MountError(`mount point ${mountPoint} is already mounted by a live file system (${top.fstype} from ${top.source}); unmount it first`)
    }
    switch (probe.kind) {
      case 'missing': throw new MountError(`mount point ${mountPoint} does not exist`)
      case 'notdir': throw new MountError(`mount point ${mountPoint} is not a directory`)
      case 'error': throw new MountError(`mount point ${mountPoint} cannot be used (${probe.code})`)
      case 'dir': break
    }
    let entries: string[]
    try {
      entries = await fsp.readdir(mountPoint)
    } catch (err) {
      throw new MountError(`mount point ${mountPoint} cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
    }
    if (entries.length > 0) throw new MountError(`mount point ${mountPoint} is not empty (${entries.length} entries)`)
    return
  }
  throw new MountError(`mount point ${mountPoint} stays stale after repeated lazy unmounts`)
}

/** utimensat(2) of Syncmesh's fuse-native patch: AT_SYMLINK_NOFOLLOW, on the thread pool; cb(0 or -errno). */
export type NativeUtimensat = (path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number, cb: (res: number) => void) => void

/**
 * The byte ranges the patched fuse-native wrote to descriptor `fd` of the mount whose fuse_thread_t is
 * `thread` since the last take: [start, end) pairs; null when not all could be kept (count the whole file);
 * undefined when none.
 */
export type NativeTakeRanges = (thread: Buffer, fd: number) => Float64Array | null | undefined

/**
 * What the patched fuse-native (level 6) queued since the last take, in the order the system calls happened
 * (syncmesh_take_events in scripts/build-fuse.mjs): how many notifications could not be queued (they
 * waited for JS instead); per notification three entries of meta (op, descriptor, and for a release the
 * number of its [start, end) pairs in `ranges`, taken in order; -1: the whole file counts); their paths
 * joined with NUL; the ranges' pairs.
 */
export type NativeEvents = [fallbacks: number, meta: Int32Array, paths: string, ranges: Float64Array]

/**
 * The notifications the patched fuse-native queued for the mount whose fuse_thread_t is `thread` since the
 * last take; undefined when there were none, or that mount has no queue.
 */
export type NativeTakeEvents = (thread: Buffer) => NativeEvents | undefined

/**
 * The per-mount ordering lock of the patched fuse-native (level 5), for one synchronous step of JS: tryLock
 * answers 1 (held now: release it before the step ends), 0 (a FUSE thread holds it, maybe waiting for JS:
 * never wait for it) or -1 (that mount has none).
 */
export interface NativeOrder {
  tryLock: (thread: Buffer) => number
  release: (thread: Buffer) => void
}

/** The addon fuse-native loaded, and what Syncmesh's patch (scripts/build-fuse.mjs) added to it. */
export interface FuseBinding {
  /** the addon file (build/Release/fuse.node when built with the patch, else fuse-native's prebuild) */
  file: string
  /** the patch level it reports (`syncmesh_patch`), 0 for a stock build */
  patch: number
  /** present from patch level 1 on */
  utimensat: NativeUtimensat | undefined
  /** present from patch level 4 on */
  takeRanges: NativeTakeRanges | undefined
  /** present from patch level 6 on (level 5 had another format) */
  takeEvents: NativeTakeEvents | undefined
  /** present from patch level 5 on */
  order: NativeOrder | undefined
}

export interface LoadedFuse {
  Fuse: typeof Fuse
  binding: FuseBinding
}

type NodeGypBuild = ((dir: string) => unknown) & { path: (dir: string) => string }

let loaded: LoadedFuse | undefined

/**
 * Loads fuse-native, turning a missing libfuse.so.2 into a MountError, and looks at the addon it loaded
 * (the same file: node-gyp-build resolves fuse-native's folder the same way, and require caches it).
 */
export async function loadFuseNative (): Promise<LoadedFuse> {
  if (loaded !== undefined) return loaded
  let FuseClass: typeof Fuse
  try {
    const mod = await import('fuse-native')
    FuseClass = mod.default
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err)
    if (/libfuse\.so/.test(msg)) throw new MountError('libfuse.so.2 is missing: apt-get install -y libfuse2 fuse')
    throw new MountError(`cannot load fuse-native: ${msg.split('\n')[0]}`)
  }
  let binding: FuseBinding
  try {
    const main = createRequire(import.meta.url).resolve('fuse-native')
    const dir = path.dirname(main)
    const ngb = createRequire(main)('node-gyp-build') as NodeGypBuild
    const raw = ngb(dir) as { syncmesh_patch?: unknown, syncmesh_utimensat?: unknown, syncmesh_take_ranges?: unknown, syncmesh_take_events?: unknown, syncmesh_order_try?: unknown, syncmesh_order_release?: unknown }
    const patch = typeof raw.syncmesh_patch === 'number' ? raw.syncmesh_patch : 0
    const utimensat = patch >= 1 && typeof raw.syncmesh_utimensat === 'function' ? raw.syncmesh_utimensat as NativeUtimensat : undefined
    const takeRanges = patch >= 4 && typeof raw.syncmesh_take_ranges === 'function' ? raw.syncmesh_take_ranges as NativeTakeRanges : undefined
    // (level 6 packs the notifications: an addon of level 5 is left to wait for JS, as at level 4)
    const takeEvents = patch >= 6 && typeof raw.syncmesh_take_events === 'function' ? raw.syncmesh_take_events as NativeTakeEvents : undefined
    const order = patch >= 5 && typeof raw.syncmesh_order_try === 'function' && typeof raw.syncmesh_order_release === 'function'
      ? { tryLock: raw.syncmesh_order_try as NativeOrder['tryLock'], release: raw.syncmesh_order_release as NativeOrder['release'] }
      : undefined
    binding = { file: ngb.path(dir), patch, utimensat, takeRanges, takeEvents, order }
  } catch (err) {
    throw new MountError(`cannot inspect fuse-native's addon: ${(err instanceof Error ? err.message : String(err)).split('\n')[0]}`)
  }
  loaded = { Fuse: FuseClass, binding }
  return loaded
}

/** Throws MountError when fusermount (Debian package fuse) is missing: it is needed to unmount. */
export async function checkFusermount (): Promise<void> {
  const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':').concat(['/usr/bin', '/bin'])
  for (const d of dirs) {
    try {
      await fsp.access(path.join(d, 'fusermount'), constants.X_OK)
      return
    } catch {}
  }
  throw new MountError('fusermount is missing: apt-get install -y libfuse2 fuse')
}
