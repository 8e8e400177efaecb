/**
 * FUSE passthrough benchmark: sequential write of 1 GiB in 1 MiB writes and creation of 10,000 files of
 * 4 KiB, directly into a data folder, through the Syncmesh mount (served by a dist/src/fuse/serve.js child
 * process; this process only writes), and through `bindfs -o big_writes` when bindfs is installed.
 *
 *   npx tsc -p tsconfig.json && node dist/bench/fuse-bench.js [--mib 1024] [--files 10000] [--runs 2]
 *     [--only direct,mount,mount-uring,mount-nofast,mount-sync,mount-lead,bindfs,mesh] [--serve-env KEY=VALUE ...]
 *     [--mesh-paced 200] [--mesh-gap 25] [--mesh-burst 1000]
 *
 * The targets run in the order --only names them, a target named twice runs twice (to interleave them on
 * a noisy machine); direct also runs once more at the end.
 * 'mount-uring' serves with UV_USE_IO_URING=1 (libuv submits the server's file I/O through io_uring instead
 * of its thread pool; Node leaves that off by default). 'mount-nofast' serves with
 * SYNCMESH_FUSE_FASTPATHS=0: getattr, fgetattr and getxattr go to JS even with the patched fuse-native.
 * 'mount-sync' serves with SYNCMESH_FUSE_ASYNC=0: create, open for writing and release call JS and wait for
 * it (patch level 4's way) instead of queueing a notification. 'mount-lead' serves with SYNCMESH_FUSE_LOOP=lead:
 * the addon's own request loop instead of libfuse's fuse_loop_mt.
 *
 * 'mesh' (run last, whatever its place in --only): two nodes with --mount, the time from a file's close in
 * one node's mount to its content read back in the other's (bench/mount-mesh.ts).
 *
 * Needs root (or fuse for the user), /dev/fuse, libfuse2 + fuse; bindfs is optional (apt-get install -y bindfs).
 * Every small-file run writes into a fresh folder (this disk slows down for minutes after mass deletes).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { cleanupAll, installSignalHandlers, isMounted, onCleanup } from './lib.js'
import { benchMountMesh, printMesh, type MeshResult } from './mount-mesh.js'

interface Result { target: string, writeMBs: number, writeSecs: number, filesPerSec: number, filesSecs: number }

const here = path.dirname(fileURLToPath(import.meta.url))
const SERVE = path.resolve(here, '../src/fuse/serve.js')

function arg (name: string, def: string): string {
  const i = process.argv.indexOf(name)
  return i !== -1 && i + 1 < process.argv.length ? process.argv[i + 1] : def
}

function args (name: string): string[] {
  const out: string[] = []
  for (let i = 0; i < process.argv.length - 1; i++) if (process.argv[i] === name) out.push(process.argv[i + 1])
  return out
}

function run (cmd: string, argv: string[]): Promise<{ ok: boolean, out: string }> {
  return new Promise(resolve => {
    execFile(cmd, argv, (err, stdout, stderr) => resolve({ ok: err === null, out: `${String(stdout)}${String(stderr)}` }))
  })
}

async function which (cmd: string): Promise<boolean> {
  return (await run('sh', ['-c', `command -v ${cmd}`])).ok
}

async function writeBig (dir: string, mib: number): Promise<number> {
  const buf = Buffer.alloc(1024 * 1024, 0x5a)
  const file = path.join(dir, 'big.bin')
  const t0 = process.hrtime.bigint()
  const fh = await fsp.open(file, 'w')
  try {
    for (let i = 0; i < mib; i++) await fh.write(buf, 0, buf.length, i * buf.length)
  } finally {
    await fh.close()
  }
  const secs = Number(process.hrtime.bigint() - t0) / 1e9
  await fsp.rm(file)
  return secs
}

async function writeSmall (dir: string, count: number): Promise<number> {
  const buf = Buffer.alloc(4096, 0x61)
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < count; i++) await fsp.writeFile(path.join(dir, `f${i}.dat`), buf)
  return Number(process.hrtime.bigint() - t0) / 1e9
}

/** Best of `runs` (this machine is shared and noisy); every small-file run gets a fresh folder. */
async function measure (target: string, dir: string, mib: number, files: number, stamp: string, runs: number, events?: () => number): Promise<Result> {
  let writeSecs = Infinity
  let filesSecs = Infinity
  for (let i = 0; i < runs; i++) {
    process.stdout.write(`${target} run ${i + 1}/${runs}: writing ${mib} MiB ... `)
    const w = await writeBig(dir, mib)
    await run('sync', [])
    process.stdout.write(`${(mib * 1048576 / 1e6 / w).toFixed(1)} MB/s; ${files} files ... `)
    const small = path.join(dir, `small-${stamp}-${i}`)
    await fsp.mkdir(small)
    const e0 = events?.()
    const f = await writeSmall(small, files)
    process.stdout.write(`${(files / f).toFixed(0)} files/s`)
    if (events !== undefined && e0 !== undefined) {
      // the mount reports a create and a write per file: how long after the last close until all were reported
      const t1 = process.hrtime.bigint()
      while (events() - e0 < 2 * files && Number(process.hrtime.bigint() - t1) < 60e9) await new Promise(resolve => setTimeout(resolve, 1))
      process.stdout.write(`, all reported ${(Number(process.hrtime.bigint() - t1) / 1e6).toFixed(0)} ms after the last close`)
    }
    process.stdout.write('\n')
    await run('sync', [])
    writeSecs = Math.min(writeSecs, w)
    filesSecs = Math.min(filesSecs, f)
  }
  return { target, writeMBs: mib * 1048576 / 1e6 / writeSecs, writeSecs, filesPerSec: files / filesSecs, filesSecs }
}

