/**
 * `npm run sim -- --nodes N --seed S [--topology T] [--faults LIST] [--ops K] [--json]`
 *
 * Runs one scenario with real nodes in this process (test/sim/scenario.ts) and prints its
 * figures; with --json the last line of output is the report as one JSON object. Exits 0
 * only when every invariant holds. The seed is printed first: the same seed gives the same
 * topology, workload and fault schedule.
 */
import { parseArgs } from 'node:util'
import { freshSeed } from './prng.js'
import { allPass, FAULTS, runScenario, type FaultName, type SimReport } from './scenario.js'
import { TOPOLOGIES, type TopologyName } from './topology.js'

const USAGE = `usage: npm run sim -- --nodes N [--seed S] [--topology ${TOPOLOGIES.join('|')}] [--degree K]
                      [--faults ${FAULTS.join(',')}|all|none] [--ops K] [--interval MS]
                      [--timeout MS] [--idle MS] [--catchup MS] [--rescan MS] [--big-rate F]
                      [--workload mixed|creates] [--probes K]
                      [--trace FILE] [--verbose] [--json]`

function fail (msg: string): never {
  process.stderr.write(`sim: ${msg}\n${USAGE}\n`)
  process.exit(2)
}

function int (name: string, v: string | undefined, min: number): number | undefined {
  if (v == null) return undefined
  const x = Number(v)
  if (!Number.isInteger(x) || x < min) fail(`--${name} must be an integer >= ${min}`)
  return x
}

async function main (): Promise<void> {
  let args
  try {
    args = parseArgs({
      options: {
        nodes: { type: 'string' },
        seed: { type: 'string' },
        topology: { type: 'string' },
        degree: { type: 'string' },
        faults: { type: 'string' },
        ops: { type: 'string' },
        interval: { type: 'string' },
        timeout: { type: 'string' },
        idle: { type: 'string' },
        catchup: { type: 'string' },
        'big-rate': { type: 'string' },
        workload: { type: 'string' },
        rescan: { type: 'string' },
        probes: { type: 'string' },
        verbose: { type: 'boolean' },
        trace: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      },
      strict: true
    }).values
  } catch (err) {
    fail((err as Error).message)
  }
  if (args.help === true) { process.stdout.write(USAGE + '\n'); return }
  const nodes = int('nodes', args.nodes, 1) ?? fail('--nodes is required')
  const seed = int('seed', args.seed, 0) ?? freshSeed()
  if (seed > 0xffffffff) fail('--seed must fit in 32 bits')
  const topology = (args.topology ?? 'random') as TopologyName
  if (!TOPOLOGIES.includes(topology)) fail(`unknown topology ${topology}`)
  let faults: FaultName[] = []
  if (args.faults != null && args.faults !== 'none') {
    faults = args.faults === 'all' ? FAULTS.filter((f) => f !== 'flap') : args.faults.split(',').map((f) => f.trim()).filter((f) => f !== '') as FaultName[]
    for (const f of faults) if (!FAULTS.includes(f)) fail(`unknown fault ${f}`)
  }
  const mode = (args.workload ?? 'mixed') as 'mixed' | 'creates'
  if (mode !== 'mixed' && mode !== 'creates') fail('--workload must be mixed or creates')
  const bigRate = args['big-rate'] == null ? undefined : Number(args['big-rate'])
  if (bigRate != null && !(bigRate >= 0 && bigRate <= 100)) fail('--big-rate must be a weight from 0 to 100')
  const log = (line: string): void => { process.stdout.write(line + '\n') }
  log(`sim: seed ${seed} (repeat with --seed ${seed}), ${nodes} nodes, topology ${topology}, faults ${faults.length > 0 ? faults.join(',') : 'none'}`)

  let report: SimReport
  try {
    report = await runScenario({
      nodes,
      seed,
      topology,
      degree: int('degree', args.degree, 1),
      faults,
      ops: int('ops', args.ops, 1),
      opIntervalMs: int('interval', args.interval, 0),
      convergeTimeoutMs: int('timeout', args.timeout, 1),
      idleMs: int('idle', args.idle, 0) ?? 3000,
      catchUpIntervalMs: int('catchup', args.catchup, 1),
      workload: { mode, ...(bigRate != null ? { weights: { big: bigRate } } : {}) },
      rescanIntervalMs: int('rescan', args.rescan, 1),
      probes: int('probes', args.probes, 0),
      log,
      nodeLogs: args.verbose === true,
      traceFile: args.trace,
      catchUncaught: true
    })
  } catch (err) {
    process.stderr.write(`sim: seed ${seed}: ${(err as Error).stack ?? String(err)}\n`)
    if (args.json === true) process.stdout.write(JSON.stringify({ converged: false, nodes, seed, error: (err as Error).message, invariants: {} }) + '\n')
    process.exit(1)
  }
  const ok = allPass(report)
  if (args.json === true) {
    process.stdout.write(JSON.stringify(report) + '\n')
  } else {
    const { events: _events, failures, invariants, ...figures } = report
    for (const [k, v] of Object.entries(figures)) log(`  ${k.padEnd(30)} ${Array.isArray(v) ? v.join(',') : String(v)}`)
    for (const [k, v] of Object.entries(invariants)) {
      log(`  ${v === 'pass' ? 'PASS' : 'FAIL'} ${k}`)
      for (const f of failures[k] ?? []) log(`       ${f}`)
    }
    log(`sim: seed ${seed}: ${ok ? 'every invariant holds' : 'INVARIANTS FAILED'}`)
  }
  process.exitCode = ok ? 0 : 1
}

void main().then(() => {
  // libp2p leaves a few unref'd timers; the run is over
  setTimeout(() => process.exit(process.exitCode ?? 0), 200).unref()
}, (err: Error) => {
  process.stderr.write(`sim: ${err.stack ?? err.message}\n`)
  process.exit(1)
})
