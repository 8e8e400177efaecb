/**
 * Gossip wire codec: native FileRecord / Announcement / IndexRequest / IndexResponse <->
 * protobuf (src/gossip/pb/gossip.proto).
 *
 * Every decode validates the whole message and throws WireError, never anything else, on
 * bytes that do not parse or on a value that breaks a rule below. Every encode checks the
 * same rules, so a message a peer would reject is never produced (it throws WireError).
 */
import { PathError, isWellFormed, quotePath, validatePath } from '../store/paths.js'
import * as pb from './pb/gossip.js'
import { encodeRecordBytes } from './recordbytes.js'
import { readAnnouncement, readIndexResponse } from './recordread.js'
import { writeHexHash } from '../wire/protobuf.js'
import type { FileRecord, FileType, NodeId, VersionVector } from '../store/types.js'

/** The protobuf form of a FileRecord (hashes as raw bytes, vv as a list). */
export type PbRecord = pb.Record

/** Limits enforced by every encode and decode of this module. */
export const LIMITS = {
  /**
   * Largest encoded message, in bytes (gossipsub's default inbound RPC limit is also
   * 4 MiB, and that frame carries more than our message: use splitRecords with a
   * smaller budget for announcements).
   */
  maxMessageBytes: 4 * 1024 * 1024,
  /** Most records in one Announcement or IndexResponse. */
  maxRecordsPerMessage: 10_000,
  /** Smallest file block size (128 KiB). */
  minBlockSize: 128 * 1024,
  /** Largest file block size (16 MiB). */
  maxBlockSize: 16 * 1024 * 1024,
  /** Length of a SHA-256 hash, in raw bytes. */
  hashBytes: 32,
  /** Largest permission bits value. */
  maxMode: 0o7777,
  /** Largest symlink target, in UTF-8 bytes. */
  maxTargetBytes: 4096,
  /** Most entries in one version vector. */
  maxVersionEntries: 1024,
  /** Largest index id, in UTF-8 bytes. */
  maxIndexIdBytes: 128,
  /**
   * Largest JSON payload of a meta record (sets, leases), in UTF-8 bytes: a committed
   * file's record carries its block list (about 43 base64 bytes a block), so this bounds
   * a committed file to about 6,100 blocks (96 GiB at the 16 MiB block size; a set
   * commit refuses a larger one).
   */
  maxMetaBytes: 256 * 1024
} as const

/** Thrown on a message that does not parse or breaks a validation rule. */
export class WireError extends Error {
  override name = 'WireError'
}

/** A batch of records newly stored by `origin`, pushed over gossipsub. */
export interface Announcement {
  origin: NodeId
  /** The origin's index id (changes when its local index is rebuilt). */
  indexId: string
  /** Local sequence numbers (in the origin's index) the records were stored under. */
  firstSeq: number
  lastSeq: number
  /**
   * Set when every record the origin's index holds under completeAfter+1..lastSeq is in
   * this message (or was stored again later, under a higher seq): a receiver whose index
   * cursor for the origin lies in completeAfter..lastSeq-1 may move it to lastSeq.
   */
  completeAfter?: number
  records: FileRecord[]
}

/** A message to encode: its records as they are, or a group of splitEncoded. */
export type Sendable<M extends { records: FileRecord[] }> = Omit<M, 'records'> & { records: FileRecord[] | EncodedRecords }

/** "Send me your records stored after sequence `after`." */
export interface IndexRequest {
  /** The responder's index id as the requester last saw it, '' if none. */
  indexId: string
  after: number
}

/** One page of the answer to an IndexRequest. */
export interface IndexResponse {
  indexId: string
  /** The responder's newest local sequence number. */
  seq: number
  records: FileRecord[]
  /** True on the last page. */
  done: boolean
}

const NODE_ID = /^[a-z2-7]{13}$/

/** True when `s` has the shape of a NodeId (13 lowercase base32 characters). */
export function isValidNodeId (s: unknown): s is NodeId {
  return typeof s === 'string' && NODE_ID.test(s)
}

