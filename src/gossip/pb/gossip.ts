import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export enum FileType {
  FILE = 'FILE',
  DIR = 'DIR',
  SYMLINK = 'SYMLINK',
  META = 'META'
}

enum __FileTypeValues {
  FILE = 0,
  DIR = 1,
  SYMLINK = 2,
  META = 3
}

export namespace FileType {
  export const codec = (): Codec<FileType, FileType> => {
    return enumeration<FileType>(__FileTypeValues)
  }
}

export interface VersionEntry {
  node: string
  counter: number
}

export namespace VersionEntry {
  let _codec: Codec<VersionEntry, Partial<VersionEntry>>

  export const codec = (): Codec<VersionEntry, Partial<VersionEntry>> => {
    if (_codec == null) {
      _codec = message<VersionEntry, Partial<VersionEntry>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.node != null && obj.node !== '')) {
          w.uint32(10)
          w.string(obj.node)
        }

        if ((obj.counter != null && obj.counter !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.counter)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          node: '',
          counter: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.node = reader.string()
              break
            }
            case 2: {
              obj.counter = reader.uint64Number()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.node`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.counter`,
                value: reader.uint64Number()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface VersionEntryNodeFieldEvent {
    field: '$.node'
    value: string
  }

  export interface VersionEntryCounterFieldEvent {
    field: '$.counter'
    value: number
  }

  export function encode (obj: Partial<VersionEntry>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, VersionEntry.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<VersionEntry>): VersionEntry {
    return decodeMessage(buf, VersionEntry.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<VersionEntry>): Generator<VersionEntryNodeFieldEvent | VersionEntryCounterFieldEvent> {
    return streamMessage(buf, VersionEntry.codec(), opts)
  }
}

export interface Record {
  path: string
  type: FileType
  mode: number
  size: number
  mtimeMs: number
  blockSize: number
  blocks: Uint8Array<ArrayBuffer>[]
  hash: Uint8Array<ArrayBuffer>
  target: string
  deleted: boolean
  vv: VersionEntry[]
  hlcWall: number
  hlcLogical: number
  node: string
}

export namespace Record {
  let _codec: Codec<Record, Partial<Record>>

  export const codec = (): Codec<Record, Partial<Record>> => {
    if (_codec == null) {
      _codec = message<Record, Partial<Record>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.path != null && obj.path !== '')) {
          w.uint32(10)
          w.string(obj.path)
        }

        if (obj.type != null && __FileTypeValues[obj.type] !== 0) {
          w.uint32(16)
          FileType.codec().encode(obj.type, w)
        }

        if ((obj.mode != null && obj.mode !== 0)) {
          w.uint32(24)
          w.uint32(obj.mode)
        }

        if ((obj.size != null && obj.size !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.size)
        }

        if ((obj.mtimeMs != null && obj.mtimeMs !== 0)) {
          w.uint32(40)
          w.sint64Number(obj.mtimeMs)
        }

        if ((obj.blockSize != null && obj.blockSize !== 0)) {
          w.uint32(48)
          w.uint32(obj.blockSize)
        }

        if (obj.blocks != null && obj.blocks.length > 0) {
          for (const value of obj.blocks) {
            w.uint32(58)
            w.bytes(value)
          }
        }

        if ((obj.hash != null && obj.hash.byteLength > 0)) {
          w.uint32(66)
          w.bytes(obj.hash)
        }

        if ((obj.target != null && obj.target !== '')) {
          w.uint32(74)
          w.string(obj.target)
        }

        if ((obj.deleted != null && obj.deleted !== false)) {
          w.uint32(80)
          w.bool(obj.deleted)
        }

        if (obj.vv != null && obj.vv.length > 0) {
          for (const value of obj.vv) {
            w.uint32(90)
            VersionEntry.codec().encode(value, w)
          }
        }

        if ((obj.hlcWall != null && obj.hlcWall !== 0)) {
          w.uint32(96)
          w.int64Number(obj.hlcWall)
        }

        if ((obj.hlcLogical != null && obj.hlcLogical !== 0)) {
          w.uint32(104)
          w.uint32(obj.hlcLogical)
        }

        if ((obj.node != null && obj.node !== '')) {
          w.uint32(114)
          w.string(obj.node)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          path: '',
          type: FileType.FILE,
          mode: 0,
          size: 0,
          mtimeMs: 0,
          blockSize: 0,
          blocks: [],
          hash: uint8ArrayAlloc(0),
          target: '',
          deleted: false,
          vv: [],
          hlcWall: 0,
          hlcLogical: 0,
          node: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.path = reader.string()
              break
            }
            case 2: {
              obj.type = FileType.codec().decode(reader)
              break
            }
            case 3: {
              obj.mode = reader.uint32()
              break
            }
            case 4: {
              obj.size = reader.uint64Number()
              break
            }
            case 5: {
              obj.mtimeMs = reader.sint64Number()
              break
            }
            case 6: {
              obj.blockSize = reader.uint32()
              break
            }
            case 7: {
              if (opts.limits?.blocks != null && obj.blocks.length === opts.limits.blocks) {
                throw new MaxLengthError('Decode error - repeated field "blocks" had too many elements')
              }

              obj.blocks.push(reader.bytes())
              break
            }
            case 8: {
              obj.hash = reader.bytes()
              break
            }
            case 9: {
              obj.target = reader.string()
              break
            }
            case 10: {
              obj.deleted = reader.bool()
              break
            }
            case 11: {
              if (opts.limits?.vv != null && obj.vv.length === opts.limits.vv) {
                throw new MaxLengthError('Decode error - repeated field "vv" had too many elements')
              }

              obj.vv.push(VersionEntry.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.vv$
              }))
              break
            }
            case 12: {
              obj.hlcWall = reader.int64Number()
              break
            }
            case 13: {
              obj.hlcLogical = reader.uint32()
              break
            }
            case 14: {
              obj.node = reader.string()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          blocks: 0,
          vv: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.path`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.type`,
                value: FileType.codec().decode(reader)
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.mode`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.size`,
                value: reader.uint64Number()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.mtimeMs`,
                value: reader.sint64Number()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.blockSize`,
                value: reader.uint32()
              }
              break
            }
            case 7: {
              if (opts.limits?.blocks != null && obj.blocks === opts.limits.blocks) {
                throw new MaxLengthError('Streaming decode error - repeated field "blocks" had too many elements')
              }

              yield {
                field: `${prefix}.blocks[]`,
                index: obj.blocks,
                value: reader.bytes()
              }

              obj.blocks++

              break
            }
            case 8: {
              yield {
                field: `${prefix}.hash`,
                value: reader.bytes()
              }
              break
            }
            case 9: {
              yield {
                field: `${prefix}.target`,
                value: reader.string()
              }
              break
            }
            case 10: {
              yield {
                field: `${prefix}.deleted`,
                value: reader.bool()
              }
              break
            }
            case 11: {
              if (opts.limits?.vv != null && obj.vv === opts.limits.vv) {
                throw new MaxLengthError('Streaming decode error - repeated field "vv" had too many elements')
              }

              for (const evt of VersionEntry.codec().stream(reader, reader.uint32(), `${prefix}.vv[]`, {
                limits: opts.limits?.vv$
              })) {
                yield {
                  ...evt,
                  index: obj.vv
                }
              }

              obj.vv++

              break
            }
            case 12: {
              yield {
                field: `${prefix}.hlcWall`,
                value: reader.int64Number()
              }
              break
            }
            case 13: {
              yield {
                field: `${prefix}.hlcLogical`,
                value: reader.uint32()
              }
              break
            }
            case 14: {
              yield {
                field: `${prefix}.node`,
                value: reader.string()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface RecordPathFieldEvent {
    field: '$.path'
    value: string
  }

  export interface RecordTypeFieldEvent {
    field: '$.type'
    value: FileType
  }

  export interface RecordModeFieldEvent {
    field: '$.mode'
    value: number
  }

  export interface RecordSizeFieldEvent {
    field: '$.size'
    value: number
  }

  export interface RecordMtimeMsFieldEvent {
    field: '$.mtimeMs'
    value: number
  }

  export interface RecordBlockSizeFieldEvent {
    field: '$.blockSize'
    value: number
  }

  export interface RecordBlocksFieldEvent {
    field: '$.blocks[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface RecordHashFieldEvent {
    field: '$.hash'
    value: Uint8Array<ArrayBuffer>
  }

  export interface RecordTargetFieldEvent {
    field: '$.target'
    value: string
  }

  export interface RecordDeletedFieldEvent {
    field: '$.deleted'
    value: boolean
  }

  export interface RecordVvNodeFieldEvent {
    field: '$.vv[].node'
    value: string
    index: number
  }

  export interface RecordVvCounterFieldEvent {
    field: '$.vv[].counter'
    value: number
    index: number
  }

  export interface RecordHlcWallFieldEvent {
    field: '$.hlcWall'
    value: number
  }

  export interface RecordHlcLogicalFieldEvent {
    field: '$.hlcLogical'
    value: number
  }

  export interface RecordNodeFieldEvent {
    field: '$.node'
    value: string
  }

  export function encode (obj: Partial<Record>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Record.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Record>): Record {
    return decodeMessage(buf, Record.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Record>): Generator<RecordPathFieldEvent | RecordTypeFieldEvent | RecordModeFieldEvent | RecordSizeFieldEvent | RecordMtimeMsFieldEvent | RecordBlockSizeFieldEvent | RecordBlocksFieldEvent | RecordHashFieldEvent | RecordTargetFieldEvent | RecordDeletedFieldEvent | RecordVvNodeFieldEvent | RecordVvCounterFieldEvent | RecordHlcWallFieldEvent | RecordHlcLogicalFieldEvent | RecordNodeFieldEvent> {
    return streamMessage(buf, Record.codec(), opts)
  }
}

export interface Announcement {
  origin: string
  indexId: string
  firstSeq: number
  lastSeq: number
  records: Record[]
  completeAfter?: number
}

export namespace Announcement {
  let _codec: Codec<Announcement, Partial<Announcement>>

  export const codec = (): Codec<Announcement, Partial<Announcement>> => {
    if (_codec == null) {
      _codec = message<Announcement, Partial<Announcement>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.origin != null && obj.origin !== '')) {
          w.uint32(10)
          w.string(obj.origin)
        }

        if ((obj.indexId != null && obj.indexId !== '')) {
          w.uint32(18)
          w.string(obj.indexId)
        }

        if ((obj.firstSeq != null && obj.firstSeq !== 0)) {
          w.uint32(24)
          w.uint64Number(obj.firstSeq)
        }

        if ((obj.lastSeq != null && obj.lastSeq !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.lastSeq)
        }

        if (obj.records != null && obj.records.length > 0) {
          for (const value of obj.records) {
            w.uint32(42)
            Record.codec().encode(value, w)
          }
        }

        if (obj.completeAfter != null) {
          w.uint32(48)
          w.uint64Number(obj.completeAfter)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          origin: '',
          indexId: '',
          firstSeq: 0,
          lastSeq: 0,
          records: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.origin = reader.string()
              break
            }
            case 2: {
              obj.indexId = reader.string()
              break
            }
            case 3: {
              obj.firstSeq = reader.uint64Number()
              break
            }
            case 4: {
              obj.lastSeq = reader.uint64Number()
              break
            }
            case 5: {
              if (opts.limits?.records != null && obj.records.length === opts.limits.records) {
                throw new MaxLengthError('Decode error - repeated field "records" had too many elements')
              }

              obj.records.push(Record.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.records$
              }))
              break
            }
            case 6: {
              obj.completeAfter = reader.uint64Number()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          records: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.origin`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.indexId`,
                value: reader.string()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.firstSeq`,
                value: reader.uint64Number()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.lastSeq`,
                value: reader.uint64Number()
              }
              break
            }
            case 5: {
              if (opts.limits?.records != null && obj.records === opts.limits.records) {
                throw new MaxLengthError('Streaming decode error - repeated field "records" had too many elements')
              }

              for (const evt of Record.codec().stream(reader, reader.uint32(), `${prefix}.records[]`, {
                limits: opts.limits?.records$
              })) {
                yield {
                  ...evt,
                  index: obj.records
                }
              }

              obj.records++

              break
            }
            case 6: {
              yield {
                field: `${prefix}.completeAfter`,
                value: reader.uint64Number()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface AnnouncementOriginFieldEvent {
    field: '$.origin'
    value: string
  }

  export interface AnnouncementIndexIdFieldEvent {
    field: '$.indexId'
    value: string
  }

  export interface AnnouncementFirstSeqFieldEvent {
    field: '$.firstSeq'
    value: number
  }

  export interface AnnouncementLastSeqFieldEvent {
    field: '$.lastSeq'
    value: number
  }

  export interface AnnouncementRecordsPathFieldEvent {
    field: '$.records[].path'
    value: string
    index: number
  }

  export interface AnnouncementRecordsTypeFieldEvent {
    field: '$.records[].type'
    value: FileType
    index: number
  }

  export interface AnnouncementRecordsModeFieldEvent {
    field: '$.records[].mode'
    value: number
    index: number
  }

  export interface AnnouncementRecordsSizeFieldEvent {
    field: '$.records[].size'
    value: number
    index: number
  }

  export interface AnnouncementRecordsMtimeMsFieldEvent {
    field: '$.records[].mtimeMs'
    value: number
    index: number
  }

  export interface AnnouncementRecordsBlockSizeFieldEvent {
    field: '$.records[].blockSize'
    value: number
    index: number
  }

  export interface AnnouncementRecordsBlocksFieldEvent {
    field: '$.records[].blocks[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface AnnouncementRecordsHashFieldEvent {
    field: '$.records[].hash'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface AnnouncementRecordsTargetFieldEvent {
    field: '$.records[].target'
    value: string
    index: number
  }

  export interface AnnouncementRecordsDeletedFieldEvent {
    field: '$.records[].deleted'
    value: boolean
    index: number
  }

  export interface AnnouncementRecordsVvNodeFieldEvent {
    field: '$.records[].vv[].node'
    value: string
    index: number
  }

  export interface AnnouncementRecordsVvCounterFieldEvent {
    field: '$.records[].vv[].counter'
    value: number
    index: number
  }

  export interface AnnouncementRecordsHlcWallFieldEvent {
    field: '$.records[].hlcWall'
    value: number
    index: number
  }

  export interface AnnouncementRecordsHlcLogicalFieldEvent {
    field: '$.records[].hlcLogical'
    value: number
    index: number
  }

  export interface AnnouncementRecordsNodeFieldEvent {
    field: '$.records[].node'
    value: string
    index: number
  }

  export interface AnnouncementCompleteAfterFieldEvent {
    field: '$.completeAfter'
    value: number
  }

  export function encode (obj: Partial<Announcement>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Announcement.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Announcement>): Announcement {
    return decodeMessage(buf, Announcement.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Announcement>): Generator<AnnouncementOriginFieldEvent | AnnouncementIndexIdFieldEvent | AnnouncementFirstSeqFieldEvent | AnnouncementLastSeqFieldEvent | AnnouncementRecordsPathFieldEvent | AnnouncementRecordsTypeFieldEvent | AnnouncementRecordsModeFieldEvent | AnnouncementRecordsSizeFieldEvent | AnnouncementRecordsMtimeMsFieldEvent | AnnouncementRecordsBlockSizeFieldEvent | AnnouncementRecordsBlocksFieldEvent | AnnouncementRecordsHashFieldEvent | AnnouncementRecordsTargetFieldEvent | AnnouncementRecordsDeletedFieldEvent | AnnouncementRecordsVvNodeFieldEvent | AnnouncementRecordsVvCounterFieldEvent | AnnouncementRecordsHlcWallFieldEvent | AnnouncementRecordsHlcLogicalFieldEvent | AnnouncementRecordsNodeFieldEvent | AnnouncementCompleteAfterFieldEvent> {
    return streamMessage(buf, Announcement.codec(), opts)
  }
}

export interface IndexRequest {
  indexId: string
  after: number
}

export namespace IndexRequest {
  let _codec: Codec<IndexRequest, Partial<IndexRequest>>

  export const codec = (): Codec<IndexRequest, Partial<IndexRequest>> => {
    if (_codec == null) {
      _codec = message<IndexRequest, Partial<IndexRequest>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.indexId != null && obj.indexId !== '')) {
          w.uint32(10)
          w.string(obj.indexId)
        }

        if ((obj.after != null && obj.after !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.after)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          indexId: '',
          after: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.indexId = reader.string()
              break
            }
            case 2: {
              obj.after = reader.uint64Number()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.indexId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.after`,
                value: reader.uint64Number()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface IndexRequestIndexIdFieldEvent {
    field: '$.indexId'
    value: string
  }

  export interface IndexRequestAfterFieldEvent {
    field: '$.after'
    value: number
  }

  export function encode (obj: Partial<IndexRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, IndexRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<IndexRequest>): IndexRequest {
    return decodeMessage(buf, IndexRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<IndexRequest>): Generator<IndexRequestIndexIdFieldEvent | IndexRequestAfterFieldEvent> {
    return streamMessage(buf, IndexRequest.codec(), opts)
  }
}

export interface IndexResponse {
  indexId: string
  seq: number
  records: Record[]
  done: boolean
}

export namespace IndexResponse {
  let _codec: Codec<IndexResponse, Partial<IndexResponse>>

  export const codec = (): Codec<IndexResponse, Partial<IndexResponse>> => {
    if (_codec == null) {
      _codec = message<IndexResponse, Partial<IndexResponse>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.indexId != null && obj.indexId !== '')) {
          w.uint32(10)
          w.string(obj.indexId)
        }

        if ((obj.seq != null && obj.seq !== 0)) {
          w.uint32(16)
          w.uint64Number(obj.seq)
        }

        if (obj.records != null && obj.records.length > 0) {
          for (const value of obj.records) {
            w.uint32(26)
            Record.codec().encode(value, w)
          }
        }

        if ((obj.done != null && obj.done !== false)) {
          w.uint32(32)
          w.bool(obj.done)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          indexId: '',
          seq: 0,
          records: [],
          done: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.indexId = reader.string()
              break
            }
            case 2: {
              obj.seq = reader.uint64Number()
              break
            }
            case 3: {
              if (opts.limits?.records != null && obj.records.length === opts.limits.records) {
                throw new MaxLengthError('Decode error - repeated field "records" had too many elements')
              }

              obj.records.push(Record.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.records$
              }))
              break
            }
            case 4: {
              obj.done = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          records: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.indexId`,
                value: reader.string()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.seq`,
                value: reader.uint64Number()
              }
              break
            }
            case 3: {
              if (opts.limits?.records != null && obj.records === opts.limits.records) {
                throw new MaxLengthError('Streaming decode error - repeated field "records" had too many elements')
              }

              for (const evt of Record.codec().stream(reader, reader.uint32(), `${prefix}.records[]`, {
                limits: opts.limits?.records$
              })) {
                yield {
                  ...evt,
                  index: obj.records
                }
              }

              obj.records++

              break
            }
            case 4: {
              yield {
                field: `${prefix}.done`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface IndexResponseIndexIdFieldEvent {
    field: '$.indexId'
    value: string
  }

  export interface IndexResponseSeqFieldEvent {
    field: '$.seq'
    value: number
  }

  export interface IndexResponseRecordsPathFieldEvent {
    field: '$.records[].path'
    value: string
    index: number
  }

  export interface IndexResponseRecordsTypeFieldEvent {
    field: '$.records[].type'
    value: FileType
    index: number
  }

  export interface IndexResponseRecordsModeFieldEvent {
    field: '$.records[].mode'
    value: number
    index: number
  }

  export interface IndexResponseRecordsSizeFieldEvent {
    field: '$.records[].size'
    value: number
    index: number
  }

  export interface IndexResponseRecordsMtimeMsFieldEvent {
    field: '$.records[].mtimeMs'
    value: number
    index: number
  }

  export interface IndexResponseRecordsBlockSizeFieldEvent {
    field: '$.records[].blockSize'
    value: number
    index: number
  }

  export interface IndexResponseRecordsBlocksFieldEvent {
    field: '$.records[].blocks[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface IndexResponseRecordsHashFieldEvent {
    field: '$.records[].hash'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface IndexResponseRecordsTargetFieldEvent {
    field: '$.records[].target'
    value: string
    index: number
  }

  export interface IndexResponseRecordsDeletedFieldEvent {
    field: '$.records[].deleted'
    value: boolean
    index: number
  }

  export interface IndexResponseRecordsVvNodeFieldEvent {
    field: '$.records[].vv[].node'
    value: string
    index: number
  }

  export interface IndexResponseRecordsVvCounterFieldEvent {
    field: '$.records[].vv[].counter'
    value: number
    index: number
  }

  export interface IndexResponseRecordsHlcWallFieldEvent {
    field: '$.records[].hlcWall'
    value: number
    index: number
  }

  export interface IndexResponseRecordsHlcLogicalFieldEvent {
    field: '$.records[].hlcLogical'
    value: number
    index: number
  }

  export interface IndexResponseRecordsNodeFieldEvent {
    field: '$.records[].node'
    value: string
    index: number
  }

  export interface IndexResponseDoneFieldEvent {
    field: '$.done'
    value: boolean
  }

  export function encode (obj: Partial<IndexResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, IndexResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<IndexResponse>): IndexResponse {
    return decodeMessage(buf, IndexResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<IndexResponse>): Generator<IndexResponseIndexIdFieldEvent | IndexResponseSeqFieldEvent | IndexResponseRecordsPathFieldEvent | IndexResponseRecordsTypeFieldEvent | IndexResponseRecordsModeFieldEvent | IndexResponseRecordsSizeFieldEvent | IndexResponseRecordsMtimeMsFieldEvent | IndexResponseRecordsBlockSizeFieldEvent | IndexResponseRecordsBlocksFieldEvent | IndexResponseRecordsHashFieldEvent | IndexResponseRecordsTargetFieldEvent | IndexResponseRecordsDeletedFieldEvent | IndexResponseRecordsVvNodeFieldEvent | IndexResponseRecordsVvCounterFieldEvent | IndexResponseRecordsHlcWallFieldEvent | IndexResponseRecordsHlcLogicalFieldEvent | IndexResponseRecordsNodeFieldEvent | IndexResponseDoneFieldEvent> {
    return streamMessage(buf, IndexResponse.codec(), opts)
  }
}
