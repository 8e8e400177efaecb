import { stat, unlink, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createLibp2p, type Libp2p } from 'libp2p'
import { tcp } from '@libp2p/tcp'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@libp2p/yamux'
import { identify, type Identify } from '@libp2p/identify'
import { ping, type Ping } from '@libp2p/ping'
import { gossipsub, type GossipSub } from '@libp2p/gossipsub'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { ConnectionGater, PeerId } from '@libp2p/interface'
import { meshProtector } from './pnet.js'
import { noiseCrypto } from './noise-crypto.js'
import { windowUpdatesAtHalf } from './yamux-window.js'
import { nodeIdOf } from './nodeid.js'
import { loadHome, type Home } from './home.js'
import { PeerExchange } from './peers.js'
import { Acl } from './acl.js'
import { Store } from '../store/store.js'
import { HybridClock, type WallClock } from '../store/hlc.js'
import { DataFolder } from '../store/datafolder.js'
import { Scanner } from '../store/scanner.js'
import { BlockCache } from '../store/blockcache.js'
import { isConflictPath } from '../store/version.js'
import { oneLine } from '../store/errors.js'
import { Announcer, meshTopic } from '../gossip/announcer.js'
import { CatchUp } from '../gossip/catchup.js'
import { BlockServer, PeerBlockClient, PeerTraffic, type BlockHost } from '../transfer/protocol.js'
import type { ReplaceLock } from '../transfer/tempwriter.js'
import { Puller, type PullProgress } from '../transfer/puller.js'
import { SyncMount } from '../fuse/mount.js'
import type { NodeId } from '../store/types.js'
import { apiToken } from './home.js'
import { ApiServer, parseApiAddress } from '../api/server.js'
import { serveDashboard } from '../api/dashboard.js'
import { SetBook, SetError, type SetView } from '../relay/sets.js'
import { validatePath } from '../store/paths.js'
import { PinStore } from '../relay/pins.js'
import { PinKeeper, Relay, type RelayInit, type RelayProgress } from '../relay/relay.js'
import type { CloudBackend } from '../relay/backend.js'
import { openBackend } from '../relay/backends/index.js'
import { RecentErrors, type LogEntry, type LogFn } from './log.js'
import { NodeMetrics } from './metrics.js'
import { measureOffset, serveTime, type ClockOffset } from './clock.js'

export type { LogFn }

export interface NodeOptions {
  home: string
  /** Overrides config.listen. */
  listen?: string[]
  /** Peers to dial at start (and keep redialing with backoff until reached). */
  join?: string[]
  log?: LogFn
  /** The node's wall clock (simulations skew it). */
  now?: WallClock
  /** Extra connection gating (simulated partitions). */
  gater?: ConnectionGater
  /** Watch the data folder (off when a FUSE mount reports changes). @default true */
  watch?: boolean
  /** Overrides for tests and simulations. */
  rescanIntervalMs?: number
  catchUpIntervalMs?: number
  /** Dial peers learned through peer exchange (off in fixed-topology simulations). @default true */
  peerExchange?: boolean
  /** Longest wait before a failed pull is tried again. @default 30_000 */
  maxRetryDelayMs?: number
  /** Simulations: shared with the workload (ReplaceLock in src/transfer/tempwriter.ts). */
  replaceLock?: ReplaceLock
  /**
   * Mount the data folder here (FUSE passthrough): every change made through the mount
   * is recorded at once, and the folder is no longer watched.
   */
  mount?: string
  /** Serve the HTTP upload API on HOST:PORT (overrides config.api). */
  api?: string
  /** Make this node an upload relay to this backend: 'folder:DIR', 'drive', or a backend object. */
  relay?: string | CloudBackend
  /** Relay timing (tests shorten the lease). */
  relayInit?: RelayInit
  /** Serve Prometheus metrics at http://HOST:PORT/metrics (overrides config.metrics). */
  metrics?: string
}

export class NodeError extends Error {
  override name = 'NodeError'
}

