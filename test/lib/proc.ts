/**
 * Driving the real CLI (bin/syncmesh.js on the compiled dist/) as child processes, the way
 * users do. Every process and folder made here is registered for cleanup; tests call
 * `cleanup()` in afterEach, which also runs when a test fails.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { waitFor } from '../sim/harness.js'

export const BIN = resolve(import.meta.dirname, '../../bin/syncmesh.js')

const cleanups: Array<() => Promise<void>> = []

export function onCleanup (fn: () => Promise<void>): void {
  cleanups.push(fn)
}

export async function cleanup (): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
}

export function requireBuild (): void {
  if (!existsSync(resolve(import.meta.dirname, '../../dist/src/cli/main.js'))) {
    throw new Error('dist/ is missing: run `npm test` (it compiles first) or `npm run build`')
  }
}

export async function tempDir (prefix = 'syncmesh-test-'): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), prefix))
  onCleanup(async () => { await rm(d, { recursive: true, force: true }) })
  return d
}

export interface Run { code: number | null, stdout: string, stderr: string }

/** Run `syncmesh ...args` to completion. */
export async function run (...args: string[]): Promise<Run> {
  return await runEnv({}, ...args)
}

/** run, with these environment variables added to (or, undefined, removed from) this process's. */
export async function runEnv (env: NodeJS.ProcessEnv, ...args: string[]): Promise<Run> {
  return await new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } })
    // a command that never ends (a test failing by timeout) does not outlive its test
    onCleanup(async () => { if (p.exitCode == null && p.signalCode == null) p.kill('SIGKILL') })
    let stdout = ''
    let stderr = ''
    p.stdout.on('data', (d: Buffer) => { stdout += d.toString() })
    p.stderr.on('data', (d: Buffer) => { stderr += d.toString() })
    p.on('error', reject)
    p.on('close', (code) => resolve({ code, stdout, stderr }))
  })
}

export interface Started { proc: ChildProcess, addrs: string[], stderr: () => string, exited: Promise<number | null> }

/** `syncmesh start ...args` in the background; resolves once it printed its addresses. */
export async function start (...args: string[]): Promise<Started> {
  return await startUnder([], ...args)
}

/**
 * `start`, run by the command `wrapper` (its words, then node and its arguments: a wrapper
 * that execs them keeps the process id, which the cleanup kills).
 */
export async function startUnder (wrapper: string[], ...args: string[]): Promise<Started> {
  const command = [...wrapper, process.execPath, BIN, 'start', ...args]
  const proc = spawn(command[0], command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => proc.on('close', (code) => resolve(code)))
  onCleanup(async () => {
    if (proc.exitCode == null && proc.signalCode == null) { proc.kill('SIGKILL'); await exited }
  })
  let out = ''
  let err = ''
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr!.on('data', (d: Buffer) => { err += d.toString() })
  await waitFor(() => out.includes('/p2p/') || proc.exitCode != null, 30_000, `node printed its addresses (stderr: ${err})`)
  if (!out.includes('/p2p/')) throw new Error(`node did not start: ${err.trim()}`)
  return { proc, addrs: out.trim().split('\n'), stderr: () => err, exited }
}

/** `syncmesh status --json` of the node in `home`. */
export async function status (home: string): Promise<Record<string, unknown> & { pending: { files: number }, stats: Record<string, Record<string, number>> }> {
  const r = await run('status', '--home', home, '--json')
  if (r.code !== 0) throw new Error(`status failed: ${r.stderr}`)
  return JSON.parse(r.stdout)
}
