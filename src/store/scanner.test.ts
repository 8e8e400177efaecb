import { createHash } from 'node:crypto'
import { appendFileSync, readFileSync, writeFileSync, type FSWatcher } from 'node:fs'
import { Worker } from 'node:worker_threads'
import { chmod, mkdir, mkdtemp, rename, rm, symlink, unlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { hashFile } from './blocks.js'
import { DataFolder } from './datafolder.js'
import { HybridClock } from './hlc.js'
import { Scanner } from './scanner.js'
import { Store } from './store.js'
import type { StoredRecord } from './types.js'
import { compareVectors } from './version.js'

const A = 'aaaaaaaaaaaaa'

let tmp: string
let data: DataFolder
let store: Store
let scanner: Scanner
let locals: StoredRecord[]
let clockT: number

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'syncmesh-scanner-'))
  data = new DataFolder(join(tmp, 'data'))
  await data.init()
  clockT = Date.now()
  // the clock advances 1 ms per reading, so every version gets a distinct HLC wall time
  store = new Store({ path: join(tmp, 'db'), nodeId: A, data, clock: new HybridClock({ now: () => clockT++ }) })
  await store.open()
  locals = []
  store.on('local', (recs) => locals.push(...recs))
})

afterEach(async () => {
  try {
    await scanner?.stop()
    await store.close()
  } finally {
    await rm(tmp, { recursive: true, force: true })
  }
})

function abs (rel: string): string {
  return data.abs(rel)
}

async function write (rel: string, content: string | Buffer): Promise<void> {
  await writeFile(abs(rel), content)
}

async function live (): Promise<Map<string, StoredRecord>> {
  const out = new Map<string, StoredRecord>()
  for await (const r of store.all()) if (!r.deleted) out.set(r.path, r)
  return out
}

async function contentHash (rel: string): Promise<string> {
  return (await hashFile(abs(rel))).hash
}