export interface StatusReport {
  peerId: string
  nodeId: string
  addrs: string[]
  /** latencyMs: round trip to the peer (libp2p's connection monitor, or the first time exchange), null until measured. */
  peers: Array<{ id: string, addrs: string[], latencyMs: number | null }>
  files: number
  dirs: number
  bytes: number
  pending: { files: number, bytes: number, pulling: PullProgress[] }
  conflicts: number
  lastError: string | null
  /** The last warnings and errors logged, oldest first. */
  recentErrors: LogEntry[]
  /** Where the data folder is mounted, if it is. */
  mount: string | null
  /** Where Prometheus metrics are served (host:port), if they are. */
  metrics: string | null
  stats: Record<string, Record<string, number>>
  /** Sets known to the mesh, newest first (at most 50). */
  sets: SetView[]
  /** This node's relay: its backend and the uploads running now (null: not a relay). */
  relay: { backend: string, uploads: RelayProgress[], lastError: string | null } | null
  /** Where the HTTP API listens (null: not served). */
  api: string | null
}

// a type alias (not an interface) so it satisfies libp2p's ServiceMap index signature
// eslint-disable-next-line @typescript-eslint/consistent-type-definitions
type Services = {
  identify: Identify
  ping: Ping
  pubsub: GossipSub
}

/**
 * The composition root: one node of the mesh. start() brings the parts up in order
 * (store, libp2p, protocols, scanner, puller, dials); stop() takes them down in reverse.
 */
export class SyncNode {
  readonly home: Home
  readonly store: Store
  readonly data: DataFolder
  readonly scanner: Scanner
  /** Small blocks the scanner just hashed, served from memory (BlockCache). */
  readonly blockCache = new BlockCache()
  readonly clock: HybridClock
  readonly nodeId: NodeId
  libp2p!: Libp2p<Services>
  blockServer!: BlockServer
  puller!: Puller
  announcer!: Announcer
  catchUp!: CatchUp
  peerExchange!: PeerExchange
  mount: SyncMount | null = null
  readonly book: SetBook
  keeper!: PinKeeper
  relay: Relay | null = null
  api: ApiServer | null = null
  /** The node's Prometheus figures (its own registry); served when `metrics` is set. */
  readonly metrics: NodeMetrics
  /** Where metrics are served (host:port), once started with `metrics`. */
  metricsAddr: string | null = null
  /** Block bytes per peer, both ways. */
  readonly traffic = new PeerTraffic()
  private readonly recent = new RecentErrors(10)
  private readonly rtts = new Map<string, number>()
  private readonly opts: NodeOptions
  private readonly log: LogFn
  private readonly clients = new Map<string, PeerBlockClient>()
  private readonly dialTargets = new Map<string, { addr: Multiaddr, next: number, delay: number }>()
  private dialTimer: NodeJS.Timeout | null = null
  private state: 'new' | 'started' | 'stopped' = 'new'
  lastError: string | null = null

  static async open (opts: NodeOptions): Promise<SyncNode> {
    const home = await loadHome(opts.home)
    const acl = await new Acl(opts.home).load()
    return new SyncNode(home, acl, opts)
  }

  readonly acl: Acl

  private constructor (home: Home, acl: Acl, opts: NodeOptions) {
    this.home = home
    this.acl = acl
    this.opts = opts
    const log = opts.log ?? (() => {})
    this.log = (level, msg, fields) => {
      this.recent.add(level, msg, fields)
      log(level, msg, fields)
    }
    this.clock = new HybridClock({ now: opts.now })
    this.nodeId = nodeIdOf(peerIdFromPrivateKey(home.privateKey))
    this.data = new DataFolder(home.dataDir)
    this.store = new Store({ path: home.dbDir, nodeId: this.nodeId, data: this.data, clock: this.clock })
    this.book = new SetBook({ store: this.store, now: opts.now })
    this.scanner = new Scanner({ store: this.store, data: this.data, log: (m) => this.log('warn', m), cache: this.blockCache }, {
      rescanIntervalMs: opts.rescanIntervalMs ?? home.config.rescanIntervalMs,
      watch: opts.mount == null && (opts.watch ?? true)
    })
    this.metrics = new NodeMetrics({
      // catchUp is the last of the parts counters() reads to be made in start()
      stats: () => this.state === 'started' && this.catchUp != null ? this.counters() : null,
      traffic: () => this.traffic,
      pullQueue: () => this.state === 'started' ? this.store.needCount() : 0,
      conflicts: async () => this.state === 'started' ? this.store.conflictCopies().length : 0
    })
  }

