import { createHash, randomBytes } from 'node:crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { WireError as GossipWireError } from '../gossip/codec.js'
import {
  TRANSFER_LIMITS,
  WireError,
  decodeBatchRequest,
  decodeBlockFrame,
  decodeBlockRequest,
  decodeBlockResponse,
  encodeBatchRequest,
  encodeBlockFrame,
  encodeBlockRequest,
  encodeBlockResponse
} from './codec.js'
import * as pb from './pb/blocks.js'
import type { BlockRequest, BlockResponse, Want } from './codec.js'

const HASH = createHash('sha256').update('block').digest('hex')
const MiB = 1024 * 1024

function request (patch: Partial<BlockRequest> = {}): BlockRequest {
  return { id: 7, hash: HASH, offsetHint: 3 * 128 * 1024, size: 128 * 1024, pathHint: 'a/b.bin', ...patch }
}

function wireError (fn: () => unknown): WireError {
  try {
    fn()
  } catch (err) {
    expect(err).toBeInstanceOf(WireError)
    expect((err as Error).name).toBe('WireError')
    expect((err as Error).message).not.toMatch(/\n/)
    return err as WireError
  }
  throw new Error('expected a WireError, nothing was thrown')
}

function mulberry32 (seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = seed
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe('BlockRequest', () => {
  it('round trips', () => {
    for (const r of [
      request(),
      request({ id: 0, offsetHint: 0, size: 1, pathHint: '' }),
      request({ id: 0xffffffff, offsetHint: Number.MAX_SAFE_INTEGER, size: 16 * MiB })
    ]) {
      expect(decodeBlockRequest(encodeBlockRequest(r))).toEqual(r)
    }
  })

  it('accepts a Uint8ArrayList', () => {
    const bytes = encodeBlockRequest(request())
    const list = new Uint8ArrayList(bytes.subarray(0, 10), bytes.subarray(10))
    expect(decodeBlockRequest(list)).toEqual(request())
  })

  it('uses the same WireError class as the gossip codec', () => {
    expect(WireError).toBe(GossipWireError)
  })

  const bad: Array<[string, () => Uint8Array, RegExp]> = [
    ['a size over 16 MiB', () => pb.BlockRequest.encode({ hash: new Uint8Array(32), size: 16 * MiB + 1 }), /size 16777217/],
    ['a size of 0', () => pb.BlockRequest.encode({ hash: new Uint8Array(32), size: 0 }), /size 0/],
    ['a hash of 31 bytes', () => pb.BlockRequest.encode({ hash: new Uint8Array(31), size: 1 }), /hash is not 32 bytes/],
    ['a missing hash', () => pb.BlockRequest.encode({ size: 1 }), /hash is not 32 bytes/],
    ['an invalid path hint', () => pb.BlockRequest.encode({ hash: new Uint8Array(32), size: 1, pathHint: '../x' }), /pathHint: invalid path "..\/x"/],
    ['a reserved path hint', () => pb.BlockRequest.encode({ hash: new Uint8Array(32), size: 1, pathHint: '.syncmesh/p' }), /reserved/],
    ['bytes that do not parse', () => Uint8Array.from([0x12, 0x20, 0x00]), /does not parse/],
    ['an offset beyond safe integers', () => Uint8Array.from([0x18, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), /./],
    ['a message over the limit', () => new Uint8Array(TRANSFER_LIMITS.maxRequestBytes + 1), /limit/]
  ]
  for (const [name, make, why] of bad) {
    it(`decode rejects ${name}`, () => {
      const err = wireError(() => decodeBlockRequest(make()))
      expect(err.message).toMatch(/^block request: /)
      expect(err.message).toMatch(why)
    })
  }

  it('encode rejects invalid requests', () => {
    wireError(() => encodeBlockRequest(request({ hash: HASH.toUpperCase() })))
    wireError(() => encodeBlockRequest(request({ hash: HASH.slice(2) })))
    wireError(() => encodeBlockRequest(request({ size: 16 * MiB + 1 })))
    wireError(() => encodeBlockRequest(request({ size: 1.5 })))
    wireError(() => encodeBlockRequest(request({ id: -1 })))
    wireError(() => encodeBlockRequest(request({ id: 2 ** 32 })))
    wireError(() => encodeBlockRequest(request({ offsetHint: -1 })))
    wireError(() => encodeBlockRequest(request({ pathHint: '/abs' })))
  })
})

describe('BlockResponse', () => {
  it('round trips every status', () => {
    const data = Uint8Array.from({ length: 1000 }, (_, i) => i & 255)
    const cases: BlockResponse[] = [
      { id: 1, status: 'ok', data, message: '' },
      { id: 2, status: 'ok', data: new Uint8Array(0), message: '' },
      { id: 3, status: 'not-found', data: new Uint8Array(0), message: '' },
      { id: 4, status: 'error', data: new Uint8Array(0), message: 'read failed: EIO' },
      { id: 0xffffffff, status: 'busy', data: new Uint8Array(0), message: 'try later' }
    ]
    for (const r of cases) {
      const back = decodeBlockResponse(encodeBlockResponse(r))
      expect({ ...back, data: Uint8Array.from(back.data) }).toEqual({ ...r, data: Uint8Array.from(r.data) })
    }
  })

  it('round trips a full 16 MiB block without copying it on decode', () => {
    const data = new Uint8Array(16 * MiB)
    data[0] = 1
    data[data.length - 1] = 2
    const bytes = encodeBlockResponse({ id: 9, status: 'ok', data, message: '' })
    expect(bytes.byteLength).toBeLessThanOrEqual(TRANSFER_LIMITS.maxResponseBytes)
    const back = decodeBlockResponse(bytes)
    expect(back.data.byteLength).toBe(16 * MiB)
    expect(back.data.buffer).toBe(bytes.buffer)
    expect(back.data[0]).toBe(1)
    expect(back.data[back.data.length - 1]).toBe(2)
    // a view: writing through the input shows in data
    bytes[bytes.length - 1] = 3
    expect(back.data[back.data.length - 1]).toBe(3)
  })

  it('does not copy data from a subarray of a larger buffer either', () => {
    const frame = encodeBlockResponse({ id: 1, status: 'ok', data: new Uint8Array(100).fill(5), message: '' })
    const big = new Uint8Array(frame.length + 50)
    big.set(frame, 20)
    const view = big.subarray(20, 20 + frame.length)
    const back = decodeBlockResponse(view)
    expect(back.data.buffer).toBe(big.buffer)
    expect([...back.data]).toEqual(new Array(100).fill(5))
  })

  it('replaces control characters in decoded messages', () => {
    const bytes = pb.BlockResponse.encode({ id: 1, status: pb.Status.ERROR, message: 'bad\nline\x1b[31m' })
    expect(decodeBlockResponse(bytes).message).toBe('bad line [31m')
  })

  const bad: Array<[string, () => Uint8Array, RegExp]> = [
    ['data over 16 MiB', () => pb.BlockResponse.encode({ id: 1, data: new Uint8Array(16 * MiB + 1) }), /data is 16777217 bytes/],
    ['a status out of range', () => Uint8Array.from([0x08, 0x01, 0x10, 0x09]), /status out of range/],
    ['data with a non-ok status', () => pb.BlockResponse.encode({ status: pb.Status.NOT_FOUND, data: new Uint8Array(1) }), /not-found carries data/],
    ['a message over 1024 bytes', () => pb.BlockResponse.encode({ status: pb.Status.ERROR, message: 'm'.repeat(1025) }), /longer than 1024/],
    ['bytes that do not parse', () => Uint8Array.from([0x1a, 0x05]), /does not parse/],
    ['a frame over the limit', () => new Uint8Array(TRANSFER_LIMITS.maxResponseBytes + 1), /limit/]
  ]
  for (const [name, make, why] of bad) {
    it(`decode rejects ${name}`, () => {
      const err = wireError(() => decodeBlockResponse(make()))
      expect(err.message).toMatch(/^block response: /)
      expect(err.message).toMatch(why)
    })
  }

  it('encode rejects invalid responses', () => {
    wireError(() => encodeBlockResponse({ id: 1, status: 'ok', data: new Uint8Array(16 * MiB + 1), message: '' }))
    wireError(() => encodeBlockResponse({ id: 1, status: 'gone' as 'ok', data: new Uint8Array(0), message: '' }))
    wireError(() => encodeBlockResponse({ id: 1, status: 'busy', data: new Uint8Array(1), message: '' }))
    wireError(() => encodeBlockResponse({ id: 1, status: 'error', data: new Uint8Array(0), message: 'x'.repeat(2000) }))
    wireError(() => encodeBlockResponse({ id: 1.5, status: 'ok', data: new Uint8Array(0), message: '' }))
  })
})

describe('random input', () => {
  it('never throws anything but WireError on random bytes', () => {
    const rand = mulberry32(0xb10c)
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from({ length: Math.floor(rand() * 200) }, () => Math.floor(rand() * 256))
      for (const decode of [decodeBlockRequest, decodeBlockResponse]) {
        try {
          decode(bytes)
        } catch (err) {
          expect(err).toBeInstanceOf(WireError)
        }
      }
    }
  })

  it('never throws anything but WireError on mutated valid messages', () => {
    const rand = mulberry32(99)
    const valid = [
      encodeBlockRequest(request()),
      encodeBlockResponse({ id: 5, status: 'error', data: new Uint8Array(0), message: 'oops' }),
      encodeBlockResponse({ id: 6, status: 'ok', data: new Uint8Array(64).fill(9), message: '' })
    ]
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from(valid[i % valid.length])
      bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256)
      for (const decode of [decodeBlockRequest, decodeBlockResponse]) {
        try {
          decode(bytes)
        } catch (err) {
          expect(err).toBeInstanceOf(WireError)
        }
      }
    }
  })
})

