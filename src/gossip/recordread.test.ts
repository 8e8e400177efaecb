import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as pb from './pb/gossip.js'
import { readAnnouncement, readIndexResponse } from './recordread.js'

const LIMITS = { records: 50, vv: 5 }
const PB_LIMITS = { limits: { records: LIMITS.records, records$: { vv: LIMITS.vv } } }

const bytes = (max: number): fc.Arbitrary<Uint8Array<ArrayBuffer>> => fc.uint8Array({ maxLength: max }).map((b) => new Uint8Array(b))
const uint32 = fc.oneof(fc.constantFrom(0, 1, 127, 128, 2 ** 31, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 }))
const safeNat = fc.oneof(fc.constantFrom(0, 1, 127, 128, 2 ** 28, 2 ** 35, 2 ** 49, Number.MAX_SAFE_INTEGER), fc.nat({ max: Number.MAX_SAFE_INTEGER }))
// sint64 values whose zig-zag is a safe integer (the hand decoder's range; past it protons decides)
const mtime = fc.oneof(fc.constantFrom(0, -1, 1, -(2 ** 52), 2 ** 52 - 1, 1_763_000_000_000), fc.integer({ min: -(2 ** 52), max: 2 ** 52 - 1 }))
const text = fc.oneof(fc.string({ maxLength: 30 }), fc.string({ unit: 'binary', maxLength: 12 }), fc.constant(''), fc.constant('\ufeffbom'))

const record: fc.Arbitrary<pb.Record> = fc.record({
  path: text,
  type: fc.constantFrom(pb.FileType.FILE, pb.FileType.DIR, pb.FileType.SYMLINK, pb.FileType.META),
  mode: uint32,
  size: safeNat,
  mtimeMs: mtime,
  blockSize: uint32,
  blocks: fc.array(bytes(40), { maxLength: 3 }),
  hash: bytes(40),
  target: text,
  deleted: fc.boolean(),
  vv: fc.array(fc.record({ node: text, counter: safeNat }), { maxLength: LIMITS.vv }),
  hlcWall: safeNat,
  hlcLogical: uint32,
  node: text
})

const announcement: fc.Arbitrary<pb.Announcement> = fc.record({
  origin: text,
  indexId: text,
  firstSeq: safeNat,
  lastSeq: safeNat,
  completeAfter: fc.option(safeNat, { nil: undefined }),
  records: fc.array(record, { maxLength: 6 })
}).map((a) => (a.completeAfter === undefined ? { origin: a.origin, indexId: a.indexId, firstSeq: a.firstSeq, lastSeq: a.lastSeq, records: a.records } : a))

const indexResponse: fc.Arbitrary<pb.IndexResponse> = fc.record({
  indexId: text,
  seq: safeNat,
  records: fc.array(record, { maxLength: 6 }),
  done: fc.boolean()
})

/** Bytes as hex, recursively: protons and the hand decoder may give different views. */
function plain (v: unknown): unknown {
  if (v instanceof Uint8Array) return `bytes:${Buffer.from(v).toString('hex')}`
  if (Array.isArray(v)) return v.map(plain)
  if (v != null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plain(x)]))
  return v
}

const THREW = Symbol('threw')
function protons<T> (fn: () => T): T | typeof THREW {
  try {
    return fn()
  } catch {
    return THREW
  }
}

/** A damaged copy of `b`: a byte changed, a cut, a byte put in, or a stretch repeated. */
const damaged = (b: Uint8Array): fc.Arbitrary<Uint8Array> => fc.tuple(fc.nat({ max: 3 }), fc.nat(), fc.nat({ max: 255 }), fc.nat({ max: 8 })).map(([how, at, byte, len]) => {
  const i = b.length === 0 ? 0 : at % b.length
  const x = Array.from(b)
  if (how === 0 && x.length > 0) x[i] = byte
  else if (how === 1) x.length = i
  else if (how === 2) x.splice(i, 0, byte)
  else x.splice(i, 0, ...x.slice(i, i + len))
  return new Uint8Array(x)
})

