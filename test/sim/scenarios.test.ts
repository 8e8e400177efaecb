/**
 * Network simulations: real nodes in this process over TCP on 127.0.0.1, faults injected,
 * invariants checked once the mesh is quiet (test/sim/sim.ts). Every scenario has a fixed
 * seed; a failure names it, and `npm run sim -- ... --seed S --trace FILE` replays the same
 * topology, workload and fault schedule with a trace of what each node did.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { runScenario, type ScenarioOptions, type SimReport } from './scenario.js'
import { Sim } from './sim.js'
import type { InvariantResult } from './invariants.js'

let sim: Sim | null = null
afterEach(async () => {
  await sim?.cleanup()
  sim = null
})

const log = process.env.SIM_LOG === '1' ? (line: string) => { process.stdout.write(line + '\n') } : undefined

function replay (o: ScenarioOptions): string {
  return `npm run sim -- --nodes ${o.nodes} --seed ${o.seed} --topology ${o.topology ?? 'random'}${o.faults != null && o.faults.length > 0 ? ` --faults ${o.faults.join(',')}` : ''}${o.ops != null ? ` --ops ${o.ops}` : ''} --trace sim-trace.txt`
}

/** Fail with everything needed to reproduce: the seed, the command, the broken invariants. */
function expectAllHold (r: SimReport, o: ScenarioOptions, knownOpen: string[] = []): void {
  const failures = Object.fromEntries(Object.entries(r.failures).filter(([k]) => !knownOpen.includes(k)))
  const summary = `seed ${r.seed} (replay: ${replay(o)}): converged ${String(r.converged)} after ${r.convergeMs ?? '-'} ms; ` +
    JSON.stringify(failures, null, 1)
  expect(r.converged && Object.entries(r.invariants).every(([k, v]) => v === 'pass' || knownOpen.includes(k)), summary).toBe(true)
}

/**
 * Invariants a scenario may fail without failing the suite (reported in the output): none
 * now. noIdenticalConflictCopies was here until every holder of the winning content could
 * drop a redundant copy with the same tombstone (Store.dropRedundantCopies), not only the
 * winner's writer, which may be crashed or cut off when the copy appears.
 */
const KNOWN_OPEN: string[] = []

async function scenario (o: ScenarioOptions, knownOpen: string[] = KNOWN_OPEN): Promise<SimReport> {
  // a trace of what every node did at the failing paths, printed when an invariant fails:
  // the workload depends on timing, so a replay of the seed is not always the same run
  const traceFile = join(tmpdir(), `syncmesh-sim-trace-${o.seed}-${process.pid}.txt`)
  const r = await runScenario({ log, ...o, traceFile })
  const trace = await readFile(traceFile, 'utf8').catch(() => null)
  await rm(traceFile, { force: true })
  if (trace != null && Object.keys(r.failures).some((k) => !knownOpen.includes(k))) {
    const lines = trace.split('\n')
    process.stdout.write(`[sim] seed ${o.seed}: trace of the failing paths (last 400 of ${lines.length} lines):\n${lines.slice(-400).join('\n')}\n`)
  }
  for (const name of knownOpen) {
    if (r.failures[name] != null) process.stdout.write(`[sim] seed ${o.seed}: KNOWN OPEN BUG, invariant ${name} failed: ${JSON.stringify(r.failures[name])}\n`)
  }
  process.stdout.write(`[sim] seed ${o.seed}: ${o.nodes} nodes ${o.topology ?? 'random'} ${(o.faults ?? []).join(',')}: ` +
    `converged in ${r.convergeMs ?? '-'} ms after the last write, healed in ${r.healMs ?? '-'} ms, ` +
    `${r.msgsPerNodePerChange} msgs and ${Math.round(r.bytesPerNodePerChange)} bytes per node per change, wall ${r.wallMs} ms` +
    `${r.liarOnlyPaths > 0 ? `, ${r.liarOnlyPaths} liar-only paths excused` : ''}\n`)
  expectAllHold(r, o, knownOpen)
  return r
}

