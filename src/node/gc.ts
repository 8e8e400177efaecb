/**
 * Garbage-collector setting for a node process (`syncmesh start`), not for libraries or
 * tests that embed a node.
 *
 * A transfer allocates every byte it moves several times outside the JavaScript heap:
 * socket reads, the private-network cipher, the Noise cipher (node:crypto returns a new
 * buffer per call) and file reads. V8 starts a full (mark-compact) collection each time
 * such external memory grows by 64 MB, however small the heap is: 10-15 full collections
 * a second on each side of a 1 GiB transfer (measured: the GC threads used as much CPU as
 * the node's main thread). With external memory counted in V8's global allocation limit
 * instead (which grows with what survives collections), half as many run: measured per
 * GiB replicated, 9.3 -> 7.0 CPU seconds at the sender and 12.0 -> 9.5 at the receiver,
 * at the price of more short-lived buffer memory between collections (100-200 MB more at
 * peak during a large transfer).
 *
 * The flag exists (and was measured) from V8 13.6 (Node 24); older V8s are left alone.
 */
import { setFlagsFromString } from 'node:v8'

const FLAG = '--external-memory-accounted-in-global-limit'

export function tuneGc (v8Version: string = process.versions.v8): boolean {
  const [major, minor] = v8Version.split('.').map((n) => Number.parseInt(n, 10))
  if (!(major > 13 || (major === 13 && minor >= 6))) return false
  setFlagsFromString(FLAG)
  return true
}