  get peerId (): PeerId {
    return this.libp2p.peerId
  }

  async start (): Promise<void> {
    if (this.state !== 'new') return
    // options that can be checked before anything starts are checked first: a mistake
    // costs one line and no start-up and shut-down noise
    const backend = await this.relayBackend()
    const apiListen = this.opts.api ?? this.home.config.api
    if (apiListen != null) {
      try { parseApiAddress(apiListen) } catch (err) { throw new NodeError(`--api ${(err as Error).message}`) }
    }
    this.state = 'started'
    await this.data.init()
    try {
      await this.store.open()
    } catch (err) {
      throw dbOpenError(this.home.dbDir, this.home.dir, err)
    }
    if (this.store.indexRenewed) this.log('warn', 'the machine restarted while the node was running: its last writes may be lost, so its index has a new id (each peer reads it from the start once) and it asks its peers for everything again')
    const metricsAt = this.opts.metrics ?? this.home.config.metrics ?? null
    if (metricsAt != null) {
      try {
        this.metricsAddr = await this.metrics.listen(metricsAt)
      } catch (err) {
        this.state = 'stopped'
        await this.store.close()
        throw new NodeError((err as Error).message)
      }
    }
    const repairing = await exists(repairMarker(this.home.dir))
    // mount first: a bad mount point is refused before anything else starts, and writes
    // through the mount are queued from the start (the scanner records them once running)
    if (this.opts.mount != null) {
      const scanner = this.scanner
      this.mount = new SyncMount({
        // the FUSE callbacks only queue paths: hashing and recording happen off their path
        sink: {
          changed: (path, _kind, ranges) => { scanner.touch(path, ranges) },
          removed: (path) => { scanner.touch(path) },
          renamed: (from, to) => { scanner.touch(from); scanner.touch(to) }
        },
        log: (m) => this.log('info', `mount: ${m}`)
      }, {
        dataDir: this.data.root,
        mountPoint: this.opts.mount,
        // no kernel caching of names and attributes: a version installed in the data
        // folder shows through the mount at once, never with the old size
        attrTimeout: 0,
        entryTimeout: 0
      })
      this.scanner.writes = this.mount
      try {
        await this.mount.start()
      } catch (err) {
        this.mount = null
        this.state = 'stopped'
        await this.metrics.close()
        await this.store.close()
        throw err
      }
      // remembered for `syncmesh doctor` (a stale mount after a crash); removed by stop()
      await writeFile(mountMarker(this.home.dir), `${resolve(this.opts.mount)}\n`).catch(() => {})
      this.log('info', `mounted ${this.data.root} at ${this.opts.mount}`, { path: this.opts.mount })
    }
    const listen = this.opts.listen ?? this.home.config.listen
    const gater = this.acl.gater(this.opts.gater)
    windowUpdatesAtHalf()
    try {
      this.libp2p = await createLibp2p({
        privateKey: this.home.privateKey,
        addresses: { listen },
        transports: [tcp()],
        connectionEncrypters: [noise({ crypto: noiseCrypto })],
        streamMuxers: [yamux()],
        connectionProtector: meshProtector({ key: this.home.meshKey }),
        connectionGater: gater,
        connectionManager: { maxConnections: 256 },
        ...(metricsAt != null ? { metrics: await this.metrics.libp2pMetrics() } : {}),
        services: {
          identify: identify(),
          ping: ping(),
          pubsub: gossipsub({ emitSelf: false, allowPublishToZeroTopicPeers: true, maxInboundDataLength: 4 * 1024 * 1024 + 64 * 1024 })
        }
      })
    } catch (err) {
      await this.metrics.close()
      if (this.mount != null) {
        await this.mount.stop().catch(() => {})
        await unlink(mountMarker(this.home.dir)).catch(() => {})
      }
      await this.store.close()
      const msg = (err as Error).message
      if (/EADDRINUSE/.test(msg)) throw new NodeError(`cannot listen on ${listen.join(', ')}: address already in use`)
      throw new NodeError(`cannot start libp2p: ${msg.split('\n')[0]}`)
    }
    const host = this.libp2p as unknown as BlockHost
    this.blockServer = new BlockServer({ store: this.store, data: this.data, host, onStale: (p) => this.scanner.touch(p), traffic: this.traffic, cache: this.blockCache })
    this.puller = new Puller({
      store: this.store,
      data: this.data,
      scanner: this.scanner,
      peers: () => [...this.clients.values()],
      log: (m) => this.log('warn', m)
    }, { concurrency: this.home.config.pullConcurrency, maxRetryDelayMs: this.opts.maxRetryDelayMs, replaceLock: this.opts.replaceLock })
    this.announcer = new Announcer({ store: this.store, pubsub: this.libp2p.services.pubsub, log: (m) => this.log('warn', m), onUnheard: () => { this.catchUp.nudgeAll() } }, {
      topic: meshTopic(this.home.meshKey),
      profile: this.home.batchProfile,
      disconnect: (peer) => { void this.libp2p.hangUp(peerIdFromString(peer)).catch(() => {}) }
    })
    this.catchUp = new CatchUp({
      store: this.store,
      host,
      peers: () => this.libp2p.getPeers(),
      log: (m) => this.log('warn', m)
    }, { intervalMs: this.opts.catchUpIntervalMs ?? this.home.config.catchUpIntervalMs })
    this.peerExchange = new PeerExchange({ libp2p: this.libp2p as unknown as Libp2p, log: (m) => this.log('debug', m), dial: (id, addrs) => { this.dialLearned(id, addrs) } }, { maxPeers: this.home.config.maxPeers })

    this.libp2p.addEventListener('peer:connect', (evt) => { this.onConnect(evt.detail) })
    this.libp2p.addEventListener('peer:disconnect', (evt) => { this.onDisconnect(evt.detail) })
    this.libp2p.addEventListener('peer:identify', (evt) => {
      const { peerId, listenAddrs } = evt.detail
      if (listenAddrs.length > 0) void this.store.rememberPeer(peerId.toString(), listenAddrs.map((a) => a.toString())).catch(() => {})
    })

    this.keeper = new PinKeeper({ store: this.store, book: this.book, pins: new PinStore({ data: this.data }), log: this.log })
    this.blockServer.pinSource = (hash) => this.keeper.pins.blockSource(hash)
    this.metrics.setsByState = () => this.keeper.setStates
    await this.keeper.start()
    await this.blockServer.start()
    await serveTime(host, this.opts.now ?? Date.now)
    await this.catchUp.start()
    await this.announcer.start()
    await this.peerExchange.start()
    // after a repair both wait until the mesh's records are known (finishRepair): the
    // puller would otherwise record every file on disk as a new local write
    if (!repairing) {
      await this.scanner.start()
      // a large folder takes a while (about 3 s for 100,000 files): say what it was
      this.log('info', `start-up scan of the data folder: ${this.scanner.lastScanEntries} entries in ${(this.scanner.lastScanMs / 1000).toFixed(1)} s`)
      await this.puller.start()
    }

    for (const { peer, addrs } of await this.store.rememberedPeers()) {
      for (const a of addrs) this.addDialTarget(withPeer(a, peer))
    }
    for (const a of [...this.home.config.join, ...(this.opts.join ?? [])]) this.addDialTarget(a)
    this.dialTimer = setInterval(() => { this.redial() }, 500)
    this.dialTimer.unref()
    this.redial()
    if (repairing) await this.finishRepair()
    try {
      await this.startRelayAndApi(backend, apiListen)
    } catch (err) {
      await this.stop()
      throw err
    }
    this.log('info', `node ${this.nodeId} (${this.libp2p.peerId.toString()}) started`, { peer: this.libp2p.peerId.toString(), ...(this.metricsAddr != null ? { metrics: this.metricsAddr } : {}) })
  }

