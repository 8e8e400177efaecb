/**
 * Block-protocol wire codec: native BlockRequest / BlockResponse <-> protobuf
 * (src/transfer/pb/blocks.proto). One stream carries pipelined, length-prefixed
 * requests; each response echoes its request's id.
 *
 * Decoders validate fully and throw WireError (the same class as the gossip codec), never
 * anything else. Encoders check the same rules and throw WireError too.
 * decodeBlockResponse does not copy the block bytes: `data` is a view into the input.
 */
import { isWellFormed, quotePath, validatePath, PathError } from '../store/paths.js'
import { WireError } from '../gossip/codec.js'
import * as pb from './pb/blocks.js'
import { varintLength, writeHexHash, writeVarint } from '../wire/protobuf.js'
import { Uint8ArrayList } from 'uint8arraylist'

export { WireError }

/** Limits enforced by every encode and decode of this module. */
export const TRANSFER_LIMITS = {
  /** Largest block (and so largest request size and response data), 16 MiB. */
  maxBlockBytes: 16 * 1024 * 1024,
  /** Length of a SHA-256 hash, in raw bytes. */
  hashBytes: 32,
  /** Largest status message, in UTF-8 bytes. */
  maxMessageBytes: 1024,
  /** Largest encoded BlockRequest (a 4096-byte path hint plus small fields). */
  maxRequestBytes: 4096 + 128,
  /**
   * Largest encoded BlockResponse: a full block plus the other fields. Use it as the
   * length-prefix decoder's maxDataLength.
   */
  maxResponseBytes: 16 * 1024 * 1024 + 2048,
  /** Most blocks one batch request (protocol 2) may ask for. */
  maxWants: 1024,
  /** Most bytes one batch request may ask for (the sum of its sizes), 64 MiB. */
  maxBatchBytes: 64 * 1024 * 1024,
  /** Largest encoded batch request: maxWants wants with 4096-byte path hints. */
  maxBatchRequestBytes: 1024 * (4096 + 64) + 16,
  /** Largest encoded block frame header (protocol 2). */
  maxHeaderBytes: 2048,
  /** Largest block frame (header, its length and a full block): the frame decoder's maxDataLength. */
  maxFrameBytes: 16 * 1024 * 1024 + 2048 + 2
} as const

export type BlockStatus = 'ok' | 'not-found' | 'error' | 'busy'

export interface BlockRequest {
  /** Chosen by the requester (uint32), echoed in the response. */
  id: number
  /** SHA-256 of the wanted block, lowercase hex. */
  hash: string
  /** Where the block probably starts in pathHint (a hint; the responder checks the hash). */
  offsetHint: number
  /** Expected block length in bytes, 1 .. 16 MiB. */
  size: number
  /** A file that probably holds the block, '' if unknown. */
  pathHint: string
}

export interface BlockResponse {
  id: number
  status: BlockStatus
  /** The block when status is 'ok', empty otherwise. */
  data: Uint8Array
  /** Human-readable detail (for 'error' / 'busy'), '' if none. */
  message: string
}

const STATUS_TO_PB: Readonly<Record<BlockStatus, pb.Status>> = {
  ok: pb.Status.OK,
  'not-found': pb.Status.NOT_FOUND,
  error: pb.Status.ERROR,
  busy: pb.Status.BUSY
}

const STATUS_FROM_PB: Readonly<Record<pb.Status, BlockStatus>> = {
  [pb.Status.OK]: 'ok',
  [pb.Status.NOT_FOUND]: 'not-found',
  [pb.Status.ERROR]: 'error',
  [pb.Status.BUSY]: 'busy'
}

const HEX_HASH = /^[0-9a-f]{64}$/
// Control characters are replaced in decoded status messages (they end up in logs).
const CONTROL = /[\u0000-\u001f\u007f]/g

function fail (kind: string, what: string): never {
  throw new WireError(`${kind}: ${what}`.replace(/\s+/g, ' '))
}

function errorText (err: unknown): string {
  return err instanceof Error ? err.message : String(err)
}

function guard<T> (kind: string, fn: () => T): T {
  try {
    return fn()
  } catch (err) {
    if (err instanceof WireError) throw err
    fail(kind, `invalid message: ${errorText(err)}`)
  }
}

function byteLength (bytes: Uint8Array | Uint8ArrayList): number {
  return bytes.byteLength
}

