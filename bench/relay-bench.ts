/**
 * `npm run bench:relay`: a set of mixed file sizes (default 1 GiB in all) through the
 * upload relay, against copying the same files directly (`cp -r`, then `sync`).
 *
 * Two nodes, each a child process running the real CLI: A serves the HTTP upload API, R is
 * the relay. For each backend (the folder backend, then the local Drive server of
 * src/relay/fake-drive.ts, which keeps files in memory and speaks the real protocol):
 *   1. a client PUTs every file to A's API (4 at a time): MB/s of the upload;
 *   2. the client commits on A; the relay pulls the content from A over the mesh, keeps
 *      the committed versions and uploads them: MB/s from the commit to "uploaded";
 *   3. end to end: the client's first byte to the set being whole in the backend.
 * Each relay run gets a fresh relay node (one relay per backend), so the second run
 * transfers everything again.
 *
 * Options: --size-mb N (1024), --backend folder|drive|both (both), --json (last line: one
 * JSON object with every figure), --keep (leave the temp folder), --cpu-prof DIR (a V8 CPU
 * profile of each node: A.cpuprofile, R-folder.cpuprofile, ...).
 */
import { randomFillSync } from 'node:crypto'
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, open, readFile, readdir, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { CLI, cleanupAll, installSignalHandlers, machine, now, onCleanup, run, startNode, status, trackTempDir, waitFor } from './lib.js'
import { FakeDrive } from '../src/relay/fake-drive.js'

const MiB = 1024 * 1024

interface Options { sizeMb: number, backends: Array<'folder' | 'drive'>, json: boolean, keep: boolean, cpuProfDir: string | null }

function parseOptions (argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: { 'size-mb': { type: 'string' }, backend: { type: 'string' }, json: { type: 'boolean' }, keep: { type: 'boolean' }, 'cpu-prof': { type: 'string' } },
    strict: true
  })
  const sizeMb = Number(values['size-mb'] ?? 1024)
  if (!Number.isFinite(sizeMb) || sizeMb < 16) throw new Error('--size-mb must be 16 or more')
  const b = values.backend ?? 'both'
  if (!['folder', 'drive', 'both'].includes(b)) throw new Error('--backend must be folder, drive or both')
  return { sizeMb, backends: b === 'both' ? ['folder', 'drive'] : [b as 'folder' | 'drive'], json: values.json === true, keep: values.keep === true, cpuProfDir: values['cpu-prof'] ?? null }
}

const progress = (msg: string): void => { process.stderr.write(`[relay-bench] ${msg}\n`) }

/** Mixed sizes: 3/8 of the bytes in 128 MiB files, 1/4 in 16 MiB, 1/4 in 1 MiB, 1/8 in 64 KiB. */
function plan (totalMb: number): Array<{ path: string, size: number }> {
  const out: Array<{ path: string, size: number }> = []
  const add = (share: number, size: number, dir: string): void => {
    const n = Math.max(1, Math.round(totalMb * MiB * share / size))
    for (let i = 0; i < n; i++) out.push({ path: `${dir}/f${String(i).padStart(4, '0')}.bin`, size })
  }
  add(3 / 8, 128 * MiB, 'large')
  add(1 / 4, 16 * MiB, 'medium')
  add(1 / 4, MiB, 'small')
  add(1 / 8, 64 * 1024, 'tiny')
  return out
}

async function writeRandom (path: string, size: number): Promise<void> {
  const fh = await open(path, 'w')
  const buf = Buffer.allocUnsafe(Math.min(size, 4 * MiB))
  try {
    for (let off = 0; off < size; off += buf.byteLength) {
      const n = Math.min(buf.byteLength, size - off)
      randomFillSync(buf, 0, n)
      await fh.write(buf, 0, n, off)
    }
  } finally {
    await fh.close()
  }
}

async function sh (cmd: string, args: string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => execFile(cmd, args, (err) => { if (err != null) reject(err); else resolve() }))
}

interface Api { url: string, token: string }

