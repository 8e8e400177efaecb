/**
 * A whole scenario from a seed: topology, a random workload, a fault schedule, then heal
 * everything, wait for quiet, check the invariants and report the figures. Used by the
 * CLI (test/sim/run.ts) and the test suite.
 */
import { writeFile } from 'node:fs/promises'
import { performance } from 'node:perf_hooks'
import { Rng } from './prng.js'
import { connected, type TopologyName } from './topology.js'
import { Sim, type ClockCheck, type SimOptions } from './sim.js'
import { waitFor } from './harness.js'
import type { WorkloadOptions } from './workload.js'

export type FaultName = 'partition' | 'flap' | 'crash' | 'drop' | 'delay' | 'slow' | 'liar' | 'clock'
export const FAULTS: readonly FaultName[] = ['partition', 'flap', 'crash', 'drop', 'delay', 'slow', 'liar', 'clock']

export const TEN_MINUTES = 10 * 60_000

export interface ScenarioOptions {
  nodes: number
  seed: number
  topology?: TopologyName
  degree?: number
  faults?: FaultName[]
  /** Workload operations. @default 20 per node, at least 100 */
  ops?: number
  /** Pause between operations (the workload paces itself). @default 20 */
  opIntervalMs?: number
  /** Give up waiting for agreement after this long. @default 60 s + 1 s per node */
  convergeTimeoutMs?: number
  /** Measure the idle traffic for this long before the workload. @default 0 */
  idleMs?: number
  catchUpIntervalMs?: number
  rescanIntervalMs?: number
  workload?: WorkloadOptions
  log?: (line: string) => void
  nodeLogs?: boolean
  /** Trace every store change; when an invariant fails, write what happened at those paths here. */
  traceFile?: string
  /**
   * Catch uncaught exceptions and unhandled rejections (a node bug that would kill a
   * node's process) and report them as the invariant noUncaughtErrors instead of dying.
   */
  catchUncaught?: boolean
  /**
   * After agreement, this many single writes on an idle mesh, each timed from the write to
   * agreement: the dissemination latency without the load of the workload. @default 0
   */
  probes?: number
}

export interface SimReport {
  converged: boolean
  nodes: number
  seed: number
  topology: string
  links: number
  faults: FaultName[]
  /** Workload operations (each a change on one node). */
  changes: number
  /** Records the nodes wrote themselves (a rename or rm -r writes several). */
  recordChanges: number
  /** From the last write to agreement (null when there was none). */
  convergeMs: number | null
  /** From the last heal to agreement (null without partitions). */
  healMs: number | null
  /** How long the harness took to notice agreement after it happened. */
  detectMs: number | null
  workloadMs: number
  wallMs: number
  /** Gossip messages received per node per change (duplicates included). */
  msgsPerNodePerChange: number
  /** Bytes received per node per change, all protocols, as counted on the TCP sockets. */
  bytesPerNodePerChange: number
  /** The same with the idle background (catch-up polls, heartbeats, pings) taken out. */
  netBytesPerNodePerChange: number | null
  gossipRpcsPerNodePerChange: number
  gossipBytesPerNodePerChange: number
  catchUpBytesPerNodePerChange: number
  blockBytesPerNodePerChange: number
  /** Single writes on the idle mesh after the run: write to agreement, each (ms). */
  probeMs: number[]
  probeMedianMs: number | null
  /** The busiest node's received bytes per change. */
  maxNodeBytesPerChange: number
  idleBytesPerNodePerSec: number | null
  duplicateBlockFetches: number
  duplicateBlockBytes: number
  badBlocks: number
  /**
   * Paths the invariants excused on the honest nodes because only a liar holds their
   * content (Sim.liarOnly(): e.g. a conflict copy the liar made of a version nobody else
   * kept); 0 without a liar.
   */
  liarOnlyPaths: number
  droppedAnnouncements: number
  crashes: number
  partitions: number
  peakRssMb: number
  /** Event loop busy fraction during the run (1 = the process was CPU bound). */
  eventLoopUtilization: number
  invariants: Record<string, 'pass' | 'fail'>
  failures: Record<string, string[]>
  events: string[]
}

type Step = () => Promise<void> | void