  private async relayBackend (): Promise<CloudBackend | null> {
    const spec = this.opts.relay
    if (spec == null) return null
    if (typeof spec !== 'string') return spec
    try {
      return await openBackend(spec, { homeDir: this.home.dir, drive: this.home.config.drive, sessions: this.store.sessions })
    } catch (err) {
      throw new NodeError(oneLine(err))
    }
  }

  private async startRelayAndApi (backend: CloudBackend | null, listen: string | null): Promise<void> {
    if (backend != null) {
      this.relay = new Relay({
        store: this.store,
        book: this.book,
        keeper: this.keeper,
        backend,
        peers: () => [...this.clients.values()],
        log: this.log,
        now: this.opts.now,
        onUploadedBytes: (n) => { this.metrics.relayBytes.inc(n) }
      }, { leaseMs: this.home.config.relayLeaseMs, settleMs: 3 * this.home.batchProfile.maxAgeMs + 200, ...this.opts.relayInit })
      await this.relay.start()
      this.log('info', `relay: uploading committed sets to ${backend.name}`)
    }
    if (listen != null) {
      this.api = new ApiServer({
        store: this.store,
        data: this.data,
        scanner: this.scanner,
        book: this.book,
        keeper: this.keeper,
        status: async () => await this.status(),
        log: this.log,
        extra: serveDashboard
      }, { listen, token: await apiToken(this.home.dir), maxFileBytes: this.home.config.apiMaxFileBytes })
      try {
        await this.api.start()
      } catch (err) {
        this.api = null
        throw new NodeError(oneLine(err))
      }
      this.log('info', `HTTP API on ${this.api.url}`)
    }
  }

