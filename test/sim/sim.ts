/**
 * A simulation: N real nodes (test/sim/harness.ts) on a simulated network
 * (test/sim/network.ts) in a seeded topology, a seeded workload that writes down what every
 * operation saw (test/sim/ledger.ts), fault injection, waiting for quiet, the invariants
 * (test/sim/invariants.ts) and the figures of a run.
 */
import { createHash } from 'node:crypto'
import { lstat, readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { performance, type EventLoopUtilization } from 'node:perf_hooks'
import { meshTopic } from '../../src/gossip/announcer.js'
import { hashFile } from '../../src/store/blocks.js'
import { RESERVED } from '../../src/store/datafolder.js'
import type { StoredRecord } from '../../src/store/types.js'
import type { SyncNode } from '../../src/node/node.js'
import { Mesh, waitFor, type NodeCounters, addCounters, zeroCounters, type SimNode } from './harness.js'
import { Check, checkContent, checkWrites, mergeResults, type DiskSnapshot, type InvariantResult } from './invariants.js'
import { Ledger, conflictBase } from './ledger.js'
import { SimNetwork, trafficDelta, type Traffic } from './network.js'
import { Rng } from './prng.js'
import { describeTopology, makeTopology, neighbors, type Topology, type TopologyName } from './topology.js'
import { Workload, sha256, stateAt, type WorkloadOptions } from './workload.js'
import { newReplaceLock, withReplacesHeld } from '../../src/transfer/tempwriter.js'

export interface SimOptions {
  nodes: number
  seed: number
  /** @default 'random' */
  topology?: TopologyName
  /** Links per node in 'random' (and inside large sites). @default 4 */
  degree?: number
  /** Clock offset per node index, in ms. */
  skews?: number[]
  /** @default 1000 */
  catchUpIntervalMs?: number
  /** @default 5000 */
  rescanIntervalMs?: number
  /** Longest pull retry backoff (the node's default is 30 s). @default 1000 */
  maxRetryDelayMs?: number
  workload?: WorkloadOptions
  /** Progress lines (each prefixed with the elapsed time). */
  log?: (line: string) => void
  /** Forward the nodes' own warnings to `log`. */
  nodeLogs?: boolean
}

export interface QuietResult {
  converged: boolean
  /** performance.now() when the last node changed its store before agreement. */
  agreedAt: number
  /** When the harness noticed. */
  detectedAt: number
  why: string
}

export interface WindowStats {
  ms: number
  traffic: Traffic
  counters: NodeCounters
  perNode: NodeCounters[]
  elu: number
}

/**
 * Content only a lying peer holds: paths whose live record some honest running node needs
 * (have=false, in its store's needs) while no honest running node holds that content
 * (a live file record with have=true and the same content hash, its disk state that
 * content) and a liar does. Nobody can ever install it (the liar serves only corrupt
 * blocks), so honest agreement is only expected without these paths.
 */
export interface LiarOnly {
  /** path -> the content hash of its (agreed) record. */
  paths: Map<string, string>
  /** Per honest node, the needed paths excused (a subset of `paths`). */
  needs: Map<SimNode, Set<string>>
  /** path -> which nodes hold the content and which need it, in words. */
  why: Map<string, string>
}

const NO_LIAR_ONLY: LiarOnly = { paths: new Map(), needs: new Map(), why: new Map() }

/** One explicit check that a causally later write from a slow clock wins. */
export interface ClockCheck {
  path: string
  ahead: number
  behind: number
  aheadDigest: string
  behindDigest: string
  /** The record's HLC wall time of the ahead write, minus the behind node's clock when it wrote. */
  leadMs: number
}

export class Sim {
  readonly opts: SimOptions
  readonly rng: Rng
  readonly topology: Topology
  readonly net: SimNetwork
  readonly ledger = new Ledger()
  readonly workload: Workload
  /**
   * Held by every node's temp-file thread from its look at a path to its rename, and by
   * each workload operation: the ledger records what an operation read and wrote as one
   * step, which a rename by that thread landing in the middle would falsify.
   */
  readonly replaceLock = newReplaceLock()
  readonly faultRng: Rng
  private readonly pickRng: Rng
  readonly t0 = performance.now()
  mesh!: Mesh
  nodes: SimNode[] = []
  lastHealAt: number | null = null
  partitions = 0
  crashes = 0
  readonly events: string[] = []
  private readonly topic: { value: string } = { value: '' }
  private readonly digestCache = new Map<SimNode, { key: string, rec: string, diskKey: string | null, disk: string | null }>()
  private sampler: NodeJS.Timeout | null = null
  private sampling = false
  readonly corruptionSamples = new Check()

  private constructor (opts: SimOptions) {
    this.opts = opts
    this.rng = new Rng(opts.seed)
    this.topology = makeTopology(opts.topology ?? 'random', opts.nodes, this.rng.fork('topology'), opts.degree ?? 4)
    this.net = new SimNetwork(this.topology)
    this.workload = new Workload(this.ledger, this.rng.fork('workload'), opts.workload)
    this.faultRng = this.rng.fork('faults')
    this.pickRng = this.rng.fork('pick')
  }

  static async create (opts: SimOptions): Promise<Sim> {
    const sim = new Sim(opts)
    sim.mesh = await Mesh.create()
    const adj = neighbors(sim.topology)
    for (let i = 0; i < opts.nodes; i++) {
      const skewMs = opts.skews?.[i] ?? 0
      const name = `n${i}`
      const node = await sim.mesh.add(name, {
        skewMs,
        catchUpIntervalMs: opts.catchUpIntervalMs ?? 1_000,
        maxRetryDelayMs: opts.maxRetryDelayMs ?? 1_000,
        rescanIntervalMs: opts.rescanIntervalMs ?? 5_000,
        replaceLock: sim.replaceLock,
        ...(opts.nodeLogs === true ? { log: (level, msg) => { if (level !== 'debug') sim.log(`[${name} ${level}] ${msg}`) } } : {})
      })
      node.index = i
      node.net = sim.net
      node.rng = sim.rng.fork(`drop-${i}`)
      sim.net.registerPeer(i, node.peerIdStr)
      node.joinTargets = () => adj[i].map((j) => sim.nodes[j].knownAddr()).filter((a): a is string => a != null)
      sim.nodes.push(node)
    }
    sim.log(`seed ${opts.seed}: ${describeTopology(sim.topology)}`)
    return sim
  }

  log (line: string): void {
    this.opts.log?.(`[${((performance.now() - this.t0) / 1000).toFixed(1).padStart(6)}s] ${line}`)
  }

  private event (line: string): void {
    this.events.push(`${((performance.now() - this.t0) / 1000).toFixed(2)}s ${line}`)
    this.log(line)
  }

  running (): SimNode[] {
    return this.nodes.filter((n) => n.running)
  }

  /** Start every node (in index order: a node dials its lower-numbered neighbors). */
  async startAll (timeoutMs = 30_000 + this.nodes.length * 1_000): Promise<void> {
    // libp2p refuses more than 5 inbound connections a second from one host
    // (connectionManager.inboundConnectionThreshold), and here every peer is 127.0.0.1:
    // where a node has many neighbors, start the nodes slowly enough for it
    const maxDegree = Math.max(0, ...neighbors(this.topology).map((a) => a.length))
    for (const n of this.nodes) {
      await n.start()
      if (maxDegree > 4) await new Promise((resolve) => setTimeout(resolve, 250))
    }
    this.topic.value = meshTopic(this.nodes[0].n.home.meshKey)
    await this.waitConnected(timeoutMs)
    this.log(`${this.nodes.length} nodes up and connected`)
  }

  /** Every link that may be up (both ends running, not cut) is connected and gossiping. */
  async waitConnected (timeoutMs: number): Promise<void> {
    await waitFor(() => this.missingLinks().length === 0, timeoutMs, 'links did not come up', 100)
      .catch((err: Error) => { throw new Error(`${err.message}: ${this.missingLinks().slice(0, 10).join(', ')}`) })
  }

  private missingLinks (): string[] {
    const out: string[] = []
    for (const [a, b] of this.topology.edges) {
      const na = this.nodes[a]
      const nb = this.nodes[b]
      if (!na.running || !nb.running || !this.net.allowed(a, b)) continue
      const subsA = na.n.libp2p.services.pubsub.getSubscribers(this.topic.value).map(String)
      const subsB = nb.n.libp2p.services.pubsub.getSubscribers(this.topic.value).map(String)
      if (!subsA.includes(nb.peerIdStr) || !subsB.includes(na.peerIdStr)) out.push(`${a}-${b}`)
    }
    return out
  }

  /** Nodes the workload never writes on (a lying peer: nobody could get its content). */
  readonly readOnly = new Set<number>()

  /** One random workload operation on a random running node (or on `node`). */
  op (node?: SimNode): string {
    const live = this.running().filter((n) => !this.readOnly.has(n.index))
    if (live.length === 0) return 'no node to write on'
    const target = node ?? this.pickRng.pick(live)
    return `${target.name}: ${withReplacesHeld(this.replaceLock, () => this.workload.step(target, live))}`
  }

  // ---- faults ---------------------------------------------------------------------------

  /** Cut the network into groups (group of each node by index) and drop the links across. */
  async partition (group: number[]): Promise<void> {
    this.net.partition(group)
    this.partitions++
    this.event(`partition ${JSON.stringify(groupsOf(group))}`)
    await this.enforce()
  }

  async cutLink (a: number, b: number): Promise<void> {
    this.net.cutLink(a, b)
    this.partitions++
    this.event(`cut link ${a}-${b}`)
    await this.enforce()
  }

  restoreLink (a: number, b: number): void {
    this.net.restoreLink(a, b)
    this.lastHealAt = performance.now()
    this.event(`restore link ${a}-${b}`)
  }

  heal (): void {
    if (!this.net.partitioned) return
    this.net.healAll()
    this.lastHealAt = performance.now()
    this.event('heal all links')
  }

  /** Hang up every connection the network no longer allows. */
  private async enforce (): Promise<void> {
    const work: Array<Promise<void>> = []
    for (const n of this.running()) {
      for (const conn of n.n.libp2p.getConnections()) {
        const other = this.net.indexOf(conn.remotePeer)
        if (other == null || !this.net.allowed(n.index, other)) work.push(conn.close().catch(() => { conn.abort(new Error('partitioned')) }))
      }
    }
    await Promise.allSettled(work)
  }

  async crash (i: number): Promise<void> {
    this.crashes++
    this.event(`crash n${i}`)
    await this.nodes[i].crash()
  }

  async stopNode (i: number): Promise<void> {
    this.event(`stop n${i}`)
    await this.nodes[i].stop()
  }

  async restart (i: number): Promise<void> {
    this.event(`restart n${i}`)
    await this.nodes[i].start()
  }

  // ---- quiet and invariants ---------------------------------------------------------------

  /**
   * Wait until every running node holds the same records and the same disk with nothing
   * left to pull. Agreement is timed by the last store change of any node before it, so
   * the figure does not depend on how often the harness looks.
   */
  async waitQuiet (timeoutMs: number): Promise<QuietResult> {
    const deadline = performance.now() + timeoutMs
    let why = ''
    for (;;) {
      const started = performance.now()
      why = await this.agreement()
      if (why === '') {
        const live = this.running()
        const agreedAt = Math.max(this.ledger.lastWriteAt, ...live.map((n) => n.lastChange))
        return { converged: true, agreedAt, detectedAt: performance.now(), why: '' }
      }
      if (performance.now() > deadline) return { converged: false, agreedAt: NaN, detectedAt: performance.now(), why }
      const took = performance.now() - started
      await new Promise((resolve) => setTimeout(resolve, Math.max(100, Math.min(1000, took))))
    }
  }

  /**
   * '' when the running nodes agree, else why not. Needs that only a liar could serve
   * (`liarOnly()`) are excused on the honest nodes, and those paths are left out of the
   * disk comparison; everything else must match exactly.
   */
  async agreement (lo?: LiarOnly): Promise<string> {
    const live = this.running()
    lo ??= await this.liarOnly()
    for (const n of live) {
      const excused = lo.needs.get(n)
      const p = n.n.puller
      // a transfer of an excused path is one more attempt that cannot succeed (no honest
      // peer has a block of it); any other transfer or queued path is still pulling
      const active = p.progress().filter((x) => excused?.has(x.path) !== true).length
      const waiting = excused == null ? p.waiting : waitingPaths(p).filter((x) => !excused.has(x)).length
      if (waiting > 0 || active > 0) return `${n.name} is pulling (${waiting} waiting, ${active} active)`
    }
    for (const n of live) {
      const excused = lo.needs.get(n)
      const need = excused == null ? await n.n.store.needCount() : (await n.n.store.neededPaths()).filter((x) => !excused.has(x)).length
      if (need > 0) return `${n.name} needs ${need}`
    }
    const recs = await Promise.all(live.map(async (n) => await this.recordDigest(n)))
    for (let i = 1; i < live.length; i++) if (recs[i] !== recs[0]) return `records of ${live[i].name} differ from ${live[0].name}`
    const skip = new Set(lo.paths.keys())
    const d0 = await this.diskDigest(live[0], skip)
    for (let i = 1; i < live.length; i++) {
      const d = await this.diskDigest(live[i], skip)
      if (d !== d0) return `disk of ${live[i].name} differs from ${live[0].name}${skip.size > 0 ? ` (${skip.size} liar-only paths left out)` : ''}`
    }
    return ''
  }

  /**
   * The paths only a liar holds the content of (see LiarOnly), from the running nodes'
   * stores, computed afresh each time (a stale answer would excuse too much). Empty when
   * no liar is running.
   */
  async liarOnly (): Promise<LiarOnly> {
    const live = this.running()
    const liars = live.filter((n) => n.faults.liar)
    const honest = live.filter((n) => !n.faults.liar)
    if (liars.length === 0 || honest.length === 0) return NO_LIAR_ONLY
    const holders = async (n: SimNode): Promise<Set<string>> => {
      const out = new Set<string>()
      for await (const r of n.n.store.all()) if (holds(r)) out.add(r.hash)
      return out
    }
    const honestHeld = new Set<string>()
    for (const n of honest) for (const h of await holders(n)) honestHeld.add(h)
    const liarHeld = new Map<string, string[]>()
    for (const n of liars) for (const h of await holders(n)) liarHeld.set(h, [...(liarHeld.get(h) ?? []), n.name])
    const out: LiarOnly = { paths: new Map(), needs: new Map(), why: new Map() }
    const needers = new Map<string, string[]>()
    const mixed = new Set<string>()
    for (const n of honest) {
      const paths = await n.n.store.neededPaths()
      const recs = await n.n.store.getMany(paths)
      for (const r of recs) {
        if (r == null || r.deleted || r.have || r.type !== 'file' || r.hash === '') continue
        if (honestHeld.has(r.hash) || !liarHeld.has(r.hash)) continue
        const seen = out.paths.get(r.path)
        if (seen != null && seen !== r.hash) mixed.add(r.path)
        out.paths.set(r.path, r.hash)
        const mine = out.needs.get(n) ?? new Set<string>()
        mine.add(r.path)
        out.needs.set(n, mine)
        needers.set(r.path, [...(needers.get(r.path) ?? []), n.name])
      }
    }
    // honest nodes that need different versions of a path do not agree anyway: excuse none
    for (const path of mixed) {
      out.paths.delete(path)
      for (const [n, mine] of out.needs) { mine.delete(path); if (mine.size === 0) out.needs.delete(n) }
    }
    for (const [path, hash] of out.paths) {
      out.why.set(path, `${path} [${hash.slice(0, 12)}]: held only by ${(liarHeld.get(hash) ?? []).join(',')}, needed by ${(needers.get(path) ?? []).join(',')}`)
    }
    return out
  }

  private cacheKey (n: SimNode): string {
    return `${n.n.store.seq}:${n.lastChange}:${n.n.store.indexId}`
  }

  private async recordDigest (n: SimNode): Promise<string> {
    const key = this.cacheKey(n)
    const cached = this.digestCache.get(n)
    if (cached?.key === key) return cached.rec
    const h = createHash('sha256')
    for await (const r of n.n.store.all()) h.update(recordLine(r) + '\n')
    const rec = h.digest('hex')
    this.digestCache.set(n, { key, rec, diskKey: null, disk: null })
    return rec
  }

  /** The digest of a node's disk without the paths in `skip` (part of the cache key). */
  private async diskDigest (n: SimNode, skip: ReadonlySet<string> = new Set()): Promise<string> {
    const key = this.cacheKey(n)
    const diskKey = [...skip].sort().join('\0')
    const cached = this.digestCache.get(n)
    if (cached?.key === key && cached.diskKey === diskKey && cached.disk != null) return cached.disk
    const snap = await snapshotDisk(n)
    const h = createHash('sha256')
    for (const [p, e] of [...snap].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (skip.has(p)) continue
      h.update(`${p}\0${e.type === 'dir' ? 'dir' : e.digest}\n`)
    }
    const disk = h.digest('hex')
    if (cached?.key === key) { cached.diskKey = diskKey; cached.disk = disk } else this.digestCache.set(n, { key, rec: await this.recordDigest(n), diskKey, disk })
    return disk
  }

  /** Check, every `everyMs`, that no node holds content no write made (a lying peer). */
  startCorruptionSampler (everyMs = 500): void {
    this.sampler = setInterval(() => {
      if (this.sampling) return
      this.sampling = true
      void (async () => {
        const disks = await Promise.all(this.running().map(async (n) => ({ node: n, name: n.name, disk: await snapshotDisk(n).catch(() => new Map() as DiskSnapshot) })))
        // a read on the thread pool can see a file half way through a write by the
        // workload (which writes on the main thread): look again before calling it corrupt
        const suspects: Array<{ node: SimNode, name: string, path: string, digest: string }> = []
        for (const { node, name, disk } of disks) {
          for (const [path, e] of disk) if (e.type === 'file' && !this.ledger.digests.has(e.digest)) suspects.push({ node, name, path, digest: e.digest })
        }
        const confirmed = new Map<string, DiskSnapshot>()
        if (suspects.length > 0) {
          await new Promise((resolve) => setTimeout(resolve, 300))
          for (const s of suspects) {
            if (!s.node.running) continue
            const again = await readFile(join(s.node.dataDir, s.path)).then((b) => sha256(b), () => null)
            if (again !== s.digest) continue
            const m = confirmed.get(s.name) ?? new Map()
            m.set(s.path, { type: 'file', digest: s.digest })
            confirmed.set(s.name, m)
          }
        }
        checkContent(this.ledger, [...confirmed].map(([name, disk]) => ({ name, disk })), this.corruptionSamples)
      })().finally(() => { this.sampling = false })
    }, everyMs)
  }

  stopCorruptionSampler (): void {
    if (this.sampler != null) clearInterval(this.sampler)
    this.sampler = null
  }

  /** Write a file on `ahead`, wait until `behind` has it, overwrite it on `behind`. */
  async clockCheck (ahead: number, behind: number, timeoutMs = 30_000): Promise<ClockCheck> {
    const path = `clock/check-${this.opts.seed}.txt`
    const a = this.nodes[ahead]
    const b = this.nodes[behind]
    const first = this.workload.content(200, `clock check from n${ahead}`)
    withReplacesHeld(this.replaceLock, () => { this.workload.write(a, path, first, 'clock-ahead') })
    const aheadDigest = sha256(first)
    await waitFor(() => { const st = stateAt(b, path); return st?.type === 'file' && st.digest === aheadDigest }, timeoutMs, `n${behind} received ${path} from n${ahead}`)
    const rec = await b.n.store.get(path)
    const leadMs = (rec?.version.hlc.wall ?? 0) - (Date.now() + b.skewMs)
    const second = this.workload.content(300, `clock check from n${behind}`)
    withReplacesHeld(this.replaceLock, () => { this.workload.write(b, path, second, 'clock-behind') })
    this.event(`clock check: n${behind} (clock ${fmtSkew(b.skewMs)}) overwrote ${path} of n${ahead} (clock ${fmtSkew(a.skewMs)}), whose version is ${Math.round(leadMs / 1000)} s ahead of n${behind}'s clock`)
    return { path, ahead, behind, aheadDigest, behindDigest: sha256(second), leadMs }
  }

  /** Paths the last invariants() excused as liar-only (see LiarOnly), with why. */
  liarOnlyExcused: string[] = []

  /** Every invariant, on the running nodes. */
  async invariants (clock: ClockCheck[] = []): Promise<Record<string, InvariantResult>> {
    const live = this.running()
    const out: Record<string, InvariantResult> = {}
    // one view of what only a liar holds, for agreement and the checks below
    const lo = await this.liarOnly()
    this.liarOnlyExcused = [...lo.why.values()]
    if (lo.paths.size > 0) this.event(`excused ${lo.paths.size} liar-only path(s) on the honest nodes: ${this.liarOnlyExcused.join('; ')}`)
    const why = await this.agreement(lo)
    out.converged = { pass: why === '', checked: live.length, failures: why === '' ? [] : [why] }

    const stuck = new Check()
    for (const n of live) {
      const excused = lo.needs.get(n)
      const need = excused == null ? await n.n.store.needCount() : (await n.n.store.neededPaths()).filter((x) => !excused.has(x)).length
      const waiting = excused == null ? n.n.puller.waiting : waitingPaths(n.n.puller).filter((x) => !excused.has(x)).length
      const note = excused == null ? '' : ` (${excused.size} liar-only excused)`
      if (need === 0 && waiting === 0) stuck.ok()
      else stuck.fail(`${n.name}: needCount ${need}, puller.waiting ${waiting}${note}${n.n.puller.lastError != null ? ` (last error: ${n.n.puller.lastError})` : ''}`)
    }
    out.noStuckPulls = stuck.result()

    const disks = await Promise.all(live.map(async (n) => ({ name: n.name, disk: await snapshotDisk(n) })))
    const match = new Check()
    for (const n of live) await checkRecordsMatchDisk(n, match, lo.needs.get(n))
    out.recordsMatchDisk = match.result()

    out.noCorruptContent = mergeResults([checkContent(this.ledger, disks).result(), this.corruptionSamples.result()])

    // the write invariants on one node when all agree (and their disks are the same),
    // else on each
    const same = why === '' && lo.paths.size === 0
    const targets = same ? disks.slice(0, 1) : disks
    const per = targets.map(({ name, disk }) => checkWrites(this.ledger, disk, same ? 'all nodes' : name))
    for (const key of ['noLostWrites', 'causalOrder', 'noResurrection', 'finalStateExplained', 'noIdenticalConflictCopies'] as const) {
      out[key] = mergeResults(per.map((r) => r[key]))
    }

    if (clock.length > 0) {
      const c = new Check()
      for (const k of clock) {
        if (k.leadMs <= 0) c.fail(`clock check ${k.path}: the ahead version was not ahead of n${k.behind}'s clock (${k.leadMs} ms)`)
        for (const { name, disk } of disks) {
          const e = disk.get(k.path)
          const copies = [...disk.keys()].filter((p) => p.startsWith(k.path.replace(/\.txt$/, '.sync-conflict-')))
          if (e?.type === 'file' && e.digest === k.behindDigest && copies.length === 0) c.ok()
          else c.fail(`${name}: ${k.path} holds ${e?.type === 'file' ? (e.digest === k.aheadDigest ? 'the ahead node\'s older write' : e.digest.slice(0, 8)) : 'nothing'}${copies.length > 0 ? ` and conflict copies ${copies.join(', ')}` : ''}`)
        }
      }
      out.laterWriteWinsOverClockAhead = c.result()
    }
    return out
  }

  /** Record what every node's store does per path (for `explain`). */
  enableTrace (): void {
    for (const n of this.nodes) n.trace ??= []
  }

  /**
   * What the ledger and every node's store did at the paths named in `failures` (and
   * their conflict copies), in time order: the first thing to read when an invariant fails.
   */
  explain (failures: string[], maxPaths = 6, everything = false): string {
    if (everything) {
      const rows: Array<[number, string]> = []
      for (const n of this.nodes) for (const e of n.trace ?? []) rows.push([e.at, `${e.node.padEnd(3)} ${e.what} ${e.path} ${e.version} ${e.hash}`])
      for (const o of this.ledger.ops) rows.push([o.at, `LEDGER #${o.id} n${o.node} ${o.kind} ${o.label} ${o.path} ${o.digest.slice(0, 8)}`])
      rows.sort((a, b) => a[0] - b[0])
      return rows.map(([at, line]) => `${((at - this.t0) / 1000).toFixed(3)} ${line}`).join('\n') + '\n'
    }
    const paths = new Set<string>()
    for (const f of failures) {
      for (const m of f.matchAll(/[\w./-]+\.txt/g)) paths.add(conflictBase(conflictBase(m[0])))
    }
    const out: string[] = [`node ids: ${this.nodes.map((n) => `${n.name}=${n.node?.nodeId.slice(0, 4) ?? '?'}`).join(' ')}`]
    for (const p of [...paths].slice(0, maxPaths)) {
      out.push('', `=== ${p}`)
      const stem = p.replace(/\.txt$/, '')
      const mine = (q: string): boolean => q === p || (q.startsWith(`${stem}.sync-conflict-`))
      const rows: Array<[number, string]> = []
      for (const o of this.ledger.ops) {
        if (!mine(o.path)) continue
        const sup = o.supersededBy != null ? ` superseded by #${o.supersededBy} (${o.supersededHow ?? ''})` : o.ambiguous ? ' (ambiguous: twin, or moved away and back)' : ''
        rows.push([o.at, `LEDGER #${o.id} n${o.node} ${o.kind} ${o.label} ${o.path === p ? '' : o.path.slice(stem.length)} ${o.digest.slice(0, 8)}${sup}`])
      }
      for (const n of this.nodes) for (const e of n.trace ?? []) if (mine(e.path)) rows.push([e.at, `${e.node.padEnd(3)} ${e.what} ${e.path === p ? '' : e.path.slice(stem.length)} ${e.version} ${e.hash}`])
      for (const e of this.events) rows.push([Number(e.split('s ')[0]) * 1000 + this.t0, `EVENT ${e.slice(e.indexOf('s ') + 2)}`])
      rows.sort((a, b) => a[0] - b[0])
      for (const [at, line] of rows) out.push(`${((at - this.t0) / 1000).toFixed(3)} ${line}`)
    }
    return out.join('\n') + '\n'
  }

  // ---- figures ----------------------------------------------------------------------------

  counters (): NodeCounters[] {
    return this.nodes.map((n) => n.counters())
  }

  snapshot (): { at: number, traffic: Traffic, perNode: NodeCounters[], elu: EventLoopUtilization } {
    return { at: performance.now(), traffic: this.net.traffic(), perNode: this.counters(), elu: performance.eventLoopUtilization() }
  }

  window (from: ReturnType<Sim['snapshot']>, to: ReturnType<Sim['snapshot']>): WindowStats {
    const perNode = to.perNode.map((c, i) => subCounters(c, from.perNode[i]))
    return {
      ms: to.at - from.at,
      traffic: trafficDelta(from.traffic, to.traffic),
      perNode,
      counters: perNode.reduce((a, b) => addCounters(a, b), zeroCounters()),
      elu: performance.eventLoopUtilization(to.elu, from.elu).utilization
    }
  }

  async cleanup (): Promise<void> {
    this.stopCorruptionSampler()
    const t = performance.now()
    try {
      await this.mesh?.cleanup()
    } finally {
      this.net.close()
    }
    const ms = performance.now() - t
    if (ms > 5000) this.log(`cleanup took ${Math.round(ms)} ms`)
  }
}

function subCounters (a: NodeCounters, b: NodeCounters): NodeCounters {
  const out = zeroCounters()
  for (const k of Object.keys(out) as Array<keyof NodeCounters>) out[k] = a[k] - b[k]
  return out
}

function fmtSkew (ms: number): string {
  return ms === 0 ? '+0' : `${ms > 0 ? '+' : '-'}${Math.round(Math.abs(ms) / 60_000)} min`
}

function groupsOf (group: number[]): number[][] {
  const out = new Map<number, number[]>()
  group.forEach((g, i) => { const l = out.get(g) ?? []; l.push(i); out.set(g, l) })
  return [...out.values()]
}

/** A live file record whose content this node's disk holds. */
function holds (r: StoredRecord): boolean {
  return !r.deleted && r.type === 'file' && r.have && r.hash !== '' && r.disk != null && r.disk.hash === r.hash
}

/** The paths a puller has queued or backing off (its private sets: the node has no accessor). */
function waitingPaths (p: SyncNode['puller']): string[] {
  const q = p as unknown as { queue?: Set<string>, deletes?: Set<string>, retry?: Map<string, unknown> }
  if (!(q.queue instanceof Set) || !(q.deletes instanceof Set) || !(q.retry instanceof Map)) {
    throw new Error('the puller no longer has queue, deletes and retry: update waitingPaths() in test/sim/sim.ts')
  }
  return [...new Set([...q.queue, ...q.deletes, ...q.retry.keys()])]
}

export function recordLine (r: StoredRecord): string {
  const vv = Object.entries(r.version.vv).sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join(',')
  return `${r.path}\0${r.deleted ? 'deleted' : r.type}:${r.mode}:${r.hash}:${vv}:${r.version.hlc.wall}.${r.version.hlc.logical}:${r.version.node}`
}

/** path -> content digest or 'dir' of a node's folder. */
export async function snapshotDisk (n: SimNode): Promise<DiskSnapshot> {
  const out: DiskSnapshot = new Map()
  const walk = async (rel: string): Promise<void> => {
    let entries
    try { entries = await readdir(rel === '' ? n.dataDir : join(n.dataDir, rel), { withFileTypes: true }) } catch { return }
    for (const e of entries) {
      const p = rel === '' ? e.name : `${rel}/${e.name}`
      if (p === RESERVED) continue
      if (e.isDirectory()) { out.set(p, { type: 'dir' }); await walk(p) } else if (e.isFile()) {
        try { out.set(p, { type: 'file', digest: sha256(await readFile(join(n.dataDir, p))) }) } catch {}
      }
    }
  }
  await walk('')
  return out
}

/**
 * Each live record is on the node's disk with its content, and each file has a record.
 * `excused`: liar-only paths this (honest) node needs and cannot get, not checked (a
 * file on disk at such a path still needs a record).
 */
async function checkRecordsMatchDisk (n: SimNode, into: Check, excused?: ReadonlySet<string>): Promise<void> {
  const seen = new Set<string>()
  for await (const r of n.n.store.all()) {
    if (r.deleted || r.type === 'meta') continue
    seen.add(r.path)
    if (excused?.has(r.path) === true) continue
    const abs = join(n.dataDir, r.path)
    const st = await lstat(abs).catch(() => null)
    if (st == null) { into.fail(`${n.name}: ${r.path} has a record but is not on disk`); continue }
    if (r.type === 'dir') {
      if (st.isDirectory()) into.ok()
      else into.fail(`${n.name}: ${r.path} should be a directory`)
      continue
    }
    if (r.type === 'file') {
      if (!st.isFile()) { into.fail(`${n.name}: ${r.path} should be a file`); continue }
      const h = await hashFile(abs).catch(() => null)
      if (h?.hash === r.hash) into.ok()
      else into.fail(`${n.name}: ${r.path} on disk does not match its record`)
      continue
    }
    into.ok()
  }
  const disk = await snapshotDisk(n)
  for (const p of disk.keys()) {
    if (!seen.has(p)) into.fail(`${n.name}: ${p} is on disk without a live record`)
  }
}
