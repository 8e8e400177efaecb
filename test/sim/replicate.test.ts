import { afterEach, describe, expect, it } from 'vitest'
import { randomBytes, createHash } from 'node:crypto'
import { chmod, mkdir, open, readFile, rename, rm, symlink, readdir, stat, utimes } from 'node:fs/promises'
import { Mesh, waitFor, type SimNode } from './harness.js'
import { encodeAnnouncement } from '../../src/gossip/codec.js'
import { toFileRecord } from '../../src/store/store.js'
import { DirectWrites } from '../../src/transfer/direct.js'

let mesh: Mesh | null = null
afterEach(async () => {
  await mesh?.cleanup()
  mesh = null
})

/** A, B, C where B and C each know only A. */
async function threeNodes (): Promise<[SimNode, SimNode, SimNode]> {
  mesh = await Mesh.create()
  const a = await mesh.add('a')
  const b = await mesh.add('b')
  const c = await mesh.add('c')
  await a.start()
  await b.start({ join: [a.addr()] })
  await c.start({ join: [a.addr()] })
  return [a, b, c]
}

describe('three nodes where C knows only A', () => {
  it('C learns of B and connects to it directly', async () => {
    const [, b, c] = await threeNodes()
    await waitFor(() => c.n.libp2p.getPeers().some((p) => p.equals(b.n.peerId)), 15_000, 'C connected to B')
  })

  it('replicates create, modify, delete, rename, mkdir, chmod and symlinks to every node', async () => {
    const [a, b, c] = await threeNodes()
    const m = mesh!
    await b.write('from-b.txt', 'written on b')
    await mkdir(c.path('dir/sub'), { recursive: true })
    await c.write('dir/sub/deep.txt', 'deep')
    await a.write('big.bin', randomBytes(3 * 1024 * 1024 + 17))
    await symlink('from-b.txt', a.path('link'))
    await m.waitConverged()
    expect(await a.read('from-b.txt')).toBe('written on b')
    expect(await b.read('dir/sub/deep.txt')).toBe('deep')

    // modify on a node that received the file
    await c.write('from-b.txt', 'changed on c')
    await chmod(b.path('dir/sub/deep.txt'), 0o600)
    await m.waitConverged()
    expect(await a.read('from-b.txt')).toBe('changed on c')
    expect((await stat(a.path('dir/sub/deep.txt'))).mode & 0o777).toBe(0o600)

    // rename a file and a directory, delete a file
    const fetchedBefore = b.n.puller.stats.bytesFetched + c.n.puller.stats.bytesFetched
    await rename(a.path('big.bin'), a.path('dir/big-renamed.bin'))
    await rename(c.path('dir/sub'), c.path('dir/moved'))
    await rm(b.path('from-b.txt'))
    await m.waitConverged()
    for (const n of [a, b, c]) {
      const top = await readdir(n.dataDir)
      expect(top.sort()).toEqual(['.syncmesh', 'dir', 'link'])
      expect(await n.read('dir/moved/deep.txt')).toBe('deep')
    }
    // the renamed file's blocks were copied locally, not fetched again
    expect(b.n.puller.stats.bytesFetched + c.n.puller.stats.bytesFetched - fetchedBefore).toBeLessThan(1024 * 1024)
    const digest = createHash('sha256').update(await readFile(a.path('dir/big-renamed.bin'))).digest('hex')
    expect(createHash('sha256').update(await readFile(c.path('dir/big-renamed.bin'))).digest('hex')).toBe(digest)
  })

  it('concurrent writes converge to one winner everywhere and keep the loser as a conflict copy', async () => {
    const [a, b, c] = await threeNodes()
    const m = mesh!
    await a.write('doc.txt', 'base')
    await m.waitConverged()
    // cut B off, write on both sides, then heal
    await b.stop()
    await a.write('doc.txt', 'version from a')
    await b.write('doc.txt', 'version from b')
    await waitFor(async () => (await c.read('doc.txt')) === 'version from a', 10_000, 'C got a\'s version')
    await b.start()
    await m.waitConverged()
    const names = (await readdir(a.dataDir)).filter((n) => n.startsWith('doc'))
    expect(names).toHaveLength(2)
    const copy = names.find((n) => n.includes('.sync-conflict-'))
    expect(copy).toMatch(/^doc\.sync-conflict-\d{8}-\d{9}(-\d+)?-[a-z2-7]{13}\.txt$/)
    const contents = new Set([await a.read('doc.txt'), await a.read(copy!)])
    expect(contents).toEqual(new Set(['version from a', 'version from b']))
    // every node agrees on the same winner
    expect(await b.read('doc.txt')).toBe(await a.read('doc.txt'))
    expect(await c.read(copy!)).toBe(await a.read(copy!))
  })

  it('a node written to while down, with many files to scan at start, keeps its writes (and the mesh\'s)', async () => {
    const [a, b] = await threeNodes()
    const m = mesh!
    // enough files that B's start-up scan has a walk to make
    for (let d = 0; d < 6; d++) for (let i = 0; i < 250; i++) await a.write(`tree${d}/f${i}.txt`, `${d}/${i}`)
    await a.write('tree5/doc.txt', 'base')
    await m.waitConverged(60_000)
    await b.stop()
    await a.write('tree5/doc.txt', 'version from a')
    await b.write('tree5/doc.txt', 'version from b')
    await b.write('tree5/new-on-b.txt', 'written while down')
    await b.start()
    await m.waitConverged(60_000)
    const names = (await readdir(a.path('tree5'))).filter((n) => n.startsWith('doc'))
    expect(names).toHaveLength(2)
    const copy = names.find((n) => n.includes('.sync-conflict-'))!
    expect(new Set([await a.read('tree5/doc.txt'), await a.read(`tree5/${copy}`)])).toEqual(new Set(['version from a', 'version from b']))
    expect(await b.read('tree5/doc.txt')).toBe(await a.read('tree5/doc.txt'))
    expect(await a.read('tree5/new-on-b.txt')).toBe('written while down')
  })

  it('a directory a node makes for the files it pulls into it is not taken for a local change', async () => {
    const [a, b] = await threeNodes()
    const m = mesh!
    await b.stop()
    for (let i = 0; i < 600; i++) await a.write(`fresh/f${i}.txt`, `file ${i}`)
    await b.start()
    await m.waitConverged(60_000)
    // the directory's version is A's alone on every node: B made it for the files and then
    // installed A's record over it, instead of recording a version of its own
    const rec = await b.n.store.get('fresh')
    expect(rec?.type).toBe('dir')
    expect(Object.keys(rec!.version.vv)).toEqual([a.n.nodeId])
    expect(b.n.puller.lastError).toBeNull()
  })

  it('identical concurrent content makes no conflict copy', async () => {
    const [a, b] = await threeNodes()
    const m = mesh!
    await b.stop()
    await a.write('same.txt', 'same content')
    await b.write('same.txt', 'same content')
    await b.start()
    await m.waitConverged()
    expect((await readdir(a.dataDir)).filter((n) => n.includes('sync-conflict'))).toEqual([])
  })

  it('a node stopped while the others write catches up after it restarts', async () => {
    const [a, b, c] = await threeNodes()
    const m = mesh!
    await m.waitConverged()
    await c.stop()
    for (let i = 0; i < 50; i++) await a.write(`batch/f${i}.txt`, `file ${i}`)
    await b.write('b.txt', 'b')
    await m.waitConverged(20_000, [a, b])
    await c.start()
    await m.waitConverged()
    expect(await c.read('batch/f49.txt')).toBe('file 49')
  })
})

