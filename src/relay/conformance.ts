/**
 * The one conformance suite every {@link CloudBackend} passes (run from `backends.test.ts`
 * against `folder` and against `drive` on the fake Drive server).
 *
 * A backend is driven through a {@link BackendHarness}: the harness opens backend instances over
 * one shared remote state (a new instance = a restarted relay) and lets the suite look at the
 * storage the way a reader of it would, without going through the backend.
 */
import { Readable } from 'node:stream'
import { createHash, randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BackendError, MANIFEST_NAME, createManifest, decodeManifest, sha256Hex } from './backend.js'
import type { CloudBackend, ManifestEntry, SetRef, UploadSource } from './backend.js'

export interface BackendHarness {
  /** A new backend instance over the shared remote state (each call: a restarted relay). */
  open: () => CloudBackend
  /** Names visible at the top of the backend (published sets; hidden staging not included). */
  listVisible: () => Promise<string[]>
  /** Relative paths of every file in the published set folder `name` (manifest included). */
  listSet: (name: string) => Promise<string[]>
  /** Bytes of a file in a published set folder, or undefined. */
  read: (setName: string, path: string) => Promise<Buffer | undefined>
  /** File contents (set files and manifests) the storage has received so far. */
  uploads: () => number
  /** Releases everything (servers, temp folders). */
  close: () => Promise<void>
}

/** An in-memory file to upload; counts the bytes the backend reads from it. */
export class MemorySource implements UploadSource {
  readonly size: number
  readonly sha256: string
  bytesRead = 0
  opens = 0
  constructor (readonly data: Buffer, sha256?: string) {
    this.size = data.length
    this.sha256 = sha256 ?? sha256Hex(data)
  }

  async open (offset: number): Promise<Readable> {
    this.opens++
    const data = this.data
    const count = (n: number): void => { this.bytesRead += n }
    return Readable.from((function * () {
      for (let i = offset; i < data.length; i += 64 * 1024) {
        const chunk = data.subarray(i, Math.min(data.length, i + 64 * 1024))
        count(chunk.length)
        yield chunk
      }
    })(), { objectMode: false })
  }
}

export interface TestFile { path: string, src: MemorySource }

/** Deterministic-size files with random content: empty, 1 byte, 300 KiB, 20 MiB, nested and unicode paths. */
export function mixedFiles (bigSize = 20 * 1024 * 1024): TestFile[] {
  const f = (path: string, size: number): TestFile => ({ path, src: new MemorySource(randomBytes(size)) })
  return [
    f('empty.bin', 0),
    f('one.txt', 1),
    f('dir/mid.dat', 300 * 1024),
    f('big/deep/nested/large.bin', bigSize),
    f('ünïcødé/日本語 ファイル.txt', 1234),
    f('dir/sub/with spaces & \'quotes\'.txt', 77),
    f('emoji 🎉/x', 5)
  ]
}

function entries (files: readonly TestFile[]): ManifestEntry[] {
  return files.map(f => ({ path: f.path, size: f.src.size, sha256: f.src.sha256 }))
}

async function uploadAll (b: CloudBackend, set: SetRef, files: readonly TestFile[]): Promise<string[]> {
  await b.beginSet(set)
  const out: string[] = []
  for (const f of files) out.push(await b.putFile(set, f.path, f.src))
  return out
}

function bytesRead (files: readonly TestFile[]): number {
  return files.reduce((n, f) => n + f.src.bytesRead, 0)
}

