/**
 * The web dashboard: one self-contained page served at `/` (and `/index.html`) by the HTTP
 * API, for ApiComponents.extra. The page holds no data and is served without the token; it
 * asks for the bearer token (kept in the tab's sessionStorage), then polls `/v1/status` and
 * `/v1/conflicts` with it every second and shows the node, its peers, sync state, pulls in
 * progress, conflict copies, sets and the relay.
 *
 * Everything shown comes from the mesh (paths, set names, errors written by peers): the
 * script builds the page with textContent and setAttribute only, never HTML strings, and a
 * Content-Security-Policy allows no script or style but the page's own (by hash).
 *
 * Stable hooks for tests and scripts: `#peers li[data-peer=ID]`, `#pulls li[data-path=P]
 * progress`, `#conflicts tr[data-path=COPY][data-base=BASE]` (cells `.current`, `.copy`),
 * `#sets li[data-set=ID][data-state=S]` (its `progress`, `li[data-file=P][data-state=S]`),
 * `#relay-uploads li[data-set=ID]`, `#login-error`.
 */
import { createHash } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { ApiError } from './server.js'

const STYLE = String.raw`
:root { color-scheme: light dark; --fg: #1d2330; --muted: #667085; --bg: #f5f6f8; --card: #fff; --line: #dde1e7; --accent: #2f6fde; --bad: #c4322b; --ok: #1b7f4b; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e8ec; --muted: #98a0ad; --bg: #14171c; --card: #1d2128; --line: #30363f; --accent: #6a9cf0; --bad: #f07068; --ok: #55c08a; } }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: center; gap: 1em; padding: .6em 1.2em; background: var(--card); border-bottom: 1px solid var(--line); }
header h1 { font-size: 1.15em; margin: 0; }
header .spacer { flex: 1; }
main { padding: 1em 1.2em; display: grid; gap: 1em; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); align-items: start; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: .8em 1em; min-width: 0; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 1em; margin: 0 0 .6em; }
h2 .count { color: var(--muted); font-weight: normal; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .25em 1em; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
ul { list-style: none; margin: 0; padding: 0; }
li { padding: .35em 0; border-top: 1px solid var(--line); overflow-wrap: anywhere; }
li:first-child { border-top: 0; }
ul.sub { margin: .2em 0 0 1em; font-size: .92em; }
ul.sub li { border: 0; padding: .05em 0; }
.mono, code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .92em; }
.muted, .empty { color: var(--muted); }
.err { color: var(--bad); }
.ok { color: var(--ok); }
.badge { display: inline-block; padding: 0 .5em; border-radius: 9px; border: 1px solid var(--line); font-size: .85em; }
.badge[data-state="uploaded"] { color: var(--ok); border-color: var(--ok); }
.badge[data-state="failed"] { color: var(--bad); border-color: var(--bad); }
.badge[data-state="uploading"], .badge[data-state="committed"] { color: var(--accent); border-color: var(--accent); }
progress { width: 100%; height: .9em; display: block; margin: .25em 0; }
table { width: 100%; border-collapse: collapse; }
th, td { text-align: left; vertical-align: top; padding: .35em .5em .35em 0; border-top: 1px solid var(--line); overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: normal; border-top: 0; }
#login { max-width: 28em; margin: 4em auto; }
#login form { display: flex; gap: .5em; margin-top: .8em; }
#login input { flex: 1; padding: .45em .6em; font: inherit; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); }
button { padding: .45em .9em; font: inherit; border: 1px solid var(--accent); border-radius: 6px; background: var(--accent); color: #fff; cursor: pointer; }
button.plain { background: transparent; color: var(--accent); }
#login-error { margin-top: .8em; }
`