// ---------------------------------------------------------------------------------------
// Helpers

function oneLine (s: string): string {
  const t = s.replace(/\s+/g, ' ').trim()
  return t.length > 300 ? `${t.slice(0, 300)}…` : t
}

function fail (where: Where, what: string): never {
  throw new WireError(oneLine(`${where}: ${what}`))
}

function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function isSafeUint (n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0
}

function isUint32 (n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff
}

function utf8Length (s: string): number {
  return Buffer.byteLength(s, 'utf8')
}

function hexToHash (hex: unknown, where: Where, field: string): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(LIMITS.hashBytes)
  if (typeof hex !== 'string' || !writeHexHash(out, 0, hex)) fail(where, `${field} is not 64 lowercase hex characters`)
  return out
}

function hashToHex (bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

function isPowerOfTwo (n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0
}

function describeRecord (index: number | undefined, p: unknown): string {
  const at = index === undefined ? 'record' : `records[${index}]`
  return typeof p === 'string' ? `${at} ${quotePath(p)}` : at
}

/**
 * A record's describeRecord, made only when a message needs it: every record a node
 * encodes or decodes is checked, and quoting its path for a message that is almost never
 * thrown cost 2-3% of a node's event loop while it announced a burst of new files.
 */
class RecordWhere {
  constructor (private readonly index: number | undefined, private readonly path: unknown) {}
  toString (): string {
    return describeRecord(this.index, this.path)
  }
}

/** Where an error is, for its message. */
type Where = string | RecordWhere

function checkString (s: unknown, where: Where, field: string, maxBytes: number): string {
  if (typeof s !== 'string') fail(where, `${field} is not a string`)
  if (!isWellFormed(s)) fail(where, `${field} is not valid Unicode`)
  if (utf8Length(s) > maxBytes) fail(where, `${field} is longer than ${maxBytes} bytes`)
  return s
}

// ---------------------------------------------------------------------------------------
// Records

const TYPE_TO_PB: Readonly<Record<FileType, pb.FileType>> = {
  file: pb.FileType.FILE,
  dir: pb.FileType.DIR,
  symlink: pb.FileType.SYMLINK,
  meta: pb.FileType.META
}

const TYPE_FROM_PB: Readonly<Record<pb.FileType, FileType>> = {
  [pb.FileType.FILE]: 'file',
  [pb.FileType.DIR]: 'dir',
  [pb.FileType.SYMLINK]: 'symlink',
  [pb.FileType.META]: 'meta'
}

/** `/<kind>/<set id>[/<relative path>]`: the path of a meta record. */
const META_PATH = /^\/([a-z]{1,16})\/([A-Za-z0-9][A-Za-z0-9._-]{0,99})(?:\/(.+))?$/s

/** Throws PathError unless `p` is a valid meta record path. */
export function validateMetaPath (p: string): void {
  const m = typeof p === 'string' ? META_PATH.exec(p) : null
  if (m == null) throw new PathError(`meta path ${quotePath(p)} is not /<kind>/<id>[/<path>]`)
  if (m[3] !== undefined) validatePath(m[3])
}

/**
 * Checks every rule on a protobuf record (decoded from the wire, or built by
 * encodeRecord). Throws WireError naming the record and the broken rule.
 */
function checkPbRecord (r: pb.Record, index?: number): void {
  const where = new RecordWhere(index, r.path)

  try {
    if (r.type === pb.FileType.META) validateMetaPath(r.path)
    else validatePath(r.path)
  } catch (err) {
    if (err instanceof PathError) fail(describeRecord(index, undefined), err.message)
    throw err
  }
  if (!Object.hasOwn(TYPE_FROM_PB, r.type)) fail(where, 'type out of range')
  if (!isUint32(r.mode) || r.mode > LIMITS.maxMode) fail(where, `mode ${String(r.mode)} is above 0o7777`)
  if (!isSafeUint(r.size)) fail(where, `size ${String(r.size)} is not a safe non-negative integer`)
  if (typeof r.mtimeMs !== 'number' || !Number.isSafeInteger(r.mtimeMs)) {
    fail(where, `mtimeMs ${String(r.mtimeMs)} is not a safe integer`)
  }
  if (!isUint32(r.blockSize)) fail(where, `blockSize ${String(r.blockSize)} is not a uint32`)
  if (!Array.isArray(r.blocks)) fail(where, 'blocks is not an array')
  if (!(r.hash instanceof Uint8Array)) fail(where, 'hash is not bytes')
  if (typeof r.target !== 'string') fail(where, 'target is not a string')
  if (typeof r.deleted !== 'boolean') fail(where, 'deleted is not a boolean')

  const live = !r.deleted
  if (r.type === pb.FileType.META) {
    if (r.size !== 0 || r.blockSize !== 0 || r.blocks.length !== 0 || r.hash.byteLength !== 0 || r.mode !== 0) {
      fail(where, 'a meta record has file fields')
    }
    checkString(r.target, where, 'meta payload', LIMITS.maxMetaBytes)
    if (live) {
      try { JSON.parse(r.target) } catch { fail(where, 'meta payload is not JSON') }
    } else if (r.target !== '') fail(where, 'a deleted meta record has a payload')
  } else if (live && r.type === pb.FileType.FILE) {
    if (!isPowerOfTwo(r.blockSize) || r.blockSize < LIMITS.minBlockSize || r.blockSize > LIMITS.maxBlockSize) {
      fail(where, `blockSize ${r.blockSize} is not a power of two in [${LIMITS.minBlockSize}, ${LIMITS.maxBlockSize}]`)
    }
    const want = r.size === 0 ? 0 : Math.ceil(r.size / r.blockSize)
    if (r.blocks.length !== want) {
      fail(where, `has ${r.blocks.length} block hashes, size ${r.size} at blockSize ${r.blockSize} needs ${want}`)
    }
    for (let i = 0; i < r.blocks.length; i++) {
      const b: unknown = r.blocks[i]
      if (!(b instanceof Uint8Array) || b.byteLength !== LIMITS.hashBytes) {
        fail(where, `block hash ${i} is not ${LIMITS.hashBytes} bytes`)
      }
    }
    if (r.hash.byteLength !== LIMITS.hashBytes) fail(where, `hash is not ${LIMITS.hashBytes} bytes`)
    if (r.target !== '') fail(where, 'a file has a symlink target')
  } else {
    const kind = r.deleted ? 'a deleted record' : `a ${TYPE_FROM_PB[r.type]}`
    if (r.size !== 0) fail(where, `${kind} has size ${r.size}, not 0`)
    if (r.blockSize !== 0) fail(where, `${kind} has blockSize ${r.blockSize}, not 0`)
    if (r.blocks.length !== 0) fail(where, `${kind} has block hashes`)
    if (live && r.type === pb.FileType.SYMLINK) {
      if (r.hash.byteLength !== LIMITS.hashBytes) fail(where, `hash is not ${LIMITS.hashBytes} bytes`)
      if (r.target === '') fail(where, 'a symlink has an empty target')
      checkString(r.target, where, 'symlink target', LIMITS.maxTargetBytes)
      if (r.target.includes('\0')) fail(where, 'symlink target contains NUL')
    } else {
      if (r.hash.byteLength !== 0) fail(where, `${kind} has a hash`)
      if (r.target !== '') fail(where, `${kind} has a symlink target`)
    }
  }

  if (!Array.isArray(r.vv)) fail(where, 'vv is not an array')
  if (r.vv.length === 0) fail(where, 'version vector is empty')
  if (r.vv.length > LIMITS.maxVersionEntries) {
    fail(where, `version vector has ${r.vv.length} entries, limit ${LIMITS.maxVersionEntries}`)
  }
  const seen = new Set<string>()
  for (const e of r.vv) {
    if (!isValidNodeId(e.node)) fail(where, `version vector node ${JSON.stringify(String(e.node).slice(0, 40))} is not a node id`)
    if (seen.has(e.node)) fail(where, `version vector names node ${e.node} twice`)
    seen.add(e.node)
    if (!isSafeUint(e.counter) || e.counter === 0) {
      fail(where, `version vector counter ${String(e.counter)} of ${e.node} is not a safe positive integer`)
    }
  }
  if (!isSafeUint(r.hlcWall)) fail(where, `hlc wall ${String(r.hlcWall)} is not a safe non-negative integer`)
  if (!isUint32(r.hlcLogical)) fail(where, `hlc logical ${String(r.hlcLogical)} is not a uint32`)
  if (!isValidNodeId(r.node)) fail(where, `version node ${JSON.stringify(String(r.node).slice(0, 40))} is not a node id`)
}

function toPbRecord (r: FileRecord, index?: number): pb.Record {
  const rec: Partial<FileRecord> | null | undefined = r
  if (rec == null || typeof rec !== 'object') fail(describeRecord(index, undefined), 'is not an object')
  const where = new RecordWhere(index, rec.path)
  if (typeof rec.type !== 'string' || !Object.hasOwn(TYPE_TO_PB, rec.type)) {
    fail(where, `type ${JSON.stringify(String(rec.type))} is not file, dir, symlink or meta`)
  }
  const version = rec.version
  if (version == null || typeof version !== 'object') fail(where, 'version is missing')
  if (version.vv == null || typeof version.vv !== 'object') fail(where, 'version vector is missing')
  if (version.hlc == null || typeof version.hlc !== 'object') fail(where, 'hlc is missing')
  if (!Array.isArray(rec.blocks)) fail(where, 'blocks is not an array')

  const vv = Object.keys(version.vv).sort().map((node) => ({ node, counter: version.vv[node] }))
  const out: pb.Record = {
    path: rec.path as string,
    type: TYPE_TO_PB[rec.type],
    mode: rec.mode as number,
    size: rec.size as number,
    mtimeMs: rec.mtimeMs as number,
    blockSize: rec.blockSize as number,
    blocks: rec.blocks.map((h, i) => hexToHash(h, where, `block hash ${i}`)),
    hash: rec.hash === '' ? new Uint8Array(0) : hexToHash(rec.hash, where, 'hash'),
    target: rec.target as string,
    deleted: rec.deleted as boolean,
    vv,
    hlcWall: version.hlc.wall,
    hlcLogical: version.hlc.logical,
    node: version.node
  }
  checkPbRecord(out, index)
  return out
}

function fromPbRecord (r: pb.Record, index?: number): FileRecord {
  checkPbRecord(r, index)
  const vv: VersionVector = {}
  for (const e of r.vv) vv[e.node] = e.counter
  return {
    path: r.path,
    type: TYPE_FROM_PB[r.type],
    mode: r.mode,
    size: r.size,
    mtimeMs: r.mtimeMs,
    blockSize: r.blockSize,
    blocks: r.blocks.map(hashToHex),
    hash: r.hash.byteLength === 0 ? '' : hashToHex(r.hash),
    target: r.target,
    deleted: r.deleted,
    version: { vv, hlc: { wall: r.hlcWall, logical: r.hlcLogical }, node: r.node }
  }
}

/** FileRecord -> protobuf Record. Throws WireError when the record breaks a wire rule. */
export function encodeRecord (r: FileRecord): PbRecord {
  return guard('record', () => toPbRecord(r))
}

/** Protobuf Record -> FileRecord, fully validated. Throws WireError. */
export function decodeRecord (r: PbRecord): FileRecord {
  return guard('record', () => fromPbRecord(r))
}

// ---------------------------------------------------------------------------------------
// Messages

/** Runs `fn`, turning any error that is not a WireError into one (decoders never throw others). */
function guard<T> (kind: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof WireError) throw err
    throw new WireError(oneLine(`${kind}: invalid message: ${errorText(err)}`))
  }
}

