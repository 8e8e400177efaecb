/**
 * Topologies for the simulations: which pairs of nodes may connect. Nodes are 0..n-1; an
 * edge [a, b] always has a < b, and node b dials node a (so start order is ascending).
 */
import type { Rng } from './prng.js'

export type TopologyName = 'full' | 'random' | 'line' | 'star' | 'sites'
export const TOPOLOGIES: readonly TopologyName[] = ['full', 'random', 'line', 'star', 'sites']

export type Edge = [number, number]

export interface Topology {
  name: TopologyName
  n: number
  edges: Edge[]
  /** For 'sites': the site of each node (0 or 1) and the one link between the sites. */
  sites?: number[]
  bridge?: Edge
}

export function edgeKey (a: number, b: number): string {
  return a < b ? `${a}-${b}` : `${b}-${a}`
}

function norm (a: number, b: number): Edge {
  return a < b ? [a, b] : [b, a]
}

export function neighbors (t: Topology): number[][] {
  const out: number[][] = Array.from({ length: t.n }, () => [])
  for (const [a, b] of t.edges) {
    out[a].push(b)
    out[b].push(a)
  }
  return out
}

/** Whether the nodes in `alive` (all when omitted) form one connected component. */
export function connected (n: number, edges: readonly Edge[], alive?: ReadonlySet<number>): boolean {
  const nodes = alive == null ? Array.from({ length: n }, (_, i) => i) : [...alive]
  if (nodes.length <= 1) return true
  const adj = new Map<number, number[]>()
  for (const i of nodes) adj.set(i, [])
  for (const [a, b] of edges) {
    if (adj.has(a) && adj.has(b)) {
      adj.get(a)?.push(b)
      adj.get(b)?.push(a)
    }
  }
  const seen = new Set<number>([nodes[0]])
  const stack = [nodes[0]]
  while (stack.length > 0) {
    const x = stack.pop() as number
    for (const y of adj.get(x) ?? []) if (!seen.has(y)) { seen.add(y); stack.push(y) }
  }
  return seen.size === nodes.length
}

/**
 * A random connected k-regular graph (configuration model with restarts). When n·k is odd
 * one node ends with degree k-1 (the pairing leaves one stub over).
 */
export function randomRegular (n: number, k: number, rng: Rng): Edge[] {
  if (n <= 1) return []
  const deg = Math.min(k, n - 1)
  if (deg === n - 1) return fullMesh(n)
  for (let attempt = 0; attempt < 2000; attempt++) {
    const stubs: number[] = []
    for (let i = 0; i < n; i++) for (let j = 0; j < deg; j++) stubs.push(i)
    const shuffled = rng.shuffle(stubs)
    const seen = new Set<string>()
    const edges: Edge[] = []
    let ok = true
    for (let i = 0; i + 1 < shuffled.length; i += 2) {
      const a = shuffled[i]
      const b = shuffled[i + 1]
      const key = edgeKey(a, b)
      if (a === b || seen.has(key)) { ok = false; break }
      seen.add(key)
      edges.push(norm(a, b))
    }
    if (ok && connected(n, edges)) return edges
  }
  // fall back: a ring plus random chords (connected, degree about k)
  const edges = new Map<string, Edge>()
  for (let i = 0; i < n; i++) edges.set(edgeKey(i, (i + 1) % n), norm(i, (i + 1) % n))
  const want = Math.floor((n * deg) / 2)
  for (let guard = 0; edges.size < want && guard < n * n; guard++) {
    const a = rng.int(0, n - 1)
    const b = rng.int(0, n - 1)
    if (a !== b) edges.set(edgeKey(a, b), norm(a, b))
  }
  return [...edges.values()]
}

export function fullMesh (n: number): Edge[] {
  const edges: Edge[] = []
  for (let a = 0; a < n; a++) for (let b = a + 1; b < n; b++) edges.push([a, b])
  return edges
}

/**
 * @param degree - for 'random' (and the inside of large sites): links per node. @default 4
 */
export function makeTopology (name: TopologyName, n: number, rng: Rng, degree = 4): Topology {
  switch (name) {
    case 'full': return { name, n, edges: fullMesh(n) }
    case 'random': return { name, n, edges: randomRegular(n, degree, rng) }
    case 'line': return { name, n, edges: Array.from({ length: Math.max(0, n - 1) }, (_, i): Edge => [i, i + 1]) }
    case 'star': return { name, n, edges: Array.from({ length: Math.max(0, n - 1) }, (_, i): Edge => [0, i + 1]) }
    case 'sites': {
      // two sites: nodes 0..h-1 and h..n-1, each well connected inside, one link between
      const h = Math.ceil(n / 2)
      const sites = Array.from({ length: n }, (_, i) => (i < h ? 0 : 1))
      const inside = (offset: number, size: number): Edge[] =>
        (size <= 8 ? fullMesh(size) : randomRegular(size, degree, rng)).map(([a, b]): Edge => [a + offset, b + offset])
      const edges = [...inside(0, h), ...inside(h, n - h)]
      let bridge: Edge | undefined
      if (n - h > 0) {
        bridge = [rng.int(0, h - 1), rng.int(h, n - 1)]
        edges.push(bridge)
      }
      return { name, n, edges, sites, bridge }
    }
  }
}

export function describeTopology (t: Topology): string {
  const deg = neighbors(t).map((x) => x.length)
  const extra = t.bridge != null ? `, bridge ${t.bridge[0]}-${t.bridge[1]}` : ''
  return `${t.name}: ${t.n} nodes, ${t.edges.length} links, degree ${Math.min(...deg)}..${Math.max(...deg)}${extra}`
}
