/**
 * Real nodes for multi-node tests: each has its own home in a temp folder and runs the
 * real node code in this process over TCP on 127.0.0.1. Everything it creates is removed
 * by cleanup(), which tests call in afterEach (also when they fail).
 *
 * A node can belong to a SimNetwork (test/sim/network.ts): then its connections follow the
 * network's topology and partitions (a ConnectionGater), it keeps its TCP port across
 * restarts, and the harness counts what it receives (gossip RPCs, duplicate block fetches,
 * traffic) across crashes and restarts.
 */
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile, readlink, rm, lstat, writeFile, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { TopicValidatorResult, type TopicValidatorFn } from '@libp2p/gossipsub'
import type { PeerId } from '@libp2p/interface'
import { initHome } from '../../src/node/home.js'
import { SyncNode, type NodeOptions, type LogFn } from '../../src/node/node.js'
import { meshTopic } from '../../src/gossip/announcer.js'
import { PeerBlockClient, type BlockResult } from '../../src/transfer/protocol.js'
import type { Want } from '../../src/transfer/codec.js'
import { RESERVED } from '../../src/store/datafolder.js'
import type { SimNetwork } from './network.js'
import type { Rng } from './prng.js'

export interface SimNodeOptions extends Partial<NodeOptions> {
  /** Clock offset in ms (clock skew). */
  skewMs?: number
}

/** What a node received and did, summed over all its runs (crashes and restarts). */
export interface NodeCounters {
  /** Gossipsub RPC frames received (messages and control). */
  gossipRpcs: number
  /** Published messages received in those RPCs, duplicates included. */
  gossipMsgs: number
  gossipMsgBytes: number
  /** IHAVE, IWANT, GRAFT, PRUNE and IDONTWANT entries received. */
  gossipControl: number
  /** Announcements the node accepted (first deliveries). */
  announcementsReceived: number
  announcementBytes: number
  announced: number
  messagesSent: number
  /** Announcements dropped by the simulation (gossip loss). */
  droppedBySim: number
  catchUpExchanges: number
  catchUpBytes: number
  catchUpRecords: number
  catchUpFailures: number
  blocksFetched: number
  bytesFetched: number
  badBlocks: number
  blocksCopiedLocally: number
  blocksReused: number
  /** Blocks fetched over the network although this node had fetched that hash before. */
  duplicateBlockFetches: number
  duplicateBlockBytes: number
  blocksServed: number
  bytesServed: number
  filesInstalled: number
  /** Records this node wrote itself (its own changes and conflict merges). */
  localRecords: number
  starts: number
  crashes: number
}

export function zeroCounters (): NodeCounters {
  return {
    gossipRpcs: 0,
    gossipMsgs: 0,
    gossipMsgBytes: 0,
    gossipControl: 0,
    announcementsReceived: 0,
    announcementBytes: 0,
    announced: 0,
    messagesSent: 0,
    droppedBySim: 0,
    catchUpExchanges: 0,
    catchUpBytes: 0,
    catchUpRecords: 0,
    catchUpFailures: 0,
    blocksFetched: 0,
    bytesFetched: 0,
    badBlocks: 0,
    blocksCopiedLocally: 0,
    blocksReused: 0,
    duplicateBlockFetches: 0,
    duplicateBlockBytes: 0,
    blocksServed: 0,
    bytesServed: 0,
    filesInstalled: 0,
    localRecords: 0,
    starts: 0,
    crashes: 0
  }
}

export function addCounters (a: NodeCounters, b: NodeCounters): NodeCounters {
  const out = zeroCounters()
  for (const k of Object.keys(out) as Array<keyof NodeCounters>) out[k] = a[k] + b[k]
  return out
}

