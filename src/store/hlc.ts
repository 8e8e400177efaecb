import type { Hlc } from './types.js'

/** A source of wall-clock milliseconds. Injectable so simulations can skew clocks. */
export type WallClock = () => number

/**
 * Hybrid logical clock (Kulkarni et al.): timestamps that follow the wall clock, never go
 * backwards, and move past every timestamp this node has seen from others, so a write
 * made after receiving a record is ordered after it even when the local clock is behind.
 */
export class HybridClock {
  private last: Hlc = { wall: 0, logical: 0 }
  private readonly now: WallClock
  /**
   * Remote timestamps further than this ahead of our wall clock do not drag our clock
   * forward (a peer with a broken clock must not poison everyone's timestamps).
   *
   * @default 86_400_000 (one day)
   */
  private readonly maxForwardJumpMs: number

  constructor (init: { now?: WallClock, maxForwardJumpMs?: number } = {}) {
    this.now = init.now ?? Date.now
    this.maxForwardJumpMs = init.maxForwardJumpMs ?? 86_400_000
  }

  /** A timestamp for a local event. */
  tick (): Hlc {
    const pt = Math.floor(this.now())
    if (pt > this.last.wall) {
      this.last = { wall: pt, logical: 0 }
    } else {
      this.last = { wall: this.last.wall, logical: this.last.logical + 1 }
    }
    return { ...this.last }
  }

  /** Merge a timestamp received from a peer. */
  observe (remote: Hlc): void {
    const pt = Math.floor(this.now())
    if (remote.wall > pt + this.maxForwardJumpMs) return
    const wall = Math.max(pt, this.last.wall, remote.wall)
    let logical: number
    if (wall === this.last.wall && wall === remote.wall) {
      logical = Math.max(this.last.logical, remote.logical) + 1
    } else if (wall === this.last.wall) {
      logical = this.last.logical + 1
    } else if (wall === remote.wall) {
      logical = remote.logical + 1
    } else {
      logical = 0
    }
    this.last = { wall, logical }
  }

  /** The wall clock as this node sees it (for ages, leases and conflict names). */
  wall (): number {
    return Math.floor(this.now())
  }
}

export function compareHlc (a: Hlc, b: Hlc): number {
  if (a.wall !== b.wall) return a.wall < b.wall ? -1 : 1
  if (a.logical !== b.logical) return a.logical < b.logical ? -1 : 1
  return 0
}