  /**
   * Simulated crash (fault injection): connections are dropped, nothing is flushed or
   * announced, timers stop; what is in LevelDB and the data folder stays as a killed
   * process would leave it. The node can be started again from the same home.
   */
  async crash (): Promise<void> {
    if (this.state !== 'started') return
    this.state = 'stopped'
    if (this.dialTimer != null) clearInterval(this.dialTimer)
    this.announcer.batcher.discard()
    await this.api?.stop().catch(() => {})
    this.api = null
    await this.relay?.stop().catch(() => {})
    this.relay = null
    if (this.mount != null) { await this.mount.stop().catch(() => {}); this.mount = null }
    for (const c of this.libp2p.getConnections()) c.abort(new Error('crash'))
    await this.puller.stop()
    await this.scanner.stop()
    await this.keeper.stop()
    await this.catchUp.stop().catch(() => {})
    await this.blockServer.stop().catch(() => {})
    for (const c of this.clients.values()) c.close()
    this.clients.clear()
    await Promise.resolve(this.libp2p.stop()).catch(() => {})
    await this.metrics.close()
    await this.store.close()
  }

  /**
   * First start after `syncmesh repair`: learn the mesh's records from the peers first,
   * then adopt what the data folder holds (no new versions where it matches the mesh).
   */
  private async finishRepair (): Promise<void> {
    const deadline = Date.now() + 30_000
    this.log('info', 'repair: learning the mesh\'s records from peers before scanning the data folder')
    let learned = false
    while (!learned && Date.now() < deadline && this.dialTargets.size > 0) {
      for (const p of this.libp2p.getPeers()) {
        try { await this.catchUp.sync(p); learned = true } catch {}
      }
      if (!learned) await new Promise((resolve) => setTimeout(resolve, 200))
    }
    if (!learned) this.log('warn', 'repair: no peer answered; the data folder is recorded as it is')
    this.scanner.adoptNext = true
    await this.scanner.start()
    await this.puller.start()
    await unlink(repairMarker(this.home.dir)).catch(() => {})
    this.log('info', 'repair: done')
  }