function parse<T> (kind: string, bytes: Uint8Array, fn: (bytes: Uint8Array) => T): T {
  if (!(bytes instanceof Uint8Array)) fail(kind, 'input is not a Uint8Array')
  if (bytes.byteLength > LIMITS.maxMessageBytes) {
    fail(kind, `message is ${bytes.byteLength} bytes, limit ${LIMITS.maxMessageBytes}`)
  }
  try {
    return fn(bytes)
  } catch (err) {
    if (err instanceof Error && err.name === 'MaxLengthError') {
      fail(kind, `too many elements in a repeated field (limits: ${LIMITS.maxRecordsPerMessage} records, ${LIMITS.maxVersionEntries} version entries)`)
    }
    if (err instanceof Error && err.message === 'Invalid enum value') fail(kind, 'record type out of range')
    fail(kind, `protobuf does not parse: ${errorText(err)}`)
  }
}

function finish (kind: string, bytes: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  if (bytes.byteLength > LIMITS.maxMessageBytes) {
    fail(kind, `encodes to ${bytes.byteLength} bytes, limit ${LIMITS.maxMessageBytes} (use splitRecords)`)
  }
  return bytes
}

function checkIndexId (s: unknown, kind: string): string {
  return checkString(s, kind, 'indexId', LIMITS.maxIndexIdBytes)
}

