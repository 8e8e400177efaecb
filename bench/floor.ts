/**
 * The floor under the replication benchmark: how fast the stack a node is built on moves
 * the benchmark's data from one process to another when none of syncmesh's own logic runs,
 * against rsync in daemon mode in the same run.
 *
 * What it keeps, as a node uses it: libp2p over TCP on 127.0.0.1 with the mesh's
 * private-network cipher, Noise (with the node's node:crypto ChaCha20-Poly1305) and yamux
 * (with the node's window rule and heap settings); the node's length-prefixed frame reader;
 * SHA-256 of everything received.
 *
 * - Small files (`--files N` of 4 KiB): the sender streams every file unasked, as one frame
 *   each (name, hash, content), sends of 256 KiB. The receiver checks each hash, has the
 *   node's temp-file thread write the file (mode, times) and rename it into place, and
 *   commits one LevelDB batch of JSON records (a record as the store keeps one) per group
 *   of 256 files. Left out: the index exchange and its cursors, version vectors and the
 *   conflict rule, requests, the pull queue and the second commit of an install, the block
 *   index, the look at each target before it is replaced, the watcher's look at each
 *   installed file, gossipsub and identify. The sender holds the files in memory (a node's
 *   block cache holds the small files it recorded a moment ago, as in the benchmark).
 * - One large stream (`--big-mb N`, 0 skips it): N MiB in frames of 1 MiB over four
 *   streams (the puller keeps several requests in flight), each frame hashed at the
 *   receiver and dropped: nothing is written or read from disk.
 *
 * Each run starts both processes afresh (a node restarted to catch up is as cold);
 * `--warm` has the receiver pull the small files twice and reports the second time.
 *
 *   node dist/bench/floor.js [--files N] [--big-mb N] [--runs K] [--warm] [--skip-rsync] [--cpu-prof DIR]
 */
import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { closeSync, openSync, readSync, readdirSync } from 'node:fs'
import { mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { noise } from '@chainsafe/libp2p-noise'
import type { Stream } from '@libp2p/interface'
import { tcp } from '@libp2p/tcp'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { Level } from 'level'
import { createLibp2p, type Libp2p } from 'libp2p'
import { Uint8ArrayList } from 'uint8arraylist'
import { tuneGc } from '../src/node/gc.js'
import { noiseCrypto } from '../src/node/noise-crypto.js'
import { meshProtector } from '../src/node/pnet.js'
import { windowUpdatesAtHalf } from '../src/node/yamux-window.js'
import { readFrames } from '../src/transfer/frames.js'
import { TempWriter } from '../src/transfer/tempwriter.js'
import {
  cleanupAll, cpuSeconds, installSignalHandlers, machine, now, onCleanup, runRsync, startRsyncDaemon,
  stopChild, trackChild, trackTempDir, which
} from './lib.js'

const SMALL_PROTOCOL = '/syncmesh-floor/small/1'
const BIG_PROTOCOL = '/syncmesh-floor/big/1'
const SIZE = 4096
/** Files written and recorded together (the puller's group). */
const GROUP = 256
/** Bytes the sender gathers before one send (the node's block server coalesces too). */
const COALESCE = 256 * 1024
const MIB = 1024 * 1024
/** A large file's block (chooseBlockSize for 1 GiB). */
const BIG_FRAME = MIB
/** Streams the large transfer is spread over. */
const BIG_STREAMS = 4

interface Received { files: number, bad: number, seconds: number, cpuS: number }

async function listen (key: Uint8Array): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise({ crypto: noiseCrypto })],
    streamMuxers: [yamux()],
    connectionProtector: meshProtector({ key })
  })
}

/** Varint length prefix. */
function prefix (n: number): Uint8Array {
  const out: number[] = []
  while (n >= 128) { out.push((n % 128) | 0x80); n = Math.floor(n / 128) }
  out.push(n)
  return Uint8Array.from(out)
}

/**
 * Few chunks per send: yamux takes its frames from the list with uint8arraylist's
 * `consume`, which costs time in the number of chunks (a send of 256 KiB as five chunks a
 * file was most of the sender's CPU).
 */
async function send (stream: Stream, data: Uint8Array | Uint8ArrayList): Promise<void> {
  if (!stream.send(data)) await stream.onDrain()
}

function readSmall (path: string): Buffer {
  const fd = openSync(path, 'r')
  try {
    const buf = Buffer.allocUnsafe(SIZE + 1)
    let n = 0
    for (let r; (r = readSync(fd, buf, n, buf.byteLength - n, n)) > 0;) n += r
    return buf.subarray(0, n)
  } finally {
    closeSync(fd)
  }
}

