/**
 * `npm run bench:ab -- --base REF`: the small-file cases of `npm run bench` (live and
 * catch-up) for the code at git revision REF and for this checkout, run alternately.
 *
 * On this project's machines one run of a case moves by ±15% with the machine's state
 * (file creation and first touches of memory cost several times more for minutes after
 * large deletions), more than most single changes are worth, so one run before and one
 * after say little. Alternated pairs (the base first in each) see the same states; the
 * summary gives each side's median, mean and range and how many pairs the checkout won.
 *
 * The base is checked out in a temporary git worktree (removed at the end, also on
 * Ctrl-C), using this checkout's node_modules, and compiled there; each side runs its own
 * bench/replicate.ts (uncommitted changes here included). Options: --pairs N (4),
 * --files N (10000), --tmpfs (the nodes' folders on /dev/shm: the disk's state out of the
 * figures), --json (last line: one JSON object).
 */
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { REPO, cleanupAll, installSignalHandlers, machine, onCleanup } from './lib.js'

interface Options { base: string, pairs: number, files: number, tmpfs: boolean, json: boolean }

interface Side { live: number, catchUp: number, liveCpu: number | null, catchUpCpuB: number | null, p50: number | null }

function options (): Options {
  const { values } = parseArgs({
    options: {
      base: { type: 'string' },
      pairs: { type: 'string' },
      files: { type: 'string' },
      tmpfs: { type: 'boolean' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' }
    }
  })
  if (values.help === true) {
    process.stdout.write('usage: npm run bench:ab -- --base REF [--pairs N] [--files N] [--tmpfs] [--json]\n')
    process.exit(0)
  }
  if (values.base == null || values.base === '') throw new Error('--base REF is required (a git revision to compare this checkout with)')
  const count = (name: string, v: string | undefined, dflt: number, min: number): number => {
    if (v == null) return dflt
    const n = Number(v)
    if (!Number.isInteger(n) || n < min) throw new Error(`--${name} must be an integer of at least ${min}, not ${JSON.stringify(v)}`)
    return n
  }
  return { base: values.base, pairs: count('pairs', values.pairs, 4, 1), files: count('files', values.files, 10_000, 100), tmpfs: values.tmpfs === true, json: values.json === true }
}

async function sh (cmd: string, args: string[], opts: { cwd?: string, env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return await new Promise((resolve, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err != null) reject(new Error(`${cmd} ${args.slice(0, 3).join(' ')}: ${(stderr.trim().split('\n').pop() ?? '') || err.message}`))
      else resolve(stdout)
    })
  })
}

const progress = (line: string): void => { process.stderr.write(`[ab] ${line}\n`) }