/** Fault knobs of one node; they survive restarts. */
export interface NodeFaults {
  /** Fraction of incoming gossip announcements dropped (drawn from the simulation's PRNG). */
  dropRate: number
  /** Incoming announcements are delivered (and forwarded) this much later. */
  gossipDelayMs: number
  /** The node answers each block request this much later (a slow peer). */
  slowMs: number
  /** The node serves corrupt blocks (a lying peer). */
  liar: boolean
}

interface RpcShape {
  messages?: Array<{ data?: Uint8Array }>
  control?: { ihave?: unknown[], iwant?: unknown[], graft?: unknown[], prune?: unknown[], idontwant?: unknown[] }
}

export interface TraceEntry {
  at: number
  node: string
  what: string
  path: string
  version: string
  hash: string
}

function versionText (v: { vv: Record<string, number>, hlc: { wall: number, logical: number }, node: string }): string {
  const vv = Object.entries(v.vv).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, n]) => `${k.slice(0, 4)}:${n}`).join(',')
  return `{${vv}} ${v.node.slice(0, 4)}@${v.hlc.wall % 100000}.${v.hlc.logical}`
}

/** libp2p host -> the sim node that owns it (for the block fetch hook). */
const blockOwners = new WeakMap<object, SimNode>()
let blockHookInstalled = false

/**
 * Count every verified block a node fetches over the network, per hash: the node has no
 * hook for this (see the report), so the harness wraps PeerBlockClient.request.
 */
function installBlockHook (): void {
  if (blockHookInstalled) return
  blockHookInstalled = true
  const proto = PeerBlockClient.prototype
  const original = proto.request
  proto.request = async function (this: PeerBlockClient, hash: string, size: number, pathHint: string, offsetHint: number): Promise<Uint8Array> {
    const data = await original.call(this, hash, size, pathHint, offsetHint)
    const host = (this as unknown as { host: object }).host
    const owner = blockOwners.get(host)
    if (owner != null && data.byteLength === size && createHash('sha256').update(data).digest('hex') === hash) owner.noteFetched(hash, size)
    return data
  }
  // batch requests (protocol 2): every verified block of the answer
  const originalMany = proto.requestMany
  proto.requestMany = async function (this: PeerBlockClient, wants: Want[], onBlock: (index: number, result: BlockResult) => void): Promise<void> {
    const host = (this as unknown as { host: object }).host
    await originalMany.call(this, wants, (i, r) => {
      const owner = blockOwners.get(host)
      const w = wants[i]
      if (owner != null && r.data != null && r.data.byteLength === w.size) {
        const h = createHash('sha256')
        for (const c of r.data) h.update(c)
        if (h.digest('hex') === w.hash) owner.noteFetched(w.hash, w.size)
      }
      onBlock(i, r)
    })
  }
}

export class SimNode {
  readonly name: string
  readonly home: string
  node: SyncNode | null = null
  /** Index in the simulated network (when it has one). */
  index = -1
  net: SimNetwork | null = null
  peerIdStr = ''
  /** The TCP port the node listens on (kept across restarts). */
  port = 0
  /** Addresses to dial at each start (the simulation sets this to the node's neighbors). */
  joinTargets: (() => string[]) | null = null
  readonly faults: NodeFaults = { dropRate: 0, gossipDelayMs: 0, slowMs: 0, liar: false }
  /** PRNG for the gossip drop decisions (set by the simulation). */
  rng: Rng | null = null
  /** performance.now() of the last change to this node's store (records or installs). */
  lastChange = 0
  /** When set, what happens to each path in this node's store (for debugging a run). */
  trace: TraceEntry[] | null = null
  private readonly opts: SimNodeOptions
  private carried = zeroCounters()
  private readonly own = zeroCounters()
  private readonly fetched = new Set<string>()

  constructor (name: string, home: string, opts: SimNodeOptions) {
    this.name = name
    this.home = home
    this.opts = opts
  }

  get dataDir (): string { return join(this.home, 'data') }

  get n (): SyncNode {
    if (this.node == null) throw new Error(`${this.name} is not running`)
    return this.node
  }

  get running (): boolean { return this.node != null }