function parse<T> (kind: string, bytes: Uint8Array | Uint8ArrayList, max: number, fn: () => T): T {
  if (bytes == null || typeof byteLength(bytes) !== 'number') fail(kind, 'input is not bytes')
  if (byteLength(bytes) > max) fail(kind, `message is ${byteLength(bytes)} bytes, limit ${max}`)
  try {
    return fn()
  } catch (err) {
    if (err instanceof Error && err.message === 'Invalid enum value') fail(kind, 'status out of range')
    fail(kind, `protobuf does not parse: ${errorText(err)}`)
  }
}

function checkId (id: unknown, kind: string): number {
  if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id > 0xffffffff) {
    fail(kind, `id ${String(id)} is not a uint32`)
  }
  return id
}

function checkPathHint (p: unknown, kind: string): string {
  if (typeof p !== 'string') fail(kind, 'pathHint is not a string')
  if (p === '') return p
  try {
    return validatePath(p)
  } catch (err) {
    if (err instanceof PathError) fail(kind, `pathHint: ${err.message}`)
    throw err
  }
}

function checkRequest (r: { id: unknown, offsetHint: unknown, size: unknown, pathHint: unknown }, kind: string): void {
  checkId(r.id, kind)
  checkWant(r, kind)
}

/** A request's or a want's fields but its id. */
function checkWant (r: { offsetHint: unknown, size: unknown, pathHint: unknown }, kind: string): void {
  if (typeof r.offsetHint !== 'number' || !Number.isSafeInteger(r.offsetHint) || r.offsetHint < 0) {
    fail(kind, `offsetHint ${String(r.offsetHint)} is not a safe non-negative integer`)
  }
  if (typeof r.size !== 'number' || !Number.isInteger(r.size) || r.size < 1 || r.size > TRANSFER_LIMITS.maxBlockBytes) {
    fail(kind, `size ${String(r.size)} is not in [1, ${TRANSFER_LIMITS.maxBlockBytes}]`)
  }
  checkPathHint(r.pathHint, kind)
}

/** Encodes a BlockRequest. Throws WireError when it breaks a rule. */
export function encodeBlockRequest (r: BlockRequest): Uint8Array<ArrayBuffer> {
  const kind = 'block request'
  return guard(kind, () => {
    checkRequest(r, kind)
    if (typeof r.hash !== 'string' || !HEX_HASH.test(r.hash)) fail(kind, 'hash is not 64 lowercase hex characters')
    const hash = new Uint8Array(Buffer.from(r.hash, 'hex'))
    return pb.BlockRequest.encode({ id: r.id, hash, offsetHint: r.offsetHint, size: r.size, pathHint: r.pathHint })
  })
}

/** Decodes and validates a BlockRequest. Throws WireError (only). */
export function decodeBlockRequest (bytes: Uint8Array | Uint8ArrayList): BlockRequest {
  const kind = 'block request'
  return guard(kind, () => {
    const m = parse(kind, bytes, TRANSFER_LIMITS.maxRequestBytes, () => pb.BlockRequest.decode(bytes))
    checkRequest(m, kind)
    if (m.hash.byteLength !== TRANSFER_LIMITS.hashBytes) fail(kind, `hash is not ${TRANSFER_LIMITS.hashBytes} bytes`)
    const hash = Buffer.from(m.hash.buffer, m.hash.byteOffset, m.hash.byteLength).toString('hex')
    return { id: m.id, hash, offsetHint: m.offsetHint, size: m.size, pathHint: m.pathHint }
  })
}

function checkResponse (r: { id: unknown, data: unknown, message: unknown }, status: pb.Status, kind: string): void {
  checkId(r.id, kind)
  if (!(r.data instanceof Uint8Array)) fail(kind, 'data is not bytes')
  if (r.data.byteLength > TRANSFER_LIMITS.maxBlockBytes) {
    fail(kind, `data is ${r.data.byteLength} bytes, limit ${TRANSFER_LIMITS.maxBlockBytes}`)
  }
  if (status !== pb.Status.OK && r.data.byteLength !== 0) fail(kind, `status ${STATUS_FROM_PB[status]} carries data`)
  if (typeof r.message !== 'string') fail(kind, 'message is not a string')
  if (!isWellFormed(r.message)) fail(kind, 'message is not valid Unicode')
  if (Buffer.byteLength(r.message, 'utf8') > TRANSFER_LIMITS.maxMessageBytes) {
    fail(kind, `message ${quotePath(r.message)} is longer than ${TRANSFER_LIMITS.maxMessageBytes} bytes`)
  }
}