async function waitFor<T> (fn: () => Promise<T | undefined | null | false>, timeoutMs = 2000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v != null && v !== false) return v
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('Scanner.scanAll (watch: false)', () => {
  beforeEach(() => {
    scanner = new Scanner({ store, data }, { watch: false })
  })

  it('records new files, directories and symlinks', async () => {
    await write('a.txt', 'alpha')
    await mkdir(abs('d/e'), { recursive: true })
    await write('d/b.bin', Buffer.alloc(300 * 1024, 1))
    await write('d/e/empty', '')
    await symlink('d/b.bin', abs('link'))
    const n = await scanner.scanAll()
    expect(n).toBe(6)
    const recs = await live()
    expect([...recs.keys()].sort()).toEqual(['a.txt', 'd', 'd/b.bin', 'd/e', 'd/e/empty', 'link'])
    expect(recs.get('a.txt')).toMatchObject({ type: 'file', size: 5, hash: await contentHash('a.txt'), have: true })
    expect(recs.get('d/b.bin')).toMatchObject({ type: 'file', size: 300 * 1024, blockSize: 128 * 1024 })
    expect(recs.get('d/b.bin')!.blocks).toHaveLength(3)
    expect(recs.get('d/e/empty')).toMatchObject({ type: 'file', size: 0, blocks: [] })
    expect(recs.get('d')).toMatchObject({ type: 'dir', size: 0, mtimeMs: 0, hash: '' })
    expect(recs.get('link')).toMatchObject({
      type: 'symlink',
      target: 'd/b.bin',
      size: 0,
      hash: createHash('sha256').update('d/b.bin').digest('hex')
    })
    // every record is a write by this node, each with its own counter from the node's one
    // running counter (never issued twice, whatever the path)
    for (const r of recs.values()) expect(Object.keys(r.version.vv)).toEqual([A])
    expect([...recs.values()].map((r) => r.version.vv[A]).sort((x, y) => x - y)).toEqual([1, 2, 3, 4, 5, 6])
    expect(locals).toHaveLength(6)
  })

  it('records nothing on a second scan without changes', async () => {
    await write('a.txt', 'alpha')
    await mkdir(abs('d'))
    await write('d/b.txt', 'beta')
    await symlink('a.txt', abs('d/link'))
    await scanner.scanAll()
    const seq = store.seq
    locals.length = 0
    expect(await scanner.scanAll()).toBe(0)
    expect(await scanner.scanAll()).toBe(0)
    expect(store.seq).toBe(seq)
    expect(locals).toEqual([])
  })

  it('records a modification (content and size change)', async () => {
    await write('a.txt', 'alpha')
    await scanner.scanAll()
    const before = (await store.get('a.txt'))!
    await write('a.txt', 'alpha, edited')
    expect(await scanner.scanAll()).toBe(1)
    const after = (await store.get('a.txt'))!
    expect(after.size).toBe(13)
    expect(after.hash).toBe(await contentHash('a.txt'))
    expect(after.hash).not.toBe(before.hash)
    expect(after.version.vv).toEqual({ [A]: 2 })
    expect(after.seq).toBeGreaterThan(before.seq)
  })

  it('records a same-size modification by its mtime', async () => {
    await write('a.txt', 'aaaa')
    const t1 = new Date('2024-01-01T00:00:00Z')
    await utimes(abs('a.txt'), t1, t1)
    await scanner.scanAll()
    await write('a.txt', 'bbbb')
    const t2 = new Date('2024-01-01T00:00:05Z')
    await utimes(abs('a.txt'), t2, t2)
    expect(await scanner.scanAll()).toBe(1)
    const rec = (await store.get('a.txt'))!
    expect(rec.hash).toBe(await contentHash('a.txt'))
    expect(rec.mtimeMs).toBe(t2.getTime())
  })

  it('records a same-size, same-mtime atomic replace by its inode', async () => {
    await write('a.txt', 'aaaa')
    const t = new Date('2024-01-01T00:00:00Z')
    await utimes(abs('a.txt'), t, t)
    await scanner.scanAll()
    await write('tmp-save', 'bbbb')
    await utimes(abs('tmp-save'), t, t)
    await rename(abs('tmp-save'), abs('a.txt'))
    await scanner.scanAll()
    expect((await store.get('a.txt'))!.hash).toBe(await contentHash('a.txt'))
  })

  it('records a delete as a tombstone', async () => {
    await write('a.txt', 'alpha')
    await write('keep.txt', 'kept')
    await scanner.scanAll()
    const before = (await store.get('a.txt'))!
    await unlink(abs('a.txt'))
    expect(await scanner.scanAll()).toBe(1)
    expect(await store.get('a.txt')).toMatchObject({ deleted: true, disk: null, have: true, hash: '', blocks: [], size: 0 })
    // the node's third write (two files, then the delete): on top of the file's version
    expect((await store.get('a.txt'))!.version.vv).toEqual({ [A]: 3 })
    expect(compareVectors((await store.get('a.txt'))!.version.vv, before.version.vv)).toBe('after')
    expect(await store.get('keep.txt')).toMatchObject({ deleted: false })
    expect(await scanner.scanAll()).toBe(0)
  })

  it('records a removed directory tree: children and the directory', async () => {
    await mkdir(abs('d/e'), { recursive: true })
    await write('d/e/f.txt', 'f')
    await scanner.scanAll()
    locals.length = 0
    await rm(abs('d'), { recursive: true })
    expect(await scanner.scanAll()).toBe(3)
    for (const p of ['d', 'd/e', 'd/e/f.txt']) expect(await store.get(p)).toMatchObject({ deleted: true })
    // children's tombstones come before their directory's
    const order = locals.map((r) => r.path)
    expect(order.indexOf('d/e/f.txt')).toBeLessThan(order.indexOf('d/e'))
    expect(order.indexOf('d/e')).toBeLessThan(order.indexOf('d'))
  })

  it('records mkdir of an empty directory', async () => {
    await scanner.scanAll()
    await mkdir(abs('newdir'))
    expect(await scanner.scanAll()).toBe(1)
    expect(await store.get('newdir')).toMatchObject({ type: 'dir', deleted: false })
    // a file added inside changes the directory mtime but the directory is not re-recorded
    await write('newdir/x', 'x')
    expect(await scanner.scanAll()).toBe(1)
    expect((await store.get('newdir'))!.version.vv).toEqual({ [A]: 1 })
  })

  it('records a new symlink and a changed symlink target', async () => {
    await symlink('one', abs('l'))
    await scanner.scanAll()
    expect(await store.get('l')).toMatchObject({ type: 'symlink', target: 'one' })
    await unlink(abs('l'))
    await symlink('two/longer', abs('l'))
    expect(await scanner.scanAll()).toBe(1)
    expect(await store.get('l')).toMatchObject({ type: 'symlink', target: 'two/longer', hash: createHash('sha256').update('two/longer').digest('hex') })
  })

  it('records chmod of a file and of a directory', async () => {
    await write('script.sh', '#!/bin/sh\n')
    await chmod(abs('script.sh'), 0o644)
    await mkdir(abs('d'), { mode: 0o755 })
    await chmod(abs('d'), 0o755)
    await scanner.scanAll()
    expect((await store.get('script.sh'))!.mode).toBe(0o644)
    const before = [(await store.get('script.sh'))!, (await store.get('d'))!]
    await chmod(abs('script.sh'), 0o755)
    await chmod(abs('d'), 0o700)
    expect(await scanner.scanAll()).toBe(2)
    const after = [(await store.get('script.sh'))!, (await store.get('d'))!]
    expect(after[0]).toMatchObject({ mode: 0o755 })
    expect(after[1]).toMatchObject({ mode: 0o700 })
    // each chmod is a new write by this node on top of the path's previous version, with
    // the node's next counters (3 and 4: the first scan issued 1 and 2)
    for (let i = 0; i < 2; i++) {
      expect(Object.keys(after[i].version.vv)).toEqual([A])
      expect(compareVectors(after[i].version.vv, before[i].version.vv)).toBe('after')
    }
    expect(after.map((r) => r.version.vv[A]).sort((x, y) => x - y)).toEqual([3, 4])
  })

  it('records a rename as the new path plus a tombstone at the old one', async () => {
    await write('old.txt', 'moving content')
    await scanner.scanAll()
    const old = (await store.get('old.txt'))!
    await rename(abs('old.txt'), abs('new.txt'))
    expect(await scanner.scanAll()).toBe(2)
    expect(await store.get('old.txt')).toMatchObject({ deleted: true })
    const moved = (await store.get('new.txt'))!
    expect(moved).toMatchObject({ deleted: false, hash: old.hash, blocks: old.blocks })
    // the content is found at the new path
    expect(await store.blockSources(old.blocks[0])).toEqual([{ path: 'new.txt', offset: 0 }])
  })

  it('records a directory rename with its contents', async () => {
    await mkdir(abs('src'))
    await write('src/a', 'a')
    await scanner.scanAll()
    await rename(abs('src'), abs('dst'))
    expect(await scanner.scanAll()).toBe(4)
    expect(await store.get('src')).toMatchObject({ deleted: true })
    expect(await store.get('src/a')).toMatchObject({ deleted: true })
    expect(await store.get('dst')).toMatchObject({ deleted: false, type: 'dir' })
    expect(await store.get('dst/a')).toMatchObject({ deleted: false, type: 'file' })
  })

  it('ignores the .syncmesh folder', async () => {
    await write('.syncmesh/tmp/partial.part', 'partial download')
    await mkdir(abs('.syncmesh/other'), { recursive: true })
    await write('visible', 'v')
    expect(await scanner.scanAll()).toBe(1)
    expect([...(await live()).keys()]).toEqual(['visible'])
    // a nested folder that is merely named .syncmesh is ordinary data
    await mkdir(abs('sub/.syncmesh'), { recursive: true })
    await write('sub/.syncmesh/f', 'f')
    await scanner.scanAll()
    expect(await store.get('sub/.syncmesh/f')).toMatchObject({ type: 'file' })
  })

  it('skips names the mesh cannot carry and says so', async () => {
    await write('bad\\name', 'x')
    await write('good', 'y')
    expect(await scanner.scanAll()).toBe(1)
    expect(await store.get('bad\\name')).toBeUndefined()
    expect(scanner.lastError).toMatch(/skipped/)
  })

  it('scanPaths records only the given paths, and the subtree of a new directory', async () => {
    await write('a', 'a')
    await write('b', 'b')
    await mkdir(abs('d/e'), { recursive: true })
    await write('d/e/f', 'f')
    expect(await scanner.scanPaths(['a', 'd'])).toBe(4)
    expect(await store.get('b')).toBeUndefined()
    expect(await store.get('d/e/f')).toMatchObject({ type: 'file' })
    await rm(abs('d'), { recursive: true })
    expect(await scanner.scanPaths(['d'])).toBe(3)
    expect(await store.get('d/e/f')).toMatchObject({ deleted: true })
  })

  it('leaves paths held by the node alone', async () => {
    await write('a', 'a')
    await scanner.scanAll()
    scanner.hold('a')
    await unlink(abs('a'))
    expect(await scanner.scanAll()).toBe(0)
    expect(await store.get('a')).toMatchObject({ deleted: false })
    scanner.release('a')
    expect(await scanner.scanAll()).toBe(1)
    expect(await store.get('a')).toMatchObject({ deleted: true })
  })

  it('a directory held by the node (the puller updating it) does not make its contents look deleted', async () => {
    await mkdir(abs('d/sub'), { recursive: true })
    await write('d/f.txt', 'f')
    await write('d/sub/g.txt', 'g')
    await scanner.scanAll()
    // the puller is applying a remote chmod of d when the periodic rescan runs
    scanner.hold('d')
    await scanner.scanAll()
    scanner.release('d')
    for (const p of ['d', 'd/f.txt', 'd/sub', 'd/sub/g.txt']) {
      expect(await store.get(p), p).toMatchObject({ deleted: false })
    }
  })
})