describe('transfers', () => {
  it('a node stopped during a large transfer resumes without fetching finished blocks again', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const b = await mesh.add('b')
    await a.start()
    const size = 48 * 1024 * 1024 // 384 blocks of 128 KiB
    await a.write('large.bin', randomBytes(size))
    await waitFor(async () => (await a.n.store.get('large.bin'))?.have === true, 10_000, 'A recorded the file')
    a.n.blockServer.delayMs = 10 // slow enough to stop B mid-transfer
    await b.start({ join: [a.addr()] })
    await waitFor(() => b.n.puller.stats.blocksFetched >= 100, 30_000, 'B fetched 100 blocks')
    const fetchedFirst = b.n.puller.stats.blocksFetched
    await b.stop()
    a.n.blockServer.delayMs = 0
    await b.start({ join: [a.addr()] })
    await mesh.waitConverged(30_000)
    const total = size / (128 * 1024)
    // the restarted node kept what it had and fetched only the rest
    expect(b.n.puller.stats.blocksReused).toBeGreaterThanOrEqual(fetchedFirst - 20)
    expect(b.n.puller.stats.blocksFetched).toBeLessThanOrEqual(total - b.n.puller.stats.blocksReused)
    expect(b.n.puller.stats.blocksFetched + b.n.puller.stats.blocksReused).toBe(total)
    // the fetched blocks went past the page cache where the file system allows it (its
    // content is checked by the convergence)
    if (await DirectWrites.worksIn(b.n.data.tmpDir)) expect(b.n.puller.stats.bytesWrittenDirect).toBe(b.n.puller.stats.bytesFetched)
  })

  it('pulls that find no peer connected wait for one without a timer or a warning each, and go on when one connects', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const b = await mesh.add('b')
    await a.start()
    for (let i = 0; i < 300; i++) await a.write(`many/f${i}.txt`, `file ${i}`)
    await a.write('large.bin', randomBytes(4 * 1024 * 1024))
    await waitFor(async () => (await a.n.store.get('large.bin'))?.have === true, 10_000, 'A recorded its files')
    a.n.blockServer.delayMs = 60_000 // B learns of everything, and gets no content
    await b.start({ join: [a.addr()] })
    await waitFor(() => b.n.store.needCount() === 301, 10_000, 'B knows what to pull')
    await a.stop()
    // the pulls in flight fail with A gone; tried again, they find no peer at all
    await waitFor(() => b.n.puller.waitingForPeer === 301, 20_000, 'every pull of B waits for a peer')
    expect(b.n.puller.waiting).toBe(301)
    const warnings = JSON.stringify((await b.n.status()).recentErrors)
    // nothing more happens while no peer is there: no timers firing, no more warnings
    await new Promise((resolve) => setTimeout(resolve, 1500))
    expect(b.n.puller.waitingForPeer).toBe(301)
    expect(JSON.stringify((await b.n.status()).recentErrors)).toBe(warnings)
    await a.start()
    await b.n.join(a.addr())
    await mesh.waitConverged(30_000)
    expect(b.n.puller.waiting).toBe(0)
    expect(await b.read('many/f299.txt')).toBe('file 299')
  })

  it('skips a peer that serves corrupt blocks and never installs corrupt content', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const liar = await mesh.add('liar')
    const c = await mesh.add('c')
    await a.start()
    await liar.start({ join: [a.addr()] })
    const content = randomBytes(2 * 1024 * 1024)
    await a.write('payload.bin', content)
    await mesh.waitConverged()
    liar.n.blockServer.corrupt = (d) => { const x = Buffer.from(d); x[0] ^= 0xff; return x }
    // C can only ask the liar at first
    await a.stop()
    await c.start({ join: [liar.addr()] })
    await waitFor(() => c.n.puller.stats.badBlocks >= 3, 15_000, 'C saw corrupt blocks')
    expect(await c.read('payload.bin')).toBeNull()
    expect(c.n.puller.bannedPeers()).toContain(liar.n.peerId.toString())
    await a.start()
    await c.n.join(a.addr())
    await waitFor(async () => (await c.n.store.needCount()) === 0, 20_000, 'C got the file from an honest peer')
    expect(Buffer.compare(await readFile(c.path('payload.bin')), content)).toBe(0)
  })

  it('a file changed behind its holder\'s record (size, mtime and inode kept) is asked again, hashed, and its holder is not struck', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const c = await mesh.add('c')
    await a.start()
    const content = randomBytes(2 * 1024 * 1024) // 16 blocks of 128 KiB
    await a.write('payload.bin', content)
    await waitFor(async () => (await a.n.store.get('payload.bin'))?.disk != null, 10_000, 'A recorded the file')
    await a.stop()
    // changed while A is down, its size, mtime and inode kept: A's start-up scan sees nothing new
    const before = await stat(a.path('payload.bin'))
    const fh = await open(a.path('payload.bin'), 'r+')
    await fh.write(randomBytes(64), 0, 64, 9 * 128 * 1024 + 5)
    await fh.close()
    await utimes(a.path('payload.bin'), before.atimeMs / 1000, before.mtimeMs / 1000)
    await a.start()
    await c.start({ join: [a.addr()] })
    // A sends the blocks of its open file unhashed; the changed one does not match, and asked again
    // (hashed) A has no such block: C does not take it for a lie
    await waitFor(() => c.n.puller.stats.blocksReasked >= 1 && c.n.puller.lastError != null, 20_000, 'C asked again and gave up for now')
    expect(a.n.blockServer.stats.blocksUnhashed).toBeGreaterThan(0)
    expect(c.n.puller.stats.badBlocks).toBe(0)
    expect(c.n.puller.bannedPeers()).toEqual([])
    expect(await c.read('payload.bin')).toBeNull()
  })

  it('pulls many small files in groups, and a lying peer\'s corrupt ones are never installed', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const liar = await mesh.add('liar')
    const c = await mesh.add('c')
    await a.start()
    await liar.start({ join: [a.addr()] })
    const files = Array.from({ length: 600 }, (_v, i) => ({ rel: `many/f${i}.dat`, content: randomBytes(1 + (i * 97) % 9000) }))
    for (const f of files) await a.write(f.rel, f.content)
    await mesh.waitConverged()
    // A's scanner had just read and hashed them: served from memory
    expect(a.n.blockServer.stats.blocksFromCache).toBeGreaterThan(0)
    // every other block the liar serves is corrupt
    let n = 0
    liar.n.blockServer.corrupt = (d) => { if (n++ % 2 === 0) return d; const x = Buffer.from(d); x[0] ^= 0xff; return x }
    await a.stop()
    await c.start({ join: [liar.addr()] })
    await waitFor(() => c.n.puller.stats.badBlocks >= 3, 15_000, 'C saw corrupt blocks')
    // what C installed from the liar is what A wrote, nothing else
    for (const f of files) {
      const got = await c.read(f.rel)
      if (got != null) expect(Buffer.compare(await readFile(c.path(f.rel)), f.content)).toBe(0)
    }
    await a.start()
    await c.n.join(a.addr())
    await waitFor(async () => (await c.n.store.needCount()) === 0, 30_000, 'C got every file')
    for (const f of files) expect(Buffer.compare(await readFile(c.path(f.rel)), f.content)).toBe(0)
  })
})

