/**
 * The node's small HTTP servers (the upload API, Prometheus metrics) listen and close the
 * same way: `HOST:PORT` parsed once, a busy port refused in one line, every connection
 * closed at stop.
 */
import type { Server } from 'node:http'

/**
 * `HOST:PORT`, `[v6]:PORT`, `:PORT` or `PORT` (the last two on 127.0.0.1) -> host and
 * port; `fail` makes the error for anything else (one line naming the option).
 */
export function parseHostPort (s: string, fail: (message: string) => Error): { host: string, port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(s) ?? /^()()(\d+)$/.exec(s)
  const port = m == null ? NaN : Number(m[3])
  if (m == null || !Number.isInteger(port) || port < 0 || port > 65535) throw fail(`expects HOST:PORT, not '${s}'`)
  const host = m[1] ?? m[2]
  return { host: host === '' || host == null ? '127.0.0.1' : host, port }
}

/**
 * Listen on `host:port`; resolves with the address really bound (`host:port`, the port
 * resolved when 0). A failure rejects with `fail('cannot serve … on …: …')`.
 */
export async function listenHttp (server: Server, at: { host: string, port: number }, what: string, fail: (message: string) => Error): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(fail(`cannot serve ${what} on ${at.host}:${at.port}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`))
    }
    server.once('error', onError)
    server.listen(at.port, at.host, () => { server.off('error', onError); resolve() })
  })
  return boundAddress(server) ?? `${at.host}:${at.port}`
}

/** `host:port` (`[v6]:port`) the server listens on, or null when it does not. */
export function boundAddress (server: Server): string | null {
  const a = server.address()
  if (a == null || typeof a === 'string') return null
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`
}

/** Close the server and every connection still open on it. */
export async function closeHttp (server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}
