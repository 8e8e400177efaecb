/**
 * Announcements and index responses decoded by hand, for the messages a node receives by
 * the thousand: the same objects protons' generated decoders give (`pb.Announcement`,
 * `pb.IndexResponse`), or null, and then the caller decodes the bytes with protons.
 *
 * A node decodes every record it is sent. protons' reader goes through a generic object
 * per message and a JavaScript UTF-8 decoder per string: 5 µs a record in a receiving
 * node's profile, half of what decoding the records cost it (9% of its event loop while a
 * burst of 10,000 new files arrived by gossip, 5% in a catch-up).
 *
 * Only the encoding syncmesh's encoders write is read here: every varint canonical and in
 * range for its field, each known field with its own wire type, lengths within the
 * message they are in, strings valid UTF-8, no more records or version entries than the
 * limits. Anything else (a field protons reads in its own lenient way, a limit protons
 * refuses) gives null, so protons decides it as before: the result never differs from
 * protons' (tested against it on valid and on damaged messages).
 */
import * as pb from './pb/gossip.js'

const TYPES = [pb.FileType.FILE, pb.FileType.DIR, pb.FileType.SYMLINK, pb.FileType.META]
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })

/** Not the encoding read here: protons decides. */
class Other extends Error {}
const OTHER = new Other()

class Reader {
  pos = 0
  constructor (readonly buf: Uint8Array, readonly latin1: (start: number, end: number) => string) {}

  /** A canonical varint of at most 2^53 - 1. */
  varint (end: number): number {
    const b = this.buf
    let n = 0
    let mul = 1
    for (let i = 0; i < 8; i++) {
      if (this.pos >= end) throw OTHER
      const byte = b[this.pos++]
      n += (byte & 0x7f) * mul
      if (byte < 0x80) {
        // a last byte of 0 after others: not canonical (protons may read it another way)
        if (byte === 0 && i > 0) throw OTHER
        if (n > Number.MAX_SAFE_INTEGER) throw OTHER
        return n
      }
      mul *= 128
    }
    throw OTHER
  }

  uint32 (end: number): number {
    const n = this.varint(end)
    if (n > 0xffffffff) throw OTHER
    return n
  }

  /** The end of a length-delimited field that starts here. */
  delimited (end: number): number {
    const len = this.varint(end)
    const stop = this.pos + len
    if (stop > end) throw OTHER
    return stop
  }

  bytes (end: number): Uint8Array {
    const stop = this.delimited(end)
    const out = this.buf.subarray(this.pos, stop)
    this.pos = stop
    return out
  }

  /** The last short string read, and where its bytes are: node ids repeat in every record. */
  private lastAt = -1
  private lastLen = -1
  private last = ''

  string (end: number): string {
    const stop = this.delimited(end)
    const b = this.buf
    const len = stop - this.pos
    if (len === this.lastLen && len <= 32) {
      let same = true
      for (let i = 0; i < len; i++) if (b[this.pos + i] !== b[this.lastAt + i]) { same = false; break }
      if (same) {
        this.lastAt = this.pos
        this.pos = stop
        return this.last
      }
    }
    let ascii = true
    for (let i = this.pos; i < stop; i++) if (b[i] >= 0x80) { ascii = false; break }
    let s: string
    if (ascii) {
      s = this.latin1(this.pos, stop)
    } else {
      try {
        s = utf8.decode(b.subarray(this.pos, stop))
      } catch {
        throw OTHER
      }
    }
    if (len <= 32) {
      this.lastAt = this.pos
      this.lastLen = len
      this.last = s
    }
    this.pos = stop
    return s
  }

  /** Skip an unknown field of wire type `wt` (as protons does, within bounds). */
  skip (wt: number, end: number): void {
    if (wt === 0) { this.varintAny(end); return }
    const n = wt === 1 ? 8 : wt === 5 ? 4 : wt === 2 ? this.varint(end) : -1
    if (n < 0 || this.pos + n > end) throw OTHER
    this.pos += n
  }

  /** Any varint (an unknown field's value), up to ten bytes. */
  private varintAny (end: number): void {
    for (let i = 0; i < 10; i++) {
      if (this.pos >= end) throw OTHER
      if (this.buf[this.pos++] < 0x80) return
    }
    throw OTHER
  }
}

function versionEntry (r: Reader, end: number): pb.VersionEntry {
  const e: pb.VersionEntry = { node: '', counter: 0 }
  while (r.pos < end) {
    const tag = r.uint32(end)
    const wt = tag & 7
    switch (tag >>> 3) {
      case 1: if (wt !== 2) throw OTHER; e.node = r.string(end); break
      case 2: if (wt !== 0) throw OTHER; e.counter = r.varint(end); break
      default: r.skip(wt, end)
    }
  }
  return e
}

