import { afterEach, describe, expect, it } from 'vitest'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify } from '@libp2p/identify'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { multiaddr } from '@multiformats/multiaddr'
import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import { Mesh, waitFor } from '../sim/harness.js'
import { meshProtector, decodeMeshKeyFile, generateMeshKey } from '../../src/node/pnet.js'
import { encodeInvite, initHome } from '../../src/node/home.js'
import { meshTopic } from '../../src/gossip/announcer.js'
import { encodeAnnouncement } from '../../src/gossip/codec.js'
import type { FileRecord } from '../../src/store/types.js'

let mesh: Mesh | null = null
const extra: Array<Libp2p<{ pubsub: GossipSub }>> = []
afterEach(async () => {
  for (const n of extra.splice(0)) await n.stop()
  await mesh?.cleanup()
  mesh = null
})

async function rawPeer (key: Uint8Array): Promise<Libp2p<{ pubsub: GossipSub }>> {
  const n = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: meshProtector({ key }),
    services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) }
  })
  extra.push(n)
  return n
}

describe('membership', () => {
  it('a node with another mesh key cannot connect and learns nothing', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    await a.start()
    await a.write('secret.txt', 'for the mesh only')
    const outsider = await rawPeer(generateMeshKey())
    await expect(outsider.dial(multiaddr(a.addr()), { signal: AbortSignal.timeout(4000) })).rejects.toThrow()
    expect(a.n.libp2p.getPeers()).toHaveLength(0)
    expect(outsider.getPeers()).toHaveLength(0)
  })

  it('a denied peer is disconnected and refused; the allow-list admits only its peers', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const b = await mesh.add('b')
    const c = await mesh.add('c')
    await a.start()
    await b.start({ join: [a.addr()] })
    await waitFor(() => a.n.libp2p.getPeers().length === 1, 10_000, 'b connected')
    await a.n.deny(b.n.peerId.toString())
    await waitFor(() => a.n.libp2p.getPeers().length === 0, 5_000, 'b disconnected')
    await expect(b.n.join(a.addr())).rejects.toThrow(/cannot reach/)
    await a.write('after-deny.txt', 'not for b')
    await b.n.catchUp.syncAll()
    expect(await b.read('after-deny.txt')).toBeNull()
    // persisted: the list survives a restart
    expect(JSON.parse(await readFile(join(a.home, 'acl.json'), 'utf8')).deny).toContain(b.n.peerId.toString())
    await a.stop()
    await a.start()
    await expect(b.n.join(a.addr())).rejects.toThrow(/cannot reach/)
    // allow-list: only c
    await c.start()
    await a.n.allow(c.n.peerId.toString())
    expect(await c.n.join(a.addr())).toBe(a.n.peerId.toString())
  })

  it('an invite makes a home that joins the mesh on its first start', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    await a.start()
    await a.write('welcome.txt', 'hi')
    const key = decodeMeshKeyFile(await readFile(join(a.home, 'mesh.key'), 'utf8'))
    const token = encodeInvite(key, [a.addr()])
    const home = join(mesh.root, 'invited')
    await initHome(home, { invite: token })
    const { SimNode } = await import('../sim/harness.js')
    const n = new SimNode('invited', home, {})
    mesh.nodes.push(n)
    await n.start()
    await waitFor(async () => (await n.read('welcome.txt')) === 'hi', 15_000, 'invited node synced')
    await expect(initHome(join(mesh.root, 'bad'), { invite: 'syncmesh-invite-1:garbage' })).rejects.toThrow(/not a syncmesh invite/)
    await rm(join(mesh.root, 'bad'), { recursive: true, force: true })
  })
})

describe('hostile announcements', () => {
  it('rejects traversal, oversize, malformed and random announcements, keeps working, and disconnects the sender', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const b = await mesh.add('b')
    await a.start()
    await b.start({ join: [a.addr()] })
    const key = decodeMeshKeyFile(await readFile(join(a.home, 'mesh.key'), 'utf8'))
    const evil = await rawPeer(key)
    const topic = meshTopic(key)
    evil.services.pubsub.subscribe(topic)
    await evil.dial(multiaddr(a.addr()))
    await waitFor(() => evil.services.pubsub.getSubscribers(topic).length > 0, 10_000, 'a subscribed as seen by evil')
    const base: FileRecord = {
      path: 'x.txt', type: 'file', mode: 0o644, size: 1, mtimeMs: 1, blockSize: 128 * 1024, blocks: ['00'.repeat(32)], hash: '11'.repeat(32), target: '', deleted: false,
      version: { vv: { aaaaaaaaaaaaa: 1 }, hlc: { wall: 1, logical: 0 }, node: 'aaaaaaaaaaaaa' }
    }
    const valid = encodeAnnouncement({ origin: 'aaaaaaaaaaaaa', indexId: 'x', firstSeq: 1, lastSeq: 1, records: [base] })
    const hostile: Uint8Array[] = [
      // path traversal: patch the path bytes of a valid message
      Buffer.from(Buffer.from(valid).toString('latin1').replace('x.txt', '../xx'), 'latin1'),
      randomBytes(3 * 1024 * 1024),
      Uint8Array.of(0x0a, 0xff, 0xff, 0xff, 0x0f),
      randomBytes(200),
      randomBytes(1000)
    ]
    for (const msg of hostile) await evil.services.pubsub.publish(topic, msg).catch(() => {})
    await waitFor(() => a.n.announcer.stats.rejected >= 5, 10_000, 'a rejected the hostile messages')
    await waitFor(() => !a.n.libp2p.getPeers().some((p) => p.equals(evil.peerId)), 10_000, 'evil disconnected')
    expect(await a.n.store.get('../xx')).toBeUndefined()
    // still works
    await a.write('still-ok.txt', 'yes')
    await waitFor(async () => (await b.read('still-ok.txt')) === 'yes', 10_000, 'replication still works')
  })

  it('never writes outside the data folder through a symlink a peer made', async () => {
    mesh = await Mesh.create()
    const a = await mesh.add('a')
    const b = await mesh.add('b')
    await a.start()
    await b.start({ join: [a.addr()] })
    const outside = join(mesh.root, 'outside')
    await mkdir(outside)
    await a.write('normal.txt', 'payload')
    await mesh.waitConverged()
    const normal = (await a.n.store.get('normal.txt'))!
    const v = (n: number): FileRecord['version'] => ({ vv: { zzzzzzzzzzzzz: n }, hlc: { wall: Date.now(), logical: n }, node: 'zzzzzzzzzzzzz' })
    const link: FileRecord = { ...normal, path: 'escape', type: 'symlink', size: 0, mtimeMs: 0, blockSize: 0, blocks: [], hash: createHash('sha256').update(outside).digest('hex'), target: outside, version: v(1) }
    const evil: FileRecord = { ...normal, path: 'escape/pwned.txt', version: v(2) }
    await b.n.store.applyRemote([link, evil])
    await waitFor(async () => /not writing escape\/pwned\.txt/.test((await b.n.status()).lastError ?? ''), 10_000, 'b refused to write through the symlink')
    expect(await readdir(outside)).toEqual([])
  })
})

