/**
 * `syncmesh status --watch`: the running node's status, redrawn every second until
 * Ctrl-C. On a terminal each frame replaces the last (ANSI clear); otherwise frames are
 * printed one after the other, separated by a blank line, without control codes.
 */
import { control } from '../node/control.js'
import type { StatusReport } from '../node/node.js'
import type { PullProgress } from '../transfer/puller.js'

interface Sample { at: number, status: StatusReport }

export interface WatchOptions {
  intervalMs?: number
  out?: NodeJS.WriteStream
}

export async function watchStatus (home: string, opts: WatchOptions = {}): Promise<void> {
  const out = opts.out ?? process.stdout
  const intervalMs = opts.intervalMs ?? 1000
  const tty = out.isTTY === true
  // the first answer decides: no node running is one line and exit 1, as for status
  let prev: Sample | null = { at: Date.now(), status: await control(home, 'status') as StatusReport }
  let stop = false
  let wake: (() => void) | null = null
  const onSignal = (): void => { stop = true; wake?.() }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  try {
    let frame = renderFrame(home, prev, null, tty ? out.columns : undefined)
    for (;;) {
      out.write(tty ? `\x1b[H\x1b[2J${frame}` : `${frame}\n`)
      await new Promise<void>((resolve) => {
        wake = resolve
        setTimeout(resolve, intervalMs)
      })
      wake = null
      if (stop) break
      let cur: Sample | null = null
      let error: string | null = null
      try {
        cur = { at: Date.now(), status: await control(home, 'status', {}, Math.max(intervalMs, 5_000)) as StatusReport }
      } catch (err) {
        error = (err as Error).message
      }
      if (stop) break
      frame = cur != null ? renderFrame(home, cur, prev, tty ? out.columns : undefined) : `syncmesh status ${home}  ${new Date().toLocaleTimeString()}\n\n${error ?? ''}\n`
      if (cur != null) prev = cur
      else prev = null
    }
  } finally {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
}

function size (n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`
  return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`
}

function rate (bytes: number, ms: number): string {
  return ms > 0 ? `${size(Math.max(0, Math.round(bytes * 1000 / ms)))}/s` : '-'
}

function bar (done: number, total: number, width: number): string {
  const f = total > 0 ? Math.min(1, done / total) : 0
  const n = Math.round(f * width)
  return `[${'#'.repeat(n)}${'.'.repeat(width - n)}] ${String(Math.floor(f * 100)).padStart(3)}%`
}

function fit (s: string, width: number): string {
  return s.length <= width ? s.padEnd(width) : `…${s.slice(s.length - width + 1)}`
}

/** One frame: the current sample, with rates from the one before (if any). */
export function renderFrame (home: string, cur: Sample, prev: Sample | null, columns = 100): string {
  const s = cur.status
  const dt = prev != null ? cur.at - prev.at : 0
  const before = new Map<string, PullProgress>((prev?.status.pending.pulling ?? []).map((p) => [p.path, p]))
  const stat = (st: StatusReport | undefined, g: string, k: string): number => st?.stats[g]?.[k] ?? 0
  const fetched = stat(s, 'puller', 'bytesFetched')
  const served = stat(s, 'blocks', 'bytesServed')
  const lines: string[] = [
    `syncmesh status ${home}  ${new Date(cur.at).toLocaleTimeString()}  (every second; Ctrl-C to quit)`,
    '',
    `peer id    ${s.peerId}  (node ${s.nodeId})`,
    `peers      ${s.peers.length === 0 ? 'none connected' : `${s.peers.length} connected`}`
  ]
  for (const p of s.peers) {
    lines.push(`           ${p.id}  ${p.latencyMs != null ? `${String(Math.round(p.latencyMs)).padStart(5)} ms` : '    ? ms'}  ${p.addrs[0] ?? ''}`)
  }
  lines.push(`files      ${s.files} files, ${s.dirs} dirs, ${size(s.bytes)}`)
  lines.push(`transfer   in ${size(fetched)}${prev != null ? ` (${rate(fetched - stat(prev.status, 'puller', 'bytesFetched'), dt)})` : ''}, out ${size(served)}${prev != null ? ` (${rate(served - stat(prev.status, 'blocks', 'bytesServed'), dt)})` : ''}`)
  lines.push(`pending    ${s.pending.files} to pull (${size(s.pending.bytes)})${s.pending.pulling.length > 0 ? `, ${s.pending.pulling.length} in progress` : ''}`)
  const pathWidth = Math.max(16, Math.min(48, columns - 60))
  for (const p of s.pending.pulling.slice(0, 15)) {
    const b = before.get(p.path)
    const r = b != null && dt > 0 ? rate(p.done - b.done, dt) : ''
    lines.push(`           ${fit(p.path, pathWidth)} ${bar(p.done, p.size, 20)} ${size(p.done)}/${size(p.size)} ${r}`.trimEnd())
  }
  if (s.pending.pulling.length > 15) lines.push(`           … and ${s.pending.pulling.length - 15} more`)
  lines.push(`conflicts  ${s.conflicts}`)
  if (s.api != null) lines.push(`api        ${s.api}`)
  if (s.relay != null) {
    lines.push(`relay      ${s.relay.backend}${s.relay.uploads.length === 0 ? ', idle' : ''}`)
    const was = new Map((prev?.status.relay?.uploads ?? []).map((u) => [u.setId, u.bytesDone]))
    for (const u of s.relay.uploads) {
      const b = was.get(u.setId)
      const r = b != null && dt > 0 ? rate(u.bytesDone - b, dt) : ''
      lines.push(`           ${fit(u.name, pathWidth)} ${bar(u.bytesDone, u.bytesTotal, 20)} ${size(u.bytesDone)}/${size(u.bytesTotal)} ${r}`.trimEnd())
      if (u.file != null) lines.push(`             now ${u.file} ${size(u.fileBytes)}/${size(u.fileSize)}`)
    }
    if (s.relay.lastError != null) lines.push(`           last error: ${s.relay.lastError}`)
  }
  // sets that are not done yet (uploaded ones are history)
  const active = (s.sets ?? []).filter((v) => v.state !== 'uploaded')
  if (active.length > 0) {
    lines.push(`sets       ${active.length} not uploaded yet`)
    for (const v of active.slice(0, 10)) {
      lines.push(`           ${fit(v.name, pathWidth)} ${v.state.padEnd(9)} ${bar(v.bytesDone, v.bytesTotal, 20)} ${v.filesUploaded}/${v.fileCount} files${v.error != null ? `  ${v.error}` : ''}`.trimEnd())
    }
  }
  if (s.mount != null) lines.push(`mount      ${s.mount}`)
  if (s.metrics != null) lines.push(`metrics    http://${s.metrics}/metrics`)
  const errors = s.recentErrors ?? []
  lines.push(`errors     ${errors.length === 0 ? 'none' : ''}`.trimEnd())
  for (const e of errors) {
    const line = `           ${new Date(e.at).toLocaleTimeString()} ${e.level} ${e.msg}`
    lines.push(line.length > columns && columns > 20 ? `${line.slice(0, columns - 1)}…` : line)
  }
  return lines.join('\n') + '\n'
}