  get skewMs (): number { return this.opts.skewMs ?? 0 }

  async start (extra: Partial<NodeOptions> = {}): Promise<void> {
    if (this.node != null) return
    const skew = this.opts.skewMs ?? 0
    const net = this.net
    const base: NodeOptions = {
      home: this.home,
      listen: [`/ip4/127.0.0.1/tcp/${this.port}`],
      now: skew === 0 ? undefined : () => Date.now() + skew,
      rescanIntervalMs: 5_000,
      catchUpIntervalMs: 1_000,
      // a failed pull is retried within 2 s: convergence times measure the mesh, not the
      // backoff (a pull that can never finish still shows as stuck)
      maxRetryDelayMs: 2_000,
      ...(net != null ? { gater: net.gater(this.index), peerExchange: false } : {}),
      ...this.opts,
      ...extra
    }
    const join = [...(base.join ?? []), ...(this.joinTargets?.() ?? [])]
    if (join.length > 0) base.join = join
    let node = await SyncNode.open(base)
    this.beforeStart(node)
    try {
      await node.start()
    } catch (err) {
      // the port we had was taken while we were down: take any port
      if (this.port === 0 || !/address already in use/.test((err as Error).message)) throw err
      node = await SyncNode.open({ ...base, listen: ['/ip4/127.0.0.1/tcp/0'] })
      this.beforeStart(node)
      await node.start()
    }
    this.node = node
    this.afterStart(node)
  }

  /** Stop cleanly (flush, announce, close). */
  async stop (): Promise<void> {
    const node = this.node
    if (node == null) return
    this.node = null
    this.carry(node)
    await node.stop()
  }

  /** Crash: no clean stop (SyncNode.crash()); the home stays as a killed process leaves it. */
  async crash (): Promise<void> {
    const node = this.node
    if (node == null) return
    this.node = null
    this.carry(node)
    this.own.crashes++
    await node.crash()
  }

  addr (): string {
    return this.n.libp2p.getMultiaddrs()[0].toString()
  }

  /** The address peers dial, also while the node is down (its port is kept). */
  knownAddr (): string | null {
    if (this.port === 0 || this.peerIdStr === '') return null
    return `/ip4/127.0.0.1/tcp/${this.port}/p2p/${this.peerIdStr}`
  }

  path (rel: string): string { return join(this.dataDir, rel) }

  async write (rel: string, content: string | Uint8Array): Promise<void> {
    const p = this.path(rel)
    await mkdir(join(p, '..'), { recursive: true })
    await writeFile(p, content)
  }

  async read (rel: string): Promise<string | null> {
    try { return await readFile(this.path(rel), 'utf8') } catch { return null }
  }

