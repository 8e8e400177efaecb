/**
 * The node's figures for Prometheus: `GET /metrics` on `--metrics HOST:PORT`.
 *
 * Every node has its own prom-client Registry (never the global one), so several nodes in
 * one process (simulations, tests) each report their own figures. Most figures already
 * exist as counters in the node's parts (puller, block server, announcer, batcher,
 * catch-up); they are read when Prometheus scrapes, not counted twice.
 */
import { createServer, type Server } from 'node:http'
import { closeHttp, listenHttp, parseHostPort } from './http.js'
import type { Metrics } from '@libp2p/interface'
import { Counter, Gauge, Registry } from 'prom-client'
import type { PeerTraffic } from '../transfer/protocol.js'

/** What the metrics read from the node at scrape time; null/undefined while it is not started. */
export interface MetricsSource {
  stats: () => Record<string, Record<string, number>> | null
  traffic: () => PeerTraffic | null
  /** Paths whose winning version is not on disk yet. */
  pullQueue: () => number
  /** Conflict copies in the folder. */
  conflicts: () => Promise<number>
}

export class MetricsError extends Error {
  override name = 'MetricsError'
}

/** `--metrics` HOST:PORT -> host and port (MetricsError with one line otherwise). */
export function parseMetricsAddress (s: string): { host: string, port: number } {
  return parseHostPort(s, (msg) => new MetricsError(`--metrics ${msg}`))
}

let moduleInstances = 0

export class NodeMetrics {
  readonly registry = new Registry()
  /** Bytes the relay uploaded to its backend (the relay increments it). */
  readonly relayBytes: Counter
  /**
   * Sets by state, for the `syncmesh_sets{state}` gauge. The default reports none; the
   * part of the node that knows the sets replaces it.
   */
  setsByState: () => Record<string, number> = () => ({})
  private readonly source: MetricsSource
  private server: Server | null = null
  private conflictCache: { at: number, value: number } | null = null

  constructor (source: MetricsSource) {
    this.source = source
    const stat = (group: string, key: string): number | undefined => this.source.stats()?.[group]?.[key]
    const fromStat = (name: string, help: string, group: string, key: string): void => {
      this.counter(name, help, () => stat(group, key))
    }
    fromStat('syncmesh_batches_created_total', 'Batches of local changes closed (ready to announce)', 'gossip', 'batchesClosed')
    fromStat('syncmesh_batches_announced_total', 'Batch announcements published over gossip (batches closed meanwhile are bulked into one)', 'gossip', 'announced')
    fromStat('syncmesh_batches_received_total', 'Batch announcements received over gossip', 'gossip', 'received')
    this.counter('syncmesh_records_applied_total', 'Remote records that changed this node\'s store (gossip and index catch-up)', () => {
      const g = stat('gossip', 'recordsApplied')
      const c = stat('catchUp', 'recordsApplied')
      return g == null && c == null ? undefined : (g ?? 0) + (c ?? 0)
    })
    fromStat('syncmesh_records_received_total', 'Records received over gossip', 'gossip', 'recordsReceived')
    fromStat('syncmesh_catchup_records_received_total', 'Records received through index catch-up', 'catchUp', 'recordsReceived')
    fromStat('syncmesh_catchup_failures_total', 'Index catch-up exchanges that failed', 'catchUp', 'failures')
    fromStat('syncmesh_catchup_cursor_moves_total', 'Index cursors moved on by complete announcements (catch-up does not send again what gossip delivered)', 'gossip', 'cursorMoves')
    fromStat('syncmesh_batches_already_held_total', 'Announcements not applied: the index cursor for their origin already covered them', 'gossip', 'alreadyHeld')
    fromStat('syncmesh_blocks_served_total', 'Blocks sent to peers', 'blocks', 'blocksServed')
    fromStat('syncmesh_blocks_served_bytes_total', 'Bytes of blocks sent to peers', 'blocks', 'bytesServed')
    fromStat('syncmesh_blocks_not_found_total', 'Block requests this node could not answer', 'blocks', 'notFound')
    fromStat('syncmesh_blocks_served_unhashed_total', 'Blocks sent without hashing them again (the file still as recorded, to a requester that checks)', 'blocks', 'blocksUnhashed')
    fromStat('syncmesh_blocks_served_from_cache_total', 'Small blocks sent from memory (hashed or fetched a moment ago), without reading a file', 'blocks', 'blocksFromCache')
    fromStat('syncmesh_blocks_fetched_total', 'Blocks fetched from peers', 'puller', 'blocksFetched')
    fromStat('syncmesh_blocks_fetched_bytes_total', 'Bytes of blocks fetched from peers', 'puller', 'bytesFetched')
    fromStat('syncmesh_blocks_copied_locally_total', 'Blocks copied from a local file instead of fetched', 'puller', 'blocksCopiedLocally')
    fromStat('syncmesh_blocks_bad_total', 'Blocks received that did not match their hash', 'puller', 'badBlocks')
    fromStat('syncmesh_blocks_reasked_total', 'Blocks sent unhashed that did not match their hash, asked again hashed', 'puller', 'blocksReasked')
    fromStat('syncmesh_files_installed_total', 'Remote versions installed in the data folder', 'puller', 'filesInstalled')
    fromStat('syncmesh_watch_overflow_scans_total', 'Full scans run because the kernel\'s queue of watcher events may have overflowed (events dropped)', 'scanner', 'overflowScans')
    this.gauge('syncmesh_full_scan_seconds', 'How long the last full scan of the data folder took', () => { const ms = stat('scanner', 'lastFullScanMs'); return ms == null ? undefined : ms / 1000 })
    this.gauge('syncmesh_unwatched_directories', 'Directories the watcher cannot watch (out of inotify watches): only the full rescan sees changes there', () => stat('scanner', 'unwatchedDirs'))
    this.perPeer('syncmesh_peer_bytes_in_total', 'Block bytes received from each peer', (t) => t.bytesIn)
    this.perPeer('syncmesh_peer_bytes_out_total', 'Block bytes sent to each peer', (t) => t.bytesOut)
    const src = this.source
    const self = this // the gauges' collect() gets the gauge as `this`
    this.gauge('syncmesh_pull_queue', 'Paths whose winning version is not on disk yet', () => src.pullQueue())
    new Gauge({
      name: 'syncmesh_conflicts',
      help: 'Conflict copies in the data folder (recounted at most every 15 s)',
      registers: [this.registry],
      async collect () { this.set(await self.conflicts()) }
    })
    new Gauge({
      name: 'syncmesh_sets',
      help: 'Sets by state',
      labelNames: ['state'],
      registers: [this.registry],
      collect () {
        this.reset()
        for (const [state, n] of Object.entries(self.setsByState())) this.set({ state }, n)
      }
    })
    this.relayBytes = new Counter({
      name: 'syncmesh_relay_uploaded_bytes_total',
      help: 'Bytes uploaded by the relay to its backend',
      registers: [this.registry]
    })
  }