async function call (api: Api, method: string, path: string, body?: Buffer | object): Promise<any> {
  const res = await fetch(`${api.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${api.token}` },
    body: body == null ? undefined : Buffer.isBuffer(body) ? body : JSON.stringify(body)
  })
  const json = await res.json() as { error?: string }
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${json.error ?? ''}`)
  return json
}

interface RunResult { backend: string, uploadMbPerS: number, relayMbPerS: number, endToEndMbPerS: number, uploadS: number, relayS: number }

async function main (): Promise<void> {
  installSignalHandlers()
  const opts = parseOptions(process.argv.slice(2))
  const m = await machine(null)
  const tmp = await mkdtemp(join(tmpdir(), 'syncmesh-relay-bench-'))
  if (!opts.keep) trackTempDir(tmp)
  const files = plan(opts.sizeMb)
  const total = files.reduce((n, f) => n + f.size, 0)
  const mb = total / 1e6
  progress(`temp folder ${tmp}; ${files.length} files, ${(total / MiB).toFixed(0)} MiB`)

  const src = join(tmp, 'src')
  for (const f of files) {
    await mkdir(join(src, f.path, '..'), { recursive: true })
    await writeRandom(join(src, f.path), f.size)
  }
  await sh('sync', [])

  // baseline: copy the files directly
  let t = now()
  await sh('cp', ['-r', src, join(tmp, 'copy')])
  await sh('sync', [])
  const copyS = (now() - t) / 1000
  progress(`cp -r + sync: ${copyS.toFixed(2)} s = ${(mb / copyS).toFixed(0)} MB/s`)

  const homeA = join(tmp, 'A')
  await run([CLI, 'init', '--home', homeA])
  const logs = join(tmp, 'logs')
  await mkdir(logs)
  const prof = opts.cpuProfDir ?? undefined
  if (prof != null) await mkdir(prof, { recursive: true })
  const a = await startNode('A', homeA, logs, { cpuProfDir: prof, extraArgs: ['--api', '127.0.0.1:0'] })
  onCleanup(async () => { await a.stop(60_000) })
  const api: Api = { url: (await status(homeA)).api as unknown as string, token: (await readFile(join(homeA, 'api.token'), 'utf8')).trim() }

  const results: RunResult[] = []
  for (const backend of opts.backends) {
    const homeR = join(tmp, `R-${backend}`)
    await run([CLI, 'init', '--home', homeR, '--key', join(homeA, 'mesh.key')])
    let spec: string
    let fake: FakeDrive | null = null
    if (backend === 'folder') {
      spec = `folder:${join(tmp, 'cloud')}`
    } else {
      const oauth = { clientId: 'bench', clientSecret: 'bench', refreshToken: 'bench' }
      fake = await new FakeDrive({ oauth }).start()
      const f = fake
      onCleanup(async () => { await f.stop() })
      const cfgPath = join(homeR, 'config.json')
      await writeFile(cfgPath, JSON.stringify({ ...JSON.parse(await readFile(cfgPath, 'utf8')), drive: { auth: { type: 'oauth2', ...oauth, tokenUrl: fake.tokenUrl }, rootFolderId: fake.rootFolderId, rootUrl: fake.url } }))
      spec = 'drive'
    }
    const r = await startNode(`R-${backend}`, homeR, logs, { cpuProfDir: prof, join: a.addrs[0], extraArgs: ['--relay', '--backend', spec] })
    await waitFor('R to connect to A', async () => (await status(homeR)).peers.length > 0, 30_000)

    const set = await call(api, 'POST', '/v1/sets', { name: `bench-${backend}` }) as { id: string }
    t = now()
    let next = 0
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < files.length) {
        const f = files[next++]
        await call(api, 'PUT', `/v1/sets/${set.id}/files/${f.path}`, await readFile(join(src, f.path)))
      }
    }))
    const uploadS = (now() - t) / 1000
    const t2 = now()
    await call(api, 'POST', `/v1/sets/${set.id}/commit`)
    await waitFor('the set to be uploaded', async () => {
      const v = await call(api, 'GET', `/v1/sets/${set.id}`) as { state: string, error: string | null }
      if (v.state === 'failed') throw new Error(`the relay failed: ${v.error ?? ''}`)
      return v.state === 'uploaded'
    }, 30 * 60_000, 200)
    const relayS = (now() - t2) / 1000
    const endS = (now() - t) / 1000
    // check what arrived
    if (backend === 'folder') {
      const got = await readdir(join(tmp, 'cloud', `bench-${backend}`), { recursive: true })
      if (got.filter((p) => p.endsWith('.bin')).length !== files.length) throw new Error('the folder backend is missing files')
      for (const f of files.slice(0, 3)) if ((await stat(join(tmp, 'cloud', `bench-${backend}`, f.path))).size !== f.size) throw new Error(`${f.path} has the wrong size`)
    } else if (fake != null && fake.filesUploaded !== files.length + 1) {
      throw new Error(`the Drive server got ${fake.filesUploaded} files, expected ${files.length + 1}`)
    }
    const res = { backend, uploadS, relayS, uploadMbPerS: mb / uploadS, relayMbPerS: mb / relayS, endToEndMbPerS: mb / endS }
    results.push(res)
    progress(`${backend}: API upload ${uploadS.toFixed(2)} s (${res.uploadMbPerS.toFixed(0)} MB/s), commit -> uploaded ${relayS.toFixed(2)} s (${res.relayMbPerS.toFixed(0)} MB/s), end to end ${res.endToEndMbPerS.toFixed(0)} MB/s`)
    await r.stop(60_000)
    await fake?.stop()
  }

  const copyMbPerS = mb / copyS
  const lines = [
    '',
    `relay benchmark: ${files.length} files, ${(total / MiB).toFixed(0)} MiB (mixed: 128 MiB, 16 MiB, 1 MiB, 64 KiB)`,
    `machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.kernel}, node ${m.node}, load ${m.load}`,
    `baseline: cp -r + sync ${copyMbPerS.toFixed(0)} MB/s`,
    '',
    'backend   API upload MB/s   commit->uploaded MB/s   end to end MB/s   end to end / cp',
    ...results.map((r) => `${r.backend.padEnd(9)} ${r.uploadMbPerS.toFixed(0).padStart(15)}   ${r.relayMbPerS.toFixed(0).padStart(21)}   ${r.endToEndMbPerS.toFixed(0).padStart(15)}   ${(r.endToEndMbPerS / copyMbPerS).toFixed(2).padStart(15)}`),
    ''
  ]
  process.stdout.write(lines.join('\n') + '\n')
  if (opts.json) process.stdout.write(JSON.stringify({ machine: m, files: files.length, bytes: total, copyMbPerS, results }) + '\n')
}

main().then(async () => { await cleanupAll() }, async (err: Error) => {
  progress(`failed: ${err.message}`)
  await cleanupAll()
  process.exitCode = 1
})