function checkSeq (n: unknown, kind: string, field: string): number {
  if (!isSafeUint(n)) fail(kind, `${field} ${String(n)} is not a safe non-negative integer`)
  return n
}

function toPbRecords (records: FileRecord[], kind: string): pb.Record[] {
  if (!Array.isArray(records)) fail(kind, 'records is not an array')
  if (records.length > LIMITS.maxRecordsPerMessage) {
    fail(kind, `has ${records.length} records, limit ${LIMITS.maxRecordsPerMessage}`)
  }
  return records.map((r, i) => toPbRecord(r, i))
}

function fromPbRecords (records: pb.Record[], kind: string): FileRecord[] {
  if (records.length > LIMITS.maxRecordsPerMessage) {
    fail(kind, `has ${records.length} records, limit ${LIMITS.maxRecordsPerMessage}`)
  }
  return records.map((r, i) => {
    try {
      return fromPbRecord(r, i)
    } catch (err) {
      if (err instanceof WireError) throw new WireError(`${kind}: ${err.message}`)
      throw err
    }
  })
}

const RECORD_LIMITS = { vv: LIMITS.maxVersionEntries }
/** The same limits for the hand decoders (recordread.ts), which leave a message past them to protons. */
const READ_LIMITS = { records: LIMITS.maxRecordsPerMessage, vv: LIMITS.maxVersionEntries }