  async stop (): Promise<void> {
    if (this.state !== 'started') return
    this.state = 'stopped'
    await this.api?.stop()
    this.api = null
    await this.relay?.stop()
    this.relay = null
    // unmount first: programs using the mount get their last writes recorded below
    if (this.mount != null) {
      await this.mount.stop().catch((err: Error) => this.log('error', `unmount: ${err.message}`))
      this.mount = null
      await unlink(mountMarker(this.home.dir)).catch(() => {})
      await this.scanner.flush()
    }
    if (this.dialTimer != null) clearInterval(this.dialTimer)
    await this.puller.stop()
    await this.scanner.stop()
    await this.keeper.stop()
    await this.peerExchange.stop()
    await this.announcer.stop()
    await this.catchUp.stop()
    await this.blockServer.stop()
    for (const c of this.clients.values()) c.close()
    this.clients.clear()
    await this.libp2p.stop()
    await this.metrics.close()
    this.metricsAddr = null
    await this.store.close()
    this.log('info', `node ${this.nodeId} stopped`)
  }

  private onConnect (peer: PeerId): void {
    const id = peer.toString()
    this.log('debug', 'peer connected', { peer: id })
    if (!this.clients.has(id)) this.clients.set(id, new PeerBlockClient(this.libp2p as unknown as BlockHost, peer, this.home.config.maxInFlightPerPeer, this.traffic))
    void this.catchUp.sync(peer).catch((err: Error) => this.log('debug', `catch-up failed: ${err.message}`, { peer: id }))
    // a first latency figure at once, from one time exchange (libp2p's connection monitor
    // measures connection.rtt every 10 s; a ping here would take the one outbound ping
    // stream that join() needs)
    void measureOffset(this.libp2p as unknown as BlockHost, peer, this.opts.now ?? Date.now).then((o) => { this.rtts.set(id, o.rttMs) }, () => {})
    void this.peerExchange.ask(peer)
    this.puller.retryNow()
  }

  private onDisconnect (peer: PeerId): void {
    const id = peer.toString()
    this.log('debug', 'peer disconnected', { peer: id })
    this.clients.get(id)?.close()
    this.clients.delete(id)
    this.rtts.delete(id)
  }

  /** Dial a peer now and remember it (for restarts). Rejects with a one-line reason. */
  async join (addr: string): Promise<string> {
    let ma: Multiaddr
    try {
      ma = multiaddr(addr)
    } catch {
      throw new NodeError(`not a multiaddr: ${addr}`)
    }
    try {
      const conn = await this.libp2p.dial(ma, { signal: AbortSignal.timeout(10_000) })
      // a peer that refuses us (deny-list) closes the connection right after the handshake
      await this.libp2p.services.ping.ping(conn.remotePeer, { signal: AbortSignal.timeout(10_000) })
      const id = conn.remotePeer.toString()
      await this.store.rememberPeer(id, [ma.toString()])
      this.addDialTarget(withPeer(ma.toString(), id))
      return id
    } catch (err) {
      throw new NodeError(`cannot reach ${addr}: ${oneLine(err)}`)
    }
  }

  /** Allow-list a peer (when the list is not empty, only listed peers get in). */
  async allow (peer: string): Promise<void> {
    await this.acl.allow(peer)
    for (const p of this.libp2p.getPeers()) {
      if (!this.acl.permits(p)) await this.libp2p.hangUp(p).catch(() => {})
    }
  }

  /** Refuse a peer from now on, and drop its connections at once. */
  async deny (peer: string): Promise<void> {
    await this.acl.deny(peer)
    await this.libp2p.hangUp(peerIdFromString(peer)).catch(() => {})
  }

  private addDialTarget (addr: string): void {
    let ma: Multiaddr
    try { ma = multiaddr(addr) } catch { this.log('warn', 'ignoring bad address', { addr }); return }
    if (!this.dialTargets.has(ma.toString())) this.dialTargets.set(ma.toString(), { addr: ma, next: 0, delay: 500 })
  }