describe('hand decoders of announcements and index responses', () => {
  it('read what protons writes, as protons reads it', () => {
    fc.assert(fc.property(announcement, (a) => {
      const b = pb.Announcement.encode(a)
      const got = readAnnouncement(b, LIMITS)
      expect(got).not.toBeNull()
      expect(plain(got)).toEqual(plain(pb.Announcement.decode(b, PB_LIMITS)))
    }), { numRuns: 1500 })
    fc.assert(fc.property(indexResponse, (m) => {
      const b = pb.IndexResponse.encode(m)
      const got = readIndexResponse(b, LIMITS)
      expect(got).not.toBeNull()
      expect(plain(got)).toEqual(plain(pb.IndexResponse.decode(b, PB_LIMITS)))
    }), { numRuns: 1500 })
  })

  it('on damaged or arbitrary bytes, give what protons gives, or leave it to protons (null)', () => {
    const same = (read: (b: Uint8Array) => unknown, slow: (b: Uint8Array) => unknown) => (b: Uint8Array): void => {
      const fast = read(b)
      if (fast === null) return
      const s = protons(() => slow(b))
      expect(s).not.toBe(THREW)
      expect(plain(fast)).toEqual(plain(s))
    }
    const ann = same((b) => readAnnouncement(b, LIMITS), (b) => pb.Announcement.decode(b, PB_LIMITS))
    const idx = same((b) => readIndexResponse(b, LIMITS), (b) => pb.IndexResponse.decode(b, PB_LIMITS))
    fc.assert(fc.property(announcement.chain((a) => damaged(pb.Announcement.encode(a))), ann), { numRuns: 4000 })
    fc.assert(fc.property(indexResponse.chain((m) => damaged(pb.IndexResponse.encode(m))), idx), { numRuns: 4000 })
    fc.assert(fc.property(bytes(300), (b) => { ann(b); idx(b) }), { numRuns: 4000 })
  })

  it('leave to protons what it reads its own way or refuses', () => {
    const rec: pb.Record = { path: 'a', type: pb.FileType.FILE, mode: 1, size: 2, mtimeMs: 3, blockSize: 4, blocks: [], hash: new Uint8Array(0), target: '', deleted: false, vv: [{ node: 'n', counter: 1 }], hlcWall: 5, hlcLogical: 6, node: 'n' }
    // one record past the limit, one version entry past it
    expect(readIndexResponse(pb.IndexResponse.encode({ indexId: 'x', seq: 1, records: Array.from({ length: LIMITS.records + 1 }, () => rec), done: true }), LIMITS)).toBeNull()
    expect(readIndexResponse(pb.IndexResponse.encode({ indexId: 'x', seq: 1, records: [{ ...rec, vv: Array.from({ length: LIMITS.vv + 1 }, (_, i) => ({ node: `n${i}`, counter: 1 })) }], done: true }), LIMITS)).toBeNull()
    // a non-canonical varint (seq 1 written in two bytes), a negative int64, a string of invalid UTF-8
    expect(readIndexResponse(new Uint8Array([0x10, 0x81, 0x00]), LIMITS)).toBeNull()
    expect(readIndexResponse(pb.IndexResponse.encode({ indexId: 'x', seq: 1, records: [{ ...rec, hlcWall: -1 }], done: false }), LIMITS)).toBeNull()
    expect(readIndexResponse(new Uint8Array([0x0a, 0x02, 0xc3, 0x28]), LIMITS)).toBeNull()
    // a time whose zig-zag is past 2^53 - 1
    expect(readIndexResponse(pb.IndexResponse.encode({ indexId: 'x', seq: 1, records: [{ ...rec, mtimeMs: 2 ** 52 }], done: false }), LIMITS)).toBeNull()
    // a known field with another wire type, a group
    expect(readIndexResponse(new Uint8Array([0x08, 0x01]), LIMITS)).toBeNull()
    expect(readAnnouncement(new Uint8Array([0x3b, 0x3c]), LIMITS)).toBeNull()
    // unknown fields are skipped, as protons does
    const withUnknown = new Uint8Array([...pb.IndexResponse.encode({ indexId: 'x', seq: 7, records: [rec], done: true }), 0xf8, 0x07, 0x05, 0xfd, 0x07, 1, 2, 3, 4])
    expect(plain(readIndexResponse(withUnknown, LIMITS))).toEqual(plain(pb.IndexResponse.decode(withUnknown, PB_LIMITS)))
  })
})