  /** path -> content digest of what is on disk (files, dirs, symlinks). */
  async disk (): Promise<Map<string, string>> {
    // the node may move or remove files while we walk: retry until a walk sees a still tree
    for (;;) {
      try {
        return await this.diskOnce()
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && (err as NodeJS.ErrnoException).code !== 'ENOTDIR') throw err
      }
    }
  }

  private async diskOnce (): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    const walk = async (rel: string): Promise<void> => {
      for (const e of await readdir(rel === '' ? this.dataDir : this.path(rel), { withFileTypes: true })) {
        const p = rel === '' ? e.name : `${rel}/${e.name}`
        if (p === RESERVED) continue
        const st = await lstat(this.path(p))
        if (st.isDirectory()) { out.set(p, 'dir'); await walk(p) } else if (st.isSymbolicLink()) out.set(p, `link:${await readlink(this.path(p))}`)
        else out.set(p, `file:${(st.mode & 0o777).toString(8)}:${createHash('sha256').update(await readFile(this.path(p))).digest('hex')}`)
      }
    }
    await walk('')
    return out
  }

  /** path -> winning version of every record (with the tombstones). */
  async records (): Promise<Map<string, string>> {
    const out = new Map<string, string>()
    for await (const r of this.n.store.all()) {
      const vv = Object.entries(r.version.vv).sort().map(([k, v]) => `${k}=${v}`).join(',')
      out.set(r.path, `${r.deleted ? 'deleted' : r.type}:${r.hash}:${vv}:${r.version.node}`)
    }
    return out
  }

  /** Counters over every run of this node so far. */
  counters (): NodeCounters {
    const node = this.node
    const live = node == null ? zeroCounters() : liveCounters(node)
    return addCounters(addCounters(this.carried, this.own), live)
  }

  /** @internal the block hook saw a verified block fetched over the network */
  noteFetched (hash: string, size: number): void {
    if (this.fetched.has(hash)) {
      this.own.duplicateBlockFetches++
      this.own.duplicateBlockBytes += size
    } else {
      this.fetched.add(hash)
    }
  }

  /** Apply the fault knobs to the running node (call after changing `faults`). */
  applyFaults (): void {
    const node = this.node
    if (node == null) return
    // (the node's own announcer.delayMs applies messages one after the other, each after
    // the delay: a backlog that also holds up stop(); the harness delays in the validator)
    node.announcer.delayMs = 0
    node.blockServer.delayMs = this.faults.slowMs
    node.blockServer.corrupt = this.faults.liar ? corruptBlock : null
  }

  private carry (node: SyncNode): void {
    this.carried = addCounters(this.carried, liveCounters(node))
  }

  /** Between open() and start(): the store and data folder exist, nothing runs yet. */
  private beforeStart (node: SyncNode): void {
    // the time of the last change to the store, to time convergence exactly
    const store = node.store
    const tr = (what: string, r: { path: string, version: Parameters<typeof versionText>[0], hash: string, deleted: boolean, have?: boolean }): void => {
      this.trace?.push({ at: performance.now(), node: this.name, what: `${what}${r.deleted ? ' (deleted)' : ''}${r.have === false ? ' (need)' : ''}`, path: r.path, version: versionText(r.version), hash: r.hash.slice(0, 8) })
    }
    const applyRemote = store.applyRemote.bind(store)
    store.applyRemote = async (recs) => {
      const changed = await applyRemote(recs)
      if (changed.length > 0) this.lastChange = performance.now()
      for (const r of changed) tr('remote', r)
      return changed
    }
    const recordLocal = store.recordLocal.bind(store)
    store.recordLocal = async (obs) => {
      const changed = await recordLocal(obs)
      if (changed.length > 0) this.lastChange = performance.now()
      for (const r of changed) tr('scan', r)
      return changed
    }
    const markInstalled = store.markInstalled.bind(store)
    store.markInstalled = async (rec, observed) => {
      const ok = await markInstalled(rec, observed)
      this.lastChange = performance.now()
      const o = observed == null ? 'nothing' : `${observed.type} ino ${observed.ino} size ${observed.size} mtime ${observed.mtimeMs % 100000}`
      tr(`${ok ? 'installed' : 'installed, but a newer version had arrived'} [disk: ${o}; record mtime ${rec.mtimeMs % 100000} size ${rec.size}]`, { ...rec, have: true })
      return ok
    }
    const install = store.install.bind(store)
    store.install = async (rec, put) => {
      const ok = await install(rec, put)
      this.lastChange = performance.now()
      const kind = rec.deleted ? 'delete' : rec.type
      tr(ok ? `installed ${kind}` : `not installed (${kind}): a newer version arrived`, { ...rec, have: true })
      return ok
    }
    store.on('local', (recs) => { this.own.localRecords += recs.length })
    if (this.trace != null) {
      const data = node.data
      const preserve = data.preserve.bind(data)
      data.preserve = async (rel, copyRel, mtimeMs) => {
        const ino = (await data.observe(rel))?.ino ?? -1
        await preserve(rel, copyRel, mtimeMs)
        this.trace?.push({ at: performance.now(), node: this.name, what: `preserve as ${copyRel.slice(copyRel.indexOf('.sync-conflict'))} (inode ${ino})`, path: rel, version: '', hash: '' })
      }
    }
  }

  private afterStart (node: SyncNode): void {
    this.own.starts++
    const libp2p = node.libp2p
    const addr = libp2p.getMultiaddrs()[0]
    const port = Number(addr.toString().split('/tcp/')[1]?.split('/')[0] ?? 0)
    this.port = port
    this.peerIdStr = libp2p.peerId.toString()
    this.lastChange = performance.now()
    const net = this.net
    if (net != null) {
      net.registerPort(this.index, port)
      libp2p.addEventListener('connection:open', (evt) => {
        const conn = evt.detail
        if (conn.direction !== 'inbound') return
        const dialer = net.indexOf(conn.remotePeer)
        const remotePort = Number(conn.remoteAddr.toString().split('/tcp/')[1]?.split('/')[0] ?? -1)
        if (dialer != null) net.noteInbound(port, remotePort, dialer)
      })
    }
    installBlockHook()
    blockOwners.set(libp2p, this)

    // gossip: count every RPC received, duplicates and control included
    const gs = libp2p.services.pubsub as unknown as { handleReceivedRpc: (from: PeerId, rpc: RpcShape) => Promise<void> }
    const handle = gs.handleReceivedRpc.bind(gs)
    gs.handleReceivedRpc = async (from: PeerId, rpc: RpcShape): Promise<void> => {
      this.own.gossipRpcs++
      for (const m of rpc.messages ?? []) {
        this.own.gossipMsgs++
        this.own.gossipMsgBytes += m.data?.byteLength ?? 0
      }
      const c = rpc.control
      if (c != null) this.own.gossipControl += (c.ihave?.length ?? 0) + (c.iwant?.length ?? 0) + (c.graft?.length ?? 0) + (c.prune?.length ?? 0) + (c.idontwant?.length ?? 0)
      await handle(from, rpc)
    }

    // gossip loss: drop announcements before the node's own validator sees them
    const topic = meshTopic(node.home.meshKey)
    const validators = libp2p.services.pubsub.topicValidators
    const validate: TopicValidatorFn | undefined = validators.get(topic)
    if (validate != null) {
      validators.set(topic, async (peer, msg) => {
        if (this.faults.dropRate > 0 && this.rng != null && this.rng.chance(this.faults.dropRate)) {
          this.own.droppedBySim++
          return TopicValidatorResult.Ignore
        }
        // a slow link: the message is delivered (and forwarded) this much later; messages
        // are delayed side by side, not one after the other
        const delay = this.faults.gossipDelayMs
        if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
        return await validate(peer, msg)
      })
    }

    this.applyFaults()
  }
}

