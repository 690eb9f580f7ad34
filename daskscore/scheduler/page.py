"""The job page at ``/daskscore/``: plain HTML and a small script, no CDN.

It polls ``api/jobs`` (:func:`~daskscore.scheduler.dashboard.job_views`) every
second and redraws: a summary table of every job, then for each job its
progress bars (mini-batches done, failed, running and remaining; items), a
throughput chart (items/s and mini-batches/s, from the job's samples), the ETA,
elapsed time, settings and thresholds in one line, the status (with the root
cause when it failed), a line per worker and the latest failed tries.
"""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>daskscore jobs</title>
<style>
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.4em 0; }
td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #eee; } td.l, th.l { text-align: left; }
section.job { border-top: 3px solid #888; margin-top: 1.5em; padding-top: 0.5em; }
.bar { display: flex; height: 18px; width: 100%; max-width: 900px;
       background: #e8e8e8; margin: 2px 0 6px; }
.bar div { height: 100%; }
.seg-done, .seg-succeeded { background: #3a9d3a; }
.seg-failed { background: #d43c3c; } .seg-running { background: #f0b400; }
.legend { font-size: 90%; } .settings { font-family: monospace; font-size: 90%; }
.st-Failed { color: #c00; font-weight: bold; } .st-Completed { color: #070; }
.st-Running { color: #a60; } tr.near-timeout td { background: #ffd6d6; }
td.err { font-family: monospace; max-width: 60em; overflow-wrap: anywhere; }
canvas { border: 1px solid #ccc; background: #fff; }
</style></head>
<body><h1>daskscore jobs</h1>
<table id="jobs"><thead><tr>
<th class="l">job</th><th class="l">status</th><th>mini-batches done</th><th>failed</th>
<th>remaining</th><th>items succeeded</th><th>items failed</th><th>items/s</th>
<th>ETA s</th></tr></thead><tbody></tbody></table>
<div id="details"></div>
<p id="updated"></p>
<script>
function esc(s) {
  return String(s === null || s === undefined ? "" : s).replace(/[&<>"']/g,
    c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"})[c]);
}
function secs(s) {
  if (s === null || s === undefined) return "-";
  s = Math.round(s); const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60);
  return (h ? h + "h" : "") + (h || m ? m + "m" : "") + (s % 60) + "s";
}
function bar(cls, parts, total) {
  return `<div class="bar ${cls}">` + parts.map(([name, n]) =>
    `<div class="seg-${name}" data-n="${n}" style="width:${total ? 100 * n / total : 0}%">` +
    `</div>`).join("") + `</div>`;
}
function rates(history) {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const [t0, m0, i0] = history[i - 1], [t1, m1, i1] = history[i], dt = t1 - t0;
    if (dt > 0) out.push([t1, (m1 - m0) / dt, (i1 - i0) / dt]);
  }
  return out;
}
function draw(canvas, history) {
  const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const r = rates(history || []);
  canvas.dataset.points = r.length;
  ctx.fillStyle = "#444"; ctx.font = "11px sans-serif";
  if (r.length < 1) { ctx.fillText("waiting for throughput samples", 10, h / 2); return; }
  const t0 = r[0][0], t1 = Math.max(r[r.length - 1][0], t0 + 1);
  [[2, "#1f6fd1", "items/s"], [1, "#d1641f", "mini-batches/s"]].forEach(([k, color, name], n) => {
    const max = Math.max(...r.map(p => p[k]), 1e-9);
    ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.beginPath();
    r.forEach((p, i) => {
      const x = 40 + (w - 50) * (p[0] - t0) / (t1 - t0), y = h - 20 - (h - 40) * p[k] / max;
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.stroke(); ctx.fillStyle = color;
    ctx.fillText(`${name} (max ${max.toFixed(2)}, now ${r[r.length - 1][k].toFixed(2)})`,
                 45 + n * 260, 12);
  });
  ctx.fillStyle = "#444"; ctx.fillText(secs(t1 - t0) + " shown", w - 80, h - 5);
}
function settingsLine(j) {
  const s = j.settings || {};
  const th = (j.thresholds || []).map(t =>
    `${t.name}=${t.limit} (now ${t.value})`).join(", ") || "no thresholds";
  return `script ${esc(s.script)} | inputs ${esc((s.inputs || []).join(", "))} | ` +
    `mini_batch_size ${esc(s.mini_batch_size)} | ${esc(th)} | ` +
    `run_invocation_timeout ${esc(s.run_invocation_timeout)}s | output ${esc(s.output)}`;
}
function workerRows(j) {
  const limit = (j.settings || {}).run_invocation_timeout || 0;
  return (j.workers || []).map(w => {
    const near = w.state === "scoring" && limit && w.seconds >= 0.8 * limit;
    return `<tr class="worker${near ? " near-timeout" : ""}" data-name="${esc(w.name)}">` +
      `<td class="l name">${esc(w.name)}</td><td class="l state">${esc(w.state)}</td>` +
      `<td class="mini-batch">${w.mini_batch === undefined ? "" : w.mini_batch}</td>` +
      `<td class="try">${w.try === undefined ? "" : w.try}</td>` +
      `<td class="seconds">${w.seconds === undefined ? "" : w.seconds.toFixed(1)}</td>` +
      `<td class="done">${w.done_mini_batches}</td>` +
      `<td class="ips">${(w.items_per_second || 0).toFixed(2)}</td></tr>`;
  }).join("");
}
function failureRows(j) {
  return (j.failures || []).slice().reverse().map(f =>
    `<tr class="failure"><td class="mini-batch">${f.mini_batch}</td>` +
    `<td class="try">${f.try}</td><td class="l status">${esc(f.status)}</td>` +
    `<td class="l err">${esc(f.error)}</td><td class="l worker">${esc(f.worker)}</td>` +
    `<td class="l tb">${esc(f.traceback)}</td></tr>`).join("");
}
function section(j) {
  const running = Math.min(j.running_mini_batches || 0, j.remaining_mini_batches);
  const ok = j.done_mini_batches - j.failed_mini_batches;
  const items = j.succeeded_items + j.failed_items;
  const itemTotal = Math.max(j.total_items || 0, items);
  return `<section class="job" id="detail-${esc(j.job_id)}" data-status="${esc(j.status)}">` +
    `<h2>${esc(j.job_id)} <span class="status st-${esc(j.status)}">${esc(j.status)}</span></h2>` +
    (j.reason ? `<p class="reason">${esc(j.reason)}</p>` : "") +
    `<div class="legend mb-text">mini-batches: <b>${ok}</b> done, <b>${j.failed_mini_batches}</b>` +
    ` failed, <b>${running}</b> running, <b>${j.remaining_mini_batches - running}</b> remaining` +
    ` of ${j.mini_batches}</div>` +
    bar("mb", [["done", ok], ["failed", j.failed_mini_batches], ["running", running]],
        j.mini_batches) +
    `<div class="legend items-text">items: <b>${j.succeeded_items}</b> succeeded, ` +
    `<b>${j.failed_items}</b> failed of ${itemTotal || "?"}</div>` +
    bar("items", [["succeeded", j.succeeded_items], ["failed", j.failed_items]], itemTotal) +
    `<canvas class="chart" width="900" height="160"></canvas>` +
    `<p class="times">elapsed <span class="elapsed">${secs(j.elapsed_seconds)}</span>, ` +
    `ETA <span class="eta">${secs(j.eta_seconds)}</span>, ` +
    `${(j.items_per_second || 0).toFixed(2)} items/s</p>` +
    `<p class="settings">${settingsLine(j)}</p>` +
    `<h3>workers</h3><table class="workers"><thead><tr><th class="l">worker</th>` +
    `<th class="l">state</th><th>mini-batch</th><th>try</th><th>for s</th>` +
    `<th>mini-batches done</th><th>items/s</th></tr></thead>` +
    `<tbody>${workerRows(j)}</tbody></table>` +
    `<h3>latest failures</h3><table class="failures"><thead><tr><th>mini-batch</th>` +
    `<th>try</th><th class="l">status</th><th class="l">error</th><th class="l">worker</th>` +
    `<th class="l">full traceback (in the output folder)</th></tr></thead>` +
    `<tbody>${failureRows(j)}</tbody></table></section>`;
}
async function refresh() {
  try {
    const r = await fetch("api/jobs", {cache: "no-store"});
    const jobs = await r.json();
    const rows = Object.values(jobs).sort((a, b) => b.started_at - a.started_at);
    document.querySelector("#jobs tbody").innerHTML = rows.map(j =>
      `<tr id="job-${esc(j.job_id)}"><td class="l">${esc(j.job_id)}</td>` +
      `<td class="l status">${esc(j.status)}</td>` +
      `<td class="done">${j.done_mini_batches}/${j.mini_batches}</td>` +
      `<td class="failed-mb">${j.failed_mini_batches}</td>` +
      `<td class="remaining">${j.remaining_mini_batches}</td>` +
      `<td class="succeeded">${j.succeeded_items}</td>` +
      `<td class="failed-items">${j.failed_items}</td>` +
      `<td>${j.items_per_second.toFixed(1)}</td>` +
      `<td>${j.eta_seconds === null ? "" : j.eta_seconds.toFixed(0)}</td></tr>`
    ).join("");
    document.querySelector("#details").innerHTML = rows.map(section).join("");
    rows.forEach(j => draw(document.querySelector(
      `#detail-${CSS.escape(j.job_id)} canvas.chart`), j.history));
    document.querySelector("#updated").textContent =
      "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.querySelector("#updated").textContent = "cannot reach the scheduler";
  }
}
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""
