/**
 * `syncmesh doctor --home DIR`: checks what a node needs from its machine and reports
 * each as `ok|warn|fail  name  detail`. It changes nothing. With a node running in the
 * home it also asks the node (control socket): its mount, its listen ports, and the
 * clock offset to each connected peer.
 *
 * Paths can be redirected for tests: SYNCMESH_DEV_FUSE (default /dev/fuse).
 */
import { constants } from 'node:fs'
import { access, readFile, stat, statfs } from 'node:fs/promises'
import { createConnection, createServer } from 'node:net'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import { DEFAULT_CONFIG, homePaths, readConfig, type Config } from '../node/home.js'
import { control } from '../node/control.js'
import { mountMarker, type StatusReport } from '../node/node.js'
import { loadFuseNative, mountsAt, probeIsolated, canonicalMountPoint } from '../fuse/hygiene.js'
import type { ClockOffset } from '../node/clock.js'

export type CheckLevel = 'ok' | 'warn' | 'fail'
export interface Check { level: CheckLevel, name: string, detail: string }

export interface DoctorOptions {
  /** @default process.env.SYNCMESH_DEV_FUSE ?? '/dev/fuse' */
  devFuse?: string
  /** Free space below this fails. @default 100 MiB */
  failBelowBytes?: number
  /** Free space below this (or below `warnBelowFraction` of the disk) warns. @default 1 GiB */
  warnBelowBytes?: number
  /** @default 0.05 */
  warnBelowFraction?: number
}

const MiB = 1024 * 1024
const GiB = 1024 * MiB

export async function doctor (home: string, opts: DoctorOptions = {}): Promise<Check[]> {
  const out: Check[] = []
  const add = (level: CheckLevel, name: string, detail: string): void => { out.push({ level, name, detail }) }
  const paths = homePaths(home)

  try {
    if (!(await stat(home)).isDirectory()) { add('fail', 'home', `${home} is not a directory`); return out }
  } catch {
    add('fail', 'home', `${home} does not exist (run 'syncmesh init --home ${home}')`)
    return out
  }
  let config: Config = DEFAULT_CONFIG
  try {
    config = await readConfig(home)
    add('ok', 'config', paths.config)
  } catch (err) {
    add('fail', 'config', `${(err as Error).message} (checking with the defaults)`)
  }

  // the running node, if any
  let status: StatusReport | null = null
  try {
    status = await control(home, 'status', {}, 5_000) as StatusReport
    add('ok', 'node', `running: peer ${status.peerId}, ${status.peers.length} peer(s) connected`)
  } catch (err) {
    const msg = (err as Error).message
    if (/no node is running/.test(msg)) add('ok', 'node', 'not running (mount, port and clock checks are for a stopped node)')
    else add('fail', 'node', `the control socket does not answer: ${msg}`)
  }

  // key files: readable by the node's user only
  for (const [file, required] of [[paths.identity, true], [paths.meshKey, true], [join(home, 'api.token'), false]] as const) {
    let mode: number
    try {
      mode = (await stat(file)).mode & 0o777
    } catch {
      if (required) add('fail', 'key', `${file} is missing: the home is incomplete`)
      continue
    }
    if ((mode & 0o077) !== 0) add('fail', 'key', `${file} can be read by other users (mode ${mode.toString(8)}); run 'chmod 600 ${file}'`)
    else add('ok', 'key', `${file} mode ${mode.toString(8)}`)
  }

  // FUSE (needed for --mount only; a node that watches its folder runs without it)
  const devFuse = opts.devFuse ?? process.env.SYNCMESH_DEV_FUSE ?? '/dev/fuse'
  try {
    await access(devFuse, constants.R_OK | constants.W_OK)
    add('ok', 'fuse', `${devFuse} present`)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    add('fail', 'fuse', code === 'ENOENT'
      ? `no ${devFuse}: the FUSE kernel module is not available (modprobe fuse; in a container --device /dev/fuse --cap-add SYS_ADMIN); --mount cannot work`
      : `cannot open ${devFuse} (${code ?? String(err)}): --mount cannot work`)
  }
  try {
    const { binding } = await loadFuseNative()
    add('ok', 'libfuse', 'libfuse.so.2 loads (fuse-native)')
    if (binding.patch > 0) add('ok', 'fuse-addon', `built with the syncmesh patch ${binding.patch} (utimens with UTIME_OMIT, ns times, plain paths served in C)`)
    else add('warn', 'fuse-addon', 'stock prebuild: through the mount touch -m/-a and tar x leave times unchanged, times are whole ms (build it: node scripts/build-fuse.mjs)')
  } catch (err) {
    add('fail', 'libfuse', `${(err as Error).message}; --mount cannot work`)
  }

  await checkMount(home, status, add)

  // free space of the home (database) and the data folder
  const seen = new Set<number>()
  for (const dir of [home, paths.data]) {
    let dev: number
    try { dev = (await stat(dir)).dev } catch { continue }
    if (seen.has(dev)) continue
    seen.add(dev)
    try {
      const fs = await statfs(dir)
      const free = fs.bavail * fs.bsize
      const total = fs.blocks * fs.bsize
      const fraction = total > 0 ? free / total : 1
      const detail = `${dir}: ${formatBytes(free)} free of ${formatBytes(total)} (${(fraction * 100).toFixed(1)}%)`
      if (free < (opts.failBelowBytes ?? 100 * MiB)) add('fail', 'disk', `${detail}: below ${formatBytes(opts.failBelowBytes ?? 100 * MiB)}, writes and pulls will fail`)
      else if (free < (opts.warnBelowBytes ?? GiB) || fraction < (opts.warnBelowFraction ?? 0.05)) add('warn', 'disk', `${detail}: running low`)
      else add('ok', 'disk', detail)
    } catch (err) {
      add('warn', 'disk', `${dir}: cannot read free space (${(err as Error).message})`)
    }
  }

  await checkPorts(config, status, add)
  await checkClocks(home, config, status, add)
  return out
}

