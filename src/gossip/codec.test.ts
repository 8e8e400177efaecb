import { createHash } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import {
  ENVELOPE_BYTES,
  LIMITS,
  WireError,
  decodeAnnouncement,
  decodeIndexRequest,
  decodeIndexResponse,
  decodeRecord,
  encodeAnnouncement,
  encodeIndexRequest,
  encodeIndexResponse,
  encodeRecord,
  isValidNodeId,
  splitEncoded,
  splitRecords
} from './codec.js'
import * as pb from './pb/gossip.js'
import type { Announcement } from './codec.js'
import type { FileRecord } from '../store/types.js'

const A = 'aaaaaaaaaaaaa'
const B = 'bcdefghijk234'
const C = 'zzzzzzzzzzzz7'

function sha (s: string): string {
  return createHash('sha256').update(s).digest('hex')
}

function file (path: string, size: number, blockSize = 128 * 1024): FileRecord {
  const n = size === 0 ? 0 : Math.ceil(size / blockSize)
  const blocks = Array.from({ length: n }, (_, i) => sha(`${path}#${i}`))
  return {
    path,
    type: 'file',
    mode: 0o644,
    size,
    mtimeMs: 1_700_000_000_123,
    blockSize,
    blocks,
    hash: sha(blocks.join('')),
    target: '',
    deleted: false,
    version: { vv: { [A]: 3, [B]: 1 }, hlc: { wall: 1_700_000_000_456, logical: 7 }, node: A }
  }
}

function dir (path: string): FileRecord {
  return { ...file(path, 0), type: 'dir', mode: 0o755, mtimeMs: 0, blockSize: 0, blocks: [], hash: '' }
}

function symlink (path: string, target: string): FileRecord {
  return { ...file(path, 0), type: 'symlink', mode: 0o777, blockSize: 0, blocks: [], hash: sha(target), target }
}

function deleted (r: FileRecord): FileRecord {
  return { ...r, deleted: true, size: 0, blockSize: 0, blocks: [], hash: '', target: '' }
}

function announce (records: FileRecord[]): Announcement {
  return { origin: A, indexId: 'idx-1', firstSeq: 5, lastSeq: 5 + records.length, records }
}

/** Runs fn, returns the WireError it throws (failing the test on anything else). */
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

/** An announcement carrying one protobuf record: a valid record's fields, patched. */
function rawWith (patch: Partial<pb.Record>, base: FileRecord = file('f', 300_000)): Uint8Array {
  return pb.Announcement.encode({ origin: A, indexId: 'i', firstSeq: 1, lastSeq: 1, records: [{ ...encodeRecord(base), ...patch }] })
}

function varint (n: bigint): number[] {
  const out: number[] = []
  while (n >= 128n) {
    out.push(Number(n & 127n) | 128)
    n >>= 7n
  }
  out.push(Number(n))
  return out
}

function lengthDelimited (field: number, body: Uint8Array | number[]): number[] {
  return [...varint(BigInt((field << 3) | 2)), ...varint(BigInt(body.length)), ...body]
}

