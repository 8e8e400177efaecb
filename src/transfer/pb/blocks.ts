import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface BlockRequest {
  id: number
  hash: Uint8Array<ArrayBuffer>
  offsetHint: number
  size: number
  pathHint: string
}

export namespace BlockRequest {
  let _codec: Codec<BlockRequest, Partial<BlockRequest>>

  export const codec = (): Codec<BlockRequest, Partial<BlockRequest>> => {
    if (_codec == null) {
      _codec = message<BlockRequest, Partial<BlockRequest>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.id != null && obj.id !== 0)) {
          w.uint32(8)
          w.uint32(obj.id)
        }

        if ((obj.hash != null && obj.hash.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.hash)
        }

        if ((obj.offsetHint != null && obj.offsetHint !== 0)) {
          w.uint32(24)
          w.uint64Number(obj.offsetHint)
        }

        if ((obj.size != null && obj.size !== 0)) {
          w.uint32(32)
          w.uint32(obj.size)
        }

        if ((obj.pathHint != null && obj.pathHint !== '')) {
          w.uint32(42)
          w.string(obj.pathHint)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: 0,
          hash: uint8ArrayAlloc(0),
          offsetHint: 0,
          size: 0,
          pathHint: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.id = reader.uint32()
              break
            }
            case 2: {
              obj.hash = reader.bytes()
              break
            }
            case 3: {
              obj.offsetHint = reader.uint64Number()
              break
            }
            case 4: {
              obj.size = reader.uint32()
              break
            }
            case 5: {
              obj.pathHint = reader.string()
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
                field: `${prefix}.id`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.hash`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.offsetHint`,
                value: reader.uint64Number()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.size`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.pathHint`,
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

  export interface BlockRequestIdFieldEvent {
    field: '$.id'
    value: number
  }

  export interface BlockRequestHashFieldEvent {
    field: '$.hash'
    value: Uint8Array<ArrayBuffer>
  }

  export interface BlockRequestOffsetHintFieldEvent {
    field: '$.offsetHint'
    value: number
  }

  export interface BlockRequestSizeFieldEvent {
    field: '$.size'
    value: number
  }

  export interface BlockRequestPathHintFieldEvent {
    field: '$.pathHint'
    value: string
  }

  export function encode (obj: Partial<BlockRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, BlockRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockRequest>): BlockRequest {
    return decodeMessage(buf, BlockRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockRequest>): Generator<BlockRequestIdFieldEvent | BlockRequestHashFieldEvent | BlockRequestOffsetHintFieldEvent | BlockRequestSizeFieldEvent | BlockRequestPathHintFieldEvent> {
    return streamMessage(buf, BlockRequest.codec(), opts)
  }
}

export enum Status {
  OK = 'OK',
  NOT_FOUND = 'NOT_FOUND',
  ERROR = 'ERROR',
  BUSY = 'BUSY'
}

enum __StatusValues {
  OK = 0,
  NOT_FOUND = 1,
  ERROR = 2,
  BUSY = 3
}

export namespace Status {
  export const codec = (): Codec<Status, Status> => {
    return enumeration<Status>(__StatusValues)
  }
}

export interface BlockResponse {
  id: number
  status: Status
  data: Uint8Array<ArrayBuffer>
  message: string
}

export namespace BlockResponse {
  let _codec: Codec<BlockResponse, Partial<BlockResponse>>

  export const codec = (): Codec<BlockResponse, Partial<BlockResponse>> => {
    if (_codec == null) {
      _codec = message<BlockResponse, Partial<BlockResponse>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.id != null && obj.id !== 0)) {
          w.uint32(8)
          w.uint32(obj.id)
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(16)
          Status.codec().encode(obj.status, w)
        }

        if ((obj.data != null && obj.data.byteLength > 0)) {
          w.uint32(26)
          w.bytes(obj.data)
        }

        if ((obj.message != null && obj.message !== '')) {
          w.uint32(34)
          w.string(obj.message)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: 0,
          status: Status.OK,
          data: uint8ArrayAlloc(0),
          message: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.id = reader.uint32()
              break
            }
            case 2: {
              obj.status = Status.codec().decode(reader)
              break
            }
            case 3: {
              obj.data = reader.bytes()
              break
            }
            case 4: {
              obj.message = reader.string()
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
                field: `${prefix}.id`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.status`,
                value: Status.codec().decode(reader)
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.data`,
                value: reader.bytes()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.message`,
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

  export interface BlockResponseIdFieldEvent {
    field: '$.id'
    value: number
  }

  export interface BlockResponseStatusFieldEvent {
    field: '$.status'
    value: Status
  }

  export interface BlockResponseDataFieldEvent {
    field: '$.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface BlockResponseMessageFieldEvent {
    field: '$.message'
    value: string
  }

  export function encode (obj: Partial<BlockResponse>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, BlockResponse.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockResponse>): BlockResponse {
    return decodeMessage(buf, BlockResponse.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockResponse>): Generator<BlockResponseIdFieldEvent | BlockResponseStatusFieldEvent | BlockResponseDataFieldEvent | BlockResponseMessageFieldEvent> {
    return streamMessage(buf, BlockResponse.codec(), opts)
  }
}

export interface Want {
  hash: Uint8Array<ArrayBuffer>
  size: number
  pathHint: string
  offsetHint: number
  unhashedOk: boolean
}

export namespace Want {
  let _codec: Codec<Want, Partial<Want>>

  export const codec = (): Codec<Want, Partial<Want>> => {
    if (_codec == null) {
      _codec = message<Want, Partial<Want>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.hash != null && obj.hash.byteLength > 0)) {
          w.uint32(10)
          w.bytes(obj.hash)
        }

        if ((obj.size != null && obj.size !== 0)) {
          w.uint32(16)
          w.uint32(obj.size)
        }

        if ((obj.pathHint != null && obj.pathHint !== '')) {
          w.uint32(26)
          w.string(obj.pathHint)
        }

        if ((obj.offsetHint != null && obj.offsetHint !== 0)) {
          w.uint32(32)
          w.uint64Number(obj.offsetHint)
        }

        if ((obj.unhashedOk != null && obj.unhashedOk !== false)) {
          w.uint32(40)
          w.bool(obj.unhashedOk)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          hash: uint8ArrayAlloc(0),
          size: 0,
          pathHint: '',
          offsetHint: 0,
          unhashedOk: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.hash = reader.bytes()
              break
            }
            case 2: {
              obj.size = reader.uint32()
              break
            }
            case 3: {
              obj.pathHint = reader.string()
              break
            }
            case 4: {
              obj.offsetHint = reader.uint64Number()
              break
            }
            case 5: {
              obj.unhashedOk = reader.bool()
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
                field: `${prefix}.hash`,
                value: reader.bytes()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.size`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.pathHint`,
                value: reader.string()
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.offsetHint`,
                value: reader.uint64Number()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.unhashedOk`,
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

  export interface WantHashFieldEvent {
    field: '$.hash'
    value: Uint8Array<ArrayBuffer>
  }

  export interface WantSizeFieldEvent {
    field: '$.size'
    value: number
  }

  export interface WantPathHintFieldEvent {
    field: '$.pathHint'
    value: string
  }

  export interface WantOffsetHintFieldEvent {
    field: '$.offsetHint'
    value: number
  }

  export interface WantUnhashedOkFieldEvent {
    field: '$.unhashedOk'
    value: boolean
  }

  export function encode (obj: Partial<Want>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Want.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Want>): Want {
    return decodeMessage(buf, Want.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Want>): Generator<WantHashFieldEvent | WantSizeFieldEvent | WantPathHintFieldEvent | WantOffsetHintFieldEvent | WantUnhashedOkFieldEvent> {
    return streamMessage(buf, Want.codec(), opts)
  }
}

export interface BatchRequest {
  id: number
  wants: Want[]
}

export namespace BatchRequest {
  let _codec: Codec<BatchRequest, Partial<BatchRequest>>

  export const codec = (): Codec<BatchRequest, Partial<BatchRequest>> => {
    if (_codec == null) {
      _codec = message<BatchRequest, Partial<BatchRequest>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.id != null && obj.id !== 0)) {
          w.uint32(8)
          w.uint32(obj.id)
        }

        if (obj.wants != null && obj.wants.length > 0) {
          for (const value of obj.wants) {
            w.uint32(18)
            Want.codec().encode(value, w)
          }
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: 0,
          wants: []
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.id = reader.uint32()
              break
            }
            case 2: {
              if (opts.limits?.wants != null && obj.wants.length === opts.limits.wants) {
                throw new MaxLengthError('Decode error - repeated field "wants" had too many elements')
              }

              obj.wants.push(Want.codec().decode(reader, reader.uint32(), {
                limits: opts.limits?.wants$
              }))
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
          wants: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.id`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              if (opts.limits?.wants != null && obj.wants === opts.limits.wants) {
                throw new MaxLengthError('Streaming decode error - repeated field "wants" had too many elements')
              }

              for (const evt of Want.codec().stream(reader, reader.uint32(), `${prefix}.wants[]`, {
                limits: opts.limits?.wants$
              })) {
                yield {
                  ...evt,
                  index: obj.wants
                }
              }

              obj.wants++

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

  export interface BatchRequestIdFieldEvent {
    field: '$.id'
    value: number
  }

  export interface BatchRequestWantsHashFieldEvent {
    field: '$.wants[].hash'
    value: Uint8Array<ArrayBuffer>
    index: number
  }

  export interface BatchRequestWantsSizeFieldEvent {
    field: '$.wants[].size'
    value: number
    index: number
  }

  export interface BatchRequestWantsPathHintFieldEvent {
    field: '$.wants[].pathHint'
    value: string
    index: number
  }

  export interface BatchRequestWantsOffsetHintFieldEvent {
    field: '$.wants[].offsetHint'
    value: number
    index: number
  }

  export interface BatchRequestWantsUnhashedOkFieldEvent {
    field: '$.wants[].unhashedOk'
    value: boolean
    index: number
  }

  export function encode (obj: Partial<BatchRequest>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, BatchRequest.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BatchRequest>): BatchRequest {
    return decodeMessage(buf, BatchRequest.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BatchRequest>): Generator<BatchRequestIdFieldEvent | BatchRequestWantsHashFieldEvent | BatchRequestWantsSizeFieldEvent | BatchRequestWantsPathHintFieldEvent | BatchRequestWantsOffsetHintFieldEvent | BatchRequestWantsUnhashedOkFieldEvent> {
    return streamMessage(buf, BatchRequest.codec(), opts)
  }
}

export interface BlockHeader {
  id: number
  index: number
  status: Status
  size: number
  message: string
}

export namespace BlockHeader {
  let _codec: Codec<BlockHeader, Partial<BlockHeader>>

  export const codec = (): Codec<BlockHeader, Partial<BlockHeader>> => {
    if (_codec == null) {
      _codec = message<BlockHeader, Partial<BlockHeader>>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if ((obj.id != null && obj.id !== 0)) {
          w.uint32(8)
          w.uint32(obj.id)
        }

        if ((obj.index != null && obj.index !== 0)) {
          w.uint32(16)
          w.uint32(obj.index)
        }

        if (obj.status != null && __StatusValues[obj.status] !== 0) {
          w.uint32(24)
          Status.codec().encode(obj.status, w)
        }

        if ((obj.size != null && obj.size !== 0)) {
          w.uint32(32)
          w.uint32(obj.size)
        }

        if ((obj.message != null && obj.message !== '')) {
          w.uint32(42)
          w.string(obj.message)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          id: 0,
          index: 0,
          status: Status.OK,
          size: 0,
          message: ''
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.id = reader.uint32()
              break
            }
            case 2: {
              obj.index = reader.uint32()
              break
            }
            case 3: {
              obj.status = Status.codec().decode(reader)
              break
            }
            case 4: {
              obj.size = reader.uint32()
              break
            }
            case 5: {
              obj.message = reader.string()
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
                field: `${prefix}.id`,
                value: reader.uint32()
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.index`,
                value: reader.uint32()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.status`,
                value: Status.codec().decode(reader)
              }
              break
            }
            case 4: {
              yield {
                field: `${prefix}.size`,
                value: reader.uint32()
              }
              break
            }
            case 5: {
              yield {
                field: `${prefix}.message`,
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

  export interface BlockHeaderIdFieldEvent {
    field: '$.id'
    value: number
  }

  export interface BlockHeaderIndexFieldEvent {
    field: '$.index'
    value: number
  }

  export interface BlockHeaderStatusFieldEvent {
    field: '$.status'
    value: Status
  }

  export interface BlockHeaderSizeFieldEvent {
    field: '$.size'
    value: number
  }

  export interface BlockHeaderMessageFieldEvent {
    field: '$.message'
    value: string
  }

  export function encode (obj: Partial<BlockHeader>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, BlockHeader.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockHeader>): BlockHeader {
    return decodeMessage(buf, BlockHeader.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<BlockHeader>): Generator<BlockHeaderIdFieldEvent | BlockHeaderIndexFieldEvent | BlockHeaderStatusFieldEvent | BlockHeaderSizeFieldEvent | BlockHeaderMessageFieldEvent> {
    return streamMessage(buf, BlockHeader.codec(), opts)
  }
}