function record (r: Reader, end: number, maxVv: number): pb.Record {
  const rec: pb.Record = {
    path: '',
    type: pb.FileType.FILE,
    mode: 0,
    size: 0,
    mtimeMs: 0,
    blockSize: 0,
    blocks: [],
    hash: new Uint8Array(0),
    target: '',
    deleted: false,
    vv: [],
    hlcWall: 0,
    hlcLogical: 0,
    node: ''
  }
  while (r.pos < end) {
    const tag = r.uint32(end)
    const wt = tag & 7
    switch (tag >>> 3) {
      case 1: if (wt !== 2) throw OTHER; rec.path = r.string(end); break
      case 2: {
        if (wt !== 0) throw OTHER
        const t = TYPES[r.varint(end)]
        if (t === undefined) throw OTHER
        rec.type = t
        break
      }
      case 3: if (wt !== 0) throw OTHER; rec.mode = r.uint32(end); break
      case 4: if (wt !== 0) throw OTHER; rec.size = r.varint(end); break
      case 5: {
        if (wt !== 0) throw OTHER
        const z = r.varint(end)
        // zig-zag: even is n / 2, odd is -(n + 1) / 2 (exact for safe integers)
        rec.mtimeMs = z % 2 === 0 ? z / 2 : -(z + 1) / 2
        break
      }
      case 6: if (wt !== 0) throw OTHER; rec.blockSize = r.uint32(end); break
      case 7: if (wt !== 2) throw OTHER; rec.blocks.push(r.bytes(end) as Uint8Array<ArrayBuffer>); break
      case 8: if (wt !== 2) throw OTHER; rec.hash = r.bytes(end) as Uint8Array<ArrayBuffer>; break
      case 9: if (wt !== 2) throw OTHER; rec.target = r.string(end); break
      case 10: {
        if (wt !== 0) throw OTHER
        const v = r.varint(end)
        if (v > 1) throw OTHER
        rec.deleted = v === 1
        break
      }
      case 11: {
        if (wt !== 2) throw OTHER
        if (rec.vv.length === maxVv) throw OTHER
        const stop = r.delimited(end)
        rec.vv.push(versionEntry(r, stop))
        break
      }
      case 12: if (wt !== 0) throw OTHER; rec.hlcWall = r.varint(end); break
      case 13: if (wt !== 0) throw OTHER; rec.hlcLogical = r.uint32(end); break
      case 14: if (wt !== 2) throw OTHER; rec.node = r.string(end); break
      default: r.skip(wt, end)
    }
  }
  return rec
}

function reader (bytes: Uint8Array): Reader {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  return new Reader(bytes, (start, end) => buf.toString('latin1', start, end))
}

/**
 * A message with records in field `recordsField` (`m` holds its defaults): the records
 * read here, every other known field by `field` (false: not one of its fields, skipped).
 */
function readMessage<M extends { records: pb.Record[] }> (bytes: Uint8Array, limits: { records: number, vv: number }, m: M, recordsField: number,
  field: (r: Reader, n: number, wt: number, end: number) => boolean): M | null {
  const r = reader(bytes)
  const end = bytes.byteLength
  try {
    while (r.pos < end) {
      const tag = r.uint32(end)
      const wt = tag & 7
      const n = tag >>> 3
      if (n === recordsField) {
        if (wt !== 2) throw OTHER
        if (m.records.length === limits.records) throw OTHER
        const stop = r.delimited(end)
        m.records.push(record(r, stop, limits.vv))
      } else if (!field(r, n, wt, end)) {
        r.skip(wt, end)
      }
    }
  } catch (err) {
    if (err instanceof Other) return null
    throw err
  }
  return m
}

/** A varint field (wire type 0). */
function varintField (r: Reader, wt: number, end: number): number {
  if (wt !== 0) throw OTHER
  return r.varint(end)
}

/** A string field (wire type 2). */
function stringField (r: Reader, wt: number, end: number): string {
  if (wt !== 2) throw OTHER
  return r.string(end)
}

/** An Announcement as `pb.Announcement.decode(bytes, limits)` gives it, or null (protons decides). */
export function readAnnouncement (bytes: Uint8Array, limits: { records: number, vv: number }): pb.Announcement | null {
  const m: pb.Announcement = { origin: '', indexId: '', firstSeq: 0, lastSeq: 0, records: [] }
  return readMessage(bytes, limits, m, 5, (r, n, wt, end) => {
    switch (n) {
      case 1: m.origin = stringField(r, wt, end); return true
      case 2: m.indexId = stringField(r, wt, end); return true
      case 3: m.firstSeq = varintField(r, wt, end); return true
      case 4: m.lastSeq = varintField(r, wt, end); return true
      case 6: m.completeAfter = varintField(r, wt, end); return true
      default: return false
    }
  })
}

/** An IndexResponse as `pb.IndexResponse.decode(bytes, limits)` gives it, or null (protons decides). */
export function readIndexResponse (bytes: Uint8Array, limits: { records: number, vv: number }): pb.IndexResponse | null {
  const m: pb.IndexResponse = { indexId: '', seq: 0, records: [], done: false }
  return readMessage(bytes, limits, m, 3, (r, n, wt, end) => {
    switch (n) {
      case 1: m.indexId = stringField(r, wt, end); return true
      case 2: m.seq = varintField(r, wt, end); return true
      case 4: {
        const v = varintField(r, wt, end)
        if (v > 1) throw OTHER
        m.done = v === 1
        return true
      }
      default: return false
    }
  })
}
