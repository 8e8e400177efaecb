import { randomBytes } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { yamux } from '@libp2p/yamux'
import { createLibp2p } from 'libp2p'
import { afterEach, describe, expect, it } from 'vitest'
import {
  MeshKeyError,
  decodeMeshKeyFile,
  encodeMeshKeyFile,
  generateMeshKey,
  meshProtector
} from './pnet.js'
import type { Libp2p } from '@libp2p/interface'

const ECHO = '/syncmesh/test/pnet-echo/1'
const MSG_SIZE = 8 * 1024 * 1024
const LP_OPTS = { maxDataLength: 16 * 1024 * 1024, maxBufferSize: 32 * 1024 * 1024 }

const nodes: Libp2p[] = []

async function startNode (key: Uint8Array): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: meshProtector({ key })
  })
  nodes.push(node)
  return node
}

afterEach(async () => {
  const toStop = nodes.splice(0)
  await Promise.allSettled(toStop.map(async (n) => { await n.stop() }))
})

describe('meshProtector over real libp2p', () => {
  it('same key: connects and echoes 3 x 8 MiB byte-identical', async () => {
    const key = generateMeshKey()
    const a = await startNode(key)
    const b = await startNode(key)

    await b.handle(ECHO, async (stream) => {
      const lp = lpStream(stream, LP_OPTS)
      try {
        for (;;) {
          const msg = await lp.read()
          await lp.write(msg)
        }
      } catch {
        // remote closed its end (or the test ended): stop echoing
      }
      await stream.close().catch(() => {})
    })

    const stream = await a.dialProtocol(b.getMultiaddrs()[0], ECHO)
    const lp = lpStream(stream, LP_OPTS)
    const sent = [0, 1, 2].map(() => new Uint8Array(randomBytes(MSG_SIZE)))
    const received: Uint8Array[] = []
    const start = performance.now()
    for (const msg of sent) {
      await lp.write(msg)
      received.push((await lp.read()).subarray())
    }
    const seconds = (performance.now() - start) / 1000
    const mb = (sent.length * MSG_SIZE) / 1e6
    console.log(`pnet echo: ${sent.length} x 8 MiB there and back in ${seconds.toFixed(3)} s = ${(2 * mb / seconds).toFixed(0)} MB/s total (${(mb / seconds).toFixed(0)} MB/s each way; noise+yamux+lp over 127.0.0.1)`)

    for (let i = 0; i < sent.length; i++) {
      expect(received[i].byteLength).toBe(MSG_SIZE)
      // compare as Buffers: far faster than a deep equality on 8M elements
      expect(Buffer.compare(Buffer.from(received[i].buffer, received[i].byteOffset, received[i].byteLength), Buffer.from(sent[i].buffer))).toBe(0)
    }
    await stream.close()
  }, 60_000)

  it('different keys: dial rejects and no connection is listed', async () => {
    const a = await startNode(generateMeshKey())
    const b = await startNode(generateMeshKey())

    const start = Date.now()
    await expect(a.dial(b.getMultiaddrs()[0], { signal: AbortSignal.timeout(4000) })).rejects.toThrow()
    expect(Date.now() - start).toBeLessThan(5000)

    expect(a.getConnections(b.peerId)).toHaveLength(0)
    expect(b.getConnections(a.peerId)).toHaveLength(0)
    expect(a.getConnections()).toHaveLength(0)
    expect(b.getConnections()).toHaveLength(0)
  }, 20_000)
})

describe('mesh key file and validation', () => {
  it('round-trips through encode/decode', () => {
    const key = generateMeshKey()
    expect(key).toBeInstanceOf(Uint8Array)
    expect(key.byteLength).toBe(32)
    const text = encodeMeshKeyFile(key)
    expect(text).toMatch(/^syncmesh-mesh-key\/1 [0-9a-f]{64}\n$/)
    expect(decodeMeshKeyFile(text)).toEqual(key)
  })

  it('rejects bad text with a MeshKeyError', () => {
    const hex = 'ab'.repeat(32)
    const bad = [
      '',
      '\n',
      hex,
      `syncmesh-mesh-key/1 ${hex.slice(2)}\n`, // 31 bytes
      `syncmesh-mesh-key/1 ${hex}00\n`, // 33 bytes
      `syncmesh-mesh-key/1 ${hex.toUpperCase()}\n`,
      `syncmesh-mesh-key/2 ${hex}\n`,
      `syncmesh-mesh-key/1  ${hex}\n`,
      `syncmesh-mesh-key/1 ${hex}\n\n`,
      `syncmesh-mesh-key/1 ${'zz'.repeat(32)}\n`,
      `/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`
    ]
    for (const text of bad) {
      let caught: unknown
      try {
        decodeMeshKeyFile(text)
      } catch (err) {
        caught = err
      }
      expect(caught, JSON.stringify(text)).toBeInstanceOf(MeshKeyError)
      const err = caught as MeshKeyError
      expect(err.name).toBe('MeshKeyError')
      expect(err.message).toBe("mesh.key: not a syncmesh mesh key (expected 'syncmesh-mesh-key/1 <64 hex digits>')")
      expect(err.message).not.toContain('\n')
    }
  })

  it('meshProtector and encodeMeshKeyFile reject a key that is not 32 bytes', () => {
    expect(() => meshProtector({ key: new Uint8Array(31) })).toThrow(MeshKeyError)
    expect(() => meshProtector({ key: new Uint8Array(31) })).toThrow(/exactly 32 bytes, got 31/)
    expect(() => meshProtector({ key: new Uint8Array(33) })).toThrow(MeshKeyError)
    expect(() => encodeMeshKeyFile(new Uint8Array(31))).toThrow(MeshKeyError)
    expect(() => meshProtector({ key: new Uint8Array(32) })).not.toThrow()
  })
})