function failuresOf (inv: Record<string, InvariantResult>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(inv).filter(([, r]) => !r.pass).map(([k, r]) => [k, r.failures]))
}

describe('network simulations', () => {
  it('10 nodes, random topology: random workload under partitions, crashes, lost and delayed gossip and a slow peer', async () => {
    const r = await scenario({ nodes: 10, seed: 1001, topology: 'random', faults: ['partition', 'crash', 'drop', 'delay', 'slow'], ops: 150 })
    expect(r.crashes).toBeGreaterThan(0)
    expect(r.partitions).toBeGreaterThan(0)
    expect(r.droppedAnnouncements).toBeGreaterThan(0)
  }, 150_000)

  it('two sites of 5 nodes joined by one link that flaps', async () => {
    const r = await scenario({ nodes: 10, seed: 1002, topology: 'sites', faults: ['flap'], ops: 150 })
    expect(r.partitions).toBeGreaterThanOrEqual(3)
    expect(r.healMs).not.toBeNull()
  }, 150_000)

  it('a node offline during 1,000 changes catches up when it comes back', async () => {
    const seed = 1003
    sim = await Sim.create({ nodes: 5, seed, topology: 'random', degree: 3, workload: { names: 12 }, log })
    // what every node's store does per path, printed for the paths of a failed invariant
    sim.enableTrace()
    await sim.startAll()
    const offline = sim.nodes[4]
    await sim.crash(4)
    for (let i = 0; i < 1000; i++) {
      sim.op()
      if (i % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 20))
    }
    expect(sim.ledger.operations).toBe(1000)
    const others = await sim.waitQuiet(90_000)
    expect(others.converged, `seed ${seed}: the online nodes did not agree: ${others.why}`).toBe(true)
    const caughtUpBefore = offline.counters().catchUpRecords
    await sim.restart(4)
    const back = performance.now()
    const q = await sim.waitQuiet(90_000)
    const inv = await sim.invariants()
    for (const name of KNOWN_OPEN) if (inv[name]?.pass === false) process.stdout.write(`[sim] seed ${seed}: KNOWN OPEN BUG, invariant ${name} failed: ${JSON.stringify(inv[name].failures)}\n`)
    const failing = Object.entries(inv).filter(([k, r]) => !r.pass && !KNOWN_OPEN.includes(k)).flatMap(([, r]) => r.failures)
    if (failing.length > 0) process.stdout.write(`[sim] seed ${seed}: what every node did at the failing paths:\n${sim.explain(failing)}`)
    expect(q.converged && Object.entries(inv).every(([k, r]) => r.pass || KNOWN_OPEN.includes(k)), `seed ${seed}: ${q.why} ${JSON.stringify(failuresOf(inv), null, 1)}`).toBe(true)
    // it learned the changes through index catch-up (it heard none of the gossip)
    expect(offline.counters().catchUpRecords - caughtUpBefore).toBeGreaterThan(0)
    process.stdout.write(`[sim] seed ${seed}: the node that missed 1000 changes agreed ${Math.round(q.agreedAt - back)} ms after it restarted\n`)
  }, 180_000)

  it('clocks 10 minutes ahead and behind: a causally later write from a slow clock wins everywhere', async () => {
    const r = await scenario({ nodes: 6, seed: 1004, topology: 'random', faults: ['clock'], ops: 100 })
    // the explicit check: a node 10 min behind overwrote a file written by a node 10 min
    // ahead after receiving it, and its write is what every node holds, without a conflict copy
    expect(r.invariants.laterWriteWinsOverClockAhead).toBe('pass')
  }, 120_000)

  it('a lying peer serves corrupt blocks: they are refused and nothing corrupt is ever installed', async () => {
    const r = await scenario({ nodes: 6, seed: 1005, topology: 'random', faults: ['liar'], ops: 100, workload: { weights: { big: 20 } } })
    expect(r.badBlocks).toBeGreaterThan(0)
    expect(r.invariants.noCorruptContent).toBe('pass')
  }, 120_000)
})