export async function runScenario (o: ScenarioOptions): Promise<SimReport> {
  const wall0 = performance.now()
  const faults = new Set(o.faults ?? [])
  const ops = o.ops ?? Math.max(100, 20 * o.nodes)
  const interval = o.opIntervalMs ?? 20
  const topology = o.topology ?? 'random'
  const n = o.nodes

  // clock offsets are part of a node's start options, so they come first
  const simOpts: SimOptions = {
    nodes: n,
    seed: o.seed,
    topology,
    degree: o.degree,
    catchUpIntervalMs: o.catchUpIntervalMs,
    rescanIntervalMs: o.rescanIntervalMs,
    workload: o.workload,
    log: o.log,
    nodeLogs: o.nodeLogs
  }
  if (faults.has('clock')) {
    const order = new Rng(o.seed).fork('clock').shuffle(Array.from({ length: n }, (_, i) => i))
    const skews = new Array<number>(n).fill(0)
    order.forEach((node, k) => { skews[node] = k % 3 === 0 ? TEN_MINUTES : k % 3 === 1 ? -TEN_MINUTES : 0 })
    simOpts.skews = skews
  }
  const uncaught: string[] = []
  const onUncaught = (err: unknown): void => {
    const e = err instanceof Error ? err : new Error(String(err))
    uncaught.push(`${e.name}: ${e.message} ${(e.stack ?? '').split('\n').slice(1, 4).map((l) => l.trim()).join(' | ')}`)
    o.log?.(`UNCAUGHT ${e.stack ?? e.message}`)
  }
  if (o.catchUncaught === true) {
    process.on('uncaughtException', onUncaught)
    process.on('unhandledRejection', onUncaught)
  }
  const sim = await Sim.create(simOpts)
  try {
    const rng = sim.faultRng
    const schedule = new Map<number, Step[]>()
    const at = (i: number, step: Step): void => {
      const k = Math.max(0, Math.min(ops - 1, Math.round(i)))
      const l = schedule.get(k) ?? []
      l.push(step)
      schedule.set(k, l)
    }
    const down = new Set<number>()

    // fault knobs that hold for the whole run
    if (faults.has('drop')) for (const node of sim.nodes) node.faults.dropRate = 0.25
    if (faults.has('delay')) for (const i of rng.shuffle(sim.nodes.map((_, k) => k)).slice(0, Math.max(1, Math.floor(n / 3)))) sim.nodes[i].faults.gossipDelayMs = 250
    if (faults.has('slow')) sim.nodes[rng.int(0, n - 1)].faults.slowMs = 40
    let liar = -1
    if (faults.has('liar')) {
      // a liar whose absence leaves the honest nodes connected (they must still get content)
      const candidates = rng.shuffle(sim.nodes.map((_, k) => k)).filter((k) => connected(n, sim.topology.edges, new Set(sim.nodes.map((_, j) => j).filter((j) => j !== k))))
      liar = candidates[0] ?? -1
      if (liar >= 0) {
        sim.nodes[liar].faults.liar = true
        // its own writes could never reach anyone: it lies about every block it serves
        sim.readOnly.add(liar)
      }
    }

    // partitions: a split of the nodes (or the link between the sites), later healed
    if (faults.has('partition')) {
      const episodes = ops >= 60 ? 2 : 1
      for (let e = 0; e < episodes; e++) {
        const start = ops * (0.1 + (0.45 * e) + rng.next() * 0.1)
        const len = ops * (0.12 + rng.next() * 0.12)
        if (sim.topology.bridge != null) {
          const [a, b] = sim.topology.bridge
          at(start, async () => { await sim.cutLink(a, b) })
          at(start + len, () => { sim.restoreLink(a, b) })
        } else {
          const size = rng.int(1, Math.max(1, Math.floor(n / 2)))
          const side = new Set(rng.shuffle(sim.nodes.map((_, k) => k)).slice(0, size))
          at(start, async () => { await sim.partition(sim.nodes.map((_, k) => (side.has(k) ? 1 : 0))) })
          at(start + len, () => { sim.heal() })
        }
      }
    }
    // a flapping link: the bridge between the sites, or a random link
    if (faults.has('flap')) {
      const [a, b] = sim.topology.bridge ?? rng.pick(sim.topology.edges)
      const flaps = 6
      const step = ops / (flaps + 1)
      for (let f = 0; f < flaps; f++) {
        const s = step * (f + 0.5) + rng.next() * step * 0.2
        at(s, async () => { await sim.cutLink(a, b) })
        at(s + step * (0.3 + rng.next() * 0.3), () => { sim.restoreLink(a, b) })
      }
    }
    // crashes: a node dies without a clean stop and later restarts from its home
    if (faults.has('crash')) {
      const episodes = Math.max(1, Math.min(4, Math.round(n / 4)))
      for (let e = 0; e < episodes; e++) {
        const start = ops * (0.05 + rng.next() * 0.7)
        const len = ops * (0.05 + rng.next() * 0.15)
        const victimSeed = rng.u32()
        let victim = -1
        at(start, async () => {
          const up = sim.nodes.map((_, k) => k).filter((k) => sim.nodes[k].running && k !== liar)
          if (down.size + 1 > Math.floor((n - 1) / 3) || up.length === 0) return
          victim = up[victimSeed % up.length]
          down.add(victim)
          await sim.crash(victim)
        })
        at(start + len, async () => {
          if (victim < 0) return
          down.delete(victim)
          await sim.restart(victim)
        })
      }
    }

    if (o.traceFile != null) sim.enableTrace()
    await sim.startAll()
    if (liar >= 0) {
      sim.log(`n${liar} serves corrupt blocks`)
      sim.startCorruptionSampler()
    }
    let idleBytesPerNodePerSec: number | null = null
    if ((o.idleMs ?? 0) > 0) {
      const a = sim.snapshot()
      await new Promise((resolve) => setTimeout(resolve, o.idleMs))
      const w = sim.window(a, sim.snapshot())
      idleBytesPerNodePerSec = w.traffic.total / n / (w.ms / 1000)
      sim.log(`idle: ${Math.round(idleBytesPerNodePerSec)} bytes/node/s`)
    }

    const before = sim.snapshot()
    const work0 = performance.now()
    for (let i = 0; i < ops; i++) {
      for (const step of schedule.get(i) ?? []) await step()
      sim.op()
      if ((i + 1) % Math.max(1, Math.floor(ops / 10)) === 0) sim.log(`${i + 1}/${ops} operations`)
      if (interval > 0) await new Promise((resolve) => setTimeout(resolve, interval))
    }
    // steps scheduled past the end (heals, restarts), then heal and restart everything
    for (const [k, steps] of [...schedule].sort(([a], [b]) => a - b)) if (k >= ops) for (const s of steps) await s()
    sim.heal()
    for (const node of sim.nodes) if (!node.running) await sim.restart(node.index)
    const workloadMs = performance.now() - work0

    const clock: ClockCheck[] = []
    if (faults.has('clock')) {
      // both write the check file: not the liar, whose writes never reach anyone
      const ahead = sim.nodes.findIndex((x) => x.skewMs > 0 && !x.faults.liar)
      const behind = sim.nodes.findIndex((x) => x.skewMs < 0 && !x.faults.liar)
      if (ahead >= 0 && behind >= 0) clock.push(await sim.clockCheck(ahead, behind))
    }

    const timeout = o.convergeTimeoutMs ?? 60_000 + n * 1_000
    sim.log('waiting for agreement')
    const quiet = await sim.waitQuiet(timeout)
    const after = sim.snapshot()
    sim.stopCorruptionSampler()
    if (quiet.converged) sim.log(`agreement ${Math.round(quiet.agreedAt - sim.ledger.lastWriteAt)} ms after the last write`)
    else sim.log(`no agreement after ${timeout} ms: ${quiet.why}`)

    const opsDone = sim.ledger.operations
    const lastWriteAt = sim.ledger.lastWriteAt
    const probeMs: number[] = []
    for (let i = 0; i < (o.probes ?? 0) && quiet.converged; i++) {
      await new Promise((resolve) => setTimeout(resolve, 500))
      sim.op()
      const write = sim.ledger.ops[sim.ledger.ops.length - 1]
      const writer = sim.nodes[write.node]
      // agreement counts once the writer itself has recorded the write
      await waitFor(async () => (await writer.n.store.get(write.path)) != null, 30_000, 'the writer recorded its write', 10)
      const p = await sim.waitQuiet(60_000)
      if (!p.converged) break
      probeMs.push(Math.round(p.agreedAt - write.at))
    }
    if (probeMs.length > 0) sim.log(`single writes on the idle mesh agreed after ${probeMs.join(', ')} ms`)

    const inv = await sim.invariants(clock)
    if (o.catchUncaught === true) inv.noUncaughtErrors = { pass: uncaught.length === 0, checked: 1, failures: uncaught.slice(0, 20) }
    const failed = Object.values(inv).filter((r) => !r.pass).flatMap((r) => r.failures)
    if (o.traceFile != null && failed.length > 0) {
      await writeFile(o.traceFile, sim.events.join('\n') + '\n\n' + sim.explain(failed) + (process.env.SIM_FULL_TRACE === '1' ? '\n=== everything\n' + sim.explain([], 0, true) : ''))
      sim.log(`what happened at the failing paths: ${o.traceFile}`)
    }
    const w = sim.window(before, after)
    const changes = Math.max(1, opsDone + clock.length * 2)
    const perNodeChange = (x: number): number => round(x / n / changes)
    const report: SimReport = {
      converged: quiet.converged,
      nodes: n,
      seed: o.seed,
      topology,
      links: sim.topology.edges.length,
      faults: [...faults],
      changes,
      recordChanges: w.counters.localRecords,
      convergeMs: quiet.converged ? Math.round(quiet.agreedAt - lastWriteAt) : null,
      healMs: quiet.converged && sim.lastHealAt != null ? Math.round(quiet.agreedAt - sim.lastHealAt) : null,
      detectMs: quiet.converged ? Math.round(quiet.detectedAt - quiet.agreedAt) : null,
      workloadMs: Math.round(workloadMs),
      wallMs: 0,
      msgsPerNodePerChange: perNodeChange(w.counters.gossipMsgs),
      bytesPerNodePerChange: perNodeChange(w.traffic.total),
      netBytesPerNodePerChange: idleBytesPerNodePerSec == null ? null : perNodeChange(Math.max(0, w.traffic.total - idleBytesPerNodePerSec * n * (w.ms / 1000))),
      gossipRpcsPerNodePerChange: perNodeChange(w.counters.gossipRpcs),
      gossipBytesPerNodePerChange: perNodeChange(w.counters.gossipMsgBytes),
      catchUpBytesPerNodePerChange: perNodeChange(w.counters.catchUpBytes),
      blockBytesPerNodePerChange: perNodeChange(w.counters.bytesFetched),
      probeMs,
      probeMedianMs: probeMs.length === 0 ? null : [...probeMs].sort((a, b) => a - b)[Math.floor(probeMs.length / 2)],
      maxNodeBytesPerChange: round(Math.max(...w.traffic.received) / changes),
      idleBytesPerNodePerSec: idleBytesPerNodePerSec == null ? null : Math.round(idleBytesPerNodePerSec),
      duplicateBlockFetches: w.counters.duplicateBlockFetches,
      duplicateBlockBytes: w.counters.duplicateBlockBytes,
      badBlocks: w.counters.badBlocks,
      liarOnlyPaths: sim.liarOnlyExcused.length,
      droppedAnnouncements: w.counters.droppedBySim,
      crashes: sim.crashes,
      partitions: sim.partitions,
      peakRssMb: Math.round(process.resourceUsage().maxRSS / 1024),
      eventLoopUtilization: round(w.elu),
      invariants: Object.fromEntries(Object.entries(inv).map(([k, r]) => [k, r.pass ? 'pass' : 'fail'])),
      failures: Object.fromEntries(Object.entries(inv).filter(([, r]) => !r.pass).map(([k, r]) => [k, r.failures])),
      events: sim.events
    }
    report.wallMs = Math.round(performance.now() - wall0)
    return report
  } finally {
    await sim.cleanup()
    process.off('uncaughtException', onUncaught)
    process.off('unhandledRejection', onUncaught)
  }
}

export function allPass (r: SimReport): boolean {
  return r.converged && Object.values(r.invariants).every((v) => v === 'pass')
}

function round (x: number): number {
  return Math.round(x * 100) / 100
}