  private dialLearned (id: string, addrs: Multiaddr[]): void {
    if (this.opts.peerExchange === false) return
    if (this.libp2p.getConnections(peerIdFromString(id)).length > 0) return
    if (this.libp2p.getPeers().length >= this.home.config.maxPeers) return
    for (const a of addrs) this.addDialTarget(withPeer(a.toString(), id))
  }

  /** Keep remembered and --join peers connected: redial with exponential backoff. */
  private redial (): void {
    if (this.state !== 'started') return
    const now = Date.now()
    for (const t of this.dialTargets.values()) {
      if (t.next > now) continue
      const peer = peerOf(t.addr)
      if (peer != null && (peer === this.libp2p.peerId.toString() || this.libp2p.getConnections(peerIdFromString(peer)).length > 0)) continue
      t.next = now + t.delay
      t.delay = Math.min(t.delay * 2, 60_000)
      void this.libp2p.dial(t.addr, { signal: AbortSignal.timeout(10_000) }).then(() => {
        t.delay = 500
      }, () => {})
    }
  }

  /**
   * `syncmesh commit`: commit data-folder paths (files, or directories: every file below
   * them) at their current versions as set `name` (created if no set has that name).
   * Paths may be absolute inside the data folder or the mount.
   */
  async commitPaths (name: string, paths: string[]): Promise<SetView> {
    if (paths.length === 0) throw new SetError('commit needs at least one PATH', 400)
    const rels = paths.map((p) => this.relativePath(p))
    // writes made a moment ago are recorded first: the commit takes what is on disk now
    await this.scanner.recordNow(rels)
    const entries: Array<{ source: string, path: string }> = []
    for (const rel of rels) {
      const r = await this.store.get(rel)
      if (r?.type === 'dir' && !r.deleted) {
        for await (const f of this.store.under(rel)) if (f.type === 'file' && !f.deleted && !isConflictPath(f.path)) entries.push({ source: f.path, path: f.path })
      } else if (r?.type === 'file' && !r.deleted) {
        if (!r.have) throw new SetError(`${rel}: this node does not hold its current version yet (still pulling)`, 409)
        entries.push({ source: rel, path: rel })
      } else {
        throw new SetError(`${rel}: no such file or directory in the data folder`, 404)
      }
    }
    const set = await this.book.byName(name) ?? await this.book.create(name)
    const committed = await this.book.commit(set, entries)
    await this.keeper.reconcile()
    return await this.book.view(committed, (h) => this.keeper.pins.sha256(h))
  }

  /** A path given on the command line -> a data-folder path. */
  private relativePath (p: string): string {
    let rel = p
    for (const root of [this.data.root, this.opts.mount].filter((r): r is string => r != null).map((r) => resolve(r))) {
      if (p === root) throw new SetError(`${p} is the whole folder: name the files or directories to commit`, 400)
      if (p.startsWith(`${root}/`)) { rel = p.slice(root.length + 1); break }
    }
    if (rel.startsWith('/')) throw new SetError(`${p} is outside the data folder and the mount`, 400)
    rel = rel.replace(/\/+$/, '')
    try {
      validatePath(rel)
    } catch (err) {
      throw new SetError(`${p}: ${(err as Error).message}`, 400)
    }
    return rel
  }

  async setViews (limit = 50): Promise<SetView[]> {
    return await viewsOf(this, limit)
  }