async function rejection (p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

/**
 * Registers the conformance tests for one backend. `makeHarness` is called before each test and
 * the harness closed after it (also when the test fails).
 */
export function backendConformance (label: string, makeHarness: () => Promise<BackendHarness>): void {
  describe(`CloudBackend conformance: ${label}`, () => {
    let h: BackendHarness
    let set: SetRef
    beforeEach(async () => {
      h = await makeHarness()
      set = { id: `set-${randomBytes(4).toString('hex')}`, name: 'Holiday photos 2024' }
    })
    afterEach(async () => { await h.close() })

    it('uploads a mixed set, publishes it whole with its manifest, invisible before', async () => {
      const files = mixedFiles()
      const b = h.open()
      expect(await b.isPublished(set)).toBe(false)
      const t0 = performance.now()
      expect(await uploadAll(b, set, files)).toEqual(files.map(() => 'uploaded'))
      const ms = performance.now() - t0
      const total = files.reduce((n, f) => n + f.src.size, 0)
      console.log(`${label}: uploaded ${(total / 1048576).toFixed(1)} MiB in ${ms.toFixed(0)} ms (${(total / 1048576 / (ms / 1000)).toFixed(0)} MiB/s)`)

      // staged, not visible
      expect(await h.listVisible()).not.toContain(set.name)
      expect(await b.isPublished(set)).toBe(false)

      const manifest = createManifest(set, entries(files))
      await b.publishSet(set, manifest)
      expect(await h.listVisible()).toContain(set.name)
      expect(await b.isPublished(set)).toBe(true)
      expect(await h.open().isPublished(set)).toBe(true)

      expect((await h.listSet(set.name)).sort()).toEqual([...files.map(f => f.path), MANIFEST_NAME].sort())
      const m = decodeManifest(await h.read(set.name, MANIFEST_NAME) ?? Buffer.alloc(0))
      expect(m).toEqual({ syncmesh: 1, id: set.id, name: set.name, files: [...entries(files)].sort((a, b) => a.path < b.path ? -1 : 1) })
      for (const f of files) {
        const got = await h.read(set.name, f.path)
        expect(got, f.path).toBeDefined()
        expect(createHash('sha256').update(got ?? Buffer.alloc(0)).digest('hex'), f.path).toBe(f.src.sha256)
      }
    })

    it('re-running the whole upload after publish uploads nothing twice', async () => {
      const files = mixedFiles(3 * 1024 * 1024)
      const b = h.open()
      await uploadAll(b, set, files)
      await b.publishSet(set, createManifest(set, entries(files)))
      const uploads = h.uploads()
      const read = bytesRead(files)

      // the same relay, and a restarted one
      for (const again of [b, h.open()]) {
        expect(await again.isPublished(set)).toBe(true)
        expect(await uploadAll(again, set, files)).toEqual(files.map(() => 'exists'))
        await again.publishSet(set, createManifest(set, entries(files)))
      }
      expect(h.uploads()).toBe(uploads)
      expect(bytesRead(files)).toBe(read)
      expect((await h.listVisible()).filter(n => n === set.name)).toHaveLength(1)
      expect((await h.listSet(set.name)).sort()).toEqual([...files.map(f => f.path), MANIFEST_NAME].sort())
    })

    it('continues a partial upload without uploading any file twice', async () => {
      const files = mixedFiles(3 * 1024 * 1024)
      await uploadAll(h.open(), set, files.slice(0, 4))
      expect(h.uploads()).toBe(4)
      expect(await h.listVisible()).not.toContain(set.name)

      const b = h.open() // a restarted relay runs the whole set again
      const results = await uploadAll(b, set, files)
      expect(results).toEqual(files.map((_, i) => i < 4 ? 'exists' : 'uploaded'))
      await b.publishSet(set, createManifest(set, entries(files)))
      expect(h.uploads()).toBe(files.length + 1) // every file once, and the manifest
      expect((await h.listSet(set.name)).sort()).toEqual([...files.map(f => f.path), MANIFEST_NAME].sort())
    })

    it('refuses to publish an incomplete set and keeps it invisible', async () => {
      const files = mixedFiles(1024)
      const b = h.open()
      await uploadAll(b, set, files.slice(1))
      const err = await rejection(b.publishSet(set, createManifest(set, entries(files))))
      expect(err).toBeInstanceOf(BackendError)
      expect((err as BackendError).fatal).toBe(true)
      expect((err as BackendError).reason).toBe('incompleteSet')
      expect((err as BackendError).message).toContain(files[0].path)
      expect(await b.isPublished(set)).toBe(false)
      expect(await h.listVisible()).not.toContain(set.name)
      // completing it then publishing works
      expect(await b.putFile(set, files[0].path, files[0].src)).toBe('uploaded')
      await b.publishSet(set, createManifest(set, entries(files)))
      expect(await b.isPublished(set)).toBe(true)
    })

    it('publishes exactly the manifest: staged files not in it are left out', async () => {
      const files = mixedFiles(1024)
      const b = h.open()
      await b.beginSet(set)
      const stale = new MemorySource(randomBytes(10)) // another version of a path of the set, staged first
      expect(await b.putFile(set, files[1].path, stale)).toBe('uploaded')
      await uploadAll(b, set, files)
      const extra = new MemorySource(randomBytes(10))
      await b.putFile(set, 'dir/stray.tmp', extra)
      await b.publishSet(set, createManifest(set, entries(files)))
      expect((await h.listSet(set.name)).sort()).toEqual([...files.map(f => f.path), MANIFEST_NAME].sort())
      expect(sha256Hex(await h.read(set.name, files[1].path) ?? Buffer.alloc(0))).toBe(files[1].src.sha256)
    })

    it('refuses content that does not match its declared hash', async () => {
      const b = h.open()
      await b.beginSet(set)
      const liar = new MemorySource(Buffer.from('not what you think'), sha256Hex('something else'))
      const err = await rejection(b.putFile(set, 'liar.txt', liar))
      expect(err).toBeInstanceOf(BackendError)
      expect((err as BackendError).fatal).toBe(true)
      expect((err as BackendError).reason).toBe('checksumMismatch')
      // nothing stays behind that a retry would take for the file
      const honest = new MemorySource(Buffer.from('something else'))
      expect(await b.putFile(set, 'liar.txt', honest)).toBe('uploaded')
    })

    it('refuses a set name that is already taken by another folder', async () => {
      const files = mixedFiles(10)
      const other = { id: `${set.id}-other`, name: set.name }
      const b = h.open()
      await uploadAll(b, other, files)
      await b.publishSet(other, createManifest(other, entries(files)))
      await uploadAll(b, set, files)
      const err = await rejection(b.publishSet(set, createManifest(set, entries(files))))
      expect((err as BackendError).reason).toBe('nameConflict')
      expect((err as BackendError).fatal).toBe(true)
      expect(await b.isPublished(set)).toBe(false)
      expect(await b.isPublished(other)).toBe(true)
    })

    it('rejects bad paths, names and ids as fatal bad requests', async () => {
      const b = h.open()
      const src = new MemorySource(Buffer.from('x'))
      for (const path of ['../escape', '/abs', 'a//b', 'a/./b', '', MANIFEST_NAME, 'nul\0byte']) {
        const err = await rejection(b.putFile(set, path, src))
        expect(err, path).toBeInstanceOf(BackendError)
        expect((err as BackendError).reason, path).toBe('badRequest')
      }
      for (const bad of [{ id: '../x', name: 'ok' }, { id: 'ok', name: '.hidden' }, { id: 'ok', name: 'a/b' }]) {
        const err = await rejection(b.beginSet(bad))
        expect((err as BackendError).reason, JSON.stringify(bad)).toBe('badRequest')
      }
    })

    it('reports progress up to the file size, and stops when aborted', async () => {
      const b = h.open()
      await b.beginSet(set)
      const src = new MemorySource(randomBytes(600 * 1024))
      const seen: number[] = []
      expect(await b.putFile(set, 'p.bin', src, { onProgress: n => seen.push(n) })).toBe('uploaded')
      expect(seen.at(-1)).toBe(src.size)
      expect(seen.every(n => n >= 0 && n <= src.size)).toBe(true)

      const ac = new AbortController()
      ac.abort(new Error('stop now'))
      const err = await rejection(b.putFile(set, 'q.bin', new MemorySource(randomBytes(10)), { signal: ac.signal }))
      expect((err as Error).message).toBe('stop now')
    })
  })
}
