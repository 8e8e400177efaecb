import { createServer, createConnection, type Server, type Socket } from 'node:net'
import { chmod, unlink } from 'node:fs/promises'
import { controlSocketPath } from './home.js'

/**
 * The local control channel: a Unix socket in the node's home (mode 0600, so only the
 * node's user can use it), one JSON request per line, one JSON answer per line. The CLI
 * talks to a running node only through it; no TCP port is opened for control.
 */
export type ControlHandler = (cmd: string, args: Record<string, unknown>) => Promise<unknown>

export class ControlError extends Error {
  override name = 'ControlError'
}

export class ControlServer {
  private server: Server | null = null
  private readonly path: string
  private readonly handler: ControlHandler
  private readonly sockets = new Set<Socket>()

  constructor (home: string, handler: ControlHandler) {
    this.path = controlSocketPath(home)
    this.handler = handler
  }

  async start (): Promise<void> {
    if (await isLive(this.path)) throw new ControlError('a node is already running in this home')
    await unlink(this.path).catch(() => {})
    const server = createServer((sock) => { this.serve(sock) })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.path, () => { server.off('error', reject); resolve() })
    })
    await chmod(this.path, 0o600)
    this.server = server
  }

  async stop (): Promise<void> {
    const server = this.server
    if (server == null) return
    this.server = null
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
    await unlink(this.path).catch(() => {})
  }

  private serve (sock: Socket): void {
    this.sockets.add(sock)
    sock.on('close', () => this.sockets.delete(sock))
    sock.on('error', () => {})
    let buf = ''
    sock.setEncoding('utf8')
    sock.on('data', (chunk: string) => {
      buf += chunk
      if (buf.length > 1024 * 1024) { sock.destroy(); return }
      let nl
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        void this.answer(line).then((out) => { if (!sock.destroyed) sock.write(JSON.stringify(out) + '\n') })
      }
    })
  }

  private async answer (line: string): Promise<{ ok: true, result: unknown } | { ok: false, error: string }> {
    try {
      const req = JSON.parse(line) as { cmd?: unknown, args?: unknown }
      if (typeof req.cmd !== 'string') throw new ControlError('bad request')
      const args = req.args != null && typeof req.args === 'object' ? req.args as Record<string, unknown> : {}
      return { ok: true, result: await this.handler(req.cmd, args) }
    } catch (err) {
      return { ok: false, error: (err as Error).message.split('\n')[0] }
    }
  }
}

async function isLive (path: string): Promise<boolean> {
  return await new Promise((resolve) => {
    const s = createConnection(path)
    s.once('connect', () => { s.destroy(); resolve(true) })
    s.once('error', () => resolve(false))
  })
}

/** Send one command to the node running in `home`. */
export async function control (home: string, cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<unknown> {
  const path = controlSocketPath(home)
  return await new Promise((resolve, reject) => {
    const s = createConnection(path)
    let buf = ''
    const timer = setTimeout(() => { s.destroy(); reject(new ControlError('the node did not answer in time')) }, timeoutMs)
    s.setEncoding('utf8')
    s.once('connect', () => s.write(JSON.stringify({ cmd, args }) + '\n'))
    s.on('data', (chunk: string) => {
      buf += chunk
      const nl = buf.indexOf('\n')
      if (nl < 0) return
      clearTimeout(timer)
      s.destroy()
      try {
        const res = JSON.parse(buf.slice(0, nl)) as { ok: boolean, result?: unknown, error?: string }
        if (res.ok) resolve(res.result)
        else reject(new ControlError(res.error ?? 'failed'))
      } catch {
        reject(new ControlError('garbled answer from the node'))
      }
    })
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      reject(new ControlError(err.code === 'ENOENT' || err.code === 'ECONNREFUSED'
        ? `no node is running in ${home} (start one with 'syncmesh start --home ${home}')`
        : `cannot reach the node: ${err.message}`))
    })
  })
}