/** An announcement whose single record is a valid record's bytes followed by `extra` raw bytes (later fields win). */
function rawRecordBytes (extra: number[]): Uint8Array {
  const rec = [...pb.Record.encode(encodeRecord(file('f', 1))), ...extra]
  return Uint8Array.from([...lengthDelimited(1, Buffer.from(A)), ...lengthDelimited(5, rec)])
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

describe('round trips', () => {
  it('keeps every field of a file record', () => {
    const r = file('docs/report.pdf', 300_000)
    r.mode = 0o4755
    r.version = { vv: { [A]: 9, [B]: 2 ** 40, [C]: 1 }, hlc: { wall: 1_700_000_999_000, logical: 4_000_000_000 }, node: B }
    expect(r.blocks).toHaveLength(3)
    expect(decodeRecord(encodeRecord(r))).toEqual(r)
    const back = decodeAnnouncement(encodeAnnouncement(announce([r])))
    expect(back).toEqual(announce([r]))
  })

  it('keeps dirs, symlinks, empty files, negative mtimes, deleted records and big numbers', () => {
    const big = file('huge.bin', 2 ** 40 + 1, 16 * 1024 * 1024)
    const records = [
      dir('a'),
      dir('a/b'),
      symlink('a/link', '../target with spaces/ü'),
      file('empty', 0),
      { ...file('old', 10), mtimeMs: -86_400_000 },
      deleted(file('gone', 5)),
      deleted(dir('gone-dir')),
      deleted(symlink('gone-link', 'x')),
      { ...file('x', 1), version: { vv: { [A]: Number.MAX_SAFE_INTEGER }, hlc: { wall: Number.MAX_SAFE_INTEGER, logical: 0 }, node: C } },
      big
    ]
    const a: Announcement = { origin: C, indexId: '', firstSeq: 0, lastSeq: Number.MAX_SAFE_INTEGER, records }
    expect(decodeAnnouncement(encodeAnnouncement(a))).toEqual(a)
    expect(decodeAnnouncement(encodeAnnouncement(a)).records[9].blocks).toHaveLength(65537)
  })

  it('keeps completeAfter when set (zero too) and leaves it out when not', () => {
    for (const completeAfter of [0, 4, 2 ** 50]) {
      const a: Announcement = { ...announce([file('a', 1)]), firstSeq: completeAfter + 1, lastSeq: completeAfter + 1, completeAfter }
      expect(decodeAnnouncement(encodeAnnouncement(a))).toEqual(a)
    }
    expect('completeAfter' in decodeAnnouncement(encodeAnnouncement(announce([file('a', 1)])))).toBe(false)
  })

  it('keeps index requests and responses', () => {
    expect(decodeIndexRequest(encodeIndexRequest({ indexId: '', after: 0 }))).toEqual({ indexId: '', after: 0 })
    expect(decodeIndexRequest(encodeIndexRequest({ indexId: 'abc', after: 2 ** 50 }))).toEqual({ indexId: 'abc', after: 2 ** 50 })
    const res = { indexId: 'idx', seq: 42, records: [file('a', 1), dir('d')], done: true }
    expect(decodeIndexResponse(encodeIndexResponse(res))).toEqual(res)
    const empty = { indexId: '', seq: 0, records: [], done: false }
    expect(decodeIndexResponse(encodeIndexResponse(empty))).toEqual(empty)
  })

  it('writes hashes as 32 raw bytes and the version vector sorted by node', () => {
    const r = file('f', 1)
    r.version.vv = { [C]: 1, [A]: 2, [B]: 3 }
    const p = encodeRecord(r)
    expect(p.hash).toHaveLength(32)
    expect(p.blocks[0]).toHaveLength(32)
    expect(Buffer.from(p.hash).toString('hex')).toBe(r.hash)
    expect(p.vv.map((e) => e.node)).toEqual([A, B, C])
  })
})

describe('decode rejects', () => {
  const cases: Array<[string, () => Uint8Array, RegExp]> = [
    ['bytes that do not parse', () => Uint8Array.from([0x2a, 0x05, 0x01]), /does not parse/],
    ['an invalid path', () => rawWith({ path: 'a/../b' }), /invalid path "a\/..\/b"/],
    ['an empty path', () => rawWith({ path: '' }), /invalid path ""/],
    ['a path in the reserved folder', () => rawWith({ path: '.syncmesh/tmp' }), /reserved/],
    ['a type out of range', () => rawRecordBytes([0x10, 0x07]), /type out of range/],
    ['mode above 0o7777', () => rawWith({ mode: 0o10000 }), /mode/],
    ['a size beyond safe integers', () => rawRecordBytes([0x20, ...varint(2n ** 60n)]), /does not parse|not a safe/],
    ['a file blockSize not a power of two', () => rawWith({ blockSize: 200_000 }), /blockSize 200000 is not a power of two/],
    ['a file blockSize below 128 KiB', () => rawWith({ blockSize: 65536, size: 1, blocks: [new Uint8Array(32)] }), /blockSize 65536/],
    ['a file blockSize above 16 MiB', () => rawWith({ blockSize: 32 * 1024 * 1024, size: 1, blocks: [new Uint8Array(32)] }), /blockSize 33554432/],
    ['a file with too few blocks', () => rawWith({ size: 300_000, blocks: [new Uint8Array(32)] }), /has 1 block hashes.*needs 3/],
    ['a file with too many blocks', () => rawWith({ size: 1 }), /has 3 block hashes.*needs 1/],
    ['an empty file with a block', () => rawWith({ size: 0, blocks: [new Uint8Array(32)] }), /needs 0/],
    ['a block hash of 31 bytes', () => rawWith({ blocks: [new Uint8Array(32), new Uint8Array(31), new Uint8Array(32)] }), /block hash 1 is not 32 bytes/],
    ['a file hash of 33 bytes', () => rawWith({ hash: new Uint8Array(33) }), /hash is not 32 bytes/],
    ['a file without a hash', () => rawWith({ hash: new Uint8Array(0) }), /hash is not 32 bytes/],
    ['a file with a target', () => rawWith({ target: 'x' }), /symlink target/],
    ['a dir with a size', () => rawWith({ size: 1 }, dir('d')), /a dir has size 1/],
    ['a dir with a blockSize', () => rawWith({ blockSize: 131072 }, dir('d')), /a dir has blockSize/],
    ['a dir with blocks', () => rawWith({ blocks: [new Uint8Array(32)] }, dir('d')), /a dir has block hashes/],
    ['a dir with a hash', () => rawWith({ hash: new Uint8Array(32) }, dir('d')), /a dir has a hash/],
    ['a symlink without a hash', () => rawWith({ hash: new Uint8Array(0) }, symlink('l', 't')), /hash is not 32 bytes/],
    ['a symlink with an empty target', () => rawWith({ target: '' }, symlink('l', 't')), /empty target/],
    ['a symlink target over 4096 bytes', () => rawWith({ target: 'x'.repeat(4097) }, symlink('l', 't')), /longer than 4096/],
    ['a symlink target with NUL', () => rawWith({ target: 'a\0b' }, symlink('l', 't')), /NUL/],
    ['a symlink with blocks', () => rawWith({ blocks: [new Uint8Array(32)] }, symlink('l', 't')), /a symlink has block hashes/],
    ['a deleted record with blocks', () => rawWith({ blocks: [new Uint8Array(32)] }, deleted(file('f', 1))), /a deleted record has block hashes/],
    ['a deleted record with a size', () => rawWith({ size: 5 }, deleted(file('f', 1))), /a deleted record has size 5/],
    ['a deleted record with a hash', () => rawWith({ hash: new Uint8Array(32) }, deleted(file('f', 1))), /a deleted record has a hash/],
    ['a deleted record with a blockSize', () => rawWith({ blockSize: 131072 }, deleted(file('f', 1))), /a deleted record has blockSize/],
    ['an empty version vector', () => rawWith({ vv: [] }), /version vector is empty/],
    ['a version vector over 1024 entries', () => rawWith({ vv: Array.from({ length: 1025 }, (_, i) => ({ node: A, counter: i + 1 })) }), /too many elements/],
    ['a version counter of 0', () => rawWith({ vv: [{ node: A, counter: 0 }] }), /counter 0/],
    ['a version node that is not a node id', () => rawWith({ vv: [{ node: 'AAAAAAAAAAAAA', counter: 1 }] }), /"AAAAAAAAAAAAA" is not a node id/],
    ['a version node of the wrong length', () => rawWith({ vv: [{ node: 'aaaa', counter: 1 }] }), /not a node id/],
    ['a duplicated version node', () => rawWith({ vv: [{ node: A, counter: 1 }, { node: A, counter: 2 }] }), /names node aaaaaaaaaaaaa twice/],
    ['a negative hlc wall', () => rawRecordBytes([0x60, ...varint(2n ** 64n - 1n)]), /hlc wall -1 /],
    ['an hlc wall beyond safe integers', () => rawRecordBytes([0x60, ...varint(2n ** 62n)]), /hlc wall/],
    ['an invalid writer node', () => rawWith({ node: 'nope' }), /version node "nope" is not a node id/],
    ['a missing writer node', () => rawWith({ node: '' }), /version node "" is not a node id/],
    ['an invalid origin', () => pb.Announcement.encode({ origin: 'x', records: [] }), /origin "x" is not a node id/],
    ['firstSeq after lastSeq', () => pb.Announcement.encode({ origin: A, firstSeq: 3, lastSeq: 2 }), /firstSeq 3 is after lastSeq 2/],
    ['completeAfter not before firstSeq', () => pb.Announcement.encode({ origin: A, firstSeq: 3, lastSeq: 4, completeAfter: 3 }), /completeAfter 3 is not before firstSeq 3/],
    ['a seq beyond safe integers', () => Uint8Array.from([...lengthDelimited(1, Buffer.from(A)), 0x20, ...varint(2n ** 63n)]), /does not parse|not a safe/],
    ['an indexId over 128 bytes', () => pb.Announcement.encode({ origin: A, indexId: 'i'.repeat(129) }), /indexId is longer than 128/],
    ['more than 10000 records', () => Uint8Array.from(Array.from({ length: 10_001 }, () => [0x2a, 0x00]).flat()), /too many elements/],
    ['a message over 4 MiB', () => new Uint8Array(LIMITS.maxMessageBytes + 1), /limit 4194304/]
  ]

  for (const [name, make, why] of cases) {
    it(name, () => {
      const err = wireError(() => decodeAnnouncement(make()))
      expect(err.message).toMatch(/^announcement: /)
      expect(err.message).toMatch(why)
    })
  }

  it('names the offending record', () => {
    const bytes = pb.Announcement.encode({ origin: A, records: [encodeRecord(file('ok', 1)), { ...encodeRecord(file('bad', 1)), mode: 0o77777 }] })
    expect(wireError(() => decodeAnnouncement(bytes)).message).toMatch(/^announcement: records\[1\] "bad": mode 32767/)
  })

  it('a version counter beyond safe integers', () => {
    // vv entries accumulate: the valid record's entries plus this one for node C.
    const entry = [...lengthDelimited(1, Buffer.from(C)), 0x10, ...varint(2n ** 56n)]
    wireError(() => decodeAnnouncement(rawRecordBytes(lengthDelimited(11, entry))))
    const ok = [...lengthDelimited(1, Buffer.from(C)), 0x10, ...varint(5n)]
    expect(decodeAnnouncement(rawRecordBytes(lengthDelimited(11, ok))).records[0].version.vv[C]).toBe(5)
  })

  it('index requests and responses with bad fields', () => {
    expect(wireError(() => decodeIndexRequest(Uint8Array.from([0x10, ...varint(2n ** 60n)]))).message).toMatch(/^index request: /)
    expect(wireError(() => decodeIndexRequest(pb.IndexRequest.encode({ indexId: 'x'.repeat(200) }))).message).toMatch(/indexId/)
    expect(wireError(() => decodeIndexRequest(Uint8Array.from([0xff]))).message).toMatch(/does not parse/)
    expect(wireError(() => decodeIndexRequest(new Uint8Array(LIMITS.maxMessageBytes + 1))).message).toMatch(/limit/)
    const bad = pb.IndexResponse.encode({ indexId: 'i', seq: 1, records: [{ ...encodeRecord(file('f', 1)), path: '/abs' }] })
    expect(wireError(() => decodeIndexResponse(bad)).message).toMatch(/^index response: records\[0\]: invalid path "\/abs"/)
    const many = Uint8Array.from(Array.from({ length: 10_001 }, () => [0x1a, 0x00]).flat())
    expect(wireError(() => decodeIndexResponse(many)).message).toMatch(/too many elements/)
  })

  it('decodeRecord validates a protobuf record', () => {
    expect(wireError(() => decodeRecord({ ...encodeRecord(file('f', 1)), deleted: true })).message).toMatch(/a deleted record has size 1/)
  })
})

describe('encode rejects what decode would', () => {
  it('invalid records', () => {
    const f = file('f', 300_000)
    wireError(() => encodeRecord({ ...f, path: '../x' }))
    wireError(() => encodeRecord({ ...f, hash: 'ABC' }))
    wireError(() => encodeRecord({ ...f, hash: f.hash.toUpperCase() }))
    wireError(() => encodeRecord({ ...f, blocks: [...f.blocks.slice(0, 2), 'zz'] }))
    wireError(() => encodeRecord({ ...f, type: 'fifo' as unknown as 'file' }))
    wireError(() => encodeRecord({ ...f, mode: 1.5 }))
    wireError(() => encodeRecord({ ...f, size: 2 ** 53 }))
    wireError(() => encodeRecord({ ...f, mtimeMs: 0.5 }))
    wireError(() => encodeRecord({ ...f, version: { ...f.version, vv: {} } }))
    wireError(() => encodeRecord({ ...f, version: { ...f.version, vv: { [A]: -1 } } }))
    wireError(() => encodeRecord({ ...f, version: { ...f.version, hlc: { wall: 1, logical: 2 ** 32 } } }))
    wireError(() => encodeRecord({ ...f, version: undefined as unknown as FileRecord['version'] }))
    wireError(() => encodeRecord({ ...deleted(symlink('l', 't')), target: 't' }))
    const b32 = 'abcdefghijklmnopqrstuvwxyz234567'
    const vv = Object.fromEntries(Array.from({ length: 1025 }, (_, i) => ['a'.repeat(10) + b32[i >> 10] + b32[(i >> 5) & 31] + b32[i & 31], 1]))
    expect(Object.keys(vv)).toHaveLength(1025)
    expect(Object.keys(vv).every(isValidNodeId)).toBe(true)
    expect(wireError(() => encodeRecord({ ...f, version: { ...f.version, vv } })).message).toMatch(/1025 entries/)
  })

  it('invalid messages', () => {
    wireError(() => encodeAnnouncement({ ...announce([]), origin: 'x' }))
    wireError(() => encodeAnnouncement({ ...announce([]), firstSeq: 2, lastSeq: 1 }))
    wireError(() => encodeAnnouncement({ ...announce([]), lastSeq: -1 }))
    wireError(() => encodeAnnouncement(announce(Array.from({ length: 10_001 }, () => dir('d')))))
    wireError(() => encodeIndexRequest({ indexId: '', after: 1.5 }))
    wireError(() => encodeIndexResponse({ indexId: '', seq: 0, records: [{ ...dir('d'), hash: sha('') }], done: true }))
    // 12 records of ~360 KiB of block hashes each: over 4 MiB.
    const big = Array.from({ length: 12 }, (_, i) => file(`big${i}`, 11_000 * 128 * 1024))
    expect(wireError(() => encodeAnnouncement(announce(big))).message).toMatch(/use splitRecords/)
  })
})

describe('random input', () => {
  const decoders = [decodeAnnouncement, decodeIndexRequest, decodeIndexResponse]

  it('never throws anything but WireError on random bytes', () => {
    const rand = mulberry32(0x5eed)
    for (let i = 0; i < 2000; i++) {
      const len = Math.floor(rand() * 300)
      const bytes = Uint8Array.from({ length: len }, () => Math.floor(rand() * 256))
      for (const decode of decoders) {
        try {
          decode(bytes)
        } catch (err) {
          expect(err).toBeInstanceOf(WireError)
        }
      }
    }
  })

  it('never throws anything but WireError on mutated valid messages', () => {
    const rand = mulberry32(42)
    const valid = encodeAnnouncement(announce([file('a/b', 300_000), dir('a'), symlink('l', 't'), deleted(file('x', 1))]))
    let accepted = 0
    for (let i = 0; i < 2000; i++) {
      const bytes = Uint8Array.from(valid)
      const flips = 1 + Math.floor(rand() * 4)
      for (let j = 0; j < flips; j++) bytes[Math.floor(rand() * bytes.length)] = Math.floor(rand() * 256)
      for (const decode of decoders) {
        try {
          decode(bytes)
          accepted++
        } catch (err) {
          expect(err).toBeInstanceOf(WireError)
        }
      }
    }
    expect(accepted).toBeGreaterThan(0)
  })
})

describe('splitRecords', () => {
  const rand = mulberry32(7)
  const records = Array.from({ length: 400 }, (_, i) => {
    const pick = rand()
    if (pick < 0.2) return dir(`d${i}`)
    if (pick < 0.3) return symlink(`l${i}`, 't'.repeat(1 + Math.floor(rand() * 100)))
    return file(`dir/file-${i}-${'n'.repeat(Math.floor(rand() * 50))}`, Math.floor(rand() * 40 * 128 * 1024))
  })

  it('keeps every group within the budget and the order intact', () => {
    for (const maxBytes of [2_000, 10_000, 100_000]) {
      const groups = splitRecords(records, maxBytes)
      expect(groups.flat()).toEqual(records)
      expect(groups.every((g) => g.length > 0)).toBe(true)
      for (const g of groups) {
        // The largest envelope: 128-byte index id, maximal sequence numbers.
        const bytes = encodeAnnouncement({ origin: C, indexId: 'i'.repeat(128), firstSeq: Number.MAX_SAFE_INTEGER, lastSeq: Number.MAX_SAFE_INTEGER, records: g })
        expect(bytes.byteLength).toBeLessThanOrEqual(maxBytes)
        expect(encodeIndexResponse({ indexId: 'i'.repeat(128), seq: Number.MAX_SAFE_INTEGER, records: g, done: true }).byteLength).toBeLessThanOrEqual(maxBytes)
      }
      if (maxBytes === 2_000) expect(groups.length).toBeGreaterThan(50)
    }
  })

  it('fills groups reasonably', () => {
    const groups = splitRecords(records, 100_000)
    const sizes = groups.map((g) => encodeAnnouncement(announce(g)).byteLength)
    // every group but the last could not take the next record
    for (let i = 0; i + 1 < groups.length; i++) {
      const next = encodeAnnouncement(announce([...groups[i], groups[i + 1][0]])).byteLength
      expect(next + ENVELOPE_BYTES).toBeGreaterThan(100_000)
    }
    expect(sizes.length).toBeGreaterThan(1)
  })

  it('puts a record larger than the budget alone in its group', () => {
    const huge = file('huge', 1000 * 128 * 1024)
    const groups = splitRecords([dir('a'), huge, dir('b')], 5_000)
    expect(groups).toEqual([[dir('a')], [huge], [dir('b')]])
  })

  it('caps groups at maxRecordsPerMessage and at maxMessageBytes', () => {
    const many = Array.from({ length: 10_001 }, (_, i) => dir(`d${i}`))
    const groups = splitRecords(many, Number.MAX_SAFE_INTEGER)
    expect(groups.map((g) => g.length)).toEqual([10_000, 1])
    const big = Array.from({ length: 12 }, (_, i) => file(`big${i}`, 11_000 * 128 * 1024))
    for (const g of splitRecords(big, Infinity)) {
      expect(encodeAnnouncement(announce(g)).byteLength).toBeLessThanOrEqual(LIMITS.maxMessageBytes)
    }
  })

  it('encodes each group once: messages made from a group are the messages made from its records', () => {
    const groups = splitEncoded(records, 10_000)
    expect(groups.map((g) => g.records)).toEqual(splitRecords(records, 10_000))
    for (const g of groups) {
      expect(g.encoded).toHaveLength(g.records.length)
      // an Announcement's records come last in protons' field order: the very same bytes
      expect(encodeAnnouncement({ ...announce(g.records), records: g })).toEqual(encodeAnnouncement(announce(g.records)))
      const res = { indexId: 'i1', seq: 77, done: true }
      const fromGroup = encodeIndexResponse({ ...res, records: g })
      expect(fromGroup.byteLength).toBe(encodeIndexResponse({ ...res, records: g.records }).byteLength)
      expect(decodeIndexResponse(fromGroup)).toEqual({ ...res, records: g.records })
      expect(decodeIndexResponse(encodeIndexResponse({ ...res, done: false, records: g })).done).toBe(false)
    }
    // a record longer than 127 bytes: its length takes two varint bytes
    expect(groups.some((g) => g.encoded.some((e) => e.byteLength >= 128))).toBe(true)
    // an empty group (the last page of an index catch-up with nothing new)
    expect(decodeIndexResponse(encodeIndexResponse({ indexId: '', seq: 0, done: true, records: { records: [], encoded: [] } })).records).toEqual([])
  })

  it('refuses a group whose encodings do not match its records', () => {
    const [g] = splitEncoded(records.slice(0, 3), 100_000)
    const broken = { records: g.records, encoded: g.encoded.slice(1) }
    expect(wireError(() => encodeAnnouncement({ ...announce([]), records: broken })).message).toMatch(/encoded records do not match/)
    const many = splitEncoded(Array.from({ length: 10_001 }, (_, i) => dir(`d${i}`)), Number.MAX_SAFE_INTEGER)
    const joined = { records: many.flatMap((x) => x.records), encoded: many.flatMap((x) => x.encoded) }
    expect(wireError(() => encodeAnnouncement({ ...announce([]), records: joined })).message).toMatch(/limit 10000/)
  })

  it('returns no groups for no records and rejects invalid records', () => {
    expect(splitRecords([], 1000)).toEqual([])
    wireError(() => splitRecords([{ ...dir('a'), path: '' }], 1000))
  })
})

describe('meta records (sets, leases)', () => {
  function meta (path: string, payload: unknown): FileRecord {
    return { ...file('x', 0), path, type: 'meta', mode: 0, mtimeMs: 0, blockSize: 0, blocks: [], hash: '', target: JSON.stringify(payload) }
  }

  it('round-trip with an absolute path and a JSON payload', () => {
    for (const r of [meta('/set/abc123', { name: 'n' }), meta('/setfile/abc123/photos/a.jpg', { commit: 'c' }), { ...meta('/lease/abc', null), deleted: true, target: '' }]) {
      expect(decodeAnnouncement(encodeAnnouncement(announce([r]))).records[0]).toEqual(r)
    }
  })

  it('reject a bad path, a payload that is not JSON or too big, and file fields', () => {
    const bad: FileRecord[] = [
      meta('set/abc', {}), // relative: a file path, not a meta path
      meta('/set/../x', {}),
      meta('/SET/abc', {}),
      meta('/setfile/abc/../../etc/passwd', {}),
      meta('/setfile/abc/a//b', {}),
      { ...meta('/set/abc', {}), target: '{not json' },
      { ...meta('/set/abc', {}), target: JSON.stringify({ pad: 'x'.repeat(LIMITS.maxMetaBytes) }) },
      { ...meta('/set/abc', {}), size: 3 },
      { ...meta('/set/abc', {}), mode: 0o644 },
      { ...meta('/set/abc', {}), deleted: true }
    ]
    for (const r of bad) expect(() => encodeRecord(r), r.path).toThrow(WireError)
    // a file record may not use a meta path
    expect(() => encodeRecord({ ...file('x', 0), path: '/set/abc' })).toThrow(WireError)
  })
})

describe('splitEncoded', () => {
  it('with onInvalid, leaves out a record that breaks a wire rule, in order, and keeps the rest', () => {
    const bad = { ...file('bad', 1), mode: 0o10000 }
    const left: string[] = []
    const groups = splitEncoded([file('a', 1), bad, file('c', 1)], 1024 * 1024, (r, err) => { left.push(`${r.path}: ${err.message}`) })
    expect(groups.flatMap((g) => g.records.map((r) => r.path))).toEqual(['a', 'c'])
    expect(left).toEqual([expect.stringMatching(/^bad: .*mode 4096/)])
    expect(decodeAnnouncement(encodeAnnouncement({ ...announce([]), records: groups[0] })).records.map((r) => r.path)).toEqual(['a', 'c'])
    // without it, the record still fails the whole split
    expect(() => splitEncoded([file('a', 1), bad], 1024 * 1024)).toThrow(WireError)
  })

  it('with onInvalid, leaves out a record larger than any message', () => {
    const blockSize = 16 * 1024 * 1024
    const n = 130_000
    const huge = { ...file('huge', 1), size: n * blockSize, blockSize, blocks: Array.from({ length: n }, (_, i) => createHash('sha256').update(String(i)).digest('hex')) }
    const left: string[] = []
    const groups = splitEncoded([file('a', 1), huge, file('c', 1)], LIMITS.maxMessageBytes, (r, err) => { left.push(`${r.path}: ${err.message}`) })
    expect(groups.flatMap((g) => g.records.map((r) => r.path))).toEqual(['a', 'c'])
    expect(left).toEqual([expect.stringMatching(/^huge: records\[1\] "huge": encodes to \d+ bytes, more than a message carries \(4194304\)$/)])
  })
})

