import { parseArgs, type ParseArgsConfig } from 'node:util'
import { initHome, loadHome, encodeInvite, HomeError } from '../node/home.js'
import { control, ControlServer, ControlError } from '../node/control.js'
import { Acl, checkPeerId } from '../node/acl.js'
import { SyncNode, repairMarker, type StatusReport } from '../node/node.js'
import { createLogger, isLevel, LEVELS, loggerFn } from '../node/log.js'
import { mkdir, rename, writeFile } from 'node:fs/promises'
import { resolve as resolvePath } from 'node:path'
import type { SetView } from '../relay/sets.js'
import { watchStatus } from './watch.js'
import { parseMetricsAddress } from '../node/metrics.js'
import { doctor } from './doctor.js'
import { tuneGc } from '../node/gc.js'

const USAGE = `usage: syncmesh <command> [options]

commands:
  init   --home DIR [--key FILE]                     make a node home (new mesh, or join the mesh of FILE)
  start  --home DIR [--listen MA]... [--join MA]...  run the node in the foreground until SIGINT/SIGTERM
         [--mount MOUNTPOINT]                        serve the data folder at MOUNTPOINT (FUSE) and record writes at once
         [--metrics HOST:PORT]                       serve Prometheus metrics at http://HOST:PORT/metrics
         [--log-level debug|info|warn|error]         logs on stderr: one line per event (JSON unless stderr is a terminal)
         [--api HOST:PORT]                           serve the HTTP upload API (bearer token: HOME/api.token)
         [--relay --backend folder:DIR|drive]        upload committed sets to cloud storage
  commit --home DIR --set NAME PATH...               commit files (or directories) of the data folder as set NAME
  join   --home DIR MULTIADDR                        make the running node dial a peer and remember it
  status --home DIR [--json]                         what the running node is doing
  status --home DIR --watch                          the same, redrawn every second until Ctrl-C
  doctor --home DIR                                  check FUSE, the mount, key file modes, disk space, ports, peers' clocks
  allow  --home DIR PEERID                           only allow-listed peers may connect (once the list is not empty)
  deny   --home DIR PEERID                           disconnect a peer and refuse it from now on
  invite --home DIR                                  print a one-line invite (mesh key + this node's addresses)
  repair --home DIR                                  rebuild a damaged metadata database from the data folder and the mesh
  init   --home DIR --invite TOKEN                   make a home that joins the mesh of an invite on first start
  help                                               this text`

/** A mistake on the command line or in the home: one line, exit code 2 (usage) or 1. */
export class UsageError extends Error {
  override name = 'UsageError'
}

type Options = NonNullable<ParseArgsConfig['options']>

