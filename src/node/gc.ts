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

/**
 * A floor under V8's old-generation limit (and the global limit derived from it): V8
 * skips full collections below it. A node's heap is small (20-30 MB during a transfer),
 * so without a floor the global limit (heap plus external memory, see above) stays low
 * and a full collection still runs about every 25 MB of transfer buffers: 35-45 per GiB
 * replicated, at each end. With the floor, the minor collections free those buffers
 * first and no full collection runs at all (measured over 3 GiB: none, against 40 per
 * GiB without): per GiB 7.3 -> 4.9-5.7 CPU seconds at the sender and 10.0 -> 8.0-9.7 at
 * the receiver, with the same peak RSS (about 270 MB each). 64 MB was not enough (33 per
 * GiB). The old generation may now hold up to 128 MB of garbage between collections.
 *
 * V8 reads it only when the process starts (and Node refuses it in NODE_OPTIONS), so
 * `syncmesh start` re-executes itself with it: same process id, same arguments.
 */
export const HEAP_FLOOR_FLAG = '--initial-old-space-size=128'

/**
 * glibc's allocator settings for a node process, also read only at start (an environment
 * variable of the re-executed process). By default glibc gives freed memory at the top of
 * its heap back to the kernel once 128 KiB are free (a threshold that adapts, up to 64
 * MiB), and a transfer frees a buffer of up to 4 MiB for every one it allocates: the next
 * allocation then takes fresh pages, each zeroed by the kernel on first touch. On this
 * project's virtual machines first touches are dear (the host backs the page anew): the
 * kernel's page zeroing was 17% of a receiving node's event loop and 34% of the sender's
 * in a profile of small-file catch-up. With freed memory kept up to 128 MiB, allocations
 * below 32 MiB taken from the heap, and the heap grown 16 MiB at a time: per GiB
 * replicated, 5-7% less CPU at each end (two runs each way). The price: a node's resident
 * memory stays near its peak (about 270 MB during a large transfer) until it exceeds it
 * by 128 MiB of free space. A GLIBC_TUNABLES of the user's own is left alone.
 */
export const MALLOC_TUNABLES = 'glibc.malloc.trim_threshold=134217728:glibc.malloc.top_pad=16777216:glibc.malloc.mmap_threshold=33554432'

/**
 * For `syncmesh start` (argv: the CLI's arguments), re-execute this process with the
 * heap floor (and MALLOC_TUNABLES) when it is not set, where the platform can
 * (process.execve: POSIX, Node 22.15+). Does not return when it re-executes. A given
 * --initial-old-space-size or --initial-heap-size is left as it is; SYNCMESH_HEAP_FLOOR=0
 * turns this off.
 */
export function reexecWithHeapFloor (argv: string[], proc: Pick<NodeJS.Process, 'execArgv' | 'execPath' | 'argv' | 'env'> & { execve?: (file: string, args: string[], env: NodeJS.ProcessEnv) => void } = process): boolean {
  if (argv[0] !== 'start' || proc.env.SYNCMESH_HEAP_FLOOR === '0' || typeof proc.execve !== 'function') return false
  if (proc.execArgv.some((a) => a.startsWith('--initial-old-space-size') || a.startsWith('--initial-heap-size'))) return false
  try {
    proc.execve(proc.execPath, [proc.execPath, HEAP_FLOOR_FLAG, ...proc.execArgv, proc.argv[1], ...argv], { GLIBC_TUNABLES: MALLOC_TUNABLES, ...proc.env })
  } catch {
    return false // could not (a sandbox refusing execve): the node runs without the floor
  }
  return true
}

export function tuneGc (v8Version: string = process.versions.v8): boolean {
  const [major, minor] = v8Version.split('.').map((n) => Number.parseInt(n, 10))
  if (!(major > 13 || (major === 13 && minor >= 6))) return false
  setFlagsFromString(FLAG)
  return true
}