async function checkMount (home: string, status: StatusReport | null, add: (l: CheckLevel, n: string, d: string) => void): Promise<void> {
  if (status != null) {
    if (status.mount == null) { add('ok', 'mount', 'none (the node watches its data folder)'); return }
    const probe = await probeIsolated(status.mount)
    if (probe.kind === 'dir') add('ok', 'mount', `${status.mount} served by the node`)
    else if (probe.kind === 'stale') add('fail', 'mount', `${status.mount} does not answer (${probe.code}); stop the node, or 'umount -l ${status.mount}'`)
    else add('fail', 'mount', `${status.mount}: ${probe.kind}${'code' in probe ? ` (${probe.code})` : ''}`)
    return
  }
  let last: string
  try {
    last = (await readFile(mountMarker(home), 'utf8')).trim()
  } catch {
    add('ok', 'mount', 'no mount left behind')
    return
  }
  if (last === '') { add('ok', 'mount', 'no mount left behind'); return }
  const mp = await canonicalMountPoint(last)
  const fuse = (await mountsAt(mp)).filter((m) => m.fstype.startsWith('fuse'))
  if (fuse.length === 0) { add('ok', 'mount', `no stale mount at ${last} (the last mount point)`); return }
  const probe = await probeIsolated(mp)
  if (probe.kind === 'stale') {
    add('fail', 'mount', `stale mount at ${last} (${probe.code}), left by a node that did not stop cleanly: 'fusermount -uz ${last}' or 'umount -l ${last}' (the next start clears it too)`)
  } else {
    add('warn', 'mount', `${last} is mounted (${fuse[fuse.length - 1].fstype}) but no node runs in this home`)
  }
}

