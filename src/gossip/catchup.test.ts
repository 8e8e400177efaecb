import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Libp2p } from '@libp2p/interface'
import { CatchUp } from './catchup.js'
import { hashFile } from '../store/blocks.js'
import { DataFolder } from '../store/datafolder.js'
import { HybridClock } from '../store/hlc.js'
import { Store, toFileRecord } from '../store/store.js'
import { nodeIdOf } from '../node/nodeid.js'
import type { BlockHost } from '../transfer/protocol.js'
import type { FileRecord } from '../store/types.js'

interface Peer {
  libp2p: Libp2p
  data: DataFolder
  store: Store
  catchUp: CatchUp
  clock: { t: number }
}

let tmp: string
let peers: Peer[]

beforeEach(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'syncmesh-catchup-'))
  peers = []
})

afterEach(async () => {
  for (const p of peers) {
    await Promise.allSettled([p.catchUp.stop(), p.libp2p.stop()])
    await p.store.close().catch(() => {})
  }
  await rm(tmp, { recursive: true, force: true })
})

async function peer (name: string): Promise<Peer> {
  const libp2p = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
  const data = new DataFolder(join(tmp, name, 'data'))
  await data.init()
  const clock = { t: Date.UTC(2026, 0, 1) }
  const store = new Store({ path: join(tmp, name, 'db'), nodeId: nodeIdOf(libp2p.peerId), data, clock: new HybridClock({ now: () => clock.t }) })
  await store.open()
  const catchUp = new CatchUp({ store, host: libp2p as unknown as BlockHost, peers: () => libp2p.getPeers() }, { intervalMs: 3_600_000, chunkRecords: 3 })
  await catchUp.start()
  const p = { libp2p, data, store, catchUp, clock }
  peers.push(p)
  return p
}

/**
 * A dials B, then both see the connection: a catch-up B starts right after the dial could
 * otherwise find no connection on its side yet, and no address to dial A by.
 */
