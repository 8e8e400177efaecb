/**
 * The simulated network between in-process nodes: which links exist (the topology), which
 * are cut (partitions, a flapping link), a libp2p ConnectionGater per node that enforces
 * both, and byte counts of every TCP connection between the nodes.
 */
import dc from 'node:diagnostics_channel'
import type { Socket } from 'node:net'
import type { ConnectionGater, PeerId } from '@libp2p/interface'
import { edgeKey, type Topology } from './topology.js'

export interface Traffic {
  /** Bytes received by each node (all protocols, as counted on the TCP sockets). */
  received: number[]
  sent: number[]
  /** All bytes on all connections between the nodes (each byte counted once). */
  total: number
}

interface TrackedSocket {
  socket: Socket
  listener: number
  listenPort: number
  remotePort: number
}

/**
 * Accepted TCP sockets, seen through the `net.server.socket` diagnostics channel (one
 * subscription per process). Each connection between two nodes has exactly one accepted
 * side, so counting accepted sockets counts every byte once.
 */
class SocketCounter {
  private readonly byPort = new Map<number, SimNetwork>()
  private subscribed = false
  private readonly onSocket = (message: unknown): void => {
    const socket = (message as { socket?: Socket }).socket
    if (socket?.localPort == null || socket.remotePort == null) return
    const net = this.byPort.get(socket.localPort)
    net?.track(socket)
  }

  register (port: number, net: SimNetwork): void {
    if (!this.subscribed) {
      dc.subscribe('net.server.socket', this.onSocket)
      this.subscribed = true
    }
    this.byPort.set(port, net)
  }

  unregister (net: SimNetwork): void {
    for (const [port, n] of this.byPort) if (n === net) this.byPort.delete(port)
    if (this.byPort.size === 0 && this.subscribed) {
      dc.unsubscribe('net.server.socket', this.onSocket)
      this.subscribed = false
    }
  }
}

const counter = new SocketCounter()

export class SimNetwork {
  readonly topology: Topology
  private readonly links = new Set<string>()
  private readonly cut = new Set<string>()
  private group: number[] | null = null
  private readonly byPeer = new Map<string, number>()
  private readonly ports = new Map<number, number>()
  /** "<listen port>:<remote port>" of an inbound connection -> the node that dialed it. */
  private readonly dialers = new Map<string, number>()
  private readonly live = new Set<TrackedSocket>()
  private readonly closed: Traffic

  constructor (topology: Topology) {
    this.topology = topology
    for (const [a, b] of topology.edges) this.links.add(edgeKey(a, b))
    this.closed = { received: new Array<number>(topology.n).fill(0), sent: new Array<number>(topology.n).fill(0), total: 0 }
  }

  get n (): number { return this.topology.n }

  registerPeer (index: number, peerId: string): void {
    this.byPeer.set(peerId, index)
  }

  indexOf (peer: PeerId | string): number | undefined {
    return this.byPeer.get(typeof peer === 'string' ? peer : peer.toString())
  }

  /** The node listening on `port` (called on every start: ports may change on restart). */
  registerPort (index: number, port: number): void {
    for (const [p, i] of this.ports) if (i === index && p !== port) this.ports.delete(p)
    this.ports.set(port, index)
    counter.register(port, this)
  }

  /** An inbound connection was opened at `listener` from `dialer`'s port `remotePort`. */
  noteInbound (listenPort: number, remotePort: number, dialer: number): void {
    this.dialers.set(`${listenPort}:${remotePort}`, dialer)
  }

  /** Whether nodes `a` and `b` may talk now. */
  allowed (a: number, b: number): boolean {
    if (a === b) return false
    const key = edgeKey(a, b)
    if (!this.links.has(key) || this.cut.has(key)) return false
    return this.group == null || this.group[a] === this.group[b]
  }

  isLink (a: number, b: number): boolean {
    return this.links.has(edgeKey(a, b))
  }

  /** The gater for node `self`: it refuses every peer it may not talk to now. */
  gater (self: number): ConnectionGater {
    const deny = (peer: PeerId): boolean => {
      const other = this.indexOf(peer)
      return other == null || !this.allowed(self, other)
    }
    return {
      denyDialMultiaddr: () => false,
      denyDialPeer: deny,
      denyInboundEncryptedConnection: deny,
      denyOutboundEncryptedConnection: deny
    }
  }

  /** Split the nodes into groups (a node's group by index); links across are down. */
  partition (group: number[]): void {
    this.group = [...group]
  }

  cutLink (a: number, b: number): void {
    this.cut.add(edgeKey(a, b))
  }

  restoreLink (a: number, b: number): void {
    this.cut.delete(edgeKey(a, b))
  }

  /** Remove every partition and cut link. */
  healAll (): void {
    this.group = null
    this.cut.clear()
  }

  get partitioned (): boolean {
    return this.group != null || this.cut.size > 0
  }

  /** @internal called by the socket counter for accepted sockets on our ports */
  track (socket: Socket): void {
    const listenPort = socket.localPort ?? -1
    const listener = this.ports.get(listenPort)
    if (listener == null) return
    const t: TrackedSocket = { socket, listener, listenPort, remotePort: socket.remotePort ?? -1 }
    this.live.add(t)
    socket.once('close', () => {
      if (!this.live.delete(t)) return
      this.account(t, this.closed)
    })
  }

  private account (t: TrackedSocket, into: Traffic): void {
    const inBytes = t.socket.bytesRead
    const outBytes = t.socket.bytesWritten
    into.received[t.listener] += inBytes
    into.sent[t.listener] += outBytes
    into.total += inBytes + outBytes
    const dialer = this.dialers.get(`${t.listenPort}:${t.remotePort}`)
    if (dialer != null) {
      into.received[dialer] += outBytes
      into.sent[dialer] += inBytes
    }
  }

  /** Bytes so far (closed connections plus what the open ones carried). */
  traffic (): Traffic {
    const out: Traffic = { received: [...this.closed.received], sent: [...this.closed.sent], total: this.closed.total }
    for (const t of this.live) this.account(t, out)
    return out
  }

  close (): void {
    counter.unregister(this)
  }
}

export function trafficDelta (a: Traffic, b: Traffic): Traffic {
  return {
    received: b.received.map((x, i) => x - (a.received[i] ?? 0)),
    sent: b.sent.map((x, i) => x - (a.sent[i] ?? 0)),
    total: b.total - a.total
  }
}
