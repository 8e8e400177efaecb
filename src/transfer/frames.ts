/**
 * Length-prefixed frames (unsigned varint length, then the bytes: what `lpStream` from
 * @libp2p/utils reads and writes) taken from a stream as its data arrives.
 *
 * `lpStream` reads a frame's length one byte per awaited read, and learns that a length
 * is incomplete from the RangeError its varint decoder throws: per frame several promises
 * and an exception with its stack. A client receiving block protocol 2 answers gets one
 * frame per block, so for 10,000 small files that was 110 ms of the receiver's event loop
 * in a profile of the catch-up benchmark (6%). Here every frame that a 'message' event
 * completes is handed over in that same event, with the length decoded in a loop.
 */
import type { Stream } from '@libp2p/interface'
import { Uint8ArrayList } from 'uint8arraylist'

export class FrameError extends Error {
  override name = 'FrameError'
}

/** Bytes of the length prefix of a frame of at most `max` bytes. */
function prefixBytes (max: number): number {
  let n = 1
  while (max >= 128) { max = Math.floor(max / 128); n++ }
  return n
}

/**
 * Call `onFrame` with each frame of `stream` (at most `maxFrame` bytes) as it arrives. The
 * promise rejects when the stream ends or fails, with the reason. A frame over `maxFrame`,
 * or a throw from `onFrame` (a frame it cannot decode), aborts the stream with that error.
 */
export async function readFrames (stream: Stream, maxFrame: number, onFrame: (frame: Uint8ArrayList) => void): Promise<never> {
  return await new Promise<never>((_resolve, reject) => {
    const buf = new Uint8ArrayList()
    const maxPrefix = prefixBytes(maxFrame)
    /** Length of the frame being read; -1 while its prefix is not read yet. */
    let need = -1
    let done = false
    const finish = (err: Error): void => {
      if (done) return
      done = true
      stream.removeEventListener('message', onMessage)
      stream.removeEventListener('close', onClose)
      stream.removeEventListener('remoteCloseWrite', onEnd)
      reject(err)
    }
    const prefix = (): boolean => {
      let len = 0
      let mul = 1
      let i = 0
      for (const chunk of buf) {
        for (let k = 0; k < chunk.byteLength; k++) {
          const b = chunk[k]
          len += (b & 0x7f) * mul
          i++
          if ((b & 0x80) === 0) {
            if (len > maxFrame) throw new FrameError(`frame of ${len} bytes over the limit of ${maxFrame}`)
            buf.consume(i)
            need = len
            return true
          }
          if (i >= maxPrefix) throw new FrameError(`frame length over the limit of ${maxFrame}`)
          mul *= 128
        }
      }
      return false
    }
    const onMessage = (evt: { data: Uint8Array | Uint8ArrayList }): void => {
      if (done) return
      buf.append(evt.data)
      try {
        for (;;) {
          if (need < 0 && !prefix()) return
          if (buf.byteLength < need) return
          const frame = buf.sublist(0, need)
          buf.consume(need)
          need = -1
          onFrame(frame)
          if (done) return
        }
      } catch (err) {
        finish(err as Error)
        stream.abort(err as Error)
      }
    }
    const onClose = (evt: { error?: Error }): void => { finish(evt.error ?? new FrameError('stream closed')) }
    const onEnd = (): void => { finish(new FrameError('stream ended by the peer')) }
    stream.addEventListener('message', onMessage)
    stream.addEventListener('close', onClose)
    stream.addEventListener('remoteCloseWrite', onEnd)
    // closed before we listened: no event will come
    if (stream.status !== 'open') finish(new FrameError(`stream ${stream.status}`))
  })
}

/** Unsigned varint of `n` (a frame length). */
function lengthPrefix (n: number): Uint8Array {
  const out = new Uint8Array(prefixBytes(n))
  let i = 0
  while (n >= 128) {
    out[i++] = (n % 128) | 0x80
    n = Math.floor(n / 128)
  }
  out[i] = n
  return out
}

/** Write one frame (its length, then its bytes); waits while the stream's send buffer is full. */
export async function writeFrame (stream: Stream, data: Uint8Array | Uint8ArrayList): Promise<void> {
  if (!stream.send(new Uint8ArrayList(lengthPrefix(data.byteLength), data))) await stream.onDrain()
}