async function startServe (data: string, mnt: string, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess, events: () => number }> {
  const child = spawn(process.execPath, [SERVE, data, mnt], { stdio: ['ignore', 'pipe', 'inherit'], env })
  let events = 0
  let buf = ''
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('serve.js did not report ready within 20 s')), 20000)
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      buf += chunk
      let nl = buf.indexOf('\n')
      while (nl !== -1) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        nl = buf.indexOf('\n')
        events++
        if (line.includes('"op":"ready"')) { clearTimeout(timer); resolve() }
        if (line.includes('"op":"error"')) { clearTimeout(timer); reject(new Error(`serve.js: ${line}`)) }
      }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`serve.js exited with ${String(code)}`)) })
  })
  await ready
  return { child, events: () => events }
}

async function stopChild (child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const t = setTimeout(() => child.kill('SIGKILL'), 10000)
  await exited
  clearTimeout(t)
}

async function main (): Promise<void> {
  if (!existsSync(SERVE)) throw new Error(`${SERVE} is missing: run npx tsc -p tsconfig.json first`)
  const mib = Number(arg('--mib', '1024'))
  const files = Number(arg('--files', '10000'))
  const runs = Math.max(1, Number(arg('--runs', '2')))
  const only = arg('--only', 'direct,mount,mount-uring,bindfs,mesh').split(',').filter(Boolean)
  installSignalHandlers()
  let mesh: MeshResult | undefined
  const serveEnv: NodeJS.ProcessEnv = { ...process.env }
  for (const kv of args('--serve-env')) {
    const eq = kv.indexOf('=')
    if (eq > 0) serveEnv[kv.slice(0, eq)] = kv.slice(eq + 1)
  }
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'syncmesh-fuse-bench-'))
  const stamp = `${Date.now()}`
  const results: Result[] = []
  let child: ChildProcess | undefined
  const mounts: string[] = []
  // also on Ctrl-C (lib's signal handlers run the cleanups): the serving child, the mounts, the folder
  const release = async (): Promise<void> => {
    if (child !== undefined) await stopChild(child)
    child = undefined
    for (const m of mounts) if (await isMounted(m)) await run('umount', ['-l', m])
    await fsp.rm(root, { recursive: true, force: true, maxRetries: 5 })
  }
  onCleanup(release)
  try {
    // untimed warm-up: the first large writer on this machine pays for reclaiming the page cache
    if (only.some((k) => k !== 'mesh')) {
      const warm = path.join(root, 'warmup')
      await fsp.mkdir(warm)
      await writeBig(warm, mib)
      await run('sync', [])
    }
    const mountRuns = new Map<string, [string, NodeJS.ProcessEnv]>([
      ['mount', ['syncmesh mount', serveEnv]],
      ['mount-uring', ['syncmesh, io_uring', { ...serveEnv, UV_USE_IO_URING: '1' }]],
      ['mount-nofast', ['syncmesh, no C paths', { ...serveEnv, SYNCMESH_FUSE_FASTPATHS: '0' }]],
      ['mount-sync', ['syncmesh, JS waited', { ...serveEnv, SYNCMESH_FUSE_ASYNC: '0' }]],
      ['mount-lead', ['syncmesh, addon loop', { ...serveEnv, SYNCMESH_FUSE_LOOP: 'lead' }]]
    ])
    for (const [i, key] of only.entries()) {
      if (key === 'mesh') continue
      if (key === 'direct') {
        const dir = path.join(root, `direct-${i}`)
        await fsp.mkdir(dir)
        results.push(await measure('direct', dir, mib, files, stamp, runs))
        continue
      }
      const mountRun = mountRuns.get(key)
      if (mountRun !== undefined) {
        const [label, env] = mountRun
        const data = path.join(root, `data-${key}-${i}`)
        const mnt = path.join(root, `mnt-${key}-${i}`)
        await fsp.mkdir(data)
        await fsp.mkdir(mnt)
        mounts.push(mnt)
        const served = await startServe(data, mnt, env)
        child = served.child
        results.push(await measure(label, mnt, mib, files, stamp, runs, served.events))
        console.log(`  (${served.events()} events reported by the mount)`)
        await stopChild(child)
        child = undefined
        continue
      }
      if (key === 'bindfs') {
        if (await which('bindfs')) {
          const src = path.join(root, `bindsrc-${i}`)
          const mnt = path.join(root, `bindmnt-${i}`)
          await fsp.mkdir(src)
          await fsp.mkdir(mnt)
          const r = await run('bindfs', ['-o', 'big_writes', src, mnt])
          if (!r.ok) throw new Error(`bindfs failed: ${r.out}`)
          mounts.push(mnt)
          results.push(await measure('bindfs -o big_writes', mnt, mib, files, stamp, runs))
          await run('fusermount', ['-u', mnt])
        } else {
          console.log('bindfs not installed (apt-get install -y bindfs): skipped')
        }
        continue
      }
      throw new Error(`unknown target ${key} (--only direct,mount,mount-uring,mount-nofast,mount-sync,mount-lead,bindfs,mesh)`)
    }
    if (only.includes('direct')) {
      // again at the end: this shared disk's speed drifts; ratios use the mean of both direct runs
      const dir = path.join(root, 'direct2')
      await fsp.mkdir(dir)
      results.push(await measure('direct (again)', dir, mib, files, `${stamp}b`, runs))
    }
    if (only.includes('mesh')) {
      mesh = await benchMountMesh({
        paced: Number(arg('--mesh-paced', '200')),
        gapMs: Number(arg('--mesh-gap', '25')),
        burst: Number(arg('--mesh-burst', '1000')),
        timeoutS: 120,
        log: (m) => { console.log(m) }
      })
    }
  } finally {
    await cleanupAll()
  }

  const directs = results.filter(r => r.target.startsWith('direct'))
  const direct = directs.length === 0
    ? undefined
    : { writeMBs: directs.reduce((a, r) => a + r.writeMBs, 0) / directs.length, filesPerSec: directs.reduce((a, r) => a + r.filesPerSec, 0) / directs.length }
  console.log('')
  console.log(`sequential write ${mib} MiB (1 MiB writes), ${files} files of 4 KiB; best of ${runs} runs; ${os.cpus().length} cores, node ${process.version}`)
  console.log('target                  write MB/s   x direct   files/s   x direct   (x direct: against the mean of the direct runs)')
  for (const r of results) {
    const wr = direct !== undefined ? (r.writeMBs / direct.writeMBs).toFixed(2) : '-'
    const fr = direct !== undefined ? (r.filesPerSec / direct.filesPerSec).toFixed(2) : '-'
    console.log(`${r.target.padEnd(22)} ${r.writeMBs.toFixed(1).padStart(11)} ${wr.padStart(10)} ${r.filesPerSec.toFixed(0).padStart(9)} ${fr.padStart(10)}`)
  }
  if (mesh !== undefined) printMesh(mesh)
}

main().catch(err => {
  console.error(err instanceof Error ? err.message : String(err))
  process.exitCode = 1
})
