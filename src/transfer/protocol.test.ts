import { createHash, randomBytes } from 'node:crypto'
import { lstat, mkdir, mkdtemp, open, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { streamPair } from '@libp2p/utils'
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DataFolder, observedFromStat } from '../store/datafolder.js'
import type { Store } from '../store/store.js'
import type { Want } from './codec.js'
import { BLOCK_PROTOCOL, BLOCK_PROTOCOL_V2, BlockServer, BlockUnavailableError, PeerBlockClient, type BlockHost, type BlockResult } from './protocol.js'

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')
const KiB = 1024

type Handler = (stream: Stream, connection: Connection) => void | Promise<void>

/**
 * Two hosts wired to each other in memory: a dial negotiates the first protocol of the
 * list the other side handles (as multistream-select does) and hands the other side's
 * handler the inbound end of a stream pair.
 */
async function hostPair (): Promise<{ server: BlockHost, client: BlockHost, clientPeer: PeerId, serverPeer: PeerId, dials: string[] }> {
  const serverPeer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const clientPeer = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
  const handlers = new Map<string, Handler>()
  const dials: string[] = []
  const server: BlockHost = {
    handle: async (protocol, handler) => { handlers.set(protocol, handler) },
    unhandle: async (protocol) => { handlers.delete(protocol) },
    dialProtocol: async () => { throw new Error('the server does not dial') }
  }
  const client: BlockHost = {
    handle: async () => {},
    unhandle: async () => {},
    dialProtocol: async (_peer, protocols) => {
      const list = typeof protocols === 'string' ? [protocols] : protocols
      const protocol = list.find((p) => handlers.has(p))
      if (protocol == null) throw new Error('protocol selection failed')
      dials.push(protocol)
      const [outbound, inbound] = await streamPair({ delay: 0 })
      // what libp2p's protocol selection sets on both ends
      outbound.protocol = protocol
      inbound.protocol = protocol
      void handlers.get(protocol)!(inbound, { remotePeer: clientPeer } as unknown as Connection)
      return outbound
    }
  }
  return { server, client, clientPeer, serverPeer, dials }
}

/** The part of the store the block server uses: no block index (hints only). */
const noIndex = { blockSources: async () => [] } as unknown as Store

async function collect (client: PeerBlockClient, wants: Want[]): Promise<Array<{ order: number, result: BlockResult }>> {
  const out = new Array<{ order: number, result: BlockResult }>(wants.length)
  let order = 0
  await client.requestMany(wants, (i, result) => { out[i] = { order: order++, result } })
  return out
}

const flat = (r: BlockResult): Buffer => {
  if (r.error != null) throw r.error
  return Buffer.from(r.data.subarray())
}