function checkAnnouncementHeader (a: { origin: unknown, indexId: unknown, firstSeq: unknown, lastSeq: unknown, completeAfter?: unknown }): void {
  const kind = 'announcement'
  if (!isValidNodeId(a.origin)) fail(kind, `origin ${JSON.stringify(String(a.origin).slice(0, 40))} is not a node id`)
  checkIndexId(a.indexId, kind)
  const first = checkSeq(a.firstSeq, kind, 'firstSeq')
  const last = checkSeq(a.lastSeq, kind, 'lastSeq')
  if (first > last) fail(kind, `firstSeq ${first} is after lastSeq ${last}`)
  if (a.completeAfter !== undefined && checkSeq(a.completeAfter, kind, 'completeAfter') >= first) {
    fail(kind, `completeAfter ${String(a.completeAfter)} is not before firstSeq ${first}`)
  }
}

/** Encodes an Announcement. Throws WireError when it breaks a rule or is too large. */
export function encodeAnnouncement (a: Sendable<Announcement>): Uint8Array<ArrayBuffer> {
  const kind = 'announcement'
  return guard(kind, () => {
    checkAnnouncementHeader(a)
    return encodeWithRecords(kind, a.records, 5, (records) => pb.Announcement.encode({
      origin: a.origin,
      indexId: a.indexId,
      firstSeq: a.firstSeq,
      lastSeq: a.lastSeq,
      completeAfter: a.completeAfter,
      records
    }))
  })
}