function liveCounters (node: SyncNode): NodeCounters {
  const c = zeroCounters()
  const a = node.announcer.stats
  c.announcementsReceived = a.received
  c.announcementBytes = a.bytesReceived
  c.announced = a.announced
  c.messagesSent = a.messagesSent
  const cu = node.catchUp.stats
  c.catchUpExchanges = cu.exchanges
  c.catchUpBytes = cu.bytesReceived
  c.catchUpRecords = cu.recordsReceived
  c.catchUpFailures = cu.failures
  const p = node.puller.stats
  c.blocksFetched = p.blocksFetched
  c.bytesFetched = p.bytesFetched
  c.badBlocks = p.badBlocks
  c.blocksCopiedLocally = p.blocksCopiedLocally
  c.blocksReused = p.blocksReused
  c.filesInstalled = p.filesInstalled
  c.blocksServed = node.blockServer.stats.blocksServed
  c.bytesServed = node.blockServer.stats.bytesServed
  return c
}

/** What a lying peer sends instead of a block: the same length, one byte flipped. */
export function corruptBlock (data: Uint8Array): Uint8Array {
  const x = Buffer.from(data)
  if (x.byteLength > 0) x[x.byteLength >> 1] ^= 0x5a
  return x
}

export class Mesh {
  readonly root: string
  readonly nodes: SimNode[] = []
  private keyFile = ''