/**
 * Encodes a BlockResponse (the block bytes are copied once, into the output). Throws
 * WireError when it breaks a rule.
 */
export function encodeBlockResponse (r: BlockResponse): Uint8Array<ArrayBuffer> {
  const kind = 'block response'
  return guard(kind, () => {
    if (typeof r.status !== 'string' || !Object.hasOwn(STATUS_TO_PB, r.status)) {
      fail(kind, `status ${JSON.stringify(String(r.status))} is not ok, not-found, error or busy`)
    }
    const status = STATUS_TO_PB[r.status]
    checkResponse(r, status, kind)
    // protons types bytes fields as Uint8Array<ArrayBuffer>; the writer only reads them.
    const data = r.data as Uint8Array<ArrayBuffer>
    return pb.BlockResponse.encode({ id: r.id, status, data, message: r.message })
  })
}

/**
 * Decodes and validates a BlockResponse. `data` is a view into `bytes` (no copy) when
 * `bytes` is a Uint8Array backed by an ArrayBuffer. Throws WireError (only).
 */
export function decodeBlockResponse (bytes: Uint8Array | Uint8ArrayList): BlockResponse {
  const kind = 'block response'
  return guard(kind, () => {
    const m = parse(kind, bytes, TRANSFER_LIMITS.maxResponseBytes, () => pb.BlockResponse.decode(bytes))
    if (!Object.hasOwn(STATUS_FROM_PB, m.status)) fail(kind, 'status out of range')
    checkResponse(m, m.status, kind)
    return { id: m.id, status: STATUS_FROM_PB[m.status], data: m.data, message: m.message.replace(CONTROL, ' ') }
  })
}

// ---------------------------------------------------------------------------------------
// Protocol 2: batch requests, and one frame per block with the block's bytes outside the
// protobuf header (no copy into or out of a message on either side).

/** One block a batch request asks for. */
export interface Want {
  /** SHA-256 of the wanted block, lowercase hex. */
  hash: string
  /** Expected block length in bytes, 1 .. 16 MiB. */
  size: number
  /** A file that probably holds the block, '' if unknown. */
  pathHint: string
  /** Where the block probably starts in pathHint. */
  offsetHint: number
  /**
   * The responder may send the block without hashing it when its record of the file still
   * matches the file (size, mtime, inode): the requester hashes every block and asks again
   * without this before it counts a mismatch against the responder. Absent: false.
   */
  unhashedOk?: boolean
}

export interface BatchRequest {
  /** Chosen by the requester (uint32), echoed in every frame of the answer. */
  id: number
  /** 1 .. maxWants blocks, at most maxBatchBytes together. */
  wants: Want[]
}

/** The header of one block frame: which block of which request, and how it went. */
export interface BlockHeader {
  id: number
  /** Index of the block in the request's wants. */
  index: number
  status: BlockStatus
  /** Block bytes following the header (0 unless status is 'ok'). */
  size: number
  message: string
}

/** A decoded block frame: `data` is a list of views into the frame (no copy). */
export interface BlockFrame {
  header: BlockHeader
  data: Uint8ArrayList
}

function checkWants (wants: unknown, kind: string): void {
  if (!Array.isArray(wants) || wants.length === 0) fail(kind, 'no wants')
  if (wants.length > TRANSFER_LIMITS.maxWants) fail(kind, `${wants.length} wants, limit ${TRANSFER_LIMITS.maxWants}`)
  let total = 0
  for (const w of wants as Array<{ size: unknown, offsetHint: unknown, pathHint: unknown }>) {
    if (w == null || typeof w !== 'object') fail(kind, 'a want is not an object')
    checkWant(w, kind)
    total += w.size as number
  }
  if (total > TRANSFER_LIMITS.maxBatchBytes) fail(kind, `asks for ${total} bytes, limit ${TRANSFER_LIMITS.maxBatchBytes}`)
}

