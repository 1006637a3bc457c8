/// The page served at `GET /api/optimized/dashboard`: one self-contained HTML
/// document (inline CSS and JS, charts drawn on `<canvas>`, no external
/// resources) for the people running a migration.
///
/// It polls `GET /api/optimized/metrics?window=SECONDS` (the `MonitorJSON`
/// shape; `MonitorJSON.since(query:now:)` reads the window) and
/// `GET /api/optimized` (the SPEC §4 status document) every 2 s with
/// `credentials: 'same-origin'`, so the `turnout_admin` cookie authenticates
/// it. Opened as `…/dashboard?token=T`, it keeps `T` in memory only, drops it
/// from the address bar and also sends `Authorization: Bearer T`.
///
/// Controls: Start migration (`POST /api/optimized/migrate`), Set percent
/// (`PUT /api/optimized/rollout {"percent":N}`), Stop (`DELETE /api/optimized`),
/// each after a confirmation, showing the JSON error body on failure.
/// Everything from the server is inserted as text (never as HTML), so client
/// keys and plugin errors cannot inject markup. Unknown values show "—".
public enum Dashboard {
    /// The page as UTF-8, ready to send with `Content-Type: text/html; charset=utf-8`.
    public static var bytes: [UInt8] { Array(html.utf8) }