describe('index cursors moved by gossip', () => {
  /** A and B, B joined to A, periodic catch-up off, gossip shown to reach B. */
  async function twoNodes (): Promise<[SimNode, SimNode, string]> {
    mesh = await Mesh.create()
    const a = await mesh.add('a', { catchUpIntervalMs: 3_600_000 })
    const b = await mesh.add('b', { catchUpIntervalMs: 3_600_000 })
    await a.start()
    await b.start({ join: [a.addr()] })
    const aId = a.n.peerId.toString()
    // B's exchange on connect gives it a cursor in A's index
    await waitFor(async () => (await b.n.store.getCursor(aId)) != null, 15_000, 'B has a cursor for A')
    // gossip reaches B: an announcement it applied moved that cursor
    for (let i = 0; b.n.announcer.stats.cursorMoves === 0; i++) {
      await a.write(`probe${i}.txt`, `probe ${i}`)
      await waitFor(async () => await b.read(`probe${i}.txt`) === `probe ${i}`, 15_000, `probe ${i} at B`)
      if (i > 20) throw new Error('no announcement moved B\'s cursor')
    }
    return [a, b, aId]
  }

  it('a node restarted after gossip delivered the changes is not sent them again by catch-up', async () => {
    const [a, b, aId] = await twoNodes()
    const exchanges = b.n.catchUp.stats.exchanges
    for (let i = 0; i < 30; i++) await a.write(`g/f${i}.txt`, `file ${i}`)
    await mesh!.waitConverged()
    await waitFor(async () => (await b.n.store.getCursor(aId))?.seq === a.n.store.seq, 10_000, 'B\'s cursor at A\'s seq')
    expect(b.n.catchUp.stats.exchanges).toBe(exchanges)
    await b.stop()
    await b.start({ join: [a.addr()] })
    await waitFor(() => b.n.catchUp.stats.exchanges > 0, 15_000, 'B\'s exchange after its restart')
    expect(b.n.catchUp.stats.recordsReceived).toBe(0)
    expect(await b.read('g/f29.txt')).toBe('file 29')
  })

  it('an announcement after a record its origin got from elsewhere does not move the cursor past that record', async () => {
    const [a, b, aId] = await twoNodes()
    // A stores a record another node wrote (as a catch-up with that node would): A does
    // not announce it, so B gets it only by catch-up with A
    const other = 'ccccccccccccc'
    const elsewhere = { path: 'elsewhere', type: 'dir' as const, mode: 0o755, size: 0, mtimeMs: 0, blockSize: 0, blocks: [], hash: '', target: '', deleted: false, version: { vv: { [other]: 1 }, hlc: { wall: Date.now(), logical: 0 }, node: other } }
    await a.n.store.applyRemote([elsewhere])
    const foreignSeq = (await a.n.store.get('elsewhere'))!.seq
    // then A's own change, announced
    await a.write('after.txt', 'after')
    await waitFor(async () => await b.read('after.txt') === 'after', 15_000, 'after.txt at B')
    const cursor = await b.n.store.getCursor(aId)
    expect(await b.n.store.get('elsewhere') != null || cursor!.seq < foreignSeq).toBe(true)
    await b.n.catchUp.sync(a.n.peerId)
    expect((await b.n.store.get('elsewhere'))?.version).toEqual(elsewhere.version)
  })

  it('an announcement of records the cursor already covers is not applied again', async () => {
    const [a, b, aId] = await twoNodes()
    await mesh!.waitConverged()
    const cursor = (await b.n.store.getCursor(aId))!.seq
    // A announces again, complete, records B's cursor covers (as gossipsub's message cache
    // hands a node that comes back the announcements catch-up already brought it)
    const old = (await a.n.store.after(0, 1000)).filter((r) => r.seq <= cursor && r.type === 'file')
    expect(old.length).toBeGreaterThan(0)
    const received = b.n.announcer.stats.received
    const applied = b.n.announcer.stats.recordsApplied
    const topic = (a.n.announcer as unknown as { topic: string }).topic
    const seqs = old.map((r) => r.seq)
    const ann = { origin: a.n.store.nodeId, indexId: a.n.store.indexId, firstSeq: Math.min(...seqs), lastSeq: Math.max(...seqs), records: old.map(toFileRecord) }
    await a.n.libp2p.services.pubsub.publish(topic, encodeAnnouncement({ ...ann, completeAfter: ann.firstSeq - 1 }))
    await waitFor(() => b.n.announcer.stats.received > received, 10_000, 'B received the announcement')
    await waitFor(() => b.n.announcer.stats.alreadyHeld > 0, 10_000, 'B found it held')
    expect(b.n.announcer.stats.recordsApplied).toBe(applied)
    // without completeAfter (a node from before it, whose catch-up may have reported a
    // commit still being written) it is applied
    await a.n.libp2p.services.pubsub.publish(topic, encodeAnnouncement(ann))
    await waitFor(() => b.n.announcer.stats.received > received + 1, 10_000, 'B received the second')
    await b.n.announcer.idle()
    expect(b.n.announcer.stats.alreadyHeld).toBe(1)
  })

  it('a record no message can carry is left out: the rest of its batch is announced, and catch-up goes on past it', async () => {
    const [a, b, aId] = await twoNodes()
    // one batch: a meta record, then one over the wire's payload limit, then another
    const bs = a.n.announcer.batcher.stats
    const closed = bs.batchesClosed
    const complete = a.n.announcer.stats.complete
    // one transaction: one batch (the batcher never splits one)
    await a.n.store.putMetas([{ path: '/test/ok', payload: { v: 1 } }, { path: '/test/huge', payload: 'x'.repeat(300 * 1024) }, { path: '/test/ok2', payload: { v: 2 } }])
    const ok = (await a.n.store.get('/test/ok'))!
    await waitFor(() => bs.batchesClosed > closed && bs.batchesSent >= bs.batchesClosed, 10_000, 'the batch handled')
    await waitFor(async () => (await b.n.store.get('/test/ok2')) != null, 10_000, '/test/ok2 at B')
    // that batch claimed nothing (no cursor moves past the record left out)
    expect(a.n.announcer.stats.complete).toBe(complete)
    // catch-up does not stop at it either: A's next change, sent by catch-up alone
    a.n.announcer.dropRate = 0
    b.n.announcer.dropRate = 1
    await a.n.store.putMeta('/test/later', { v: 3 })
    await b.n.catchUp.sync(a.n.peerId)
    expect(await b.n.store.get('/test/later')).toBeDefined()
    expect((await b.n.store.getCursor(aId))!.seq).toBe(a.n.store.committedSeq)
    expect(await b.n.store.get('/test/huge')).toBeUndefined()
    expect((await b.n.store.get('/test/ok'))?.version).toEqual(ok.version)
  })
})