const SCRIPT = String.raw`
'use strict'
const KEY = 'syncmesh.apiToken'
let timer = null
let generation = 0

function $ (id) { return document.getElementById(id) }

/** An element with attributes (null ones skipped) and children (strings become text). */
function h (tag, attrs, ...kids) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null) continue
    if (k === 'class') e.className = v
    else e.setAttribute(k, String(v))
  }
  for (const k of kids) if (k != null) e.append(k instanceof Node ? k : String(k))
  return e
}

function bytes (n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let x = Number(n) || 0
  let i = 0
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++ }
  return (i === 0 ? String(x) : x.toFixed(x < 10 ? 1 : 0)) + ' ' + units[i]
}

function when (ms) { return ms ? new Date(ms).toLocaleString() : '-' }

function percent (done, total) { return total > 0 ? Math.floor(100 * done / total) + '%' : '' }

function bar (done, total) {
  const p = h('progress', { max: Math.max(1, total) })
  // no value while the size is unknown: an indeterminate bar
  if (total > 0) p.value = Math.min(done, total)
  return p
}

function fill (id, ...kids) { $(id).replaceChildren(...kids) }

function showLogin (message) {
  generation++
  clearTimeout(timer)
  $('app').hidden = true
  $('logout').hidden = true
  $('login').hidden = false
  $('login-error').textContent = message || ''
  $('login-error').hidden = !message
  $('token').focus()
}

class AuthError extends Error {}

async function get (path, token) {
  const res = await fetch(path, { headers: { authorization: 'Bearer ' + token }, cache: 'no-store' })
  if (res.status === 401) throw new AuthError('unauthorized')
  const body = await res.json().catch(() => null)
  if (!res.ok) throw new Error((body && body.error) || ('HTTP ' + res.status))
  return body
}

async function poll () {
  const token = sessionStorage.getItem(KEY)
  if (!token) { showLogin(''); return }
  const gen = generation
  try {
    const [status, conflicts] = await Promise.all([get('v1/status', token), get('v1/conflicts', token)])
    if (gen !== generation) return
    render(status, conflicts)
    $('login').hidden = true
    $('app').hidden = false
    $('logout').hidden = false
    $('conn').className = 'muted'
    $('conn').textContent = 'updated ' + new Date().toLocaleTimeString()
  } catch (err) {
    if (gen !== generation) return
    if (err instanceof AuthError) {
      sessionStorage.removeItem(KEY)
      showLogin("The node refused this token (401 Unauthorized). Use the token in the file api.token in the node's home directory.")
      return
    }
    $('conn').className = 'err'
    $('conn').textContent = 'cannot reach the node: ' + err.message
    if ($('app').hidden) {
      $('login').hidden = false
      $('login-error').textContent = 'Cannot reach the node: ' + err.message + ' (trying again)'
      $('login-error').hidden = false
    }
  }
  if (gen === generation) timer = setTimeout(poll, 1000)
}

function render (s, c) {
  document.title = 'Syncmesh ' + s.nodeId
  $('node-peer-id').textContent = s.peerId
  $('node-id').textContent = s.nodeId
  $('node-api').textContent = s.api || '-'
  fill('node-addrs', ...s.addrs.map((a) => h('li', {}, a)))

  $('peer-count').textContent = '(' + s.peers.length + ')'
  fill('peers', ...(s.peers.length === 0
    ? [h('li', { class: 'empty' }, 'no peers connected')]
    : s.peers.map((p) => h('li', { 'data-peer': p.id },
      h('span', { class: 'mono peer-id' }, p.id),
      typeof p.latencyMs === 'number' ? h('span', { class: 'latency muted', 'data-ms': p.latencyMs }, ' ' + Math.round(p.latencyMs) + ' ms') : null,
      h('ul', { class: 'sub addrs mono' }, ...p.addrs.map((a) => h('li', {}, a)))))))

  $('sync-files').textContent = s.files
  $('sync-dirs').textContent = s.dirs
  $('sync-bytes').textContent = bytes(s.bytes)
  $('sync-pending-files').textContent = s.pending.files
  $('sync-pending-bytes').textContent = bytes(s.pending.bytes)
  $('sync-conflicts').textContent = s.conflicts
  $('sync-last-error').textContent = s.lastError || 'none'
  $('sync-last-error').className = s.lastError ? 'err' : 'muted'

  const pulls = s.pending.pulling
  $('pull-count').textContent = '(' + pulls.length + ')'
  fill('pulls', ...(pulls.length === 0
    ? [h('li', { class: 'empty' }, 'nothing being pulled')]
    : pulls.map((p) => h('li', { 'data-path': p.path },
      h('span', { class: 'mono' }, p.path),
      bar(p.done, p.size),
      h('span', { class: 'muted' }, bytes(p.done) + ' of ' + (p.size > 0 ? bytes(p.size) + ' ' + percent(p.done, p.size) : '?'))))))

  renderConflicts(c)
  renderSets(s.sets)
  renderRelay(s.relay)
}

function version (v, label) {
  if (v == null) return [h('span', { class: 'muted' }, label)]
  return [
    h('div', {}, h('span', { class: 'size' }, bytes(v.size)), ', modified ', h('span', { class: 'mtime' }, when(v.mtimeMs))),
    h('div', { class: 'muted' }, 'written by ', h('span', { class: 'node mono' }, v.node), ' at ', h('span', { class: 'wall' }, when(v.wall))),
    v.have ? null : h('div', { class: 'muted' }, 'not on this node yet')
  ]
}

function renderConflicts (c) {
  $('conflict-count').textContent = '(' + c.total + ')'
  const rows = c.conflicts.map((x) => h('tr', { 'data-path': x.path, 'data-base': x.base },
    h('td', {}, h('div', { class: 'mono base' }, x.base), h('div', { class: 'mono muted copy-path' }, 'copy: ' + x.path)),
    h('td', { class: 'current' }, ...version(x.current, 'deleted')),
    h('td', { class: 'copy' }, ...version(x.copy, ''))))
  fill('conflicts', ...(rows.length === 0 ? [h('tr', { class: 'empty' }, h('td', { colspan: 3 }, 'no conflict copies'))] : rows))
  $('conflicts-more').textContent = c.total > c.conflicts.length ? (c.total - c.conflicts.length) + ' more not listed' : ''
}

const MAX_FILES = 100

function renderSets (sets) {
  $('set-count').textContent = '(' + sets.length + ')'
  fill('sets', ...(sets.length === 0
    ? [h('li', { class: 'empty' }, 'no sets')]
    : sets.map((s) => h('li', { 'data-set': s.id, 'data-state': s.state },
      h('strong', { class: 'name' }, s.name), ' ',
      h('span', { class: 'badge state', 'data-state': s.state }, s.state),
      h('span', { class: 'muted' }, ' ' + s.files.length + (s.files.length === 1 ? ' file' : ' files') + ', created ' + when(s.createdAt) + (s.committedAt ? ', committed ' + when(s.committedAt) : '') + (s.relay ? ', relay ' + s.relay : '')),
      s.error ? h('div', { class: 'err error' }, s.error) : null,
      s.state === 'open' ? null : bar(s.bytesDone, s.bytesTotal),
      s.state === 'open' ? null : h('div', { class: 'muted' }, bytes(s.bytesDone) + ' of ' + bytes(s.bytesTotal) + ' uploaded ' + percent(s.bytesDone, s.bytesTotal)),
      h('ul', { class: 'sub files' },
        ...s.files.slice(0, MAX_FILES).map((f) => h('li', { 'data-file': f.path, 'data-state': f.state },
          h('span', { class: 'mono' }, f.path), ' ', h('span', { class: 'muted' }, bytes(f.size) + ', ' + f.state))),
        s.files.length > MAX_FILES ? h('li', { class: 'muted' }, 'and ' + (s.files.length - MAX_FILES) + ' more') : null)))))
}

function renderRelay (r) {
  $('relay-none').hidden = r != null
  $('relay-info').hidden = r == null
  if (r == null) return
  $('relay-backend').textContent = r.backend
  $('relay-last-error').textContent = r.lastError || 'none'
  $('relay-last-error').className = r.lastError ? 'err' : 'muted'
  fill('relay-uploads', ...(r.uploads.length === 0
    ? [h('li', { class: 'empty' }, 'no uploads running')]
    : r.uploads.map((u) => h('li', { 'data-set': u.setId },
      h('strong', {}, u.name),
      bar(u.bytesDone, u.bytesTotal),
      h('div', { class: 'muted' }, bytes(u.bytesDone) + ' of ' + bytes(u.bytesTotal) + ' ' + percent(u.bytesDone, u.bytesTotal)),
      u.file == null ? null : h('div', {}, h('span', { class: 'mono' }, u.file), bar(u.fileBytes, u.fileSize))))))
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const token = $('token').value.trim()
  if (!token) { showLogin('Enter the token from api.token.'); return }
  sessionStorage.setItem(KEY, token)
  $('token').value = ''
  $('login-error').hidden = true
  generation++
  clearTimeout(timer)
  void poll()
})

$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(KEY)
  showLogin('')
})

if (sessionStorage.getItem(KEY)) {
  $('login').hidden = true
  $('conn').textContent = 'connecting...'
  void poll()
} else {
  showLogin('')
}
`

