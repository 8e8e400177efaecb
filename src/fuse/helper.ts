/**
 * Node has no API for extended attributes or mknod(2). This runs one long-lived python3 process
 * (standard library only) that performs them on the data folder; requests and replies are JSON lines.
 * Started on first use; if python3 is missing every call answers ENOSYS.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { access, constants } from 'node:fs'
import { ENOSYS, EIO, fromErrnoNumber } from './errno.js'

const SCRIPT = String.raw`
import sys, os, json, base64
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    q = json.loads(line)
    r = {'id': q['id']}
    try:
        op = q['op']
        p = q['path']
        if op == 'get':
            r['value'] = base64.b64encode(os.getxattr(p, q['name'], follow_symlinks=False)).decode()
        elif op == 'set':
            os.setxattr(p, q['name'], base64.b64decode(q['value']), q['flags'], follow_symlinks=False)
        elif op == 'list':
            r['names'] = os.listxattr(p, follow_symlinks=False)
        elif op == 'remove':
            os.removexattr(p, q['name'], follow_symlinks=False)
        elif op == 'mknod':
            os.mknod(p, q['mode'], q['dev'])
        else:
            r['errno'] = 38
    except OSError as e:
        r['errno'] = e.errno or 5
    except Exception:
        r['errno'] = 22
    out.write(json.dumps(r).encode() + b'\n')
    out.flush()
`

interface Reply { id: number, errno?: number, value?: string, names?: string[] }
type Request = { op: 'get', path: string, name: string }
| { op: 'set', path: string, name: string, value: string, flags: number }
| { op: 'list', path: string }
| { op: 'remove', path: string, name: string }
| { op: 'mknod', path: string, mode: number, dev: number }

const PYTHONS = ['/usr/bin/python3', '/usr/local/bin/python3']

export class NativeHelper {
  private child: ChildProcess | undefined
  private python: string | undefined
  private unavailable = false
  private failures = 0
  private seq = 0
  private readonly pending = new Map<number, (r: Reply) => void>()
  private partial = ''

  constructor (private readonly log: (msg: string) => void) {}

  /** Picks the python3 binary (prefers the system one over PATH shims). Call once before use. */
  async init (): Promise<void> {
    for (const p of PYTHONS) {
      if (await new Promise<boolean>(resolve => access(p, constants.X_OK, err => resolve(err === null)))) {
        this.python = p
        return
      }
    }
    this.python = 'python3'
  }

  getxattr (path: string, name: string, cb: (res: number, value?: Buffer) => void): void {
    this.call({ op: 'get', path, name }, r => {
      if (r.errno !== undefined) cb(fromErrnoNumber(r.errno))
      else cb(0, Buffer.from(r.value ?? '', 'base64'))
    })
  }

  setxattr (path: string, name: string, value: Buffer, flags: number, cb: (res: number) => void): void {
    this.call({ op: 'set', path, name, value: value.toString('base64'), flags }, r => cb(r.errno !== undefined ? fromErrnoNumber(r.errno) : 0))
  }

  listxattr (path: string, cb: (res: number, names?: string[]) => void): void {
    this.call({ op: 'list', path }, r => {
      if (r.errno !== undefined) cb(fromErrnoNumber(r.errno))
      else cb(0, r.names ?? [])
    })
  }

  removexattr (path: string, name: string, cb: (res: number) => void): void {
    this.call({ op: 'remove', path, name }, r => cb(r.errno !== undefined ? fromErrnoNumber(r.errno) : 0))
  }

  mknod (path: string, mode: number, dev: number, cb: (res: number) => void): void {
    this.call({ op: 'mknod', path, mode, dev }, r => cb(r.errno !== undefined ? fromErrnoNumber(r.errno) : 0))
  }

  get available (): boolean { return !this.unavailable }

  stop (): void {
    const child = this.child
    this.child = undefined
    if (child !== undefined) {
      child.stdin?.end()
      const t = setTimeout(() => child.kill('SIGKILL'), 1000)
      t.unref()
      child.once('exit', () => clearTimeout(t))
    }
    this.failAll(EIO)
  }

  private call (req: Request, cb: (r: Reply) => void): void {
    const child = this.ensure()
    if (child === undefined) {
      cb({ id: 0, errno: -ENOSYS })
      return
    }
    const id = ++this.seq
    this.pending.set(id, cb)
    child.stdin?.write(JSON.stringify({ id, ...req }) + '\n')
  }

  private ensure (): ChildProcess | undefined {
    if (this.child !== undefined) return this.child
    if (this.unavailable) return undefined
    const child = spawn(this.python ?? 'python3', ['-I', '-S', '-u', '-c', SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] })
    this.child = child
    child.stdout?.setEncoding('utf8')
    child.stdout?.on('data', (chunk: string) => { this.onData(chunk) })
    child.stderr?.setEncoding('utf8')
    child.stderr?.on('data', (chunk: string) => { this.log(`fuse helper: ${chunk.trim()}`) })
    child.stdin?.on('error', () => {})
    child.on('error', (err: NodeJS.ErrnoException) => {
      if (this.child === child) this.child = undefined
      if (err.code === 'ENOENT') {
        this.unavailable = true
        this.log('python3 not found: extended attributes and mknod of devices/sockets are unavailable through the mount (apt-get install -y python3)')
      }
      this.failAll(err.code === 'ENOENT' ? ENOSYS : EIO)
    })
    child.on('exit', () => {
      if (this.child === child) {
        this.child = undefined
        if (++this.failures >= 3) this.unavailable = true
        this.failAll(EIO)
      }
    })
    child.unref()
    ;(child.stdout as unknown as { unref?: () => void } | null)?.unref?.()
    ;(child.stderr as unknown as { unref?: () => void } | null)?.unref?.()
    ;(child.stdin as unknown as { unref?: () => void } | null)?.unref?.()
    return child
  }

  private onData (chunk: string): void {
    let data = this.partial + chunk
    let nl = data.indexOf('\n')
    while (nl !== -1) {
      const line = data.slice(0, nl)
      data = data.slice(nl + 1)
      nl = data.indexOf('\n')
      let reply: Reply
      try {
        reply = JSON.parse(line) as Reply
      } catch {
        continue
      }
      const cb = this.pending.get(reply.id)
      if (cb !== undefined) {
        this.pending.delete(reply.id)
        cb(reply)
      }
    }
    this.partial = data
  }

  private failAll (res: number): void {
    const cbs = [...this.pending.values()]
    this.pending.clear()
    for (const cb of cbs) cb({ id: 0, errno: -res })
  }
}
