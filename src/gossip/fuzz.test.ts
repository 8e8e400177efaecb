/**
 * Property-based fuzzing (fast-check) of everything that reads bytes or names from peers:
 * the gossip and block decoders and the path validator. Whatever the input, a decoder
 * either returns a valid message or throws WireError; a valid record survives a round trip.
 */
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { decodeAnnouncement, decodeIndexRequest, decodeIndexResponse, encodeAnnouncement, WireError } from './codec.js'
import { decodeBlockRequest, decodeBlockResponse } from '../transfer/codec.js'
import { isValidPath, PathError, validatePath } from '../store/paths.js'
import type { FileRecord } from '../store/types.js'

const onlyWireErrors = (fn: (b: Uint8Array) => unknown) => (bytes: Uint8Array): void => {
  try {
    fn(bytes)
  } catch (err) {
    expect(err).toBeInstanceOf(WireError)
  }
}

const hex32 = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('hex'))
const nodeId = fc.stringMatching(/^[a-z2-7]{13}$/)
const segment = fc.stringMatching(/^[a-zA-Z0-9_\- ]{1,20}$/).filter((s) => s !== '.' && s !== '..' && s.toLowerCase() !== '.syncmesh')
const relPath = fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => s.join('/'))

const fileRecord: fc.Arbitrary<FileRecord> = fc.record({
  path: relPath,
  size: fc.integer({ min: 0, max: 50 * 1024 * 1024 }),
  mode: fc.integer({ min: 0, max: 0o7777 }),
  mtimeMs: fc.integer({ min: -1e12, max: 4e12 }),
  vv: fc.dictionary(nodeId, fc.integer({ min: 1, max: 2 ** 40 }), { minKeys: 1, maxKeys: 5 }),
  wall: fc.integer({ min: 0, max: 2 ** 50 }),
  logical: fc.integer({ min: 0, max: 2 ** 31 }),
  node: nodeId,
  hash: hex32
}).chain((r) => {
  const blockSize = 128 * 1024 * (r.size > 128 * 1024 * 2000 ? 2 : 1)
  const n = r.size === 0 ? 0 : Math.ceil(r.size / blockSize)
  return fc.array(hex32, { minLength: n, maxLength: n }).map((blocks): FileRecord => ({
    path: r.path, type: 'file', mode: r.mode, size: r.size, mtimeMs: r.mtimeMs, blockSize, blocks, hash: r.hash, target: '', deleted: false,
    version: { vv: r.vv, hlc: { wall: r.wall, logical: r.logical }, node: r.node }
  }))
})

describe('fuzzed decoders', () => {
  it('announcements: arbitrary bytes give a message or a WireError', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), onlyWireErrors(decodeAnnouncement)), { numRuns: 3000 })
  })

  it('index requests and responses', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), onlyWireErrors(decodeIndexRequest)), { numRuns: 2000 })
    fc.assert(fc.property(fc.uint8Array({ maxLength: 4096 }), onlyWireErrors(decodeIndexResponse)), { numRuns: 2000 })
  })

  it('block requests and responses', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), onlyWireErrors(decodeBlockRequest)), { numRuns: 2000 })
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), onlyWireErrors(decodeBlockResponse)), { numRuns: 2000 })
  })

  it('valid records survive encode/decode; a flipped byte gives a valid message or a WireError', () => {
    fc.assert(fc.property(fc.array(fileRecord, { minLength: 1, maxLength: 5 }), fc.nat(), (records, flip) => {
      const bytes = encodeAnnouncement({ origin: records[0].version.node, indexId: 'idx', firstSeq: 1, lastSeq: 2, records })
      expect(decodeAnnouncement(bytes).records).toEqual(records)
      const broken = Uint8Array.from(bytes)
      broken[flip % broken.length] ^= 0xff
      onlyWireErrors(decodeAnnouncement)(broken)
    }), { numRuns: 500 })
  })
})

describe('fuzzed path validator', () => {
  it('accepts a path only when every rule holds, and never throws anything but PathError', () => {
    const alphabet = fc.constantFrom('a', 'b', '.', '/', '\\', '\0', '\n', ' ', 'é', '😀', '\uD800')
    fc.assert(fc.property(fc.array(alphabet, { maxLength: 40 }).map((a) => a.join('')), (p) => {
      let ok: boolean
      try {
        expect(validatePath(p)).toBe(p)
        ok = true
      } catch (err) {
        expect(err).toBeInstanceOf(PathError)
        ok = false
      }
      expect(isValidPath(p)).toBe(ok)
      if (ok) {
        const segs = p.split('/')
        expect(segs.every((s) => s !== '' && s !== '.' && s !== '..')).toBe(true)
        expect(/[\0-\x1f\\]/.test(p)).toBe(false)
        expect(segs[0].toLowerCase()).not.toBe('.syncmesh')
      }
    }), { numRuns: 5000 })
  })

  it('accepts ordinary relative paths', () => {
    fc.assert(fc.property(relPath, (p) => { expect(validatePath(p)).toBe(p) }))
  })
})