  private constructor (root: string) {
    this.root = root
  }

  static async create (): Promise<Mesh> {
    return new Mesh(await mkdtemp(join(tmpdir(), 'syncmesh-sim-')))
  }

  /** Make a node home in the mesh (the first one creates the mesh key). */
  async add (name: string, opts: SimNodeOptions = {}): Promise<SimNode> {
    const home = join(this.root, name)
    const { peerId } = await initHome(home, this.keyFile === '' ? {} : { keyFile: this.keyFile })
    if (this.keyFile === '') this.keyFile = join(home, 'mesh.key')
    const n = new SimNode(name, home, opts)
    n.peerIdStr = peerId
    this.nodes.push(n)
    return n
  }

  running (): SimNode[] {
    return this.nodes.filter((n) => n.running)
  }

  /** Every running node has the same records and the same disk, and nothing to pull. */
  async converged (nodes = this.running()): Promise<boolean> {
    if (nodes.length === 0) return true
    for (const n of nodes) {
      if ((await n.n.store.needCount()) > 0) return false
    }
    const first = await nodes[0].records()
    const firstDisk = await nodes[0].disk()
    for (const n of nodes.slice(1)) {
      if (!sameMap(first, await n.records())) return false
      if (!sameMap(firstDisk, await n.disk())) return false
    }
    return true
  }

  async waitConverged (timeoutMs = 20_000, nodes?: SimNode[]): Promise<void> {
    await waitFor(async () => await this.converged(nodes), timeoutMs, 'mesh did not converge')
  }

  async cleanup (): Promise<void> {
    // nodes stop together; one that hangs is crashed after 10 s so cleanup always ends
    await Promise.allSettled(this.nodes.map(async (n) => {
      const node = n.node
      if (node != null && process.env.SIM_DEBUG === '1') watchStop(n.name, node)
      let timer: NodeJS.Timeout | undefined
      const hung = new Promise<'hung'>((resolve) => { timer = setTimeout(() => resolve('hung'), 10_000) })
      const result = await Promise.race([n.stop().then(() => 'ok' as const), hung])
      clearTimeout(timer)
      if (result === 'hung') await node?.crash().catch(() => {})
    }))
    await rm(this.root, { recursive: true, force: true, maxRetries: 3 })
  }
}

/** Debugging aid: say which part of a node's stop() takes long. */
function watchStop (name: string, node: SyncNode): void {
  const parts: Array<[string, { stop?: () => Promise<void>, close?: () => Promise<void> }]> = [
    ['puller', node.puller], ['scanner', node.scanner], ['peerExchange', node.peerExchange], ['announcer', node.announcer],
    ['catchUp', node.catchUp], ['blockServer', node.blockServer], ['libp2p', node.libp2p as unknown as { stop: () => Promise<void> }], ['store', node.store]
  ]
  for (const [part, obj] of parts) {
    const key = part === 'store' ? 'close' : 'stop'
    const orig = obj[key]?.bind(obj)
    if (orig == null) continue
    obj[key] = async () => {
      const t = performance.now()
      const timer = setInterval(() => { process.stderr.write(`${name}: ${part}.${key}() still running after ${Math.round(performance.now() - t)} ms\n`) }, 2000)
      try { await orig() } finally { clearInterval(timer) }
    }
  }
}

export function sameMap (a: Map<string, string>, b: Map<string, string>): boolean {
  if (a.size !== b.size) return false
  for (const [k, v] of a) if (b.get(k) !== v) return false
  return true
}

/** Poll `cond` until it holds; fail with `what` after `timeoutMs`. */
export async function waitFor (cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, pollMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`)
    await new Promise((resolve) => setTimeout(resolve, pollMs))
  }
}

export type { LogFn }