/** Decodes and fully validates an Announcement. Throws WireError (only). */
export function decodeAnnouncement (bytes: Uint8Array): Announcement {
  const kind = 'announcement'
  return guard(kind, () => {
    const m = parse(kind, bytes, (b) => readAnnouncement(b, READ_LIMITS) ?? pb.Announcement.decode(b, {
      limits: { records: LIMITS.maxRecordsPerMessage, records$: RECORD_LIMITS }
    }))
    checkAnnouncementHeader(m)
    return {
      origin: m.origin,
      indexId: m.indexId,
      firstSeq: m.firstSeq,
      lastSeq: m.lastSeq,
      ...(m.completeAfter !== undefined ? { completeAfter: m.completeAfter } : {}),
      records: fromPbRecords(m.records, kind)
    }
  })
}

/** Encodes an IndexRequest. Throws WireError when it breaks a rule. */
export function encodeIndexRequest (r: IndexRequest): Uint8Array<ArrayBuffer> {
  const kind = 'index request'
  return guard(kind, () => {
    checkIndexId(r.indexId, kind)
    checkSeq(r.after, kind, 'after')
    return finish(kind, pb.IndexRequest.encode({ indexId: r.indexId, after: r.after }))
  })
}

/** Decodes and validates an IndexRequest. Throws WireError (only). */
export function decodeIndexRequest (bytes: Uint8Array): IndexRequest {
  const kind = 'index request'
  return guard(kind, () => {
    const m = parse(kind, bytes, (b) => pb.IndexRequest.decode(b))
    return { indexId: checkIndexId(m.indexId, kind), after: checkSeq(m.after, kind, 'after') }
  })
}

/** Encodes an IndexResponse. Throws WireError when it breaks a rule or is too large. */
export function encodeIndexResponse (r: Sendable<IndexResponse>): Uint8Array<ArrayBuffer> {
  const kind = 'index response'
  return guard(kind, () => {
    checkIndexId(r.indexId, kind)
    checkSeq(r.seq, kind, 'seq')
    if (typeof r.done !== 'boolean') fail(kind, 'done is not a boolean')
    return encodeWithRecords(kind, r.records, 3, (records) => pb.IndexResponse.encode({ indexId: r.indexId, seq: r.seq, records, done: r.done }))
  })
}

/** Decodes and fully validates an IndexResponse. Throws WireError (only). */
export function decodeIndexResponse (bytes: Uint8Array): IndexResponse {
  const kind = 'index response'
  return guard(kind, () => {
    const m = parse(kind, bytes, (b) => readIndexResponse(b, READ_LIMITS) ?? pb.IndexResponse.decode(b, {
      limits: { records: LIMITS.maxRecordsPerMessage, records$: RECORD_LIMITS }
    }))
    return {
      indexId: checkIndexId(m.indexId, kind),
      seq: checkSeq(m.seq, kind, 'seq'),
      records: fromPbRecords(m.records, kind),
      done: m.done
    }
  })
}

// ---------------------------------------------------------------------------------------
// Splitting

/**
 * Upper bound on the bytes of an Announcement or IndexResponse other than its records:
 * origin (1 + 1 + 13) + indexId (1 + 2 + 128) + two sequence numbers (2 × (1 + 8), a safe
 * integer takes at most 8 varint bytes); an IndexResponse's indexId + seq + done is less.
 */
export const ENVELOPE_BYTES = 15 + 131 + 18

function varintLength (n: number): number {
  let len = 1
  while (n >= 128) {
    n = Math.floor(n / 128)
    len++
  }
  return len
}

/**
 * Records in the order given, each already encoded (a pb.Record) once: what
 * splitEncoded gives and encodeAnnouncement / encodeIndexResponse take as `records`, so a
 * record is converted and encoded once per message instead of once to size it and again
 * to send it (measured: the second encoding was 5% of a sending node's event loop while it
 * recorded and announced 10,000 new small files).
 */