  private counter (name: string, help: string, read: () => number | undefined): void {
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect () {
        const v = read()
        this.reset()
        if (v != null) this.inc(v)
      }
    })
  }

  private gauge (name: string, help: string, read: () => number | undefined): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      collect () {
        const v = read()
        this.reset()
        if (v != null) this.set(v)
      }
    })
  }

  private perPeer (name: string, help: string, pick: (t: PeerTraffic) => Map<string, number>): void {
    const src = this.source
    new Counter({
      name,
      help,
      labelNames: ['peer'],
      registers: [this.registry],
      collect () {
        this.reset()
        const t = src.traffic()
        if (t == null) return
        for (const [peer, n] of pick(t)) this.inc({ peer }, n)
      }
    })
  }

  private async conflicts (): Promise<number> {
    const now = Date.now()
    if (this.conflictCache != null && now - this.conflictCache.at < 15_000) return this.conflictCache.value
    const value = await this.source.conflicts().catch(() => this.conflictCache?.value ?? 0)
    this.conflictCache = { at: now, value }
    return value
  }

  /**
   * libp2p's own metrics (connections, streams, bytes per protocol, process figures) into
   * this registry. @libp2p/prometheus-metrics keeps its metrics in a module-wide map (and
   * reuses an entry of the same name from another node), so each node loads its own copy
   * of the module.
   */
  async libp2pMetrics (): Promise<(components: { logger: import('@libp2p/interface').ComponentLogger }) => Metrics> {
    const url = import.meta.resolve('@libp2p/prometheus-metrics')
    const mod = await import(`${url}?node=${++moduleInstances}`) as typeof import('@libp2p/prometheus-metrics')
    return mod.prometheusMetrics({ registry: this.registry, preserveExistingMetrics: true })
  }

  /** The figures in Prometheus' text format. */
  async text (): Promise<string> {
    return await this.registry.metrics()
  }

  /** Serve GET /metrics on `hostPort`; resolves with the bound address (`host:port`). */
  async listen (hostPort: string): Promise<string> {
    const at = parseMetricsAddress(hostPort)
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0]
      if (req.method !== 'GET' || path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' })
        res.end('not found: GET /metrics\n')
        return
      }
      this.text().then((body) => {
        res.writeHead(200, { 'content-type': this.registry.contentType })
        res.end(body)
      }, (err: Error) => {
        res.writeHead(500, { 'content-type': 'text/plain' })
        res.end(`${err.message}\n`)
      })
    })
    const bound = await listenHttp(server, at, 'metrics', (msg) => new MetricsError(msg))
    this.server = server
    return bound
  }

  async close (): Promise<void> {
    const server = this.server
    if (server == null) return
    this.server = null
    await closeHttp(server)
  }
}