/** A worktree of `sha` with this checkout's node_modules, compiled; removed at cleanup. */
async function checkoutBase (sha: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'syncmesh-ab-'))
  onCleanup(async () => {
    await sh('git', ['worktree', 'remove', '--force', dir], { cwd: REPO }).catch(() => {})
    await rm(dir, { recursive: true, force: true })
    await sh('git', ['worktree', 'prune'], { cwd: REPO }).catch(() => {})
  })
  await sh('git', ['worktree', 'add', '--detach', dir, sha], { cwd: REPO })
  await symlink(join(REPO, 'node_modules'), join(dir, 'node_modules'))
  progress(`compiling ${sha.slice(0, 12)} in ${dir}`)
  await sh(process.execPath, [join(REPO, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')])
  await readFile(join(dir, 'dist', 'bench', 'replicate.js')).catch(() => { throw new Error(`${sha.slice(0, 12)} has no bench/replicate.ts to run`) })
  return dir
}

async function runSide (root: string, opts: Options): Promise<Side> {
  const env = { ...process.env, ...(opts.tmpfs ? { TMPDIR: '/dev/shm' } : {}) }
  const out = await sh(process.execPath, [join(root, 'dist', 'bench', 'replicate.js'), '--size-mb', '0', '--files', String(opts.files), '--skip-rsync', '--json'], { cwd: root, env })
  const last = out.trim().split('\n').pop() ?? ''
  const r = JSON.parse(last) as { syncmesh: { small: { filesPerS: number, cpu: { A: number | null, B: number | null }, latencyMs?: { p50: number } } | null, catchUp: { filesPerS: number, cpu: { B: number | null } } | null } }
  const { small, catchUp } = r.syncmesh
  if (small == null || catchUp == null) throw new Error(`${root}: the bench reported no small-file figures`)
  const liveCpu = small.cpu.A == null || small.cpu.B == null ? null : small.cpu.A + small.cpu.B
  return { live: small.filesPerS, catchUp: catchUp.filesPerS, liveCpu, catchUpCpuB: catchUp.cpu.B, p50: small.latencyMs?.p50 ?? null }
}

function stats (xs: number[]): { median: number, mean: number, min: number, max: number } {
  const s = [...xs].sort((a, b) => a - b)
  const mid = s.length >> 1
  const median = s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2
  return { median, mean: xs.reduce((a, b) => a + b, 0) / xs.length, min: s[0], max: s[s.length - 1] }
}

const f0 = (n: number): string => Math.round(n).toLocaleString('en-US')
const f1 = (n: number | null): string => n == null ? '-' : n.toFixed(1)

async function main (): Promise<void> {
  installSignalHandlers()
  const opts = options()
  const sha = (await sh('git', ['rev-parse', '--verify', `${opts.base}^{commit}`], { cwd: REPO }).catch(() => { throw new Error(`--base ${opts.base}: not a revision of this repository`) })).trim()
  const head = (await sh('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: REPO })).trim()
  const dirty = (await sh('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: REPO })).trim() !== ''
  const baseDir = await checkoutBase(sha)
  const pairs: Array<{ base: Side, head: Side }> = []
  for (let i = 1; i <= opts.pairs; i++) {
    progress(`pair ${i}/${opts.pairs}: base`)
    const base = await runSide(baseDir, opts)
    progress(`pair ${i}/${opts.pairs}: this checkout`)
    const mine = await runSide(REPO, opts)
    pairs.push({ base, head: mine })
    progress(`pair ${i}: live ${f0(base.live)} -> ${f0(mine.live)} files/s, catch-up ${f0(base.catchUp)} -> ${f0(mine.catchUp)} files/s`)
  }
  const m = await machine(null)
  const lines: string[] = []
  lines.push(`machine: ${m.cpu}, ${m.cores} cores, node ${m.node}, load ${m.load} at the end; ${opts.files} files of 4 KiB on ${opts.tmpfs ? 'tmpfs (/dev/shm)' : 'the temp folder\'s file system'}`)
  lines.push(`base: ${opts.base} (${sha.slice(0, 12)}); this checkout: ${head}${dirty ? ' with uncommitted changes' : ''}; ${opts.pairs} alternated pair(s), the base first`)
  lines.push('')
  lines.push('pair   live files/s base -> this   catch-up files/s base -> this   live CPU s A+B   catch-up CPU s B')
  pairs.forEach((p, i) => {
    lines.push(`${String(i + 1).padStart(4)}   ${f0(p.base.live).padStart(9)} -> ${f0(p.head.live).padEnd(9)}   ${f0(p.base.catchUp).padStart(13)} -> ${f0(p.head.catchUp).padEnd(13)}   ${f1(p.base.liveCpu)} -> ${f1(p.head.liveCpu)}       ${f1(p.base.catchUpCpuB)} -> ${f1(p.head.catchUpCpuB)}`)
  })
  lines.push('')
  const summary: Record<string, unknown> = {}
  for (const key of ['live', 'catchUp'] as const) {
    const b = stats(pairs.map((p) => p.base[key]))
    const h = stats(pairs.map((p) => p.head[key]))
    const wins = pairs.filter((p) => p.head[key] > p.base[key]).length
    summary[key] = { base: b, head: h, headWins: wins }
    lines.push(`${key === 'live' ? 'live    ' : 'catch-up'}  base median ${f0(b.median)} mean ${f0(b.mean)} (${f0(b.min)}-${f0(b.max)}); this median ${f0(h.median)} mean ${f0(h.mean)} (${f0(h.min)}-${f0(h.max)}); median ratio ${(h.median / b.median).toFixed(3)}; this checkout faster in ${wins} of ${pairs.length}`)
  }
  process.stdout.write(lines.join('\n') + '\n')
  await cleanupAll()
  if (opts.json) process.stdout.write(JSON.stringify({ machine: m, options: opts, base: sha, head, dirty, pairs, summary }) + '\n')
}

main().catch(async (err: Error) => {
  process.stderr.write(`bench:ab: ${err.message}\n`)
  await cleanupAll()
  process.exit(1)
})
