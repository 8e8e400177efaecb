import { lpStream } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { peerIdFromString } from '@libp2p/peer-id'
import type { Libp2p, PeerId, Stream } from '@libp2p/interface'

export const PEERS_PROTOCOL = '/syncmesh/peers/1.0.0'
/** Most peers in one answer, and addresses per peer. */
const MAX_PEERS = 64
const MAX_ADDRS = 8
const MAX_BYTES = 64 * 1024

/**
 * Peer exchange: on connect, a node asks the new peer which mesh members it is connected
 * to and dials the ones it does not know, so joining one member reaches the whole mesh.
 */
export class PeerExchange {
  private readonly libp2p: Libp2p
  private readonly log: (msg: string) => void
  private readonly dial: (id: string, addrs: Multiaddr[]) => void
  private readonly maxPeers: number

  constructor (components: { libp2p: Libp2p, log?: (msg: string) => void, dial: (id: string, addrs: Multiaddr[]) => void }, init: { maxPeers?: number } = {}) {
    this.libp2p = components.libp2p
    this.log = components.log ?? (() => {})
    this.dial = components.dial
    /** @default 32 */
    this.maxPeers = init.maxPeers ?? 32
  }

  async start (): Promise<void> {
    await this.libp2p.handle(PEERS_PROTOCOL, (stream, connection) => { void this.serve(stream, connection.remotePeer) }, { maxInboundStreams: 8 })
  }

  async stop (): Promise<void> {
    await this.libp2p.unhandle(PEERS_PROTOCOL)
  }

  private async serve (stream: Stream, asker: PeerId): Promise<void> {
    try {
      const peers: Array<{ id: string, addrs: string[] }> = []
      for (const p of this.libp2p.getPeers()) {
        if (p.equals(asker)) continue
        const known = await this.libp2p.peerStore.get(p).catch(() => null)
        const addrs = (known?.addresses ?? []).map((a) => a.multiaddr.toString()).slice(0, MAX_ADDRS)
        if (addrs.length > 0) peers.push({ id: p.toString(), addrs })
        if (peers.length >= MAX_PEERS) break
      }
      const lp = lpStream(stream, { maxDataLength: MAX_BYTES })
      await lp.write(new TextEncoder().encode(JSON.stringify(peers)))
      await stream.close()
    } catch (err) {
      stream.abort(err as Error)
    }
  }

  /** Ask `peer` for its peers and hand the unknown ones to `dial`. */
  async ask (peer: PeerId): Promise<void> {
    try {
      const stream = await this.libp2p.dialProtocol(peer, PEERS_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      const lp = lpStream(stream, { maxDataLength: MAX_BYTES })
      const frame = await lp.read({ signal: AbortSignal.timeout(10_000) })
      await stream.close().catch(() => {})
      for (const { id, addrs } of parsePeers(new TextDecoder().decode(frame.subarray()))) {
        if (id === this.libp2p.peerId.toString()) continue
        if (this.libp2p.getPeers().length >= this.maxPeers) break
        this.dial(id, addrs)
      }
    } catch (err) {
      this.log(`peer exchange with ${peer.toString()}: ${(err as Error).message}`)
    }
  }
}

/** Validate a peer list from the wire; anything malformed is dropped. */
export function parsePeers (text: string): Array<{ id: string, addrs: Multiaddr[] }> {
  let raw: unknown
  try { raw = JSON.parse(text) } catch { return [] }
  if (!Array.isArray(raw)) return []
  const out: Array<{ id: string, addrs: Multiaddr[] }> = []
  for (const e of raw.slice(0, MAX_PEERS)) {
    if (e == null || typeof e !== 'object') continue
    const { id, addrs } = e as { id?: unknown, addrs?: unknown }
    if (typeof id !== 'string' || !Array.isArray(addrs)) continue
    try { peerIdFromString(id) } catch { continue }
    const mas: Multiaddr[] = []
    for (const a of addrs.slice(0, MAX_ADDRS)) {
      if (typeof a !== 'string') continue
      try { mas.push(multiaddr(a)) } catch {}
    }
    if (mas.length > 0) out.push({ id, addrs: mas })
  }
  return out
}