describe('protocol 2: BatchRequest and block frames', () => {
  const want = (patch: Partial<Want> = {}): Want => ({ hash: HASH, size: 128 * 1024, pathHint: 'a/b.bin', offsetHint: 128 * 1024, ...patch })

  it('round trips a batch request', () => {
    const r = { id: 9, wants: [want(), want({ pathHint: '', offsetHint: 0, size: 1 }), want({ unhashedOk: true })] }
    expect(decodeBatchRequest(encodeBatchRequest(r))).toEqual(r)
    expect(decodeBatchRequest(new Uint8ArrayList(encodeBatchRequest(r)))).toEqual(r)
  })

  it('encodes a batch request to the bytes protons writes for it', () => {
    const segment = fc.stringMatching(/^[a-zA-Z0-9_\- éü]{1,12}$/).filter((x) => x.trim() === x && x !== '.' && x !== '..' && x.toLowerCase() !== '.syncmesh')
    const wantArb = fc.record({
      hash: fc.uint8Array({ minLength: 32, maxLength: 32 }).map((h) => Buffer.from(h).toString('hex')),
      size: fc.oneof(fc.constantFrom(1, 127, 128, 4096, 16 * MiB), fc.integer({ min: 1, max: 16 * MiB })),
      pathHint: fc.oneof(fc.constant(''), fc.array(segment, { minLength: 1, maxLength: 3 }).map((x) => x.join('/'))),
      offsetHint: fc.oneof(fc.constantFrom(0, 127, 128, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.nat({ max: Number.MAX_SAFE_INTEGER })),
      unhashedOk: fc.option(fc.boolean(), { nil: undefined })
    }).map((w): Want => (w.unhashedOk === undefined ? { hash: w.hash, size: w.size, pathHint: w.pathHint, offsetHint: w.offsetHint } : w as Want))
    fc.assert(fc.property(fc.nat({ max: 2 ** 32 - 1 }), fc.array(wantArb, { minLength: 1, maxLength: 4 }), (id, wants) => {
      const expected = pb.BatchRequest.encode({ id, wants: wants.map((w) => ({ hash: new Uint8Array(Buffer.from(w.hash, 'hex')), size: w.size, pathHint: w.pathHint, offsetHint: w.offsetHint, unhashedOk: w.unhashedOk === true })) })
      expect(Buffer.from(encodeBatchRequest({ id, wants })).toString('hex')).toBe(Buffer.from(expected).toString('hex'))
    }), { numRuns: 3000 })
    for (const hash of [HASH.toUpperCase(), `${HASH.slice(0, 63)}g`, HASH.slice(0, 62), `${HASH}00`, `${HASH.slice(0, 63)}\u0100`]) {
      wireError(() => encodeBatchRequest({ id: 1, wants: [want({ hash })] }))
    }
  })

  it('refuses empty, too many, too large and invalid batches', () => {
    wireError(() => encodeBatchRequest({ id: 1, wants: [] }))
    wireError(() => encodeBatchRequest({ id: 1, wants: Array.from({ length: TRANSFER_LIMITS.maxWants + 1 }, () => want({ size: 1 })) }))
    wireError(() => encodeBatchRequest({ id: 1, wants: Array.from({ length: 5 }, () => want({ size: 16 * MiB })) }))
    wireError(() => encodeBatchRequest({ id: 1, wants: [want({ pathHint: '../x' })] }))
    wireError(() => encodeBatchRequest({ id: 1, wants: [want({ hash: 'zz' })] }))
    // built by hand past the encoder's checks
    const tooMany = pb.BatchRequest.encode({ id: 1, wants: Array.from({ length: TRANSFER_LIMITS.maxWants + 5 }, () => ({ hash: new Uint8Array(32), size: 1, pathHint: '', offsetHint: 0, unhashedOk: false })) })
    wireError(() => decodeBatchRequest(tooMany))
    wireError(() => decodeBatchRequest(pb.BatchRequest.encode({ id: 1, wants: [{ hash: new Uint8Array(31), size: 1, pathHint: '', offsetHint: 0, unhashedOk: false }] })))
    wireError(() => decodeBatchRequest(pb.BatchRequest.encode({ id: 1, wants: [] })))
  })

  it('round trips a block frame without copying the data', () => {
    const data = randomBytes(MiB)
    const frame = encodeBlockFrame({ id: 3, index: 7, status: 'ok', message: '' }, data)
    // the data is a part of the frame, not a copy
    expect([...frame].some((c) => c === data)).toBe(true)
    const joined = frame.subarray()
    const { header, data: got } = decodeBlockFrame(joined)
    expect(header).toEqual({ id: 3, index: 7, status: 'ok', size: MiB, message: '' })
    expect(Buffer.from(got.subarray()).equals(data)).toBe(true)
    // decoding a list keeps views into its chunks
    const d2 = decodeBlockFrame(frame)
    expect([...d2.data][0].buffer).toBe(data.buffer)
  })

  it('round trips a frame without data, and refuses data on a non-ok status', () => {
    const { header, data } = decodeBlockFrame(encodeBlockFrame({ id: 1, index: 0, status: 'not-found', message: 'x\ny' }, null))
    expect(header).toEqual({ id: 1, index: 0, status: 'not-found', size: 0, message: 'x y' })
    expect(data.byteLength).toBe(0)
    wireError(() => encodeBlockFrame({ id: 1, index: 0, status: 'busy', message: '' }, new Uint8Array(3)))
  })

  it('refuses frames whose header lies about the data or does not parse', () => {
    const h = pb.BlockHeader.encode({ id: 1, index: 0, status: pb.Status.OK, size: 10, message: '' })
    const frame = (header: Uint8Array, data: Uint8Array): Uint8Array => Buffer.concat([Buffer.from([header.byteLength]), header, data])
    wireError(() => decodeBlockFrame(frame(h, new Uint8Array(9))))
    wireError(() => decodeBlockFrame(frame(h, new Uint8Array(11))))
    expect(decodeBlockFrame(frame(h, new Uint8Array(10))).data.byteLength).toBe(10)
    wireError(() => decodeBlockFrame(new Uint8Array(0)))
    wireError(() => decodeBlockFrame(Uint8Array.from([0x80, 0x80, 0x01])))
    wireError(() => decodeBlockFrame(Uint8Array.from([50, 1, 2])))
    wireError(() => decodeBlockFrame(frame(pb.BlockHeader.encode({ id: 1, index: TRANSFER_LIMITS.maxWants, status: pb.Status.OK, size: 0, message: '' }), new Uint8Array(0))))
    wireError(() => decodeBlockFrame(frame(pb.BlockHeader.encode({ id: 1, index: 0, status: pb.Status.NOT_FOUND, size: 2, message: '' }), new Uint8Array(2))))
  })

  it('never throws anything but WireError on random frames', () => {
    const rnd = mulberry32(42)
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from({ length: Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256))
      try { decodeBlockFrame(bytes) } catch (err) { expect(err).toBeInstanceOf(WireError) }
      try { decodeBatchRequest(bytes) } catch (err) { expect(err).toBeInstanceOf(WireError) }
    }
  })
})