/** The sender: the small files of `dir`, unasked, on each small stream; the asked MiB on each big one. */
async function serve (dir: string, key: Uint8Array): Promise<void> {
  const names = readdirSync(dir).sort()
  const frames = names.map((n) => {
    const name = Buffer.from(n)
    const data = readSmall(join(dir, n))
    const head = Buffer.allocUnsafe(2)
    head.writeUInt16BE(name.byteLength)
    const body = Buffer.concat([head, name, createHash('sha256').update(data).digest(), data])
    return Buffer.concat([prefix(body.byteLength), body])
  })
  const pattern = randomBytes(64 * BIG_FRAME)
  const node = await listen(key)
  await node.handle(SMALL_PROTOCOL, (stream) => {
    void (async () => {
      let out: Uint8Array[] = []
      let bytes = 0
      for (const f of frames) {
        out.push(f)
        bytes += f.byteLength
        if (bytes >= COALESCE) { await send(stream, Buffer.concat(out)); out = []; bytes = 0 }
      }
      if (out.length > 0) await send(stream, Buffer.concat(out))
      await stream.close()
    })().catch((err: Error) => { process.stderr.write(`floor sender: ${err.message}\n`) })
  })
  await node.handle(BIG_PROTOCOL, (stream) => {
    void (async () => {
      const mib = await new Promise<number>((resolve, reject) => {
        readFrames(stream, 16, (f) => { resolve(Number(Buffer.from(f.subarray()).toString())) }).catch(reject)
      })
      for (let i = 0; i < mib; i++) {
        const off = (i % 64) * BIG_FRAME
        await send(stream, new Uint8ArrayList(prefix(BIG_FRAME), pattern.subarray(off, off + BIG_FRAME)))
      }
      await stream.close()
    })().catch((err: Error) => { process.stderr.write(`floor sender: ${err.message}\n`) })
  })
  process.stdout.write(`${node.getMultiaddrs()[0].toString()}\n`)
  await new Promise<void>((resolve) => { process.once('SIGTERM', resolve) })
  await node.stop()
}

/**
 * The small-file receiver, `rounds` times into a fresh folder each (the first rounds warm
 * up the code, as in a node that has been running); prints the last round's result.
 */
async function receiveSmall (addr: string, dst: string, dbDir: string, key: Uint8Array, files: number, rounds: number): Promise<void> {
  const db = new Level<string, unknown>(dbDir, { valueEncoding: 'json' })
  await db.open()
  const writer = new TempWriter(null)
  const node = await listen(key)
  let result: Received | null = null
  for (let round = 1; round <= rounds; round++) {
    result = await smallRound(node, addr, join(dst, `round-${round}`), db, writer, files)
  }
  process.stdout.write(`${JSON.stringify(result)}\n`)
  await node.stop()
  await writer.close()
  await db.close()
}

async function smallRound (node: Libp2p, addr: string, dst: string, db: Level<string, unknown>, writer: TempWriter, files: number): Promise<Received> {
  const tmp = join(dst, '.tmp')
  await mkdir(tmp, { recursive: true })
  const cpu0 = process.cpuUsage()
  const t0 = now()
  const stream = await node.dialProtocol(multiaddr(addr), SMALL_PROTOCOL)
  let got = 0
  let bad = 0
  const groups: Array<Promise<void>> = []
  let group: Array<{ name: string, data: Uint8ArrayList, hash: string }> = []
  const install = (g: typeof group): Promise<void> => (async () => {
    const mtimeMs = Date.now()
    const written = await Promise.all(g.map(async (f) => {
      const part = join(tmp, `${f.hash.slice(0, 32)}.part`)
      const st = await writer.write(part, f.data, 0o644, mtimeMs)
      await writer.replace(part, join(dst, f.name), null)
      return st
    }))
    const batch = db.batch()
    g.forEach((f, i) => {
      const version = { vv: { n0000000000000001: 1 }, hlc: { wall: mtimeMs, logical: 0 }, node: 'n0000000000000001' }
      batch.put(`r!${dst}/${f.name}`, {
        path: f.name, type: 'file', mode: 0o644, size: SIZE, mtimeMs, blockSize: 131072, blocks: [f.hash], hash: f.hash,
        target: '', deleted: false, version, seq: i, have: true, disk: { ...written[i], hash: f.hash, target: '', version }
      })
    })
    await batch.write()
  })()
  await new Promise<void>((resolve, reject) => {
    readFrames(stream, 1 << 20, (frame) => {
      const nameLen = frame.getUint16(0)
      const name = Buffer.from(frame.subarray(2, 2 + nameLen)).toString()
      const want = Buffer.from(frame.subarray(2 + nameLen, 2 + nameLen + 32)).toString('hex')
      const data = frame.sublist(2 + nameLen + 32)
      const h = createHash('sha256')
      for (const c of data) h.update(c)
      if (h.digest('hex') !== want) bad++
      else group.push({ name, data, hash: want })
      if (++got === files || group.length >= GROUP) { groups.push(install(group)); group = [] }
      if (got === files) resolve()
    }).catch((err: Error) => { if (got < files) reject(err) })
  })
  await Promise.all(groups)
  const cpu = process.cpuUsage(cpu0)
  return { files: got, bad, seconds: (now() - t0) / 1000, cpuS: (cpu.user + cpu.system) / 1e6 }
}