describe('block protocol 2 (batches)', () => {
  let dir: string
  let data: DataFolder
  let big: Buffer
  let small: Buffer
  const bs = 128 * KiB

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'syncmesh-proto-'))
    data = new DataFolder(join(dir, 'data'))
    await mkdir(join(dir, 'data', 'd'), { recursive: true })
    big = randomBytes(3 * bs + 1000)
    small = randomBytes(4 * KiB)
    await writeFile(data.abs('d/big.bin'), big)
    await writeFile(data.abs('small.txt'), small)
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  const bigWants = (): Want[] => [0, 1, 2, 3].map((i) => {
    const block = big.subarray(i * bs, Math.min(big.length, (i + 1) * bs))
    return { hash: sha(block), size: block.length, pathHint: 'd/big.bin', offsetHint: i * bs }
  })

  it('answers a run of blocks and a small file in one request, each block once, in order', async () => {
    const { server, client, serverPeer, dials } = await hostPair()
    const bsrv = new BlockServer({ store: noIndex, data, host: server })
    await bsrv.start()
    const c = new PeerBlockClient(client, serverPeer, 16 * 1024 * KiB)
    const wants = [...bigWants(), { hash: sha(small), size: small.length, pathHint: 'small.txt', offsetHint: 0 }]
    const got = await collect(c, wants)
    expect(dials).toEqual([BLOCK_PROTOCOL_V2])
    expect(got.map((g) => g.order)).toEqual([0, 1, 2, 3, 4])
    for (let i = 0; i < 4; i++) expect(flat(got[i].result).equals(big.subarray(i * bs, (i + 1) * bs))).toBe(true)
    expect(flat(got[4].result).equals(small)).toBe(true)
    expect(c.load).toBe(0)
    expect(bsrv.stats.blocksServed).toBe(5)
    // a single block rides the same stream
    expect(Buffer.from(await c.request(wants[1].hash, wants[1].size, 'd/big.bin', bs)).equals(big.subarray(bs, 2 * bs))).toBe(true)
    expect(dials).toHaveLength(1)
    c.close()
    await bsrv.stop()
  })

  it('answers a block nobody holds (or a stale hint) not-found, and the rest of the batch normally', async () => {
    const { server, client, serverPeer } = await hostPair()
    const bsrv = new BlockServer({ store: noIndex, data, host: server })
    await bsrv.start()
    const c = new PeerBlockClient(client, serverPeer, 16 * 1024 * KiB)
    const wants = bigWants()
    wants[1] = { ...wants[1], hash: sha(Buffer.from('not this')) }
    wants[2] = { ...wants[2], pathHint: 'gone.bin' }
    const got = await collect(c, wants)
    expect(flat(got[0].result).equals(big.subarray(0, bs))).toBe(true)
    expect(got[1].result.error).toBeInstanceOf(BlockUnavailableError)
    expect(got[2].result.error).toBeInstanceOf(BlockUnavailableError)
    expect(flat(got[3].result).equals(big.subarray(3 * bs))).toBe(true)
    expect(bsrv.stats.notFound).toBe(2)
    c.close()
    await bsrv.stop()
  })

  it('passes a lying peer\'s blocks on unverified (the puller checks every hash), and only those it corrupts', async () => {
    const { server, client, serverPeer } = await hostPair()
    const bsrv = new BlockServer({ store: noIndex, data, host: server })
    let n = 0
    bsrv.corrupt = (d) => { if (n++ % 2 === 0) return d; const x = Buffer.from(d); x[0] ^= 0xff; return x }
    await bsrv.start()
    const c = new PeerBlockClient(client, serverPeer, 16 * 1024 * KiB)
    const wants = bigWants()
    const got = await collect(c, wants)
    const verified = got.map((g, i) => g.result.data != null && sha(flat(g.result)) === wants[i].hash)
    expect(verified).toEqual([true, false, true, false])
    c.close()
    await bsrv.stop()
  })

  /** A store that records d/big.bin as it is on disk now (blocks of `bs`), with no block index. */
  async function recordingBig (): Promise<Store> {
    const st = await lstat(data.abs('d/big.bin'))
    const blocks = bigWants().map((w) => w.hash)
    const rec = {
      path: 'd/big.bin', type: 'file', mode: st.mode & 0o7777, size: big.length, mtimeMs: st.mtimeMs, blockSize: bs, blocks, hash: 'c'.repeat(64), target: '', deleted: false,
      version: { vv: { n: 1 }, hlc: { wall: 1, logical: 0 }, node: 'n' }, seq: 1, have: true,
      disk: { ...observedFromStat(st), hash: 'c'.repeat(64), target: '', version: { vv: { n: 1 }, hlc: { wall: 1, logical: 0 }, node: 'n' } }
    }
    return { blockSources: async () => [], get: async (p: string) => p === 'd/big.bin' ? rec : undefined } as unknown as Store
  }

  /** A block server on that store and a client of it; and the big file's wants, marked unhashedOk. */
  async function servingRecorded (): Promise<{ bsrv: BlockServer, c: PeerBlockClient, wants: Want[] }> {
    const { server, client, serverPeer } = await hostPair()
    const bsrv = new BlockServer({ store: await recordingBig(), data, host: server })
    await bsrv.start()
    return { bsrv, c: new PeerBlockClient(client, serverPeer, 16 * 1024 * KiB), wants: bigWants().map((w) => ({ ...w, unhashedOk: true })) }
  }

  it('sends the blocks of a file still as recorded without hashing them again, when the requester checks them (unhashedOk)', async () => {
    const { bsrv, c, wants: unhashedOk } = await servingRecorded()
    const got = await collect(c, unhashedOk)
    for (let i = 0; i < 4; i++) expect(flat(got[i].result).equals(big.subarray(i * bs, (i + 1) * bs))).toBe(true)
    // a block that opens the file is hashed; from then on the open file is used as recorded
    const first = bsrv.stats.blocksUnhashed
    expect(first).toBeGreaterThanOrEqual(1)
    const again = await collect(c, unhashedOk)
    for (let i = 0; i < 4; i++) expect(flat(again[i].result).equals(big.subarray(i * bs, (i + 1) * bs))).toBe(true)
    expect(bsrv.stats.blocksUnhashed).toBe(first + 4)
    // a requester that does not say it checks gets every block hashed
    await collect(c, bigWants())
    expect(bsrv.stats.blocksUnhashed).toBe(first + 4)
    c.close()
    await bsrv.stop()
  })

  it('a file changed in place behind its record (size, mtime and inode kept): the unhashed block is stale, and asked again (hashed) it is not found', async () => {
    const { bsrv, c, wants } = await servingRecorded()
    await collect(c, wants.slice(1, 2)) // the file is open now (and as recorded)
    const before = await lstat(data.abs('d/big.bin'))
    const fh = await open(data.abs('d/big.bin'), 'r+')
    await fh.write(randomBytes(100), 0, 100, 2 * bs + 10)
    await fh.close()
    await utimes(data.abs('d/big.bin'), before.atimeMs / 1000, before.mtimeMs / 1000) // (a Date would round the ms)
    const stale = await collect(c, [wants[2]])
    expect(sha(flat(stale[0].result))).not.toBe(wants[2].hash)
    const again = await collect(c, [{ ...wants[2], unhashedOk: false }])
    expect(again[0].result.error).toBeInstanceOf(BlockUnavailableError)
    c.close()
    await bsrv.stop()
  })

  it('answers a whole batch busy past the request rate limit', async () => {
    const { server, client, serverPeer } = await hostPair()
    const bsrv = new BlockServer({ store: noIndex, data, host: server }, { requestsPerSecond: 1 })
    await bsrv.start()
    const c = new PeerBlockClient(client, serverPeer, 16 * 1024 * KiB)
    const got = await collect(c, bigWants())
    for (const g of got) expect(g.result.error?.message).toMatch(/busy/)
    expect(bsrv.stats.blocksServed).toBe(0)
    c.close()
    await bsrv.stop()
  })

  it('fails every unanswered block when the peer goes away, and frees the bytes in flight', async () => {
    const { server, client, serverPeer } = await hostPair()
    const bsrv = new BlockServer({ store: noIndex, data, host: server })
    bsrv.delayMs = 200
    await bsrv.start()
    const c = new PeerBlockClient(client, serverPeer, 16 * 1024 * KiB)
    const pending = collect(c, bigWants())
    await new Promise((resolve) => setTimeout(resolve, 50))
    expect(c.load).toBeGreaterThan(0)
    c.close()
    const got = await pending
    for (const g of got) expect(g.result.error?.name).toBe('PeerGoneError')
    expect(c.load).toBe(0)
    await bsrv.stop()
  })

  it('a peer that goes away in the middle of a long answer of small blocks ends it quietly (no unhandled rejection)', async () => {
    const files = Array.from({ length: 300 }, (_, i) => ({ rel: `many/s${i}.bin`, body: randomBytes(4 * KiB) }))
    await mkdir(data.abs('many'))
    for (const f of files) await writeFile(data.abs(f.rel), f.body)
    const unhandled: unknown[] = []
    const onUnhandled = (err: unknown): void => { unhandled.push(err) }
    process.on('unhandledRejection', onUnhandled)
    try {
      for (let round = 0; round < 3; round++) {
        const { server, client, serverPeer } = await hostPair()
        const bsrv = new BlockServer({ store: noIndex, data, host: server })
        bsrv.delayMs = 1
        await bsrv.start()
        const c = new PeerBlockClient(client, serverPeer, 16 * 1024 * KiB)
        let arrived = 0
        const done = c.requestMany(files.map((f) => ({ hash: sha(f.body), size: f.body.length, pathHint: f.rel, offsetHint: 0 })), () => {
          // gone after the first coalesced send: the server is still reading the rest
          if (++arrived === 1) c.close()
        })
        await done
        await bsrv.stop()
        await new Promise((resolve) => setTimeout(resolve, 50))
        expect(arrived).toBeGreaterThan(0)
      }
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })

  it('asks a peer that only speaks 1.0.0 block by block', async () => {
    const { server, client, serverPeer, dials } = await hostPair()
    const bsrv = new BlockServer({ store: noIndex, data, host: server })
    await bsrv.start()
    await server.unhandle(BLOCK_PROTOCOL_V2)
    const c = new PeerBlockClient(client, serverPeer, 16 * 1024 * KiB)
    const got = await collect(c, bigWants())
    expect(dials).toEqual([BLOCK_PROTOCOL])
    for (let i = 0; i < 4; i++) expect(flat(got[i].result).equals(big.subarray(i * bs, (i + 1) * bs))).toBe(true)
    expect(c.load).toBe(0)
    c.close()
    await bsrv.stop()
  })
})
