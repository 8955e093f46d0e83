"""The status page: one self-contained HTML document (inline CSS, JS and SVG, nothing fetched but
the management API's JSON), and its login form.

The page holds no data and no secret: its script fetches `/v0/management/credentials`,
`/usage` and `/errors` with the session cookie the login set, every few seconds, and builds the
tables with `textContent` and DOM calls only (labels, e-mails and error messages are hostile
strings). A Content-Security-Policy allows exactly the inline script and style below, by hash.
"""

from __future__ import annotations

import base64
import hashlib
import html

REFRESH_SECONDS = 5

_STYLE = """
:root { color-scheme: light dark; --fg: #1d2330; --muted: #667085; --bg: #f7f8fa; --card: #fff;
  --line: #e4e7ec; --ok: #12805c; --warn: #b54708; --bad: #c01048; --off: #667085; --bar: #3e63dd; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6e9ef; --muted: #98a2b3; --bg: #11151c;
  --card: #1a1f29; --line: #2c3342; --bar: #7b93f2; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; align-items: baseline; gap: 16px; padding: 14px 24px; border-bottom: 1px solid var(--line); background: var(--card); }
header h1 { font-size: 18px; margin: 0; }
header .grow { flex: 1; }
header a, header span { color: var(--muted); font-size: 13px; }
main { padding: 16px 24px 40px; max-width: 1400px; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; margin: 0 0 18px; padding: 12px 16px; }
h2 { font-size: 15px; margin: 2px 0 10px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: 7px 10px 7px 0; border-top: 1px solid var(--line); }
th { font-weight: 600; color: var(--muted); font-size: 12px; border-top: 0; }
.small, .detail { color: var(--muted); font-size: 12px; }
.detail { max-width: 420px; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; color: #fff; background: var(--off); }
.state-ready .badge { background: var(--ok); }
.state-resting .badge, .state-refreshing .badge { background: var(--warn); }
.state-refresh-failed .badge { background: var(--bad); }
.left { margin-left: 6px; font-variant-numeric: tabular-nums; }
.window { display: grid; grid-template-columns: 56px 120px auto; gap: 6px; align-items: center; font-size: 12px; }
.window svg { width: 120px; height: 8px; }
.track { fill: var(--line); }
.fill { fill: var(--bar); }
.fill.exhausted, .err { fill: var(--bad); }
.req { fill: var(--bar); }
.none { color: var(--muted); }
.model { display: grid; grid-template-columns: minmax(160px, 260px) 80px 1fr; gap: 10px; align-items: center; padding: 4px 0; border-top: 1px solid var(--line); }
.model svg { width: 100%; max-width: 720px; height: 32px; }
.model .name { overflow-wrap: anywhere; }
#banner { display: none; padding: 8px 24px; background: var(--bad); color: #fff; }
#banner.shown { display: block; }
td.message { overflow-wrap: anywhere; max-width: 560px; }
td.hour, td.provider { white-space: nowrap; }
"""

