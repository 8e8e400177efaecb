/**
 * Prometheus metrics of two real nodes in one process (each its own registry): the
 * figures appear at GET /metrics and move when a file syncs.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { initHome } from './home.js'
import { SyncNode } from './node.js'
import { parseMetricsAddress as parseHostPort } from './metrics.js'
import { waitFor } from '../../test/sim/harness.js'
import { BLOCK_PROTOCOL_V2 } from '../transfer/protocol.js'

const cleanups: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => {})
})

async function scrape (addr: string, path = '/metrics'): Promise<{ status: number, text: string }> {
  const res = await fetch(`http://${addr}${path}`)
  return { status: res.status, text: await res.text() }
}

/** The value of one sample (`name` or `name{labels}`), or undefined. */
function sample (text: string, name: string, labels?: Record<string, string>): number | undefined {
  const want = labels == null ? '' : `{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}${want} `)) return Number(line.slice(name.length + want.length + 1))
  }
  return undefined
}

async function node (root: string, name: string, key?: string): Promise<SyncNode> {
  const home = join(root, name)
  await initHome(home, { keyFile: key })
  const n = await SyncNode.open({ home, listen: ['/ip4/127.0.0.1/tcp/0'], metrics: '127.0.0.1:0' })
  await n.start()
  cleanups.push(async () => { await n.stop() })
  return n
}

describe('metrics', () => {
  it('parses HOST:PORT', () => {
    expect(parseHostPort('127.0.0.1:9100')).toEqual({ host: '127.0.0.1', port: 9100 })
    expect(parseHostPort('[::1]:9100')).toEqual({ host: '::1', port: 9100 })
    expect(parseHostPort(':9100')).toEqual({ host: '127.0.0.1', port: 9100 })
    expect(() => parseHostPort('nope')).toThrow(/HOST:PORT/)
  })

  it('two nodes serve their own figures, which move when a file syncs', async () => {
    const root = await mkdtemp(join(tmpdir(), 'syncmesh-metrics-'))
    cleanups.push(async () => { await rm(root, { recursive: true, force: true }) })
    const a = await node(root, 'a')
    const b = await node(root, 'b', join(root, 'a', 'mesh.key'))
    expect(a.metricsAddr).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(b.metricsAddr).not.toBe(a.metricsAddr)

    const before = await scrape(b.metricsAddr!)
    expect(before.status).toBe(200)
    expect(sample(before.text, 'syncmesh_records_applied_total')).toBe(0)
    expect(sample(before.text, 'syncmesh_blocks_fetched_total')).toBe(0)
    expect((await scrape(a.metricsAddr!, '/')).status).toBe(404)
    expect((await scrape(a.metricsAddr!, '/metrics/x')).status).toBe(404)

    await b.join(a.libp2p.getMultiaddrs()[0].toString())
    const content = randomBytes(600_000)
    await writeFile(join(a.home.dataDir, 'f.bin'), content)
    await waitFor(() => existsSync(join(b.home.dataDir, 'f.bin')), 20_000, 'file replicated to b')

    const aPeer = a.peerId.toString()
    const bPeer = b.peerId.toString()
    await waitFor(async () => (sample((await scrape(b.metricsAddr!)).text, 'syncmesh_files_installed_total') ?? 0) >= 1, 10_000, 'b counted the install')
    const mb = (await scrape(b.metricsAddr!)).text
    const ma = (await scrape(a.metricsAddr!)).text
    expect(sample(mb, 'syncmesh_records_applied_total')).toBeGreaterThanOrEqual(1)
    expect(sample(mb, 'syncmesh_blocks_fetched_total')).toBeGreaterThanOrEqual(1)
    expect(sample(mb, 'syncmesh_blocks_fetched_bytes_total')).toBe(content.byteLength)
    expect(sample(mb, 'syncmesh_peer_bytes_in_total', { peer: aPeer })).toBe(content.byteLength)
    expect(sample(mb, 'syncmesh_pull_queue')).toBe(0)
    // the scanner's: its start-up scan took some time, every directory is watched, nothing overflowed
    expect(sample(ma, 'syncmesh_full_scan_seconds')).toBe(a.scanner.stats.lastFullScanMs / 1000)
    expect(a.scanner.stats.lastFullScanMs).toBeGreaterThan(0)
    expect(sample(ma, 'syncmesh_unwatched_directories')).toBe(0)
    expect(sample(ma, 'syncmesh_watch_overflow_scans_total')).toBe(0)
    expect(sample(ma, 'syncmesh_blocks_served_total')).toBeGreaterThanOrEqual(1)
    expect(sample(ma, 'syncmesh_peer_bytes_out_total', { peer: bPeer })).toBe(content.byteLength)
    expect(sample(ma, 'syncmesh_batches_created_total')).toBeGreaterThanOrEqual(1)
    expect(sample(ma, 'syncmesh_batches_announced_total')).toBeGreaterThanOrEqual(1)
    // exported, and b's own counts (whether gossip or catch-up brought f.bin is timing)
    expect(sample(mb, 'syncmesh_catchup_cursor_moves_total')).toBe(b.announcer.stats.cursorMoves)
    expect(sample(mb, 'syncmesh_batches_already_held_total')).toBe(b.announcer.stats.alreadyHeld)
    // a's own figures only: it fetched nothing
    expect(sample(ma, 'syncmesh_blocks_fetched_total')).toBe(0)

    // libp2p's own metrics, per node: each registry counts its node's block bytes
    const sentA = sample(ma, 'libp2p_data_transfer_bytes_total', { protocol: `${BLOCK_PROTOCOL_V2} sent` }) ?? 0
    const recvB = sample(mb, 'libp2p_data_transfer_bytes_total', { protocol: `${BLOCK_PROTOCOL_V2} received` }) ?? 0
    expect(sentA).toBeGreaterThanOrEqual(content.byteLength)
    expect(recvB).toBeGreaterThanOrEqual(content.byteLength)
    expect(sample(mb, 'libp2p_data_transfer_bytes_total', { protocol: `${BLOCK_PROTOCOL_V2} sent` }) ?? 0).toBeLessThan(content.byteLength)

    // hooks for the relay and the sets
    b.metrics.relayBytes.inc(1234)
    b.metrics.setsByState = () => ({ synced: 2, pending: 1 })
    const hooks = (await scrape(b.metricsAddr!)).text
    expect(sample(hooks, 'syncmesh_relay_uploaded_bytes_total')).toBe(1234)
    expect(sample(hooks, 'syncmesh_sets', { state: 'synced' })).toBe(2)
    expect(sample(hooks, 'syncmesh_sets', { state: 'pending' })).toBe(1)

    // stop closes the server
    const addr = a.metricsAddr!
    await a.stop()
    await expect(fetch(`http://${addr}/metrics`)).rejects.toThrow()
  })

  it('a metrics port in use is refused at start in one line', async () => {
    const root = await mkdtemp(join(tmpdir(), 'syncmesh-metrics-'))
    cleanups.push(async () => { await rm(root, { recursive: true, force: true }) })
    const a = await node(root, 'a')
    await initHome(join(root, 'b'))
    const b = await SyncNode.open({ home: join(root, 'b'), listen: ['/ip4/127.0.0.1/tcp/0'], metrics: a.metricsAddr! })
    await expect(b.start()).rejects.toThrow(/cannot serve metrics on .*address already in use/)
  })
})