function parse (args: string[], options: Options, positionals = 0): { values: Record<string, string | boolean | string[] | undefined>, positionals: string[] } {
  let parsed
  try {
    parsed = parseArgs({ args, options, allowPositionals: positionals > 0, strict: true })
  } catch (err) {
    throw new UsageError((err as Error).message.split('\n')[0].replace(/\. To specify a positional argument.*$/, ''))
  }
  if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument: ${parsed.positionals[positionals]}`)
  return parsed as { values: Record<string, string | boolean | string[] | undefined>, positionals: string[] }
}

function requireHome (values: Record<string, unknown>): string {
  const home = values.home
  if (typeof home !== 'string' || home === '') throw new UsageError('--home DIR is required')
  return home
}


export async function main (argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv
  try {
    switch (cmd) {
      case 'init': return await cmdInit(rest)
      case 'start': return await cmdStart(rest)
      case 'join': return await cmdJoin(rest)
      case 'status': return await cmdStatus(rest)
      case 'commit': return await cmdCommit(rest)
      case 'allow':
      case 'deny': return await cmdAcl(cmd, rest)
      case 'invite': return await cmdInvite(rest)
      case 'repair': return await cmdRepair(rest)
      case 'doctor': return await cmdDoctor(rest)
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE + '\n')
        return
      default:
        throw new UsageError(`unknown command '${cmd}' (see 'syncmesh help')`)
    }
  } catch (err) {
    const e = err as Error
    const known = ['UsageError', 'HomeError', 'NodeError', 'ControlError', 'MountError', 'MeshKeyError', 'MetricsError'].includes(e.name)
    process.stderr.write(`syncmesh: ${known ? e.message : `unexpected error: ${e.message.split('\n')[0]}`}\n`)
    process.exitCode = e.name === 'UsageError' ? 2 : 1
  }
}

async function cmdInit (args: string[]): Promise<void> {
  const { values } = parse(args, { home: { type: 'string' }, key: { type: 'string' }, invite: { type: 'string' } })
  const home = requireHome(values)
  const { peerId } = await initHome(home, { keyFile: values.key as string | undefined, invite: values.invite as string | undefined })
  process.stdout.write(`initialized ${home} (peer ${peerId})\n`)
}

async function cmdStart (args: string[]): Promise<void> {
  const { values } = parse(args, {
    home: { type: 'string' },
    listen: { type: 'string', multiple: true },
    join: { type: 'string', multiple: true },
    mount: { type: 'string' },
    api: { type: 'string' },
    relay: { type: 'boolean' },
    backend: { type: 'string' },
    metrics: { type: 'string' },
    'log-level': { type: 'string' }
  })
  const home = requireHome(values)
  if (values.relay === true && typeof values.backend !== 'string') throw new UsageError('--relay needs --backend folder:DIR or --backend drive')
  if (values.relay !== true && values.backend != null) throw new UsageError('--backend is for relays: add --relay')
  const level = (values['log-level'] ?? 'info') as string
  if (!isLevel(level)) throw new UsageError(`--log-level must be one of ${LEVELS.join(', ')}`)
  const metrics = values.metrics as string | undefined
  if (metrics != null) {
    try { parseMetricsAddress(metrics) } catch (err) { throw new UsageError((err as Error).message) }
  }
  const log = loggerFn(createLogger({ level }))
  // a node process: fewer full collections during transfers (src/node/gc.ts)
  tuneGc()
  const node = await SyncNode.open({ home, listen: values.listen as string[] | undefined, join: values.join as string[] | undefined, mount: values.mount as string | undefined, metrics, api: values.api as string | undefined, relay: values.relay === true ? values.backend as string : undefined, log })
  const ctl = new ControlServer(home, async (c, a) => {
    switch (c) {
      case 'status': return await node.status()
      case 'join': {
        if (typeof a.addr !== 'string') throw new UsageError('join needs an address')
        return { peer: await node.join(a.addr) }
      }
      case 'allow':
      case 'deny': {
        if (typeof a.peer !== 'string') throw new UsageError(`${c} needs a peer id`)
        checkPeerId(a.peer)
        await (c === 'allow' ? node.allow(a.peer) : node.deny(a.peer))
        return node.acl.snapshot
      }
      case 'commit': {
        if (typeof a.set !== 'string' || !Array.isArray(a.paths)) throw new UsageError('commit needs --set NAME and paths')
        return await node.commitPaths(a.set, a.paths.map(String))
      }
      case 'invite':
        return { invite: encodeInvite(node.home.meshKey, node.libp2p.getMultiaddrs().map((m) => m.toString())) }
      case 'clock':
        return { offsets: await node.clockOffsets(), maxClockOffsetMs: node.home.config.maxClockOffsetMs }
      default: throw new UsageError(`unknown control command ${c}`)
    }
  })
  await ctl.start()
  try {
    await node.start()
  } catch (err) {
    await ctl.stop()
    throw err
  }
  for (const a of node.libp2p.getMultiaddrs()) process.stdout.write(`${a.toString()}\n`)
  await new Promise<void>((resolve) => {
    let stopping = false
    const stop = (sig: string): void => {
      if (stopping) return
      stopping = true
      log('info', `${sig}: stopping`)
      void (async () => {
        try {
          await node.stop()
        } finally {
          await ctl.stop()
          resolve()
        }
      })()
    }
    process.once('SIGINT', () => stop('SIGINT'))
    process.once('SIGTERM', () => stop('SIGTERM'))
  })
}

async function cmdJoin (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { home: { type: 'string' } }, 1)
  const home = requireHome(values)
  if (positionals.length !== 1) throw new UsageError('join needs one MULTIADDR')
  const res = await control(home, 'join', { addr: positionals[0] }) as { peer: string }
  process.stdout.write(`joined ${res.peer}\n`)
}

async function cmdStatus (args: string[]): Promise<void> {
  const { values } = parse(args, { home: { type: 'string' }, json: { type: 'boolean' }, watch: { type: 'boolean' } })
  const home = requireHome(values)
  if (values.watch === true) {
    if (values.json === true) throw new UsageError('give either --json or --watch, not both')
    await watchStatus(home)
    return
  }
  const s = await control(home, 'status') as StatusReport
  if (values.json === true) {
    process.stdout.write(JSON.stringify(s) + '\n')
    return
  }
  process.stdout.write(formatStatus(s))
}

async function cmdCommit (args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { home: { type: 'string' }, set: { type: 'string' } }, Infinity)
  const home = requireHome(values)
  if (typeof values.set !== 'string' || values.set === '') throw new UsageError('--set NAME is required')
  if (positionals.length === 0) throw new UsageError('commit needs at least one PATH')
  // absolute paths are resolved here (the node runs elsewhere); others are relative to the data folder
  const paths = positionals.map((p) => p.startsWith('/') || p.startsWith('./') || p.startsWith('../') ? resolvePath(p) : p)
  const v = await control(home, 'commit', { set: values.set, paths }, 120_000) as SetView
  process.stdout.write(`committed set ${v.name} (${v.id}): ${v.fileCount} files, ${mb(v.bytesTotal)}\n`)
}

async function cmdAcl (cmd: 'allow' | 'deny', args: string[]): Promise<void> {
  const { values, positionals } = parse(args, { home: { type: 'string' } }, 1)
  const home = requireHome(values)
  if (positionals.length !== 1) throw new UsageError(`${cmd} needs one PEERID`)
  const peer = positionals[0]
  checkPeerId(peer)
  try {
    await control(home, cmd, { peer })
    process.stdout.write(`${cmd === 'allow' ? 'allowed' : 'denied'} ${peer}\n`)
  } catch (err) {
    if (!(err instanceof ControlError) || !/no node is running/.test(err.message)) throw err
    // no node running: change the stored list, the next start enforces it
    await loadHome(home)
    const acl = await new Acl(home).load()
    await (cmd === 'allow' ? acl.allow(peer) : acl.deny(peer))
    process.stdout.write(`${cmd === 'allow' ? 'allowed' : 'denied'} ${peer} (takes effect when the node starts)\n`)
  }
}

async function cmdRepair (args: string[]): Promise<void> {
  const { values } = parse(args, { home: { type: 'string' } })
  const home = requireHome(values)
  const h = await loadHome(home)
  try {
    await control(home, 'status', {}, 2_000)
    throw new UsageError(`a node is running in ${home}: stop it before repairing`)
  } catch (err) {
    if (!(err instanceof ControlError)) throw err
  }
  const aside = `${h.dbDir}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`
  await rename(h.dbDir, aside).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err
  })
  await mkdir(h.dbDir, { recursive: true })
  await writeFile(repairMarker(home), `${new Date().toISOString()}\n`)
  process.stdout.write(`moved the old database to ${aside}\n` +
    'the next start rebuilds the metadata: it learns the mesh\'s records from its peers, then adopts what the data folder holds\n' +
    `(the list of known peers was in the old database: start with --join MULTIADDR unless config.json lists peers to join)\n`)
}

async function cmdDoctor (args: string[]): Promise<void> {
  const { values } = parse(args, { home: { type: 'string' } })
  const home = requireHome(values)
  const results = await doctor(home)
  for (const r of results) process.stdout.write(`${r.level.padEnd(4)}  ${r.name.padEnd(10)}  ${r.detail}\n`)
  if (results.some((r) => r.level === 'fail')) process.exitCode = 1
}

async function cmdInvite (args: string[]): Promise<void> {
  const { values } = parse(args, { home: { type: 'string' } })
  const home = requireHome(values)
  let res: { invite: string }
  try {
    res = await control(home, 'invite') as { invite: string }
  } catch (err) {
    if (err instanceof ControlError && /no node is running/.test(err.message)) {
      throw new ControlError(`no node is running in ${home}: start it first, the invite carries its listen addresses`)
    }
    throw err
  }
  process.stdout.write(res.invite + '\n')
}

export function mb (n: number): string {
  return n < 1024 * 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1024 / 1024).toFixed(1)} MiB`
}