async function checkPorts (config: Config, status: StatusReport | null, add: (l: CheckLevel, n: string, d: string) => void): Promise<void> {
  if (status != null) {
    const tried = new Set<string>()
    for (const a of status.addrs) {
      const hp = tcpOf(a)
      if (hp == null) continue
      const key = `${hp.host}:${hp.port}`
      if (tried.has(key)) continue
      tried.add(key)
      const ok = await canConnect(hp.host, hp.port)
      if (ok) add('ok', 'port', `${hp.host} tcp ${hp.port} listening`)
      else add('fail', 'port', `${hp.host} tcp ${hp.port}: the node lists it but it does not accept connections`)
    }
    if (tried.size === 0) add('warn', 'port', 'the node lists no TCP listen address')
    return
  }
  for (const a of config.listen) {
    const hp = tcpOf(a)
    if (hp == null) { add('warn', 'port', `${a}: not a TCP address, not checked`); continue }
    if (hp.port === 0) { add('ok', 'port', `${a}: any free port`); continue }
    const err = await canBind(hp.host, hp.port)
    if (err == null) add('ok', 'port', `${a}: can listen`)
    else if (err === 'EADDRINUSE') add('fail', 'port', `${a}: address already in use (another program listens there: 'ss -ltnp' names it)`)
    else add('fail', 'port', `${a}: cannot listen (${err})`)
  }
}

async function checkClocks (home: string, config: Config, status: StatusReport | null, add: (l: CheckLevel, n: string, d: string) => void): Promise<void> {
  if (status == null) { add('ok', 'clock', 'node not running: offsets to peers not checked'); return }
  let res: { offsets: Array<ClockOffset | { peer: string, error: string }>, maxClockOffsetMs: number }
  try {
    res = await control(home, 'clock', {}, 15_000) as typeof res
  } catch (err) {
    add('warn', 'clock', `cannot ask the node: ${(err as Error).message}`)
    return
  }
  const limit = res.maxClockOffsetMs ?? config.maxClockOffsetMs
  if (res.offsets.length === 0) { add('ok', 'clock', 'no connected peers to compare with'); return }
  for (const o of res.offsets) {
    if ('error' in o) { add('warn', 'clock', `${o.peer}: no answer (${o.error})`); continue }
    const detail = `${o.peer}: ${o.offsetMs >= 0 ? '+' : ''}${o.offsetMs} ms (round trip ${o.rttMs} ms)`
    if (Math.abs(o.offsetMs) > limit) add('warn', 'clock', `${detail}: more than ${limit} ms off; the conflict rule orders concurrent writes by these clocks (run NTP on both)`)
    else add('ok', 'clock', detail)
  }
}

function tcpOf (addr: string): { host: string, port: number } | null {
  try {
    const parts = multiaddr(addr).getComponents()
    const ip = parts.find((c) => c.name === 'ip4' || c.name === 'ip6' || c.name === 'dns4' || c.name === 'dns6' || c.name === 'dns')
    const tcp = parts.find((c) => c.name === 'tcp')
    if (ip?.value == null || tcp?.value == null) return null
    return { host: ip.value, port: Number(tcp.value) }
  } catch {
    return null
  }
}

async function canBind (host: string, port: number): Promise<string | null> {
  return await new Promise((resolve) => {
    const s = createServer()
    s.once('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? err.message) })
    s.listen(port, host, () => { s.close(() => { resolve(null) }) })
  })
}

async function canConnect (host: string, port: number): Promise<boolean> {
  const target = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host
  return await new Promise((resolve) => {
    const s = createConnection({ host: target, port })
    const done = (ok: boolean): void => { s.destroy(); resolve(ok) }
    s.setTimeout(3_000, () => { done(false) })
    s.once('connect', () => { done(true) })
    s.once('error', () => { done(false) })
  })
}

function formatBytes (n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(1)} GiB`
  return `${(n / MiB).toFixed(0)} MiB`
}
