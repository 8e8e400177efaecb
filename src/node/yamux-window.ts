/**
 * Yamux window updates once half of a stream's receive window is used, as Go's and Rust's
 * yamux send them (rust-yamux #109), instead of after every data frame.
 *
 * `@libp2p/yamux` 8 answers every data frame it receives with a window update: a frame of
 * its own, encrypted twice (private network, Noise), and a socket write that wakes the
 * sender. A stream of many small messages (block responses of small files) pays that per
 * message: 3.6% of the receiver's event loop in a catch-up of 10,000 files of 4 KiB.
 *
 * What changes: while the stream is established and more than half of its window is
 * still open, the update waits. Everything else is the library's own `sendWindowUpdate`:
 * the first frames' flags (SYN/ACK), a paused stream, the window's growth (doubled when
 * an update comes within four round trips of the last one, up to its maximum).
 *
 * Why it cannot stall a sender: the sender may send until the whole window is used, and
 * the update goes out as soon as half of it is, so the sender gets new credit while it
 * still has half the window to send. A paused stream (its reader is full) is left to the
 * library, which sends the update when the stream resumes.
 *
 * The rule reads fields the library declares private. Should a new version rename them,
 * the comparison is false and every update goes out as the library sends it (slower, never
 * stalled), as when the method itself is gone; the test that counts updates then fails.
 */
import { YamuxStream, StreamState } from '@libp2p/yamux/stream'

/** The fields of YamuxStream the rule reads (private in its type declaration). */
interface ReceiveWindow {
  state: StreamState
  /** The bytes the remote may send in a full window. */
  recvWindow: number
  /** The bytes the remote may still send before the next update. */
  recvWindowCapacity: number
}

let installed = false

/** Installs the rule in YamuxStream (once per process; every yamux stream of it). */
export function windowUpdatesAtHalf (): void {
  if (installed) return
  const proto = YamuxStream.prototype as unknown as { sendWindowUpdate: (this: YamuxStream) => void }
  const send = proto.sendWindowUpdate
  // a library without the method: nothing to change (a speed-up, never a reason to fail)
  if (typeof send !== 'function') return
  proto.sendWindowUpdate = function (this: YamuxStream): void {
    const w = this as unknown as ReceiveWindow
    if (w.state === StreamState.Established && w.recvWindowCapacity > w.recvWindow / 2) return
    send.call(this)
  }
  installed = true
}
