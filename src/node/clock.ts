/**
 * `/syncmesh/time/1.0.0`: a peer answers with its wall clock, so `syncmesh doctor` can
 * report how far each peer's clock is from ours. The requester sends one empty frame; the
 * answer is one frame with the peer's Date.now() as a decimal string. The offset is the
 * peer's time minus the midpoint of our send and receive times (as NTP does, assuming the
 * two directions take equally long); the round trip bounds the error.
 */
import { lpStream } from '@libp2p/utils'
import type { PeerId, Stream } from '@libp2p/interface'
import type { BlockHost } from '../transfer/protocol.js'
import type { WallClock } from '../store/hlc.js'

export const TIME_PROTOCOL = '/syncmesh/time/1.0.0'

export interface ClockOffset {
  peer: string
  /** Peer's clock minus ours, in ms (positive: the peer is ahead). */
  offsetMs: number
  rttMs: number
}

export async function serveTime (host: BlockHost, now: WallClock): Promise<void> {
  await host.handle(TIME_PROTOCOL, (stream) => { void answer(stream, now) }, { maxInboundStreams: 4 })
}

async function answer (stream: Stream, now: WallClock): Promise<void> {
  const lp = lpStream(stream, { maxDataLength: 64 })
  try {
    await lp.read({ signal: AbortSignal.timeout(5_000) })
    await lp.write(new TextEncoder().encode(String(now())))
    await stream.close().catch(() => {})
  } catch (err) {
    stream.abort(err as Error)
  }
}

/** One exchange with `peer`. */
export async function measureOffset (host: BlockHost, peer: PeerId, now: WallClock, timeoutMs = 5_000): Promise<ClockOffset> {
  const signal = AbortSignal.timeout(timeoutMs)
  const stream = await host.dialProtocol(peer, TIME_PROTOCOL, { signal })
  const lp = lpStream(stream, { maxDataLength: 64 })
  try {
    const t0 = now()
    await lp.write(new Uint8Array(0), { signal })
    const frame = await lp.read({ signal })
    const t1 = now()
    const theirs = Number(new TextDecoder().decode(frame.subarray()))
    if (!Number.isFinite(theirs)) throw new Error('not a time')
    await stream.close().catch(() => {})
    return { peer: peer.toString(), offsetMs: Math.round(theirs - (t0 + t1) / 2), rttMs: t1 - t0 }
  } catch (err) {
    stream.abort(err as Error)
    throw err
  }
}