export function formatStatus (s: StatusReport): string {
  const lines = [
    `peer id    ${s.peerId}`,
    `node id    ${s.nodeId}`,
    `listening  ${s.addrs.join('\n           ') || '-'}`,
    `peers      ${s.peers.length === 0 ? 'none connected' : s.peers.map((p) => `${p.id} ${p.addrs.join(' ')}${p.latencyMs != null ? ` ${p.latencyMs} ms` : ''}`).join('\n           ')}`,
    `files      ${s.files} files, ${s.dirs} dirs, ${mb(s.bytes)}`,
    `pending    ${s.pending.files} to pull (${mb(s.pending.bytes)})`
  ]
  for (const p of s.pending.pulling.slice(0, 10)) lines.push(`           ${p.path} ${p.size > 0 ? Math.floor(100 * p.done / p.size) : 0}%`)
  lines.push(`conflicts  ${s.conflicts}`)
  const scan = s.stats.scanner
  if (scan != null) {
    const unwatched = scan.unwatchedDirs > 0 ? `; ${scan.unwatchedDirs} director${scan.unwatchedDirs === 1 ? 'y' : 'ies'} not watched (out of inotify watches)` : ''
    lines.push(`scan       last full scan ${(scan.lastFullScanMs / 1000).toFixed(1)} s${unwatched}`)
  }
  if (s.api != null) lines.push(`api        ${s.api}`)
  if (s.relay != null) {
    lines.push(`relay      ${s.relay.backend}${s.relay.lastError != null ? ` (last error: ${s.relay.lastError})` : ''}`)
    for (const u of s.relay.uploads) lines.push(`           ${u.name}: ${mb(u.bytesDone)} of ${mb(u.bytesTotal)}${u.file != null ? `, now ${u.file}` : ''}`)
  }
  if (s.sets.length > 0) {
    lines.push(`sets       ${s.sets.length}`)
    for (const v of s.sets.slice(0, 10)) {
      const pct = v.bytesTotal > 0 ? ` ${Math.floor(100 * v.bytesDone / v.bytesTotal)}%` : ''
      lines.push(`           ${v.name} ${v.state}${v.state === 'uploading' ? pct : ''} (${v.fileCount} files, ${mb(v.bytesTotal)})${v.error != null ? `: ${v.error}` : ''}`)
    }
  }
  lines.push(`last error ${s.lastError ?? 'none'}`)
  return lines.join('\n') + '\n'
}

export { HomeError }