    public static let html: String = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Turnout — migration dashboard</title>
<style>
:root { --bg:#f4f5f7; --card:#fff; --ink:#1c2230; --muted:#667085; --line:#e2e5ea;
        --legacy:#8a94a6; --optimized:#2f6fed; --ok:#1f9d55; --warn:#c98500; --bad:#d14343; --accent:#7c4dff; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--ink); }
header { display: flex; align-items: center; gap: 12px; padding: 10px 20px; background: var(--ink); color: #fff;
         position: sticky; top: 0; z-index: 2; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0 8px 0 0; font-weight: 600; }
header .sub { color: #c3c8d2; margin-left: auto; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         background: var(--muted); color: #fff; white-space: nowrap; }
.badge.ok, .badge.running, .badge.completed { background: var(--ok); }
.badge.degraded, .badge.warning, .badge.preparation, .badge.rollout, .badge.monitoring { background: var(--warn); }
.badge.down, .badge.stopped, .badge.critical, .badge.rolled_back { background: var(--bad); }
main { padding: 14px 20px 40px; max-width: 1600px; margin: 0 auto; display: grid; gap: 14px; }
.banner { padding: 9px 14px; border-radius: 6px; background: #fdecec; color: #8a1f1f; border: 1px solid #f3c0c0; white-space: pre-wrap; }
.banner.warn { background: #fff6e0; color: #6b4a00; border-color: #f0d9a0; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(196px, 1fr)); gap: 12px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; min-width: 0; }
.card h2 { font-size: 11px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted); margin: 0 0 6px; font-weight: 600; }
.card h2 .sub { text-transform: none; letter-spacing: 0; font-weight: 400; }
.big { font-size: 26px; font-weight: 600; line-height: 1.15; font-variant-numeric: tabular-nums; }
.sub { color: var(--muted); font-size: 12px; }
.split { display: flex; height: 10px; border-radius: 5px; overflow: hidden; background: var(--line); margin: 8px 0 4px; }
.split .opt { background: var(--optimized); } .split .leg { background: var(--legacy); }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px; vertical-align: -1px; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 600; font-size: 12px; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; }
.mini { font-size: 12px; margin-top: 2px; }
.mini td, .mini th { padding: 2px 3px; border: 0; }
.mini td:first-child { color: var(--muted); }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(380px, 1fr)); gap: 12px; }
.chart canvas { width: 100%; height: 170px; display: block; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: 12px; color: var(--muted); margin-bottom: 4px; min-height: 18px; }
.legend b { color: var(--ink); font-weight: 600; font-variant-numeric: tabular-nums; }
.legend i { display: inline-block; width: 12px; height: 3px; margin-right: 4px; vertical-align: middle; }
.toolbar { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; }
.toolbar h2 { margin: 0 8px 0 0; }
button { font: inherit; padding: 5px 12px; border-radius: 6px; border: 1px solid #c9ced6; background: #fff; color: var(--ink); cursor: pointer; }
button:hover { border-color: var(--ink); }
button.primary { background: var(--optimized); color: #fff; border-color: var(--optimized); }
button.danger { background: var(--bad); color: #fff; border-color: var(--bad); }
button.active { background: var(--ink); color: #fff; border-color: var(--ink); }
button:disabled { opacity: .5; cursor: default; }
input[type=number] { width: 76px; font: inherit; padding: 4px 6px; border: 1px solid #c9ced6; border-radius: 6px; }
.result { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre-wrap; margin: 8px 0 0; color: var(--ok); }
.result.error { color: var(--bad); }
.result:empty { display: none; }
.tables { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 12px; }
@media (min-width: 1000px) { .wide { grid-column: span 2; } }
header .label { color: #c3c8d2; font-size: 12px; }
.spacer { flex: 1; }
</style>
</head>
<body>
<header>
  <h1>Turnout · migration</h1>
  <span class="label">health</span><span class="badge" id="overall" title="worst state of any service">—</span>
  <span class="label">phase</span><span class="badge" id="phase-badge" title="migration phase">—</span>
  <span class="sub" id="updated">connecting…</span>
</header>
<main>
  <div id="banner" class="banner" hidden></div>
  <div id="config-banner" class="banner warn" hidden></div>

  <section class="cards">
    <div class="card">
      <h2>Rollout</h2>
      <div class="big" id="percent">—</div>
      <div class="sub">phase <span id="phase">—</span></div>
      <div class="sub" id="rollout-note"></div>
      <div class="sub" id="upstream-note"></div>
    </div>
    <div class="card">
      <h2>Traffic split</h2>
      <div class="big" id="rps">—</div>
      <div class="split"><div class="opt" id="split-opt" style="width:0"></div><div class="leg" id="split-leg" style="width:0"></div></div>
      <div class="sub"><span class="swatch" style="background:var(--optimized)"></span>optimized <span id="share-opt">—</span></div>
      <div class="sub"><span class="swatch" style="background:var(--legacy)"></span>legacy <span id="share-leg">—</span></div>
    </div>
    <div class="card">
      <h2>Latency</h2>
      <table class="mini">
        <tr><th>ms</th><th class="num">p50</th><th class="num">p95</th><th class="num">p99</th></tr>
        <tr><td>optimized</td><td class="num" id="opt-p50">—</td><td class="num" id="opt-p95">—</td><td class="num" id="opt-p99">—</td></tr>
        <tr><td>legacy</td><td class="num" id="leg-p50">—</td><td class="num" id="leg-p95">—</td><td class="num" id="leg-p99">—</td></tr>
      </table>
    </div>
    <div class="card">
      <h2>Errors &amp; fallbacks</h2>
      <div class="big" id="error-rate">—</div>
      <div class="sub">optimized <span id="opt-errors">—</span></div>
      <div class="sub">legacy <span id="leg-errors">—</span></div>
      <div class="sub">fallbacks <span id="fallback-rate">—</span> of optimized</div>
      <div class="sub" id="fallback-reasons"></div>
    </div>
    <div class="card">
      <h2>Cache</h2>
      <div class="big" id="hit-rate">—</div>
      <div class="sub">hit rate · all time <span id="hit-rate-total">—</span></div>
      <div class="sub">memory <span id="cache-usage">—</span> of budget</div>
      <div class="sub"><span id="cache-bytes">—</span></div>
      <div class="sub"><span id="cache-entries">—</span> entries · compression <span id="cache-compression">—</span></div>
    </div>
    <div class="card">
      <h2>Push · queue · process</h2>
      <div class="big" id="push-connections">—</div>
      <div class="sub">push connections · <span id="push-rate">—</span> msg/s</div>
      <div class="sub">slow-consumer drops <span id="push-drops">—</span></div>
      <div class="sub">queue <span id="queue-depth">—</span> · dead letters <span id="dead-letters">—</span> · retries <span id="retries">—</span></div>
      <div class="sub">RSS <span id="rss">—</span> · CPU <span id="cpu">—</span></div>
      <div class="sub">redis <span id="redis">—</span></div>
    </div>
  </section>

  <section class="card">
    <div class="toolbar">
      <h2>Migration controls</h2>
      <button id="btn-migrate" class="primary" type="button">Start migration</button>
      <label for="percent-input">Percent</label>
      <input id="percent-input" type="number" min="0" max="100" step="1" inputmode="decimal">
      <button id="btn-percent" type="button">Set percent</button>
      <button id="btn-stop" class="danger" type="button">Stop</button>
    </div>
    <div id="action-result" class="result" role="status"></div>
  </section>

  <section class="card">
    <div class="toolbar" id="range">
      <h2>History</h2>
      <button type="button" data-window="900">15 min</button>
      <button type="button" data-window="3600">1 h</button>
      <button type="button" data-window="21600">6 h</button>
      <button type="button" data-window="86400">24 h</button>
      <span class="spacer"></span>
      <span class="sub" id="history-note">—</span>
    </div>
  </section>
  <section class="charts" id="charts"></section>

  <section class="tables">
    <div class="card wide"><h2>Alerts</h2>
      <table><thead><tr><th>severity</th><th>alert</th><th>what to do</th><th>since</th></tr></thead><tbody id="alerts"></tbody></table></div>
    <div class="card"><h2>Services</h2>
      <table><thead><tr><th>service</th><th>state</th><th>reason</th></tr></thead><tbody id="services"></tbody></table></div>
    <div class="card wide"><h2>Top clients <span class="sub" id="clients-note"></span></h2>
      <table><thead><tr><th>client (sticky key)</th><th class="num">requests</th><th class="num">errors</th><th class="num">avg latency</th><th class="num">max latency</th></tr></thead><tbody id="clients"></tbody></table></div>
    <div class="card"><h2>Plugins</h2>
      <table><thead><tr><th>plugin</th><th>version</th><th>loaded</th><th>error</th></tr></thead><tbody id="plugins"></tbody></table></div>
    <div class="card wide"><h2>Migration history</h2>
      <table><thead><tr><th>at</th><th>phase</th><th class="num">percent</th><th>note</th></tr></thead><tbody id="migration-history"></tbody></table></div>
  </section>
</main>
<script>
(function () {
  'use strict';
  var DASH = '\u2014';
  var POLL_MS = 2000;
  var METRICS = '/api/optimized/metrics';
  var STATUS = '/api/optimized';

  // The admin token: from ?token= once, then in memory only (the cookie does the rest).
  var token = null;
  try {
    var params = new URLSearchParams(window.location.search);
    if (params.has('token')) {
      token = params.get('token') || null;
      params.delete('token');
      var rest = params.toString();
      window.history.replaceState(null, '', window.location.pathname + (rest ? '?' + rest : '') + window.location.hash);
    }
  } catch (e) { token = null; }

  var state = { metrics: null, status: null, windowSeconds: 3600, inFlight: false, again: false, timer: null };

  function $(id) { return document.getElementById(id); }
  function isNum(v) { return typeof v === 'number' && isFinite(v); }
  function obj(v) { return v !== null && typeof v === 'object' ? v : null; }
  function list(v) { return Array.isArray(v) ? v : []; }
  function str(v) { return typeof v === 'string' && v !== '' ? v : null; }

  function fmtNum(v, digits) {
    return isNum(v) ? v.toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 1 : digits }) : DASH;
  }
  function fmtPct(v, digits) { return isNum(v) ? (v * 100).toFixed(digits === undefined ? 1 : digits) + ' %' : DASH; }
  function fmtPercent(v) { return isNum(v) ? fmtNum(v, 2) + ' %' : DASH; }
  function fmtMs(v) { return isNum(v) ? (v === 0 ? '0' : Math.abs(v) >= 100 ? Math.round(v).toLocaleString() : v.toFixed(1)) + ' ms' : DASH; }
  function fmtBytes(v) {
    if (!isNum(v)) return DASH;
    var units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'], i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
    return (i === 0 ? String(Math.round(v)) : v.toFixed(1)) + ' ' + units[i];
  }
  function pad2(n) { return n < 10 ? '0' + n : String(n); }
  function fmtClock(seconds, withSeconds) {
    if (!isNum(seconds)) return DASH;
    var d = new Date(seconds * 1000);
    return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + (withSeconds ? ':' + pad2(d.getSeconds()) : '');
  }
  function fmtWhen(v) {
    var d = isNum(v) ? new Date(v * 1000) : (str(v) ? new Date(v) : null);
    if (!d || isNaN(d.getTime())) return DASH;
    return d.toLocaleString();
  }

  function setText(id, text) {
    var e = $(id);
    if (e) e.textContent = text === null || text === undefined || text === '' ? DASH : String(text);
  }
  function setBadge(id, word) {
    var e = $(id);
    if (!e) return;
    e.textContent = word || DASH;
    e.className = 'badge' + (word ? ' ' + String(word).replace(/[^a-z_]/gi, '') : '');
  }
  function cell(text, cls) {
    var td = document.createElement('td');
    td.textContent = text === null || text === undefined || text === '' ? DASH : String(text);
    if (cls) td.className = cls;
    return td;
  }
  function badgeCell(word) {
    var td = document.createElement('td');
    var span = document.createElement('span');
    span.className = 'badge ' + String(word || '').replace(/[^a-z_]/gi, '');
    span.textContent = word || DASH;
    td.appendChild(span);
    return td;
  }
  function fillTable(id, rows, emptyText, columns) {
    var body = $(id);
    if (!body) return;
    body.textContent = '';
    if (rows.length === 0) {
      var tr = document.createElement('tr');
      var td = cell(emptyText, 'sub');
      td.colSpan = columns;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    rows.forEach(function (cells) {
      var tr = document.createElement('tr');
      cells.forEach(function (c) { tr.appendChild(c); });
      body.appendChild(tr);
    });
  }

  // ---- HTTP -------------------------------------------------------------
  function headers(extra) {
    var h = { 'Accept': 'application/json' };
    if (token) h['Authorization'] = 'Bearer ' + token;
    if (extra) Object.keys(extra).forEach(function (k) { h[k] = extra[k]; });
    return h;
  }
  function request(method, path, body) {
    var init = { method: method, credentials: 'same-origin', cache: 'no-store',
                 headers: headers(body === undefined ? null : { 'Content-Type': 'application/json' }) };
    if (body !== undefined) init.body = JSON.stringify(body);
    return fetch(path, init).then(function (res) {
      return res.text().then(function (text) {
        var json = null;
        if (text) { try { json = JSON.parse(text); } catch (e) { json = null; } }
        return { ok: res.ok, status: res.status, json: json, text: text };
      });
    });
  }
  function describeError(what, r) {
    var j = obj(r.json) || {};
    var line = what + ': HTTP ' + r.status;
    if (str(j.error)) line += ' ' + j.error;
    if (str(j.message)) line += ': ' + j.message;
    else if (!r.json && r.text) line += ': ' + r.text.slice(0, 200);
    if (str(j.field)) line += ' (field ' + j.field + ')';
    if (r.status === 401 || r.status === 403) line += '\nOpen this page as /api/optimized/dashboard?token=<server.admin_token>.';
    return line;
  }

  // ---- polling ------------------------------------------------------------
  function poll() {
    if (state.inFlight) { state.again = true; return; }
    state.inFlight = true;
    window.clearTimeout(state.timer);
    var problems = [];
    function settle(what, promise, apply) {
      return promise.then(function (r) {
        if (r.ok && obj(r.json)) apply(r.json);
        else problems.push(r.ok ? what + ': the answer is not a JSON object' : describeError(what, r));
      }, function (err) {
        problems.push(what + ': cannot reach Turnout (' + (err && err.message ? err.message : 'network error') + ')');
      });
    }
    Promise.all([
      settle('GET ' + METRICS, request('GET', METRICS + '?window=' + state.windowSeconds), function (j) { state.metrics = j; }),
      settle('GET ' + STATUS, request('GET', STATUS), function (j) { state.status = j; })
    ]).then(function () {
      var banner = $('banner');
      banner.hidden = problems.length === 0;
      banner.textContent = problems.join('\n');
      setText('updated', (problems.length === 0 ? 'updated ' : 'update failed at ') + fmtClock(Date.now() / 1000, true));
      render();
    }).catch(function (err) {
      var banner = $('banner');
      banner.hidden = false;
      banner.textContent = 'The dashboard failed to draw: ' + (err && err.message ? err.message : err);
    }).then(function () {
      state.inFlight = false;
      var delay = state.again ? 0 : POLL_MS;
      state.again = false;
      state.timer = window.setTimeout(poll, delay);
    });
  }

  // ---- rendering ------------------------------------------------------------
  var HEALTH_RANK = { ok: 0, running: 0, degraded: 1, down: 2, stopped: 2 };
  function worse(a, b) {
    var ra = HEALTH_RANK[a], rb = HEALTH_RANK[b];
    if (ra === undefined) return b;
    if (rb === undefined) return a;
    return rb > ra ? b : a;
  }

  function render() {
    var m = obj(state.metrics) || {};
    var s = obj(state.status) || {};
    var cur = obj(m.current) || {};
    var lanes = obj(cur.lanes) || {};
    var opt = obj(lanes.optimized) || {};
    var leg = obj(lanes.legacy) || {};
    var rollout = obj(s.rollout) || obj(cur.rollout) || {};

    // Rollout
    var percent = isNum(rollout.percent) ? rollout.percent : (obj(cur.rollout) || {}).percent;
    var phase = str(rollout.phase) || str((obj(cur.rollout) || {}).phase);
    setText('percent', fmtPercent(percent));
    setText('phase', phase);
    setBadge('phase-badge', phase);
    var notes = [];
    if (rollout.stopped === true) notes.push('optimized services stopped');
    if (str(rollout.halted)) notes.push('halted: ' + rollout.halted);
    $('rollout-note').textContent = notes.join(' · ');
    var input = $('percent-input');
    if (input && input.value === '' && document.activeElement !== input && isNum(percent)) input.value = String(percent);

    // Traffic split
    setText('rps', isNum(cur.requests_per_s) ? fmtNum(cur.requests_per_s, 1) + ' req/s' : DASH);
    var shareOpt = isNum(opt.share) ? opt.share : null;
    var shareLeg = isNum(leg.share) ? leg.share : null;
    $('split-opt').style.width = (shareOpt === null ? 0 : shareOpt * 100) + '%';
    $('split-leg').style.width = (shareLeg === null ? 0 : shareLeg * 100) + '%';
    setText('share-opt', fmtPct(shareOpt) + (isNum(opt.rps) ? ' (' + fmtNum(opt.rps, 1) + '/s)' : ''));
    setText('share-leg', fmtPct(shareLeg) + (isNum(leg.rps) ? ' (' + fmtNum(leg.rps, 1) + '/s)' : ''));

    // Latency
    function ms(v) { return isNum(v) ? (Math.abs(v) >= 100 ? Math.round(v).toLocaleString() : v.toFixed(1)) : DASH; }
    setText('opt-p50', ms(opt.p50_ms)); setText('opt-p95', ms(opt.p95_ms)); setText('opt-p99', ms(opt.p99_ms));
    setText('leg-p50', ms(leg.p50_ms)); setText('leg-p95', ms(leg.p95_ms)); setText('leg-p99', ms(leg.p99_ms));

    // Errors and fallbacks
    var fb = obj(cur.fallbacks) || {};
    setText('error-rate', fmtPct(cur.error_rate, 2));
    setText('opt-errors', fmtPct(opt.error_rate, 2));
    setText('leg-errors', fmtPct(leg.error_rate, 2));
    setText('fallback-rate', fmtPct(fb.rate, 2));
    var reasons = ['timeout', 'error', 'status', 'unavailable'].filter(function (k) { return isNum(fb[k]) && fb[k] > 0; })
      .map(function (k) { return k + ' ' + fmtNum(fb[k], 0); });
    $('fallback-reasons').textContent = reasons.length ? 'since start: ' + reasons.join(', ') : '';

    // Cache
    var cache = obj(cur.cache) || {};
    setText('hit-rate', fmtPct(cache.hit_rate));
    setText('hit-rate-total', fmtPct(cache.hit_rate_total));
    setText('cache-usage', fmtPct(cache.usage));
    setText('cache-bytes', isNum(cache.bytes) ? fmtBytes(cache.bytes) + ' of ' + fmtBytes(cache.max_bytes) : DASH);
    var upstream = obj(s.upstream) || {};
    $('upstream-note').textContent = upstream.healthy === false ? 'legacy API unhealthy' + (str(upstream.message) ? ': ' + upstream.message : '') : '';
    setText('cache-entries', fmtNum(cache.entries, 0));
    setText('cache-compression', isNum(cache.compression_ratio) ? fmtNum(cache.compression_ratio, 2) + '\u00d7' : DASH);

    // Push, queue, process, redis
    var push = obj(cur.push) || {}, queue = obj(cur.queue) || {}, proc = obj(cur.process) || {};
    setText('push-connections', fmtNum(push.connections, 0));
    setText('push-rate', fmtNum(push.messages_per_s, 1));
    setText('push-drops', fmtNum(push.slow_consumer_drops, 0));
    setText('queue-depth', fmtNum(queue.depth, 0));
    setText('dead-letters', fmtNum(queue.dead_letters, 0));
    setText('retries', fmtNum(queue.retries, 0));
    setText('rss', fmtBytes(proc.rss_bytes));
    setText('cpu', isNum(proc.cpu_utilization) ? fmtPct(proc.cpu_utilization, 0) : DASH);
    setText('redis', str((obj(cur.redis) || {}).state));

    // Overall health: the monitor's verdict, else the worst service state of the status document.
    var health = obj(m.health);
    var overall = health ? str(health.overall) : null;
    var services = obj(s.services) || {};
    Object.keys(services).forEach(function (k) { overall = worse(overall, str((obj(services[k]) || {}).state)); });
    if (upstream.healthy === false) overall = worse(overall, 'down');
    setBadge('overall', overall === 'running' ? 'ok' : overall === 'stopped' ? 'down' : overall);

    var config = obj(s.config) || {};
    var configBanner = $('config-banner');
    configBanner.hidden = !str(config.error);
    configBanner.textContent = str(config.error) ? 'proxy.conf was not applied (the previous config is in force): ' + config.error : '';

    renderHistoryNote(obj(m.history) || {});
    renderCharts();
    renderAlerts(m, s);
    renderServices(s, health);
    renderPlugins(s);
    renderClients(m);
    renderMigrationHistory(rollout);
  }

  function renderHistoryNote(h) {
    var t = list(h.t).filter(isNum);
    var text = t.length ? t.length + ' points from ' + fmtClock(t[0]) + ' to ' + fmtClock(t[t.length - 1]) : 'no history yet';
    if (isNum(h.stored) && isNum(h.capacity)) text += ' · ' + fmtNum(h.stored, 0) + ' of ' + fmtNum(h.capacity, 0) + ' samples kept';
    $('history-note').textContent = text;
  }

  function renderAlerts(m, s) {
    var rows = [];
    list(m.alerts).forEach(function (a) {
      a = obj(a) || {};
      rows.push([badgeCell(str(a.severity) || 'warning'), cell(a.name), cell(a.message, 'wrap'), cell(fmtWhen(a.raised_at))]);
    });
    var seen = {};
    list(m.alerts).forEach(function (a) { if (obj(a) && str(a.name)) seen[a.name] = true; });
    list(s.alerts).forEach(function (a) {
      a = obj(a) || {};
      if (str(a.name) && seen[a.name]) return;
      rows.push([badgeCell(str(a.severity) || 'critical'), cell(a.name), cell(a.message, 'wrap'), cell(fmtWhen(a.raised_at))]);
    });
    fillTable('alerts', rows, 'No alerts.', 4);
  }

  function renderServices(s, health) {
    var byName = {};
    var order = [];
    function note(name, st, reason) {
      if (!byName[name]) { byName[name] = { state: null, reason: null }; order.push(name); }
      var row = byName[name];
      var w = worse(row.state, st);
      if (w !== row.state || !row.reason) { row.state = w; row.reason = reason || row.reason; }
    }
    var services = obj(s.services) || {};
    Object.keys(services).forEach(function (k) {
      var v = obj(services[k]) || {};
      note(k, str(v.state), str(v.reason));
    });
    var hs = obj(health && health.services) || {};
    Object.keys(hs).forEach(function (k) {
      var v = obj(hs[k]) || {};
      note(k, str(v.state), str(v.reason));
    });
    var up = obj(s.upstream);
    if (up && !hs.upstream) {
      var upState = up.healthy === false ? 'down' : (up.healthy === true ? 'ok' : null);
      note('upstream', upState, [str(up.url), str(up.message)].filter(Boolean).join(' · '));
    }
    var rows = order.map(function (k) { return [cell(k), badgeCell(byName[k].state), cell(byName[k].reason, 'wrap')]; });
    fillTable('services', rows, 'No service status yet.', 3);
  }

  function renderPlugins(s) {
    var rows = list(s.plugins).map(function (p) {
      p = obj(p) || {};
      return [cell(p.name), cell(p.version), cell(fmtWhen(p.loaded_at)), cell(str(p.error) || '', 'wrap')];
    });
    fillTable('plugins', rows, 'No plugins configured.', 4);
  }

  // Space-saving counters whose count is mostly inherited from evicted keys say
  // little about the client: they are left out and counted in the note.
  function renderClients(m) {
    var all = list(m.top_clients).map(function (c) { return obj(c) || {}; });
    var shown = all.filter(function (c) { return !(isNum(c.count_error) && isNum(c.requests) && c.count_error * 2 > c.requests); });
    var hidden = all.length - shown.length;
    $('clients-note').textContent = hidden > 0 ? '· ' + hidden + ' low-volume clients not shown (counts uncertain)' : '';
    var rows = shown.slice(0, 20).map(function (c) {
      var req = fmtNum(c.requests, 0);
      if (isNum(c.count_error) && c.count_error > 0) req += ' (±' + fmtNum(c.count_error, 0) + ')';
      return [cell(c.key, 'wrap'), cell(req, 'num'), cell(fmtPct(c.error_rate, 1), 'num'),
              cell(fmtMs(c.avg_latency_ms), 'num'), cell(fmtMs(c.max_latency_ms), 'num')];
    });
    fillTable('clients', rows, 'No client traffic recorded yet.', 5);
  }

  function renderMigrationHistory(rollout) {
    var rows = list(rollout.history).slice(-12).reverse().map(function (h) {
      h = obj(h) || {};
      return [cell(fmtWhen(h.at)), badgeCell(str(h.phase)), cell(fmtPercent(h.percent), 'num'), cell(h.message, 'wrap')];
    });
    fillTable('migration-history', rows, 'No migration yet.', 4);
  }

  // ---- charts ---------------------------------------------------------------
  // Each series names a column of the metrics document's "history" object.
  var CHARTS = [
    { title: 'Traffic (req/s)', format: function (v) { return fmtNum(v, 1); }, series: [
      { key: 'optimized_rps', label: 'optimized', color: '#2f6fed' },
      { key: 'legacy_rps', label: 'legacy', color: '#8a94a6' } ] },
    { title: 'Latency', format: fmtMs, threshold: 'response_time_ms', series: [
      { key: 'optimized_p95_ms', label: 'optimized p95', color: '#2f6fed' },
      { key: 'optimized_p50_ms', label: 'optimized p50', color: '#2f6fed', dash: [4, 3] },
      { key: 'legacy_p95_ms', label: 'legacy p95', color: '#8a94a6' },
      { key: 'legacy_p50_ms', label: 'legacy p50', color: '#8a94a6', dash: [4, 3] } ] },
    { title: 'Errors & fallbacks', format: function (v) { return fmtPct(v, 1); }, threshold: 'error_rate', series: [
      { key: 'optimized_error_rate', label: 'optimized errors', color: '#d14343' },
      { key: 'legacy_error_rate', label: 'legacy errors', color: '#8a94a6' },
      { key: 'fallback_rate', label: 'fallbacks', color: '#c98500', dash: [4, 3] } ] },
    { title: 'Cache', format: function (v) { return fmtPct(v, 0); }, max: 1, thresholds: ['cache_hit_rate', 'memory_usage'], series: [
      { key: 'cache_hit_rate', label: 'hit rate', color: '#1f9d55' },
      { key: 'cache_usage', label: 'memory used', color: '#7c4dff' } ] },
    { title: 'Rollout (%)', format: function (v) { return fmtNum(v, 1) + ' %'; }, max: 100, step: true, series: [
      { key: 'percent', label: 'rollout percent', color: '#2f6fed' } ] },
    { title: 'Push connections', format: function (v) { return fmtNum(v, 0); }, series: [
      { key: 'push_connections', label: 'connections', color: '#7c4dff' } ] }
  ];

  function buildCharts() {
    var host = $('charts');
    CHARTS.forEach(function (c) {
      var card = document.createElement('div');
      card.className = 'card chart';
      var h = document.createElement('h2');
      h.textContent = c.title;
      c.legend = document.createElement('div');
      c.legend.className = 'legend';
      c.canvas = document.createElement('canvas');
      card.appendChild(h); card.appendChild(c.legend); card.appendChild(c.canvas);
      host.appendChild(card);
    });
  }

  function niceCeil(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function lastNumber(values) {
    for (var i = values.length - 1; i >= 0; i--) if (isNum(values[i])) return values[i];
    return null;
  }

  function renderCharts() {
    var m = obj(state.metrics) || {};
    var h = obj(m.history) || {};
    var limits = obj(m.thresholds) || {};
    CHARTS.forEach(function (c) {
      c.legend.textContent = '';
      c.series.forEach(function (sr) {
        var item = document.createElement('span');
        var line = document.createElement('i');
        line.style.background = sr.color;
        if (sr.dash) line.style.opacity = '0.6';
        var value = document.createElement('b');
        value.textContent = c.format(lastNumber(list(h[sr.key])));
        item.appendChild(line);
        item.appendChild(document.createTextNode(sr.label + ' '));
        item.appendChild(value);
        c.legend.appendChild(item);
      });
      var names = c.thresholds || (c.threshold ? [c.threshold] : []);
      var lines = names.filter(function (n) { return isNum(limits[n]); }).map(function (n) { return { value: limits[n], label: n }; });
      drawChart(c, list(h.t), h, lines);
    });
  }

  function drawChart(c, t, h, thresholds) {
    var canvas = c.canvas;
    var w = canvas.clientWidth, ht = canvas.clientHeight;
    if (!w || !ht) return;
    var dpr = window.devicePixelRatio || 1;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(ht * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(ht * dpr);
    }
    var ctx = canvas.getContext('2d');
    if (!ctx) return;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, ht);
    ctx.font = '11px system-ui, sans-serif';
    var padL = 58, padR = 10, padT = 6, padB = 18;
    var pw = w - padL - padR, ph = ht - padT - padB;
    if (pw < 20 || ph < 20) return;

    var idx = [];
    for (var i = 0; i < t.length; i++) if (isNum(t[i])) idx.push(i);
    if (idx.length === 0) {
      ctx.fillStyle = '#667085';
      ctx.textAlign = 'center';
      ctx.fillText('no data yet', padL + pw / 2, padT + ph / 2);
      return;
    }
    var x0 = t[idx[0]], x1 = t[idx[idx.length - 1]];
    if (!(x1 > x0)) x0 = x1 - 60;

    var dataMax = 0;
    c.series.forEach(function (sr) {
      list(h[sr.key]).forEach(function (v) { if (isNum(v) && v > dataMax) dataMax = v; });
    });
    var top = c.max ? c.max : dataMax;
    thresholds.forEach(function (th) { if (!c.max && th.value <= dataMax * 2) top = Math.max(top, th.value); });
    top = c.max ? c.max : niceCeil(top * 1.05);
    if (!(top > 0)) top = 1;
    function X(v) { return padL + (v - x0) / (x1 - x0) * pw; }
    function Y(v) { return padT + ph - Math.max(0, Math.min(v, top)) / top * ph; }

    // grid and y labels
    ctx.strokeStyle = '#e2e5ea';
    ctx.fillStyle = '#667085';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (var g = 0; g <= 4; g++) {
      var gv = top * g / 4, gy = Math.round(Y(gv)) + 0.5;
      ctx.beginPath(); ctx.moveTo(padL, gy); ctx.lineTo(padL + pw, gy); ctx.stroke();
      ctx.fillText(c.format(gv), padL - 6, gy);
    }
    // x labels
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    var ticks = Math.max(2, Math.min(6, Math.floor(pw / 90)));
    for (var k = 0; k <= ticks; k++) {
      var tv = x0 + (x1 - x0) * k / ticks;
      ctx.fillText(fmtClock(tv, (x1 - x0) < 600), Math.min(Math.max(X(tv), padL + 16), padL + pw - 16), padT + ph + 4);
    }
    // thresholds
    thresholds.forEach(function (th) {
      if (th.value > top) return;
      var y = Math.round(Y(th.value)) + 0.5;
      ctx.save();
      ctx.strokeStyle = '#d14343';
      ctx.setLineDash([2, 3]);
      ctx.beginPath(); ctx.moveTo(padL, y); ctx.lineTo(padL + pw, y); ctx.stroke();
      ctx.restore();
    });
    // series, with gaps where a value is missing
    c.series.forEach(function (sr) {
      var values = list(h[sr.key]);
      ctx.save();
      ctx.strokeStyle = sr.color;
      ctx.fillStyle = sr.color;
      ctx.lineWidth = 1.6;
      if (sr.dash) ctx.setLineDash(sr.dash);
      ctx.beginPath();
      var open = false, prevY = null, count = 0, lastX = 0, lastY = 0;
      for (var j = 0; j < idx.length; j++) {
        var v = values[idx[j]];
        if (!isNum(v)) { open = false; continue; }
        var x = X(t[idx[j]]), y = Y(v);
        if (!open) { ctx.moveTo(x, y); open = true; }
        else { if (c.step && prevY !== null) ctx.lineTo(x, prevY); ctx.lineTo(x, y); }
        prevY = y; count++; lastX = x; lastY = y;
      }
      ctx.stroke();
      if (count === 1) { ctx.beginPath(); ctx.arc(lastX, lastY, 2.5, 0, Math.PI * 2); ctx.fill(); }
      ctx.restore();
    });
  }

  // ---- controls -------------------------------------------------------------
  function showResult(isError, text) {
    var e = $('action-result');
    e.className = 'result' + (isError ? ' error' : '');
    e.textContent = text;
  }

  function act(button, method, path, body, question) {
    if (!window.confirm(question)) return;
    var buttons = ['btn-migrate', 'btn-percent', 'btn-stop'].map($);
    buttons.forEach(function (b) { b.disabled = true; });
    showResult(false, method + ' ' + path + ' …');
    request(method, path, body).then(function (r) {
      if (r.ok) {
        showResult(false, method + ' ' + path + ': done (HTTP ' + r.status + ')');
      } else {
        var detail = r.json !== null ? JSON.stringify(r.json, null, 2) : (r.text || '(empty body)');
        showResult(true, describeError(method + ' ' + path + ' failed', r) + '\n' + detail);
      }
    }, function (err) {
      showResult(true, method + ' ' + path + ' failed: ' + (err && err.message ? err.message : 'network error'));
    }).then(function () {
      buttons.forEach(function (b) { b.disabled = false; });
      poll();
    });
  }

  $('btn-migrate').addEventListener('click', function () {
    act(this, 'POST', '/api/optimized/migrate', {},
        'Start a migration?\n\nTurnout raises the optimized share step by step while the lane stays healthy, and rolls back on its own if it misbehaves.');
  });
  $('btn-percent').addEventListener('click', function () {
    var raw = $('percent-input').value.trim();
    var n = Number(raw);
    if (raw === '' || !isFinite(n) || n < 0 || n > 100) {
      showResult(true, 'Enter a percent between 0 and 100.');
      return;
    }
    act(this, 'PUT', '/api/optimized/rollout', { percent: n },
        'Send ' + n + ' % of plugin-routed traffic to the optimized lane?');
  });
  $('btn-stop').addEventListener('click', function () {
    act(this, 'DELETE', '/api/optimized', undefined,
        'Stop the optimized services?\n\nAll traffic goes to the legacy API until POST /api/optimized/init.');
  });

  function selectWindow(seconds) {
    state.windowSeconds = seconds;
    Array.prototype.forEach.call(document.querySelectorAll('#range button'), function (b) {
      b.classList.toggle('active', Number(b.getAttribute('data-window')) === seconds);
    });
  }
  Array.prototype.forEach.call(document.querySelectorAll('#range button'), function (b) {
    b.addEventListener('click', function () { selectWindow(Number(b.getAttribute('data-window'))); poll(); });
  });

  var resizeTimer = null;
  window.addEventListener('resize', function () {
    window.clearTimeout(resizeTimer);
    resizeTimer = window.setTimeout(renderCharts, 100);
  });

  buildCharts();
  selectWindow(state.windowSeconds);
  render();
  poll();
})();
</script>
</body>
</html>
"""#
}
