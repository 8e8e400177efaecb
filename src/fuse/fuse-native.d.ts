// Minimal declarations for the parts of fuse-native 2.2.6 (CommonJS, untyped) that src/fuse uses.
declare module 'fuse-native' {
  class Fuse {
    constructor (mnt: string, ops: Fuse.FuseOps, opts?: Fuse.FuseOptions)
    readonly mnt: string
    readonly opts: Fuse.FuseOptions
    readonly ops: Fuse.FuseOps
    /** the native fuse_thread_t of the mount (set when mounting) */
    _thread: Buffer | null
    /** handler per opcode, handed to the native side at mount time */
    _handlers: Fuse.NativeHandler[]
    /** the '-o...' option string handed to libfuse */
    _fuseOptions (): string
    _op_getattr (signal: Fuse.Signal, path: string): void
    _op_fgetattr (signal: Fuse.Signal, path: string, fd: number): void
    _op_readdir (signal: Fuse.Signal, path: string): void
    /** stock: (atime ms low/high, atime ms again); with Syncmesh's patch: (atime sec, atime nsec, mtime sec, mtime nsec) */
    _op_utimens (signal: Fuse.Signal, path: string, atimeLow: number, atimeHigh: number, mtimeLow: number, mtimeHigh: number): void
    _op_create (signal: Fuse.Signal, path: string, mode: number, preFd?: number): void
    _op_open (signal: Fuse.Signal, path: string, flags: number, preFd?: number): void
    _op_setxattr (signal: Fuse.Signal, path: string, name: string, value: Buffer, position: number, flags: number): void
    _op_getxattr (signal: Fuse.Signal, path: string, name: string, valueBuf: Buffer, position: number): void
    _op_listxattr (signal: Fuse.Signal, path: string, listBuf: Buffer): void
    mount (cb: (err: Error | null) => void): void
    unmount (cb: (err: Error | null) => void): void
    static unmount (mnt: string, cb: (err: Error | null) => void): void
  }

  namespace Fuse {
    /** Completes a FUSE request: result is 0 / a byte count / a negative errno; args are op-specific. */
    export type Signal = (result: number, ...args: unknown[]) => void
    export type ResultCb = (result: number) => void
    export type ValueCb<T> = (result: number, value?: T) => void

    export interface FuseStatfs {
      bsize?: number
      frsize?: number
      blocks?: number
      bfree?: number
      bavail?: number
      files?: number
      ffree?: number
      favail?: number
      fsid?: number
      flag?: number
      namemax?: number
    }

    /** Callback-style operations (cb(resultOrNegErrno, value)). Only truthiness matters for ops the subclass overrides. */
    export interface FuseOps {
      init?: (cb: ResultCb) => void
      access?: (path: string, mode: number, cb: ResultCb) => void
      statfs?: (path: string, cb: ValueCb<FuseStatfs>) => void
      getattr?: (path: string, cb: ValueCb<unknown>) => void
      fgetattr?: (path: string, fd: number, cb: ValueCb<unknown>) => void
      flush?: (path: string, fd: number, cb: ResultCb) => void
      fsync?: (path: string, datasync: number, fd: number, cb: ResultCb) => void
      fsyncdir?: (path: string, datasync: number, fd: number, cb: ResultCb) => void
      readdir?: (path: string, cb: (result: number, names?: string[], stats?: unknown[]) => void) => void
      truncate?: (path: string, size: number, cb: ResultCb) => void
      ftruncate?: (path: string, fd: number, size: number, cb: ResultCb) => void
      utimens?: (path: string, atime: number, mtime: number, cb: ResultCb) => void
      readlink?: (path: string, cb: ValueCb<string>) => void
      chown?: (path: string, uid: number, gid: number, cb: ResultCb) => void
      chmod?: (path: string, mode: number, cb: ResultCb) => void
      mknod?: (path: string, mode: number, dev: number, cb: ResultCb) => void
      setxattr?: (path: string, name: string, value: Buffer, position: number, flags: number, cb: ResultCb) => void
      getxattr?: (path: string, name: string, position: number, cb: ValueCb<Buffer>) => void
      listxattr?: (path: string, cb: ValueCb<string[]>) => void
      removexattr?: (path: string, name: string, cb: ResultCb) => void
      open?: (path: string, flags: number, cb: ValueCb<number>) => void
      opendir?: (path: string, flags: number, cb: ValueCb<number>) => void
      /** cb(bytesReadOrNegErrno) */
      read?: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: ResultCb) => void
      /** cb(bytesWrittenOrNegErrno) */
      write?: (path: string, fd: number, buf: Buffer, len: number, pos: number, cb: ResultCb) => void
      release?: (path: string, fd: number, cb: ResultCb) => void
      releasedir?: (path: string, fd: number, cb: ResultCb) => void
      create?: (path: string, mode: number, cb: ValueCb<number>) => void
      unlink?: (path: string, cb: ResultCb) => void
      rename?: (src: string, dest: string, cb: ResultCb) => void
      link?: (src: string, dest: string, cb: ResultCb) => void
      /** target: the link's content; path: where the link is made */
      symlink?: (target: string, path: string, cb: ResultCb) => void
      mkdir?: (path: string, mode: number, cb: ResultCb) => void
      rmdir?: (path: string, cb: ResultCb) => void
    }

    export interface FuseOptions {
      /** per-op timeout in ms; false disables the timer (and its per-op cost) */
      timeout?: number | false
      force?: boolean
      mkdir?: boolean
      debug?: boolean
      allowOther?: boolean
      allowRoot?: boolean
      autoUnmount?: boolean
      defaultPermissions?: boolean
      maxRead?: number
      fsname?: string
      subtype?: string
      kernelCache?: boolean
      autoCache?: boolean
      entryTimeout?: number
      attrTimeout?: number
    }

    /** (nativeHandler: the per-thread native locals as a Buffer, opCode, ...op args) */
    export type NativeHandler = (nativeHandler: Buffer, opCode: number, ...args: unknown[]) => void
  }

  export = Fuse
}
