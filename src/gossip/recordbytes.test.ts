import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import * as pb from './pb/gossip.js'
import { encodeRecordBytes } from './recordbytes.js'

const bytes = (max: number): fc.Arbitrary<Uint8Array<ArrayBuffer>> => fc.uint8Array({ maxLength: max }).map((b) => new Uint8Array(b))
const uint32 = fc.oneof(fc.constantFrom(0, 1, 127, 128, 16383, 16384, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 }))
const safeNat = fc.oneof(fc.constantFrom(0, 1, 127, 128, 2 ** 28 - 1, 2 ** 28, 2 ** 31, 2 ** 32, 2 ** 35, 2 ** 49, 2 ** 52 - 1, 2 ** 53 - 1), fc.nat({ max: Number.MAX_SAFE_INTEGER }))
const safeInt = fc.oneof(safeNat, safeNat.map((n) => -n), fc.constantFrom(-1, -64, -65, -(2 ** 52), 2 ** 52 + 1, -(2 ** 52) - 1))
// any text, lone surrogates included (both encoders write them as U+FFFD)
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: 'binary', maxLength: 20 }), fc.constant(''))

const record: fc.Arbitrary<pb.Record> = fc.record({
  path: text,
  type: fc.constantFrom(pb.FileType.FILE, pb.FileType.DIR, pb.FileType.SYMLINK, pb.FileType.META),
  mode: uint32,
  size: safeNat,
  mtimeMs: safeInt,
  blockSize: uint32,
  blocks: fc.array(bytes(40), { maxLength: 4 }),
  hash: bytes(40),
  target: text,
  deleted: fc.boolean(),
  vv: fc.array(fc.record({ node: text, counter: safeNat }), { maxLength: 4 }),
  hlcWall: safeNat,
  hlcLogical: uint32,
  node: text
})

describe('encodeRecordBytes', () => {
  it('writes the bytes protons writes, for any record', () => {
    fc.assert(fc.property(record, (r) => {
      expect(Buffer.from(encodeRecordBytes(r)).toString('hex')).toBe(Buffer.from(pb.Record.encode(r)).toString('hex'))
    }), { numRuns: 5000 })
  })

  it('round-trips through protons\' decoder', () => {
    const r: pb.Record = {
      path: 'dir/ü ñ.txt',
      type: pb.FileType.FILE,
      mode: 0o644,
      size: 4096,
      mtimeMs: -1234567,
      blockSize: 131072,
      blocks: [new Uint8Array(32).fill(7)],
      hash: new Uint8Array(32).fill(9),
      target: '',
      deleted: false,
      vv: [{ node: 'abcdefghijklm', counter: 2 ** 40 }],
      hlcWall: 1_700_000_000_000,
      hlcLogical: 3,
      node: 'abcdefghijklm'
    }
    const d = pb.Record.decode(encodeRecordBytes(r))
    expect({ ...d, blocks: d.blocks.map((b) => new Uint8Array(b)), hash: new Uint8Array(d.hash) }).toEqual(r)
  })
})
