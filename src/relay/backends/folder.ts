/**
 * The `folder` backend: sets published into a local folder (the embedded default, and a real-I/O
 * test double for the relay).
 *
 * Layout under `root`:
 *
 * ```
 *   ROOT/<set name>/…                  published sets (manifest .syncmesh-set.json inside)
 *   ROOT/.staging/<set id>/…           a set being uploaded (exactly the files of the set)
 *   ROOT/.staging/<set id>.meta/<h>    one marker per stored file ({path,size,sha256}; h = sha256(path))
 *   ROOT/.staging/tmp/…                files being written (renamed into place when complete)
 * ```
 *
 * A file is written to `tmp`, hashed on the way, fsynced and renamed into the staging folder;
 * then its marker is written. A marker (or, after a crash between rename and marker, a matching
 * hash of the staged file) makes a repeated `putFile` answer `'exists'`. `publishSet` writes the
 * manifest into the staging folder and renames that folder to `ROOT/<set name>`: one rename on
 * one file system, so the set appears whole.
 */
import { createWriteStream } from 'node:fs'
import { mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { createHash, randomBytes } from 'node:crypto'
import { dirname, join } from 'node:path'
import { once } from 'node:events'
import {
  BackendError, MANIFEST_NAME, asChunks, checkManifest, closeSource, decodeManifest, encodeManifest,
  resolveRetryPolicy, retrying, sha256Hex, validatePath, validateSet, validateSource
} from '../backend.js'
import type {
  BackendFeatures, CloudBackend, PutOptions, PutResult, ResolvedRetryPolicy, RetryPolicy, SetManifest,
  SetRef, UploadSource
} from '../backend.js'

export interface FolderBackendInit {
  /** Folder that receives the published sets; created if missing. */
  root: string
  /**
   * fsync files and folders before renames, so a power loss cannot publish a set with holes.
   * @default true
   */
  fsync?: boolean
  /** Retry of transient file-system errors (EAGAIN, EMFILE, EBUSY, source read errors). */
  retry?: RetryPolicy
}

const STAGING = '.staging'

interface Marker { path: string, size: number, sha256: string }

/**
 * The one retry decision of the folder backend: which file-system failures are worth retrying.
 */
export function classifyFolderError (err: unknown): BackendError {
  if (err instanceof BackendError) return err
  const code = (err as { code?: unknown } | null)?.code
  const msg = err instanceof Error ? err.message : String(err)
  switch (code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new BackendError(`folder backend is full: ${msg}`, { fatal: true, reason: 'storageQuotaExceeded', cause: err })
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new BackendError(`folder backend not writable: ${msg}`, { fatal: true, reason: 'insufficientPermissions', cause: err })
    case 'ENAMETOOLONG':
    case 'EINVAL':
    case 'ENOTDIR':
    case 'EISDIR':
      return new BackendError(`folder backend rejected a path: ${msg}`, { fatal: true, reason: 'badRequest', cause: err })
    default:
      // EAGAIN, EMFILE, ENFILE, EBUSY, EIO, ENOENT races, and errors of the source stream
      return new BackendError(`folder backend: ${msg}`, { fatal: false, reason: typeof code === 'string' ? code : 'ioError', cause: err })
  }
}

export class FolderBackend implements CloudBackend {
  readonly name = 'folder'
  readonly features: BackendFeatures = { resumable: false, atomicSetPublish: true, serverSideMove: true }
  /** Counters (files and bytes actually written), for metrics and tests. */
  readonly stats = { filesWritten: 0, bytesWritten: 0, manifestsWritten: 0 }

  private readonly root: string
  private readonly fsync: boolean
  private readonly retry: ResolvedRetryPolicy

  constructor (init: FolderBackendInit) {
    this.root = init.root
    this.fsync = init.fsync ?? true
    this.retry = resolveRetryPolicy(init.retry)
  }

  /** Every file-system operation of a public method goes through here (the one retry loop). */
  private async call<T>(what: string, op: (attempt: number) => Promise<T>, signal?: AbortSignal): Promise<T> {
    return await retrying(what, op, classifyFolderError, this.retry, signal)
  }

  private stagingDir (set: SetRef): string { return join(this.root, STAGING, set.id) }
  private metaDir (set: SetRef): string { return join(this.root, STAGING, `${set.id}.meta`) }
  private tmpDir (): string { return join(this.root, STAGING, 'tmp') }
  private publishedDir (set: SetRef): string { return join(this.root, set.name) }
  private markerFile (set: SetRef, path: string): string { return join(this.metaDir(set), sha256Hex(path) + '.json') }

  async beginSet (set: SetRef, opts: { signal?: AbortSignal } = {}): Promise<void> {
    validateSet(set)
    await this.call('beginSet', async () => {
      if (await this.readPublishedManifest(set) !== undefined) return
      await mkdir(this.stagingDir(set), { recursive: true })
      await mkdir(this.metaDir(set), { recursive: true })
      await mkdir(this.tmpDir(), { recursive: true })
    }, opts.signal)
  }

  async putFile (set: SetRef, path: string, src: UploadSource, opts: PutOptions = {}): Promise<PutResult> {
    validateSet(set)
    const segs = validatePath(path)
    validateSource(src)
    return await this.call('putFile', async () => {
      if (await this.stagedMatches(set, path, src)) return 'exists'
      const published = await this.readPublishedManifest(set)
      if (published !== undefined) {
        if (published.files.some(f => f.path === path && f.sha256 === src.sha256)) return 'exists'
        throw new BackendError(`set ${set.id} is already published without ${path}@${src.sha256.slice(0, 12)}`, { fatal: true, reason: 'alreadyPublished' })
      }
      await mkdir(this.stagingDir(set), { recursive: true })
      await mkdir(this.metaDir(set), { recursive: true })
      await mkdir(this.tmpDir(), { recursive: true })
      const tmp = join(this.tmpDir(), `${set.id}-${randomBytes(8).toString('hex')}`)
      try {
        await this.writeVerified(tmp, src, opts)
        const dest = join(this.stagingDir(set), ...segs)
        await mkdir(dirname(dest), { recursive: true })
        await rename(tmp, dest)
        if (this.fsync) await fsyncDir(dirname(dest))
      } catch (err) {
        await rm(tmp, { force: true })
        throw err
      }
      await this.writeMarker(set, { path, size: src.size, sha256: src.sha256 })
      this.stats.filesWritten++
      this.stats.bytesWritten += src.size
      return 'uploaded'
    }, opts.signal)
  }

  async publishSet (set: SetRef, manifest: SetManifest, opts: { signal?: AbortSignal } = {}): Promise<void> {
    checkManifest(set, manifest)
    await this.call('publishSet', async () => {
      if (await this.readPublishedManifest(set) !== undefined) return
      const target = this.publishedDir(set)
      if (await exists(target)) {
        throw new BackendError(`cannot publish set ${set.id}: ${set.name} already exists in ${this.root}`, { fatal: true, reason: 'nameConflict' })
      }
      const staging = this.stagingDir(set)
      for (const f of manifest.files) {
        if (!await this.stagedMatches(set, f.path, f)) {
          throw new BackendError(`cannot publish set ${set.id}: ${f.path} is not stored`, { fatal: true, reason: 'incompleteSet' })
        }
      }
      // the published folder holds exactly the manifest's files
      const wanted = new Set(manifest.files.map(f => f.path))
      await pruneExtras(staging, '', wanted)
      const tmp = join(staging, `${MANIFEST_NAME}.tmp`)
      await this.writeFileDurably(tmp, encodeManifest(manifest))
      await rename(tmp, join(staging, MANIFEST_NAME))
      this.stats.manifestsWritten++
      if (this.fsync) await fsyncDir(staging)
      try {
        await rename(staging, target)
      } catch (err) {
        const code = (err as { code?: unknown }).code
        if ((code === 'ENOTEMPTY' || code === 'EEXIST') && await this.readPublishedManifest(set) === undefined) {
          throw new BackendError(`cannot publish set ${set.id}: ${set.name} already exists in ${this.root}`, { fatal: true, reason: 'nameConflict', cause: err })
        }
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err
      }
      if (this.fsync) await fsyncDir(this.root)
      await rm(this.metaDir(set), { recursive: true, force: true })
      // temp files a crashed putFile of this set left behind
      for (const name of await readdir(this.tmpDir()).catch(() => [] as string[])) {
        if (name.startsWith(`${set.id}-`)) await rm(join(this.tmpDir(), name), { force: true })
      }
    }, opts.signal)
  }

  async isPublished (set: SetRef, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    validateSet(set)
    return await this.call('isPublished', async () => await this.readPublishedManifest(set) !== undefined, opts.signal)
  }

  /** The published manifest of `set`, or undefined when `ROOT/<name>` holds no manifest of this set id. */
  private async readPublishedManifest (set: SetRef): Promise<SetManifest | undefined> {
    let bytes: Buffer
    try {
      bytes = await readFile(join(this.publishedDir(set), MANIFEST_NAME))
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined
      throw err
    }
    const m = decodeManifest(bytes)
    return m.id === set.id ? m : undefined
  }

  /** Whether the staging folder holds `path` with this content (marker, or a hash after a crash). */
  private async stagedMatches (set: SetRef, path: string, want: { size: number, sha256: string }): Promise<boolean> {
    const file = join(this.stagingDir(set), ...path.split('/'))
    const st = await stat(file).catch((err: { code?: unknown }) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined
      throw err
    })
    if (st === undefined || !st.isFile() || st.size !== want.size) return false
    const marker = await readFile(this.markerFile(set, path), 'utf8').then(s => JSON.parse(s) as Marker, () => undefined)
    if (marker !== undefined && marker.path === path) return marker.sha256 === want.sha256 && marker.size === want.size
    // renamed into place but the marker was never written: hash the staged file once
    const h = createHash('sha256')
    const fh = await open(file, 'r')
    try {
      for await (const chunk of fh.createReadStream({ autoClose: false })) h.update(chunk as Buffer)
    } finally {
      await fh.close()
    }
    if (h.digest('hex') !== want.sha256) return false
    await this.writeMarker(set, { path, size: want.size, sha256: want.sha256 })
    return true
  }

  private async writeMarker (set: SetRef, m: Marker): Promise<void> {
    const file = this.markerFile(set, m.path)
    const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`
    await writeFile(tmp, JSON.stringify(m))
    await rename(tmp, file)
  }

  private async writeFileDurably (file: string, data: Uint8Array): Promise<void> {
    const fh = await open(file, 'w')
    try {
      await fh.writeFile(data)
      if (this.fsync) await fh.sync()
    } finally {
      await fh.close()
    }
  }

  /** Streams `src` into `file`, hashing and counting; fatal error when the content is not as declared. */
  private async writeVerified (file: string, src: UploadSource, opts: PutOptions): Promise<void> {
    const h = createHash('sha256')
    let n = 0
    const out = createWriteStream(file, { flags: 'w' })
    const opened = once(out, 'open')
    const stream = await src.open(0)
    try {
      await opened
      for await (const chunk of asChunks(stream)) {
        opts.signal?.throwIfAborted()
        h.update(chunk)
        n += chunk.byteLength
        if (n > src.size) break
        if (!out.write(chunk)) await once(out, 'drain')
        opts.onProgress?.(n)
      }
    } catch (err) {
      out.destroy()
      throw err
    } finally {
      closeSource(stream)
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => err == null ? resolve() : reject(err)))
    if (this.fsync) {
      const fh = await open(file, 'r+')
      try { await fh.sync() } finally { await fh.close() }
    }
    const sha = h.digest('hex')
    if (n !== src.size || sha !== src.sha256) {
      throw new BackendError(`source content does not match: got ${n} bytes sha256 ${sha.slice(0, 12)}, expected ${src.size} bytes ${src.sha256.slice(0, 12)}`, { fatal: true, reason: 'checksumMismatch' })
    }
    if (src.size === 0) opts.onProgress?.(0)
  }
}

async function exists (p: string): Promise<boolean> {
  return await stat(p).then(() => true, (err: { code?: unknown }) => {
    if (err.code === 'ENOENT') return false
    throw err
  })
}

/** Removes files under `dir` whose set path is not in `wanted`, and folders left empty. */
async function pruneExtras (dir: string, prefix: string, wanted: ReadonlySet<string>): Promise<boolean> {
  let keep = false
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const rel = prefix === '' ? e.name : `${prefix}/${e.name}`
    const full = join(dir, e.name)
    if (e.isDirectory()) {
      if (await pruneExtras(full, rel, wanted)) keep = true
      else await rm(full, { recursive: true, force: true })
    } else if (wanted.has(rel)) {
      keep = true
    } else {
      await rm(full, { force: true })
    }
  }
  return keep
}

async function fsyncDir (dir: string): Promise<void> {
  const fh = await open(dir, 'r')
  try { await fh.sync() } finally { await fh.close() }
}

/** Compile-time check that the class fits the interface. */
export const folderBackendFactory = ((init: FolderBackendInit) => new FolderBackend(init)) satisfies (init: FolderBackendInit) => CloudBackend
