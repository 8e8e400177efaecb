import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { YamuxStream } from '@libp2p/yamux/stream'
import { createLibp2p } from 'libp2p'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import type { Libp2p, Stream } from '@libp2p/interface'
import { windowUpdatesAtHalf } from './yamux-window.js'

const SINK = '/syncmesh/test/yamux-sink/1'
const WINDOW = 256 * 1024

const nodes: Libp2p[] = []
let updatesReceived = 0
const handleWindowUpdate = YamuxStream.prototype.handleWindowUpdate

beforeAll(() => {
  windowUpdatesAtHalf()
  // counted where the sender receives them: the updates the receiving side sent
  YamuxStream.prototype.handleWindowUpdate = function (this: YamuxStream, ...args: Parameters<YamuxStream['handleWindowUpdate']>) {
    updatesReceived++
    handleWindowUpdate.apply(this, args)
  }
})
afterAll(() => { YamuxStream.prototype.handleWindowUpdate = handleWindowUpdate })

afterEach(async () => {
  await Promise.allSettled(nodes.splice(0).map(async (n) => { await n.stop() }))
})

async function startNode (): Promise<Libp2p> {
  const node = await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()]
  })
  nodes.push(node)
  return node
}

/** A receiver that hashes what arrives; `slow`: it yields to the event loop per message. */
async function sink (node: Libp2p, slow: boolean): Promise<{ result: Promise<{ bytes: number, sha: string }> }> {
  let done: (r: { bytes: number, sha: string }) => void = () => {}
  const result = new Promise<{ bytes: number, sha: string }>((resolve) => { done = resolve })
  await node.handle(SINK, async (stream: Stream) => {
    const h = createHash('sha256')
    let bytes = 0
    for await (const chunk of stream) {
      const data = chunk.subarray()
      h.update(data)
      bytes += data.byteLength
      if (slow) await new Promise((resolve) => setImmediate(resolve))
    }
    await stream.close()
    done({ bytes, sha: h.digest('hex') })
  })
  return { result }
}

/** Sends `count` messages of `size` bytes (each distinct), one send per message. */
async function send (stream: Stream, count: number, size: number): Promise<string> {
  const h = createHash('sha256')
  for (let i = 0; i < count; i++) {
    const msg = Buffer.alloc(size, i % 251)
    msg.writeUInt32BE(i, 0)
    h.update(msg)
    if (!stream.send(msg)) await stream.onDrain()
    // one data frame per message, as block responses go out (the sender's queue is empty)
    if (i % 16 === 15) await new Promise((resolve) => setImmediate(resolve))
  }
  await stream.close()
  return h.digest('hex')
}

describe('yamux window updates at half the window', () => {
  it('many small messages: far fewer updates than messages, every byte delivered in order', async () => {
    const a = await startNode()
    const b = await startNode()
    const received = await sink(b, false)
    const stream = await a.dialProtocol(b.getMultiaddrs()[0], SINK)
    const count = 4000
    const size = 4096
    updatesReceived = 0
    const sent = await send(stream, count, size)
    const got = await received.result
    expect(got).toEqual({ bytes: count * size, sha: sent })
    // about one update per half window (128 KiB): 16 MB -> about 125; one per message
    // (the library's own behaviour) would be thousands
    expect(updatesReceived).toBeGreaterThan(0)
    expect(updatesReceived).toBeLessThanOrEqual(Math.ceil(count * size / (WINDOW / 2)) + 8)
  })

  it('a slow reader and large writes: the sender is never stalled for good', async () => {
    const a = await startNode()
    const b = await startNode()
    const received = await sink(b, true)
    const stream = await a.dialProtocol(b.getMultiaddrs()[0], SINK)
    const sent = await send(stream, 96, 1024 * 1024 + 17)
    expect(await received.result).toEqual({ bytes: 96 * (1024 * 1024 + 17), sha: sent })
  })
})
