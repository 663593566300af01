# ruff: noqa: E501 - CSS and JavaScript text
"""The UI's stylesheet and script, shipped inside the package (nothing is loaded from the internet)."""

from __future__ import annotations

CSS = """
:root { --fg:#1d2330; --muted:#5b6577; --line:#d8dde6; --bg:#f6f7f9; --accent:#1f5fbf; --ok:#1a7f37;
  --bad:#b42318; --warn:#9a6700; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
* { box-sizing: border-box; }
body { margin:0; color:var(--fg); background:var(--bg); line-height:1.45; }
a { color:var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible { outline:3px solid #f5a623; outline-offset:2px; }
.skip { position:absolute; left:-999px; } .skip:focus { left:8px; top:8px; background:#fff; padding:4px 8px; }
header.top { display:flex; flex-wrap:wrap; gap:12px; align-items:center; padding:10px 20px; background:#17202e; }
header.top a.brand { color:#fff; font-weight:700; text-decoration:none; font-size:1.1rem; }
header.top form { flex:1 1 320px; display:flex; gap:6px; position:relative; }
header.top input[type=search] { flex:1; padding:7px 10px; border-radius:6px; border:1px solid #44506a; font-size:1rem; }
header.top .who { color:#c9d1de; font-size:.9rem; }
header.top .who a { color:#c9d1de; }
button, .button { padding:6px 12px; border-radius:6px; border:1px solid var(--line); background:#fff; cursor:pointer;
  font-size:.95rem; color:var(--fg); text-decoration:none; }
button.danger { border-color:var(--bad); color:var(--bad); }
main { max-width:1200px; margin:0 auto; padding:16px 20px 40px; }
nav.crumbs { font-size:.9rem; color:var(--muted); margin-bottom:6px; }
nav.tabs { display:flex; flex-wrap:wrap; gap:4px; border-bottom:1px solid var(--line); margin:8px 0 16px; }
nav.tabs a { padding:6px 12px; text-decoration:none; border-radius:6px 6px 0 0; }
nav.tabs a[aria-current=page] { background:#fff; border:1px solid var(--line); border-bottom-color:#fff; margin-bottom:-1px; }
h1 { font-size:1.5rem; margin:4px 0 8px; } h2 { font-size:1.15rem; margin:20px 0 8px; }
.card { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 16px; margin-bottom:12px; }
.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(260px, 1fr)); gap:12px; }
table.list { width:100%; border-collapse:collapse; background:#fff; border:1px solid var(--line); }
table.list th, table.list td { text-align:left; padding:6px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
table.list th { background:#eef1f5; font-weight:600; font-size:.9rem; }
table.list tbody th { background:#fff; font-size:inherit; }
.scroll { overflow-x:auto; }
.muted { color:var(--muted); } .small { font-size:.85rem; }
.tag { display:inline-block; padding:1px 7px; border-radius:10px; background:#e8eef9; font-size:.8rem; margin:1px 2px; }
.status-SUCCEEDED { color:var(--ok); font-weight:600; } .status-FAILED { color:var(--bad); font-weight:600; }
.status-RUNNING, .status-PENDING { color:var(--warn); font-weight:600; } .status-CANCELLED { color:var(--muted); }
pre { background:#0f1724; color:#e6edf3; padding:12px; border-radius:6px; overflow-x:auto; font-size:.85rem; }
.code { position:relative; } .code button.copy { position:absolute; top:6px; right:6px; }
mark { background:#ffe58a; padding:0 1px; }
.empty { border:1px dashed var(--line); background:#fff; padding:16px; border-radius:8px; }
.error { border:1px solid var(--bad); background:#fdecea; color:var(--bad); padding:12px 16px; border-radius:8px; }
.count { font-size:1.6rem; font-weight:700; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:4px 16px; margin:4px 0; }
dt { color:var(--muted); } dd { margin:0; min-width:0; overflow-wrap:anywhere; }
.diff-added { color:var(--ok); } .diff-deleted { color:var(--bad); } .diff-changed { color:var(--warn); }
#live { position:absolute; top:100%; left:0; right:0; z-index:5; background:#fff; border:1px solid var(--line);
  border-radius:6px; max-height:60vh; overflow:auto; box-shadow:0 6px 20px rgba(0,0,0,.15); }
#live[hidden] { display:none; } #live a { display:block; padding:6px 10px; text-decoration:none; color:var(--fg); }
#live a:hover, #live a:focus { background:#eef3fc; }
.loading { color:var(--muted); padding:6px 10px; }
svg.lineage text { font-size:12px; font-family:inherit; } svg.lineage a text { fill:var(--accent); } svg.lineage text.muted { fill:var(--muted); }
.bar { fill:#5b8def; } .bar:hover { fill:#1f5fbf; }
ol.plain { list-style:none; padding:0; }
ul.diff-lines { list-style:none; padding-left:18px; margin:2px 0 6px; } ul.diff-lines code { white-space:pre-wrap; overflow-wrap:anywhere; }
figure.chart { margin:8px 0 0; } svg.histogram { max-width:100%; height:auto; display:block; }
svg.histogram text { font-size:11px; font-family:inherit; fill:var(--fg); }
svg.histogram .axis-title { font-size:12px; fill:var(--muted); }
svg.histogram .axis { stroke:var(--fg); } svg.histogram .grid { stroke:var(--line); }
svg.hbar rect { fill:#5b8def; } table.top-values { max-width:560px; } table.top-values caption { text-align:left; font-weight:600; padding:4px 0; }
details summary { cursor:pointer; color:var(--accent); font-size:.9rem; }
fieldset { border:0; padding:0; margin:0; display:flex; flex-wrap:wrap; gap:6px 10px; align-items:center; }
legend { font-weight:600; padding:0 0 6px; }
@media (max-width: 700px) {
  main { padding:10px; } header.top { padding:8px 10px; } .hide-narrow { display:none; }
  table.list th, table.list td { padding:5px 6px; }
}
"""

