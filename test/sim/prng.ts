/**
 * A small seeded PRNG (sfc32, seeded through splitmix32) for the simulations: topology,
 * workload and fault schedule all come from it, so a run is reproducible from its seed.
 * Nothing in test/sim uses Math.random.
 */

function splitmix32 (state: number): () => number {
  let s = state >>> 0
  return () => {
    s = (s + 0x9e3779b9) >>> 0
    let z = s
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** FNV-1a of a label, to derive independent streams from one seed. */
function hashLabel (label: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i)
    h = Math.imul(h, 0x01000193) >>> 0
  }
  return h
}

export class Rng {
  readonly seed: number
  private a: number
  private b: number
  private c: number
  private d: number

  constructor (seed: number) {
    this.seed = seed >>> 0
    const sm = splitmix32(this.seed)
    this.a = sm()
    this.b = sm()
    this.c = sm()
    this.d = sm()
    for (let i = 0; i < 12; i++) this.u32()
  }

  /** An independent stream for one purpose ('topology', 'workload', 'faults', ...). */
  fork (label: string): Rng {
    return new Rng((this.seed ^ hashLabel(label)) >>> 0)
  }

  u32 (): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0
    this.d = (this.d + 1) >>> 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) >>> 0
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0
    this.c = (this.c + t) >>> 0
    return t
  }

  /** Uniform in [0, 1). */
  next (): number {
    return this.u32() / 4294967296
  }

  /** Integer in [lo, hi] (inclusive). */
  int (lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1))
  }

  chance (p: number): boolean {
    return this.next() < p
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list')
    return items[Math.floor(this.next() * items.length)]
  }

  /** A key of `weights` chosen with probability proportional to its weight. */
  weighted<K extends string>(weights: Record<K, number>): K {
    const entries = Object.entries(weights) as Array<[K, number]>
    const total = entries.reduce((s, [, w]) => s + w, 0)
    let x = this.next() * total
    for (const [k, w] of entries) {
      x -= w
      if (x < 0) return k
    }
    return entries[entries.length - 1][0]
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items]
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1))
      const t = out[i]
      out[i] = out[j]
      out[j] = t
    }
    return out
  }

  /** `n` pseudo-random bytes. */
  bytes (n: number): Buffer {
    const out = Buffer.allocUnsafe(n)
    let i = 0
    for (; i + 4 <= n; i += 4) out.writeUInt32LE(this.u32(), i)
    if (i < n) {
      const last = this.u32()
      for (let k = 0; i < n; i++, k++) out[i] = (last >>> (8 * k)) & 0xff
    }
    return out
  }
}

/** A seed for a run when none was given (printed, so the run can be repeated). */
export function freshSeed (): number {
  return (Number(process.hrtime.bigint() % 4294967296n) ^ (process.pid << 16)) >>> 0
}