async function connect (a: Peer, b: Peer): Promise<void> {
  await a.libp2p.dial(b.libp2p.getMultiaddrs()[0])
  const deadline = Date.now() + 10_000
  while (b.libp2p.getConnections(a.libp2p.peerId).length === 0) {
    if (Date.now() > deadline) throw new Error('B never saw the connection from A')
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

async function write (p: Peer, rel: string, content: string): Promise<FileRecord> {
  await writeFile(p.data.abs(rel), content)
  const observed = await p.data.observe(rel)
  if (observed == null) throw new Error(`${rel} is gone`)
  const h = await hashFile(p.data.abs(rel))
  const [rec] = await p.store.recordLocal([{ path: rel, present: true, observed, blockSize: h.blockSize, blocks: h.blocks, hash: h.hash, target: '' }])
  return toFileRecord(rec)
}

async function records (p: Peer): Promise<FileRecord[]> {
  const out: FileRecord[] = []
  for await (const r of p.store.all()) out.push(toFileRecord(r))
  return out.sort((x, y) => x.path.localeCompare(y.path))
}

describe('index catch-up', () => {
  it('a peer that continues an exchange is not sent back the versions it sent; a merge of its version and anything else still reach it', async () => {
    const a = await peer('a')
    const b = await peer('b')
    await connect(a, b)
    for (let i = 0; i < 7; i++) await write(a, `a${i}.txt`, `A ${i}`)
    await write(b, 'b0.txt', 'B 0')
    expect(await b.catchUp.sync(a.libp2p.peerId)).toBe(7)

    // A's first exchange with B (no cursor in B's index): everything, its own versions too
    expect(await a.catchUp.sync(b.libp2p.peerId)).toBe(8)
    expect(b.catchUp.stats.recordsSkipped).toBe(0)

    // A writes more, and both write g.txt concurrently: A later, so A's version wins,
    // merged at B with B's (A's writer and clock, B's vector entry too)
    for (let i = 7; i < 12; i++) await write(a, `a${i}.txt`, `A ${i}`)
    await write(b, 'g.txt', 'B first')
    a.clock.t += 5_000
    await write(a, 'g.txt', 'A later')
    await write(b, 'b1.txt', 'B 1')
    expect(await b.catchUp.sync(a.libp2p.peerId)).toBe(6)
    const merged = await b.store.get('g.txt')
    expect(merged?.version.node).toBe(a.store.nodeId)
    expect(merged?.version.vv[b.store.nodeId]).toBeGreaterThan(0)

    // continuing: the five files A sent are skipped; B's own files and the merge are sent
    const sentBefore = b.catchUp.stats.recordsSent
    expect(await a.catchUp.sync(b.libp2p.peerId)).toBe(3)
    expect(b.catchUp.stats.recordsSkipped).toBe(5)
    expect(b.catchUp.stats.recordsSent - sentBefore).toBe(3)
    expect((await a.store.get('g.txt'))?.version).toEqual(merged?.version)
    expect(await records(a)).toEqual(await records(b))
  })
  it('a cursor at zero in this index continues the exchange too (the peer asked while this store was empty)', async () => {
    const a = await peer('a')
    const b = await peer('b')
    await connect(a, b)
    // A asks B while B holds nothing: A's cursor in B's index is 0
    expect(await a.catchUp.sync(b.libp2p.peerId)).toBe(0)
    expect((await a.store.getCursor(b.libp2p.peerId.toString()))?.seq).toBe(0)
    for (let i = 0; i < 5; i++) await write(a, `a${i}.txt`, `A ${i}`)
    expect(await b.catchUp.sync(a.libp2p.peerId)).toBe(5)
    await write(b, 'b0.txt', 'B 0')
    // A continues from 0 in B's index: A's five files are not sent back, B's own file is
    expect(await a.catchUp.sync(b.libp2p.peerId)).toBe(1)
    expect(b.catchUp.stats.recordsSkipped).toBe(5)
    expect(await records(a)).toEqual(await records(b))

    // a peer without a cursor in this index (a reset database) still gets everything
    await a.store.setCursor(b.libp2p.peerId.toString(), { indexId: 'another-index', seq: 0 })
    expect(await a.catchUp.sync(b.libp2p.peerId)).toBe(6)
  })
  it('a catch-up served while a commit is being written does not move the cursor past that commit\'s records', async () => {
    const a = await peer('a')
    const b = await peer('b')
    await connect(a, b)
    expect(await b.catchUp.sync(a.libp2p.peerId)).toBe(0)
    // A stores many records another node wrote in one commit; B asks while it is written
    const other = 'ccccccccccccc'
    const recs: FileRecord[] = Array.from({ length: 5000 }, (_, i) => ({
      path: `d${i}`, type: 'dir', mode: 0o755, size: 0, mtimeMs: 0, blockSize: 0, blocks: [], hash: '', target: '', deleted: false,
      version: { vv: { [other]: i + 1 }, hlc: { wall: Date.UTC(2026, 0, 1) + i, logical: 0 }, node: other }
    }))
    const before = a.store.seq
    const applying = a.store.applyRemote(recs)
    while (a.store.seq === before) await new Promise((resolve) => setImmediate(resolve))
    expect(a.store.committedSeq).toBe(before)
    const first = await b.catchUp.sync(a.libp2p.peerId)
    await applying
    expect(first + await b.catchUp.sync(a.libp2p.peerId)).toBe(5000)
    expect(await records(b)).toEqual(await records(a))
  })
  it('a page short of records because one was stored again meanwhile is not taken for the last one', async () => {
    const a = await peer('a')
    const b = await peer('b')
    await connect(a, b)
    for (let i = 0; i < 10; i++) await write(a, `f${i}.txt`, `A ${i}`)
    // while A serves the first page (3 records), the first of them is written again
    const getMany = a.store.getMany.bind(a.store)
    a.store.getMany = async (paths) => {
      if (paths.length === 3) {
        a.store.getMany = getMany
        a.clock.t += 1000
        await write(a, paths[0], 'again')
      }
      return await getMany(paths)
    }
    await b.catchUp.sync(a.libp2p.peerId)
    await b.catchUp.sync(a.libp2p.peerId)
    expect(await records(b)).toEqual(await records(a))
  })
})