JS = """
(function () {
  var input = document.getElementById('q'), box = document.getElementById('live'),
    status = document.getElementById('live-status');
  if (!input || !box || !window.fetch) return;
  var timer = null, seq = 0;
  function esc(s) { return s.replace(/[&<>"']/g, function (c) {
    return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]; }); }
  function mark(text, words) {
    var out = esc(text);
    words.forEach(function (w) { if (!w) return;
      var re = new RegExp('(' + esc(w).replace(/[.*+?^${}()|[\\]\\\\]/g, '\\\\$&') + ')', 'ig');
      out = out.replace(re, '<mark>$1</mark>'); });
    return out;
  }
  function show(q) {
    var mine = ++seq;
    if (!q.trim()) { box.hidden = true; status.textContent = ''; return; }
    box.hidden = false; box.innerHTML = '<div class="loading">Searching\\u2026</div>'; status.textContent = 'Searching';
    var started = performance.now();
    fetch('/ui/api/search?q=' + encodeURIComponent(q), {credentials: 'same-origin'})
      .then(function (r) { if (!r.ok) throw new Error('search failed: HTTP ' + r.status); return r.json(); })
      .then(function (data) {
        if (mine !== seq) return;
        var words = q.toLowerCase().split(/\\s+/);
        if (!data.results.length) { box.innerHTML = '<div class="loading">No match for \\u201c' + esc(q) + '\\u201d.</div>'; }
        else box.innerHTML = data.results.map(function (h) {
          return '<a href="' + esc(h.url) + '"><span class="tag">' + esc(h.kind) + '</span> <strong>' + mark(h.name, words) +
            '</strong> <span class="muted small">' + esc(h.where) + '</span><br><span class="small">' +
            mark(h.description, words) + '</span></a>'; }).join('');
        status.textContent = data.results.length + (data.results.length === 1 ? ' result' : ' results') +
          ' for \\u201c' + q + '\\u201d';
        document.body.setAttribute('data-search-ms', String(Math.round(performance.now() - started)));
      })
      .catch(function (e) { if (mine === seq) box.innerHTML = '<div class="error" role="alert">' + esc(String(e.message)) + '</div>'; });
  }
  input.addEventListener('input', function () { clearTimeout(timer); var q = input.value; timer = setTimeout(function () { show(q); }, 120); });
  input.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') { box.hidden = true; }
    if (e.key === 'ArrowDown' && !box.hidden) { var a = box.querySelector('a'); if (a) { e.preventDefault(); a.focus(); } }
  });
  box.addEventListener('keydown', function (e) {
    var el = document.activeElement;
    if (e.key === 'ArrowDown' && el.nextElementSibling) { e.preventDefault(); el.nextElementSibling.focus(); }
    if (e.key === 'ArrowUp') { e.preventDefault(); (el.previousElementSibling || input).focus(); }
    if (e.key === 'Escape') { box.hidden = true; input.focus(); }
  });
  document.addEventListener('click', function (e) { if (!box.contains(e.target) && e.target !== input) box.hidden = true; });
  document.querySelectorAll('button.copy').forEach(function (b) {
    b.addEventListener('click', function () {
      var text = document.getElementById(b.getAttribute('data-for')).textContent;
      if (navigator.clipboard) navigator.clipboard.writeText(text).then(function () { b.textContent = 'Copied'; },
        function () { b.textContent = 'Select and copy'; });
    });
  });
})();
"""