_SCRIPT = """
"use strict";
const API = "/v0/management";
const REFRESH_MS = %(refresh)d * 1000;
const SVG = "http://www.w3.org/2000/svg";
let skew = 0;  // server clock minus this browser's, in seconds

function now() { return Date.now() / 1000 + skew; }

function placeholder(text, columns) {
  const td = el("td", "none", text);
  td.colSpan = columns;
  return el("tr", "", td);
}

function el(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  for (const c of children) e.append(c instanceof Node ? c : String(c ?? ""));
  return e;
}

function svg(tag, attrs) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function left(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  if (seconds < 120) return seconds + "s";
  if (seconds < 7200) return Math.floor(seconds / 60) + " min";
  if (seconds < 172800) return Math.floor(seconds / 3600) + " h " + Math.floor(seconds %% 3600 / 60) + " min";
  return Math.floor(seconds / 86400) + " days";
}

function countdown(until) {
  const span = el("span", "left");
  if (until) { span.dataset.until = String(until); span.textContent = left(until - now()); }
  return span;
}

function tick() {
  for (const span of document.querySelectorAll("[data-until]")) {
    span.textContent = left(Number(span.dataset.until) - now());
  }
}

function quotaCell(quota) {
  const td = el("td", "quota");
  if (!quota || !quota.windows.length) { td.append(el("span", "none", "no quota reported")); return td; }
  for (const w of quota.windows) {
    const row = el("div", "window");
    row.dataset.window = w.name;
    const used = w.used == null ? null : Math.min(1, Math.max(0, w.used));
    row.dataset.used = used == null ? "" : String(Math.round(used * 100));
    const bar = svg("svg", {viewBox: "0 0 100 8", preserveAspectRatio: "none", role: "img"});
    const title = svg("title");
    title.textContent = w.name + ": " + (used == null ? "usage unknown" : Math.round(used * 100) + "%% used");
    bar.append(title, svg("rect", {class: "track", x: 0, y: 0, width: 100, height: 8, rx: 2}));
    if (used != null) {
      bar.append(svg("rect", {class: "fill" + (w.exhausted ? " exhausted" : ""), x: 0, y: 0, width: used * 100, height: 8, rx: 2}));
    }
    let text = used == null ? "" : Math.round(used * 100) + "%% used";
    if (w.remaining != null && w.limit != null) text = w.remaining + " / " + w.limit + " left";
    const info = el("span", "small", text);
    if (w.resets_at) { info.append(" · resets in "); info.append(countdown(w.resets_at)); }
    row.append(el("span", "name", w.name), bar, info);
    td.append(row);
  }
  return td;
}

function credentialRow(c) {
  const tr = el("tr", "cred state-" + c.state);
  tr.dataset.id = c.id;
  tr.dataset.state = c.state;
  tr.append(el("td", "provider", c.service ? c.provider + " · " + c.service : c.provider));
  const label = el("td", "label", c.label);
  if (c.email) label.append(el("div", "small", c.email));
  tr.append(label);
  const state = el("td", "state", el("span", "badge", c.state));
  if (c.until) state.append(countdown(c.until));
  if (c.detail) state.append(el("div", "detail", c.detail));
  tr.append(state, quotaCell(c.quota));
  const hour = el("td", "hour");
  if (c.last_hour) {
    hour.dataset.requests = String(c.last_hour.requests);
    hour.dataset.errors = String(c.last_hour.errors);
    hour.append(c.last_hour.requests + " req · " + c.last_hour.errors + " err");
  } else {
    hour.append(el("span", "none", "not recorded"));
  }
  tr.append(hour);
  return tr;
}

function renderCredentials(data) {
  const body = document.querySelector("#credentials tbody");
  const rows = data.credentials.map(credentialRow);
  if (!rows.length) rows.push(placeholder("no credentials: add keys to config.yaml or logins to the auth directory", 5));
  body.replaceChildren(...rows);
  document.getElementById("count").textContent = data.credentials.length + " credential(s)";
}

function renderUsage(data) {
  const box = document.getElementById("usage");
  if (!data) { box.replaceChildren(el("p", "none", "usage is not recorded")); return; }
  const source = document.getElementById("usage-source");
  source.dataset.source = data.source ?? "local";
  source.textContent = data.source === "shared"
    ? "all instances sharing the state store (" + (data.instances ?? []).length + " with requests)"
    : "this instance only";
  // Buckets start on multiples of their length (as the database groups them).
  const span = data.bucket_seconds, start = Math.floor(data.since / span) * span;
  const buckets = Math.max(1, Math.ceil((data.until - start) / span));
  const models = new Map();
  for (const row of data.rows) {
    const key = row.key ?? "(unknown)";
    if (!models.has(key)) models.set(key, {requests: new Array(buckets).fill(0), errors: new Array(buckets).fill(0), total: 0});
    const m = models.get(key);
    const i = Math.min(buckets - 1, Math.max(0, Math.floor((row.bucket - start) / span)));
    m.requests[i] += row.requests; m.errors[i] += row.errors; m.total += row.requests;
  }
  const lines = [];
  for (const [name, m] of [...models.entries()].sort((a, b) => b[1].total - a[1].total)) {
    const peak = Math.max(1, ...m.requests);
    const chart = svg("svg", {viewBox: "0 0 " + buckets * 10 + " 32", preserveAspectRatio: "none", role: "img"});
    m.requests.forEach((n, i) => {
      if (!n) return;
      const h = Math.max(1, n / peak * 30), e = m.errors[i] / peak * 30;
      const bar = svg("rect", {class: "req", x: i * 10 + 1, y: 32 - h, width: 8, height: h});
      const t = svg("title");
      t.textContent = new Date((start + i * span) * 1000).toLocaleString() + ": " + n + " requests, " + m.errors[i] + " errors";
      bar.append(t);
      chart.append(bar);
      if (e) chart.append(svg("rect", {class: "err", x: i * 10 + 1, y: 32 - e, width: 8, height: e}));
    });
    const line = el("div", "model", el("span", "name", name), el("span", "small", m.total + " req"), chart);
    line.dataset.model = name;
    line.dataset.requests = String(m.total);
    lines.push(line);
  }
  if (!lines.length) lines.push(el("p", "none", "no requests in the last 24 hours"));
  box.replaceChildren(...lines);
}

function renderErrors(data) {
  const body = document.querySelector("#errors tbody");
  if (!data) { body.replaceChildren(placeholder("errors are not recorded", 5)); return; }
  const rows = data.errors.map((e) => {
    const tr = el("tr", "error");
    tr.append(
      el("td", "small", e.time ? new Date(e.time * 1000).toLocaleString() : ""),
      el("td", "", e.model ?? ""),
      el("td", "", e.credential ?? ""),
      el("td", "status", e.status ?? ""),
      el("td", "message", e.error ?? ""),
    );
    return tr;
  });
  if (!rows.length) rows.push(placeholder("no errors", 5));
  body.replaceChildren(...rows);
}

function renderInstances(data) {
  const section = document.getElementById("instances");
  if (!data || !data.shared) { section.hidden = true; return; }
  section.hidden = false;
  const store = data.store + (data.connected ? "" : " (unreachable: this instance serves on its own state)");
  document.getElementById("store").textContent = store;
  const rows = data.instances.map((i) => {
    const tr = el("tr", "instance");
    tr.dataset.address = i.address;
    tr.append(
      el("td", "", i.address + (i.self ? " (this one)" : "")),
      el("td", "small", i.instance),
      el("td", "", i.version),
      el("td", "small", i.started ? new Date(i.started * 1000).toLocaleString() : ""),
    );
    return tr;
  });
  if (!rows.length) rows.push(placeholder("no instance has announced itself yet", 4));
  section.querySelector("tbody").replaceChildren(...rows);
}

async function get(path) {
  const response = await fetch(API + path, {credentials: "same-origin", cache: "no-store"});
  if (response.status === 401) { location.reload(); throw new Error("logged out"); }
  if (response.status === 404 && path !== "/credentials") return null;
  if (!response.ok) throw new Error(path + ": HTTP " + response.status);
  return response.json();
}

async function refresh() {
  const banner = document.getElementById("banner");
  try {
    const [credentials, usage, errors, instances] = await Promise.all([
      get("/credentials"), get("/usage?by=model&since=86400&bucket=3600"), get("/errors?limit=20"), get("/instances"),
    ]);
    skew = credentials.now - Date.now() / 1000;
    renderCredentials(credentials);
    renderUsage(usage);
    renderErrors(errors);
    renderInstances(instances);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.loaded = "true";
    banner.className = "";
  } catch (e) {
    banner.textContent = "cannot reach the proxy's management API: " + e.message;
    banner.className = "shown";
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
setInterval(tick, 1000);
""" % {"refresh": REFRESH_SECONDS}