/** The large receiver: `mib` MiB over BIG_STREAMS streams, every frame hashed, nothing kept. */
async function receiveBig (addr: string, key: Uint8Array, mib: number): Promise<void> {
  const node = await listen(key)
  const cpu0 = process.cpuUsage()
  const t0 = now()
  const conn = await node.dial(multiaddr(addr))
  await Promise.all(Array.from({ length: BIG_STREAMS }, async (_x, s) => {
    const part = Math.floor(mib / BIG_STREAMS) + (s < mib % BIG_STREAMS ? 1 : 0)
    if (part === 0) return
    const stream = await conn.newStream(BIG_PROTOCOL)
    const ask = Buffer.from(String(part))
    await send(stream, new Uint8ArrayList(prefix(ask.byteLength), ask))
    let frames = 0
    await new Promise<void>((resolve, reject) => {
      readFrames(stream, 2 * BIG_FRAME, (frame) => {
        const h = createHash('sha256')
        for (const c of frame) h.update(c)
        h.digest()
        if (++frames === part) resolve()
      }).catch((err: Error) => { if (frames < part) reject(err) })
    })
  }))
  const cpu = process.cpuUsage(cpu0)
  process.stdout.write(`${JSON.stringify({ files: 1, bad: 0, seconds: (now() - t0) / 1000, cpuS: (cpu.user + cpu.system) / 1e6 })}\n`)
  await node.stop()
}

let nodeArgs: string[] = []

/** This script again in a child process, in a role; calls `onLine` with each line it prints. */
async function child (args: string[], onLine: (line: string) => void): Promise<{ stop: () => Promise<void>, pid: number | undefined, exited: Promise<number | null> }> {
  const cp = trackChild(spawn(process.execPath, ['--initial-old-space-size=128', ...nodeArgs, process.argv[1], ...args], { stdio: ['ignore', 'pipe', 'inherit'] }))
  let buf = ''
  cp.stdout!.setEncoding('utf8')
  cp.stdout!.on('data', (c: string) => {
    buf += c
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1) }
  })
  const exited = new Promise<number | null>((resolve) => cp.once('exit', resolve))
  return { stop: async () => { await stopChild(cp, 5000) }, pid: cp.pid, exited }
}

async function timed (fn: () => Promise<void>): Promise<number> {
  const t = now()
  await fn()
  return (now() - t) / 1000
}