  async status (): Promise<StatusReport> {
    const counts = this.store.count()
    const conflicts = this.store.conflictCopies().length
    return {
      peerId: this.libp2p.peerId.toString(),
      nodeId: this.nodeId,
      addrs: this.libp2p.getMultiaddrs().map((a) => a.toString()),
      peers: this.libp2p.getPeers().map((p) => {
        const conns = this.libp2p.getConnections(p)
        const rtts = conns.map((c) => c.rtt).filter((r): r is number => r != null)
        const latencyMs = rtts.length > 0 ? Math.min(...rtts) : (this.rtts.get(p.toString()) ?? null)
        return { id: p.toString(), addrs: conns.map((c) => c.remoteAddr.toString()), latencyMs }
      }),
      files: counts.files,
      dirs: counts.dirs,
      bytes: counts.bytes,
      pending: { files: counts.pendingFiles, bytes: counts.pendingBytes, pulling: this.puller.progress() },
      conflicts,
      lastError: this.puller.lastError ?? this.scanner.lastError ?? this.lastError,
      recentErrors: this.recent.list(),
      mount: this.mount != null ? (this.opts.mount ?? null) : null,
      metrics: this.metricsAddr,
      stats: this.counters(),
      sets: await this.setViews(),
      relay: this.relay == null ? null : { backend: this.relay.backend.name, uploads: this.relay.progress(), lastError: this.relay.lastError },
      api: this.api?.url ?? null
    }
  }

  /** The parts' counters (status and metrics). */
  private counters (): Record<string, Record<string, number>> {
    return {
      puller: { ...this.puller.stats },
      blocks: { ...this.blockServer.stats },
      gossip: { ...this.announcer.stats, ...this.announcer.batcher.stats },
      catchUp: { ...this.catchUp.stats },
      scanner: this.scanner.stats,
      ...(this.relay != null ? { relay: { ...this.relay.stats } } : {}),
      ...(this.api != null ? { api: { ...this.api.stats } } : {})
    }
  }

  /** The clock offset to every connected peer (`/syncmesh/time/1.0.0`). */
  async clockOffsets (): Promise<Array<ClockOffset | { peer: string, error: string }>> {
    const host = this.libp2p as unknown as BlockHost
    const now = this.opts.now ?? Date.now
    return await Promise.all(this.libp2p.getPeers().map(async (p) => {
      try {
        return await measureOffset(host, p, now)
      } catch (err) {
        return { peer: p.toString(), error: oneLine(err) }
      }
    }))
  }
}

/** Views of the newest sets (at most `limit`); a relay's live progress overrides the records'. */
async function viewsOf (node: SyncNode, limit: number): Promise<SetView[]> {
  const sets = (await node.book.list()).sort((a, b) => b.createdAt - a.createdAt).slice(0, limit)
  const live = new Map((node.relay?.progress() ?? []).map((p) => [p.setId, p]))
  const sha = (h: string): string | null => node.api?.sha256Of(h) ?? node.keeper.pins.sha256(h)
  return await Promise.all(sets.map(async (s) => {
    const v = await node.book.view(s, sha)
    const p = live.get(s.id)
    return { ...v, files: v.files.slice(0, 100), bytesDone: p?.bytesDone ?? v.bytesDone }
  }))
}

export function repairMarker (home: string): string {
  return join(home, 'repair-pending')
}

/** Holds the mount point while the node serves a mount (left behind by a crash). */
export function mountMarker (home: string): string {
  return join(home, 'mountpoint')
}

async function exists (p: string): Promise<boolean> {
  try { await stat(p); return true } catch { return false }
}

function dbOpenError (dbDir: string, home: string, err: unknown): NodeError {
  const cause = (err as { cause?: unknown }).cause
  const detail = oneLine(cause ?? err)
  const code = (cause as { code?: string } | undefined)?.code ?? (err as { code?: string }).code
  if (code === 'LEVEL_LOCKED' || /lock/i.test(detail)) {
    return new NodeError(`the metadata database in ${dbDir} is in use: is another node running in this home?`)
  }
  return new NodeError(`the metadata database in ${dbDir} is damaged (${detail}); run 'syncmesh repair --home ${home}' to rebuild it from the data folder and the mesh`)
}

function peerOf (ma: Multiaddr): string | null {
  const p2p = ma.getComponents().findLast((c) => c.name === 'p2p')
  return p2p?.value ?? null
}

function withPeer (addr: string, peer: string): string {
  return addr.includes('/p2p/') ? addr : `${addr}/p2p/${peer}`
}