const BODY = String.raw`
<header>
  <h1>Syncmesh</h1>
  <span id="conn" class="muted"></span>
  <span class="spacer"></span>
  <button id="logout" class="plain" type="button" hidden>Log out</button>
</header>
<section id="login">
  <h2>Log in</h2>
  <div class="muted">This node's HTTP API needs its bearer token: the contents of the file <code>api.token</code> in the node's home directory. It is kept in this tab only.</div>
  <form id="login-form" autocomplete="off">
    <input id="token" name="token" type="password" placeholder="API token" aria-label="API token" autocomplete="off">
    <button id="login-button" type="submit">Log in</button>
  </form>
  <div id="login-error" class="err" role="alert" hidden></div>
</section>
<main id="app" hidden>
  <section id="node-section">
    <h2>This node</h2>
    <dl>
      <dt>Peer id</dt><dd id="node-peer-id" class="mono"></dd>
      <dt>Node id</dt><dd id="node-id" class="mono"></dd>
      <dt>HTTP API</dt><dd id="node-api" class="mono"></dd>
      <dt>Listening</dt><dd><ul id="node-addrs" class="sub mono"></ul></dd>
    </dl>
  </section>
  <section id="sync-section">
    <h2>Sync</h2>
    <dl>
      <dt>Files</dt><dd id="sync-files"></dd>
      <dt>Directories</dt><dd id="sync-dirs"></dd>
      <dt>Bytes</dt><dd id="sync-bytes"></dd>
      <dt>Pending files</dt><dd id="sync-pending-files"></dd>
      <dt>Pending bytes</dt><dd id="sync-pending-bytes"></dd>
      <dt>Conflict copies</dt><dd id="sync-conflicts"></dd>
      <dt>Last error</dt><dd id="sync-last-error"></dd>
    </dl>
  </section>
  <section id="peers-section">
    <h2>Peers <span id="peer-count" class="count"></span></h2>
    <ul id="peers"></ul>
  </section>
  <section id="pulls-section">
    <h2>Pulling <span id="pull-count" class="count"></span></h2>
    <ul id="pulls"></ul>
  </section>
  <section id="conflicts-section" class="wide">
    <h2>Conflicts <span id="conflict-count" class="count"></span></h2>
    <table>
      <thead><tr><th>File</th><th>Current version (at the path)</th><th>Conflict copy (the other version)</th></tr></thead>
      <tbody id="conflicts"></tbody>
    </table>
    <div id="conflicts-more" class="muted"></div>
  </section>
  <section id="sets-section">
    <h2>Sets <span id="set-count" class="count"></span></h2>
    <ul id="sets"></ul>
  </section>
  <section id="relay">
    <h2>Relay</h2>
    <div id="relay-none" class="muted">This node is not a relay.</div>
    <div id="relay-info" hidden>
      <dl>
        <dt>Backend</dt><dd id="relay-backend" class="mono"></dd>
        <dt>Last error</dt><dd id="relay-last-error"></dd>
      </dl>
      <ul id="relay-uploads"></ul>
    </div>
  </section>
</main>
`

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Syncmesh</title>
<style>${STYLE}</style>
</head>
<body>${BODY}<script>${SCRIPT}</script>
</body>
</html>
`

const sri = (s: string): string => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`

/** Only the page's own script and style run; it talks to its own origin only. */
const CSP = [
  "default-src 'none'",
  `script-src ${sri(SCRIPT)}`,
  `style-src ${sri(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join('; ')

const BYTES = Buffer.from(PAGE, 'utf8')

/** The dashboard route for ApiComponents.extra: GET or HEAD `/` and `/index.html`. */
export async function serveDashboard (req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
  if (url.pathname !== '/' && url.pathname !== '/index.html') return false
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD')
    throw new ApiError(405, `${req.method ?? ''} is not allowed on ${url.pathname}`)
  }
  res.writeHead(200, {
    'content-type': 'text/html; charset=utf-8',
    'content-length': BYTES.byteLength,
    'content-security-policy': CSP,
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-cache'
  })
  res.end(req.method === 'HEAD' ? undefined : BYTES)
  return true
}