_PAGE = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>cliproxy status</title>
<style>{_STYLE}</style>
</head>
<body>
<header><h1>cliproxy</h1><span id="count"></span><span class="grow"></span><span id="updated">loading…</span>
<a href="/status/logout">log out</a></header>
<div id="banner" role="alert"></div>
<main>
<section><h2>Credentials</h2>
<table id="credentials"><thead><tr><th>Provider</th><th>Credential</th><th>State</th><th>Quota</th><th>Last hour</th></tr></thead>
<tbody></tbody></table></section>
<section><h2>Requests per model, last 24 hours</h2><p class="small" id="usage-source"></p><div id="usage"></div></section>
<section id="instances" hidden><h2>Instances sharing the state store</h2>
<p class="small" id="store"></p>
<table><thead><tr><th>Listener</th><th>Instance</th><th>Version</th><th>Started</th></tr></thead>
<tbody></tbody></table></section>
<section><h2>Recent errors</h2>
<table id="errors"><thead><tr><th>When</th><th>Model</th><th>Credential</th><th>Status</th><th>Error</th></tr></thead>
<tbody></tbody></table></section>
</main>
<script>{_SCRIPT}</script>
</body>
</html>
"""

_LOGIN = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>cliproxy status: log in</title>
<style>{style}</style>
</head>
<body>
<header><h1>cliproxy</h1></header>
<main>
<section>
<h2>Log in to the status page</h2>
<p class="small">{message}</p>
<form method="post" action="/status/login">
<label>Management key (remote-management.secret-key)
<input type="password" name="key" autocomplete="current-password" autofocus required></label>
<button type="submit">Log in</button>
</form>
</section>
</main>
</body>
</html>
"""


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


HEADERS = {
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "content-security-policy": (
        f"default-src 'none'; script-src {_hash(_SCRIPT)}; style-src {_hash(_STYLE)}; "
        "connect-src 'self'; img-src data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


def status_page() -> bytes:
    return _PAGE.encode()


def login_page(message: str = "") -> bytes:
    return _LOGIN.format(style=_STYLE, message=html.escape(message)).encode()
