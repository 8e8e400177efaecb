/**
 * Small-file creation through several mounts at once, in batches that rotate between them (so that the
 * load of a shared machine falls on all of them alike): the Syncmesh mount with the addon's fast paths
 * ('fast'), with SYNCMESH_FUSE_ASYNC=0 ('sync': create, open for writing and release wait for JS, as at
 * patch level 4), with SYNCMESH_FUSE_FASTPATHS=0 ('nofast'), with SYNCMESH_FUSE_LOOP=lead ('lead': the
 * addon's own request loop instead of libfuse's fuse_loop_mt), and `bindfs -o big_writes` ('bindfs').
 * Prints, per target, the best and median files/s over the batches and the serving process's CPU time per
 * created file (from /proc; less sensitive to other work than wall-clock time).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/fuse-interleave.js [--rounds 30] [--batch 500] [--only fast,sync,nofast,lead,bindfs]
 *
 * Needs root, /dev/fuse, libfuse2 + fuse; bindfs is optional. Every batch writes into a fresh folder.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import fsp from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

const here = path.dirname(fileURLToPath(import.meta.url))
const SERVE = path.resolve(here, '../src/fuse/serve.js')
const TICKS_PER_SEC = 100 // USER_HZ on Linux
/** serve.js targets: the environment each runs with */
const SERVE_ENV = new Map<string, Record<string, string>>([
  ['fast', {}],
  ['sync', { SYNCMESH_FUSE_ASYNC: '0' }],
  ['nofast', { SYNCMESH_FUSE_FASTPATHS: '0' }],
  ['lead', { SYNCMESH_FUSE_LOOP: 'lead' }]
])

function arg (name: string, def: string): string {
  const i = process.argv.indexOf(name)
  return i !== -1 && i + 1 < process.argv.length ? process.argv[i + 1] : def
}

function run (cmd: string, argv: string[]): Promise<{ ok: boolean, out: string }> {
  return new Promise(resolve => {
    execFile(cmd, argv, (err, stdout, stderr) => resolve({ ok: err === null, out: `${String(stdout)}${String(stderr)}`.trim() }))
  })
}

/** utime + stime of a process (all its threads, also those that ended), in seconds. */
async function cpuSecs (pid: number): Promise<number> {
  const stat = await fsp.readFile(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / TICKS_PER_SEC
}

interface Target { name: string, mnt: string, pid: number, times: number[], cpu: number }

async function serve (root: string, name: string, env: NodeJS.ProcessEnv, children: ChildProcess[]): Promise<Target> {
  const data = path.join(root, `data-${name}`)
  const mnt = path.join(root, `mnt-${name}`)
  await fsp.mkdir(data)
  await fsp.mkdir(mnt)
  const child = spawn(process.execPath, [SERVE, data, mnt], { stdio: ['ignore', 'pipe', 'inherit'], env })
  children.push(child)
  await new Promise<void>((resolve, reject) => {
    let buf = ''
    const timer = setTimeout(() => reject(new Error(`${name}: serve.js did not report ready within 20 s`)), 20000)
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => {
      if (buf.length < 65536) buf += chunk // later events are read and dropped
      if (buf.includes('"op":"ready"')) { clearTimeout(timer); resolve() }
      if (buf.includes('"op":"error"')) { clearTimeout(timer); reject(new Error(`${name}: ${buf.trim()}`)) }
    })
    child.once('exit', code => { clearTimeout(timer); reject(new Error(`${name}: serve.js exited with ${String(code)}`)) })
  })
  if (child.pid === undefined) throw new Error(`${name}: no pid`)
  return { name, mnt, pid: child.pid, times: [], cpu: 0 }
}

async function main (): Promise<void> {
  const rounds = Number(arg('--rounds', '30'))
  const batch = Number(arg('--batch', '500'))
  const only = arg('--only', 'fast,nofast,bindfs').split(',').filter(Boolean)
  const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'syncmesh-fuse-interleave-'))
  const children: ChildProcess[] = []
  const mounts: string[] = []
  const targets: Target[] = []
  try {
    for (const name of only) {
      const serveEnv = SERVE_ENV.get(name)
      if (serveEnv !== undefined) {
        const env = { ...process.env, ...serveEnv }
        const t = await serve(root, name, env, children)
        mounts.push(t.mnt)
        targets.push(t)
      } else if (name === 'bindfs') {
        if (!(await run('sh', ['-c', 'command -v bindfs'])).ok) { console.log('bindfs not installed (apt-get install -y bindfs): skipped'); continue }
        const src = path.join(root, 'bindfs-src')
        const mnt = path.join(root, 'mnt-bindfs')
        await fsp.mkdir(src)
        await fsp.mkdir(mnt)
        const r = await run('bindfs', ['-o', 'big_writes', src, mnt])
        if (!r.ok) throw new Error(`bindfs failed: ${r.out}`)
        mounts.push(mnt)
        // bindfs forks into the background: its pid is the one serving this mount point
        const ps = await run('pgrep', ['-f', `bindfs -o big_writes ${src} ${mnt}`])
        const pid = Number(ps.out.split('\n')[0])
        if (!ps.ok || !Number.isInteger(pid)) throw new Error('cannot find the bindfs process')
        targets.push({ name, mnt, pid, times: [], cpu: 0 })
      } else {
        throw new Error(`unknown target ${name} (--only fast,sync,nofast,mt,bindfs)`)
      }
    }
    const buf = Buffer.alloc(4096, 0x61)
    for (let r = 0; r < rounds; r++) {
      for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
        const dir = path.join(t.mnt, `r${r}`)
        await fsp.mkdir(dir)
        const c0 = await cpuSecs(t.pid)
        const t0 = process.hrtime.bigint()
        for (let i = 0; i < batch; i++) await fsp.writeFile(path.join(dir, `f${i}`), buf)
        t.times.push(batch / (Number(process.hrtime.bigint() - t0) / 1e9))
        t.cpu += await cpuSecs(t.pid) - c0
      }
    }
  } finally {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue
      const exited = new Promise<void>(resolve => c.once('exit', () => resolve()))
      c.kill('SIGTERM')
      await Promise.race([exited, new Promise(resolve => setTimeout(resolve, 10000))])
    }
    for (const m of mounts) {
      const info = await fsp.readFile('/proc/self/mountinfo', 'utf8')
      if (info.split('\n').some(l => l.split(' ')[4] === m)) await run('umount', ['-l', m])
    }
    await fsp.rm(root, { recursive: true, force: true })
  }
  console.log(`${rounds} rounds of ${batch} files of 4 KiB per target, rotating; ${os.cpus().length} cores, load ${os.loadavg().map(l => l.toFixed(1)).join(' ')}, node ${process.version}`)
  console.log('target    best files/s   median files/s   server CPU per file')
  for (const t of targets) {
    const s = [...t.times].sort((a, b) => a - b)
    console.log(`${t.name.padEnd(9)} ${s[s.length - 1].toFixed(0).padStart(12)} ${s[s.length >> 1].toFixed(0).padStart(16)} ${(t.cpu * 1e6 / (rounds * batch)).toFixed(0).padStart(17)} us`)
  }
}

main().catch(err => {
  console.error(err instanceof Error ? err.message : String(err))
  process.exitCode = 1
})