function positive (name: string, v: string | undefined, zeroOk = false): number {
  const n = Number(v)
  if (!Number.isInteger(n) || n < (zeroOk ? 0 : 1)) throw new Error(`--${name} must be a ${zeroOk ? 'non-negative' : 'positive'} integer`)
  return n
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      files: { type: 'string', default: '10000' },
      'big-mb': { type: 'string', default: '1024' },
      runs: { type: 'string', default: '3' },
      warm: { type: 'boolean' },
      'skip-rsync': { type: 'boolean' },
      'cpu-prof': { type: 'string' },
      // the child processes' roles
      role: { type: 'string' },
      dir: { type: 'string' },
      dst: { type: 'string' },
      db: { type: 'string' },
      addr: { type: 'string' },
      key: { type: 'string' },
      rounds: { type: 'string', default: '1' }
    }
  })
  const files = positive('files', values.files)
  const bigMb = positive('big-mb', values['big-mb'], true)
  if (values.role != null) {
    // the node's own settings of the stack (src/node/gc.ts, src/node/yamux-window.ts)
    tuneGc()
    windowUpdatesAtHalf()
    const key = Buffer.from(values.key ?? '', 'hex')
    if (values.role === 'serve') return await serve(values.dir!, key)
    if (values.role === 'receive-small') return await receiveSmall(values.addr!, values.dst!, values.db!, key, files, positive('rounds', values.rounds))
    if (values.role === 'receive-big') return await receiveBig(values.addr!, key, bigMb)
    throw new Error(`unknown role ${values.role}`)
  }

  installSignalHandlers()
  const runs = positive('runs', values.runs)
  if (values['cpu-prof'] != null) nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof']}`]
  const tmp = await mkdtemp(join(tmpdir(), 'syncmesh-floor-'))
  trackTempDir(tmp)
  const rsync = values['skip-rsync'] === true ? null : await which('rsync')
  const m = await machine(rsync)
  process.stdout.write(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, node ${m.node}, linux ${m.kernel}, rsync ${m.rsync ?? '-'}; load ${m.load}\n`)
  process.stdout.write(`floor:   libp2p (TCP, private network, Noise, yamux) and SHA-256; small files also written, renamed and recorded (LevelDB), the large stream only hashed\n`)
  let daemon: Awaited<ReturnType<typeof startRsyncDaemon>> | null = null
  if (rsync != null) {
    await mkdir(join(tmp, 'rsyncd'))
    await mkdir(join(tmp, 'rsync-dst'))
    const d = await startRsyncDaemon(rsync, join(tmp, 'rsyncd'), join(tmp, 'rsync-dst'))
    onCleanup(async () => { await d.stop() })
    daemon = d
  }
  let bigSrc: string | null = null
  if (bigMb > 0 && daemon != null) {
    bigSrc = join(tmp, 'big-src')
    await mkdir(bigSrc)
    const fh = await open(join(bigSrc, 'big.dat'), 'w')
    for (let i = 0; i < bigMb; i++) await fh.write(randomBytes(MIB))
    await fh.close()
  }
  const key = randomBytes(32).toString('hex')
  for (let run = 1; run <= runs; run++) {
    // fresh folders each run: this disk makes new files slower for a while after many were deleted
    const src = join(tmp, `src-${run}`)
    await mkdir(src)
    for (let i = 0; i < files; i++) await writeFile(join(src, `f${String(i).padStart(6, '0')}.dat`), randomBytes(SIZE))
    let resolveAddr: (addr: string) => void = () => {}
    const ready = new Promise<string>((resolve) => { resolveAddr = resolve })
    const server = await child(['--role', 'serve', '--dir', src, '--key', key], (line) => { if (line.includes('/p2p/')) resolveAddr(line.trim()) })
    const addr = await ready
    const receive = async (args: string[], expected: number): Promise<{ r: Received, senderCpuS: number }> => {
      const cpu0 = cpuSeconds(server.pid) ?? 0
      let result: Received | null = null
      const receiver = await child([...args, '--addr', addr, '--key', key], (line) => {
        if (line.startsWith('{')) result = JSON.parse(line) as Received
      })
      const code = await receiver.exited
      const r = result as Received | null
      if (code !== 0 || r == null || r.files !== expected || r.bad > 0) throw new Error(`run ${run}: the receiver exited ${code} with ${JSON.stringify(r)}`)
      return { r, senderCpuS: (cpuSeconds(server.pid) ?? cpu0) - cpu0 }
    }
    const rounds = values.warm === true ? '2' : '1'
    const small = await receive(['--role', 'receive-small', '--dst', join(tmp, `dst-${run}`), '--db', join(tmp, `db-${run}`), '--files', String(files), '--rounds', rounds], files)
    const big = bigMb > 0 ? await receive(['--role', 'receive-big', '--big-mb', String(bigMb)], 1) : null
    await server.stop()
    const rsyncSmallS = daemon == null ? null : await timed(async () => { await runRsync(rsync!, ['-a', `${src}/`, daemon.url(`small-${run}/`)]) })
    const rsyncBigS = daemon == null || bigSrc == null ? null : await timed(async () => { await runRsync(rsync!, ['-a', `${bigSrc}/`, daemon.url(`big-${run}/`)]) })
    await rm(join(tmp, 'rsync-dst', `big-${run}`), { recursive: true, force: true })
    const cpu = (x: { r: Received, senderCpuS: number }): string => `CPU s receiver ${x.r.cpuS.toFixed(2)}, sender ${x.senderCpuS.toFixed(2)}`
    process.stdout.write(`run ${run}: ${files} x 4 KiB${values.warm === true ? ' (warm receiver)' : ''}: floor ${(files / small.r.seconds).toFixed(0)} files/s (${small.r.seconds.toFixed(2)} s; ${cpu(small)})` +
      (rsyncSmallS == null ? '' : `; rsync ${(files / rsyncSmallS).toFixed(0)} files/s (${rsyncSmallS.toFixed(2)} s); floor/rsync ${(rsyncSmallS / small.r.seconds).toFixed(2)}`) + '\n')
    if (big != null) {
      const mbps = (s: number): string => (bigMb * MIB / 1e6 / s).toFixed(1)
      process.stdout.write(`run ${run}: ${bigMb} MiB: floor ${mbps(big.r.seconds)} MB/s (${big.r.seconds.toFixed(2)} s; ${cpu(big)})` +
        (rsyncBigS == null ? '' : `; rsync ${mbps(rsyncBigS)} MB/s; floor/rsync ${(rsyncBigS / big.r.seconds).toFixed(2)}`) + '\n')
    }
    await rm(src, { recursive: true, force: true })
  }
}

main().then(async () => { await cleanupAll() }, async (err: Error) => {
  process.stderr.write(`floor: ${err.message}\n`)
  await cleanupAll()
  process.exit(1)
})