/** Encodes a BatchRequest. Throws WireError when it breaks a rule. */
export function encodeBatchRequest (r: BatchRequest): Uint8Array<ArrayBuffer> {
  const kind = 'batch request'
  return guard(kind, () => {
    checkId(r.id, kind)
    checkWants(r.wants, kind)
    return writeBatchRequest(r, kind)
  })
}

/**
 * A checked BatchRequest's bytes, as `pb.BatchRequest.encode` writes them (fields in number
 * order, defaults left out), into one buffer sized first: a receiver encodes a want for
 * every file it pulls, and protons' writer (an object per field, then the copies) cost
 * 3-4% of its event loop in a catch-up of small files.
 */
function writeBatchRequest (r: BatchRequest, kind: string): Uint8Array<ArrayBuffer> {
  const lens = new Array<number>(r.wants.length)
  const paths = new Array<number>(r.wants.length)
  let n = r.id === 0 ? 0 : 1 + varintLength(r.id)
  r.wants.forEach((w, i) => {
    const p = w.pathHint === '' ? 0 : Buffer.byteLength(w.pathHint)
    const len = (1 + 1 + TRANSFER_LIMITS.hashBytes) + (w.size === 0 ? 0 : 1 + varintLength(w.size)) +
      (p === 0 ? 0 : 1 + varintLength(p) + p) + (w.offsetHint === 0 ? 0 : 1 + varintLength(w.offsetHint)) + (w.unhashedOk === true ? 2 : 0)
    paths[i] = p
    lens[i] = len
    n += 1 + varintLength(len) + len
  })
  const out = new Uint8Array(n)
  let at = 0
  if (r.id !== 0) { out[at++] = 8; at = writeVarint(out, at, r.id) }
  const text = Buffer.from(out.buffer, out.byteOffset, out.byteLength)
  r.wants.forEach((w, i) => {
    out[at++] = 18
    at = writeVarint(out, at, lens[i])
    out[at++] = 10
    out[at++] = TRANSFER_LIMITS.hashBytes
    if (typeof w.hash !== 'string' || !writeHexHash(out, at, w.hash)) fail(kind, 'hash is not 64 lowercase hex characters')
    at += TRANSFER_LIMITS.hashBytes
    if (w.size !== 0) { out[at++] = 16; at = writeVarint(out, at, w.size) }
    if (paths[i] > 0) { out[at++] = 26; at = writeVarint(out, at, paths[i]); at += text.write(w.pathHint, at, paths[i], 'utf8') }
    if (w.offsetHint !== 0) { out[at++] = 32; at = writeVarint(out, at, w.offsetHint) }
    if (w.unhashedOk === true) { out[at++] = 40; out[at++] = 1 }
  })
  if (at !== n) fail(kind, `encoding wrote ${at} bytes of ${n}`)
  return out
}

/** Decodes and validates a BatchRequest. Throws WireError (only). */
export function decodeBatchRequest (bytes: Uint8Array | Uint8ArrayList): BatchRequest {
  const kind = 'batch request'
  return guard(kind, () => {
    const m = parse(kind, bytes, TRANSFER_LIMITS.maxBatchRequestBytes, () => pb.BatchRequest.decode(bytes, { limits: { wants: TRANSFER_LIMITS.maxWants + 1 } }))
    checkId(m.id, kind)
    checkWants(m.wants, kind)
    const wants = m.wants.map((w): Want => {
      if (w.hash.byteLength !== TRANSFER_LIMITS.hashBytes) fail(kind, `hash is not ${TRANSFER_LIMITS.hashBytes} bytes`)
      const hash = Buffer.from(w.hash.buffer, w.hash.byteOffset, w.hash.byteLength).toString('hex')
      return { hash, size: w.size, pathHint: w.pathHint, offsetHint: w.offsetHint, ...(w.unhashedOk ? { unhashedOk: true } : {}) }
    })
    return { id: m.id, wants }
  })
}

