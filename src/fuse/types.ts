/** What kind of change a mutating file-system operation made to a path. */
export type ChangeKind = 'write' | 'create' | 'mkdir' | 'mknod' | 'symlink' | 'link' | 'truncate' | 'chmod' | 'chown' | 'utimens' | 'xattr'

/** Receives every mutation made through a SyncMount. Implemented by the sync store. */
export interface ChangeSink {
  /** path (relative POSIX, e.g. "a/b.txt") was created or modified. ranges: byte ranges written ([start, end) pairs, merged) when kind is 'write'. Called after the operation succeeded; must not throw; must be cheap (the store queues work off the FUSE callback's path). */
  changed(path: string, kind: ChangeKind, ranges?: Array<[number, number]>): void
  removed(path: string, isDir: boolean): void
  renamed(from: string, to: string): void
}

export interface SyncMountComponents {
  sink: ChangeSink
  log?: (msg: string) => void
}

export interface SyncMountInit {
  /** The node's data folder: the mount serves it (absolute or relative to cwd). */
  dataDir: string
  /** Where to mount: an existing, empty directory outside dataDir. */
  mountPoint: string
  /** Name of the node's internal folder at the root of dataDir, hidden through the mount. @default '.syncmesh' */
  reservedName?: string
  /**
   * Kernel attribute cache time in seconds (0 = always ask). @default 0: what a node uses, so that a
   * version the puller installs shows in the mount at once (and what the benchmarks measure)
   */
  attrTimeout?: number
  /** Kernel name-lookup cache time in seconds (0 = always ask). @default 0 (as attrTimeout) */
  entryTimeout?: number
}