export interface EncodedRecords {
  records: FileRecord[]
  encoded: Uint8Array[]
}

/**
 * Packs `records`, in order, into consecutive groups such that an Announcement (or
 * IndexResponse) carrying one group encodes to at most `maxBytes` bytes (capped at
 * LIMITS.maxMessageBytes) and at most LIMITS.maxRecordsPerMessage records. A record too
 * large for any group gets a group of its own. Throws WireError on an invalid record.
 */
export function splitRecords (records: FileRecord[], maxBytes: number): FileRecord[][] {
  return splitEncoded(records, maxBytes).map((g) => g.records)
}

/**
 * splitRecords, with each group's records encoded (pass a group on as `records`). With
 * `onInvalid`, a record that breaks a wire rule, or is larger than any message, is handed
 * to it and left out instead.
 */
export function splitEncoded (records: FileRecord[], maxBytes: number, onInvalid?: (record: FileRecord, err: WireError) => void): EncodedRecords[] {
  return guard('splitRecords', () => split(records, maxBytes, onInvalid))
}

function split (records: FileRecord[], maxBytes: number, onInvalid?: (record: FileRecord, err: WireError) => void): EncodedRecords[] {
  const budget = Math.min(maxBytes, LIMITS.maxMessageBytes)
  const groups: EncodedRecords[] = []
  let group: EncodedRecords = { records: [], encoded: [] }
  let size = ENVELOPE_BYTES
  records.forEach((r, i) => {
    let bytes: Uint8Array
    try {
      bytes = encodeRecordBytes(toPbRecord(r, i))
    } catch (err) {
      if (onInvalid == null || !(err instanceof WireError)) throw err
      onInvalid(r, err)
      return
    }
    const cost = 1 + varintLength(bytes.byteLength) + bytes.byteLength
    if (onInvalid != null && ENVELOPE_BYTES + cost > LIMITS.maxMessageBytes) {
      onInvalid(r, new WireError(`${describeRecord(i, r.path)}: encodes to ${bytes.byteLength} bytes, more than a message carries (${LIMITS.maxMessageBytes})`))
      return
    }
    if (group.records.length > 0 && (size + cost > budget || group.records.length >= LIMITS.maxRecordsPerMessage)) {
      groups.push(group)
      group = { records: [], encoded: [] }
      size = ENVELOPE_BYTES
    }
    group.records.push(r)
    group.encoded.push(bytes)
    size += cost
  })
  if (group.records.length > 0) groups.push(group)
  return groups
}

/**
 * `header` (a message encoded without records) followed by each encoded record as field
 * `field` of that message: protobuf's encoding of the whole message, since fields may come
 * in any order and a repeated field's elements are its occurrences in order.
 */
function appendRecords (header: Uint8Array, field: number, encoded: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let total = header.byteLength
  for (const e of encoded) total += 1 + varintLength(e.byteLength) + e.byteLength
  const out = new Uint8Array(total)
  out.set(header, 0)
  let at = header.byteLength
  const key = (field << 3) | 2 // length-delimited
  for (const e of encoded) {
    out[at++] = key
    let n = e.byteLength
    while (n >= 128) {
      out[at++] = (n & 0x7f) | 0x80
      n >>>= 7
    }
    out[at++] = n
    out.set(e, at)
    at += e.byteLength
  }
  return out
}

/** The records of a message as pb records, or encoded once already (a splitEncoded group). */
function encodeWithRecords (kind: string, records: FileRecord[] | EncodedRecords, field: number, encode: (records: pb.Record[]) => Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  if (Array.isArray(records)) return finish(kind, encode(toPbRecords(records, kind)))
  if (records.encoded.length !== records.records.length) fail(kind, 'encoded records do not match the records')
  if (records.records.length > LIMITS.maxRecordsPerMessage) {
    fail(kind, `has ${records.records.length} records, limit ${LIMITS.maxRecordsPerMessage}`)
  }
  return finish(kind, appendRecords(encode([]), field, records.encoded))
}
