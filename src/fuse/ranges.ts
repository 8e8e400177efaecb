/**
 * Sorted, merged set of written byte ranges [start, end) stored flat: [s0, e0, s1, e1, ...].
 * Sequential writes (the common case) extend the last range in O(1).
 */
export class WrittenRanges {
  private r: number[] = []

  get empty (): boolean { return this.r.length === 0 }

  add (start: number, end: number): void {
    if (end <= start) return
    const r = this.r
    const n = r.length
    if (n === 0) { r.push(start, end); return }
    const lastEnd = r[n - 1]
    if (start >= r[n - 2] && start <= lastEnd) { // overlaps or touches the last range
      if (end > lastEnd) r[n - 1] = end
      return
    }
    if (start > lastEnd) { r.push(start, end); return }
    // general case: find first range whose end >= start (binary search over pairs)
    let lo = 0
    let hi = n / 2
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (r[mid * 2 + 1] < start) lo = mid + 1
      else hi = mid
    }
    const i = lo
    let s = start
    let e = end
    let j = i
    while (j < n / 2 && r[j * 2] <= e) {
      if (r[j * 2] < s) s = r[j * 2]
      if (r[j * 2 + 1] > e) e = r[j * 2 + 1]
      j++
    }
    r.splice(i * 2, (j - i) * 2, s, e)
  }

  /** Returns the ranges as pairs and empties the set. */
  take (): Array<[number, number]> {
    const out: Array<[number, number]> = []
    for (let i = 0; i < this.r.length; i += 2) out.push([this.r[i], this.r[i + 1]])
    this.r = []
    return out
  }
}
