import { randomBytes } from 'node:crypto'
import { lpStream, streamPair } from '@libp2p/utils'
import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it } from 'vitest'
import { FrameError, readFrames, writeFrame } from './frames.js'

const open: Stream[] = []
afterEach(() => { for (const s of open.splice(0)) s.abort(new Error('test over')) })

async function pair (): Promise<[Stream, Stream]> {
  const p = await streamPair({ delay: 0 })
  open.push(...p)
  return p
}

/** Frames read from `stream` until `n` arrived (or it ends). */
function collect (stream: Stream, max: number, n: number): { frames: Uint8Array[], done: Promise<Error | null> } {
  const frames: Uint8Array[] = []
  const done = new Promise<Error | null>((resolve) => {
    readFrames(stream, max, (f) => {
      frames.push(f.subarray())
      if (frames.length === n) resolve(null)
    }).catch((err: Error) => { resolve(err) })
  })
  return { frames, done }
}

describe('length-prefixed frames read as they arrive', () => {
  it('reads what lpStream writes, and lpStream reads what writeFrame writes', async () => {
    const [a, b] = await pair()
    const payloads = [new Uint8Array(0), randomBytes(1), randomBytes(127), randomBytes(128), randomBytes(300_000)]
    const got = collect(b, 1 << 20, payloads.length)
    const lp = lpStream(a)
    for (const p of payloads) await lp.write(p)
    expect(await got.done).toBeNull()
    expect(got.frames.map((f) => Buffer.from(f).toString('hex'))).toEqual(payloads.map((p) => Buffer.from(p).toString('hex')))

    const [c, d] = await pair()
    const reader = lpStream(d)
    for (const p of payloads) await writeFrame(c, new Uint8ArrayList(p.subarray(0, 1), p.subarray(1)))
    for (const p of payloads) expect(Buffer.from((await reader.read()).subarray()).equals(Buffer.from(p))).toBe(true)
  })

  it('takes a length split over messages, and many frames in one message', async () => {
    const [a, b] = await pair()
    const big = randomBytes(200) // a two-byte length: 0xc8 0x01
    const got = collect(b, 1000, 4)
    a.send(Uint8Array.of(0xc8))
    a.send(Uint8Array.of(0x01, ...big.subarray(0, 50)))
    // the rest of it, then three small frames, all in one message
    a.send(Uint8Array.of(...big.subarray(50), 1, 7, 2, 8, 9, 0))
    expect(await got.done).toBeNull()
    expect(got.frames.map((f) => Buffer.from(f).toString('hex'))).toEqual([big.toString('hex'), '07', '0809', ''])
  })

  it('refuses a frame over the limit and aborts the stream', async () => {
    const [a, b] = await pair()
    const got = collect(b, 1000, 1)
    a.send(Uint8Array.of(0xe9, 0x07)) // 1001
    const err = await got.done
    expect(err).toBeInstanceOf(FrameError)
    expect(err?.message).toMatch(/1001 bytes over the limit of 1000/)
    expect(b.status).not.toBe('open')
  })

  it('refuses an endless length prefix', async () => {
    const [a, b] = await pair()
    const got = collect(b, 1000, 1)
    a.send(Uint8Array.of(0x80, 0x80, 0x80))
    expect((await got.done)?.message).toMatch(/length over the limit/)
  })

  it('ends with an error when the peer closes (a frame half sent is not delivered)', async () => {
    const [a, b] = await pair()
    const got = collect(b, 1000, 2)
    a.send(Uint8Array.of(1, 5, 3, 1))
    await a.close()
    const err = await got.done
    expect(err).toBeInstanceOf(Error)
    expect(got.frames.map((f) => Buffer.from(f).toString('hex'))).toEqual(['05'])
  })

  it('a throw while handling a frame ends the reading with it and aborts the stream', async () => {
    const [a, b] = await pair()
    const done = readFrames(b, 1000, () => { throw new Error('undecodable') }).catch((err: Error) => err)
    a.send(Uint8Array.of(1, 5))
    expect((await done).message).toBe('undecodable')
    expect(b.status).not.toBe('open')
  })

  it('a stream closed before the reading begins ends it at once', async () => {
    const [a, b] = await pair()
    b.abort(new Error('gone'))
    await expect(readFrames(b, 1000, () => {})).rejects.toThrow(/stream (aborted|reset|closed)/)
    a.abort(new Error('test over'))
  })
})
