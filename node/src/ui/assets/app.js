// DataMesh node dashboard: polls /ui/state.json every two seconds and fills the page.
// Text goes in with textContent only (never innerHTML): file names come from users.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const $ = (id) => document.getElementById(id);
  let previous = null;

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + " " + units[i];
  }

  function duration(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function cell(row, text, cls) { row.appendChild(el("td", text, cls)); }

  function renderPeers(peers) {
    const body = $("peers");
    body.replaceChildren();
    for (const p of peers) {
      const row = el("tr");
      row.dataset.peer = p.peer_id;
      row.appendChild(el("td", p.peer_id, "mono"));
      cell(row, p.connected ? "connected" : "not connected", p.connected ? "ok" : "warn");
      cell(row, String(p.strikes), p.strikes > 0 ? "bad" : "");
      cell(row, p.addresses.join(" "), "mono small");
      body.appendChild(row);
    }
  }

  async function check(id, repair) {
    $("status").textContent = (repair ? "Repairing " : "Checking ") + id + "…";
    const response = await fetch("/ui/files/" + encodeURIComponent(id) + "/check" + (repair ? "?repair=1" : ""), {
      method: "POST",
      headers: { "X-CSRF-Token": csrf },
      credentials: "same-origin",
    });
    const body = await response.json().catch(() => ({}));
    $("status").textContent = response.ok
      ? (repair ? "Repaired " : "Checked ") + id + ": " + body.after.state
      : "Failed: " + (body.error || response.status);
    refresh();
  }

  function renderFiles(files, total) {
    $("file-count").textContent = String(total);
    const body = $("files");
    body.replaceChildren();
    for (const f of files) {
      const row = el("tr");
      row.dataset.file = f.id;
      cell(row, f.name);
      cell(row, f.id.slice(0, 16) + "…", "mono");
      row.lastChild.title = f.id;
      cell(row, bytes(f.size));
      const state = f.health ? f.health.state : (f.below_full_health ? "below full health (self-check)" : "not checked");
      cell(row, state, f.health && f.health.state === "healthy" ? "ok" : (f.health || f.below_full_health ? "warn" : ""));
      const stripes = el("td", undefined, "stripes");
      if (f.health) {
        for (const s of f.health.stripes) {
          const chip = el("span", s.peers + "/6", "chip " + s.state);
          chip.title = "stripe " + s.stripe + ": " + s.healthy + " healthy shards on " + s.peers + " distinct peers (" + s.state + ")";
          stripes.appendChild(chip);
        }
      } else {
        stripes.textContent = f.stripes + " stripes";
      }
      row.appendChild(stripes);
      const actions = el("td");
      const c = el("button", "Check");
      c.type = "button";
      c.setAttribute("aria-label", "Check " + f.name);
      c.addEventListener("click", () => check(f.id, false));
      const r = el("button", "Repair");
      r.type = "button";
      r.setAttribute("aria-label", "Repair " + f.name);
      r.addEventListener("click", () => check(f.id, true));
      actions.append(c, " ", r);
      row.appendChild(actions);
      body.appendChild(row);
    }
  }

  function renderActivity(state) {
    const sc = state.self_check;
    $("self-check").textContent = sc
      ? "Last self-check " + new Date(sc.finished * 1000).toLocaleString() + ": " + sc.files + " files, " +
        sc.below_full_health + " below full health, " + sc.repaired_shards + " shards repaired."
      : "No self-check yet.";
    const list = $("recent");
    list.replaceChildren();
    for (const r of state.recent_checks) {
      list.appendChild(el("li", new Date(r.at * 1000).toLocaleTimeString() + " " + (r.repair ? "repair" : "check") + " " +
        r.file.slice(0, 16) + "…: " + r.before + " → " + r.after + (r.repair ? ", " + r.repaired_shards + " shards placed" : "")));
    }
  }

  function rates(state) {
    const now = performance.now();
    const c = state.counters;
    if (previous) {
      const dt = Math.max((now - previous.at) / 1000, 0.001);
      const rate = (k) => bytes(Math.max(c[k] - previous.counters[k], 0) / dt) + "/s";
      $("put-rate").textContent = rate("put_bytes");
      $("get-rate").textContent = rate("get_bytes");
      $("in-rate").textContent = rate("shard_bytes_in");
      $("out-rate").textContent = rate("shard_bytes_out");
    }
    previous = { at: now, counters: c };
    $("puts").textContent = String(c.puts);
    $("gets").textContent = String(c.gets);
    $("failures").textContent = String(c.failures);
  }

  async function refresh() {
    let response;
    try {
      response = await fetch("/ui/state.json", { credentials: "same-origin" });
    } catch (e) {
      $("status").textContent = "The node does not answer.";
      return;
    }
    if (response.status === 401) { window.location.assign("/ui/login"); return; }
    if (!response.ok) { $("status").textContent = "The node answered " + response.status; return; }
    const state = await response.json();
    $("uptime").textContent = duration(state.uptime_secs);
    const s = state.storage;
    $("shards").textContent = String(s.shards);
    $("bytes").textContent = bytes(s.bytes);
    $("quota").textContent = bytes(s.quota);
    const used = s.quota > 0 ? Math.min(s.bytes / s.quota, 1) : 0;
    $("quota-bar").value = used;
    $("quota-pct").textContent = (used * 100).toFixed(1) + " %";
    $("peer-count").textContent = String(state.peers.length);
    $("connected-count").textContent = String(state.peers.filter((p) => p.connected).length);
    renderPeers(state.peers);
    renderFiles(state.files, state.files_total);
    renderActivity(state);
    rates(state);
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
  }

  refresh();
  setInterval(refresh, 2000);
})();