describe('Scanner with watch: true', () => {
  beforeEach(() => {
    scanner = new Scanner({ store, data }, { watch: true, settleMs: 20 })
  })

  it('records files that exist at start', async () => {
    await write('pre-existing', 'x')
    await scanner.start()
    expect(await store.get('pre-existing')).toMatchObject({ type: 'file' })
  })

  it('records a file written while running within about 2 s', async () => {
    await scanner.start()
    await write('hello.txt', 'hello from the watcher')
    const rec = await waitFor(async () => await store.get('hello.txt'))
    expect(rec).toMatchObject({ type: 'file', size: 22, hash: await contentHash('hello.txt') })
  })

  it('records a modification, a file in a new directory and a delete', async () => {
    await write('f', 'one')
    await scanner.start()
    await write('f', 'one, two')
    await waitFor(async () => (await store.get('f'))?.size === 8)
    await mkdir(abs('newdir/sub'), { recursive: true })
    await write('newdir/sub/g', 'g')
    await waitFor(async () => await store.get('newdir/sub/g'))
    await unlink(abs('f'))
    await waitFor(async () => (await store.get('f'))?.deleted === true)
    expect(await store.get('newdir')).toMatchObject({ type: 'dir' })
  })

  it('records small files written in a burst at once, each hashed once', async () => {
    await scanner.start()
    const names = Array.from({ length: 200 }, (_, i) => `burst-${i}`)
    // synchronous writes: the scanner (in this process) never sees a file half-written
    names.forEach((n, i) => { writeFileSync(abs(n), `content ${i}`) })
    await waitFor(async () => (await store.getMany(names)).every((r) => r != null), 10_000)
    expect(scanner.deferred).toBe(0)
    for (const r of await store.getMany(names)) expect(r?.version.vv[A]).toBeGreaterThan(0)
    // one version each: no file was recorded twice
    expect(locals.filter((r) => r.path.startsWith('burst-'))).toHaveLength(200)
  })

  it('records a burst of 2,500 new files (one settle window) in transactions of at most 1000, not in one', async () => {
    const groups: StoredRecord[][] = []
    store.on('local', (recs) => groups.push(recs))
    await scanner.start()
    const names = Array.from({ length: 2500 }, (_, i) => `many-${i}`)
    names.forEach((n, i) => { writeFileSync(abs(n), `content ${i}`) })
    await waitFor(async () => (await store.getMany(names)).every((r) => r != null), 20_000)
    expect(groups.length).toBeGreaterThanOrEqual(3)
    expect(Math.max(...groups.map((g) => g.length))).toBeLessThanOrEqual(1000)
    expect(groups.flat().filter((r) => r.path.startsWith('many-'))).toHaveLength(2500)
  })

  it('records a renamed directory of 1,500 files in one transaction: every new path with every tombstone', async () => {
    await mkdir(abs('tree'))
    for (let i = 0; i < 1500; i++) writeFileSync(abs(`tree/f${i}`), `file ${i}`)
    await scanner.start()
    const groups: StoredRecord[][] = []
    store.on('local', (recs) => groups.push(recs))
    await rename(abs('tree'), abs('moved'))
    await waitFor(async () => (await store.get('tree/f1499'))?.deleted === true && await store.get('moved/f1499'), 20_000)
    const one = groups.find((g) => g.some((r) => r.path === 'moved/f0'))!
    expect(one.some((r) => r.path === 'tree/f0' && r.deleted)).toBe(true)
    expect(one.filter((r) => r.path.startsWith('moved/') && !r.deleted)).toHaveLength(1500)
    expect(one.filter((r) => r.path.startsWith('tree/') && r.deleted)).toHaveLength(1500)
  })

  it('a large file still being written is hashed once it settles: one version, the final content', async () => {
    await scanner.stop()
    scanner = new Scanner({ store, data }, { watch: true, settleMs: 20, quietMs: 1000 })
    await scanner.start()
    const part = Buffer.alloc(300 * 1024, 7)
    // synchronous writes: each part lands whole before the scanner (in this process) looks
    writeFileSync(abs('growing.bin'), part)
    // the first part's event is seen (and left to settle) before the second part comes
    await waitFor(async () => scanner.deferred > 0)
    appendFileSync(abs('growing.bin'), part)
    const rec = await waitFor(async () => { const r = await store.get('growing.bin'); return r?.size === 600 * 1024 ? r : null }, 10_000)
    expect(rec.hash).toBe(await contentHash('growing.bin'))
    expect(locals.filter((r) => r.path === 'growing.bin')).toHaveLength(1)
  })

  it('does not record anything in .syncmesh', async () => {
    await scanner.start()
    await write('.syncmesh/tmp/x.part', 'partial')
    await write('marker', 'm')
    await waitFor(async () => await store.get('marker'))
    for await (const r of store.all()) expect(r.path.startsWith('.syncmesh')).toBe(false)
  })

  it('spaces periodic full scans out on a large folder, only while it watches every directory', async () => {
    await mkdir(abs('sub'))
    scanner = new Scanner({ store, data }, { watch: true, settleMs: 20, rescanIntervalMs: 60_000 })
    await scanner.start()
    expect(scanner.lastScanMs).toBeGreaterThan(0)
    expect(scanner.lastScanEntries).toBe(1)
    expect(scanner.rescanDelay()).toBe(60_000)
    // a scan of 200,000 entries: the next waits 1.5 ms for each
    scanner.lastScanEntries = 200_000
    expect(scanner.rescanDelay()).toBe(300_000)
    // a directory whose watch is lost: only a rescan sees changes there, at the usual period
    const watchers = (scanner as unknown as { watchers: Map<string, FSWatcher> }).watchers
    watchers.get('sub')!.emit('error', new Error('watch lost'))
    expect(scanner.rescanDelay()).toBe(60_000)
    // ... until that directory is gone
    await rm(abs('sub'), { recursive: true })
    await waitFor(async () => scanner.rescanDelay() === 300_000 ? true : null)
  })

  it('a burst of events that overflows the kernel\'s queue is followed by a full scan: no file is missed', async () => {
    const limit = Number.parseInt(readFileSync('/proc/sys/fs/inotify/max_queued_events', 'utf8'), 10)
    // two events a new file (create, write): enough files for more events than the queue holds
    const n = Math.ceil(limit / 2) + 2000
    await mkdir(abs('burst'))
    scanner = new Scanner({ store, data }, { watch: true, settleMs: 20, rescanIntervalMs: 3_600_000 })
    await scanner.start()
    // another thread creates the files while this one is held (nothing reads the kernel's
    // queue meanwhile: it fills up, and the events past its limit are dropped)
    const done = new Int32Array(new SharedArrayBuffer(4))
    const writer = new Worker(`
      const { workerData: { dir, n, done } } = require('node:worker_threads')
      const { writeFileSync } = require('node:fs')
      try { for (let i = 0; i < n; i++) writeFileSync(dir + '/f' + i, 'file ' + i) } finally { Atomics.store(done, 0, 1); Atomics.notify(done, 0) }
    `, { eval: true, workerData: { dir: abs('burst'), n, done } })
    try {
      expect(Atomics.wait(done, 0, 0, 60_000)).not.toBe('timed-out')
    } finally {
      await writer.terminate()
    }
    await waitFor(async () => {
      let count = 0
      for await (const r of store.all()) if (r.path.startsWith('burst/')) count++
      return count === n ? true : null
    }, 30_000)
    expect(scanner.overflowScans).toBeGreaterThan(0)
  }, 60_000)

  it('keeps the period without the watcher (a mount reports the writes), however large the folder', async () => {
    scanner = new Scanner({ store, data }, { watch: false, rescanIntervalMs: 60_000 })
    await scanner.start()
    scanner.lastScanEntries = 200_000
    expect(scanner.rescanDelay()).toBe(60_000)
  })
})

describe('Scanner periodic full scans', () => {
  it('run every rescanIntervalMs, each finding what nobody reported', async () => {
    scanner = new Scanner({ store, data }, { watch: false, rescanIntervalMs: 50 })
    await scanner.start()
    await write('first', '1')
    await waitFor(async () => await store.get('first'))
    await write('second', '2')
    await waitFor(async () => await store.get('second'))
  })
})
