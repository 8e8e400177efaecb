/**
 * The data model shared by every module. Native types only: hashes are lowercase hex
 * strings, times are milliseconds since the epoch, paths are relative POSIX paths inside
 * the data folder ("a/b.txt", never "./a", "/a", "a/../b" or "").
 * Encoding happens at the boundaries (LevelDB: JSON; wire: protobuf in src/gossip/pb).
 */

/** Short, stable id of a node (13 base32 chars derived from its libp2p peer id). */
export type NodeId = string

/** A version vector: which writes (per node, a counter) a record has seen. */
export type VersionVector = Record<NodeId, number>

/** Hybrid logical clock timestamp: wall clock milliseconds plus a logical counter. */
export interface Hlc {
  wall: number
  logical: number
}

export interface Version {
  vv: VersionVector
  /** When the writer made this version, on its hybrid logical clock. */
  hlc: Hlc
  /** The node that made this version (the tie-breaker after the HLC). */
  node: NodeId
}

/**
 * 'meta' records carry replicated state that is not a file (sets, leases, upload state):
 * their path is absolute ('/set/<id>', see src/relay/sets.ts), which no file path can be,
 * their JSON payload travels in `target`, and they never touch the disk or the pull queue.
 */
export type FileType = 'file' | 'dir' | 'symlink' | 'meta'

/** The types a path on disk can have. */
export type DiskType = Exclude<FileType, 'meta'>

export interface FileRecord {
  path: string
  type: FileType
  /** Permission bits (mode & 0o7777). */
  mode: number
  /** Bytes; 0 for directories and symlinks. */
  size: number
  /** Integer milliseconds. Directories carry 0: their mtime is not replicated. */
  mtimeMs: number
  /** Block size in bytes used to cut this file (power of two); 0 unless a file. */
  blockSize: number
  /** SHA-256 of each block, in order (hex). Empty for empty files, dirs and symlinks. */
  blocks: string[]
  /**
   * Content id: SHA-256 over the concatenated raw block hashes (hex); for a symlink,
   * SHA-256 of its target; for a directory or a deleted record, ''.
   */
  hash: string
  /** Symlink target, '' otherwise. */
  target: string
  deleted: boolean
  version: Version
}

/** What a node last saw (or put) on its own disk at a path: enough to notice a change. */
export interface DiskState {
  type: DiskType
  mode: number
  size: number
  mtimeMs: number
  /** Inode number: an atomic replace (editor save) changes it even when size and mtime do not. */
  ino: number
  /** Content id of what is on disk ('' for dirs). */
  hash: string
  target: string
  /** The version whose content this is. */
  version: Version
}

/**
 * A record as stored locally: the mesh-wide winning version of the path (the FileRecord
 * fields), the local sequence number it was stored under, whether the local disk holds
 * that version (`have`), and what is on disk now (`disk`, null when nothing is).
 */
export interface StoredRecord extends FileRecord {
  seq: number
  have: boolean
  disk: DiskState | null
  /**
   * Which peer sent this node this very version (`deliveredKey(peer, version)`), when it
   * came from a peer as it is: that peer has it, or a later version of the path, and index
   * catch-up does not send it back. A record whose version changed since keeps a key that
   * no longer matches its version, so it counts as not delivered.
   */
  deliveredBy?: string
}