function checkHeader (h: { id: unknown, index: unknown, size: unknown, message: unknown }, status: pb.Status, kind: string): void {
  checkId(h.id, kind)
  if (typeof h.index !== 'number' || !Number.isInteger(h.index) || h.index < 0 || h.index >= TRANSFER_LIMITS.maxWants) {
    fail(kind, `index ${String(h.index)} is not in [0, ${TRANSFER_LIMITS.maxWants})`)
  }
  if (typeof h.size !== 'number' || !Number.isInteger(h.size) || h.size < 0 || h.size > TRANSFER_LIMITS.maxBlockBytes) {
    fail(kind, `size ${String(h.size)} is not in [0, ${TRANSFER_LIMITS.maxBlockBytes}]`)
  }
  if (status !== pb.Status.OK && h.size !== 0) fail(kind, `status ${STATUS_FROM_PB[status]} carries data`)
  if (typeof h.message !== 'string') fail(kind, 'message is not a string')
  if (!isWellFormed(h.message)) fail(kind, 'message is not valid Unicode')
  if (Buffer.byteLength(h.message, 'utf8') > TRANSFER_LIMITS.maxMessageBytes) {
    fail(kind, `message ${quotePath(h.message)} is longer than ${TRANSFER_LIMITS.maxMessageBytes} bytes`)
  }
}

function varint (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) { out.push((n & 0x7f) | 0x80); n >>>= 7 }
  out.push(n)
  return Uint8Array.from(out)
}

/**
 * Encodes one block frame (the payload of one length-prefixed message): the header's
 * length as a varint, the header, then `data` as it is (not copied: the result is a list
 * of the three parts). `data` must be empty unless the status is 'ok'. Throws WireError.
 */
export function encodeBlockFrame (h: Omit<BlockHeader, 'size'>, data: Uint8Array | null): Uint8ArrayList {
  const kind = 'block frame'
  return guard(kind, () => {
    if (typeof h.status !== 'string' || !Object.hasOwn(STATUS_TO_PB, h.status)) {
      fail(kind, `status ${JSON.stringify(String(h.status))} is not ok, not-found, error or busy`)
    }
    const status = STATUS_TO_PB[h.status]
    const size = data?.byteLength ?? 0
    checkHeader({ ...h, size }, status, kind)
    const header = pb.BlockHeader.encode({ id: h.id, index: h.index, status, size, message: h.message })
    const out = new Uint8ArrayList(varint(header.byteLength), header)
    if (data != null && size > 0) out.append(data)
    return out
  })
}

/**
 * Decodes and validates one block frame. `data` is a list of views into `bytes` (no
 * copy). Throws WireError (only).
 */
export function decodeBlockFrame (bytes: Uint8Array | Uint8ArrayList): BlockFrame {
  const kind = 'block frame'
  return guard(kind, () => {
    const frame = bytes instanceof Uint8Array ? new Uint8ArrayList(bytes) : bytes
    if (frame == null || typeof frame.byteLength !== 'number') fail(kind, 'input is not bytes')
    if (frame.byteLength > TRANSFER_LIMITS.maxFrameBytes) fail(kind, `frame is ${frame.byteLength} bytes, limit ${TRANSFER_LIMITS.maxFrameBytes}`)
    // the header's length: a varint of at most 2 bytes (maxHeaderBytes < 2^14)
    let hlen = 0
    let pos = 0
    for (;;) {
      if (pos >= frame.byteLength) fail(kind, 'truncated header length')
      if (pos >= 2) fail(kind, 'header length is too long')
      const b = frame.get(pos)
      hlen |= (b & 0x7f) << (7 * pos)
      pos++
      if ((b & 0x80) === 0) break
    }
    if (hlen > TRANSFER_LIMITS.maxHeaderBytes) fail(kind, `header is ${hlen} bytes, limit ${TRANSFER_LIMITS.maxHeaderBytes}`)
    if (pos + hlen > frame.byteLength) fail(kind, 'truncated header')
    const headerBytes = frame.subarray(pos, pos + hlen)
    let m: pb.BlockHeader
    try {
      m = pb.BlockHeader.decode(headerBytes)
    } catch (err) {
      if (err instanceof Error && err.message === 'Invalid enum value') fail(kind, 'status out of range')
      fail(kind, `protobuf does not parse: ${errorText(err)}`)
    }
    if (!Object.hasOwn(STATUS_FROM_PB, m.status)) fail(kind, 'status out of range')
    checkHeader(m, m.status, kind)
    const rest = frame.byteLength - pos - hlen
    if (rest !== m.size) fail(kind, `header says ${m.size} data bytes, the frame has ${rest}`)
    const header: BlockHeader = { id: m.id, index: m.index, status: STATUS_FROM_PB[m.status], size: m.size, message: m.message.replace(CONTROL, ' ') }
    return { header, data: frame.sublist(pos + hlen) }
  })
}
